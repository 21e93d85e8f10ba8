using TuningPlatform.Evaluation.Metrics;
using TuningPlatform.Evaluation.Statistics;
using TuningPlatform.Evaluation.Tests.Metrics;

namespace TuningPlatform.Evaluation.Tests.Statistics;

public class BootstrapTests
{
    private static double[] Scores(int count, int seed, double p)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.NextDouble() < p ? 1.0 : 0.0).ToArray();
    }

    [Fact]
    public void Mean_ConstantScores_IntervalCollapses()
    {
        var interval = Bootstrap.Mean([0.7, 0.7, 0.7, 0.7]);
        Assert.Equal(new ConfidenceInterval(0.7, 0.7, 0.7, 4), interval);
    }

    [Fact]
    public void Mean_BinaryScores_IntervalMatchesNormalApproximation()
    {
        // 400 Bernoulli outcomes: the 95% interval half-width is close to 1.96·sqrt(p(1−p)/n).
        var scores = Scores(400, 1, 0.6);
        var interval = Bootstrap.Mean(scores, new BootstrapOptions(Resamples: 2000, Seed: 7));
        var p = scores.Average();
        var halfWidth = 1.96 * Math.Sqrt(p * (1 - p) / scores.Length);
        Assert.InRange(interval.Lower, interval.Value - 1.2 * halfWidth, interval.Value - 0.8 * halfWidth);
        Assert.InRange(interval.Upper, interval.Value + 0.8 * halfWidth, interval.Value + 1.2 * halfWidth);
    }

    [Fact]
    public void Interval_SameSeed_Reproducible_OtherSeed_Differs()
    {
        var scores = Scores(50, 2, 0.5);
        Assert.Equal(Bootstrap.Mean(scores, new BootstrapOptions(Seed: 3)), Bootstrap.Mean(scores, new BootstrapOptions(Seed: 3)));
        Assert.NotEqual(Bootstrap.Mean(scores, new BootstrapOptions(Seed: 3)), Bootstrap.Mean(scores, new BootstrapOptions(Seed: 4)));
    }

    [Fact]
    public void Interval_CorpusBleu_ResamplesSegmentStatistics()
    {
        var segments = BleuTests.Hypotheses.Select((h, i) => Bleu.SegmentStatistics(h, BleuTests.References[i])).ToList();
        var interval = Bootstrap.Interval(segments.Count, w => Bleu.FromStatistics(BleuStatistics.Sum(segments, w), effectiveOrder: false).Score);
        TestData.AssertClose(48.53, interval.Value, 0.005, "BLEU on the full sample");
        Assert.True(interval.Lower <= interval.Value && interval.Value <= interval.Upper, $"{interval}");
    }

    [Fact]
    public void Quantile_LinearInterpolation_AsNumpy()
    {
        double[] sorted = [1, 2, 3, 4];
        Assert.Equal(1.075, Bootstrap.Quantile(sorted, 0.025), 12);
        Assert.Equal(3.925, Bootstrap.Quantile(sorted, 0.975), 12);
        Assert.Equal(2.5, Bootstrap.Quantile(sorted, 0.5), 12);
    }

    [Fact]
    public void PairedMean_SameSystem_PValueOne()
    {
        var scores = Scores(100, 5, 0.5);
        var comparison = Bootstrap.PairedMean(scores, scores);
        Assert.Equal(0, comparison.Difference);
        Assert.Equal(1.0, comparison.PValue);
        Assert.Equal(100, comparison.Ties);
    }

    [Fact]
    public void PairedMean_ClearlyBetterSystem_Significant()
    {
        var a = Scores(200, 6, 0.4);
        var b = a.Select((s, i) => i % 4 == 0 ? 1.0 : s).ToArray();
        var comparison = Bootstrap.PairedMean(a, b);
        Assert.True(comparison.Difference > 0);
        Assert.True(comparison.PValue < 0.01, $"p = {comparison.PValue}");
        Assert.True(comparison.Lower > 0, $"interval [{comparison.Lower}, {comparison.Upper}] should exclude 0");
        Assert.Equal(0, comparison.ABetter);
        Assert.Equal(a.Length, comparison.BBetter + comparison.Ties);
    }

    [Fact]
    public void PairedMean_IndependentNoise_NotSignificantMostOfTheTime()
    {
        // Under the null (two systems with the same accuracy) a 5% test rejects in about 5% of trials.
        var rejections = 0;
        for (var trial = 0; trial < 40; trial++)
        {
            var comparison = Bootstrap.PairedMean(Scores(60, 100 + trial, 0.5), Scores(60, 200 + trial, 0.5), new BootstrapOptions(Resamples: 300, Seed: trial));
            rejections += comparison.PValue < 0.05 ? 1 : 0;
        }

        Assert.InRange(rejections, 0, 6);
    }

    [Fact]
    public void PairedMean_DifferentLengths_Throws() =>
        Assert.Throws<ArgumentException>(() => Bootstrap.PairedMean([1.0], [1.0, 0.0]));

    [Fact]
    public void Options_OutOfRange_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Bootstrap.Mean([1.0], new BootstrapOptions(Resamples: 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Bootstrap.Mean([1.0], new BootstrapOptions(ConfidenceLevel: 1)));
    }
}
