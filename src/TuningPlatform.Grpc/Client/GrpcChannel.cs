using System.Net;
using Google.Protobuf;
using Polly;
using Polly.Retry;

namespace TuningPlatform.Grpc.Client;

/// <summary>
/// A connection pool to one server address and the calls made over it. Cleartext <c>http://</c>
/// addresses use HTTP/2 with prior knowledge (h2c). Create one per server and share it.
/// </summary>
public sealed class GrpcChannel : IDisposable
{
    internal const string UserAgent = "tuningplatform-grpc-dotnet/1.0";

    private readonly string _baseAddress;
    private readonly bool _disposeHandler;
    private readonly ResiliencePipeline _retry;

    private GrpcChannel(Uri address, GrpcChannelOptions options)
    {
        Address = address;
        Options = options;
        _baseAddress = address.GetLeftPart(UriPartial.Authority);
        var handler = options.HttpHandler ?? CreateDefaultHandler();
        _disposeHandler = options.HttpHandler is null || options.DisposeHttpHandler;
        HttpInvoker = new HttpMessageInvoker(handler, disposeHandler: _disposeHandler);
        _retry = options.MaxAttempts <= 1
            ? ResiliencePipeline.Empty
            : new ResiliencePipelineBuilder()
                .AddRetry(new RetryStrategyOptions
                {
                    MaxRetryAttempts = options.MaxAttempts - 1,
                    BackoffType = DelayBackoffType.Exponential,
                    UseJitter = true,
                    Delay = options.InitialBackoff,
                    MaxDelay = options.MaxBackoff,
                    // Only UNAVAILABLE is safe to retry blindly: the server did not act on the call.
                    ShouldHandle = new PredicateBuilder().Handle<RpcException>(ex => ex.StatusCode == StatusCode.Unavailable),
                })
                .Build();
    }

    /// <summary>The server address.</summary>
    public Uri Address { get; }

    /// <summary>The channel's settings.</summary>
    public GrpcChannelOptions Options { get; }

    internal HttpMessageInvoker HttpInvoker { get; }

    internal ResiliencePipeline RetryPipeline => _retry;

    /// <summary>A channel to <paramref name="address"/>, for example <c>http://127.0.0.1:5001</c>.</summary>
    public static GrpcChannel ForAddress(string address, GrpcChannelOptions? options = null) =>
        ForAddress(new Uri(address, UriKind.Absolute), options);

    /// <summary>A channel to <paramref name="address"/>.</summary>
    public static GrpcChannel ForAddress(Uri address, GrpcChannelOptions? options = null)
    {
        if (address.Scheme != Uri.UriSchemeHttp && address.Scheme != Uri.UriSchemeHttps)
        {
            throw new ArgumentException($"Address '{address}' must be http:// (h2c) or https://.", nameof(address));
        }
        return new GrpcChannel(address, options ?? new GrpcChannelOptions());
    }

    /// <summary>The call API over this channel.</summary>
    public CallInvoker CreateCallInvoker() => new(this);

    internal Uri GetMethodUri(string path) => new(_baseAddress + path, UriKind.Absolute);

    private static SocketsHttpHandler CreateDefaultHandler() => new()
    {
        // More than 100 concurrent streams (the usual server limit) open a second connection instead of queueing.
        EnableMultipleHttp2Connections = true,
        PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        KeepAlivePingDelay = TimeSpan.FromSeconds(60),
        KeepAlivePingTimeout = TimeSpan.FromSeconds(30),
        ConnectTimeout = TimeSpan.FromSeconds(10),
        AutomaticDecompression = DecompressionMethods.None,
        UseProxy = false,
    };

    /// <summary>Closes the connections.</summary>
    public void Dispose() => HttpInvoker.Dispose();
}

/// <summary>Starts calls of every kind over a <see cref="GrpcChannel"/>.</summary>
public sealed class CallInvoker(GrpcChannel channel)
{
    /// <summary>The channel the calls go over.</summary>
    public GrpcChannel Channel { get; } = channel;

    /// <summary>A unary call with retries on UNAVAILABLE (the channel's policy), returning the response.</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return await Channel.RetryPipeline.ExecuteAsync(static async (state, _) =>
        {
            using var call = new GrpcCall<TRequest, TResponse>(state.Channel, state.method, state.options);
            call.Start(state.request);
            return await call.GetResponseAsync();
        }, (Channel, method, options, request), options.CancellationToken);
    }

    /// <summary>A unary call whose headers, status and trailers can be read (no retries).</summary>
    public AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var call = new GrpcCall<TRequest, TResponse>(Channel, method, options);
        call.Start(request);
        return new AsyncUnaryCall<TResponse>(call.GetResponseAsync(), call.ResponseHeadersTask, call.GetStatus, call.GetTrailers, call);
    }

    /// <summary>A server-streaming call.</summary>
    public AsyncServerStreamingCall<TResponse> ServerStreaming<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var call = new GrpcCall<TRequest, TResponse>(Channel, method, options);
        call.Start(request);
        return new AsyncServerStreamingCall<TResponse>(new ResponseStreamReader<TRequest, TResponse>(call), call.ResponseHeadersTask, call.GetStatus, call.GetTrailers, call);
    }

    /// <summary>A client-streaming call.</summary>
    public AsyncClientStreamingCall<TRequest, TResponse> ClientStreaming<TRequest, TResponse>(Method<TRequest, TResponse> method, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var call = new GrpcCall<TRequest, TResponse>(Channel, method, options);
        call.Start(null);
        return new AsyncClientStreamingCall<TRequest, TResponse>(call.RequestStream, call.GetResponseAsync(), call.ResponseHeadersTask, call.GetStatus, call.GetTrailers, call);
    }

    /// <summary>A bidirectional streaming call.</summary>
    public AsyncDuplexStreamingCall<TRequest, TResponse> DuplexStreaming<TRequest, TResponse>(Method<TRequest, TResponse> method, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var call = new GrpcCall<TRequest, TResponse>(Channel, method, options);
        call.Start(null);
        return new AsyncDuplexStreamingCall<TRequest, TResponse>(call.RequestStream, new ResponseStreamReader<TRequest, TResponse>(call), call.ResponseHeadersTask, call.GetStatus, call.GetTrailers, call);
    }
}
