using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Client;

/// <summary>
/// One client call of any kind over one HTTP/2 stream: sends the request headers and messages,
/// reads the response headers, messages and trailers, and turns every failure into a status.
/// </summary>
internal sealed class GrpcCall<TRequest, TResponse> : IDisposable
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private static readonly MediaTypeHeaderValue GrpcContentType = new(GrpcProtocol.ContentType);
    private static readonly Version Http2 = HttpVersion.Version20;

    private readonly GrpcChannel _channel;
    private readonly Method<TRequest, TResponse> _method;
    private readonly CallOptions _options;
    private readonly CancellationTokenSource _cts;
    private readonly TaskCompletionSource<Metadata> _headersTcs = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _statusKnown = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _deadlineCts;
    private CancellationTokenRegistration _abortRegistration;
    private StreamingRequestContent? _requestContent;
    private Task<HttpResponseMessage>? _responseTask;
    private HttpResponseMessage? _response;
    private Stream? _responseStream;
    private string? _responseEncoding;
    private byte[] _buffer = [];
    private Status? _status;
    private Metadata? _trailers;
    private bool _deadlineExceeded;
    private int _disposed;
    private int _readers;

    public GrpcCall(GrpcChannel channel, Method<TRequest, TResponse> method, CallOptions options)
    {
        _channel = channel;
        _method = method;
        _options = options;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(options.CancellationToken);
    }

    public TResponse Current { get; private set; } = null!;

    public Task<Metadata> ResponseHeadersTask => _headersTcs.Task;

    public IClientStreamWriter<TRequest> RequestStream =>
        _requestContent ?? throw new InvalidOperationException("This call kind has no request stream.");

    /// <summary>Sends the request. <paramref name="request"/> is the single message of a unary or server-streaming call, null for a request stream.</summary>
    public void Start(TRequest? request)
    {
        var httpRequest = new HttpRequestMessage(HttpMethod.Post, _channel.GetMethodUri(_method.Path))
        {
            Version = Http2,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var headers = httpRequest.Headers;
        headers.TryAddWithoutValidation(GrpcProtocol.TeHeader, GrpcProtocol.TeTrailers);
        headers.TryAddWithoutValidation("user-agent", GrpcChannel.UserAgent);
        headers.TryAddWithoutValidation(GrpcProtocol.AcceptEncodingHeader, MessageCompression.AcceptEncodingValue);
        var compression = _options.WriteCompression;
        if (MessageCompression.IsCompressing(compression))
        {
            if (!MessageCompression.IsSupported(compression))
            {
                throw new ArgumentException($"Compression '{compression}' is not supported; use '{GrpcProtocol.GzipEncoding}'.");
            }
            headers.TryAddWithoutValidation(GrpcProtocol.EncodingHeader, compression);
        }
        if (_channel.Options.ApiKey is { } apiKey)
        {
            headers.TryAddWithoutValidation("authorization", "Bearer " + apiKey);
        }
        if (_options.Headers is { } metadata)
        {
            foreach (var entry in metadata)
            {
                if (GrpcProtocol.IsReservedHeader(entry.Key))
                {
                    throw new ArgumentException($"'{entry.Key}' is a reserved header and cannot be sent as metadata.");
                }
                headers.TryAddWithoutValidation(entry.Key, entry.IsBinary ? Convert.ToBase64String(entry.ValueBytes) : entry.Value);
            }
        }
        if (_options.Deadline is { } deadline)
        {
            var timeout = deadline.ToUniversalTime() - DateTime.UtcNow;
            if (timeout <= TimeSpan.Zero)
            {
                // Already past: fail without touching the network, as grpc does.
                _deadlineExceeded = true;
                _responseTask = Task.FromException<HttpResponseMessage>(new RpcException(StatusCode.DeadlineExceeded, "Deadline exceeded before the call started."));
                _headersTcs.TrySetException(_responseTask.Exception!.InnerException!);
                httpRequest.Dispose();
                return;
            }
            headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, GrpcTimeout.Format(timeout));
            _deadlineCts = new CancellationTokenSource(timeout > TimeSpan.FromDays(40) ? TimeSpan.FromDays(40) : timeout);
            _deadlineCts.Token.Register(static state =>
            {
                var call = (GrpcCall<TRequest, TResponse>)state!;
                call._deadlineExceeded = true;
                call.Cancel();
            }, this);
        }
        if (request is not null)
        {
            httpRequest.Content = new ByteArrayContent(Frame(request, compression)) { Headers = { ContentType = GrpcContentType } };
        }
        else
        {
            _requestContent = new StreamingRequestContent(this, compression);
            _requestContent.Headers.ContentType = GrpcContentType;
            httpRequest.Content = _requestContent;
        }
        _abortRegistration = _cts.Token.Register(static state => ((GrpcCall<TRequest, TResponse>)state!).Abort(), this);
        _responseTask = SendAsync(httpRequest);
    }

    private void Cancel()
    {
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    // Disposing the response aborts its HTTP/2 stream (RST_STREAM CANCEL), which the server sees at once.
    private void Abort()
    {
        _requestContent?.Abort();
        _response?.Dispose();
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request)
    {
        HttpResponseMessage response;
        try
        {
            response = await _channel.HttpInvoker.SendAsync(request, _cts.Token);
        }
        catch (Exception ex)
        {
            var failure = ToRpcException(ex, "Error starting gRPC call");
            _headersTcs.TrySetException(failure);
            throw failure;
        }
        _response = response;
        if (_cts.IsCancellationRequested)
        {
            response.Dispose();
        }
        var problem = ValidateHeaders(response);
        if (problem is not null)
        {
            _status = problem;
            _trailers = ReadMetadata(response.Headers);
            _statusKnown.TrySetResult();
            if (problem.Value.StatusCode == StatusCode.OK)
            {
                // Trailers-Only with OK: a stream that ended without messages.
                _headersTcs.TrySetResult(_trailers);
                return response;
            }
            var failure = new RpcException(problem.Value, _trailers);
            _headersTcs.TrySetException(failure);
            throw failure;
        }
        _responseEncoding = FirstHeader(response.Headers, GrpcProtocol.EncodingHeader);
        _headersTcs.TrySetResult(ReadMetadata(response.Headers));
        return response;
    }

    /// <summary>A status when the response headers already end the call (an HTTP error or Trailers-Only).</summary>
    private static Status? ValidateHeaders(HttpResponseMessage response)
    {
        var grpcStatus = FirstHeader(response.Headers, GrpcProtocol.StatusTrailer);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            var code = GrpcProtocol.StatusFromHttpStatus((int)response.StatusCode);
            var detail = FirstHeader(response.Headers, GrpcProtocol.MessageTrailer);
            return new Status(code, $"Bad gRPC response. HTTP status code: {(int)response.StatusCode}."
                + (detail is null ? "" : " " + PercentEncoding.Decode(detail)));
        }
        if (grpcStatus is not null)
        {
            // Trailers-Only: the status travels in the headers and there is no body.
            return ReadStatus(response.Headers, isTrailersOnly: true);
        }
        var contentType = response.Content.Headers.ContentType?.MediaType;
        if (!GrpcProtocol.IsGrpcContentType(contentType))
        {
            return new Status(StatusCode.Internal, $"Bad gRPC response. Invalid content-type value: {contentType ?? "(none)"}.");
        }
        var encoding = FirstHeader(response.Headers, GrpcProtocol.EncodingHeader);
        if (!MessageCompression.IsSupported(encoding))
        {
            return new Status(StatusCode.Internal, $"Bad gRPC response. Unsupported grpc-encoding '{encoding}'.");
        }
        return null;
    }

    /// <summary>The single response of a unary or client-streaming call.</summary>
    public async Task<TResponse> GetResponseAsync()
    {
        try
        {
            await EnsureResponseAsync();
            var message = _status is null ? await ReadMessageAsync(_cts.Token) : null;
            if (message is null)
            {
                await FinishAsync();
                ThrowIfNotOk();
                throw Fail(new Status(StatusCode.Unimplemented, "Response cardinality violation: the server ended the call with OK but sent no response message."));
            }
            if (await ReadMessageAsync(_cts.Token) is not null)
            {
                throw Fail(new Status(StatusCode.Unimplemented, "Response cardinality violation: the server sent more than one response message."));
            }
            await FinishAsync();
            ThrowIfNotOk();
            return message;
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Fail(ToRpcException(ex, "Error reading the response").Status);
        }
        finally
        {
            _requestContent?.Abort();
        }
    }

    /// <summary>Moves to the next message of a response stream; false after an OK end, throws on any other status.</summary>
    public async Task<bool> MoveNextAsync(CancellationToken cancellationToken)
    {
        using var linked = cancellationToken.CanBeCanceled ? cancellationToken.Register(Cancel) : default;
        try
        {
            await EnsureResponseAsync();
            if (_status is not null)
            {
                ThrowIfNotOk();
                return false;
            }
            var message = await ReadMessageAsync(_cts.Token);
            if (message is not null)
            {
                Current = message;
                return true;
            }
            await FinishAsync();
            ThrowIfNotOk();
            return false;
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Fail(ToRpcException(ex, "Error reading the response stream").Status);
        }
    }

    public Status GetStatus() => _status ?? throw new InvalidOperationException("The call has not finished yet; its status is not known.");

    public Metadata GetTrailers() => _trailers ?? throw new InvalidOperationException("The call has not finished yet; its trailers are not known.");

    private async ValueTask EnsureResponseAsync()
    {
        if (_responseStream is not null)
        {
            return;
        }
        var response = await _responseTask!;
        if (_status is null)
        {
            _responseStream = await response.Content.ReadAsStreamAsync(_cts.Token);
        }
    }

    private async ValueTask<TResponse?> ReadMessageAsync(CancellationToken cancellationToken)
    {
        var stream = _responseStream!;
        var header = await FillAsync(stream, GrpcProtocol.HeaderSize, cancellationToken);
        if (header == 0)
        {
            return null;
        }
        if (header < GrpcProtocol.HeaderSize)
        {
            throw Fail(new Status(StatusCode.Internal, "Incomplete message: the response stream ended inside a message prefix."));
        }
        var flag = _buffer[0];
        var length = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(1, 4));
        if (flag > 1)
        {
            throw Fail(new Status(StatusCode.Internal, $"Invalid message prefix: the compressed flag is {flag}."));
        }
        var max = _channel.Options.MaxReceiveMessageSize;
        if (length > (uint)max)
        {
            throw Fail(new Status(StatusCode.ResourceExhausted,
                $"Received message of {length} bytes exceeds the maximum message size of {max} bytes."));
        }
        var read = await FillAsync(stream, (int)length, cancellationToken);
        if (read < length)
        {
            throw Fail(new Status(StatusCode.Internal, $"Incomplete message: the response stream ended after {read} of {length} bytes."));
        }
        try
        {
            if (flag == 0)
            {
                return _method.ResponseParser.ParseFrom(_buffer, 0, (int)length);
            }
            if (!MessageCompression.IsCompressing(_responseEncoding))
            {
                throw Fail(new Status(StatusCode.Internal, "Response message is marked compressed but the response's grpc-encoding is identity."));
            }
            return _method.ResponseParser.ParseFrom(MessageCompression.Decompress(_buffer.AsMemory(0, (int)length), max));
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw Fail(new Status(StatusCode.Internal, "Failed to deserialize the response message: " + ex.Message));
        }
    }

    /// <summary>Reads up to <paramref name="count"/> bytes into the start of the buffer; fewer only at the end of the stream.</summary>
    private async ValueTask<int> FillAsync(Stream stream, int count, CancellationToken cancellationToken)
    {
        // Dispose returns the pooled buffer only when no read holds it (see Dispose).
        Interlocked.Increment(ref _readers);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
            return await FillCoreAsync(stream, count, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _readers);
        }
    }

    private async ValueTask<int> FillCoreAsync(Stream stream, int count, CancellationToken cancellationToken)
    {
        if (_buffer.Length < count)
        {
            // Pooled: a call reads into one buffer, returned when the call is disposed (messages copy out of it).
            if (_buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
            }
            _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(count, 4096));
        }
        var total = 0;
        while (total < count)
        {
            var read = await stream.ReadAsync(_buffer.AsMemory(total, count - total), cancellationToken);
            if (read == 0)
            {
                break;
            }
            total += read;
        }
        return total;
    }

    private ValueTask FinishAsync()
    {
        if (_status is null)
        {
            var response = _response!;
            _trailers = ReadMetadata(response.TrailingHeaders);
            _status = ReadStatus(response.TrailingHeaders, isTrailersOnly: false);
            _statusKnown.TrySetResult();
        }
        return ValueTask.CompletedTask;
    }

    private void ThrowIfNotOk()
    {
        if (_status is { } status && status.StatusCode != StatusCode.OK)
        {
            throw new RpcException(status, _trailers);
        }
    }

    private RpcException Fail(Status status)
    {
        _status ??= status;
        _trailers ??= [];
        _statusKnown.TrySetResult();
        Cancel();
        return new RpcException(_status.Value, _trailers);
    }

    private RpcException ToRpcException(Exception ex, string context)
    {
        if (ex is RpcException rpc)
        {
            return rpc;
        }
        if (_deadlineExceeded)
        {
            return new RpcException(new Status(StatusCode.DeadlineExceeded, "Deadline exceeded."), innerException: ex);
        }
        if (_cts.IsCancellationRequested)
        {
            return new RpcException(new Status(StatusCode.Cancelled, "Call cancelled by the client."), innerException: ex);
        }
        return ex switch
        {
            HttpRequestException or IOException => new RpcException(
                new Status(StatusCode.Unavailable, $"{context}: {ex.Message}"), innerException: ex),
            _ => new RpcException(new Status(StatusCode.Internal, $"{context}: {ex.GetType().Name}: {ex.Message}"), innerException: ex),
        };
    }

    private static Status ReadStatus(HttpHeaders headers, bool isTrailersOnly)
    {
        var value = FirstHeader(headers, GrpcProtocol.StatusTrailer);
        if (value is null)
        {
            return new Status(StatusCode.Internal, isTrailersOnly
                ? "Bad gRPC response: no grpc-status in the headers."
                : "Bad gRPC response: the response ended without a grpc-status trailer.");
        }
        var code = GrpcProtocol.ParseStatus(value);
        if (code is null)
        {
            return new Status(StatusCode.Internal, $"Bad gRPC response: unparseable grpc-status '{value}'.");
        }
        var message = FirstHeader(headers, GrpcProtocol.MessageTrailer);
        return new Status(code.Value, message is null ? "" : PercentEncoding.Decode(message));
    }

    private static string? FirstHeader(HttpHeaders headers, string name) =>
        headers.NonValidated.TryGetValues(name, out var values) && values.Count > 0 ? values.First() : null;

    private static Metadata ReadMetadata(HttpHeaders headers)
    {
        var metadata = new Metadata();
        foreach (var (key, values) in headers.NonValidated)
        {
            if (GrpcProtocol.IsReservedHeader(key))
            {
                continue;
            }
            foreach (var value in values)
            {
                if (Metadata.Entry.IsBinaryKey(key))
                {
                    foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                    {
                        metadata.Add(key, Server.ServerCallContext.DecodeBase64(key, part));
                    }
                }
                else
                {
                    metadata.Add(key, value);
                }
            }
        }
        return metadata;
    }

    internal byte[] Frame(TRequest message, string? compression)
    {
        var size = message.CalculateSize();
        if (_channel.Options.MaxSendMessageSize is { } max && size > max)
        {
            throw new RpcException(StatusCode.ResourceExhausted, $"Sending message of {size} bytes exceeds the maximum message size of {max} bytes.");
        }
        if (MessageCompression.IsCompressing(compression))
        {
            var compressed = MessageCompression.Compress(message.ToByteArray());
            var framed = new byte[GrpcProtocol.HeaderSize + compressed.Length];
            MessageFraming.WriteHeader(framed, compressed: true, compressed.Length);
            compressed.CopyTo(framed.AsSpan(GrpcProtocol.HeaderSize));
            return framed;
        }
        var buffer = new byte[GrpcProtocol.HeaderSize + size];
        MessageFraming.WriteHeader(buffer, compressed: false, size);
        message.WriteTo(buffer.AsSpan(GrpcProtocol.HeaderSize));
        return buffer;
    }

    internal CancellationToken CallToken => _cts.Token;

    /// <summary>
    /// Why a request message could not be sent. When the server has ended the call (a handler that rejected the
    /// stream early), its status is the answer, not the broken write; it is awaited briefly, as it is on its way.
    /// </summary>
    internal async Task<RpcException> StatusForWriteFailureAsync(Exception ex)
    {
        try
        {
            await _responseTask!.WaitAsync(TimeSpan.FromSeconds(5));
            await _statusKnown.Task.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (RpcException rpc)
        {
            return rpc;
        }
        catch (Exception wait) when (wait is TimeoutException or OperationCanceledException or HttpRequestException or IOException)
        {
        }
        return _status is { StatusCode: not StatusCode.OK } status
            ? new RpcException(status, _trailers)
            : ToRpcException(ex, "Error sending a request message");
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        // Disposing a call that has not finished cancels it, as in grpc-dotnet.
        if (_status is null)
        {
            Cancel();
        }
        _abortRegistration.Dispose();
        _deadlineCts?.Dispose();
        _response?.Dispose();
        _cts.Dispose();
        if (_buffer.Length > 0 && Volatile.Read(ref _readers) == 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }
    }

    /// <summary>The request body of a client-streaming or bidirectional call: messages go out as they are written.</summary>
    private sealed class StreamingRequestContent(GrpcCall<TRequest, TResponse> call, string? compression) : HttpContent, IClientStreamWriter<TRequest>
    {
        private readonly TaskCompletionSource<Stream> _stream = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _complete = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly SemaphoreSlim _writeLock = new(1, 1);
        private bool _completed;
        private bool _aborted;

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            // SocketsHttpHandler holds the request HEADERS frame until the body is written or flushed;
            // flush now so the server sees the call before the first message (a server may answer first).
            await stream.FlushAsync(cancellationToken);
            _stream.TrySetResult(stream);
            await _complete.Task;
        }

        protected override bool TryComputeLength(out long length)
        {
            length = -1;
            return false;
        }

        public async Task WriteAsync(TRequest message, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(message);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, call.CallToken);
            await _writeLock.WaitAsync(linked.Token);
            try
            {
                if (_aborted)
                {
                    // The call has ended (its response is in, or it was cancelled): say how it ended.
                    throw await call.StatusForWriteFailureAsync(new InvalidOperationException("The call has ended."));
                }
                if (_completed)
                {
                    throw new InvalidOperationException("The request stream is already complete.");
                }
                var frame = call.Frame(message, compression);
                try
                {
                    var stream = await _stream.Task.WaitAsync(linked.Token);
                    await stream.WriteAsync(frame, linked.Token);
                    await stream.FlushAsync(linked.Token);
                }
                catch (Exception ex) when (ex is not RpcException)
                {
                    throw await call.StatusForWriteFailureAsync(ex);
                }
            }
            finally
            {
                _writeLock.Release();
            }
        }

        public async Task CompleteAsync()
        {
            await _writeLock.WaitAsync();
            try
            {
                _completed = true;
                _complete.TrySetResult();
            }
            finally
            {
                _writeLock.Release();
            }
        }

        public void Abort()
        {
            _aborted = true;
            _complete.TrySetResult();
        }
    }
}
