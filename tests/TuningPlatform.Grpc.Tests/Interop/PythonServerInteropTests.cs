using System.Diagnostics;
using System.Text;
using Google.Protobuf;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Health.V1;
using TuningPlatform.Grpc.Tests.Infrastructure;
using TuningPlatform.Grpc.Tests.Interop.V1;
using ServingStatus = TuningPlatform.Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace TuningPlatform.Grpc.Tests.Interop;

/// <summary>A grpcio (Python) server on one side, started once for the class.</summary>
public sealed class PythonServerFixture : IAsyncLifetime
{
    private PythonServer? _server;

    public GrpcChannel? Channel { get; private set; }

    public async ValueTask InitializeAsync()
    {
        if (PythonGrpc.IsAvailable)
        {
            _server = await PythonGrpc.StartServerAsync(CancellationToken.None);
            Channel = GrpcChannel.ForAddress(_server.Address, new GrpcChannelOptions { MaxReceiveMessageSize = 20 * 1024 * 1024 });
        }
    }

    public async ValueTask DisposeAsync()
    {
        Channel?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>Our client against Google's grpcio server: every call kind and feature the other direction covers.</summary>
[Trait("Category", "Interop")]
public sealed class PythonServerInteropTests(PythonServerFixture fixture) : IClassFixture<PythonServerFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddSeconds(60) };

    private InteropClient Client()
    {
        PythonGrpc.RequireOrSkip();
        return new InteropClient(fixture.Channel!.CreateCallInvoker());
    }

    [Fact]
    public async Task Unary_Echo_RoundTrips()
    {
        var response = await Client().EchoAsync(new EchoRequest { Text = "héllo", Payload = ByteString.CopyFrom(1, 2, 3) }, Options);
        Assert.Equal("héllo", response.Text);
        Assert.Equal([1, 2, 3], response.Payload.ToByteArray());
    }

    [Fact]
    public async Task Unary_TenMegabyteMessages_RoundTrip()
    {
        const int size = 10 * 1024 * 1024;
        var response = await Client().EchoAsync(new EchoRequest { Payload = ByteString.CopyFrom(InteropTestService.Pattern(size, 3)), ResponseSize = size }, Options);
        Assert.Equal(InteropTestService.Pattern(size, 0), response.Payload.ToByteArray());
    }

    [Fact]
    public async Task ServerStreaming_HundredMessages_InOrder()
    {
        using var call = Client().StreamOut(new StreamRequest { Count = 100, SizeBytes = 500 }, Options);
        var sequences = new List<int>();
        await foreach (var message in call.ResponseStream.ReadAllAsync(Ct))
        {
            Assert.Equal(InteropTestService.Pattern(500, message.Sequence), message.Payload.ToByteArray());
            sequences.Add(message.Sequence);
        }
        Assert.Equal(Enumerable.Range(0, 100), sequences);
    }

