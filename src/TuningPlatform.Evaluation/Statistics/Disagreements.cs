// Where systems disagree: for each example scored by every system, the spread of one metric
// (max − min over the systems); the largest spreads first, ties in example order. This is what
// a person reads after a significance test, to see not only that one system is better but where.
namespace TuningPlatform.Evaluation.Statistics;

/// <summary>An example and how far apart the systems' scores on it are.</summary>
public readonly record struct Disagreement(int ExampleIndex, double Spread, IReadOnlyList<double> Scores);

/// <summary>Ranking of the examples on which systems disagree most.</summary>
public static class Disagreements
{
    /// <summary>
    /// The <paramref name="top"/> examples with the largest spread; <paramref name="scoresBySystem"/>[s][i]
    /// is system s's score on example i. Examples where every system scores the same are left out.
    /// </summary>
    public static IReadOnlyList<Disagreement> Rank(IReadOnlyList<IReadOnlyList<double>> scoresBySystem, int top)
    {
        ArgumentNullException.ThrowIfNull(scoresBySystem);
        ArgumentOutOfRangeException.ThrowIfNegative(top);
        if (scoresBySystem.Count < 2)
        {
            throw new ArgumentException($"A disagreement needs at least two systems; got {scoresBySystem.Count}.", nameof(scoresBySystem));
        }

        var count = scoresBySystem[0].Count;
        foreach (var system in scoresBySystem)
        {
            Bootstrap.RequireSameLength(scoresBySystem[0], system);
        }

        var all = new List<Disagreement>();
        for (var i = 0; i < count; i++)
        {
            var scores = scoresBySystem.Select(system => system[i]).ToArray();
            var spread = scores.Max() - scores.Min();
            if (spread > 0)
            {
                all.Add(new Disagreement(i, spread, scores));
            }
        }

        return all.OrderByDescending(d => d.Spread).ThenBy(d => d.ExampleIndex).Take(top).ToList();
    }
}
