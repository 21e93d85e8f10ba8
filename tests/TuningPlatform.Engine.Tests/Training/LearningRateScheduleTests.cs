using TuningPlatform.Engine.Training.Optim;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>Warmup, then cosine or linear decay to a floor of min ratio × peak, against the closed forms.</summary>
public sealed class LearningRateScheduleTests
{
    [Fact]
    public void Cosine_WithMinRatio_MatchesHandComputedValues()
    {
        // peak 1, no warmup, 4 steps, r = 0.2: lr(s) = 0.2 + 0.8 · ½(1 + cos(π s / 4)).
        var schedule = new LearningRateSchedule(1.0, 0, 4) { MinLearningRateRatio = 0.2 };

        double[] expected = [1.0, 0.2 + 0.8 * (0.5 + 0.5 * Math.Sqrt(0.5)), 0.6, 0.2 + 0.8 * (0.5 - 0.5 * Math.Sqrt(0.5)), 0.2, 0.2, 0.2];

        Assert.Equal(expected, Enumerable.Range(0, 7).Select(schedule.At), new Tolerance(1e-15));
    }

    [Fact]
    public void Linear_WithMinRatio_FallsInEqualStepsToTheFloor()
    {
        // peak 3e-3, warmup 2, 12 steps, r = 0.1: 0, 1.5e-3, then 3e-3 − k · 2.7e-3 / 10 for k = 0..10, then the floor.
        var schedule = new LearningRateSchedule(3e-3, 2, 12, DecayKind.Linear) { MinLearningRateRatio = 0.1 };

        Assert.Equal(0.0, schedule.At(0));
        Assert.Equal(1.5e-3, schedule.At(1), 1e-18);
        for (var k = 0; k <= 10; k++)
        {
            Assert.Equal(3e-3 - k * 2.7e-4, schedule.At(2 + k), 1e-17);
        }
        Assert.Equal(3e-4, schedule.At(12), 1e-18);
        Assert.Equal(3e-4, schedule.At(40), 1e-18);
    }

    [Theory]
    [InlineData(DecayKind.Cosine, 0.1)]
    [InlineData(DecayKind.Linear, 0.1)]
    [InlineData(DecayKind.Cosine, 0.5)]
    [InlineData(DecayKind.Linear, 1.0)]
    public void Decay_WithMinRatio_IsTheZeroFloorScheduleLiftedAffinely(DecayKind decay, double ratio)
    {
        // lr_r(s) = r · peak + (1 − r) · lr_0(s) after warmup; warmup itself is unchanged.
        var floorless = new LearningRateSchedule(2e-4, 3, 20, decay);
        var lifted = floorless with { MinLearningRateRatio = ratio };

        for (var s = 0; s <= 25; s++)
        {
            var expected = s < 3 ? floorless.At(s) : ratio * 2e-4 + (1 - ratio) * floorless.At(Math.Min(s, 20));
            Assert.Equal(expected, lifted.At(s), 1e-18);
        }
        Assert.Equal(2e-4, lifted.At(3), 1e-18);
        Assert.Equal(ratio * 2e-4, lifted.At(20), 1e-18);
        // Cosine is point-symmetric about the middle of the decay: lr(W + k) + lr(S − k) = peak (1 + r).
        if (decay == DecayKind.Cosine)
        {
            Assert.Equal(2e-4 * (1 + ratio), lifted.At(3 + 5) + lifted.At(20 - 5), 1e-18);
        }
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void MinRatio_OutsideUnitInterval_Throws(double ratio) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1, 0, 10) { MinLearningRateRatio = ratio });

    private sealed class Tolerance(double epsilon) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= epsilon;

        public int GetHashCode(double obj) => 0;
    }
}
