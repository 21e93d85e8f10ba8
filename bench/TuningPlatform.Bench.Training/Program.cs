// Training benchmark: one optimizer step (forward, backward, AdamW) at real model shapes with random weights
// (weights do not change speed), ours against PyTorch running the same model and step, same machine, same
// run, as ratios.
//   rows:    stories15M and stories42M × the issue's four methods: full fine-tuning, LoRA r=8 on q,k,v,o, LoRA r=8
//            on all linear layers, QLoRA r=8 on all linear layers (NF4 base); a method may name its targets after
//            a dash (lora-qkvo, lora-all, qlora-all), otherwise --targets applies
//   figures: training tokens/s (median step), peak resident memory of a process that runs only that row,
//            MFU against the machine's measured fp32 GEMM rate, QLoRA base bytes per projection weight
// Loss on every token (B × T targets), AdamW without weight decay, no clipping, no activation checkpointing.
// Each row runs in a child process of its own (ours and PyTorch's), so peak memory is that row's alone.
// PyTorch runs fairly (DESIGN.md §8): /usr/bin/python3, torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE,
// OPENBLAS_CORETYPE unset, or SkylakeX when OpenBLAS's autodetection picks a slower kernel (see below). Usage:
//   dotnet run -c Release --project bench/TuningPlatform.Bench.Training [-- --shapes stories15M,stories42M
//       --methods full,lora-qkvo,lora-all,qlora-all --batch 8 --seq 256 --rank 8 --targets all|qkvo --steps 5
//       --rounds 2 --loss-chunk 512 --no-torch]
//   ... -- --gemm [--shapes stories15M,stories42M --reps 7]: only the step's matrix products, ours against OpenBLAS
//       called in this process (GemmComparison.cs)
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Optim;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Engine.Training.Recipes;

var batch = IntArg("--batch", 8);
var seq = IntArg("--seq", 256);
var rank = IntArg("--rank", 8);
var steps = IntArg("--steps", 5);
var targets = StringArg("--targets", "all");
var rounds = IntArg("--rounds", 2);
var lossChunk = IntArg("--loss-chunk", new TrainingGraphOptions().LossChunkRows);
var shapes = new Dictionary<string, LlamaConfig>
{
    ["stories15M"] = Shape(288, 768, 6, 6, 6, 32000),
    ["stories42M"] = Shape(512, 1376, 8, 8, 8, 32000),
};

if (args.Contains("--gemm"))
{
    // The step's products against OpenBLAS in this process (GemmComparison.cs).
    if (Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is null && System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
    {
        var command = SelfCommand();
        var info = new ProcessStartInfo(command[0]) { UseShellExecute = false };
        foreach (var arg in command.Skip(1).Concat(args))
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        using var withSkylakeX = Process.Start(info)!;
        withSkylakeX.WaitForExit();
        return withSkylakeX.ExitCode;
    }

    var gemmShapes = StringArg("--shapes", "stories15M,stories42M").Split(',').Select(name => (name, shapes[name])).ToList();
    return TuningPlatform.Bench.Training.GemmComparison.Run(gemmShapes, batch * seq, lossChunk, IntArg("--reps", 7));
}

if (StringArg("--child", "") is { Length: > 0 } child)
{
    // One row in this process: prints one JSON line.
    var method = StringArg("--method", "full");
    Console.WriteLine(JsonSerializer.Serialize(RunOurs(shapes[child], method, batch, seq, rank, targets, steps, lossChunk)));
    return 0;
}

var withTorch = !args.Contains("--no-torch");
var wantedShapes = StringArg("--shapes", "stories15M,stories42M").Split(',');
var methods = StringArg("--methods", "full,lora-qkvo,lora-all,qlora-all").Split(',');
var load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a";
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"Training benchmark: {Environment.ProcessorCount} cores (load average {load}), batch {batch} × {seq} tokens, LoRA r={rank} α={2 * rank}, median of {steps} steps after 2 warm-up, best of {rounds} alternating rounds; PyTorch with 2 threads"));

