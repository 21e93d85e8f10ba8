// The matrix products of one training step, ours (TrainingGemm) against OpenBLAS's cblas_sgemm called in this same
// process (Debian's libopenblas.so.0, the library PyTorch uses here), alternating call by call, best of --reps each:
// a comparison that the host's minute-to-minute speed drift cannot tilt, since both sides share every minute;
// each call starts on a quiet machine (see Quiet).
//   products: per layer q/k/v/o, gate/up and down (forward x·Wᵀ, dx = dy·W, dW += dyᵀ·x), and the head's three
//             products per loss chunk; each weighted by how many times one full fine-tuning step runs it
//   threads:  OpenBLAS with 2 threads (openblas_set_num_threads), ours on the worker pool (one per core)
// OpenBLAS reads OPENBLAS_CORETYPE when it loads; on an AVX-512 machine whose CPU model is masked its autodetection
// picks a generic kernel, so this mode runs itself again with SkylakeX unless the variable is already set.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Bench.Training;

internal static unsafe class GemmComparison
{
    private const string OpenBlas = "libopenblas.so.0";

    // A pause after every timed call: OpenBLAS's threads spin for about 2^28 cycles (~0.1 s) after a call returns,
    // and a product timed inside that window shares the cores with them (ours measured 1.31x OpenBLAS's time
    // that way against 1.14x after a pause, in two probe runs minutes apart). Both sides get the same pause.
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(150);

    private enum Kind
    {
        NT,
        NN,
        TN,
    }

