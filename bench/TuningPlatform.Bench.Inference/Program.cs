// Inference serving benchmark: the inference service in a child process over real gRPC (HTTP/2 on a loopback
// socket, our client in this process)
// against the engine driven directly, same model, same batching, same run, as ratios.
//   shapes:  stories15M and SmolLM2-135M with random weights (weights do not change speed), their real tokenizers
//            (../shared/assets/tokenizers: llama2, smollm2-135m); end-of-sequence rows zeroed so every answer runs
//            to max_new_tokens
//   rows:    batch-1 decode tokens/s and time to first token (TTFT); then 1, 4, 8, 16 concurrent streaming clients,
//            half of them on LoRA adapters (r=16 on every projection, one adapter per such client, applied per
//            sequence in the shared batch): aggregate tokens/s and p50/p99 TTFT
//   engine:  the same sequences added to a BatchGenerator at once (their prompts prefilled together in the first
//            step, as the service's decode loop does), stepped to completion on one thread
// Usage:
//   dotnet run -c Release --project bench/TuningPlatform.Bench.Inference [-- --shapes stories15M,smollm2-135m --prompt 128 --new 128 --clients 1,4,8,16 --rounds N]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService;
using TuningPlatform.InferenceService.Services;
using TuningPlatform.ServiceDefaults;

if (StringArg("--serve", "") is { Length: > 0 } serveWork)
{
    // The service alone in this child process: the parent's client talks to it over loopback, and the parent reads
    // this process's CPU time, so the service's cost per token is counted without the client's.
    var app = await StartServiceAppAsync(serveWork, IntArg("--max-batch", 16), IntArg("--context", 272), IntArg("--port", 0));
    Console.WriteLine("ready");
    await Console.In.ReadToEndAsync();
    await app.StopAsync();
    await app.DisposeAsync();
    return;
}

var promptTokens = IntArg("--prompt", 128);
var newTokens = IntArg("--new", 128);
// Each row is measured this many times, engine and service alternating: the rate columns keep each side's fastest
// round, the ratios are medians over the rounds of ratios within a round. Without --rounds, 31 for stories15M (a round
// takes about 3 s; single rounds swing by ±25%, and medians of 9 still differed by up to 8 points between runs) and
// 9 for SmolLM2-135M (about 40 s a round).
var roundsArg = IntArg("--rounds", 0);
const int WarmUpRounds = 8;
var clientCounts = StringArg("--clients", "1,4,8,16").Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();
var wanted = StringArg("--shapes", "stories15M,smollm2-135m").Split(',');
var maxBatch = clientCounts.Max();
var context = promptTokens + newTokens + 16;
var tokenizers = FindUp(Path.Combine("..", "shared", "assets", "tokenizers"))
    ?? throw new InvalidOperationException("../shared/assets/tokenizers not found; the benchmark uses the llama2 and smollm2-135m tokenizers from the shared assets.");
