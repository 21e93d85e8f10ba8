using System.Diagnostics;
using Google.Protobuf;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Grpc.Tests.Interop.V1;

namespace TuningPlatform.Grpc.Tests.Infrastructure;

/// <summary>Our implementation of the interop service; the Python server implements the same semantics.</summary>
public sealed class InteropTestService(CancellationLog log)
{
    public async Task<EchoResponse> Echo(EchoRequest request, ServerCallContext context)
    {
        if (request.DelayMs > 0)
        {
            await Task.Delay(request.DelayMs, context.CancellationToken);
        }
        if (request.ThrowException)
        {
            throw new InvalidOperationException("secret internal detail: connection string password=hunter2");
        }
        if (request.CompressResponse)
        {
            context.ResponseCompression = "gzip";
        }
        if (request.EchoMetadata)
        {
            var echoed = new Metadata();
            foreach (var entry in context.RequestHeaders)
            {
                if (entry.Key.StartsWith("x-", StringComparison.Ordinal))
                {
                    echoed.Add(entry);
                    context.ResponseTrailers.Add(entry);
                }
            }
            await context.WriteResponseHeadersAsync(echoed);
        }
        if (request.FailCode != 0)
        {
            throw new RpcException((StatusCode)request.FailCode, request.FailMessage);
        }
        return Respond(request, context, 0);
    }

    public async Task StreamOut(StreamRequest request, IServerStreamWriter<EchoResponse> responseStream, ServerCallContext context)
    {
        if (request.CompressResponse)
        {
            context.ResponseCompression = "gzip";
        }
        for (var i = 0; i < request.Count; i++)
        {
            if (request.FailAfter > 0 && i == request.FailAfter)
            {
                throw new RpcException((StatusCode)request.FailCode, $"Failed after {i} messages.");
            }
            if (request.IntervalMs > 0 && i > 0)
            {
                await Task.Delay(request.IntervalMs, context.CancellationToken);
            }
            await responseStream.WriteAsync(new EchoResponse
            {
                Sequence = i,
                Payload = ByteString.CopyFrom(Pattern(request.SizeBytes, i)),
            }, context.CancellationToken);
        }
    }

    public async Task<UploadSummary> Upload(IAsyncStreamReader<EchoRequest> requestStream, ServerCallContext context)
    {
        var summary = new UploadSummary();
        var texts = new List<string>();
        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            if (request.FailCode != 0)
            {
                // Reject the whole upload at once, without reading the rest of the stream.
                throw new RpcException((StatusCode)request.FailCode, request.FailMessage);
            }
            summary.Count++;
            summary.TotalBytes += request.Payload.Length;
            texts.Add(request.Text);
        }
        summary.JoinedText = string.Join(",", texts);
        return summary;
    }

    public async Task Chat(IAsyncStreamReader<EchoRequest> requestStream, IServerStreamWriter<EchoResponse> responseStream, ServerCallContext context)
    {
        var sequence = 0;
        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            if (request.FailCode != 0)
            {
                throw new RpcException((StatusCode)request.FailCode, request.FailMessage);
            }
            await responseStream.WriteAsync(Respond(request, context, sequence++), context.CancellationToken);
        }
    }

    public async Task<EchoResponse> WaitForCancel(EchoRequest request, ServerCallContext context)
    {
        log.Reset();
        var started = Stopwatch.StartNew();
        try
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            log.Record(started.ElapsedMilliseconds);
            throw;
        }
        return new EchoResponse();
    }

    public Task<CancellationReport> LastCancellation(CancellationQuery request, ServerCallContext context) =>
        Task.FromResult(log.Report());

    private static EchoResponse Respond(EchoRequest request, ServerCallContext context, int sequence)
    {
        var response = new EchoResponse
        {
            Text = request.Text,
            Sequence = sequence,
            Payload = request.ResponseSize > 0 ? ByteString.CopyFrom(Pattern(request.ResponseSize, sequence)) : request.Payload,
            RemainingMs = context.Deadline == DateTime.MaxValue ? -1 : (long)(context.Deadline - DateTime.UtcNow).TotalMilliseconds,
            RequestEncoding = context.GetHttpContext().Request.Headers["grpc-encoding"].ToString(),
        };
        foreach (var entry in context.RequestHeaders)
        {
            if (entry.Key.StartsWith("x-", StringComparison.Ordinal))
            {
                response.Metadata[entry.Key] = entry.IsBinary ? Convert.ToBase64String(entry.ValueBytes) : entry.Value;
            }
        }
        return response;
    }

    /// <summary>A deterministic byte pattern both sides can check without sending it back.</summary>
    public static byte[] Pattern(int size, int seed)
    {
        var bytes = new byte[size];
        for (var i = 0; i < size; i++)
        {
            bytes[i] = (byte)((i * 31 + seed * 7) & 0xFF);
        }
        return bytes;
    }
}

/// <summary>What the last WaitForCancel handler saw, shared across calls.</summary>
public sealed class CancellationLog
{
    private readonly Lock _lock = new();
    private CancellationReport _report = new();

    public void Reset()
    {
        lock (_lock)
        {
            _report = new CancellationReport();
        }
    }

    public void Record(long elapsedMs)
    {
        lock (_lock)
        {
            _report = new CancellationReport { Cancelled = true, HandlerRanMs = elapsedMs };
        }
    }

    public CancellationReport Report()
    {
        lock (_lock)
        {
            return _report.Clone();
        }
    }
}
