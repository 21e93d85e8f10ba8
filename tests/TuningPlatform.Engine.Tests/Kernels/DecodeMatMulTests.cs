using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Tests.Kernels;

/// <summary>The decode kernel against the naive reference on odd shapes, and a row's result independent of the batch around it.</summary>
public sealed class DecodeMatMulTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 },
        { 1, 7, 15 },
        { 2, 5, 16 },
        { 3, 33, 17 },
        { 4, 4, 288 },
        { 5, 31, 47 },
        { 7, 65, 257 },
        { 8, 1001, 288 },
        { 8, 3000, 768 },
        { 13, 70, 100 },
        { 32, 37, 64 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_OddShapes_MatchesNaive(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 1);
        var w = NumericAssert.Random(n * k, 2);
        var bias = NumericAssert.Random(n, 3);
        var expected = new float[m * n];
        var actual = new float[m * n];
        MatMul.Naive(a, w, bias, expected, m, n, k);

        DecodeMatMul.Forward(a, w, bias, actual, m, n, k, new WorkerPool(2));

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-5 * Math.Sqrt(k), $"decode matmul {m}x{n}x{k}");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardBf16_OddShapes_MatchesNaiveBf16(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 4);
        var w16 = NumericAssert.Random(n * k, 5).Select(x => (ushort)(BitConverter.SingleToInt32Bits(x) >>> 16)).ToArray();
        var expected = new float[m * n];
        var actual = new float[m * n];
        MatMul.NaiveBf16(a, w16, default, expected, m, n, k);

        DecodeMatMul.ForwardBf16(a, w16, default, actual, m, n, k, new WorkerPool(2));

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-5 * Math.Sqrt(k), $"decode matmul bf16 {m}x{n}x{k}");
    }

    [Fact]
    public void Forward_RowAloneOrInAnyBatch_BitwiseEqual()
    {
        const int n = 1003;
        const int k = 301;
        var a = NumericAssert.Random(12 * k, 6);
        var w = NumericAssert.Random(n * k, 7);
        var pool = new WorkerPool(2);
        var together = new float[12 * n];
        DecodeMatMul.Forward(a, w, default, together, 12, n, k, pool);
        for (var m = 1; m <= 12; m++)
        {
            for (var r = 0; r < m; r++)
            {
                var part = new float[m * n];
                DecodeMatMul.Forward(a.AsSpan(0, m * k), w, default, part, m, n, k, pool);
                Assert.True(part.AsSpan(r * n, n).SequenceEqual(together.AsSpan(r * n, n)), $"row {r} of a batch of {m} differs from the same row in a batch of 12");
            }
        }

        var alone = new float[n];
        DecodeMatMul.Forward(a.AsSpan(5 * k, k), w, default, alone, 1, n, k, new WorkerPool(1));
        Assert.True(alone.AsSpan().SequenceEqual(together.AsSpan(5 * n, n)), "row 5 alone on one thread differs from row 5 in a batch of 12 on two");
    }

    [Fact]
    public void Forward_MoreThanMaxRows_Throws()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DecodeMatMul.Forward(new float[33 * 16], new float[16], default, new float[33], 33, 1, 16));

        Assert.Contains("1 to 32", e.Message, StringComparison.Ordinal);
    }
}
