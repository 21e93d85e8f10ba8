using System.Diagnostics.CodeAnalysis;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;
using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Server;

/// <summary>Signatures a service class implements, one per call kind (grpc-dotnet's shapes).</summary>
internal static class HandlerSignatures
{
    public delegate Task<TResponse> Unary<TService, TRequest, TResponse>(TService service, TRequest request, ServerCallContext context);

    public delegate Task ServerStreaming<TService, TRequest, TResponse>(TService service, TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context);

    public delegate Task<TResponse> ClientStreaming<TService, TRequest, TResponse>(TService service, IAsyncStreamReader<TRequest> requestStream, ServerCallContext context);

    public delegate Task DuplexStreaming<TService, TRequest, TResponse>(TService service, IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context);
}

/// <summary>One routed gRPC method: the HTTP request delegate for <c>/package.Service/Method</c>.</summary>
internal abstract class ServerMethod(string fullName, GrpcServerOptions options, ILogger logger)
{
    public string FullName { get; } = fullName;

    protected GrpcServerOptions Options { get; } = options;

    protected ILogger Logger { get; } = logger;

    public async Task HandleAsync(HttpContext http)
    {
        if (await CallPipeline.TryRejectHttpAsync(http))
        {
            return;
        }
        var call = new ServerCallContext(http, FullName, Options, Logger);
        try
        {
            CallPipeline.PrepareCall(http, call, Options, FullName);
            await InvokeAsync(http, call);
            await call.CompleteAsync(call.Status);
        }
        catch (Exception ex)
        {
            await CallPipeline.CompleteWithErrorAsync(call, ex, Options, Logger);
        }
        finally
        {
            await call.EndAsync();
        }
    }

    protected abstract Task InvokeAsync(HttpContext http, ServerCallContext call);
}

/// <summary>A method whose service class has no implementation: UNIMPLEMENTED, like a generated base class.</summary>
internal sealed class UnimplementedServerMethod(string fullName, GrpcServerOptions options, ILogger logger)
    : ServerMethod(fullName, options, logger)
{
    protected override Task InvokeAsync(HttpContext http, ServerCallContext call) =>
        throw new RpcException(StatusCode.Unimplemented, $"Method {FullName} is not implemented by this server.");
}

