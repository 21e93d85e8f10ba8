using TuningPlatform.Grpc.Client;

namespace TuningPlatform.Grpc.Tests.Infrastructure;

/// <summary>One interop server (with an HTTP/1.1 side port) shared by a test class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public TestGrpcServer Server { get; private set; } = null!;

    public GrpcChannel Channel { get; private set; } = null!;

    public InteropClient Client { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Server = await TestGrpcServer.StartAsync(withHttp1Port: true);
        Channel = Server.CreateChannel();
        Client = new InteropClient(Channel.CreateCallInvoker());
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await Server.DisposeAsync();
    }
}
