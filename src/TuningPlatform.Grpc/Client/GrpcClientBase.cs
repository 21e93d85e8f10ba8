using System.Collections.Concurrent;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace TuningPlatform.Grpc.Client;

/// <summary>
/// The base of a typed client: methods are looked up by RPC name in the service's protoc descriptor
/// (and cached), so a typed wrapper is one line per RPC.
/// </summary>
public abstract class GrpcClientBase
{
    private readonly ConcurrentDictionary<string, object> _methods = new(StringComparer.Ordinal);

    /// <summary>A client of <paramref name="service"/> over <paramref name="invoker"/>.</summary>
    protected GrpcClientBase(CallInvoker invoker, ServiceDescriptor service)
    {
        Invoker = invoker;
        Service = service;
    }

    /// <summary>The call API.</summary>
    public CallInvoker Invoker { get; }

    /// <summary>The service's descriptor.</summary>
    public ServiceDescriptor Service { get; }

    /// <summary>The method named <paramref name="name"/>, typed.</summary>
    protected Method<TRequest, TResponse> GetMethod<TRequest, TResponse>(string name)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return (Method<TRequest, TResponse>)_methods.GetOrAdd(name, static (n, service) =>
        {
            var descriptor = service.FindMethodByName(n)
                ?? throw new ArgumentException($"Service {service.FullName} has no method '{n}'.", nameof(name));
            return new Method<TRequest, TResponse>(descriptor);
        }, Service);
    }

    /// <summary>A unary call, with retries on UNAVAILABLE.</summary>
    protected Task<TResponse> UnaryAsync<TRequest, TResponse>(string name, TRequest request, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => Invoker.UnaryAsync(GetMethod<TRequest, TResponse>(name), request, options);

    /// <summary>A server-streaming call.</summary>
    protected AsyncServerStreamingCall<TResponse> ServerStreaming<TRequest, TResponse>(string name, TRequest request, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => Invoker.ServerStreaming(GetMethod<TRequest, TResponse>(name), request, options);

    /// <summary>A client-streaming call.</summary>
    protected AsyncClientStreamingCall<TRequest, TResponse> ClientStreaming<TRequest, TResponse>(string name, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => Invoker.ClientStreaming(GetMethod<TRequest, TResponse>(name), options);

    /// <summary>A bidirectional call.</summary>
    protected AsyncDuplexStreamingCall<TRequest, TResponse> DuplexStreaming<TRequest, TResponse>(string name, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => Invoker.DuplexStreaming(GetMethod<TRequest, TResponse>(name), options);
}

/// <summary>A client for any service, by descriptor and method name: the generic call API.</summary>
public sealed class DynamicClient(CallInvoker invoker, ServiceDescriptor service) : GrpcClientBase(invoker, service)
{
    /// <summary>A unary call of <paramref name="method"/>.</summary>
    public Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => UnaryAsync<TRequest, TResponse>(method, request, options);

    /// <summary>A server-streaming call of <paramref name="method"/>.</summary>
    public AsyncServerStreamingCall<TResponse> Stream<TRequest, TResponse>(string method, TRequest request, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => ServerStreaming<TRequest, TResponse>(method, request, options);

    /// <summary>A client-streaming call of <paramref name="method"/>.</summary>
    public AsyncClientStreamingCall<TRequest, TResponse> Upload<TRequest, TResponse>(string method, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => ClientStreaming<TRequest, TResponse>(method, options);

    /// <summary>A bidirectional call of <paramref name="method"/>.</summary>
    public AsyncDuplexStreamingCall<TRequest, TResponse> Duplex<TRequest, TResponse>(string method, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
        => DuplexStreaming<TRequest, TResponse>(method, options);
}
