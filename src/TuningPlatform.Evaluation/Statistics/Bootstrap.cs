// Bootstrap confidence intervals and paired significance tests over examples.
//
// Percentile bootstrap (Efron & Tibshirani 1993, ch. 13): draw B resamples of the n examples
// with replacement, recompute the statistic on each, and take the α/2 and 1 − α/2 quantiles
// of the B values (linear interpolation between order statistics, numpy's default). A resample
// is a vector of counts (how often each example was drawn), so corpus-level statistics such as
// BLEU sum weighted sufficient statistics instead of copying examples.
//
// Paired bootstrap (Koehn 2004, "Statistical Significance Tests for Machine Translation
// Evaluation"; sacreBLEU's paired_bs): both systems are scored on the same resamples;
// δ_b = stat_B(resample b) − stat_A(resample b). The interval is the percentile interval of δ.
// The two-sided p-value shifts the bootstrap distribution of δ to the null (mean 0) and counts
// resamples at least as far from 0 as the observed difference (Efron & Tibshirani 1993 §16.4;
// Berg-Kirkpatrick et al. 2012): p = (1 + #{b : |δ_b − mean(δ)| ≥ |δ_observed|}) / (B + 1); the
// +1 keeps the test from rejecting more often than its level, and ≥ gives a system compared with
// itself p = 1. sacreBLEU (significance.py, _paired_bs_test) centres |δ_b| instead of δ_b, which
// folds the two tails into one: for a clear difference its p is about half of this two-sided
// one, and under the null it rejects about twice as often as its level.
//
// Resampling uses System.Random with an explicit seed, whose sequence .NET keeps stable across
// versions (a seeded Random uses the legacy algorithm), so a seed reproduces the same intervals.
namespace TuningPlatform.Evaluation.Statistics;

/// <summary>A statistic of a weighted sample: weights[i] = how many times example i is in the resample.</summary>
public delegate double ResampleStatistic(ReadOnlySpan<int> weights);

/// <summary>A point estimate with its percentile bootstrap interval.</summary>
public readonly record struct ConfidenceInterval(double Value, double Lower, double Upper, int SampleCount);

/// <summary>The paired comparison of system B against system A on the same examples.</summary>
public sealed record PairedComparison(
    double Difference,
    double Lower,
    double Upper,
    double PValue,
    int BBetter,
    int ABetter,
    int Ties);

/// <summary>Resampling settings: resamples, confidence level and seed.</summary>
public sealed record BootstrapOptions(int Resamples = 1000, double ConfidenceLevel = 0.95, int Seed = 42)
{
    /// <summary>Throws when a setting is out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Resamples, 1, nameof(Resamples));
        if (!(ConfidenceLevel > 0 && ConfidenceLevel < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(ConfidenceLevel), ConfidenceLevel, "The confidence level must lie strictly between 0 and 1.");
        }
    }
}

/// <summary>Percentile bootstrap intervals and the paired bootstrap test.</summary>
public static class Bootstrap
{
    /// <summary>The mean of per-example scores with its interval.</summary>
    public static ConfidenceInterval Mean(IReadOnlyList<double> scores, BootstrapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(scores);
        return Interval(scores.Count, WeightedMean(scores), options);
    }

    /// <summary>Any statistic of the examples with its interval (the value is the statistic on the full sample).</summary>
    public static ConfidenceInterval Interval(int count, ResampleStatistic statistic, BootstrapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(statistic);
        options ??= new BootstrapOptions();
        options.Validate();
        var value = statistic(Ones(count));
        if (count == 0)
        {
            return new ConfidenceInterval(value, value, value, 0);
        }

        var samples = new double[options.Resamples];
        var random = new Random(options.Seed);
        var weights = new int[count];
        for (var b = 0; b < samples.Length; b++)
        {
            Draw(random, weights);
            samples[b] = statistic(weights);
        }

        var alpha = 1 - options.ConfidenceLevel;
        Array.Sort(samples);
        return new ConfidenceInterval(value, Quantile(samples, alpha / 2), Quantile(samples, 1 - alpha / 2), count);
    }

