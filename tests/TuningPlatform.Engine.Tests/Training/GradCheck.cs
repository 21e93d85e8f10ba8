using System.Globalization;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>Central finite differences in float64, and a double-precision closeness check naming the worst element.</summary>
internal static class GradCheck
{
    /// <summary>Fails unless every analytic derivative matches (f(x + h) − f(x − h)) / 2h, perturbing <paramref name="x"/> in place.</summary>
    public static void AssertMatchesFiniteDifferences(double[] x, ReadOnlySpan<double> analytic, Func<double> loss, string what,
        double h = 1e-6, double rtol = 1e-6, double atol = 1e-8)
    {
        var numeric = new double[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            var saved = x[i];
            x[i] = saved + h;
            var plus = loss();
            x[i] = saved - h;
            var minus = loss();
            x[i] = saved;
            numeric[i] = (plus - minus) / (2 * h);
        }

        AssertClose(analytic, numeric, rtol, atol, what);
    }

    /// <summary>Fails unless |actual − expected| ≤ atol + rtol·|expected| everywhere.</summary>
    public static void AssertClose(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double rtol, double atol, string what)
    {
        Assert.True(actual.Length == expected.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        var worst = -1;
        var worstExcess = 0.0;
        var failures = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            var diff = Math.Abs(actual[i] - expected[i]);
            var excess = double.IsNaN(diff) ? double.PositiveInfinity : diff - (atol + rtol * Math.Abs(expected[i]));
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
                $"{what}: {failures} of {actual.Length} elements outside rtol={rtol:g3}, atol={atol:g3}; worst at [{worst}]: actual {actual[worst]:g12}, expected {expected[worst]:g12}"));
        }
    }

    /// <summary>Deterministic values in [-scale, scale).</summary>
    public static double[] Random(int count, int seed, double scale = 1)
    {
        var rng = new Random(seed);
        var a = new double[count];
        for (var i = 0; i < a.Length; i++)
        {
            a[i] = (rng.NextDouble() * 2 - 1) * scale;
        }

        return a;
    }

    /// <summary>Σ a·b, the scalar whose gradient with respect to an op's output is <paramref name="b"/>.</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        var s = 0.0;
        for (var i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }

        return s;
    }
}
