using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>The fp32 fast products (transpose + packed GEMM) against the naive double-accumulating references, on odd shapes.</summary>
public sealed class TrainingGemmTests
{
    public static TheoryData<int, int, int> Shapes => new() { { 1, 1, 1 }, { 7, 13, 5 }, { 37, 33, 70 }, { 64, 96, 288 } };

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
}