var shapes = new List<(string Name, LlamaConfig Config, string Tokenizer)>
{
    ("stories15M", Shape(288, 768, 6, 6, 6, 32000, tied: true), "llama2"),
    ("smollm2-135m", LlamaConfig.Load(Path.Combine(tokenizers, "smollm2-135m", "config.json")) with { MaxPositions = context }, "smollm2-135m"),
};
var work = Directory.CreateTempSubdirectory("bench-inference-").FullName;
var ct = CancellationToken.None;
try
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"Inference benchmark: {Environment.ProcessorCount} cores (load average {LoadAverage()}), prompt ≈{promptTokens} tokens, {newTokens} new tokens, greedy, random weights, fp32; max batch {maxBatch}; adapters LoRA r=16 on all 7 projections"));
    Console.WriteLine();
    Console.WriteLine("| shape | row | engine direct | service over gRPC | service / engine |");
    Console.WriteLine("|---|---|---|---|---|");
    foreach (var (name, config, tokenizerName) in shapes.Where(s => wanted.Contains(s.Name)))
    {
        var modelDir = Path.Combine(work, "models", name);
        var model = RandomModel(config with { MaxPositions = context });
        var tokenizer = HfTokenizer.FromFile(Path.Combine(tokenizers, tokenizerName, "tokenizer.json"));
        SilenceEnd(model, tokenizer);
        model.SaveHf(modelDir);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(tokenizers, tokenizerName, file), Path.Combine(modelDir, file));
        }
        var adapterCount = Math.Max(1, maxBatch / 2);
        var adapters = new List<LoRAWeights>();
        for (var i = 0; i < adapterCount; i++)
        {
            var adapter = RandomAdapter(model, seed: 100 + i);
            adapter.Save(Path.Combine(work, "adapters", $"{name}-{i}"));
            adapters.Add(LoRAWeights.From(adapter));
        }
        var prompt = PromptText(tokenizer, promptTokens);
        var promptIds = tokenizer.Encode(prompt, addSpecialTokens: true);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}: {model.Parameters.Count / 1e6:0.0}M parameters, prompt {promptIds.Length} tokens"));

        // Engine directly and the service over gRPC, alternating, each row printed as soon as it is measured.
        var rounds = roundsArg > 0 ? roundsArg : name == "stories15M" ? 31 : 9;
        var engine = new BatchGenerator(model, tokenizer, maxBatch, context);
        var options = new GenerationOptions { MaxNewTokens = newTokens, Temperature = 0, AddSpecialTokens = false };
        await using var server = await StartServiceAsync(work, maxBatch, context);
        var client = server.Client;
        await client.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { BaseModelId = name }, Pinned = true }, Call());
        for (var i = 0; i < adapterCount; i++)
        {
            await client.LoadAdapterAsync(new LoadAdapterRequest { Path = $"{name}-{i}", AdapterId = $"{name}-{i}", BaseModelId = name, Pinned = true }, Call());
        }
        // Warm-up (JIT, buffers) on both sides, so that the measured rounds run tier-1 code in both processes (a fresh
        // process's tiered JIT otherwise compiles during them, on the same two cores): short rounds at every client
        // count until each per-request method has been called well past the tiering thresholds (30 calls to be
        // instrumented, 30 more to be optimised), then one whole untimed round at every count (each batch size runs
        // its own kernel shapes).
        // One client is always measured: its rounds also give the batch-1 rows (with one client no sequence is on an
        // adapter).
        var measured = clientCounts.Contains(1) ? clientCounts : [1, .. clientCounts];
        for (var round = 0; round < WarmUpRounds; round++)
        {
            foreach (var n in measured)
            {
                RunEngine(engine, promptIds, options with { MaxNewTokens = 8 }, n, adapters, onAdapters: true);
                await RunServiceAsync(server, name, prompt, 8, n, onAdapters: true);
            }
        }
        foreach (var n in measured)
        {
            RunEngine(engine, promptIds, options, n, adapters, onAdapters: true);
            await RunServiceAsync(server, name, prompt, newTokens, n, onAdapters: true);
        }

        // Every round measures every client count, engine and service alternating, so that the ratios below can
        // compare runs taken seconds apart: the host's speed drifts by tens of percent within minutes, and rows
        // measured one after the other (all rounds of 1 client, then all of 8) put that drift into the scaling.
        var engineRounds = measured.ToDictionary(n => n, _ => new List<Run>());
        var serviceRounds = measured.ToDictionary(n => n, _ => new List<Run>());
        for (var round = 0; round < rounds; round++)
        {
            foreach (var n in measured)
            {
                engineRounds[n].Add(RunEngine(engine, promptIds, options, n, adapters, onAdapters: true));
                serviceRounds[n].Add(await RunServiceAsync(server, name, prompt, newTokens, n, onAdapters: true));
            }
        }

        var engineSingle = engineRounds[1].Aggregate(Faster);
        var serviceSingle = serviceRounds[1].Aggregate(Faster);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | batch-1 decode | {engineSingle.DecodeRate:0.0} tok/s | {serviceSingle.DecodeRate:0.0} tok/s | {serviceSingle.DecodeRate / engineSingle.DecodeRate:0.00} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | batch-1 TTFT | {engineSingle.P50:0} ms | {serviceSingle.P50:0} ms | {engineSingle.P50 / serviceSingle.P50:0.00} |"));
        foreach (var n in clientCounts)
        {
            var be = engineRounds[n].Aggregate(Faster);
            var bs = serviceRounds[n].Aggregate(Faster);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {n} clients ({n / 2} on adapters) | {be.Aggregate:0.0} tok/s, TTFT p50 {be.P50:0} / p99 {be.P99:0} ms | {bs.Aggregate:0.0} tok/s, TTFT p50 {bs.P50:0} / p99 {bs.P99:0} ms | {bs.Aggregate / be.Aggregate:0.00} |"));
        }

        if (clientCounts.Contains(8))
        {
            // Medians over the rounds of ratios between runs of the same round, with their range.
            var e1 = engineRounds[1];
            var e8 = engineRounds[8];
            var s1 = serviceRounds[1];
            var s8 = serviceRounds[8];
            var r = Enumerable.Range(0, rounds).ToList();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | scaling 8 vs 1 client | {Median(r.Select(i => e8[i].Aggregate / e1[i].Aggregate), "×")} | {Median(r.Select(i => s8[i].Aggregate / s1[i].Aggregate), "×")} | |"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | service overhead per token, 8 clients (wall) | | {Median(r.Select(i => (e8[i].Aggregate / s8[i].Aggregate) - 1), "%")} | |"));
            // Time per output token as serving benchmarks define it (the wall from a sequence's first token to its last,
            // per token after the first), the median sequence of each round: the decode that the service streams,
            // without the time to first token, whose own rows are above.
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | time per output token (TPOT), 8 clients, median sequence | {Median(r.Select(i => e8[i].Tpot), " ms", range: false)} | {Median(r.Select(i => s8[i].Tpot), " ms", range: false)} | {Median(r.Select(i => (s8[i].Tpot / e8[i].Tpot) - 1), "%")} |"));
            // The same in CPU time: the service process's (all its threads: decode, gRPC, Kestrel) against the engine's,
            // the client's apart. It counts what the service costs even where a spare core would hide it.
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | CPU per token, 8 clients (medians) | {Median(r.Select(i => e8[i].CpuMsPerToken), " ms", range: false)} | {Median(r.Select(i => s8[i].CpuMsPerToken), " ms", range: false)} in the service process (client {Median(r.Select(i => s8[i].ClientCpuMsPerToken), " ms", range: false)} apart) | {Median(r.Select(i => (s8[i].CpuMsPerToken / e8[i].CpuMsPerToken) - 1), "%")} |"));
            // The service's own threads outside the decode loop (gRPC, Kestrel, the stream writers): the serving work a
            // token costs beyond the engine's, as a share of the engine's CPU per token. The JIT's share is printed apart.
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | service threads besides the decode loop, 8 clients | | {Median(r.Select(i => s8[i].ServiceServingCpuMsPerToken), " ms", range: false)} per token, median (JIT {Median(r.Select(i => s8[i].ServiceJitCpuMsPerToken), " ms", range: false)}) | {Median(r.Select(i => s8[i].ServiceServingCpuMsPerToken / e8[i].CpuMsPerToken), "%")} of the engine's |"));
        }
    }
    Console.WriteLine();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"load average at the end: {LoadAverage()}"));
}
finally
{
    Directory.Delete(work, recursive: true);
}