// Best of three one-second runs: the rate of a quiet moment is the machine's.
var ourGemm = Enumerable.Range(0, 3).Max(_ => MeasureGemm(1024));
// OpenBLAS picks its kernels from CPUID. Where the CPU model is masked (virtual machines) it falls back to the
// generic Prescott kernel, several times slower than its SkylakeX one on this AVX-512 machine; a preset
// Haswell halves it (DESIGN.md §8). PyTorch gets whichever of "unset" and SkylakeX is faster, and the run says which.
string? coreType = null;
double? blas = null;
if (withTorch)
{
    blas = RunChild("/usr/bin/python3", [TorchScript(), "gemm", "--size", "1024"], null)?.GetProperty("gflops").GetDouble();
    if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported
        && RunChild("/usr/bin/python3", [TorchScript(), "gemm", "--size", "1024"], "SkylakeX")?.GetProperty("gflops").GetDouble() is double skx
        && skx > (blas ?? 0) * 1.2)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"PyTorch's OpenBLAS: {Fmt(blas, "0.0")} GFLOP/s with OPENBLAS_CORETYPE unset (autodetection), {skx:0.0} with SkylakeX: PyTorch runs with OPENBLAS_CORETYPE=SkylakeX"));
        coreType = "SkylakeX";
        blas = skx;
    }
}
var rows = new List<(string Name, string Method, double Flops, JsonElement? Ours, JsonElement? Torch)>();
foreach (var name in wantedShapes)
{
    var config = shapes[name];
    foreach (var row in methods)
    {
        // "lora-qkvo": method lora on q,k,v,o; a bare method takes --targets.
        var method = row.Split('-')[0];
        var rowTargets = row.Contains('-') ? row.Split('-')[1] : targets;
        // Rounds alternate ours and PyTorch; each side keeps its fastest round, so a burst of load from other
        // processes on a shared machine lands on one round rather than on one side.
        JsonElement? ours = null, torch = null;
        for (var round = 0; round < rounds; round++)
        {
            var self = SelfCommand();
            ours = Faster(ours, RunChild(self[0], [.. self.Skip(1), "--child", name, "--method", method, "--batch", Str(batch), "--seq", Str(seq),
                "--rank", Str(rank), "--targets", rowTargets, "--steps", Str(steps), "--loss-chunk", Str(lossChunk)], null));
            if (withTorch)
            {
                var c = JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["dim"] = config.HiddenSize, ["hidden"] = config.IntermediateSize, ["layers"] = config.NumLayers,
                    ["heads"] = config.NumHeads, ["kv_heads"] = config.NumKeyValueHeads, ["vocab"] = config.VocabSize,
                });
                torch = Faster(torch, RunChild("/usr/bin/python3", [TorchScript(), c, "--method", method, "--batch", Str(batch), "--seq", Str(seq),
                    "--rank", Str(rank), "--targets", rowTargets, "--steps", Str(steps)], coreType));
            }
        }

        rows.Add((name, row, StepFlops(config, method, batch, seq, rank, rowTargets), ours, torch));
    }
}

// The GEMM rate again at the end; the better of the two measurements is the machine's.
ourGemm = Math.Max(ourGemm, Enumerable.Range(0, 3).Max(_ => MeasureGemm(1024)));
if (withTorch && RunChild("/usr/bin/python3", [TorchScript(), "gemm", "--size", "1024"], coreType) is JsonElement again)
{
    blas = Math.Max(blas ?? 0, again.GetProperty("gflops").GetDouble());
}

