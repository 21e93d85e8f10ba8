using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Training.Kernels;
using TuningPlatform.Engine.Training.Quantization;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>The fp32 fast products (transpose + packed GEMM) against the naive double-accumulating references, on odd shapes.</summary>
public sealed class TrainingGemmTests
{
    public static TheoryData<int, int, int> Shapes => new() { { 1, 1, 1 }, { 7, 13, 5 }, { 37, 33, 70 }, { 64, 96, 288 }, { 301, 45, 333 }, { 13, 200, 700 } };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FastProducts_OddShapes_MatchNaive(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 1);
        var bNt = NumericAssert.Random(n * k, 2);
        var bNn = NumericAssert.Random(k * n, 3);
        var aT = NumericAssert.Random(k * m, 4);
        var start = NumericAssert.Random(m * n, 5);

        foreach (var accumulate in new[] { false, true })
        {
            var fast = (float[])start.Clone();
            var naive = (float[])start.Clone();
            TrainingGemm.NT<float>(a, bNt, fast, m, n, k, accumulate);
            TrainingGemm.NaiveNT<float>(a, bNt, naive, m, n, k, accumulate);
            NumericAssert.AssertClose(fast, naive, 1e-5, 1e-5, $"NT accumulate={accumulate}");

            fast = (float[])start.Clone();
            naive = (float[])start.Clone();
            TrainingGemm.NN<float>(a, bNn, fast, m, n, k, accumulate);
            TrainingGemm.NaiveNN<float>(a, bNn, naive, m, n, k, accumulate);
            NumericAssert.AssertClose(fast, naive, 1e-5, 1e-5, $"NN accumulate={accumulate}");

            fast = (float[])start.Clone();
            naive = (float[])start.Clone();
            TrainingGemm.TN<float>(aT, bNn, fast, m, n, k, accumulate);
            TrainingGemm.NaiveTN<float>(aT, bNn, naive, m, n, k, accumulate);
            NumericAssert.AssertClose(fast, naive, 1e-5, 1e-5, $"TN accumulate={accumulate}");
        }
    }

    [Theory]
    [InlineData(5, 7, 3, false)]
    [InlineData(37, 70, 333, true)]
    [InlineData(300, 64, 96, true)]
    [InlineData(50, 48, 70, false)]
    [InlineData(9, 45, 19, true)]
    public unsafe void PackedGemm_StridedOperandsAndAlpha_MatchNaive(int m, int n, int k, bool parallel)
    {
        // A and C live inside wider rows (stride m + 3, n + 5), as attention's per-head slices do.
        var (lda, ldc, ldb) = (k + 3, n + 5, k + 2);
        var a = NumericAssert.Random(m * lda, 11);
        var b = NumericAssert.Random(n * ldb, 12);
        var start = NumericAssert.Random(m * ldc, 13);
        var pool = parallel ? WorkerPool.Shared : null;
        foreach (var accumulate in new[] { false, true })
        {
            var fast = (float[])start.Clone();
            fixed (float* pa = a, pb = b, pc = fast)
            {
                PackedGemm.Run(pa, lda, 1, pb, ldb, GemmLayout.NK, pc, ldc, m, n, k, 0.5f, accumulate, pool);
            }

            var expected = (float[])start.Clone();
            for (var i = 0; i < m; i++)
            {
                for (var j = 0; j < n; j++)
                {
                    var sum = 0.0;
                    for (var p = 0; p < k; p++)
                    {
                        sum += (double)a[i * lda + p] * b[j * ldb + p];
                    }

                    expected[i * ldc + j] = (float)((accumulate ? expected[i * ldc + j] : 0) + 0.5 * sum);
                }
            }

            NumericAssert.AssertClose(fast, expected, 1e-5, 1e-5, $"strided NK accumulate={accumulate}");
        }
    }

    // B larger than one packed block (8 MB): 20000 columns × 300 k is cut into blocks of columns, and 40 columns
    // × 70000 k into super-blocks of k, each packed once and shared by every chunk; both layouts of B, A read in
    // place and transposed (packed), accumulating or not, against a float64 product.
    [Theory]
    [InlineData(7, 20000, 300)]
    [InlineData(13, 40, 70000)]
    public unsafe void PackedGemm_BLargerThanOnePackedBlock_MatchesNaive(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 21);
        var b = NumericAssert.Random(n * k, 22);
        var start = NumericAssert.Random(m * n, 23);
        foreach (var (layout, transposedA, accumulate) in new[] { (GemmLayout.NK, false, false), (GemmLayout.KN, true, true) })
        {
            var fast = (float[])start.Clone();
            fixed (float* pa = a, pb = b, pc = fast)
            {
                // Transposed A: element (i, p) at a[p·m + i]; KN B: element (p, j) at b[p·n + j].
                PackedGemm.Run(pa, transposedA ? 1 : k, transposedA ? m : 1, pb, layout == GemmLayout.NK ? k : n, layout, pc, n, m, n, k, 0.5f, accumulate, WorkerPool.Shared);
            }

            var expected = new double[m * n];
            for (var i = 0; i < m; i++)
            {
                for (var p = 0; p < k; p++)
                {
                    var aip = (double)(transposedA ? a[p * m + i] : a[i * k + p]);
                    for (var j = 0; j < n; j++)
                    {
                        expected[i * n + j] += aip * (layout == GemmLayout.NK ? b[j * k + p] : b[p * n + j]);
                    }
                }
            }

            var want = new float[m * n];
            for (var i = 0; i < want.Length; i++)
            {
                want[i] = (float)((accumulate ? start[i] : 0) + 0.5 * expected[i]);
            }

            // fp32 sums of k products: absolute error grows with k (an indexing error would be of the values' size, ~√k).
            NumericAssert.AssertClose(fast, want, 1e-4, 1e-6 * k, $"{layout} transposedA={transposedA} accumulate={accumulate}");
        }
    }

    // Four threads whatever the machine: with 600 rows the product is split across chunks by rows (narrow NF4
    // operands have fewer 32-column panels than chunks), the path where a chunk's row loop once wrapped around
    // int.MaxValue and read outside A (stories260K's 64-wide projections crashed QLoRA).
    private static readonly WorkerPool FourThreads = new(4);

    [Theory]
    [InlineData(7, 64, 128)]
    [InlineData(45, 100, 192)]
    [InlineData(600, 64, 128)]
    [InlineData(600, 192, 512)]
    public unsafe void PackedGemm_Nf4Operand_MatchesDequantisedDense(int m, int outFeatures, int inFeatures)
    {
        var w = Nf4Tensor.Quantize(NumericAssert.Random(outFeatures * inFeatures, 21), outFeatures, inFeatures);
        var dense = w.Dequantize();
        var x = NumericAssert.Random(m * inFeatures, 22);
        var dy = NumericAssert.Random(m * outFeatures, 23);

        // Forward y = x·Wᵀ (W as N×K) and backward dx += dy·W (W as K×N).
        var y = new float[m * outFeatures];
        var dx = NumericAssert.Random(m * inFeatures, 24);
        var dxExpected = (float[])dx.Clone();
        fixed (float* px = x, py = y, pdy = dy, pdx = dx)
        {
            PackedGemm.Run(px, inFeatures, 1, w, inFeatures, GemmLayout.NK, py, outFeatures, m, outFeatures, inFeatures, 1f, false, FourThreads);
            PackedGemm.Run(pdy, outFeatures, 1, w, inFeatures, GemmLayout.KN, pdx, inFeatures, m, inFeatures, outFeatures, 1f, true, FourThreads);
        }

        var yExpected = new float[m * outFeatures];
        TrainingGemm.NaiveNT<float>(x, dense, yExpected, m, outFeatures, inFeatures, accumulate: false);
        TrainingGemm.NaiveNN<float>(dy, dense, dxExpected, m, inFeatures, outFeatures, accumulate: true);
        NumericAssert.AssertClose(y, yExpected, 1e-5, 1e-5, "NF4 forward");
        NumericAssert.AssertClose(dx, dxExpected, 1e-5, 1e-5, "NF4 backward");
    }
}