    public static int Run(IReadOnlyList<(string Name, LlamaConfig Config)> shapes, int rows, int lossChunk, int reps)
    {
        try
        {
            openblas_set_num_threads(2);
        }
        catch (DllNotFoundException)
        {
            Console.WriteLine($"{OpenBlas} not found: install Debian's libopenblas0 (python3-torch brings it) to compare the products with OpenBLAS.");
            return 2;
        }

        // An untimed pass over every product first: the tiered JIT compiles the kernels while it runs.
        foreach (var (_, c) in shapes)
        {
            foreach (var (_, m, n, k, kind, _) in Products(c, rows, lossChunk))
            {
                Measure(m, n, k, kind, 3);
            }
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Products of one full fine-tuning step, ours against OpenBLAS (OPENBLAS_CORETYPE={Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") ?? "unset"}, 2 threads) in this process, alternating, best of {reps}"));
        Console.WriteLine();
        Console.WriteLine("| shape | product | M × N × K | per step | ours ms | OpenBLAS ms | ours GFLOP/s | OpenBLAS GFLOP/s | time ratio |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (name, c) in shapes)
        {
            var products = Products(c, rows, lossChunk);
            double oursStep = 0, blasStep = 0;
            foreach (var (product, m, n, k, kind, count) in products)
            {
                var (ours, blas) = Measure(m, n, k, kind, reps);
                oursStep += count * ours;
                blasStep += count * blas;
                var flops = 2.0 * m * n * k;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {product} | {m} × {n} × {k} | {count} | {ours:0.00} | {blas:0.00} | {flops / ours / 1e6:0.0} | {flops / blas / 1e6:0.0} | {ours / blas:0.00} |"));
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | **all products of one step** | | | **{oursStep:0}** | **{blasStep:0}** | | | **{oursStep / blasStep:0.00}** |"));
        }

        Console.WriteLine();
        Console.WriteLine("time ratio = ours / OpenBLAS (below 1 is faster). Per step: how many times one step (batch × sequence rows, loss in chunks) runs the product.");
        return 0;
    }

    // Every product of one full fine-tuning step at this shape, with how many times the step runs it.
    private static (string Name, int M, int N, int K, Kind Kind, int Count)[] Products(LlamaConfig c, int rows, int lossChunk)
    {
        var (d, h, kv, layers) = (c.HiddenSize, c.IntermediateSize, c.NumKeyValueHeads * c.HeadDim, c.NumLayers);
        var chunks = (rows + lossChunk - 1) / lossChunk;
        return
        [
            ("q, o forward", rows, d, d, Kind.NT, 2 * layers),
            ("k, v forward", rows, kv, d, Kind.NT, 2 * layers),
            ("gate, up forward", rows, h, d, Kind.NT, 2 * layers),
            ("down forward", rows, d, h, Kind.NT, layers),
            ("q, o dx", rows, d, d, Kind.NN, 2 * layers),
            ("k, v dx", rows, d, kv, Kind.NN, 2 * layers),
            ("gate, up dx", rows, d, h, Kind.NN, 2 * layers),
            ("down dx", rows, h, d, Kind.NN, layers),
            ("q, o dW", d, d, rows, Kind.TN, 2 * layers),
            ("k, v dW", kv, d, rows, Kind.TN, 2 * layers),
            ("gate, up dW", h, d, rows, Kind.TN, 2 * layers),
            ("down dW", d, h, rows, Kind.TN, layers),
            ("head logits", lossChunk, c.VocabSize, d, Kind.NT, chunks),
            ("head dx", lossChunk, d, c.VocabSize, Kind.NN, chunks),
            ("head dW", c.VocabSize, d, lossChunk, Kind.TN, chunks),
        ];
    }

    // The same product through both libraries, alternating; the best time of each, in milliseconds.
    private static (double Ours, double Blas) Measure(int m, int n, int k, Kind kind, int reps)
    {
        var a = Filled((long)m * k, 13);
        var b = Filled((long)n * k, 7);
        var c = new float[(long)m * n];
        Ours(kind, a, b, c, m, n, k);
        Blas(kind, a, b, c, m, n, k);
        double ours = double.MaxValue, blas = double.MaxValue;
        for (var r = 0; r < reps; r++)
        {
            var clock = Stopwatch.StartNew();
            Ours(kind, a, b, c, m, n, k);
            ours = Math.Min(ours, clock.Elapsed.TotalMilliseconds);
            Thread.Sleep(Quiet);
            clock.Restart();
            Blas(kind, a, b, c, m, n, k);
            blas = Math.Min(blas, clock.Elapsed.TotalMilliseconds);
            Thread.Sleep(Quiet);
        }

        return (ours, blas);
    }

    /// <summary>A deterministic operand: element i is (i mod period) / 100.</summary>
    public static float[] Filled(long length, int period)
    {
        var x = new float[length];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (i % period) * 0.01f;
        }

        return x;
    }

    // NT: C = A·Bᵀ (A [M, K], B [N, K]); NN: C = A·B (B [K, N]); TN: C += Aᵀ·B (A [K, M], B [K, N]), as the step uses them.
    private static void Ours(Kind kind, float[] a, float[] b, float[] c, int m, int n, int k)
    {
        switch (kind)
        {
            case Kind.NT:
                TrainingGemm.NT<float>(a, b, c, m, n, k, accumulate: false);
                break;
            case Kind.NN:
                TrainingGemm.NN<float>(a, b, c, m, n, k, accumulate: false);
                break;
            default:
                TrainingGemm.TN<float>(a, b, c, m, n, k, accumulate: true);
                break;
        }
    }

    private static void Blas(Kind kind, float[] a, float[] b, float[] c, int m, int n, int k)
    {
        const int rowMajor = 101, noTrans = 111, trans = 112;
        fixed (float* pa = a, pb = b, pc = c)
        {
            switch (kind)
            {
                case Kind.NT:
                    cblas_sgemm(rowMajor, noTrans, trans, m, n, k, 1f, pa, k, pb, k, 0f, pc, n);
                    break;
                case Kind.NN:
                    cblas_sgemm(rowMajor, noTrans, noTrans, m, n, k, 1f, pa, k, pb, n, 0f, pc, n);
                    break;
                default:
                    cblas_sgemm(rowMajor, trans, noTrans, m, n, k, 1f, pa, m, pb, n, 1f, pc, n);
                    break;
            }
        }
    }

    [DllImport(OpenBlas)]
    private static extern void openblas_set_num_threads(int threads);

    [DllImport(OpenBlas)]
    private static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb,
        float beta, float* c, int ldc);
}
