using TuningPlatform.Coordination.Tests;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;

namespace TuningPlatform.CurationService.Tests.Infrastructure;

/// <summary>
/// The real curation service (the same wiring as Program.cs) on 127.0.0.1, port 0, with its own data
/// directory, optionally an import root, tokenizer roots and a real redis-server for jobs.
/// </summary>
internal sealed class CurationServer : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly WebApplication _app;
    private readonly RedisServer? _redis;
    private readonly GrpcChannel _channel;

    private CurationServer(WebApplication app, Uri address, string dataDirectory, RedisServer? redis)
    {
        _app = app;
        _redis = redis;
        DataDirectory = dataDirectory;
        _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 16 * 1024 * 1024 });
        Client = new CurationClient(_channel.CreateCallInvoker());
    }

    public string DataDirectory { get; }

    public CurationClient Client { get; }

    public static async Task<CurationServer> StartAsync(bool withRedis = false, string? importRoot = null, string? tokenizerRoot = null,
        IDictionary<string, string>? settings = null)
    {
        var redis = withRedis ? await RedisServer.StartAsync() : null;
        var dataDirectory = Directory.CreateTempSubdirectory("tp-curation-").FullName;
        var args = new List<string> { "--Grpc:Url=http://127.0.0.1:0", "--Grpc:EnableDetailedErrors=true", $"--TUNING_DATA_DIR={dataDirectory}" };
        if (redis is not null)
        {
            args.Add($"--ConnectionStrings:redis={redis.ConnectionString}");
        }
        if (importRoot is not null)
        {
            args.Add($"--Curation:ImportRoots:0={importRoot}");
        }
        if (tokenizerRoot is not null)
        {
            args.Add($"--Curation:TokenizerRoots:0={tokenizerRoot}");
        }
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            args.Add($"--{key}={value}");
        }
        try
        {
            var builder = WebApplication.CreateBuilder([.. args]);
            builder.AddServiceDefaults(defaultPort: 0);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.AddApplicationServices();
            var app = builder.Build();
            app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]);
            app.MapDefaultEndpoints();
            await app.StartAsync();
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new CurationServer(app, new Uri(address), dataDirectory, redis);
        }
        catch
        {
            if (redis is not null)
            {
                await redis.DisposeAsync();
            }
            throw;
        }
    }

    public static CallOptions Call() => CallOptions.WithTimeout(Timeout);

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        try
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _app.StopAsync(stop.Token);
            await _app.DisposeAsync();
        }
        finally
        {
            if (_redis is not null)
            {
                await _redis.DisposeAsync();
            }
            try
            {
                Directory.Delete(DataDirectory, recursive: true);
            }
            catch (IOException)
            {
                // A temp directory left behind is harmless.
            }
        }
    }
}
