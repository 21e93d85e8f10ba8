using System.Globalization;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Evaluation.Metrics;
using TuningPlatform.Evaluation.Statistics;
using CommonConfusionMatrix = TuningPlatform.Contracts.Common.V1.ConfusionMatrix;

namespace TuningPlatform.EvaluationService.Scoring;

/// <summary>
/// One output key over a list of examples: the statistic as a function of bootstrap weights (so corpus-level
/// metrics resample their sufficient statistics), the per-example scores (wins, disagreements), which
/// examples count, and the direction (lower is better for loss and perplexity).
/// </summary>
internal sealed record KeyStatistic(string Key, ResampleStatistic Statistic, double[] PerExample, int SampleCount, bool LowerIsBetter);

/// <summary>Aggregates of a report (with or without bootstrap intervals) and the statistics comparisons use.</summary>
internal static class ReportAggregator
{
    /// <summary>Every output key of <paramref name="specs"/> over <paramref name="examples"/>, in spec order.</summary>
    public static List<KeyStatistic> Statistics(IReadOnlyList<ExampleResult> examples, IReadOnlyList<MetricSpec> specs,
        IReadOnlyDictionary<string, IReadOnlyList<string>> labelSets)
    {
        var result = new List<KeyStatistic>();
        foreach (var spec in specs)
        {
            var p = MetricCatalog.Prefix(spec);
            switch (spec.Kind)
            {
                case MetricKind.Loss or MetricKind.Perplexity or MetricKind.MeanTokenAccuracy:
                {
                    var losses = examples.Select(TokenLossOf).ToList();
                    var count = losses.Count(l => l.TokenCount > 0);
                    var (key, statistic, lower) = spec.Kind switch
                    {
                        MetricKind.Loss => (p + "loss", (ResampleStatistic)(w => LanguageModelLoss.Loss(losses, w)), true),
                        MetricKind.Perplexity => (p + "perplexity", w => LanguageModelLoss.Perplexity(losses, w), true),
                        _ => (p + "mean_token_accuracy", (ResampleStatistic)(w => LanguageModelLoss.TokenAccuracy(losses, w)), false),
                    };
                    result.Add(new KeyStatistic(key, statistic, PerExample(examples, key), count, lower));
                    break;
                }
                case MetricKind.Bleu:
                {
                    var stats = examples.Select(e => Bleu.SegmentStatistics(e.Error is null ? e.Prediction : "", [e.Reference])).ToList();
                    result.Add(new KeyStatistic(p + "bleu", w => Bleu.FromStatistics(BleuStatistics.Sum(stats, w), effectiveOrder: false).Score,
                        PerExample(examples, p + "bleu"), examples.Count, false));
                    break;
                }
                case MetricKind.Chrf:
                {
                    var stats = examples.Select(e => ChrF.SegmentStatistics(e.Error is null ? e.Prediction : "", [e.Reference])).ToList();
                    result.Add(new KeyStatistic(p + "chrf", w => ChrF.FromStatistics(ChrF.Sum(stats, w)), PerExample(examples, p + "chrf"), examples.Count, false));
                    break;
                }
                case MetricKind.Classification:
                    result.AddRange(ClassificationStatistics(examples, spec, labelSets));
                    break;
                case MetricKind.Rouge:
                    foreach (var key in new[] { "rouge1", "rouge2", "rougeL" })
                    {
                        result.Add(Mean(examples, p + key));
                    }
                    break;
                case MetricKind.ExactMatch:
                    result.Add(Mean(examples, p + "exact_match"));
                    break;
                case MetricKind.TokenF1:
                    result.Add(Mean(examples, p + "token_f1"));
                    break;
                case MetricKind.NumericMatch:
                    result.Add(Mean(examples, p + "numeric_match"));
                    break;
                case MetricKind.Custom:
                    result.Add(Mean(examples, spec.Name));
                    break;
            }
        }
        return result;
    }

    /// <summary>Aggregates by key (with intervals when <paramref name="bootstrap"/> is given), and confusion matrices.</summary>
    public static (Dictionary<string, MetricValue> Aggregates, Dictionary<string, CommonConfusionMatrix> Confusion) Aggregate(
        IReadOnlyList<ExampleResult> examples, IReadOnlyList<MetricSpec> specs, IReadOnlyDictionary<string, IReadOnlyList<string>> labelSets,
        BootstrapOptions? bootstrap)
    {
        var aggregates = new Dictionary<string, MetricValue>(StringComparer.Ordinal);
        foreach (var stat in Statistics(examples, specs, labelSets).Where(s => s.SampleCount > 0))
        {
            aggregates[stat.Key] = Value(stat, examples.Count, bootstrap);
        }
        var confusion = new Dictionary<string, CommonConfusionMatrix>(StringComparer.Ordinal);
        foreach (var spec in specs.Where(s => s.Kind == MetricKind.Classification))
        {
            var key = MetricCatalog.ConfusionKey(spec);
            var (references, predictions) = Labels(examples, spec);
            if (references.Count == 0)
            {
                continue;
            }
            var report = Classification.Evaluate(references, predictions, labelSets[key]);
            var matrix = new CommonConfusionMatrix();
            matrix.Labels.AddRange(report.Confusion.Labels);
            matrix.Counts.AddRange(report.Confusion.Counts);
            confusion[key] = matrix;
        }
        return (aggregates, confusion);
    }

