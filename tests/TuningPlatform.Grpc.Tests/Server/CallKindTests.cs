using System.Diagnostics;
using System.Text;
using Google.Protobuf;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Tests.Infrastructure;
using TuningPlatform.Grpc.Tests.Interop.V1;

namespace TuningPlatform.Grpc.Tests.Server;

/// <summary>Our client against our server over real h2c sockets: every call kind and the features on top.</summary>
[Trait("Category", "Functional")]
public sealed class CallKindTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private InteropClient Client => fixture.Client;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Echo_Unary_ReturnsTextAndPayload()
    {
        var response = await Client.EchoAsync(new EchoRequest { Text = "héllo", Payload = ByteString.CopyFrom(1, 2, 3) }, new CallOptions { CancellationToken = Ct });
        Assert.Equal("héllo", response.Text);
        Assert.Equal([1, 2, 3], response.Payload.ToByteArray());
        Assert.Equal(-1, response.RemainingMs);
    }

    [Fact]
    public async Task Echo_TenMegabyteMessages_RoundTrip()
    {
        var payload = InteropTestService.Pattern(10 * 1024 * 1024, 3);
        var response = await Client.EchoAsync(new EchoRequest { Payload = ByteString.CopyFrom(payload), ResponseSize = 10 * 1024 * 1024 },
            new CallOptions { CancellationToken = Ct });
        Assert.Equal(InteropTestService.Pattern(10 * 1024 * 1024, 0), response.Payload.ToByteArray());
    }

    [Fact]
    public async Task StreamOut_ServerStreaming_DeliversEveryMessageInOrder()
    {
        using var call = Client.StreamOut(new StreamRequest { Count = 200, SizeBytes = 1000 }, new CallOptions { CancellationToken = Ct });
        var sequence = 0;
        await foreach (var message in call.ResponseStream.ReadAllAsync(Ct))
        {
            Assert.Equal(sequence, message.Sequence);
            Assert.Equal(InteropTestService.Pattern(1000, sequence), message.Payload.ToByteArray());
            sequence++;
        }
        Assert.Equal(200, sequence);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task StreamOut_EmptyStream_EndsOk()
    {
        using var call = Client.StreamOut(new StreamRequest { Count = 0 }, new CallOptions { CancellationToken = Ct });
        Assert.False(await call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task StreamOut_FailureAfterMessages_DeliversMessagesThenStatusInTrailers()
    {
        using var call = Client.StreamOut(new StreamRequest { Count = 10, FailAfter = 3, FailCode = (int)StatusCode.Aborted }, new CallOptions { CancellationToken = Ct });
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
    public async Task Upload_ClientStreaming_SummarisesEveryMessage()
    {
        using var call = Client.Upload(new CallOptions { CancellationToken = Ct });
        for (var i = 0; i < 50; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Text = i.ToString(System.Globalization.CultureInfo.InvariantCulture), Payload = ByteString.CopyFrom(new byte[i]) }, Ct);
        }
        await call.RequestStream.CompleteAsync();
        var summary = await call;
        Assert.Equal(50, summary.Count);
        Assert.Equal(Enumerable.Range(0, 50).Sum(), summary.TotalBytes);
        Assert.Equal(string.Join(",", Enumerable.Range(0, 50)), summary.JoinedText);
    }

    [Fact]
    public async Task Upload_NoMessages_ReturnsEmptySummary()
    {
        using var call = Client.Upload(new CallOptions { CancellationToken = Ct });
        await call.RequestStream.CompleteAsync();
        var summary = await call;
        Assert.Equal(0, summary.Count);
    }

    [Fact]
    public async Task Upload_ServerRejectsEarly_LaterWritesAndResponseCarryItsStatus()
    {
        using var call = Client.Upload(new CallOptions { CancellationToken = Ct });
        await call.RequestStream.WriteAsync(new EchoRequest { FailCode = (int)StatusCode.FailedPrecondition, FailMessage = "upload refused" }, Ct);
        var response = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, response.StatusCode);
        // The stream is gone: a write now reports why (the server's status), not a transport error.
        RpcException? writeFailure = null;
        for (var i = 0; i < 200 && writeFailure is null; i++)
        {
            try
            {
                await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFrom(new byte[1000]) }, Ct);
                await Task.Delay(10, Ct);
            }
            catch (RpcException ex)
            {
                writeFailure = ex;
            }
        }
        Assert.NotNull(writeFailure);
        Assert.Equal(StatusCode.FailedPrecondition, writeFailure.StatusCode);
        Assert.Equal("upload refused", writeFailure.Status.Detail);
    }

    [Fact]
    public async Task Chat_Bidirectional_AnswersEachMessageBeforeTheNextIsSent()
    {
        using var call = Client.Chat(new CallOptions { CancellationToken = Ct });
        for (var i = 0; i < 20; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Text = "ping " + i }, Ct);
            Assert.True(await call.ResponseStream.MoveNext(Ct));
            Assert.Equal("ping " + i, call.ResponseStream.Current.Text);
            Assert.Equal(i, call.ResponseStream.Current.Sequence);
        }
        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext(Ct));
    }

    [Fact]
    public async Task Chat_ServerFailsMidStream_ClientSeesStatus()
    {
        using var call = Client.Chat(new CallOptions { CancellationToken = Ct });
        await call.RequestStream.WriteAsync(new EchoRequest { Text = "ok" }, Ct);
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        await call.RequestStream.WriteAsync(new EchoRequest { FailCode = (int)StatusCode.FailedPrecondition, FailMessage = "stop" }, Ct);
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Equal("stop", ex.Status.Detail);
    }

    [Fact]
    public async Task Echo_GzipRequest_ServerDecompresses()
    {
        var payload = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("compressible ", 5000)));
        var response = await Client.EchoAsync(new EchoRequest { Payload = ByteString.CopyFrom(payload) },
            new CallOptions { WriteCompression = "gzip", CancellationToken = Ct });
        Assert.Equal("gzip", response.RequestEncoding);
        Assert.Equal(payload, response.Payload.ToByteArray());
    }

    [Fact]
    public async Task Echo_GzipResponse_ClientDecompresses()
    {
        using var call = Client.EchoCall(new EchoRequest { ResponseSize = 100_000, CompressResponse = true }, new CallOptions { CancellationToken = Ct });
        var response = await call;
        Assert.Equal(InteropTestService.Pattern(100_000, 0), response.Payload.ToByteArray());
    }

    [Fact]
    public async Task Echo_CustomMetadata_EchoedInHeadersAndTrailersIncludingBinary()
    {
        var binary = new byte[] { 0, 1, 2, 250, 255 };
        var headers = new Metadata { { "x-text", "hello world" }, { "x-data-bin", binary } };
        using var call = Client.EchoCall(new EchoRequest { EchoMetadata = true }, new CallOptions { Headers = headers, CancellationToken = Ct });
        var response = await call;
        Assert.Equal("hello world", response.Metadata["x-text"]);
        Assert.Equal(Convert.ToBase64String(binary), response.Metadata["x-data-bin"]);
        var responseHeaders = await call.ResponseHeadersAsync;
        Assert.Equal("hello world", responseHeaders.GetValue("x-text"));
        Assert.Equal(binary, responseHeaders.GetValueBytes("x-data-bin"));
        var trailers = call.GetTrailers();
        Assert.Equal("hello world", trailers.GetValue("x-text"));
        Assert.Equal(binary, trailers.GetValueBytes("x-data-bin"));
    }

    [Fact]
    public async Task Echo_ErrorWithUnicodeAndPercent_MessageSurvivesPercentEncoding()
    {
        const string detail = "café ✓ 100% done\nnext line";
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EchoAsync(
            new EchoRequest { FailCode = (int)StatusCode.NotFound, FailMessage = detail }, new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.NotFound, ex.StatusCode);
        Assert.Equal(detail, ex.Status.Detail);
    }

    [Fact]
    public async Task Echo_Deadline_ServerSeesRemainingTime()
    {
        var response = await Client.EchoAsync(new EchoRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(30), Ct));
        Assert.InRange(response.RemainingMs, 20_000, 30_000);
    }

    [Fact]
    public async Task Echo_DeadlineShorterThanHandler_FailsWithDeadlineExceededPromptly()
    {
        var stopwatch = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EchoAsync(new EchoRequest { DelayMs = 10_000 },
            CallOptions.WithTimeout(TimeSpan.FromMilliseconds(200), Ct)));
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"took {stopwatch.Elapsed}");
    }

    [Fact]
    public async Task Echo_DeadlineAlreadyPast_FailsWithoutCalling()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EchoAsync(new EchoRequest(),
            new CallOptions { Deadline = DateTime.UtcNow.AddSeconds(-1), CancellationToken = Ct }));
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
    }

    [Fact]
    public async Task WaitForCancel_ClientCancels_HandlerTokenFiresPromptly()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var call = Client.WaitForCancelAsync(new EchoRequest(), new CallOptions { CancellationToken = cts.Token });
        await Task.Delay(300, Ct);
        cts.Cancel();
        var ex = await Assert.ThrowsAsync<RpcException>(() => call);
        Assert.Equal(StatusCode.Cancelled, ex.StatusCode);
        var report = await PollCancellationAsync();
        Assert.True(report.Cancelled, "the server handler never saw the cancellation");
    }

    [Fact]
    public async Task WaitForCancel_DeadlinePasses_HandlerTokenFires()
    {
        // The deadline runs from the client's start, so it is timed there; the handler may begin later (a loaded
        // machine delays it), and only has to see its token fire before the deadline is long gone.
        var stopwatch = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.WaitForCancelAsync(new EchoRequest(),
            CallOptions.WithTimeout(TimeSpan.FromMilliseconds(300), Ct)));
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        Assert.InRange(stopwatch.ElapsedMilliseconds, 290, 3000);
        var report = await PollCancellationAsync();
        Assert.True(report.Cancelled);
        Assert.InRange(report.HandlerRanMs, 0, 3000);
    }

    [Fact]
    public async Task StreamOut_ClientCancelsMidStream_StopsAndServerKeepsServing()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using (var call = Client.StreamOut(new StreamRequest { Count = 10_000, IntervalMs = 5 }, new CallOptions { CancellationToken = cts.Token }))
        {
            for (var i = 0; i < 3; i++)
            {
                Assert.True(await call.ResponseStream.MoveNext(Ct));
            }
            cts.Cancel();
            var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
            Assert.Equal(StatusCode.Cancelled, ex.StatusCode);
        }
        var after = await Client.EchoAsync(new EchoRequest { Text = "still here" }, new CallOptions { CancellationToken = Ct });
        Assert.Equal("still here", after.Text);
    }

    [Fact]
    public async Task NotImplementedHere_MethodWithoutImplementation_Unimplemented()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.NotImplementedHereAsync(new EchoRequest(), new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
    }

    [Fact]
    public async Task Echo_HandlerThrows_UnknownWithoutInternals()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EchoAsync(new EchoRequest { ThrowException = true }, new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unknown, ex.StatusCode);
        Assert.Equal("Exception was thrown by handler.", ex.Status.Detail);
        Assert.DoesNotContain("hunter2", ex.Status.Detail);
    }

    [Fact]
    public async Task Echo_RequestOverServerLimit_ResourceExhausted()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EchoAsync(
            new EchoRequest { Payload = ByteString.CopyFrom(new byte[TestGrpcServer.MaxReceiveMessageSize + 1]) }, new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Contains(TestGrpcServer.MaxReceiveMessageSize.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Status.Detail);
    }

    [Fact]
    public async Task Echo_ResponseOverClientLimit_ResourceExhausted()
    {
        using var channel = GrpcChannel.ForAddress(fixture.Server.Address, new GrpcChannelOptions { MaxReceiveMessageSize = 1000 });
        var client = new InteropClient(channel.CreateCallInvoker());
        var ex = await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest { ResponseSize = 5000 }, new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
    }

    [Fact]
    public async Task Echo_SixtyFourConcurrentCalls_AllSucceed()
    {
        var calls = Enumerable.Range(0, 64).Select(i => Client.EchoAsync(new EchoRequest { Text = "c" + i }, new CallOptions { CancellationToken = Ct }));
        var responses = await Task.WhenAll(calls);
        Assert.Equal(Enumerable.Range(0, 64).Select(i => "c" + i), responses.Select(r => r.Text));
    }

    private async Task<CancellationReport> PollCancellationAsync()
    {
        var until = DateTime.UtcNow.AddSeconds(3);
        CancellationReport report;
        do
        {
            report = await Client.LastCancellationAsync(new CallOptions { CancellationToken = Ct });
            if (report.Cancelled)
            {
                return report;
            }
            await Task.Delay(20, Ct);
        }
        while (DateTime.UtcNow < until);
        return report;
    }
}