    [Fact]
    public async Task ServerStreaming_ErrorAfterMessages_MessagesThenStatus()
    {
        using var call = Client().StreamOut(new StreamRequest { Count = 10, FailAfter = 3, FailCode = (int)StatusCode.Aborted }, Options);
        var received = 0;
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(Ct))
            {
                received++;
            }
        });
        Assert.Equal(3, received);
        Assert.Equal(StatusCode.Aborted, ex.StatusCode);
        Assert.Equal("Failed after 3 messages.", ex.Status.Detail);
    }

    [Fact]
    public async Task ClientStreaming_FortyMessages_Summarised()
    {
        using var call = Client().Upload(Options);
        for (var i = 0; i < 40; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Text = i.ToString(System.Globalization.CultureInfo.InvariantCulture), Payload = ByteString.CopyFrom(new byte[i]) }, Ct);
        }
        await call.RequestStream.CompleteAsync();
        var summary = await call;
        Assert.Equal(40, summary.Count);
        Assert.Equal(Enumerable.Range(0, 40).Sum(), summary.TotalBytes);
    }

    [Fact]
    public async Task Bidirectional_PingPong_EachReplyBeforeNextRequest()
    {
        using var call = Client().Chat(Options);
        for (var i = 0; i < 10; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Text = "ping " + i }, Ct);
            Assert.True(await call.ResponseStream.MoveNext(Ct));
            Assert.Equal("ping " + i, call.ResponseStream.Current.Text);
        }
        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext(Ct));
    }

    [Fact]
    public async Task Compression_GzipBothWays_Decoded()
    {
        var payload = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("compressible ", 5000)));
        var response = await Client().EchoAsync(new EchoRequest { Payload = ByteString.CopyFrom(payload), ResponseSize = 100_000, CompressResponse = true },
            Options with { WriteCompression = "gzip" });
        Assert.Equal(InteropTestService.Pattern(100_000, 0), response.Payload.ToByteArray());
    }

    [Fact]
    public async Task Metadata_TextAndBinary_EchoedInHeadersAndTrailers()
    {
        var binary = new byte[] { 0, 1, 2, 250, 255 };
        using var call = Client().EchoCall(new EchoRequest { EchoMetadata = true }, Options with { Headers = new Metadata { { "x-text", "hello world" }, { "x-data-bin", binary } } });
        var response = await call;
        Assert.Equal("hello world", response.Metadata["x-text"]);
        Assert.Equal(Convert.ToBase64String(binary), response.Metadata["x-data-bin"]);
        Assert.Equal(binary, (await call.ResponseHeadersAsync).GetValueBytes("x-data-bin"));
        Assert.Equal("hello world", call.GetTrailers().GetValue("x-text"));
        Assert.Equal(binary, call.GetTrailers().GetValueBytes("x-data-bin"));
    }

    [Fact]
    public async Task ErrorStatus_UnicodeDetail_Decoded()
    {
        const string detail = "café ✓ 100% done";
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client().EchoAsync(new EchoRequest { FailCode = (int)StatusCode.NotFound, FailMessage = detail }, Options));
        Assert.Equal(StatusCode.NotFound, ex.StatusCode);
        Assert.Equal(detail, ex.Status.Detail);
    }

    [Fact]
    public async Task Deadline_PropagatedAndEnforced()
    {
        var client = Client();
        var response = await client.EchoAsync(new EchoRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(30), Ct));
        Assert.InRange(response.RemainingMs, 20_000, 30_000);
        var stopwatch = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest { DelayMs = 10_000 }, CallOptions.WithTimeout(TimeSpan.FromMilliseconds(300), Ct)));
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"took {stopwatch.Elapsed}");
    }

    [Fact]
    public async Task Cancellation_MidCall_ReachesGrpcioHandler()
    {
        var client = Client();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var call = client.WaitForCancelAsync(new EchoRequest(), new CallOptions { CancellationToken = cts.Token });
        await Task.Delay(300, Ct);
        cts.Cancel();
        Assert.Equal(StatusCode.Cancelled, (await Assert.ThrowsAsync<RpcException>(() => call)).StatusCode);
        var until = DateTime.UtcNow.AddSeconds(3);
        while (!(await client.LastCancellationAsync(Options)).Cancelled && DateTime.UtcNow < until)
        {
            await Task.Delay(20, Ct);
        }
        Assert.True((await client.LastCancellationAsync(Options)).Cancelled, "grpcio handler never saw the cancellation");
    }

    [Fact]
    public async Task Cancellation_MidStream_StopsAndServerKeepsServing()
    {
        var client = Client();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using (var call = client.StreamOut(new StreamRequest { Count = 100_000, IntervalMs = 5 }, new CallOptions { CancellationToken = cts.Token }))
        {
            for (var i = 0; i < 3; i++)
            {
                Assert.True(await call.ResponseStream.MoveNext(Ct));
            }
            cts.Cancel();
            Assert.Equal(StatusCode.Cancelled, (await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct))).StatusCode);
        }
        Assert.Equal("alive", (await client.EchoAsync(new EchoRequest { Text = "alive" }, Options)).Text);
    }

    [Fact]
    public async Task Errors_UnimplementedUnknownAndHandlerException_MappedStatuses()
    {
        var client = Client();
        Assert.Equal(StatusCode.Unimplemented, (await Assert.ThrowsAsync<RpcException>(() => client.NotImplementedHereAsync(new EchoRequest(), Options))).StatusCode);
        Assert.Equal(StatusCode.Unknown, (await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest { ThrowException = true }, Options))).StatusCode);
        // The grpcio server has no reflection service: an unknown service for it.
        var unknown = new DynamicClient(fixture.Channel!.CreateCallInvoker(), TuningPlatform.Grpc.Reflection.V1.ReflectionReflection.Descriptor.Services[0]);
        using var call = unknown.Duplex<TuningPlatform.Grpc.Reflection.V1.ServerReflectionRequest, TuningPlatform.Grpc.Reflection.V1.ServerReflectionResponse>("ServerReflectionInfo", Options);
        Assert.Equal(StatusCode.Unimplemented, (await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct))).StatusCode);
    }

    [Fact]
    public async Task ResponseOverClientLimit_ResourceExhausted()
    {
        PythonGrpc.RequireOrSkip();
        using var channel = GrpcChannel.ForAddress(fixture.Channel!.Address, new GrpcChannelOptions { MaxReceiveMessageSize = 1000 });
        var ex = await Assert.ThrowsAsync<RpcException>(() => new InteropClient(channel.CreateCallInvoker()).EchoAsync(new EchoRequest { ResponseSize = 5000 }, Options));
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
    }

    [Fact]
    public async Task ConcurrentCalls_SixtyFour_AllSucceed()
    {
        var client = Client();
        var responses = await Task.WhenAll(Enumerable.Range(0, 64).Select(i => client.EchoAsync(new EchoRequest { Text = "c" + i }, Options)));
        Assert.Equal(Enumerable.Range(0, 64).Select(i => "c" + i), responses.Select(r => r.Text));
    }

    [Fact]
    public async Task Health_CheckAndWatch_OnGrpcioServer()
    {
        PythonGrpc.RequireOrSkip();
        var health = new HealthClient(fixture.Channel!.CreateCallInvoker());
        Assert.Equal(ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest(), Options)).Status);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => health.CheckAsync(new HealthCheckRequest { Service = "no.Such" }, Options))).StatusCode);
        using var watch = health.Watch(new HealthCheckRequest { Service = "tuning.interop.v1.InteropTest" }, Options);
        Assert.True(await watch.ResponseStream.MoveNext(Ct));
        Assert.Equal(ServingStatus.Serving, watch.ResponseStream.Current.Status);
    }

}
