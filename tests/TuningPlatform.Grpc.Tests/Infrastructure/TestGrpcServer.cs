using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Grpc.Tests.Interop.V1;

namespace TuningPlatform.Grpc.Tests.Infrastructure;

/// <summary>A real Kestrel host on 127.0.0.1 with an HTTP/2-only gRPC port (and optionally an HTTP/1.1 port), serving the interop service.</summary>
public sealed class TestGrpcServer : IAsyncDisposable
{
    /// <summary>The interop tests' receive limit: 10 MiB messages pass, 13 MiB ones do not.</summary>
    public const int MaxReceiveMessageSize = 12 * 1024 * 1024;

    private readonly WebApplication _app;

    private TestGrpcServer(WebApplication app, Uri address, Uri? http1Address)
    {
        _app = app;
        Address = address;
        Http1Address = http1Address;
    }

    public Uri Address { get; }

    public Uri? Http1Address { get; }

    public IServiceProvider Services => _app.Services;

    public static async Task<TestGrpcServer> StartAsync(Action<GrpcServerOptions>? configure = null, bool withHttp1Port = false, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = HttpProtocols.Http2);
            if (withHttp1Port)
            {
                kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http1);
            }
        });
        builder.Services.AddGrpc(options =>
        {
            options.MaxReceiveMessageSize = MaxReceiveMessageSize;
            configure?.Invoke(options);
        });
        builder.Services.AddSingleton<CancellationLog>();
        var app = builder.Build();
        app.MapGrpcService<InteropTestService>(InteropReflection.Descriptor.Services[0]);
        app.MapGrpcHealthService();
        app.MapGrpcReflectionService();
        await app.StartAsync();
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        return new TestGrpcServer(app, new Uri(addresses[0]), withHttp1Port ? new Uri(addresses[1]) : null);
    }

    public GrpcChannel CreateChannel(GrpcChannelOptions? options = null)
    {
        options ??= new GrpcChannelOptions();
        options.MaxReceiveMessageSize = MaxReceiveMessageSize;
        return GrpcChannel.ForAddress(Address, options);
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}

/// <summary>A typed client of the interop service, written thinly over the generic call API.</summary>
public sealed class InteropClient(CallInvoker invoker) : GrpcClientBase(invoker, InteropReflection.Descriptor.Services[0])
{
    public Task<EchoResponse> EchoAsync(EchoRequest request, CallOptions options = default) =>
        UnaryAsync<EchoRequest, EchoResponse>("Echo", request, options);

    public AsyncUnaryCall<EchoResponse> EchoCall(EchoRequest request, CallOptions options = default) =>
        Invoker.AsyncUnaryCall(GetMethod<EchoRequest, EchoResponse>("Echo"), request, options);

    public AsyncServerStreamingCall<EchoResponse> StreamOut(StreamRequest request, CallOptions options = default) =>
        ServerStreaming<StreamRequest, EchoResponse>("StreamOut", request, options);

    public AsyncClientStreamingCall<EchoRequest, UploadSummary> Upload(CallOptions options = default) =>
        ClientStreaming<EchoRequest, UploadSummary>("Upload", options);

    public AsyncDuplexStreamingCall<EchoRequest, EchoResponse> Chat(CallOptions options = default) =>
        DuplexStreaming<EchoRequest, EchoResponse>("Chat", options);

    public Task<EchoResponse> WaitForCancelAsync(EchoRequest request, CallOptions options = default) =>
        UnaryAsync<EchoRequest, EchoResponse>("WaitForCancel", request, options);

    public Task<CancellationReport> LastCancellationAsync(CallOptions options = default) =>
        UnaryAsync<CancellationQuery, CancellationReport>("LastCancellation", new CancellationQuery(), options);

    public Task<EchoResponse> NotImplementedHereAsync(EchoRequest request, CallOptions options = default) =>
        UnaryAsync<EchoRequest, EchoResponse>("NotImplementedHere", request, options);
}
