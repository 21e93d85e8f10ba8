// Evaluation benchmark: a real redis-server, the curation, inference and evaluation services in this process on
// loopback sockets (as the tests host them), stories260K-hf from ../shared/assets/models, and N chat examples of
// one-sentence prompts and answers uploaded to curation. Rows:
//   loss-only     LOSS + PERPLEXITY + MEAN_TOKEN_ACCURACY (teacher-forced Score per example)
//   generation    EXACT_MATCH + TOKEN_F1 + ROUGE + BLEU + CHRF, greedy, max_new_tokens = --new
// Each row: examples/s of the evaluation job (job started → finished, from its JobState), wall time from
// CreateEvaluation to the finished report (queueing, export, aggregates with 1000 bootstrap resamples included),
// and the same Score / Generate calls made straight to the inference service with the same concurrency, as a ratio.
// Usage:
//   dotnet run -c Release --project bench/TuningPlatform.Bench.Evaluation [-- --examples 200 --new 32 --concurrency 8]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.EvaluationService;
using TuningPlatform.EvaluationService.Services;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService;
using TuningPlatform.InferenceService.Services;
using TuningPlatform.ServiceDefaults;

const string Model = "stories260K-hf";
var examples = IntArg("--examples", 200);
var newTokens = IntArg("--new", 32);
var concurrency = IntArg("--concurrency", 8);
var models = FindUp(Path.Combine("..", "shared", "assets", "models"))
    ?? throw new InvalidOperationException("../shared/assets/models not found; the benchmark evaluates stories260K-hf from the shared assets.");
var data = Directory.CreateTempSubdirectory("bench-evaluation-").FullName;
var apps = new List<WebApplication>();
var channels = new List<GrpcChannel>();
using var redis = StartRedis(data, out var redisConnection);
var timeout = CallOptions.WithTimeout(TimeSpan.FromMinutes(10));
try
{
    var curationAddress = await StartAsync(b => b.AddApplicationServices(), a => a.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]), []);
    var inferenceAddress = await StartAsync(b => b.AddInferenceServices(), a => a.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]),
        [$"--Inference:ModelRoots:0={models}", $"--Inference:MaxBatch={concurrency}"]);
    var evaluationAddress = await StartAsync(b => b.AddEvaluationServices(), a => a.MapGrpcService<EvaluationGrpcService>(EvaluationReflection.Descriptor.Services[0]),
        [$"--services:curation:grpc:0={curationAddress}", $"--services:inference:grpc:0={inferenceAddress}", "--Evaluation:Workers=1"]);
    var curation = new CurationClient(Open(curationAddress));
    var inference = new InferenceClient(Open(inferenceAddress));
    var evaluation = new EvaluationClient(Open(evaluationAddress));

    string[] names = ["Lily", "Tom", "Sue", "Ben", "Max", "Mia", "Tim", "Anna"];
    string[] things = ["a red ball", "a big dog", "a little bird", "a shiny car", "a green frog"];
    string[] places = ["park", "garden", "house", "forest", "lake"];
    var pairs = Enumerable.Range(0, examples)
        .Select(i => ($"{names[i % names.Length]} saw {things[i / names.Length % things.Length]} in the {places[i / (names.Length * things.Length) % places.Length]} on day {i}.",
            $"{names[i % names.Length]} was happy and played in the {places[i % places.Length]}."))
        .ToList();
    var lines = pairs.Select(p => JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = p.Item1 }, new { role = "assistant", content = p.Item2 } } }));
    var version = await UploadAsync(curation, lines, timeout);
    await inference.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { BaseModelId = Model } }, timeout);

    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"Evaluation benchmark: {Environment.ProcessorCount} cores (load average {LoadAverage()}), {Model}, {examples} chat examples, concurrency {concurrency}, generation max_new_tokens {newTokens} (greedy), 1000 bootstrap resamples"));
    Console.WriteLine();
    Console.WriteLine("| evaluation | examples/s (job) | wall s (create → report) | direct inference examples/s | service / direct |");
    Console.WriteLine("|---|---|---|---|---|");

    var lossMetrics = new[] { MetricKind.Loss, MetricKind.Perplexity, MetricKind.MeanTokenAccuracy };
    var genMetrics = new[] { MetricKind.ExactMatch, MetricKind.TokenF1, MetricKind.Rouge, MetricKind.Bleu, MetricKind.Chrf };
    foreach (var (name, kinds) in new[] { ("loss-only", lossMetrics), ("generation", genMetrics) })
    {
        var request = new CreateEvaluationRequest
        {
            DisplayName = "bench " + name,
            Target = new EvaluationTarget { Model = new ModelRef { BaseModelId = Model } },
            Dataset = new DatasetRef { VersionId = version },
            Generation = new GenerationSettings { Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = newTokens }, MaxConcurrency = concurrency },
        };
        request.Metrics.AddRange(kinds.Select(k => new MetricSpec { Kind = k }));
        var wall = Stopwatch.StartNew();
        var created = await evaluation.CreateEvaluationAsync(request, timeout);
        Evaluation run;
        while (true)
        {
            run = (await evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = created.Evaluation.Id }, timeout)).Evaluation;
            if (run.State.Status is TuningPlatform.Contracts.Common.V1.JobStatus.Succeeded or TuningPlatform.Contracts.Common.V1.JobStatus.Failed or TuningPlatform.Contracts.Common.V1.JobStatus.Cancelled)
            {
                break;
            }
            await Task.Delay(50);
        }
        wall.Stop();
        if (run.State.Status != TuningPlatform.Contracts.Common.V1.JobStatus.Succeeded)
        {
            throw new InvalidOperationException($"{name}: {run.State.Status} {run.State.Error}");
        }
        var jobSeconds = (run.State.FinishedAt.ToDateTimeOffset() - run.State.StartedAt.ToDateTimeOffset()).TotalSeconds;

        // The same calls straight to the inference service, same concurrency.
        var direct = Stopwatch.StartNew();
        await Parallel.ForEachAsync(pairs, new ParallelOptions { MaxDegreeOfParallelism = concurrency }, async (pair, ct) =>
        {
            var input = new GenerationInput { Completion = new CompletionInput { Prompt = PlainPrompt.Render([pair.Item1]) } };
            var model = new ModelRef { BaseModelId = Model };
            if (name == "loss-only")
            {
                await inference.ScoreAsync(new ScoreRequest { Model = model, Input = input, Completion = pair.Item2 }, timeout);
            }
            else
            {
                await inference.GenerateAsync(new GenerateRequest { Model = model, Input = input, Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = newTokens } }, timeout);
            }
        });
        direct.Stop();
        var serviceRate = examples / jobSeconds;
        var directRate = examples / direct.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {serviceRate:F1} | {wall.Elapsed.TotalSeconds:F2} | {directRate:F1} | {serviceRate / directRate:F2}× |"));
    }
}
finally
{
    foreach (var channel in channels)
    {
        channel.Dispose();
    }
    for (var i = apps.Count - 1; i >= 0; i--)
    {
        await apps[i].StopAsync();
        await apps[i].DisposeAsync();
    }
    redis.Kill(entireProcessTree: true);
    try
    {
        Directory.Delete(data, recursive: true);
    }
    catch (IOException)
    {
        // A temp directory left behind is harmless.
    }
}

