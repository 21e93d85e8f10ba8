using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Ops;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Tests.Kernels;

/// <summary>Fast kernels against their naive references on odd shapes (edges of every tile and block).</summary>
public sealed class MatMulTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 },
        { 1, 7, 5 },
        { 2, 33, 17 },
        { 5, 31, 3 },
        { 6, 32, 256 },
        { 7, 65, 257 },
        { 13, 100, 300 },
        { 37, 77, 513 },
        { 64, 288, 288 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Gemm_OddShapes_MatchesNaive(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 1);
        var w = NumericAssert.Random(n * k, 2);
        var bias = NumericAssert.Random(n, 3);
        var expected = new float[m * n];
        var actual = new float[m * n];
        MatMul.Naive(a, w, bias, expected, m, n, k);

        MatMul.Gemm(a, w, bias, actual, m, n, k);

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-5 * Math.Sqrt(k), $"gemm {m}x{n}x{k}");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatVec_OddShapes_MatchesNaive(int m, int n, int k)
    {
        _ = m;
        var x = NumericAssert.Random(k, 4);
        var w = NumericAssert.Random(n * k, 5);
        var expected = new float[n];
        var actual = new float[n];
        MatMul.Naive(x, w, default, expected, 1, n, k);

        MatMul.MatVec(x, w, default, actual, n, k);

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-5 * Math.Sqrt(k), $"matvec {n}x{k}");
    }

    [Theory]
    [InlineData(2, 33, 17)]
    [InlineData(5, 700, 300)]
    [InlineData(8, 1000, 288)]
    public void Forward_FewRowsTakesMatVec_MatchesNaive(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 8);
        var w = NumericAssert.Random(n * k, 9);
        var bias = NumericAssert.Random(n, 10);
        var expected = new float[m * n];
        var actual = new float[m * n];
        MatMul.Naive(a, w, bias, expected, m, n, k);

        MatMul.Forward(a, w, bias, actual, m, n, k);

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-5 * Math.Sqrt(k), $"matvec rows {m}x{n}x{k}");
    }

    [Fact]
    public void Gemm_LargeParallel_MatchesNaiveAndOverwritesOutput()
    {
        const int M = 50, N = 200, K = 600;
        var a = NumericAssert.Random(M * K, 6);
        var w = NumericAssert.Random(N * K, 7);
        var expected = new float[M * N];
        var actual = Enumerable.Repeat(123f, M * N).ToArray();
        MatMul.Naive(a, w, default, expected, M, N, K);

        MatMul.Gemm(a, w, default, actual, M, N, K, new WorkerPool(3));

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-3, "gemm 50x200x600");
    }

    [Fact]
    public void Gemm_ShapesTooSmall_ThrowsNamingSizes()
    {
        var ex = Assert.Throws<ArgumentException>(() => MatMul.Gemm(new float[5], new float[6], default, new float[4], 2, 2, 3));

        Assert.Contains("A needs 6", ex.Message);
    }

    [Theory]
    [InlineData(0, 5, 4, 2, 8)]
    [InlineData(3, 1, 4, 4, 6)]
    [InlineData(4, 7, 6, 2, 16)]
    [InlineData(0, 1, 9, 3, 12)]
    public void Attention_Fast_MatchesNaive(int start, int count, int heads, int kvHeads, int headDim)
    {
        const int S = 16;
        var q = NumericAssert.Random(count * heads * headDim, 8);
        var keys = NumericAssert.Random(kvHeads * S * headDim, 9);
        var values = NumericAssert.Random(kvHeads * S * headDim, 10);
        var expected = new float[count * heads * headDim];
        var actual = new float[count * heads * headDim];
        var pool = new WorkerPool(2);
        Attention.Naive(expected, q, keys, values, start, count, heads, kvHeads, headDim, S);

        Attention.Forward(actual, q, keys, values, new float[Attention.ScratchLength(S, pool)], start, count, heads, kvHeads, headDim, S, pool);

        NumericAssert.AssertClose(actual, expected, 1e-5, 1e-6, "attention");
    }
}
