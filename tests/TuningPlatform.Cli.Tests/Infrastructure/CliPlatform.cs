using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Tests;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.EvaluationService;
using TuningPlatform.EvaluationService.Services;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService;
using TuningPlatform.InferenceService.Services;
using TuningPlatform.RetrievalService;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.Testing;
using TuningPlatform.TrainingService.Services;

namespace TuningPlatform.Cli.Tests.Infrastructure;

/// <summary>
/// The whole platform the per-area commands talk to, in this process on real loopback sockets: a real
/// redis-server, and the curation, inference (over ../shared/assets/models), training, evaluation and retrieval
/// services wired to each other by the settings the AppHost injects. The CLI reaches them the way a person's shell
/// does, through <c>TUNE_&lt;SERVICE&gt;_URL</c>.
/// </summary>
public sealed class CliPlatform : IAsyncLifetime
{
    public const string Model = "stories260K-hf";

    private readonly List<WebApplication> _apps = [];
    private readonly Dictionary<string, (Action<WebApplicationBuilder> Services, Action<WebApplication> Map, string[] Extra)> _definitions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, WebApplication> _running = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _urls = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string?> _environment = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _requests = new(StringComparer.Ordinal);
    private RedisServer? _redis;

    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("tp-cli-platform-").FullName;

    public async ValueTask InitializeAsync()
    {
        var models = RepositoryPaths.SharedAsset("models");
        if (!Directory.Exists(Path.Combine(models, Model)))
        {
            Assert.Skip($"{Path.Combine(models, Model)} is absent; the CLI's platform tests need the shared assets (../shared/assets/models).");
        }
        _redis = await RedisServer.StartAsync();
        var curation = await StartAsync("curation", b => b.AddApplicationServices(), app => app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]), []);
        var inference = await StartAsync("inference", b => b.AddInferenceServices(), app => app.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]),
            [$"--Inference:ModelRoots:0={models}"]);
        var retrieval = await StartAsync("retrieval", b => b.AddRetrievalServices(), MapRetrieval,
            [$"--services:inference:grpc:0={inference}", $"--services:curation:grpc:0={curation}"]);
        var training = await StartAsync("training", b => TrainingService.TrainingServiceExtensions.AddApplicationServices(b),
            app => app.MapGrpcService<TrainingGrpcService>(TrainingReflection.Descriptor.Services[0]),
            [$"--services:curation:grpc:0={curation}", $"--Training:ModelRoots:0={models}"]);
        var evaluation = await StartAsync("evaluation", b => b.AddEvaluationServices(), app => app.MapGrpcService<EvaluationGrpcService>(EvaluationReflection.Descriptor.Services[0]),
            [$"--services:curation:grpc:0={curation}", $"--services:inference:grpc:0={inference}", $"--services:retrieval:grpc:0={retrieval}"]);
        _environment["TUNE_CURATION_URL"] = curation;
        _environment["TUNE_INFERENCE_URL"] = inference;
        _environment["TUNE_RETRIEVAL_URL"] = retrieval;
        _environment["TUNE_TRAINING_URL"] = training;
        _environment["TUNE_EVALUATION_URL"] = evaluation;
    }

    public async ValueTask DisposeAsync()
    {
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

    /// <summary>Runs <c>tune ARGS</c> as the shell would (stdin from <paramref name="input"/>), returning its exit code and both streams.</summary>
    public CliResult Run(string[] args, string input = "")
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        var exit = TuneCommand.Invoke(args, output, error, name => _environment.GetValueOrDefault(name), new StringReader(input));
        return new CliResult(exit, output.ToString(), error.ToString());
    }

    /// <summary>Runs a command with <c>--json</c> that must succeed, and parses its one JSON document.</summary>
    public JsonElement Json(params string[] args)
    {
        var result = Run([.. args, "--json"]);
        Assert.True(result.Exit == 0, $"tune {string.Join(' ', args)} exited {result.Exit}: {result.Error}");
        return result.Document;
    }

    /// <summary>Writes lines to a file in the data directory and returns its path.</summary>
    public string WriteFile(string name, IEnumerable<string> lines)
    {
        var path = Path.Combine(DataDirectory, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>
    /// Maps the retrieval service's gRPC class, which its assembly keeps internal (visible to its own and the
    /// evaluation tests only): found by name, mapped exactly as its Program.cs maps it.
    /// </summary>
    private static void MapRetrieval(WebApplication app)
    {
        var service = typeof(RetrievalServiceExtensions).Assembly.GetType("TuningPlatform.RetrievalService.Services.RetrievalGrpcService", throwOnError: true)!;
        typeof(GrpcHostingExtensions).GetMethod(nameof(GrpcHostingExtensions.MapGrpcService))!.MakeGenericMethod(service)
            .Invoke(null, [app, RetrievalReflection.Descriptor.Services[0]]);
    }

    /// <summary>How many requests for <paramref name="path"/> (e.g. <c>/tuning.training.v1.TrainingService/WatchJob</c>) the services have received.</summary>
    public int Requests(string path) => _requests.GetValueOrDefault(path);

    /// <summary>The address a service listens on (stable across <see cref="RestartServiceAsync"/>).</summary>
    public string Url(string service) => _urls[service];

    /// <summary>
    /// Stops a service as a restart does (its host shut down, open streams cut after <paramref name="grace"/>, its
    /// workers stopped and their jobs requeued), then, after <paramref name="downtime"/>, starts a new host of it on the
    /// same port with the same settings.
    /// </summary>
    public async Task RestartServiceAsync(string name, TimeSpan grace, TimeSpan downtime)
    {
        var (services, map, extra) = _definitions[name];
        var app = _running[name];
        var url = _urls[name];
        using (var stop = new CancellationTokenSource(grace))
        {
            try
            {
                await app.StopAsync(stop.Token);
            }
            catch (OperationCanceledException)
            {
                // The grace period ended: the remaining connections are cut, as a killed process's would be.
            }
        }
        await app.DisposeAsync();
        _apps.Remove(app);
        await Task.Delay(downtime);
        await StartAsync(name, services, map, extra, url);
    }

    private async Task<string> StartAsync(string name, Action<WebApplicationBuilder> services, Action<WebApplication> map, string[] extra, string url = "http://127.0.0.1:0")
    {
        string[] args =
        [
            $"--Grpc:Url={url}", "--Grpc:EnableDetailedErrors=true", $"--TUNING_DATA_DIR={DataDirectory}",
            $"--ConnectionStrings:redis={_redis!.ConnectionString}", .. extra,
        ];
        var builder = WebApplication.CreateBuilder(args);
        builder.AddServiceDefaults(defaultPort: 0);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        services(builder);
        var app = builder.Build();
        app.Use((context, next) =>
        {
            _requests.AddOrUpdate(context.Request.Path.Value ?? "", 1, (_, n) => n + 1);
            return next(context);
        });
        map(app);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        _apps.Add(app);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        _definitions[name] = (services, map, extra);
        _running[name] = app;
        _urls[name] = address;
        return address;
    }
}

/// <summary>What one <c>tune</c> run left: its exit code, stdout and stderr.</summary>
public sealed record CliResult(int Exit, string Output, string Error)
{
    /// <summary>stdout as the one JSON document <c>--json</c> promises (fails the test when it is anything else).</summary>
    public JsonElement Document
    {
        get
        {
            using var document = JsonDocument.Parse(Output);
            return document.RootElement.Clone();
        }
    }
}
