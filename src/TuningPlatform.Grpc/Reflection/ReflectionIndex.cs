using Google.Protobuf;
using Google.Protobuf.Reflection;
using TuningPlatform.Grpc.Reflection.V1;
using TuningPlatform.Grpc.Server;

namespace TuningPlatform.Grpc.Reflection;

/// <summary>
/// Answers reflection requests from the descriptors of the mapped services: every file they need
/// (transitively) by name, and every symbol (service, method, message, field, enum, enum value) by
/// fully-qualified name.
/// </summary>
internal sealed class ReflectionIndex
{
    private readonly GrpcServiceRegistry _registry;
    private readonly Lock _lock = new();
    private int _builtFor = -1;
    private Dictionary<string, FileDescriptor> _files = [];
    private Dictionary<string, FileDescriptor> _symbols = [];
    private HashSet<string> _messages = [];

    public ReflectionIndex(GrpcServiceRegistry registry) => _registry = registry;

    public ServerReflectionResponse Answer(ServerReflectionRequest request)
    {
        var response = new ServerReflectionResponse { ValidHost = request.Host, OriginalRequest = request.Clone() };
        EnsureBuilt();
        switch (request.MessageRequestCase)
        {
            case ServerReflectionRequest.MessageRequestOneofCase.ListServices:
                var list = new ListServiceResponse();
                foreach (var service in _registry.Services)
                {
                    list.Service.Add(new ServiceResponse { Name = service.FullName });
                }
                response.ListServicesResponse = list;
                break;
            case ServerReflectionRequest.MessageRequestOneofCase.FileByFilename:
                response = _files.TryGetValue(request.FileByFilename, out var file)
                    ? WithFile(response, file)
                    : WithError(response, StatusCode.NotFound, $"File '{request.FileByFilename}' not found.");
                break;
            case ServerReflectionRequest.MessageRequestOneofCase.FileContainingSymbol:
                response = _symbols.TryGetValue(request.FileContainingSymbol, out var owner)
                    ? WithFile(response, owner)
                    : WithError(response, StatusCode.NotFound, $"Symbol '{request.FileContainingSymbol}' not found.");
                break;
            case ServerReflectionRequest.MessageRequestOneofCase.FileContainingExtension:
                // proto3 contracts declare no extensions.
                response = WithError(response, StatusCode.NotFound,
                    $"Extension {request.FileContainingExtension.ExtensionNumber} of '{request.FileContainingExtension.ContainingType}' not found.");
                break;
            case ServerReflectionRequest.MessageRequestOneofCase.AllExtensionNumbersOfType:
                var typeName = request.AllExtensionNumbersOfType;
                response = _messages.Contains(typeName)
                    ? Set(response, r => r.AllExtensionNumbersResponse = new ExtensionNumberResponse { BaseTypeName = typeName })
                    : WithError(response, StatusCode.NotFound, $"Type '{typeName}' not found.");
                break;
            default:
                response = WithError(response, StatusCode.InvalidArgument, "The reflection request names no known query.");
                break;
        }
        return response;
    }

    private static ServerReflectionResponse Set(ServerReflectionResponse response, Action<ServerReflectionResponse> set)
    {
        set(response);
        return response;
    }

    private static ServerReflectionResponse WithError(ServerReflectionResponse response, StatusCode code, string message)
    {
        response.ErrorResponse = new ErrorResponse { ErrorCode = (int)code, ErrorMessage = message };
        return response;
    }

    private static ServerReflectionResponse WithFile(ServerReflectionResponse response, FileDescriptor file)
    {
        // The file first, then everything it imports, transitively, each once.
        var result = new FileDescriptorResponse();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Queue<FileDescriptor>([file]);
        while (pending.TryDequeue(out var next))
        {
            if (!seen.Add(next.Name))
            {
                continue;
            }
            result.FileDescriptorProto.Add(next.SerializedData);
            foreach (var dependency in next.Dependencies)
            {
                pending.Enqueue(dependency);
            }
        }
        response.FileDescriptorResponse = result;
        return response;
    }

