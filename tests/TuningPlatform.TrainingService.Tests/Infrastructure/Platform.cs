using System.Globalization;
using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Tests;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.Testing;
using TuningPlatform.TrainingService.Services;

namespace TuningPlatform.TrainingService.Tests.Infrastructure;

/// <summary>
/// A real redis-server, the real curation service and the real training service (the same wiring as their
/// Program.cs), each on 127.0.0.1 port 0 over HTTP/2, sharing one temporary data directory, as the AppHost
/// wires them. Base models come from ../shared/assets/models (stories260K-hf).
/// </summary>
public sealed class Platform : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    public const string Model = "stories260K-hf";

    private readonly List<WebApplication> _apps = [];
    private readonly List<GrpcChannel> _channels = [];
    private RedisServer? _redis;

    private Platform(string dataDirectory, string modelRoot)
    {
        DataDirectory = dataDirectory;
        ModelRoot = modelRoot;
    }

    public string DataDirectory { get; }

    public string ModelRoot { get; }

    public string RedisConnectionString => _redis!.ConnectionString;

    public string CurationAddress { get; private set; } = "";

    public CurationClient Curation { get; private set; } = null!;

    public TrainingClient Training { get; private set; } = null!;

    /// <summary>Settings every training process of this platform shares (the API process and worker processes).</summary>
    public Dictionary<string, string> TrainingSettings => new()
    {
        ["TUNING_DATA_DIR"] = DataDirectory,
        ["ConnectionStrings:redis"] = RedisConnectionString,
        [TrainingOptions.CurationAddressKey] = CurationAddress,
        ["Training:ModelRoots:0"] = ModelRoot,
        ["Coordination:LeaseSeconds"] = "1.5",
        ["Coordination:HeartbeatSeconds"] = "0.3",
    };

    /// <summary>Starts everything; <paramref name="workers"/> training workers run inside the API process.</summary>
    public static async Task<Platform> StartAsync(int workers, IDictionary<string, string>? settings = null)
    {
        var modelRoot = RepositoryPaths.RequireSharedAsset("models");
        RepositoryPaths.RequireSharedAsset("models", Model, "config.json");
        var platform = new Platform(Directory.CreateTempSubdirectory("tp-training-").FullName, modelRoot);
        try
        {
            platform._redis = await RedisServer.StartAsync();
            var curation = await platform.StartAppAsync(
                new Dictionary<string, string> { ["TUNING_DATA_DIR"] = platform.DataDirectory, ["ConnectionStrings:redis"] = platform.RedisConnectionString },
                builder =>
                {
                    CurationServiceExtensions.AddApplicationServices(builder);
                    return app => app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]);
                });
            platform.CurationAddress = curation.ToString().TrimEnd('/');
            platform.Curation = new CurationClient(platform.Channel(curation).CreateCallInvoker());

            var trainingSettings = platform.TrainingSettings;
            trainingSettings["Training:Workers"] = workers.ToString(CultureInfo.InvariantCulture);
            foreach (var (key, value) in settings ?? new Dictionary<string, string>())
            {
                trainingSettings[key] = value;
            }
            var training = await platform.StartAppAsync(trainingSettings, builder =>
            {
                TrainingServiceExtensions.AddApplicationServices(builder);
                return app => app.MapGrpcService<TrainingGrpcService>(TrainingReflection.Descriptor.Services[0]);
            });
            platform.Training = new TrainingClient(platform.Channel(training).CreateCallInvoker());
            return platform;
        }
        catch
        {
            await platform.DisposeAsync();
            throw;
        }
    }

    public static CallOptions Call() => CallOptions.WithTimeout(Timeout);

    /// <summary>Uploads a JSONL file to curation as a new dataset and returns its version.</summary>
    public async Task<DatasetVersion> UploadAsync(string jsonl, string fileName = "train.jsonl")
    {
        var bytes = Encoding.UTF8.GetBytes(jsonl);
        using var call = Curation.UploadDataset(Call());
        await call.RequestStream.WriteAsync(new UploadDatasetRequest
        {
            Metadata = new UploadMetadata
            {
                Target = new DatasetTarget { NewDatasetName = "ds-" + Guid.NewGuid().ToString("N")[..8] },
                FileName = fileName,
            },
        });
        await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(bytes) });
        await call.RequestStream.CompleteAsync();
        var response = await call.ResponseAsync;
        Assert.Equal(UploadOutcome.Accepted, response.Outcome);
        return response.Version;
    }

    /// <summary>Watches a job from its first event until it is terminal; returns the job and every event.</summary>
    public async Task<(TrainingJob Job, List<TrainingJobEvent> Events)> WatchToEndAsync(string jobId, Func<TrainingJobEvent, Task>? onEvent = null)
    {
        using var call = Training.WatchJob(new WatchJobRequest { JobId = jobId }, Call());
        var events = new List<TrainingJobEvent>();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(WatchJobResponse.ItemOneofCase.Job, call.ResponseStream.Current.ItemCase);
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            var e = call.ResponseStream.Current.Event;
            events.Add(e);
            if (onEvent is not null)
            {
                await onEvent(e);
            }
        }
        var job = (await Training.GetJobAsync(new GetJobRequest { JobId = jobId }, Call())).Job;
        return (job, events);
    }

    private GrpcChannel Channel(Uri address)
    {
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 16 * 1024 * 1024 });
        _channels.Add(channel);
        return channel;
    }

    private async Task<Uri> StartAppAsync(IDictionary<string, string> settings, Func<WebApplicationBuilder, Action<WebApplication>> wire)
    {
        var args = new List<string> { "--Grpc:Url=http://127.0.0.1:0", "--Grpc:EnableDetailedErrors=true" };
        args.AddRange(settings.Select(s => $"--{s.Key}={s.Value}"));
        var builder = WebApplication.CreateBuilder([.. args]);
        builder.AddServiceDefaults(defaultPort: 0);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var map = wire(builder);
        var app = builder.Build();
        map(app);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        _apps.Add(app);
        return new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }
        foreach (var app in Enumerable.Reverse(_apps))
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await app.StopAsync(stop.Token);
            await app.DisposeAsync();
        }
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

    /// <summary>Asserts that <paramref name="call"/> fails with <paramref name="status"/> and names <paramref name="param"/>.</summary>
    public static async Task<RpcException> AssertFailsAsync(StatusCode status, string param, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(status == e.StatusCode, $"expected {status}, got {e.StatusCode}: {e.Status.Detail}");
        Assert.Equal(param, e.Trailers.GetValue("x-error-param"));
        Assert.Contains(param, e.Status.Detail, StringComparison.Ordinal);
        return e;
    }
}
