using TuningPlatform.Curation.Cleaning;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Statistics;

/// <summary>Summary of a numeric quantity: count, sum, min, max, mean, p5, p50, p95 and a histogram.</summary>
public sealed record DistributionSummary(long Count, double Sum, double Min, double Max, double Mean, double P5, double P50, double P95,
    IReadOnlyList<double> UpperBounds, IReadOnlyList<long> Counts)
{
    public static DistributionSummary Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0)
        {
            return new DistributionSummary(0, 0, 0, 0, 0, 0, 0, 0, [], [0]);
        }
        var sorted = values.Order().ToArray();
        double Percentile(double p) => sorted[(int)Math.Clamp(Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
        // Powers-of-two buckets up to the maximum: readable for token lengths and turn counts alike.
        var bounds = new List<double>();
        for (double b = 1; b < sorted[^1]; b *= 2)
        {
            bounds.Add(b);
        }
        var counts = new long[bounds.Count + 1];
        foreach (var v in sorted)
        {
            var k = bounds.FindIndex(b => v <= b);
            counts[k < 0 ? bounds.Count : k]++;
        }
        var sum = sorted.Sum();
        return new DistributionSummary(sorted.Length, sum, sorted[0], sorted[^1], sum / sorted.Length, Percentile(0.05), Percentile(0.5), Percentile(0.95), bounds, counts);
    }
}

/// <summary>Statistics of one split (or, with <see cref="Split"/> null, of the whole version).</summary>
public sealed record SplitSummary
{
    public Split? Split { get; init; }
    public long ExampleCount { get; init; }
    public required DistributionSummary Turns { get; init; }
    public DistributionSummary? Tokens { get; init; }
    public DistributionSummary? TrainedTokens { get; init; }
    public required DistributionSummary Characters { get; init; }
    public long TotalTokens { get; init; }
    public long TotalTrainedTokens { get; init; }
    public long ExamplesOverMaxLength { get; init; }
    public IReadOnlyDictionary<string, long> MessagesByRole { get; init; } = new Dictionary<string, long>();
    public long WithoutSystem { get; init; }
    public long WithoutUser { get; init; }
    public IReadOnlyDictionary<string, long> ByLanguage { get; init; } = new Dictionary<string, long>();
    public IReadOnlyDictionary<string, long> ByLabel { get; init; } = new Dictionary<string, long>();
    public long ExactDuplicates { get; init; }
    public long? NearDuplicates { get; init; }
}

/// <summary>Statistics of a version, with the OpenAI cookbook's epoch heuristic and training-token estimate.</summary>
public sealed record DatasetSummary(SplitSummary Overall, IReadOnlyList<SplitSummary> Splits, int RecommendedEpochs, int Epochs,
    long EstimatedTrainingTokens, long CrossSplitDuplicates);

public static class StatisticsCalculator
{
    /// <summary>Statistics of <paramref name="examples"/>; a null renderer (no tokenizer) leaves the token fields unset.</summary>
    public static DatasetSummary Compute(IReadOnlyList<Example> examples, TrainingRenderer? render, int maxSeqLength, int epochs,
        double nearDuplicateThreshold, CancellationToken cancellationToken = default)
    {
        var rendered = render is null ? null : examples.Select(e =>
        {
            cancellationToken.ThrowIfCancellationRequested();
            var r = render.Render(e);
            return (r.TokenCount, r.TrainedTokenCount);
        }).ToArray();
        var roots = nearDuplicateThreshold > 0
            ? new NearDuplicateDetector(nearDuplicateThreshold).FindClusters(examples.Select(e => e.FullText()).ToList(), cancellationToken)
            : null;
        var indices = Enumerable.Range(0, examples.Count).ToList();
        var overall = Summarize(null, indices, examples, rendered, roots, maxSeqLength);
        var splits = indices.GroupBy(i => examples[i].Split).Where(g => g.Key != Split.Unassigned || examples.Any(e => e.Split != Split.Unassigned))
            .OrderBy(g => g.Key).Select(g => Summarize(g.Key, g.ToList(), examples, rendered, roots, maxSeqLength)).ToList();
        var trainCount = examples.Count(e => e.Split is Split.Train or Split.Unassigned);
        var recommended = RecommendedEpochs(trainCount);
        var used = epochs > 0 ? epochs : recommended;
        long estimated = 0;
        if (rendered is not null)
        {
            for (var i = 0; i < examples.Count; i++)
            {
                if (examples[i].Split is Split.Train or Split.Unassigned)
                {
                    estimated += Math.Min(maxSeqLength, rendered[i].TokenCount);
                }
            }
        }
        return new DatasetSummary(overall, splits, recommended, used, estimated * used, Splitter.CountCrossSplitDuplicates(examples));
    }

