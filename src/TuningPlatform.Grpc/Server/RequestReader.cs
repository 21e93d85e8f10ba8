using System.Buffers;
using System.IO.Pipelines;
using Google.Protobuf;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Server;

/// <summary>Reads length-prefixed request messages off the HTTP/2 request body.</summary>
internal sealed class RequestReader<T> : IAsyncStreamReader<T> where T : class, IMessage<T>
{
    private readonly PipeReader _body;
    private readonly MessageParser<T> _parser;
    private readonly int _maxSize;
    private readonly string? _encoding;
    private readonly ServerCallContext _call;
    private bool _reading;
    private bool _ended;

    public RequestReader(HttpContext http, MessageParser<T> parser, GrpcServerOptions options, ServerCallContext call)
    {
        _body = http.Request.BodyReader;
        _parser = parser;
        _maxSize = options.MaxReceiveMessageSize;
        _encoding = http.Request.Headers[GrpcProtocol.EncodingHeader];
        _call = call;
    }

    public T Current { get; private set; } = null!;

    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        if (_reading)
        {
            throw new InvalidOperationException("Cannot read the next message before the previous read has completed.");
        }
        _reading = true;
        try
        {
            var message = await ReadAsync(cancellationToken);
            if (message is null)
            {
                return false;
            }
            Current = message;
            return true;
        }
        finally
        {
            _reading = false;
        }
    }

    /// <summary>The next message, or null at the end of the request stream.</summary>
    public async ValueTask<T?> ReadAsync(CancellationToken cancellationToken)
    {
        if (_ended)
        {
            return null;
        }
        using var linked = cancellationToken.CanBeCanceled && cancellationToken != _call.CancellationToken
            ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _call.CancellationToken)
            : null;
        var token = linked?.Token ?? _call.CancellationToken;
        while (true)
        {
            ReadResult result;
            try
            {
                result = await _body.ReadAsync(token);
            }
            catch (Exception ex) when (ex is IOException or ConnectionAbortedException or BadHttpRequestException)
            {
                throw new RpcException(new Status(StatusCode.Cancelled, "The request stream was aborted."), innerException: ex);
            }
            var buffer = result.Buffer;
            bool complete;
            ReadOnlySequence<byte> payload;
            bool compressed;
            try
            {
                complete = MessageFraming.TryRead(ref buffer, _maxSize, out compressed, out payload);
            }
            catch
            {
                _body.AdvanceTo(buffer.Start);
                throw;
            }
            if (complete)
            {
                T message;
                try
                {
                    message = Parse(payload, compressed);
                }
                finally
                {
                    _body.AdvanceTo(buffer.Start);
                }
                return message;
            }
            if (result.IsCompleted)
            {
                _ended = true;
                var leftover = buffer.Length;
                _body.AdvanceTo(buffer.End);
                if (leftover == 0)
                {
                    return null;
                }
                throw new RpcException(StatusCode.Internal,
                    $"Incomplete message: the request stream ended with {leftover} bytes of a partial message.");
            }
            if (result.IsCanceled)
            {
                throw new OperationCanceledException(token);
            }
            _body.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private T Parse(ReadOnlySequence<byte> payload, bool compressed)
    {
        try
        {
            if (!compressed)
            {
                return _parser.ParseFrom(payload);
            }
            if (!MessageCompression.IsCompressing(_encoding))
            {
                throw new RpcException(StatusCode.Internal,
                    "Request message is marked compressed but the call's grpc-encoding is identity.");
            }
            return _parser.ParseFrom(MessageCompression.Decompress(payload.ToArray(), _maxSize));
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new RpcException(new Status(StatusCode.Internal, "Failed to deserialize the request message: " + ex.Message), innerException: ex);
        }
    }
}

/// <summary>The response stream a streaming handler writes to; each write is flushed.</summary>
internal sealed class ResponseWriter<T>(ServerCallContext call) : IServerStreamWriter<T> where T : class, IMessage<T>
{
    public Task WriteAsync(T message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        return call.WriteMessageAsync(message, flush: true, cancellationToken).AsTask();
    }
}