// The median of per-round values with their range over the rounds: "%" prints signed percentages, anything else
// the value followed by that unit.
static string Median(IEnumerable<double> rounds, string unit, bool range = true)
{
    var values = rounds.Order().ToList();
    var median = values.Count % 2 == 1 ? values[values.Count / 2] : (values[(values.Count / 2) - 1] + values[values.Count / 2]) / 2;
    // Rounded before formatting: a small negative value would otherwise print as "-+0.0%".
    string F(double v) => unit == "%" ? string.Create(CultureInfo.InvariantCulture, $"{Math.Round(v * 100, 1) + 0.0:+0.0;-0.0;0.0}%") : string.Create(CultureInfo.InvariantCulture, $"{v:0.000}{unit}");
    return range ? $"{F(median)} (median of {values.Count}, {F(values[0])} to {F(values[^1])})" : F(median);
}

// The round with the higher aggregate rate (batch-1 rows: the higher decode rate).
static Run Faster(Run best, Run next) => (next.Aggregate + next.DecodeRate) > (best.Aggregate + best.DecodeRate) ? next : best;

// N sequences join together (prefilled together at the first step), then decode to the end. TTFT of sequence i: from
// its Add to its first token, as simultaneous requests see it.
static Run RunEngine(BatchGenerator engine, int[] promptIds, GenerationOptions options, int n, List<LoRAWeights> adapters, bool onAdapters)
{
    var cpu = ProcessCpu();
    var clock = Stopwatch.StartNew();
    var sequences = new List<BatchSequence>();
    for (var i = 0; i < n; i++)
    {
        var adapter = onAdapters && i % 2 == 1 ? adapters[i / 2 % adapters.Count] : null;
        sequences.Add(engine.Add(promptIds, options, null, adapter));
    }
    engine.RunToCompletion();
    var wall = clock.Elapsed.TotalSeconds;
    var tokens = sequences.Sum(s => s.TokenIds.Count);
    var ttft = sequences.Select(s => s.TimeToFirstToken.TotalMilliseconds).ToList();
    var decodeRate = n == 1 ? (tokens - 1) / (wall - (ttft[0] / 1000)) : 0;
    var tpot = sequences.Select(s => (s.Elapsed - s.TimeToFirstToken).TotalMilliseconds / (s.TokenIds.Count - 1)).ToList();
    return new Run(tokens / wall, decodeRate, Percentile(ttft, 0.5), Percentile(ttft, 0.99))
    {
        CpuMsPerToken = (ProcessCpu() - cpu) * 1000 / tokens,
        Tpot = Percentile(tpot, 0.5),
    };
}

