using System.Buffers;
using System.Globalization;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Server;

/// <summary>
/// One call on the server: its metadata, deadline and cancellation, and the response side
/// (headers, trailers, status). Writes and the final status are serialized by one lock, so a
/// deadline that fires while a handler writes never interleaves bytes on the stream.
/// </summary>
public sealed class ServerCallContext
{
    private const int ResetNoError = 0x0;

    private readonly HttpContext _http;
    private readonly GrpcServerOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _cts;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private CancellationTokenSource? _deadlineCts;
    private CancellationTokenRegistration _deadlineRegistration;
    private Task? _deadlineTask;
    private Metadata? _requestHeaders;
    private bool _completed;
    private bool _wroteMessage;
    private bool _responseEncodingDecided;
    private string? _responseEncoding;

    internal ServerCallContext(HttpContext http, string method, GrpcServerOptions options, ILogger logger)
    {
        _http = http;
        _options = options;
        _logger = logger;
        Method = method;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        ResponseCompression = options.ResponseCompressionAlgorithm;
    }

    /// <summary>The full method name, <c>/package.Service/Method</c>.</summary>
    public string Method { get; }

    /// <summary>The :authority the client called.</summary>
    public string Host => _http.Request.Host.Value ?? "";

    /// <summary>The client's address, as <c>ipv4:127.0.0.1:5000</c> or <c>ipv6:[::1]:5000</c>.</summary>
    public string Peer
    {
        get
        {
            var connection = _http.Connection;
            if (connection.RemoteIpAddress is null)
            {
                return "unknown";
            }
            return connection.RemoteIpAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
                ? $"ipv6:[{connection.RemoteIpAddress}]:{connection.RemotePort}"
                : $"ipv4:{connection.RemoteIpAddress}:{connection.RemotePort}";
        }
    }

    /// <summary>The client's deadline in UTC, or <see cref="DateTime.MaxValue"/> when it set none.</summary>
    public DateTime Deadline { get; private set; } = DateTime.MaxValue;

    /// <summary>Fires when the client cancels, the connection drops or the deadline passes.</summary>
    public CancellationToken CancellationToken => _cts.Token;

    /// <summary>The request metadata, without the headers the protocol owns.</summary>
    public Metadata RequestHeaders => _requestHeaders ??= ReadRequestHeaders(_http.Request.Headers);

    /// <summary>Trailers sent with the status at the end of the call.</summary>
    public Metadata ResponseTrailers { get; } = [];

    /// <summary>The status to send when the handler returns normally (OK unless set).</summary>
    public Status Status { get; set; } = Status.DefaultSuccess;

    /// <summary>
    /// The encoding for response messages ("gzip" or null). Honoured only when the client's
    /// grpc-accept-encoding lists it; changeable until the first response message is written.
    /// </summary>
    public string? ResponseCompression { get; set; }

    /// <summary>The HTTP context underneath, for what the gRPC surface does not cover.</summary>
    public HttpContext GetHttpContext() => _http;

    internal bool DeadlineExceeded { get; private set; }

    internal bool IsCompleted => _completed;