internal sealed class ServerMethod<TService, TRequest, TResponse> : ServerMethod
    where TService : class
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private readonly MethodType _type;
    private readonly Delegate _handler;
    private readonly MessageParser<TRequest> _parser;
    private readonly Func<IServiceProvider, (TService Service, bool Owned)> _activate;

    public ServerMethod(string fullName, MethodType type, Delegate handler, MethodDescriptor descriptor,
        Func<IServiceProvider, (TService, bool)> activate, GrpcServerOptions options, ILogger logger)
        : base(fullName, options, logger)
    {
        _type = type;
        _handler = handler;
        _parser = (MessageParser<TRequest>)descriptor.InputType.Parser;
        _activate = activate;
    }

    protected override async Task InvokeAsync(HttpContext http, ServerCallContext call)
    {
        var (service, owned) = _activate(http.RequestServices);
        try
        {
            var reader = new RequestReader<TRequest>(http, _parser, Options, call);
            switch (_type)
            {
                case MethodType.Unary:
                {
                    var request = await ReadSingleAsync(reader, call);
                    var handler = (HandlerSignatures.Unary<TService, TRequest, TResponse>)_handler;
                    var response = await handler(service, request, call);
                    await WriteSingleAsync(call, response);
                    break;
                }
                case MethodType.ServerStreaming:
                {
                    var request = await ReadSingleAsync(reader, call);
                    var handler = (HandlerSignatures.ServerStreaming<TService, TRequest, TResponse>)_handler;
                    await handler(service, request, new ResponseWriter<TResponse>(call), call);
                    break;
                }
                case MethodType.ClientStreaming:
                {
                    CallPipeline.DisableMinimumDataRate(http);
                    var handler = (HandlerSignatures.ClientStreaming<TService, TRequest, TResponse>)_handler;
                    var response = await handler(service, reader, call);
                    await WriteSingleAsync(call, response);
                    break;
                }
                case MethodType.DuplexStreaming:
                {
                    CallPipeline.DisableMinimumDataRate(http);
                    var handler = (HandlerSignatures.DuplexStreaming<TService, TRequest, TResponse>)_handler;
                    await handler(service, reader, new ResponseWriter<TResponse>(call), call);
                    break;
                }
                default:
                    throw new InvalidOperationException($"Unknown method type {_type}.");
            }
        }
        finally
        {
            if (owned)
            {
                switch (service)
                {
                    case IAsyncDisposable asyncDisposable:
                        await asyncDisposable.DisposeAsync();
                        break;
                    case IDisposable disposable:
                        disposable.Dispose();
                        break;
                }
            }
        }
    }

    private static async Task<TRequest> ReadSingleAsync(RequestReader<TRequest> reader, ServerCallContext call)
    {
        // A unary or server-streaming request carries exactly one message (cardinality: UNIMPLEMENTED otherwise).
        var request = await reader.ReadAsync(call.CancellationToken)
            ?? throw new RpcException(StatusCode.Unimplemented, "Request cardinality violation: the call sent no request message; this method takes exactly one.");
        if (await reader.ReadAsync(call.CancellationToken) is not null)
        {
            throw new RpcException(StatusCode.Unimplemented, "Request cardinality violation: the call sent more than one request message; this method takes exactly one.");
        }
        return request;
    }

    private static async Task WriteSingleAsync(ServerCallContext call, TResponse? response)
    {
        if (call.Status.StatusCode != StatusCode.OK)
        {
            return;
        }
        if (response is null)
        {
            throw new RpcException(StatusCode.Internal, "The handler returned no response message.");
        }
        await call.WriteMessageAsync(response, flush: false, call.CancellationToken);
    }
}

/// <summary>The steps every call goes through, in order, and the mapping of failures to statuses.</summary>
internal static class CallPipeline
{
    /// <summary>
    /// Rejects what is not a gRPC request at the HTTP level: HTTP/1.x (426) and a wrong content-type (415).
    /// True when a response was written.
    /// </summary>
    public static async ValueTask<bool> TryRejectHttpAsync(HttpContext http)
    {
        var request = http.Request;
        if (!HttpProtocol.IsHttp2(request.Protocol) && !HttpProtocol.IsHttp3(request.Protocol))
        {
            await RejectAsync(http, StatusCodes.Status426UpgradeRequired,
                $"Request protocol '{request.Protocol}' is not supported; gRPC requires HTTP/2.");
            http.Response.Headers.Upgrade = "h2c";
            return true;
        }
        if (!GrpcProtocol.IsGrpcContentType(request.ContentType))
        {
            await RejectAsync(http, StatusCodes.Status415UnsupportedMediaType,
                $"Content-Type '{request.ContentType}' is not supported; gRPC requires '{GrpcProtocol.ContentType}'.");
            return true;
        }
        return false;
    }

    private static Task RejectAsync(HttpContext http, int httpStatus, string message)
    {
        var response = http.Response;
        response.StatusCode = httpStatus;
        response.Headers[GrpcProtocol.StatusTrailer] = ((int)StatusCode.Internal).ToString(System.Globalization.CultureInfo.InvariantCulture);
        response.Headers[GrpcProtocol.MessageTrailer] = PercentEncoding.Encode(message);
        return Task.CompletedTask;
    }

