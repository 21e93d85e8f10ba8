using System.Globalization;
using System.Text.RegularExpressions;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.EvaluationService.Scoring;

/// <summary>
/// Scores one example's prediction with the generation metrics of a run, writing ExampleResult.scores and
/// .extracted. Teacher-forced scores (loss, perplexity, token accuracy) are written by
/// <see cref="SetTeacherForced"/> from the inference service's Score answer.
/// </summary>
public static class ExampleScorer
{
    /// <summary>Extracted key holding the example's reference label (classification).</summary>
    public const string ReferenceLabelKey = "reference_label";

    /// <summary>Extracted keys of the teacher-forced sufficient statistics.</summary>
    public const string SumNllKey = "loss_sum_nll";
    public const string ScoredTokensKey = "loss_tokens";
    public const string CorrectTokensKey = "loss_correct_tokens";

    /// <summary>Fills the generation scores. A failed example (error set) scores 0 on every key.</summary>
    public static void ScoreGeneration(ExampleResult result, string? exampleLabel, IReadOnlyList<MetricSpec> specs,
        IReadOnlyDictionary<string, IReadOnlyList<string>> labelSets, MetricCatalog catalog)
    {
        var failed = result.Error is not null;
        var prediction = result.Prediction;
        var reference = result.Reference;
        foreach (var spec in specs.Where(s => !MetricCatalog.IsTeacherForced(s.Kind)))
        {
            var p = MetricCatalog.Prefix(spec);
            switch (spec.Kind)
            {
                case MetricKind.ExactMatch:
                    result.Scores[p + "exact_match"] = failed ? 0 : SquadMetrics.ExactMatch(prediction, reference);
                    break;
                case MetricKind.TokenF1:
                    result.Scores[p + "token_f1"] = failed ? 0 : SquadMetrics.TokenF1(prediction, reference);
                    break;
                case MetricKind.Rouge:
                    result.Scores[p + "rouge1"] = failed ? 0 : Rouge.RougeN(prediction, reference, 1).FMeasure;
                    result.Scores[p + "rouge2"] = failed ? 0 : Rouge.RougeN(prediction, reference, 2).FMeasure;
                    result.Scores[p + "rougeL"] = failed ? 0 : Rouge.RougeL(prediction, reference).FMeasure;
                    break;
                case MetricKind.Bleu:
                    result.Scores[p + "bleu"] = failed ? 0 : Bleu.Sentence(prediction, [reference]).Score;
                    break;
                case MetricKind.Chrf:
                    result.Scores[p + "chrf"] = failed ? 0 : ChrF.Sentence(prediction, [reference]);
                    break;
                case MetricKind.NumericMatch:
                {
                    var options = spec.NumericMatch ?? new NumericMatchOptions();
                    var pattern = options.ExtractPattern.Length > 0 ? new Regex(options.ExtractPattern, RegexOptions.None, TimeSpan.FromSeconds(1)) : null;
                    var number = failed ? null : NumericMatch.Extract(prediction, pattern);
                    result.Extracted[p + "number"] = number is { } n ? NumericMatch.Format(n) : "";
                    result.Scores[p + "numeric_match"] = failed ? 0 : NumericMatch.Score(prediction, reference, options.RelativeTolerance, pattern);
                    break;
                }
                case MetricKind.Classification:
                {
                    var options = spec.Classification ?? new ClassificationOptions();
                    var labels = labelSets[MetricCatalog.ConfusionKey(spec)];
                    var referenceLabel = ReferenceLabel(exampleLabel, reference, labels, options.CaseSensitive);
                    var predicted = failed ? null : ExtractLabel(prediction, labels, options);
                    result.Extracted[p + ReferenceLabelKey] = referenceLabel;
                    result.Extracted[p + "label"] = predicted ?? "";
                    result.Scores[p + "accuracy"] = predicted == referenceLabel ? 1 : 0;
                    break;
                }
                case MetricKind.Custom:
                {
                    if (failed)
                    {
                        result.Scores[spec.Name] = 0;
                        break;
                    }
                    var check = catalog.Checker(spec.Name)!.Check(prediction, reference, spec.CheckerOptions);
                    result.Scores[spec.Name] = check.Score;
                    foreach (var (key, value) in check.Extracted)
                    {
                        result.Extracted[spec.Name + "." + key] = value;
                    }
                    break;
                }
            }
        }
    }

    /// <summary>Records a teacher-forced score: per-example loss, perplexity and token accuracy, and the sums aggregates need.</summary>
    public static void SetTeacherForced(ExampleResult result, IReadOnlyList<MetricSpec> specs, double sumLogprob, long tokens, long correct)
    {
        var loss = tokens > 0 ? -sumLogprob / tokens : double.NaN;
        result.Loss = loss;
        result.Extracted[SumNllKey] = (-sumLogprob).ToString("R", CultureInfo.InvariantCulture);
        result.Extracted[ScoredTokensKey] = tokens.ToString(CultureInfo.InvariantCulture);
        result.Extracted[CorrectTokensKey] = correct.ToString(CultureInfo.InvariantCulture);
        foreach (var spec in specs)
        {
            var p = MetricCatalog.Prefix(spec);
            switch (spec.Kind)
            {
                case MetricKind.Loss:
                    result.Scores[p + "loss"] = loss;
                    break;
                case MetricKind.Perplexity:
                    result.Scores[p + "perplexity"] = Math.Exp(loss);
                    break;
                case MetricKind.MeanTokenAccuracy:
                    result.Scores[p + "mean_token_accuracy"] = tokens > 0 ? (double)correct / tokens : 0;
                    break;
            }
        }
    }

    /// <summary>
    /// The label set of a classification spec: its given labels plus any reference label outside them (so every
    /// reference has a row), or the distinct references in ordinal order.
    /// </summary>
    public static IReadOnlyList<string> ResolveLabels(MetricSpec spec, IEnumerable<string> referenceLabels)
    {
        var given = spec.Classification?.Labels.ToList() ?? [];
        var caseSensitive = spec.Classification?.CaseSensitive ?? false;
        var extra = referenceLabels
            .Select(r => ReferenceLabel(r, r, given, caseSensitive))
            .Where(r => !given.Contains(r, StringComparer.Ordinal))
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal);
        return [.. given, .. extra];
    }

    private static string ReferenceLabel(string? exampleLabel, string reference, IReadOnlyList<string> labels, bool caseSensitive)
    {
        var text = (exampleLabel is { Length: > 0 } ? exampleLabel : reference).Trim();
        var comparison = caseSensitive ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        return labels.FirstOrDefault(l => string.Equals(l, text, comparison)) ?? text;
    }

    private static string? ExtractLabel(string prediction, IReadOnlyList<string> labels, ClassificationOptions options)
    {
        if (options.ExtractPattern.Length == 0)
        {
            return Classification.ExtractLabel(prediction, labels, options.CaseSensitive);
        }
        var match = Regex.Match(prediction, options.ExtractPattern, RegexOptions.None, TimeSpan.FromSeconds(1));
        if (!match.Success || match.Groups.Count < 2)
        {
            return null;
        }
        var comparison = options.CaseSensitive ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        return labels.FirstOrDefault(l => string.Equals(l, match.Groups[1].Value.Trim(), comparison));
    }
}
