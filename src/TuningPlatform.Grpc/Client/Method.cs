using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace TuningPlatform.Grpc.Client;

/// <summary>A callable method, built from its protoc descriptor.</summary>
public sealed class Method<TRequest, TResponse>
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    /// <summary>Builds the method; the descriptor's types must be <typeparamref name="TRequest"/> and <typeparamref name="TResponse"/>.</summary>
    public Method(MethodDescriptor descriptor)
    {
        if (descriptor.InputType.ClrType != typeof(TRequest) || descriptor.OutputType.ClrType != typeof(TResponse))
        {
            throw new ArgumentException(
                $"{descriptor.FullName} takes {descriptor.InputType.ClrType.Name} and returns {descriptor.OutputType.ClrType.Name}, not {typeof(TRequest).Name} and {typeof(TResponse).Name}.",
                nameof(descriptor));
        }
        Descriptor = descriptor;
        Type = descriptor.GetMethodType();
        Path = descriptor.GetPath();
        ResponseParser = (MessageParser<TResponse>)descriptor.OutputType.Parser;
    }

    /// <summary>The descriptor.</summary>
    public MethodDescriptor Descriptor { get; }

    /// <summary>The call kind.</summary>
    public MethodType Type { get; }

    /// <summary>The HTTP/2 path, <c>/package.Service/Method</c>.</summary>
    public string Path { get; }

    /// <summary>Parses response messages.</summary>
    public MessageParser<TResponse> ResponseParser { get; }
}
