using System.Net;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf;
using TuningPlatform.Grpc.Protocol;
using TuningPlatform.Grpc.Tests.Infrastructure;
using TuningPlatform.Grpc.Tests.Interop.V1;

namespace TuningPlatform.Grpc.Tests.Server;

/// <summary>What the server does with requests that break the protocol: a precise status, never a crash or a stack trace.</summary>
[Trait("Category", "Functional")]
public sealed class ProtocolErrorTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private const string EchoPath = "/tuning.interop.v1.InteropTest/Echo";
    private const string UploadPath = "/tuning.interop.v1.InteropTest/Upload";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private Uri Server => fixture.Server.Address;

    private static async Task<(StatusCode? Status, string? Message, byte[] Body, HttpResponseMessage Response)> SendAsync(HttpRequestMessage request)
    {
        using var http = RawGrpc.CreateHttp2Client();
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        var (status, message, body) = await RawGrpc.ReadStatusAsync(response, Ct);
        return (status, message, body, response);
    }

    [Fact]
    public async Task Post_WrongContentType_Http415()
    {
        var (_, message, _, response) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame(new EchoRequest())), "application/json"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Contains("application/json", message);
    }

    [Fact]
    public async Task Post_GrpcJsonContentType_Http415()
    {
        var (_, _, _, response) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent([]), "application/grpc+json"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }

    [Fact]
    public async Task Post_Http11_Http426()
    {
        using var http = new HttpClient();
        var content = new ByteArrayContent(RawGrpc.Frame(new EchoRequest()));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        using var response = await http.PostAsync(new Uri(fixture.Server.Http1Address!, EchoPath), content, Ct);
        Assert.Equal(HttpStatusCode.UpgradeRequired, response.StatusCode);
    }

    [Fact]
    public async Task RawHttp11Bytes_OnHttp2OnlyPort_ServerSurvives()
    {
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(Server.Host, Server.Port, Ct);
            var stream = socket.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), Ct);
            var buffer = new byte[256];
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            try
            {
                _ = await stream.ReadAsync(buffer, timeout.Token);
            }
            catch (IOException)
            {
            }
        }
        var response = await fixture.Client.EchoAsync(new EchoRequest { Text = "alive" }, new Client.CallOptions { CancellationToken = Ct });
        Assert.Equal("alive", response.Text);
    }

    [Fact]
    public async Task Post_UnknownService_UnimplementedTrailersOnly()
    {
        var (status, message, body, response) = await SendAsync(RawGrpc.Request(Server, "/no.such.Service/Method", new ByteArrayContent(RawGrpc.Frame(new EchoRequest()))));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(StatusCode.Unimplemented, status);
        Assert.Contains("no.such.Service", message);
        Assert.Empty(body);
        Assert.True(response.Headers.Contains("grpc-status"), "Trailers-Only puts the status in the headers");
    }

    [Fact]
    public async Task Post_UnknownMethodOfKnownService_Unimplemented()
    {
        var (status, _, _, _) = await SendAsync(RawGrpc.Request(Server, "/tuning.interop.v1.InteropTest/Nope", new ByteArrayContent(RawGrpc.Frame(new EchoRequest()))));
        Assert.Equal(StatusCode.Unimplemented, status);
    }

    [Fact]
    public async Task Unary_NoRequestMessage_Unimplemented()
    {
        var (status, message, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent([])));
        Assert.Equal(StatusCode.Unimplemented, status);
        Assert.Contains("no request message", message);
    }

    [Fact]
    public async Task Unary_TwoRequestMessages_Unimplemented()
    {
        var frame = RawGrpc.Frame(new EchoRequest { Text = "a" });
        var (status, message, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent([.. frame, .. frame])));
        Assert.Equal(StatusCode.Unimplemented, status);
        Assert.Contains("more than one", message);
    }

    [Fact]
    public async Task Unary_TruncatedMessage_Internal()
    {
        var frame = RawGrpc.Frame(new EchoRequest { Text = "truncated" });
        var (status, message, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent(frame[..^3])));
        Assert.Equal(StatusCode.Internal, status);
        Assert.Contains("Incomplete message", message);
    }

    [Fact]
    public async Task Unary_TruncatedPrefix_Internal()
    {
        var (status, _, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent([0, 0, 0])));
        Assert.Equal(StatusCode.Internal, status);
    }

    [Fact]
    public async Task Unary_InvalidCompressedFlag_Internal()
    {
        var (status, message, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame(new EchoRequest(), flag: 7))));
        Assert.Equal(StatusCode.Internal, status);
        Assert.Contains("compressed flag is 7", message);
    }

    [Fact]
    public async Task Unary_CompressedFlagWithoutEncoding_Internal()
    {
        var (status, message, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame(new EchoRequest(), flag: 1))));
        Assert.Equal(StatusCode.Internal, status);
        Assert.Contains("identity", message);
    }

    [Fact]
    public async Task Unary_UnsupportedEncoding_UnimplementedWithAcceptEncoding()
    {
        var request = RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame(new EchoRequest(), flag: 1)));
        request.Headers.TryAddWithoutValidation("grpc-encoding", "snappy");
        var (status, message, _, response) = await SendAsync(request);
        Assert.Equal(StatusCode.Unimplemented, status);
        Assert.Contains("snappy", message);
        Assert.Contains("gzip", response.Headers.GetValues("grpc-accept-encoding").First());
    }

    [Fact]
    public async Task Unary_CorruptGzip_Internal()
    {
        var request = RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame([1, 2, 3, 4, 5, 6], flag: 1)));
        request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");
        var (status, message, _, _) = await SendAsync(request);
        Assert.Equal(StatusCode.Internal, status);
        Assert.Contains("decompress", message);
    }

    [Fact]
    public async Task Unary_GarbageProtobuf_Internal()
    {
        var (status, message, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame([0xFF, 0xFF, 0xFF, 0xFF]))));
        Assert.Equal(StatusCode.Internal, status);
        Assert.Contains("deserialize", message);
    }

    [Fact]
    public async Task Unary_DeclaredLengthOverLimit_ResourceExhaustedBeforeBodyArrives()
    {
        // The prefix claims 100 MB but only a few bytes follow: the server must refuse on the prefix alone.
        var (status, _, _, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame([1, 2, 3], declaredLength: 100_000_000))));
        Assert.Equal(StatusCode.ResourceExhausted, status);
    }

    [Fact]
    public async Task Unary_MalformedTimeout_Internal()
    {
        var request = RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame(new EchoRequest())));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "10 seconds");
        var (status, message, _, _) = await SendAsync(request);
        Assert.Equal(StatusCode.Internal, status);
        Assert.Contains("grpc-timeout", message);
    }

    [Fact]
    public async Task Unary_MessageSplitIntoOneByteDataFrames_Reassembled()
    {
        var frame = RawGrpc.Frame(new EchoRequest { Text = "split across frames" });
        var chunks = frame.Select(b => new[] { b }).ToList();
        var (status, _, body, _) = await SendAsync(RawGrpc.Request(Server, EchoPath, new ChunkedContent(chunks)));
        Assert.Equal(StatusCode.OK, status);
        var response = EchoResponse.Parser.ParseFrom(body.AsSpan(GrpcProtocol.HeaderSize));
        Assert.Equal("split across frames", response.Text);
    }

    [Fact]
    public async Task ClientStream_ManyMessagesInOneDataFrameAndOneSplitAcrossTwo_AllRead()
    {
        var a = RawGrpc.Frame(new EchoRequest { Text = "a", Payload = ByteString.CopyFrom(new byte[10]) });
        var b = RawGrpc.Frame(new EchoRequest { Text = "b" });
        var c = RawGrpc.Frame(new EchoRequest { Text = "c", Payload = ByteString.CopyFrom(new byte[20]) });
        byte[] first = [.. a, .. b, .. c[..4]];
        var second = c[4..];
        var (status, _, body, _) = await SendAsync(RawGrpc.Request(Server, UploadPath, new ChunkedContent([first, second])));
        Assert.Equal(StatusCode.OK, status);
        var summary = UploadSummary.Parser.ParseFrom(body.AsSpan(GrpcProtocol.HeaderSize));
        Assert.Equal(3, summary.Count);
        Assert.Equal(30, summary.TotalBytes);
        Assert.Equal("a,b,c", summary.JoinedText);
    }

    [Fact]
    public async Task Unary_GzipResponseRequested_ResponseFrameIsCompressed()
    {
        var request = RawGrpc.Request(Server, EchoPath, new ByteArrayContent(RawGrpc.Frame(new EchoRequest { ResponseSize = 10_000, CompressResponse = true })));
        request.Headers.TryAddWithoutValidation("grpc-accept-encoding", "gzip");
        var (status, _, body, response) = await SendAsync(request);
        Assert.Equal(StatusCode.OK, status);
        Assert.Equal("gzip", response.Headers.GetValues("grpc-encoding").Single());
        Assert.Equal(1, body[0]);
        var payload = MessageCompression.Decompress(body.AsMemory(GrpcProtocol.HeaderSize), 1_000_000);
        Assert.Equal(10_000, EchoResponse.Parser.ParseFrom(payload).Payload.Length);
    }

    [Fact]
    public async Task Unary_GzipResponseRequestedButNotAccepted_SentUncompressed()
    {
        var (status, _, body, response) = await SendAsync(RawGrpc.Request(Server, EchoPath,
            new ByteArrayContent(RawGrpc.Frame(new EchoRequest { ResponseSize = 100, CompressResponse = true }))));
        Assert.Equal(StatusCode.OK, status);
        Assert.False(response.Headers.Contains("grpc-encoding"));
        Assert.Equal(0, body[0]);
    }
}
