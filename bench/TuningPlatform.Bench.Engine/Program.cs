// Engine benchmark: generation at real model shapes with random weights (weights do not change speed),
// ours against PyTorch running the same Llama forward with a KV cache, same machine, same run, as ratios.
//   rows:    stories15M, stories42M, SmolLM2-135M × batch 1 and 8; ours in fp32 and with bf16-stored weights
//   figures: decode tokens/s (all sequences together), time to first token (prefill of every prompt in the
//            batch), memory
//   also:    the machine's fp32 GEMM rate (PyTorch's BLAS, 2 threads) and our packed GEMM against it
// PyTorch runs fairly (DESIGN.md §8): /usr/bin/python3, torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE,
// OPENBLAS_CORETYPE unset, or SkylakeX when OpenBLAS's autodetection picks a slower kernel (as the training bench
// does; see below). Usage:
//   dotnet run -c Release --project bench/TuningPlatform.Bench.Engine [-- --prompt 128 --new 256 --shapes stories15M,stories42M,smollm2-135m --no-torch]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Kernels;

var prompt = IntArg("--prompt", 128);
var newTokens = IntArg("--new", 256);
var withTorch = !args.Contains("--no-torch");
var wanted = StringArg("--shapes", "stories15M,stories42M,smollm2-135m").Split(',');
var shapes = new List<(string Name, LlamaConfig Config)>
{
    ("stories15M", Shape(288, 768, 6, 6, 6, 32000, tied: true)),
    ("stories42M", Shape(512, 1376, 8, 8, 8, 32000, tied: true)),
};
var smol = FindUp(Path.Combine("..", "shared", "assets", "tokenizers", "smollm2-135m", "config.json"));
if (smol is not null)
{
    shapes.Add(("smollm2-135m", LlamaConfig.Load(smol)));
}

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"Engine benchmark: {Environment.ProcessorCount} cores, prompt {prompt} tokens, {newTokens} new tokens, greedy, random weights; PyTorch with 2 threads"));
Console.WriteLine();

// Matrix-vector (decode) bandwidth: bytes of W streamed per second.
foreach (var (n, k) in new[] { (768, 288), (32000, 288), (1536, 576), (49152, 576) })
{
    var (fp32, bf16) = MeasureMatVec(n, k);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"matvec {n}×{k}: fp32 {fp32:0.0} GB/s, bf16 {bf16:0.0} GB/s of weights"));
}

