using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Tests;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService;
using TuningPlatform.InferenceService.Services;
using TuningPlatform.RetrievalService;
using TuningPlatform.RetrievalService.Services;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.Testing;

namespace TuningPlatform.EvaluationService.Tests.Infrastructure;

/// <summary>
/// The real pieces an evaluation needs, in this process on real sockets: a redis-server, the curation service,
/// the inference service over ../shared/assets/models, and the evaluation service wired to both by the
/// configuration keys the AppHost injects. One data directory for all, as on a deployed machine.
/// </summary>
public sealed class Platform : IAsyncDisposable
{
    public const string Model = "stories260K-hf";

    private readonly List<WebApplication> _apps = [];
    private readonly List<GrpcChannel> _channels = [];
    private RedisServer? _redis;

    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("tp-evaluation-").FullName;

    public string ModelsFolder { get; private set; } = "";

    public CurationClient Curation { get; private set; } = null!;

    public InferenceClient Inference { get; private set; } = null!;

    public EvaluationClient Evaluation { get; private set; } = null!;

    public RetrievalClient Retrieval { get; private set; } = null!;

    public TrainingClient Training { get; private set; } = null!;

    public Uri RetrievalAddress { get; private set; } = null!;

    public Uri CurationAddress { get; private set; } = null!;

    public Uri InferenceAddress { get; private set; } = null!;

    public string RedisConnectionString => _redis!.ConnectionString;

    public static CallOptions Call() => CallOptions.WithTimeout(TimeSpan.FromSeconds(120));

    public static async Task<Platform> StartAsync()
    {
        var models = RepositoryPaths.SharedAsset("models");
        if (!Directory.Exists(Path.Combine(models, Model)))
        {
            Assert.Skip($"{Path.Combine(models, Model)} is absent; the evaluation tests need the shared assets (../shared/assets/models).");
        }
        var platform = new Platform { ModelsFolder = models };
        try
        {
            platform._redis = await RedisServer.StartAsync();
            platform.CurationAddress = await platform.StartAppAsync(builder => builder.AddApplicationServices(),
                app => app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]), []);
            platform.InferenceAddress = await platform.StartAppAsync(builder => builder.AddInferenceServices(),
                app => app.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]),
                [$"--Inference:ModelRoots:0={models}", "--Inference:MaxBatch=8"]);
            platform.RetrievalAddress = await platform.StartAppAsync(builder => builder.AddRetrievalServices(),
                app => app.MapGrpcService<RetrievalGrpcService>(RetrievalReflection.Descriptor.Services[0]),
                [$"--services:inference:grpc:0={platform.InferenceAddress}", $"--services:curation:grpc:0={platform.CurationAddress}"]);
            var training = await platform.StartAppAsync(builder => TuningPlatform.TrainingService.TrainingServiceExtensions.AddApplicationServices(builder),
                app => app.MapGrpcService<TuningPlatform.TrainingService.Services.TrainingGrpcService>(TrainingReflection.Descriptor.Services[0]),
                [$"--services:curation:grpc:0={platform.CurationAddress}", $"--Training:ModelRoots:0={models}"]);
            var evaluation = await platform.StartEvaluationAsync();
            platform.Retrieval = new RetrievalClient(platform.Open(platform.RetrievalAddress));
            platform.Training = new TrainingClient(platform.Open(training));
            platform.Curation = new CurationClient(platform.Open(platform.CurationAddress));
            platform.Inference = new InferenceClient(platform.Open(platform.InferenceAddress));
            platform.Evaluation = new EvaluationClient(platform.Open(evaluation));
            return platform;
        }
        catch
        {
            await platform.DisposeAsync();
            throw;
        }
    }

    /// <summary>Another evaluation service process on the same data directory and Redis (a restart, seen from clients).</summary>
    public async Task<(EvaluationClient Client, WebApplication App)> StartSecondEvaluationAsync()
    {
        var address = await StartEvaluationAsync();
        return (new EvaluationClient(Open(address)), _apps[^1]);
    }

    private Task<Uri> StartEvaluationAsync() => StartAppAsync(builder => builder.AddEvaluationServices(),
        app => app.MapGrpcService<Services.EvaluationGrpcService>(EvaluationReflection.Descriptor.Services[0]),
        [$"--services:curation:grpc:0={CurationAddress}", $"--services:inference:grpc:0={InferenceAddress}", $"--services:retrieval:grpc:0={RetrievalAddress}",
            "--Evaluation:ProgressIntervalMs=200"]);

    private CallInvoker Open(Uri address)
    {
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 64 * 1024 * 1024 });
        _channels.Add(channel);
        return channel.CreateCallInvoker();
    }

    private async Task<Uri> StartAppAsync(Action<WebApplicationBuilder> services, Action<WebApplication> map, string[] extra)
    {
        string[] args =
        [
            "--Grpc:Url=http://127.0.0.1:0", "--Grpc:EnableDetailedErrors=true", $"--TUNING_DATA_DIR={DataDirectory}",
            $"--ConnectionStrings:redis={_redis!.ConnectionString}", .. extra,
        ];
        var builder = WebApplication.CreateBuilder(args);
        builder.AddServiceDefaults(defaultPort: 0);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        services(builder);
        var app = builder.Build();
        map(app);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        _apps.Add(app);
        return new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    /// <summary>Uploads JSONL lines as a new dataset and returns its version.</summary>
    public async Task<DatasetVersion> UploadAsync(IEnumerable<string> jsonLines, string name)
    {
        var bytes = Encoding.UTF8.GetBytes(string.Join('\n', jsonLines) + "\n");
        using var call = Curation.UploadDataset(Call());
        await call.RequestStream.WriteAsync(new UploadDatasetRequest
        {
            Metadata = new UploadMetadata { Target = new DatasetTarget { NewDatasetName = name + "-" + Guid.NewGuid().ToString("N")[..6] }, FileName = name + ".jsonl" },
        });
        await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(bytes) });
        await call.RequestStream.CompleteAsync();
        var response = await call.ResponseAsync;
        Assert.NotNull(response.Version);
        return response.Version;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }
        for (var i = _apps.Count - 1; i >= 0; i--)
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await _apps[i].StopAsync(stop.Token);
            }
            catch (OperationCanceledException)
            {
                // Stopping took too long; disposing below ends it.
            }
            await _apps[i].DisposeAsync();
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
}
