using Google.Protobuf.Reflection;
using Microsoft.Extensions.DependencyInjection;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Health.V1;
using TuningPlatform.Grpc.Reflection.V1;
using TuningPlatform.Grpc.Tests.Infrastructure;
using TuningPlatform.Grpc.Tests.Interop.V1;
using ServingStatus = TuningPlatform.Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace TuningPlatform.Grpc.Tests.Server;

[Trait("Category", "Functional")]
public sealed class HealthAndReflectionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Check_ServerAndMappedService_Serving()
    {
        await using var server = await TestGrpcServer.StartAsync();
        using var channel = server.CreateChannel();
        var health = new HealthClient(channel.CreateCallInvoker());
        Assert.Equal(ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest(), new CallOptions { CancellationToken = Ct })).Status);
        Assert.Equal(ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest { Service = "tuning.interop.v1.InteropTest" }, new CallOptions { CancellationToken = Ct })).Status);
    }

    [Fact]
    public async Task Check_UnknownService_NotFound()
    {
        await using var server = await TestGrpcServer.StartAsync();
        using var channel = server.CreateChannel();
        var health = new HealthClient(channel.CreateCallInvoker());
        var ex = await Assert.ThrowsAsync<RpcException>(() => health.CheckAsync(new HealthCheckRequest { Service = "no.Such" }, new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.NotFound, ex.StatusCode);
    }

    [Fact]
    public async Task Watch_StatusChanges_StreamsEachChangeThenEndsOnShutdown()
    {
        var server = await TestGrpcServer.StartAsync();
        try
        {
            using var channel = server.CreateChannel();
            var health = new HealthClient(channel.CreateCallInvoker());
            using var watch = health.Watch(new HealthCheckRequest { Service = "tuning.interop.v1.InteropTest" }, new CallOptions { CancellationToken = Ct });
            Assert.True(await watch.ResponseStream.MoveNext(Ct));
            Assert.Equal(ServingStatus.Serving, watch.ResponseStream.Current.Status);

            var store = server.Services.GetRequiredService<HealthStatusStore>();
            store.SetStatus("tuning.interop.v1.InteropTest", ServingStatus.NotServing);
            Assert.True(await watch.ResponseStream.MoveNext(Ct));
            Assert.Equal(ServingStatus.NotServing, watch.ResponseStream.Current.Status);

            store.SetStatus("tuning.interop.v1.InteropTest", ServingStatus.Serving);
            Assert.True(await watch.ResponseStream.MoveNext(Ct));
            Assert.Equal(ServingStatus.Serving, watch.ResponseStream.Current.Status);

            var stopping = server.DisposeAsync();
            // Shutdown turns everything NOT_SERVING and ends the stream instead of holding the host open.
            Assert.True(await watch.ResponseStream.MoveNext(Ct));
            Assert.Equal(ServingStatus.NotServing, watch.ResponseStream.Current.Status);
            Assert.False(await watch.ResponseStream.MoveNext(Ct));
            await stopping;
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Watch_UnknownService_SendsServiceUnknownAndStaysOpen()
    {
        await using var server = await TestGrpcServer.StartAsync();
        using var channel = server.CreateChannel();
        var health = new HealthClient(channel.CreateCallInvoker());
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using var watch = health.Watch(new HealthCheckRequest { Service = "later.Service" }, new CallOptions { CancellationToken = cts.Token });
        Assert.True(await watch.ResponseStream.MoveNext(Ct));
        Assert.Equal(ServingStatus.ServiceUnknown, watch.ResponseStream.Current.Status);
        server.Services.GetRequiredService<HealthStatusStore>().SetStatus("later.Service", ServingStatus.Serving);
        Assert.True(await watch.ResponseStream.MoveNext(Ct));
        Assert.Equal(ServingStatus.Serving, watch.ResponseStream.Current.Status);
    }

    [Fact]
    public async Task Reflection_ListServices_NamesEveryMappedService()
    {
        await using var server = await TestGrpcServer.StartAsync();
        var responses = await AskAsync(server, new ServerReflectionRequest { ListServices = "" });
        var names = responses[0].ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Equal(
            ["tuning.interop.v1.InteropTest", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"],
            names);
    }

    [Theory]
    [InlineData("tuning.interop.v1.InteropTest")]
    [InlineData("tuning.interop.v1.InteropTest.Echo")]
    [InlineData("tuning.interop.v1.EchoResponse")]
    [InlineData("tuning.interop.v1.EchoResponse.MetadataEntry")]
    [InlineData("tuning.interop.v1.StreamRequest.count")]
    public async Task Reflection_FileContainingSymbol_ReturnsDefiningFile(string symbol)
    {
        await using var server = await TestGrpcServer.StartAsync();
        var responses = await AskAsync(server, new ServerReflectionRequest { FileContainingSymbol = symbol });
        var file = FileDescriptorProto.Parser.ParseFrom(responses[0].FileDescriptorResponse.FileDescriptorProto[0]);
        Assert.Equal("interop/v1/interop.proto", file.Name);
        Assert.Equal("InteropTest", file.Service.Single().Name);
    }

    [Fact]
    public async Task Reflection_FileByFilename_IncludesTransitiveDependencies()
    {
        await using var server = await TestGrpcServer.StartAsync();
        var withImports = TuningPlatform.Grpc.Reflection.V1.ReflectionReflection.Descriptor;
        var responses = await AskAsync(server, new ServerReflectionRequest { FileByFilename = withImports.Name });
        var files = responses[0].FileDescriptorResponse.FileDescriptorProto.Select(FileDescriptorProto.Parser.ParseFrom).ToList();
        Assert.Equal(withImports.Name, files[0].Name);
        Assert.Equal(files.Count, files.Select(f => f.Name).Distinct().Count());
        foreach (var dependency in files.SelectMany(f => f.Dependency))
        {
            Assert.Contains(files, f => f.Name == dependency);
        }
    }

    [Fact]
    public async Task Reflection_UnknownSymbolAndFile_NotFoundErrorResponses()
    {
        await using var server = await TestGrpcServer.StartAsync();
        var responses = await AskAsync(server,
            new ServerReflectionRequest { FileContainingSymbol = "no.Such.Symbol" },
            new ServerReflectionRequest { FileByFilename = "nope.proto" },
            new ServerReflectionRequest { AllExtensionNumbersOfType = "tuning.interop.v1.EchoRequest" });
        Assert.Equal((int)StatusCode.NotFound, responses[0].ErrorResponse.ErrorCode);
        Assert.Equal((int)StatusCode.NotFound, responses[1].ErrorResponse.ErrorCode);
        Assert.Equal("tuning.interop.v1.EchoRequest", responses[2].AllExtensionNumbersResponse.BaseTypeName);
        Assert.Equal("no.Such.Symbol", responses[0].OriginalRequest.FileContainingSymbol);
    }

    [Fact]
    public async Task Reflection_V1Alpha_AnswersLikeV1()
    {
        await using var server = await TestGrpcServer.StartAsync();
        using var channel = server.CreateChannel();
        var client = new DynamicClient(channel.CreateCallInvoker(), TuningPlatform.Grpc.Reflection.V1Alpha.ReflectionReflection.Descriptor.Services[0]);
        using var call = client.Duplex<TuningPlatform.Grpc.Reflection.V1Alpha.ServerReflectionRequest, TuningPlatform.Grpc.Reflection.V1Alpha.ServerReflectionResponse>(
            "ServerReflectionInfo", new CallOptions { CancellationToken = Ct });
        await call.RequestStream.WriteAsync(new TuningPlatform.Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "*" }, Ct);
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        Assert.Contains(call.ResponseStream.Current.ListServicesResponse.Service, s => s.Name == "tuning.interop.v1.InteropTest");
    }

    [Fact]
    public async Task ApiKey_MissingOrWrong_UnauthenticatedButHealthStaysOpen()
    {
        await using var server = await TestGrpcServer.StartAsync(o => o.ApiKey = "s3cret");
        using var anonymous = server.CreateChannel();
        var ex = await Assert.ThrowsAsync<RpcException>(() => new InteropClient(anonymous.CreateCallInvoker()).EchoAsync(new EchoRequest(), new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        using var wrong = server.CreateChannel(new GrpcChannelOptions { ApiKey = "guess" });
        ex = await Assert.ThrowsAsync<RpcException>(() => new InteropClient(wrong.CreateCallInvoker()).EchoAsync(new EchoRequest(), new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Equal(ServingStatus.Serving, (await new HealthClient(anonymous.CreateCallInvoker()).CheckAsync(new HealthCheckRequest(), new CallOptions { CancellationToken = Ct })).Status);
        using var authorised = server.CreateChannel(new GrpcChannelOptions { ApiKey = "s3cret" });
        Assert.Equal("in", (await new InteropClient(authorised.CreateCallInvoker()).EchoAsync(new EchoRequest { Text = "in" }, new CallOptions { CancellationToken = Ct })).Text);
    }

    [Fact]
    public async Task DetailedErrors_On_ExceptionDescribed()
    {
        await using var server = await TestGrpcServer.StartAsync(o => o.EnableDetailedErrors = true);
        using var channel = server.CreateChannel();
        var ex = await Assert.ThrowsAsync<RpcException>(() => new InteropClient(channel.CreateCallInvoker()).EchoAsync(new EchoRequest { ThrowException = true }, new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unknown, ex.StatusCode);
        Assert.Contains("InvalidOperationException", ex.Status.Detail);
    }

    [Fact]
    public async Task Unary_NoServerAndNoRetries_Unavailable()
    {
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{FreePort()}", new GrpcChannelOptions { MaxAttempts = 1 });
        var ex = await Assert.ThrowsAsync<RpcException>(() => new InteropClient(channel.CreateCallInvoker()).EchoAsync(new EchoRequest(), new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
    }

    [Fact]
    public async Task Unary_ServerStartsLate_RetriesBridgeTheGap()
    {
        var port = FreePort();
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}", new GrpcChannelOptions
        {
            MaxAttempts = 8,
            InitialBackoff = TimeSpan.FromMilliseconds(200),
            MaxBackoff = TimeSpan.FromMilliseconds(400),
        });
        var call = new InteropClient(channel.CreateCallInvoker()).EchoAsync(new EchoRequest { Text = "late" }, new CallOptions { CancellationToken = Ct });
        await Task.Delay(300, Ct);
        await using var server = await TestGrpcServer.StartAsync(port: port);
        Assert.Equal("late", (await call).Text);
    }

    private static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task<List<ServerReflectionResponse>> AskAsync(TestGrpcServer server, params ServerReflectionRequest[] requests)
    {
        using var channel = server.CreateChannel();
        var client = new DynamicClient(channel.CreateCallInvoker(), TuningPlatform.Grpc.Reflection.V1.ReflectionReflection.Descriptor.Services[0]);
        using var call = client.Duplex<ServerReflectionRequest, ServerReflectionResponse>("ServerReflectionInfo", new CallOptions { CancellationToken = Ct });
        var responses = new List<ServerReflectionResponse>();
        foreach (var request in requests)
        {
            await call.RequestStream.WriteAsync(request, Ct);
            Assert.True(await call.ResponseStream.MoveNext(Ct));
            responses.Add(call.ResponseStream.Current);
        }
        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext(Ct));
        return responses;
    }
}
