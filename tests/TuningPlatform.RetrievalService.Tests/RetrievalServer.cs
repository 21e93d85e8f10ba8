using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.RetrievalService.Services;
using TuningPlatform.ServiceDefaults;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>The real retrieval service on 127.0.0.1 over HTTP/2, with its data under a given folder.</summary>
public sealed class RetrievalServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GrpcChannel _channel;

    private RetrievalServer(WebApplication app, int port)
    {
        _app = app;
        _channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        Client = new RetrievalClient(_channel.CreateCallInvoker());
    }

    public RetrievalClient Client { get; }

    /// <summary>The running application (to reach its services in tests).</summary>
    public WebApplication App => _app;

    public static Task<RetrievalServer> StartAsync(string dataDirectory, params string[] ingestRoots) =>
        StartAsync(dataDirectory, new Dictionary<string, string?>(), ingestRoots);

    /// <summary>With extra settings, e.g. <c>services:inference:grpc:0</c> pointing at a real inference server.</summary>
    public static async Task<RetrievalServer> StartAsync(string dataDirectory, Dictionary<string, string?> extra, params string[] ingestRoots)
    {
        var port = FreePort();
        var builder = WebApplication.CreateSlimBuilder();
        var settings = new Dictionary<string, string?>
        {
            ["Grpc:Url"] = $"http://127.0.0.1:{port}",
            ["Grpc:EnableDetailedErrors"] = "true",
            ["Retrieval:DataDirectory"] = dataDirectory,
            ["Retrieval:MaxDocumentBytes"] = "2000000",
        };
        for (var i = 0; i < ingestRoots.Length; i++)
        {
            settings[$"Retrieval:IngestRoots:{i}"] = ingestRoots[i];
        }
        foreach (var (key, value) in extra)
        {
            settings[key] = value;
        }
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddServiceDefaults(defaultPort: port);
        builder.AddRetrievalServices();
        var app = builder.Build();
        app.MapGrpcService<RetrievalGrpcService>(RetrievalReflection.Descriptor.Services[0]);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        return new RetrievalServer(app, port);
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