    private void EnsureBuilt()
    {
        var services = _registry.Services;
        lock (_lock)
        {
            if (_builtFor == services.Count)
            {
                return;
            }
            var files = new Dictionary<string, FileDescriptor>(StringComparer.Ordinal);
            var symbols = new Dictionary<string, FileDescriptor>(StringComparer.Ordinal);
            foreach (var service in services)
            {
                AddFile(service.File, files, symbols);
            }
            _files = files;
            _symbols = symbols;
            _messages = [.. symbols.Keys.Where(name => symbols[name].FindTypeByName<MessageDescriptor>(RelativeName(symbols[name], name)) is not null)];
            _builtFor = services.Count;
        }
    }

    private static string RelativeName(FileDescriptor file, string fullName) =>
        file.Package.Length > 0 && fullName.StartsWith(file.Package + ".", StringComparison.Ordinal) ? fullName[(file.Package.Length + 1)..] : fullName;

    private static void AddFile(FileDescriptor file, Dictionary<string, FileDescriptor> files, Dictionary<string, FileDescriptor> symbols)
    {
        if (!files.TryAdd(file.Name, file))
        {
            return;
        }
        foreach (var dependency in file.Dependencies)
        {
            AddFile(dependency, files, symbols);
        }
        foreach (var service in file.Services)
        {
            symbols.TryAdd(service.FullName, file);
            foreach (var method in service.Methods)
            {
                symbols.TryAdd(method.FullName, file);
            }
        }
        foreach (var message in file.MessageTypes)
        {
            AddMessage(message, file, symbols);
        }
        foreach (var enumType in file.EnumTypes)
        {
            AddEnum(enumType, file, symbols);
        }
    }

    private static void AddMessage(MessageDescriptor message, FileDescriptor file, Dictionary<string, FileDescriptor> symbols)
    {
        symbols.TryAdd(message.FullName, file);
        foreach (var field in message.Fields.InDeclarationOrder())
        {
            symbols.TryAdd(field.FullName, file);
        }
        foreach (var nested in message.NestedTypes)
        {
            AddMessage(nested, file, symbols);
        }
        foreach (var enumType in message.EnumTypes)
        {
            AddEnum(enumType, file, symbols);
        }
    }

    private static void AddEnum(EnumDescriptor enumType, FileDescriptor file, Dictionary<string, FileDescriptor> symbols)
    {
        symbols.TryAdd(enumType.FullName, file);
        foreach (var value in enumType.Values)
        {
            symbols.TryAdd(value.FullName, file);
        }
    }
}

/// <summary>grpc.reflection.v1.ServerReflection.</summary>
public sealed class ReflectionServiceV1(GrpcServiceRegistry registry)
{
    private readonly ReflectionIndex _index = new(registry);

    /// <summary>Answers each request on the stream, in order.</summary>
    public async Task ServerReflectionInfo(IAsyncStreamReader<ServerReflectionRequest> requestStream,
        IServerStreamWriter<ServerReflectionResponse> responseStream, ServerCallContext context)
    {
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            await responseStream.WriteAsync(_index.Answer(requestStream.Current), context.CancellationToken);
        }
    }
}

/// <summary>
/// grpc.reflection.v1alpha.ServerReflection. Its messages are identical on the wire to v1's, so it
/// re-reads each request as v1, answers it, and re-reads the answer as v1alpha.
/// </summary>
public sealed class ReflectionServiceV1Alpha(GrpcServiceRegistry registry)
{
    private readonly ReflectionIndex _index = new(registry);

    /// <summary>Answers each request on the stream, in order.</summary>
    public async Task ServerReflectionInfo(IAsyncStreamReader<V1Alpha.ServerReflectionRequest> requestStream,
        IServerStreamWriter<V1Alpha.ServerReflectionResponse> responseStream, ServerCallContext context)
    {
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            var request = ServerReflectionRequest.Parser.ParseFrom(requestStream.Current.ToByteString());
            var answer = _index.Answer(request);
            await responseStream.WriteAsync(V1Alpha.ServerReflectionResponse.Parser.ParseFrom(answer.ToByteString()), context.CancellationToken);
        }
    }
}