var peak = Math.Max(ourGemm, blas ?? 0);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"fp32 GEMM 1024³ (best of start and end): ours {ourGemm:0.0} GFLOP/s, PyTorch/BLAS {Fmt(blas, "0.0")} GFLOP/s; MFU below is against {peak:0.0} GFLOP/s"));
Console.WriteLine();
Console.WriteLine("| shape | method | ours tok/s | PyTorch tok/s | ratio | ours MFU | PyTorch MFU | ours peak MB | PyTorch peak MB | memory ratio | base B/param ours | base B/param PyTorch |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
foreach (var (name, method, flops, ours, torch) in rows)
{
    var ourTok = ours?.GetProperty("tok_s").GetDouble();
    var theirTok = torch?.GetProperty("tok_s").GetDouble();
    var ourMb = ours?.GetProperty("peak_rss_mb").GetDouble();
    var theirMb = torch?.GetProperty("peak_rss_mb").GetDouble();
    var projections = ProjectionParameters(shapes[name]);
    var ourBase = ours?.GetProperty("base_bytes").GetDouble() / projections;
    var theirBase = torch?.GetProperty("base_bytes").GetDouble() / projections;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {name} | {method} | {Fmt(ourTok)} | {Fmt(theirTok)} | {Ratio(ourTok, theirTok)} | {Mfu(ourTok)} | {Mfu(theirTok)} | {Fmt(ourMb)} | {Fmt(theirMb)} | {Ratio(ourMb, theirMb)} | {Fmt(ourBase, "0.000")} | {Fmt(theirBase, "0.000")} |"));

    string Mfu(double? tokS) => tokS is double t ? (t / (batch * seq) * flops / 1e9 / peak * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%" : "n/a";
}

Console.WriteLine();
Console.WriteLine($"load average at the end: {(File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a")}");
Console.WriteLine("ratio = ours / PyTorch (tokens/s: above 1 is faster; memory: below 1 is smaller). MFU counts the products the method needs");
Console.WriteLine("(6·N·params trained, 4·N·params frozen, causal attention) per second over the GEMM rate above. base B/param: bytes");
Console.WriteLine("holding the frozen projection weights (fp32 for LoRA, NF4 codes and scales for QLoRA) per projection weight.");
return 0;

// One row: build the model and method, warm up, time the median optimizer step.
static Dictionary<string, double> RunOurs(LlamaConfig config, string method, int batch, int seq, int rank, string targets, int steps, int lossChunk)
{
    // QLoRA quantises the projections as they are loaded: the model never holds a dense copy of them.
    var model = RandomModel(config, method == "qlora" ? new ModelLoadOptions { ProjectionDType = ParameterDType.Nf4 } : null);
    var rng = new Random(1);
    var tokens = Enumerable.Range(0, batch * (seq + 1)).Select(_ => rng.Next(3, config.VocabSize)).ToArray();
    var input = new int[batch * seq];
    var next = new int[batch * seq];
    var positions = new int[batch * seq];
    for (var b = 0; b < batch; b++)
    {
        for (var t = 0; t < seq; t++)
        {
            input[b * seq + t] = tokens[b * (seq + 1) + t];
            next[b * seq + t] = tokens[b * (seq + 1) + t + 1];
            positions[b * seq + t] = t;
        }
    }

    var trainingBatch = new TrainingBatch(batch, seq, input, next, positions);
    var graphOptions = new TrainingGraphOptions { LossChunkRows = lossChunk };
    var options = new TrainerOptions { Schedule = new LearningRateSchedule(1e-4, 0, 1000, DecayKind.Constant), MaxGradNorm = 0 };
    LlamaTrainingModel graph;
    ParameterGradients trainable;
    if (method == "full")
    {
        trainable = new ParameterGradients(model.Parameters);
        graph = new LlamaTrainingModel(model, batch, seq, trainable, options: graphOptions);
    }
    else
    {
        var adapter = LoRAAdapter.Create(model, new LoRAConfig
        {
            Rank = rank,
            Alpha = 2 * rank,
            TargetModules = targets == "qkvo" ? ["q_proj", "k_proj", "v_proj", "o_proj"] : LoRAConfig.AllLinear,
        }, seed: 42);
        trainable = adapter.Gradients;
        graph = new LlamaTrainingModel(model, batch, seq, null, adapter.Projections(), graphOptions);
    }

    var baseBytes = model.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.WGate, l.WUp, l.WDown }).Sum(p => p.ByteSize);
    var trainer = new Trainer(graph, trainable, options);
    var times = new List<double>();
    var first = 0.0;
    for (var s = 0; s < steps + 2; s++)
    {
        var clock = Stopwatch.StartNew();
        var r = trainer.TrainStep([trainingBatch]);
        if (s >= 2)
        {
            times.Add(clock.Elapsed.TotalSeconds);
        }
        else if (s == 0)
        {
            first = r.Loss;
        }
    }

    times.Sort();
    var median = times[times.Count / 2];
    return new Dictionary<string, double>
    {
        ["tok_s"] = batch * seq / median,
        ["step_s"] = median,
        ["peak_rss_mb"] = Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0,
        ["base_bytes"] = baseBytes,
        ["activation_mb"] = graph.ActivationBytes / 1048576.0,
        ["first_loss"] = first,
    };
}

static LlamaModel RandomModel(LlamaConfig config, ModelLoadOptions? options)
{
    var model = LlamaModel.Create(config, options);
    var rng = new Random(0);
    foreach (var p in model.Parameters.Parameters)
    {
        var values = new float[p.Length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = p.Shape.Length == 1 ? 1f : (float)((rng.NextDouble() * 2 - 1) * 0.035);
        }

        p.CopyFrom(values);
    }

    return model;
}