// CPU seconds this process has used (all threads): unlike wall time, not stretched when the host lends the machine less.
static double ProcessCpu()
{
    using var self = Process.GetCurrentProcess();
    return self.TotalProcessorTime.TotalSeconds;
}

static async Task<Run> RunServiceAsync(BenchServer server, string model, string prompt, int newTokens, int n, bool onAdapters)
{
    var client = server.Client;
    using var start = new SemaphoreSlim(0);
    var cpu = ProcessCpu();
    var serviceCpu = server.Cpu();
    var threads = server.ThreadCpu();
    var clock = Stopwatch.StartNew();
    var calls = Enumerable.Range(0, n).Select(async i =>
    {
        await start.WaitAsync();
        var adapter = onAdapters && i % 2 == 1 ? $"{model}-{i / 2}" : "";
        var began = clock.Elapsed;
        using var call = client.GenerateStream(new GenerateStreamRequest
        {
            Model = new ModelRef { BaseModelId = model, AdapterId = adapter },
            Input = new GenerationInput { Completion = new CompletionInput { Prompt = prompt } },
            Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = newTokens },
        }, Call());
        TimeSpan? first = null;
        var last = began;
        long tokens = 0;
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            first ??= clock.Elapsed;
            last = clock.Elapsed;
            if (message.EventCase == GenerateStreamResponse.EventOneofCase.Final)
            {
                tokens = message.Final.Usage.CompletionTokens;
            }
        }
        return (Ttft: ((first ?? last) - began).TotalMilliseconds, Tokens: tokens, First: first ?? last, Last: last);
    }).ToList();
    start.Release(n);
    var results = await Task.WhenAll(calls);
    var wall = results.Max(r => r.Last).TotalSeconds;
    var total = results.Sum(r => r.Tokens);
    var threadsAfter = server.ThreadCpu();
    var decodeRate = n == 1 ? (results[0].Tokens - 1) / (results[0].Last - results[0].First).TotalSeconds : 0;
    return new Run(total / wall, decodeRate, Percentile([.. results.Select(r => r.Ttft)], 0.5), Percentile([.. results.Select(r => r.Ttft)], 0.99))
    {
        Tpot = Percentile([.. results.Select(r => (r.Last - r.First).TotalMilliseconds / (r.Tokens - 1))], 0.5),
        CpuMsPerToken = (server.Cpu() - serviceCpu) * 1000 / total,
        ServiceServingCpuMsPerToken = (threadsAfter.Serving - threads.Serving) * 1000 / total,
        ServiceJitCpuMsPerToken = (threadsAfter.Jit - threads.Jit) * 1000 / total,
        ClientCpuMsPerToken = (ProcessCpu() - cpu) * 1000 / total,
    };
}