    /// <summary>Sends response headers now (before the first message); at most once.</summary>
    public async Task WriteResponseHeadersAsync(Metadata headers)
    {
        await _writeLock.WaitAsync(CancellationToken);
        try
        {
            if (_http.Response.HasStarted)
            {
                throw new InvalidOperationException("Response headers can only be sent once per call.");
            }
            foreach (var entry in headers)
            {
                if (GrpcProtocol.IsReservedHeader(entry.Key))
                {
                    throw new InvalidOperationException($"'{entry.Key}' is a reserved header and cannot be set as metadata.");
                }
                _http.Response.Headers.Append(entry.Key, EncodeValue(entry));
            }
            DecideResponseEncoding();
            await _http.Response.BodyWriter.FlushAsync(CancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Starts the deadline clock from the grpc-timeout header.</summary>
    internal void StartDeadline(TimeSpan timeout)
    {
        // CancellationTokenSource accepts at most about 49.7 days.
        var capped = timeout > TimeSpan.FromDays(40) ? TimeSpan.FromDays(40) : timeout;
        Deadline = DateTime.UtcNow + capped;
        _deadlineCts = new CancellationTokenSource(capped);
        _deadlineRegistration = _deadlineCts.Token.Register(static state => ((ServerCallContext)state!).OnDeadline(), this);
    }

    private void OnDeadline()
    {
        DeadlineExceeded = true;
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            return;
        }
        _deadlineTask = CompleteOnDeadlineAsync();
    }

    private async Task CompleteOnDeadlineAsync()
    {
        try
        {
            if (await CompleteAsync(new Status(StatusCode.DeadlineExceeded, "Deadline exceeded.")))
            {
                await _http.Response.CompleteAsync();
                // The response is over: tell a client that is still sending to stop (RST_STREAM NO_ERROR).
                _http.Features.Get<IHttpResetFeature>()?.Reset(ResetNoError);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException or IOException)
        {
            _logger.LogDebug(ex, "Could not send DEADLINE_EXCEEDED for {Method}; the connection is gone.", Method);
        }
    }

    /// <summary>Serializes and writes one response message, flushing it when asked.</summary>
    internal async ValueTask WriteMessageAsync<T>(T message, bool flush, CancellationToken cancellationToken) where T : IMessage<T>
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_completed)
            {
                throw new InvalidOperationException(DeadlineExceeded
                    ? "Cannot write a message: the call's deadline has passed."
                    : "Cannot write a message: the call is complete.");
            }
            CancellationToken.ThrowIfCancellationRequested();
            DecideResponseEncoding();
            var size = message.CalculateSize();
            if (_options.MaxSendMessageSize is { } max && size > max)
            {
                throw new RpcException(StatusCode.ResourceExhausted,
                    $"Sending message of {size} bytes exceeds the maximum message size of {max} bytes.");
            }
            var writer = _http.Response.BodyWriter;
            if (_responseEncoding is null)
            {
                var span = writer.GetSpan(GrpcProtocol.HeaderSize + size);
                MessageFraming.WriteHeader(span, compressed: false, size);
                message.WriteTo(span.Slice(GrpcProtocol.HeaderSize, size));
                writer.Advance(GrpcProtocol.HeaderSize + size);
            }
            else
            {
                var compressed = MessageCompression.Compress(message.ToByteArray());
                var span = writer.GetSpan(GrpcProtocol.HeaderSize);
                MessageFraming.WriteHeader(span, compressed: true, compressed.Length);
                writer.Advance(GrpcProtocol.HeaderSize);
                writer.Write(compressed);
            }
            _wroteMessage = true;
            if (flush)
            {
                await writer.FlushAsync(cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Ends the call with <paramref name="status"/>: as trailers after the messages, or as a
    /// Trailers-Only response when nothing was sent yet. False when the call had already ended.
    /// </summary>
    internal async ValueTask<bool> CompleteAsync(Status status)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (_completed)
            {
                return false;
            }
            _completed = true;
            var response = _http.Response;
            var trailersOnly = !response.HasStarted && !_wroteMessage;
            if (trailersOnly)
            {
                response.ContentType = GrpcProtocol.ContentType;
                var headers = response.Headers;
                headers[GrpcProtocol.AcceptEncodingHeader] = MessageCompression.AcceptEncodingValue;
                headers[GrpcProtocol.StatusTrailer] = ((int)status.StatusCode).ToString(CultureInfo.InvariantCulture);
                if (!string.IsNullOrEmpty(status.Detail))
                {
                    headers[GrpcProtocol.MessageTrailer] = PercentEncoding.Encode(status.Detail);
                }
                foreach (var entry in ResponseTrailers)
                {
                    headers.Append(entry.Key, EncodeValue(entry));
                }
            }
            else
            {
                response.AppendTrailer(GrpcProtocol.StatusTrailer, ((int)status.StatusCode).ToString(CultureInfo.InvariantCulture));
                if (!string.IsNullOrEmpty(status.Detail))
                {
                    response.AppendTrailer(GrpcProtocol.MessageTrailer, PercentEncoding.Encode(status.Detail));
                }
                foreach (var entry in ResponseTrailers)
                {
                    response.AppendTrailer(entry.Key, EncodeValue(entry));
                }
            }
            return true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void DecideResponseEncoding()
    {
        if (_responseEncodingDecided)
        {
            return;
        }
        _responseEncodingDecided = true;
        var response = _http.Response;
        response.ContentType = GrpcProtocol.ContentType;
        var wanted = ResponseCompression;
        if (MessageCompression.IsCompressing(wanted)
            && MessageCompression.Accepts(_http.Request.Headers[GrpcProtocol.AcceptEncodingHeader], wanted!)
            && MessageCompression.IsSupported(wanted))
        {
            _responseEncoding = wanted;
            response.Headers[GrpcProtocol.EncodingHeader] = wanted;
        }
        response.Headers[GrpcProtocol.AcceptEncodingHeader] = MessageCompression.AcceptEncodingValue;
    }

    internal static Metadata ReadRequestHeaders(IHeaderDictionary headers)
    {
        var metadata = new Metadata();
        foreach (var (key, values) in headers)
        {
            if (GrpcProtocol.IsReservedHeader(key))
            {
                continue;
            }
            foreach (var value in values)
            {
                if (value is null)
                {
                    continue;
                }
                if (Metadata.Entry.IsBinaryKey(key))
                {
                    // Several binary values may arrive comma-joined in one header.
                    foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                    {
                        metadata.Add(key, DecodeBase64(key, part));
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

    internal static StringValues EncodeValue(Metadata.Entry entry) =>
        entry.IsBinary ? Convert.ToBase64String(entry.ValueBytes) : entry.Value;

    internal static byte[] DecodeBase64(string key, string value)
    {
        // The spec lets senders omit padding; Convert wants it.
        var padded = (value.Length % 4) switch
        {
            2 => value + "==",
            3 => value + "=",
            _ => value,
        };
        try
        {
            return Convert.FromBase64String(padded);
        }
        catch (FormatException)
        {
            throw new RpcException(StatusCode.Internal, $"Metadata '{key}' is not valid base64.");
        }
    }

    /// <summary>Stops the deadline clock and waits for a deadline response in flight, so the HttpContext is not used after the call.</summary>
    internal async ValueTask EndAsync()
    {
        // Disposing the registration waits for a callback that is running, so _deadlineTask is final after it.
        _deadlineRegistration.Dispose();
        if (_deadlineTask is not null)
        {
            await _deadlineTask;
        }
        _deadlineCts?.Dispose();
        _cts.Dispose();
    }
}