    /// <summary>The value of a statistic with its percentile interval (the value itself as bounds without bootstrap).</summary>
    public static MetricValue Value(KeyStatistic stat, int count, BootstrapOptions? bootstrap)
    {
        if (bootstrap is null)
        {
            var value = stat.Statistic(Enumerable.Repeat(1, count).ToArray());
            return new MetricValue { Value = value, CiLower = value, CiUpper = value, SampleCount = stat.SampleCount };
        }
        var interval = Bootstrap.Interval(count, stat.Statistic, bootstrap);
        return new MetricValue { Value = interval.Value, CiLower = interval.Lower, CiUpper = interval.Upper, SampleCount = stat.SampleCount };
    }

    private static KeyStatistic Mean(IReadOnlyList<ExampleResult> examples, string key)
    {
        var scores = PerExample(examples, key);
        return new KeyStatistic(key, Bootstrap.WeightedMean(scores.Select(s => double.IsNaN(s) ? 0 : s).ToList()), scores, examples.Count, false);
    }

    private static double[] PerExample(IReadOnlyList<ExampleResult> examples, string key) =>
        [.. examples.Select(e => e.Scores.TryGetValue(key, out var v) ? v : double.NaN)];

    private static TokenLoss TokenLossOf(ExampleResult e) =>
        e.Error is null && e.Extracted.TryGetValue(ExampleScorer.ScoredTokensKey, out var tokens)
            ? new TokenLoss(
                double.Parse(e.Extracted[ExampleScorer.SumNllKey], NumberStyles.Float, CultureInfo.InvariantCulture),
                long.Parse(tokens, NumberStyles.Integer, CultureInfo.InvariantCulture),
                long.Parse(e.Extracted[ExampleScorer.CorrectTokensKey], NumberStyles.Integer, CultureInfo.InvariantCulture))
            : default;

    private static (List<string> References, List<string?> Predictions) Labels(IReadOnlyList<ExampleResult> examples, MetricSpec spec)
    {
        var p = MetricCatalog.Prefix(spec);
        var references = new List<string>(examples.Count);
        var predictions = new List<string?>(examples.Count);
        foreach (var e in examples)
        {
            references.Add(e.Extracted.TryGetValue(p + ExampleScorer.ReferenceLabelKey, out var r) ? r : "");
            predictions.Add(e.Extracted.TryGetValue(p + "label", out var l) && l.Length > 0 ? l : null);
        }
        return (references, predictions);
    }

    private static IEnumerable<KeyStatistic> ClassificationStatistics(IReadOnlyList<ExampleResult> examples, MetricSpec spec,
        IReadOnlyDictionary<string, IReadOnlyList<string>> labelSets)
    {
        var p = MetricCatalog.Prefix(spec);
        var labels = labelSets[MetricCatalog.ConfusionKey(spec)];
        var (references, predictions) = Labels(examples, spec);
        var accuracy = PerExample(examples, p + "accuracy");

        ClassificationReport Evaluate(ReadOnlySpan<int> weights)
        {
            var r = new List<string>();
            var q = new List<string?>();
            for (var i = 0; i < references.Count; i++)
            {
                for (var k = 0; k < weights[i]; k++)
                {
                    r.Add(references[i]);
                    q.Add(predictions[i]);
                }
            }
            return Classification.Evaluate(r, q, labels);
        }

        KeyStatistic Key(string key, Func<ClassificationReport, double> pick) =>
            new(p + key, w => pick(Evaluate(w)), accuracy, examples.Count, false);

        yield return Key("accuracy", r => r.Accuracy);
        yield return Key("macro_precision", r => r.MacroPrecision);
        yield return Key("macro_recall", r => r.MacroRecall);
        yield return Key("macro_f1", r => r.MacroF1);
        yield return Key("micro_f1", r => r.MicroF1);
        for (var c = 0; c < labels.Count; c++)
        {
            var index = c;
            yield return Key("precision/" + labels[c], r => r.PerClass[index].Precision);
            yield return Key("recall/" + labels[c], r => r.PerClass[index].Recall);
            yield return Key("f1/" + labels[c], r => r.PerClass[index].F1);
        }
    }
}