// The service in a child process of its own (this program with --serve), on a loopback socket.
static async Task<BenchServer> StartServiceAsync(string work, int maxBatch, int context)
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    var port = ((IPEndPoint)listener.LocalEndpoint).Port;
    listener.Stop();
    var self = Environment.ProcessPath!;
    var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet")
    {
        info.ArgumentList.Add(typeof(Run).Assembly.Location);
    }
    foreach (var arg in new[] { "--serve", work, "--max-batch", maxBatch.ToString(CultureInfo.InvariantCulture), "--context", context.ToString(CultureInfo.InvariantCulture), "--port", port.ToString(CultureInfo.InvariantCulture) })
    {
        info.ArgumentList.Add(arg);
    }
    var child = Process.Start(info) ?? throw new InvalidOperationException("could not start the service process");
    var line = await child.StandardOutput.ReadLineAsync();
    if (line != "ready")
    {
        child.Kill();
        throw new InvalidOperationException($"the service process did not start (it printed: {line ?? "nothing"})");
    }
    return new BenchServer(child, GrpcChannel.ForAddress($"http://127.0.0.1:{port}"));
}

static async Task<WebApplication> StartServiceAppAsync(string work, int maxBatch, int context, int port)
{
    var builder = WebApplication.CreateSlimBuilder();
    builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Grpc:Url"] = $"http://127.0.0.1:{port}",
        ["Inference:ModelRoots:0"] = Path.Combine(work, "models"),
        ["Inference:AdapterRoots:0"] = Path.Combine(work, "adapters"),
        ["Inference:FineTunedDirectory"] = Path.Combine(work, "fine-tuned"),
        ["Inference:MaxBatch"] = maxBatch.ToString(CultureInfo.InvariantCulture),
        ["Inference:MaxContext"] = context.ToString(CultureInfo.InvariantCulture),
        ["Inference:MemoryBudgetBytes"] = (16L << 30).ToString(CultureInfo.InvariantCulture),
        ["Logging:LogLevel:Default"] = "Warning",
    });
    builder.AddServiceDefaults(defaultPort: port);
    builder.AddInferenceServices();
    var app = builder.Build();
    app.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]);
    app.MapDefaultEndpoints();
    await app.StartAsync();
    return app;
}

static CallOptions Call() => new() { Deadline = DateTime.UtcNow.AddMinutes(10) };

static LlamaModel RandomModel(LlamaConfig config)
{
    var model = LlamaModel.Create(config);
    var rng = new Random(0);
    foreach (var p in model.Parameters.Parameters)
    {
        var span = p.Span;
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = p.Shape.Length == 1 ? 1f : (float)((rng.NextDouble() * 2 - 1) * 0.035);
        }
    }
    return model;
}

// Zero the embedding (and head) rows of the end-of-sequence ids: their logit is then 0 while the argmax of random
// logits is positive, so greedy answers always run to max_new_tokens and every row measures the same work.
static void SilenceEnd(LlamaModel model, Tokenizer tokenizer)
{
    var d = model.Config.HiddenSize;
    foreach (var id in (model.Config.EosTokenIds ?? []).Append(tokenizer.EosTokenId ?? 2).Distinct())
    {
        model.Embeddings.Span.Slice(id * d, d).Clear();
        model.Output.Span.Slice(id * d, d).Clear();
    }
}

static LoRAAdapter RandomAdapter(LlamaModel model, int seed)
{
    var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 16, Alpha = 32, TargetModules = LoRAConfig.AllLinear }, seed);
    var rng = new Random(seed);
    foreach (var p in adapter.Parameters.Parameters.Where(p => p.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
    {
        var span = p.Span;
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = (float)((rng.NextDouble() * 2 - 1) * 0.01);
        }
    }
    return adapter;
}

