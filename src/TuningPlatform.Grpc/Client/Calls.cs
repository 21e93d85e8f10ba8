using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace TuningPlatform.Grpc.Client;

/// <summary>What every call in flight shares: response headers, the final status and trailers, and cancel-on-dispose.</summary>
public abstract class AsyncCallBase : IDisposable
{
    private readonly IDisposable _call;

    private protected AsyncCallBase(Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
    {
        ResponseHeadersAsync = headers;
        GetStatus = status;
        GetTrailers = trailers;
        _call = call;
    }

    /// <summary>The response headers.</summary>
    public Task<Metadata> ResponseHeadersAsync { get; }

    /// <summary>The status, once the call has finished.</summary>
    public Func<Status> GetStatus { get; }

    /// <summary>The trailers, once the call has finished.</summary>
    public Func<Metadata> GetTrailers { get; }

    /// <summary>Cancels the call if it has not finished.</summary>
    public void Dispose()
    {
        _call.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A unary call in flight: await it for the response.</summary>
public sealed class AsyncUnaryCall<TResponse> : AsyncCallBase
{
    internal AsyncUnaryCall(Task<TResponse> response, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
        : base(headers, status, trailers, call) => ResponseAsync = response;

    /// <summary>The response; faults with <see cref="RpcException"/> on a non-OK status.</summary>
    public Task<TResponse> ResponseAsync { get; }

    /// <summary>Awaits the response.</summary>
    public TaskAwaiter<TResponse> GetAwaiter() => ResponseAsync.GetAwaiter();
}

/// <summary>A server-streaming call in flight.</summary>
public sealed class AsyncServerStreamingCall<TResponse> : AsyncCallBase
{
    internal AsyncServerStreamingCall(IAsyncStreamReader<TResponse> responses, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
        : base(headers, status, trailers, call) => ResponseStream = responses;

    /// <summary>The response messages; MoveNext throws <see cref="RpcException"/> on a non-OK status.</summary>
    public IAsyncStreamReader<TResponse> ResponseStream { get; }
}

/// <summary>A client-streaming call in flight.</summary>
public sealed class AsyncClientStreamingCall<TRequest, TResponse> : AsyncCallBase
{
    internal AsyncClientStreamingCall(IClientStreamWriter<TRequest> requests, Task<TResponse> response, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
        : base(headers, status, trailers, call)
    {
        RequestStream = requests;
        ResponseAsync = response;
    }

    /// <summary>Write requests here, then <see cref="IClientStreamWriter{T}.CompleteAsync"/>.</summary>
    public IClientStreamWriter<TRequest> RequestStream { get; }

    /// <summary>The response, after the request stream completes.</summary>
    public Task<TResponse> ResponseAsync { get; }

    /// <summary>Awaits the response.</summary>
    public TaskAwaiter<TResponse> GetAwaiter() => ResponseAsync.GetAwaiter();
}

/// <summary>A bidirectional call in flight.</summary>
public sealed class AsyncDuplexStreamingCall<TRequest, TResponse> : AsyncCallBase
{
    internal AsyncDuplexStreamingCall(IClientStreamWriter<TRequest> requests, IAsyncStreamReader<TResponse> responses, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
        : base(headers, status, trailers, call)
    {
        RequestStream = requests;
        ResponseStream = responses;
    }

    /// <summary>Write requests here, then complete.</summary>
    public IClientStreamWriter<TRequest> RequestStream { get; }

    /// <summary>The response messages.</summary>
    public IAsyncStreamReader<TResponse> ResponseStream { get; }
}

/// <summary>Adapts a call's response stream to <see cref="IAsyncStreamReader{T}"/>.</summary>
internal sealed class ResponseStreamReader<TRequest, TResponse>(GrpcCall<TRequest, TResponse> call) : IAsyncStreamReader<TResponse>
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public TResponse Current => call.Current;

    public Task<bool> MoveNext(CancellationToken cancellationToken) => call.MoveNextAsync(cancellationToken);
}
