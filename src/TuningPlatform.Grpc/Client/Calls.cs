using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace TuningPlatform.Grpc.Client;

/// <summary>A unary call in flight: await it for the response; headers, status and trailers are readable too.</summary>
public sealed class AsyncUnaryCall<TResponse> : IDisposable
{
    private readonly IDisposable _call;

    internal AsyncUnaryCall(Task<TResponse> response, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
    {
        ResponseAsync = response;
        ResponseHeadersAsync = headers;
        GetStatus = status;
        GetTrailers = trailers;
        _call = call;
    }

    /// <summary>The response; faults with <see cref="RpcException"/> on a non-OK status.</summary>
    public Task<TResponse> ResponseAsync { get; }

    /// <summary>The response headers.</summary>
    public Task<Metadata> ResponseHeadersAsync { get; }

    /// <summary>The status, once the call has finished.</summary>
    public Func<Status> GetStatus { get; }

    /// <summary>The trailers, once the call has finished.</summary>
    public Func<Metadata> GetTrailers { get; }

    /// <summary>Awaits the response.</summary>
    public TaskAwaiter<TResponse> GetAwaiter() => ResponseAsync.GetAwaiter();

    /// <summary>Cancels the call if it has not finished.</summary>
    public void Dispose() => _call.Dispose();
}

/// <summary>A server-streaming call in flight.</summary>
public sealed class AsyncServerStreamingCall<TResponse> : IDisposable
{
    private readonly IDisposable _call;

    internal AsyncServerStreamingCall(IAsyncStreamReader<TResponse> responses, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
    {
        ResponseStream = responses;
        ResponseHeadersAsync = headers;
        GetStatus = status;
        GetTrailers = trailers;
        _call = call;
    }

    /// <summary>The response messages; MoveNext throws <see cref="RpcException"/> on a non-OK status.</summary>
    public IAsyncStreamReader<TResponse> ResponseStream { get; }

    /// <summary>The response headers.</summary>
    public Task<Metadata> ResponseHeadersAsync { get; }

    /// <summary>The status, once the stream has ended.</summary>
    public Func<Status> GetStatus { get; }

    /// <summary>The trailers, once the stream has ended.</summary>
    public Func<Metadata> GetTrailers { get; }

    /// <summary>Cancels the call if it has not finished.</summary>
    public void Dispose() => _call.Dispose();
}

/// <summary>A client-streaming call in flight.</summary>
public sealed class AsyncClientStreamingCall<TRequest, TResponse> : IDisposable
{
    private readonly IDisposable _call;

    internal AsyncClientStreamingCall(IClientStreamWriter<TRequest> requests, Task<TResponse> response, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
    {
        RequestStream = requests;
        ResponseAsync = response;
        ResponseHeadersAsync = headers;
        GetStatus = status;
        GetTrailers = trailers;
        _call = call;
    }

    /// <summary>Write requests here, then <see cref="IClientStreamWriter{T}.CompleteAsync"/>.</summary>
    public IClientStreamWriter<TRequest> RequestStream { get; }

    /// <summary>The response, after the request stream completes.</summary>
    public Task<TResponse> ResponseAsync { get; }

    /// <summary>The response headers.</summary>
    public Task<Metadata> ResponseHeadersAsync { get; }

    /// <summary>The status, once the call has finished.</summary>
    public Func<Status> GetStatus { get; }

    /// <summary>The trailers, once the call has finished.</summary>
    public Func<Metadata> GetTrailers { get; }

    /// <summary>Awaits the response.</summary>
    public TaskAwaiter<TResponse> GetAwaiter() => ResponseAsync.GetAwaiter();

    /// <summary>Cancels the call if it has not finished.</summary>
    public void Dispose() => _call.Dispose();
}

/// <summary>A bidirectional call in flight.</summary>
public sealed class AsyncDuplexStreamingCall<TRequest, TResponse> : IDisposable
{
    private readonly IDisposable _call;

    internal AsyncDuplexStreamingCall(IClientStreamWriter<TRequest> requests, IAsyncStreamReader<TResponse> responses, Task<Metadata> headers, Func<Status> status, Func<Metadata> trailers, IDisposable call)
    {
        RequestStream = requests;
        ResponseStream = responses;
        ResponseHeadersAsync = headers;
        GetStatus = status;
        GetTrailers = trailers;
        _call = call;
    }

    /// <summary>Write requests here, then complete.</summary>
    public IClientStreamWriter<TRequest> RequestStream { get; }

    /// <summary>The response messages.</summary>
    public IAsyncStreamReader<TResponse> ResponseStream { get; }

    /// <summary>The response headers.</summary>
    public Task<Metadata> ResponseHeadersAsync { get; }

    /// <summary>The status, once the response stream has ended.</summary>
    public Func<Status> GetStatus { get; }

    /// <summary>The trailers, once the response stream has ended.</summary>
    public Func<Metadata> GetTrailers { get; }

    /// <summary>Cancels the call if it has not finished.</summary>
    public void Dispose() => _call.Dispose();
}

/// <summary>Adapts a call's response stream to <see cref="IAsyncStreamReader{T}"/>.</summary>
internal sealed class ResponseStreamReader<TRequest, TResponse>(GrpcCall<TRequest, TResponse> call) : IAsyncStreamReader<TResponse>
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public TResponse Current => call.Current;

    public Task<bool> MoveNext(CancellationToken cancellationToken) => call.MoveNextAsync(cancellationToken);
}