// Plain prose cut to about `tokens` tokens (BOS included).
static string PromptText(Tokenizer tokenizer, int tokens)
{
    const string Sentence = " Once upon a time there was a little girl who liked to walk in the park with her dog.";
    var text = "";
    while (tokenizer.Encode(text + Sentence, addSpecialTokens: true).Length <= tokens)
    {
        text += Sentence;
    }
    var words = Sentence.Split(' ');
    foreach (var word in words.Where(w => w.Length > 0))
    {
        if (tokenizer.Encode(text + " " + word, addSpecialTokens: true).Length > tokens)
        {
            break;
        }
        text += " " + word;
    }
    return text.TrimStart();
}

static double Percentile(List<double> values, double q)
{
    var sorted = values.Order().ToList();
    return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];
}

static LlamaConfig Shape(int dim, int hidden, int layers, int heads, int kvHeads, int vocab, bool tied) => new()
{
    HiddenSize = dim,
    IntermediateSize = hidden,
    NumLayers = layers,
    NumHeads = heads,
    NumKeyValueHeadsRaw = kvHeads,
    VocabSize = vocab,
    MaxPositions = 2048,
    RmsNormEps = 1e-5,
    TieWordEmbeddings = tied,
    EosTokenIds = [2],
};

static string LoadAverage()
{
    try
    {
        return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
    }
    catch (IOException)
    {
        return "n/a";
    }
}

static string? FindUp(string relative)
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        var candidate = Path.Combine(dir.FullName, relative);
        if (Directory.Exists(candidate))
        {
            return candidate;
        }
    }
    return null;
}

int IntArg(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

string StringArg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;

/// <summary>One measurement: aggregate tokens/s, batch-1 decode tokens/s, TTFT percentiles in ms.</summary>
internal sealed record Run(double Aggregate, double DecodeRate, double P50, double P99)
{
    /// <summary>CPU time per generated token of the process that generated it: the engine's (direct) or the service's.</summary>
    public double CpuMsPerToken { get; init; }

    /// <summary>
    /// Time per output token (TPOT) in ms, the median over the round's sequences: from a sequence's first token to its
    /// last, over its tokens after the first (time to first token is reported apart).
    /// </summary>
    public double Tpot { get; init; }

    /// <summary>CPU time per token of the service's threads besides the decode loop, its pool workers and the JIT (gRPC, Kestrel, stream writers).</summary>
    public double ServiceServingCpuMsPerToken { get; init; }

    /// <summary>CPU time per token of the service's background JIT compiler.</summary>
    public double ServiceJitCpuMsPerToken { get; init; }

    /// <summary>CPU time per token of the benchmark's own process while it was the service's client.</summary>
    public double ClientCpuMsPerToken { get; init; }
}

/// <summary>The inference service in a child process, and a client over a real HTTP/2 channel.</summary>
internal sealed class BenchServer(Process process, GrpcChannel channel) : IAsyncDisposable
{
    public InferenceClient Client { get; } = new(channel.CreateCallInvoker());

    /// <summary>
    /// CPU seconds so far of the service's threads outside the decode loop and the engine's pool workers, from
    /// /proc/PID/task (zeros where there is no /proc): the JIT's background compiler, and everything else (Kestrel,
    /// gRPC, the stream writers, timers).
    /// </summary>
    public (double Jit, double Serving) ThreadCpu()
    {
        double jit = 0, serving = 0;
        var tasks = $"/proc/{process.Id}/task";
        if (!Directory.Exists(tasks))
        {
            return (0, 0);
        }
        foreach (var dir in Directory.GetDirectories(tasks))
        {
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue; // the thread ended meanwhile
            }
            var name = stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // utime and stime (fields 14 and 15 of stat), in clock ticks of 1/100 s.
            var seconds = (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
            if (name.StartsWith("decode ", StringComparison.Ordinal) || name.StartsWith("engine-worker", StringComparison.Ordinal))
            {
                continue;
            }
            if (name.Contains("Tiered", StringComparison.Ordinal))
            {
                jit += seconds;
            }
            else
            {
                serving += seconds;
            }
        }
        return (jit, serving);
    }

    /// <summary>CPU seconds the service process has used so far (all its threads).</summary>
    public double Cpu()
    {
        process.Refresh();
        return process.TotalProcessorTime.TotalSeconds;
    }

    public async ValueTask DisposeAsync()
    {
        channel.Dispose();
        process.StandardInput.Close();
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
        }
        await process.WaitForExitAsync();
        process.Dispose();
    }
}
