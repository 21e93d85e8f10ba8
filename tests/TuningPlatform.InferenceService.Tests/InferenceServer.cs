using TuningPlatform.Testing;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService.Services;
using TuningPlatform.ServiceDefaults;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>The real inference service on 127.0.0.1, serving the shared assets' models folder.</summary>
public sealed class InferenceServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GrpcChannel _channel;

    private InferenceServer(WebApplication app, int port)
    {
        _app = app;
        _channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        Client = new InferenceClient(_channel.CreateCallInvoker());
    }

    public InferenceClient Client { get; }

    /// <summary>../shared/assets/models relative to the repository root, or null when absent.</summary>
    public static string? ModelsFolder
    {
        get
        {
            var models = RepositoryPaths.SharedAsset("models");
            return Directory.Exists(Path.Combine(models, "stories260K-hf")) ? models : null;
        }
    }

    public static string RequireModels() =>
        ModelsFolder ?? throw SkipException("../shared/assets/models/stories260K-hf is absent; the inference tests need the shared assets.");

    public static async Task<InferenceServer> StartAsync(Dictionary<string, string?>? settings = null)
    {
        var models = RequireModels();
        var port = FreePort();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Grpc:Url"] = $"http://127.0.0.1:{port}",
            ["Grpc:EnableDetailedErrors"] = "true",
            ["Inference:ModelRoots:0"] = models,
            ["Inference:MaxBatch"] = "4",
        });
        if (settings is not null)
        {
            builder.Configuration.AddInMemoryCollection(settings);
        }
        builder.AddServiceDefaults(defaultPort: port);
        builder.AddInferenceServices();
        var app = builder.Build();
        app.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        return new InferenceServer(app, port);
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static Exception SkipException(string message)
    {
        Assert.Skip(message);
        return new InvalidOperationException(message);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
