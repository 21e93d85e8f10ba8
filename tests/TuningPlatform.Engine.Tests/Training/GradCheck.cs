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

        NumericAssert.AssertClose(analytic, numeric, rtol, atol, what);
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