    /// <summary>OpenAI cookbook: 3 epochs, raised or lowered so examples × epochs is within [100, 25000], epochs in [1, 25].</summary>
    public static int RecommendedEpochs(long examples)
    {
        const int Default = 3;
        if (examples == 0)
        {
            return Default;
        }
        if (examples * Default < 100)
        {
            return (int)Math.Min(25, Math.Ceiling(100.0 / examples));
        }
        if (examples * Default > 25_000)
        {
            return (int)Math.Max(1, Math.Floor(25_000.0 / examples));
        }
        return Default;
    }

    private static SplitSummary Summarize(Split? split, List<int> indices, IReadOnlyList<Example> examples, (int Tokens, int Trained)[]? rendered,
        int[]? roots, int maxSeqLength)
    {
        var roles = new Dictionary<string, long>(StringComparer.Ordinal);
        var languages = new Dictionary<string, long>(StringComparer.Ordinal);
        var labels = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var i in indices)
        {
            var e = examples[i];
            foreach (var m in e.Messages)
            {
                var name = RoleNames.ToName(m.Role);
                roles[name] = roles.GetValueOrDefault(name) + 1;
            }
            var (language, _) = LanguageDetector.Detect(string.Join("\n", e.Texts()));
            languages[language] = languages.GetValueOrDefault(language) + 1;
            if (e.Label.Length > 0)
            {
                labels[e.Label] = labels.GetValueOrDefault(e.Label) + 1;
            }
        }
        var subset = indices.Select(i => examples[i]).ToList();
        return new SplitSummary
        {
            Split = split,
            ExampleCount = indices.Count,
            Turns = DistributionSummary.Of(subset.Select(e => (double)e.Messages.Count).ToList()),
            Characters = DistributionSummary.Of(subset.Select(e => (double)e.Texts().Sum(t => t.Length)).ToList()),
            Tokens = rendered is null ? null : DistributionSummary.Of(indices.Select(i => (double)rendered[i].Tokens).ToList()),
            TrainedTokens = rendered is null ? null : DistributionSummary.Of(indices.Select(i => (double)rendered[i].Trained).ToList()),
            TotalTokens = rendered is null ? 0 : indices.Sum(i => (long)rendered[i].Tokens),
            TotalTrainedTokens = rendered is null ? 0 : indices.Sum(i => (long)rendered[i].Trained),
            ExamplesOverMaxLength = rendered is null ? 0 : indices.Count(i => rendered[i].Tokens > maxSeqLength),
            MessagesByRole = roles,
            WithoutSystem = subset.Count(e => !e.IsText && e.Messages.All(m => m.Role != Role.System)),
            WithoutUser = subset.Count(e => !e.IsText && e.Messages.All(m => m.Role != Role.User)),
            ByLanguage = languages,
            ByLabel = labels,
            ExactDuplicates = ExactDeduplicator.CountDuplicates(subset),
            NearDuplicates = roots is null ? null : indices.Count(i => roots[i] != i),
        };
    }
}
