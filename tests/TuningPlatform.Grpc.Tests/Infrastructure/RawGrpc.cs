using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Tests.Infrastructure;

/// <summary>Hand-built HTTP requests, for the protocol cases a well-behaved client never sends.</summary>
public static class RawGrpc
{
    public static HttpClient CreateHttp2Client() => new(new SocketsHttpHandler { UseProxy = false })
    {
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromSeconds(30),
    };

    public static byte[] Frame(IMessage message, byte flag = 0)
    {
        var body = message.ToByteArray();
        return Frame(body, flag);
    }

    public static byte[] Frame(byte[] body, byte flag = 0, int? declaredLength = null)
    {
        var framed = new byte[GrpcProtocol.HeaderSize + body.Length];
        MessageFraming.WriteHeader(framed, compressed: false, declaredLength ?? body.Length);
        framed[0] = flag;
        body.CopyTo(framed, GrpcProtocol.HeaderSize);
        return framed;
    }

    public static HttpRequestMessage Request(Uri server, string path, HttpContent content, string contentType = GrpcProtocol.ContentType)
    {
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server, path))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = content,
        };
        request.Headers.TryAddWithoutValidation("te", "trailers");
        return request;
    }

    /// <summary>The grpc-status of a response, from the trailers or (Trailers-Only) the headers, after reading the body.</summary>
    public static async Task<(StatusCode? Status, string? Message, byte[] Body)> ReadStatusAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var body = await response.Content.ReadAsByteArrayAsync(ct);
        string? status = null;
        string? message = null;
        if (response.Headers.TryGetValues("grpc-status", out var headerStatus))
        {
            status = headerStatus.First();
            message = response.Headers.TryGetValues("grpc-message", out var m) ? m.First() : null;
        }
        else if (response.TrailingHeaders.TryGetValues("grpc-status", out var trailerStatus))
        {
            status = trailerStatus.First();
            message = response.TrailingHeaders.TryGetValues("grpc-message", out var m) ? m.First() : null;
        }
        return (GrpcProtocol.ParseStatus(status), message is null ? null : PercentEncoding.Decode(message), body);
    }
}

/// <summary>A request body written in the given pieces, each flushed so it travels in its own DATA frame.</summary>
public sealed class ChunkedContent(IReadOnlyList<byte[]> chunks) : HttpContent
{
    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
    {
        foreach (var chunk in chunks)
        {
            await stream.WriteAsync(chunk);
            await stream.FlushAsync();
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