// GEMM: the machine's fp32 rate (PyTorch's BLAS) and ours. OpenBLAS picks its kernels from CPUID; where the CPU model
// is masked (virtual machines) it falls back to a generic kernel several times slower than its SkylakeX one on an
// AVX-512 machine (measured here: 38–51 GFLOP/s against about 220). PyTorch gets whichever of "unset" and SkylakeX is
// faster, for every row, and the run says which.
var ourGemm = MeasureGemm(1024);
string? coreType = null;
var peak = withTorch ? RunTorch(["gemm", "--size", "1024"], null)?.GetProperty("gflops").GetDouble() : null;
if (withTorch && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
    && RunTorch(["gemm", "--size", "1024"], "SkylakeX")?.GetProperty("gflops").GetDouble() is double skx && skx > (peak ?? 0) * 1.2)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"PyTorch's OpenBLAS: {peak ?? 0:0.0} GFLOP/s with OPENBLAS_CORETYPE unset (autodetection), {skx:0.0} with SkylakeX: PyTorch runs with OPENBLAS_CORETYPE=SkylakeX"));
    coreType = "SkylakeX";
    peak = skx;
}

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"fp32 GEMM 1024³: ours {ourGemm:0.0} GFLOP/s, PyTorch/BLAS {(peak is double p ? p.ToString("0.0", CultureInfo.InvariantCulture) : "n/a")} GFLOP/s, ratio {(peak is double q ? (ourGemm / q).ToString("0.00", CultureInfo.InvariantCulture) : "n/a")}"));
Console.WriteLine();
Console.WriteLine("| shape | batch | weights | ours tok/s | PyTorch tok/s | ratio | ours TTFT ms | PyTorch TTFT ms | TTFT ratio | ours weights+KV MB | PyTorch peak RSS MB |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
foreach (var (name, config) in shapes.Where(s => wanted.Contains(s.Name)))
{
    foreach (var batch in new[] { 1, 8 })
    {
        JsonElement? torch = null;
        if (withTorch)
        {
            var c = new Dictionary<string, object>
            {
                ["dim"] = config.HiddenSize, ["hidden"] = config.IntermediateSize, ["layers"] = config.NumLayers,
                ["heads"] = config.NumHeads, ["kv_heads"] = config.NumKeyValueHeads, ["vocab"] = config.VocabSize,
                ["tied"] = config.TieWordEmbeddings, ["rope_theta"] = config.RopeTheta,
            };
            torch = RunTorch(["generate", JsonSerializer.Serialize(c), "--prompt", Str(prompt), "--new", Str(newTokens), "--batch", Str(batch)], coreType);
        }

        foreach (var dtype in new[] { ParameterDType.Float32, ParameterDType.BFloat16 })
        {
            var (tokS, ttft, bytes) = MeasureOurs(config, dtype, batch, prompt, newTokens);
            var theirTok = torch?.GetProperty("decode_tok_s").GetDouble();
            var theirTtft = torch?.GetProperty("ttft_s").GetDouble() * 1000;
            var rss = torch?.GetProperty("peak_rss_mb").GetDouble();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {batch} | {(dtype == ParameterDType.BFloat16 ? "bf16" : "fp32")} | {tokS:0.0} | {Fmt(theirTok)} | {Ratio(tokS, theirTok)} | {ttft * 1000:0.0} | {Fmt(theirTtft)} | {Ratio(theirTtft, ttft * 1000)} | {bytes / 1048576.0:0.0} | {Fmt(rss)} |"));
        }
    }
}

Console.WriteLine();
Console.WriteLine("ratio = ours / PyTorch for tokens/s and PyTorch / ours for TTFT (above 1 means we are faster). PyTorch always runs fp32 weights.");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"our process peak working set: {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:0} MB"));
return 0;

// Decode with BatchGenerator (the batch's prompts prefilled together in one forward, then decode steps over all sequences).
static (double TokensPerSecond, double TtftSeconds, long Bytes) MeasureOurs(LlamaConfig config, ParameterDType dtype, int batch, int prompt, int newTokens)
{
    var model = RandomModel(config, dtype);
    var rng = new Random(1);
    var options = new GenerationOptions { MaxNewTokens = newTokens, StopTokenIds = [] };
    var prompts = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, prompt).Select(_ => rng.Next(3, config.VocabSize)).ToArray()).ToArray();

    // Warm-up for at least two seconds, so tiered JIT has promoted the hot paths (a short warm-up leaves
    // them at tier 0 and measures the JIT, not the engine) and the worker pool is awake.
    var warmClock = Stopwatch.StartNew();
    do
    {
        var warm = new BatchGenerator(model, null, batch, prompt + 33);
        foreach (var p in prompts)
        {
            warm.Add(p, options with { MaxNewTokens = 32 });
        }

        warm.RunToCompletion();
    }
    while (warmClock.Elapsed.TotalSeconds < 2);

    var generator = new BatchGenerator(model, null, batch, prompt + newTokens);
    var clock = Stopwatch.StartNew();
    var sequences = prompts.Select(p => generator.Add(p, options)).ToList();
    generator.RunToCompletion();
    var total = clock.Elapsed.TotalSeconds;
    // As PyTorch's figure: until every sequence of the batch has its first token (all prompts prefilled, together in
    // one batched forward at the first step); decode is the rest.
    var ttft = sequences.Max(s => s.TimeToFirstToken).TotalSeconds;
    var decode = total - ttft;
    var tokens = sequences.Sum(s => s.TokenIds.Count - 1);
    var kv = 2L * config.NumLayers * config.NumKeyValueHeads * config.HeadDim * (prompt + newTokens) * 4 * batch;
    return (tokens / decode, ttft, model.Parameters.ByteSize + kv);
}