// Multiply-adds ×2 of one step: forward 2·N·P, backward 2·N·P for dx plus 2·N·P for dW where trained.
static double StepFlops(LlamaConfig c, string method, int batch, int seq, int rank, string targets)
{
    var n = (double)batch * seq;
    var projections = ProjectionParameters(c);
    var head = (double)c.VocabSize * c.HiddenSize;
    var attention = c.NumLayers * 2.0 * 2 * batch * c.NumHeads * (seq * (seq + 1) / 2.0) * c.HeadDim;
    if (method == "full")
    {
        return 6 * n * (projections + head) + 3 * attention;
    }

    var d = c.HiddenSize;
    var f = c.IntermediateSize;
    var perLayer = targets == "qkvo" ? 4.0 * rank * (d + d) : rank * (4.0 * (d + d) + 3 * (d + f));
    return 4 * n * (projections + head) + 6 * n * perLayer * c.NumLayers + 3 * attention;
}

static long ProjectionParameters(LlamaConfig c) =>
    (long)c.NumLayers * (2L * c.HiddenSize * c.NumHeads * c.HeadDim + 2L * c.HiddenSize * c.NumKeyValueHeads * c.HeadDim
                         + 3L * c.HiddenSize * c.IntermediateSize);

static double MeasureGemm(int n)
{
    var a = TuningPlatform.Bench.Training.GemmComparison.Filled(n * n, 13);
    var w = TuningPlatform.Bench.Training.GemmComparison.Filled(n * n, 7);
    var c = new float[n * n];

    for (var i = 0; i < 3; i++)
    {
        MatMul.Gemm(a, w, default, c, n, n, n);
    }

    var reps = 0;
    var clock = Stopwatch.StartNew();
    while (clock.Elapsed.TotalSeconds < 1)
    {
        MatMul.Gemm(a, w, default, c, n, n, n);
        reps++;
    }

    return 2.0 * n * n * n * reps / clock.Elapsed.TotalSeconds / 1e9;
}

// This program again, as a child: the apphost when there is one, otherwise dotnet and the assembly.
static string[] SelfCommand()
{
    var path = Environment.ProcessPath!;
    return Path.GetFileNameWithoutExtension(path) == "dotnet" ? [path, Assembly.GetEntryAssembly()!.Location] : [path];
}

static JsonElement? Faster(JsonElement? best, JsonElement? next) =>
    best is null || (next is JsonElement n && n.GetProperty("tok_s").GetDouble() > best.Value.GetProperty("tok_s").GetDouble()) ? next ?? best : best;

static string TorchScript() => Path.Combine(AppContext.BaseDirectory, "python", "train_torch.py");

static JsonElement? RunChild(string program, string[] arguments, string? openBlasCoreType)
{
    var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var a in arguments)
    {
        start.ArgumentList.Add(a);
    }

    start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
    start.Environment.Remove("OPENBLAS_CORETYPE");
    if (openBlasCoreType is not null)
    {
        start.Environment["OPENBLAS_CORETYPE"] = openBlasCoreType;
    }

    try
    {
        using var process = Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            Console.Error.WriteLine($"{program} failed ({process.ExitCode}): {stderrTask.Result.Trim()}");
            return null;
        }

        return JsonDocument.Parse(stdout.Trim().Split('\n')[^1]).RootElement.Clone();
    }
    catch (System.ComponentModel.Win32Exception e)
    {
        Console.Error.WriteLine($"{program} not run ({e.Message}); for PyTorch: apt-get install python3-torch");
        return null;
    }
}

static LlamaConfig Shape(int dim, int hidden, int layers, int heads, int kvHeads, int vocab) => new()
{
    HiddenSize = dim,
    IntermediateSize = hidden,
    NumLayers = layers,
    NumHeads = heads,
    NumKeyValueHeadsRaw = kvHeads,
    VocabSize = vocab,
    MaxPositions = 2048,
    RmsNormEps = 1e-5,
    TieWordEmbeddings = true,
};

static string Fmt(double? v, string format = "0") => v is double d ? d.ToString(format, CultureInfo.InvariantCulture) : "n/a";

static string Ratio(double? ours, double? theirs) =>
    ours is double a && theirs is double b && b > 0 ? (a / b).ToString("0.00", CultureInfo.InvariantCulture) + "×" : "n/a";

static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);

int IntArg(string name, int fallback) =>
    args.SkipWhile(a => a != name).Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(fallback);

string StringArg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault(fallback);
