using System.Globalization;

namespace TuningPlatform.Engine.Tests;

/// <summary>Elementwise closeness with a failure message naming the worst element.</summary>
internal static class NumericAssert
{
    /// <summary>Fails unless |actual − expected| ≤ atol + rtol·|expected| everywhere (and the lengths match).</summary>
    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double rtol, double atol, string what = "values")
    {
        var a = new double[actual.Length];
        var e = new double[expected.Length];
        for (var i = 0; i < a.Length; i++)
        {
            a[i] = actual[i];
        }
        for (var i = 0; i < e.Length; i++)
        {
            e[i] = expected[i];
        }
        AssertClose(a, e, rtol, atol, what);
    }

    /// <summary>Fails unless |actual − expected| ≤ atol + rtol·|expected| everywhere (and the lengths match).</summary>
    public static void AssertClose(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double rtol, double atol, string what = "values")
    {
        Assert.True(actual.Length == expected.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        var worst = -1;
        var worstExcess = 0.0;
        var maxAbs = 0.0;
        var failures = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            var diff = Math.Abs(actual[i] - expected[i]);
            maxAbs = Math.Max(maxAbs, double.IsNaN(diff) ? double.PositiveInfinity : diff);
            var allowed = atol + rtol * Math.Abs(expected[i]);
            var excess = double.IsNaN(diff) ? double.PositiveInfinity : diff - allowed;
            if (excess > 0)
            {
                failures++;
                if (worst < 0 || excess > worstExcess)
                {
                    worst = i;
                    worstExcess = excess;
                }
            }
        }

        if (worst >= 0)
        {
            Assert.Fail(string.Create(CultureInfo.InvariantCulture,
                $"{what}: {failures} of {actual.Length} elements outside rtol={rtol:g3}, atol={atol:g3}; worst at [{worst}]: actual {actual[worst]:g12}, expected {expected[worst]:g12} (|diff| {Math.Abs(actual[worst] - expected[worst]):g3}); max |diff| {maxAbs:g3}"));
        }
    }

    /// <summary>Deterministic pseudo-random values in [-scale, scale).</summary>
    public static float[] Random(int count, int seed, float scale = 1)
    {
        var rng = new Random(seed);
        var a = new float[count];
        for (var i = 0; i < a.Length; i++)
        {
            a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        }

        return a;
    }
}