static LlamaModel RandomModel(LlamaConfig config, ParameterDType dtype)
{
    var model = LlamaModel.Create(config, new ModelLoadOptions { WeightDType = dtype });
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

static (double Fp32, double Bf16) MeasureMatVec(int n, int k)
{
    var x = new float[k];
    var w = new float[n * k];
    var w16 = new ushort[n * k];
    var y = new float[n];
    for (var i = 0; i < w.Length; i++)
    {
        w[i] = (i % 17) * 0.001f;
        w16[i] = (ushort)(BitConverter.SingleToUInt32Bits(w[i]) >> 16);
    }

    double Rate(Action step, long bytes)
    {
        for (var i = 0; i < 20; i++)
        {
            step();
        }

        var reps = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < 0.5)
        {
            step();
            reps++;
        }

        return bytes * reps / clock.Elapsed.TotalSeconds / 1e9;
    }

    return (Rate(() => MatMul.MatVec(x, w, default, y, n, k), 4L * n * k), Rate(() => MatMul.ForwardBf16(x, w16, default, y, 1, n, k), 2L * n * k));
}

static double MeasureGemm(int n)
{
    var a = new float[n * n];
    var w = new float[n * n];
    var c = new float[n * n];
    for (var i = 0; i < a.Length; i++)
    {
        a[i] = (i % 13) * 0.01f;
        w[i] = (i % 7) * 0.01f;
    }

    // The kernel prefill's products run on (Linear.Forward: PackedGemm through TrainingGemm.NT where AVX-512 is there).
    for (var i = 0; i < 3; i++)
    {
        TrainingGemm.NT<float>(a, w, c, n, n, n, accumulate: false);
    }

    var reps = 0;
    var clock = Stopwatch.StartNew();
    while (clock.Elapsed.TotalSeconds < 1)
    {
        TrainingGemm.NT<float>(a, w, c, n, n, n, accumulate: false);
        reps++;
    }

    return 2.0 * n * n * n * reps / clock.Elapsed.TotalSeconds / 1e9;
}

// PyTorch in a child process; coreType null leaves OPENBLAS_CORETYPE unset (OpenBLAS's autodetection).
static JsonElement? RunTorch(string[] arguments, string? coreType)
{
    var script = Path.Combine(AppContext.BaseDirectory, "python", "bench_torch.py");
    var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
    start.ArgumentList.Add(script);
    foreach (var a in arguments)
    {
        start.ArgumentList.Add(a);
    }

    start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
    start.Environment.Remove("OPENBLAS_CORETYPE");
    if (coreType is not null)
    {
        start.Environment["OPENBLAS_CORETYPE"] = coreType;
    }

    try
    {
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEnd();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            Console.Error.WriteLine($"PyTorch run failed ({process.ExitCode}): {stderr.Trim()}");
            return null;
        }

        return JsonDocument.Parse(stdout.Trim().Split('\n')[^1]).RootElement.Clone();
    }
    catch (System.ComponentModel.Win32Exception e)
    {
        Console.Error.WriteLine($"PyTorch not run: /usr/bin/python3 unavailable ({e.Message}); apt-get install python3-torch");
        return null;
    }
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
};

static string? FindUp(string relative)
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        var candidate = Path.Combine(dir.FullName, relative);
        if (File.Exists(candidate))
        {
            return candidate;
        }
    }

    return null;
}

static string Fmt(double? v) => v is double d ? d.ToString("0.0", CultureInfo.InvariantCulture) : "n/a";

static string Ratio(double? ours, double? theirs) =>
    ours is double a && theirs is double b && b > 0 ? (a / b).ToString("0.00", CultureInfo.InvariantCulture) + "×" : "n/a";

static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);

int IntArg(string name, int fallback) =>
    args.SkipWhile(a => a != name).Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(fallback);

string StringArg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault(fallback);