    /// <summary>Paired comparison of the means of per-example scores (B − A).</summary>
    public static PairedComparison PairedMean(IReadOnlyList<double> a, IReadOnlyList<double> b, BootstrapOptions? options = null)
    {
        RequireSameLength(a, b);
        var comparison = Paired(a.Count, WeightedMean(a), WeightedMean(b), options);
        var (bBetter, aBetter, ties) = Wins(a, b);
        return comparison with { BBetter = bBetter, ABetter = aBetter, Ties = ties };
    }

    /// <summary>
    /// Paired comparison of any statistic (B − A) on the same resamples. Per-example wins are not
    /// known for a corpus statistic and are left 0; see <see cref="Wins"/>.
    /// </summary>
    public static PairedComparison Paired(int count, ResampleStatistic a, ResampleStatistic b, BootstrapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        options ??= new BootstrapOptions();
        options.Validate();
        var ones = Ones(count);
        var observed = b(ones) - a(ones);
        if (count == 0)
        {
            return new PairedComparison(observed, observed, observed, 1.0, 0, 0, 0);
        }

        var deltas = new double[options.Resamples];
        var random = new Random(options.Seed);
        var weights = new int[count];
        for (var r = 0; r < deltas.Length; r++)
        {
            Draw(random, weights);
            deltas[r] = b(weights) - a(weights);
        }

        var mean = deltas.Average();
        var extreme = deltas.Count(d => Math.Abs(d - mean) >= Math.Abs(observed));
        var pValue = (extreme + 1.0) / (deltas.Length + 1.0);
        var alpha = 1 - options.ConfidenceLevel;
        Array.Sort(deltas);
        return new PairedComparison(observed, Quantile(deltas, alpha / 2), Quantile(deltas, 1 - alpha / 2), pValue, 0, 0, 0);
    }

    /// <summary>Examples where B scored higher, lower, or the same as A.</summary>
    public static (int BBetter, int ABetter, int Ties) Wins(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        RequireSameLength(a, b);
        int bBetter = 0, aBetter = 0, ties = 0;
        for (var i = 0; i < a.Count; i++)
        {
            if (b[i] > a[i])
            {
                bBetter++;
            }
            else if (b[i] < a[i])
            {
                aBetter++;
            }
            else
            {
                ties++;
            }
        }

        return (bBetter, aBetter, ties);
    }

    /// <summary>The q-quantile of sorted values, interpolating linearly between order statistics (numpy's default, Hyndman–Fan type 7).</summary>
    public static double Quantile(ReadOnlySpan<double> sorted, double q)
    {
        if (sorted.IsEmpty)
        {
            return double.NaN;
        }

        var position = q * (sorted.Length - 1);
        var below = (int)Math.Floor(position);
        var above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
    }

    /// <summary>Σ wᵢ·xᵢ / Σ wᵢ as a resample statistic.</summary>
    public static ResampleStatistic WeightedMean(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return weights =>
        {
            double sum = 0;
            long total = 0;
            for (var i = 0; i < values.Count; i++)
            {
                sum += weights[i] * values[i];
                total += weights[i];
            }

            return total > 0 ? sum / total : double.NaN;
        };
    }

    internal static void RequireSameLength<T>(IReadOnlyList<T> a, IReadOnlyList<T> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Count != b.Count)
        {
            throw new ArgumentException($"Paired statistics need the same examples in both systems; got {a.Count} and {b.Count}.", nameof(b));
        }
    }

    // One resample with replacement of weights.Length examples, as counts.
    private static void Draw(Random random, int[] weights)
    {
        Array.Clear(weights);
        for (var i = 0; i < weights.Length; i++)
        {
            weights[random.Next(weights.Length)]++;
        }
    }

    private static int[] Ones(int count)
    {
        var ones = new int[count];
        Array.Fill(ones, 1);
        return ones;
    }
}
