using System.Text.RegularExpressions;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Evaluation.Checkers;
using TuningPlatform.Evaluation.Metrics;
using TuningPlatform.Grpc;

namespace TuningPlatform.RetrievalService.Comparisons;

/// <summary>A per-question score: its output key and the function of (prediction, reference).</summary>
internal sealed record QuestionScorer(string Key, Func<string, string, double> Score);

/// <summary>
/// The metrics a comparison scores each answer with, from TuningPlatform.Evaluation: SQuAD exact match and token
/// F1, GSM8K-style numeric match, and the checkers (<c>api_call_match</c>). Corpus metrics (BLEU, chrF, ROUGE) and
/// teacher-forced ones (loss, perplexity) belong to evaluation reports, not to per-question comparisons.
/// </summary>
internal static class ComparisonScoring
{
    private static readonly IAnswerChecker[] Checkers = [new ApiCallChecker()];

    public static List<QuestionScorer> Resolve(IList<MetricSpec> metrics)
    {
        if (metrics.Count == 0)
        {
            RpcErrors.InvalidArgument("metrics", "give at least one metric (exact_match, token_f1, numeric_match or the api_call_match checker)");
        }
        var scorers = new List<QuestionScorer>();
        for (var i = 0; i < metrics.Count; i++)
        {
            var spec = metrics[i];
            var prefix = spec.Kind == MetricKind.Custom || spec.Name.Length == 0 ? "" : spec.Name + "/";
            switch (spec.Kind)
            {
                case MetricKind.ExactMatch:
                    scorers.Add(new(prefix + "exact_match", SquadMetrics.ExactMatch));
                    break;
                case MetricKind.TokenF1:
                    scorers.Add(new(prefix + "token_f1", SquadMetrics.TokenF1));
                    break;
                case MetricKind.NumericMatch:
                    var options = spec.NumericMatch ?? new NumericMatchOptions();
                    Regex? pattern = null;
                    if (options.ExtractPattern.Length > 0)
                    {
                        try
                        {
                            pattern = new Regex(options.ExtractPattern, RegexOptions.None, TimeSpan.FromSeconds(1));
                        }
                        catch (ArgumentException e)
                        {
                            RpcErrors.InvalidArgument($"metrics[{i}].numeric_match.extract_pattern", e.Message);
                        }
                    }
                    scorers.Add(new(prefix + "numeric_match", (p, r) => NumericMatch.Score(p, r, options.RelativeTolerance, pattern)));
                    break;
                case MetricKind.Custom:
                    var checker = Checkers.FirstOrDefault(c => c.Name == spec.Name);
                    if (checker is null)
                    {
                        RpcErrors.InvalidArgument($"metrics[{i}].name", $"no checker '{spec.Name}'; known: {string.Join(", ", Checkers.Select(c => c.Name))}");
                    }
                    var checkerOptions = new Dictionary<string, string>(spec.CheckerOptions);
                    scorers.Add(new(checker.Name, (p, r) => checker.Check(p, r, checkerOptions).Score));
                    break;
                default:
                    RpcErrors.InvalidArgument($"metrics[{i}].kind", $"{spec.Kind} is not a per-question metric; comparisons score with EXACT_MATCH, TOKEN_F1, NUMERIC_MATCH or CUSTOM api_call_match");
                    break;
            }
        }
        if (scorers.GroupBy(s => s.Key).FirstOrDefault(g => g.Count() > 1) is { } duplicate)
        {
            RpcErrors.InvalidArgument("metrics", $"'{duplicate.Key}' is computed twice; give the second a name prefix");
        }
        return scorers;
    }
}
