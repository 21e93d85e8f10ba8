using TuningPlatform.Evaluation.Statistics;

namespace TuningPlatform.Evaluation.Tests.Statistics;

public class DisagreementsTests
{
    [Fact]
    public void Rank_LargestSpreadFirst_TiesInExampleOrder_AgreementsLeftOut()
    {
        double[] a = [1.0, 0.0, 0.5, 0.2, 0.0];
        double[] b = [0.0, 0.0, 1.0, 0.3, 1.0];
        var ranked = Disagreements.Rank([a, b], top: 10);
        Assert.Equal([0, 4, 2, 3], ranked.Select(d => d.ExampleIndex));
        Assert.Equal(1.0, ranked[0].Spread);
        Assert.Equal([1.0, 0.0], ranked[0].Scores);
        Assert.Equal(2, Disagreements.Rank([a, b], top: 2).Count);
    }

    [Fact]
    public void Rank_OneSystem_Throws() =>
        Assert.Throws<ArgumentException>(() => Disagreements.Rank([[1.0]], 5));
}