CallInvoker Open(Uri address)
{
    var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 64 * 1024 * 1024 });
    channels.Add(channel);
    return channel.CreateCallInvoker();
}

async Task<Uri> StartAsync(Action<WebApplicationBuilder> services, Action<WebApplication> map, string[] extra)
{
    string[] args = ["--Grpc:Url=http://127.0.0.1:0", $"--TUNING_DATA_DIR={data}", $"--ConnectionStrings:redis={redisConnection}", .. extra];
    var builder = WebApplication.CreateBuilder(args);
    builder.AddServiceDefaults(defaultPort: 0);
    builder.Logging.SetMinimumLevel(LogLevel.Warning);
    services(builder);
    var app = builder.Build();
    map(app);
    app.MapDefaultEndpoints();
    await app.StartAsync();
    apps.Add(app);
    return new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
}

static async Task<string> UploadAsync(CurationClient curation, IEnumerable<string> lines, CallOptions options)
{
    using var call = curation.UploadDataset(options);
    await call.RequestStream.WriteAsync(new UploadDatasetRequest
    {
        Metadata = new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "bench-" + Guid.NewGuid().ToString("N")[..6] }, FileName = "bench.jsonl" },
    });
    await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n")) });
    await call.RequestStream.CompleteAsync();
    return (await call.ResponseAsync).Version.Id;
}

static Process StartRedis(string directory, out string connection)
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    var port = ((IPEndPoint)listener.LocalEndpoint).Port;
    listener.Stop();
    var password = Guid.NewGuid().ToString("N");
    var info = new ProcessStartInfo("redis-server")
    {
        ArgumentList = { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", directory },
        RedirectStandardOutput = true,
    };
    var process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start (Debian: apt-get install redis-server).");
    for (var i = 0; i < 100; i++)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, port);
            break;
        }
        catch (SocketException)
        {
            Thread.Sleep(50);
        }
    }
    connection = string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{port},password={password}");
    return process;
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a";

static string? FindUp(string relative)
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        var candidate = Path.GetFullPath(Path.Combine(dir.FullName, relative));
        if (Directory.Exists(candidate))
        {
            return candidate;
        }
    }
    return null;
}

int IntArg(string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}