    /// <summary>Checks the call-level headers and starts the deadline; throws <see cref="RpcException"/> on a problem.</summary>
    public static void PrepareCall(HttpContext http, ServerCallContext call, GrpcServerOptions options, string method)
    {
        // Message size is limited per message, not per request body: a long stream may carry gigabytes.
        var bodySize = http.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (bodySize is { IsReadOnly: false })
        {
            bodySize.MaxRequestBodySize = null;
        }
        var headers = http.Request.Headers;
        if (options.ApiKey is { } key && !method.StartsWith("/grpc.health.v1.Health/", StringComparison.Ordinal))
        {
            string? authorization = headers.Authorization;
            if (authorization is null || !authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
                || !System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(authorization["Bearer ".Length..].Trim()),
                    System.Text.Encoding.UTF8.GetBytes(key)))
            {
                throw new RpcException(StatusCode.Unauthenticated, "This server requires 'authorization: Bearer <api key>' metadata.");
            }
        }
        string? encoding = headers[GrpcProtocol.EncodingHeader];
        if (!MessageCompression.IsSupported(encoding))
        {
            throw new RpcException(StatusCode.Unimplemented,
                $"Request grpc-encoding '{encoding}' is not supported; this server accepts '{MessageCompression.AcceptEncodingValue}'.");
        }
        string? timeout = headers[GrpcProtocol.TimeoutHeader];
        if (timeout is not null)
        {
            var parsed = GrpcTimeout.Parse(timeout)
                ?? throw new RpcException(StatusCode.Internal, $"Malformed grpc-timeout header '{timeout}'.");
            call.StartDeadline(parsed);
        }
    }

    /// <summary>Long-lived request streams may be idle; Kestrel's minimum request data rate must not kill them.</summary>
    public static void DisableMinimumDataRate(HttpContext http)
    {
        var rate = http.Features.Get<IHttpMinRequestBodyDataRateFeature>();
        if (rate is not null)
        {
            rate.MinDataRate = null;
        }
    }

    /// <summary>Turns a handler failure into the status the client sees.</summary>
    public static async ValueTask CompleteWithErrorAsync(ServerCallContext call, Exception ex, GrpcServerOptions options, ILogger logger)
    {
        Status status;
        switch (ex)
        {
            case RpcException rpc:
                status = rpc.Status;
                foreach (var entry in rpc.Trailers)
                {
                    call.ResponseTrailers.Add(entry);
                }
                break;
            case OperationCanceledException when call.DeadlineExceeded:
                status = new Status(StatusCode.DeadlineExceeded, "Deadline exceeded.");
                break;
            case OperationCanceledException when call.GetHttpContext().RequestAborted.IsCancellationRequested:
                // The client is gone: nothing can be sent, the status is only for the log.
                logger.LogDebug("Call {Method} was cancelled by the client.", call.Method);
                status = new Status(StatusCode.Cancelled, "Cancelled by the client.");
                break;
            default:
                logger.LogError(ex, "Handler for {Method} threw an exception.", call.Method);
                status = new Status(StatusCode.Unknown, options.EnableDetailedErrors
                    ? $"Exception was thrown by handler. {ex.GetType().Name}: {ex.Message}"
                    : "Exception was thrown by handler.");
                break;
        }
        if (call.GetHttpContext().RequestAborted.IsCancellationRequested)
        {
            return;
        }
        try
        {
            await call.CompleteAsync(status);
        }
        catch (Exception writeEx) when (writeEx is InvalidOperationException or IOException)
        {
            logger.LogDebug(writeEx, "Could not send the status of {Method}.", call.Method);
        }
    }

    /// <summary>The response for a path that names no mapped method.</summary>
    public static async Task HandleUnknownMethodAsync(HttpContext http, GrpcServerOptions options, ILogger logger)
    {
        if (await TryRejectHttpAsync(http))
        {
            return;
        }
        var path = http.Request.Path.Value ?? "";
        var call = new ServerCallContext(http, path, options, logger);
        try
        {
            await CompleteWithErrorAsync(call, UnknownMethod(path), options, logger);
        }
        finally
        {
            await call.EndAsync();
        }
    }

    [SuppressMessage("Style", "IDE0057", Justification = "Clearer as written.")]
    private static RpcException UnknownMethod(string path)
    {
        var slash = path.LastIndexOf('/');
        var service = slash > 1 ? path.Substring(1, slash - 1) : path.TrimStart('/');
        return new RpcException(StatusCode.Unimplemented, slash > 1
            ? $"Service '{service}' or its method '{path[(slash + 1)..]}' is not implemented by this server."
            : $"'{path}' is not a gRPC method path; expected /package.Service/Method.");
    }
}
