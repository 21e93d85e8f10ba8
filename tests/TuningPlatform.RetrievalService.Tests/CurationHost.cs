using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>The real curation service (Program.cs's wiring) on 127.0.0.1, a free port, with its own data folder.</summary>
public sealed class CurationHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GrpcChannel _channel;

    private CurationHost(WebApplication app, string address, string dataDirectory)
    {
        _app = app;
        Address = address;
        DataDirectory = dataDirectory;
        _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 16 << 20 });
        Client = new CurationClient(_channel.CreateCallInvoker());
    }

    public string Address { get; }

    public string DataDirectory { get; }

    public CurationClient Client { get; }

    public static async Task<CurationHost> StartAsync()
    {
        var data = Assets.TempFolder();
        var builder = WebApplication.CreateBuilder(["--Grpc:Url=http://127.0.0.1:0", "--Grpc:EnableDetailedErrors=true", $"--TUNING_DATA_DIR={data}"]);
        builder.AddServiceDefaults(defaultPort: 0);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.AddApplicationServices();
        var app = builder.Build();
        app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new CurationHost(app, address, data);
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        Assets.DeleteFolder(DataDirectory);
    }
}
