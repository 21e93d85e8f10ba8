using System.Text.RegularExpressions;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Evaluation.Checkers;
using TuningPlatform.Grpc;

namespace TuningPlatform.EvaluationService.Scoring;

/// <summary>
/// The metrics the service computes: built-in kinds and registered checkers, what each needs, the output keys
/// it writes, and the validation of a request's MetricSpecs.
/// </summary>
public sealed class MetricCatalog
{
    private readonly Dictionary<string, IAnswerChecker> _checkers;

    public MetricCatalog(IEnumerable<IAnswerChecker> checkers)
    {
        _checkers = checkers.ToDictionary(c => c.Name, StringComparer.Ordinal);
    }

    /// <summary>The catalogue with the built-in checkers (<c>api_call_match</c>).</summary>
    public static MetricCatalog Default() => new([new ApiCallChecker()]);

    public IAnswerChecker? Checker(string name) => _checkers.GetValueOrDefault(name);

    /// <summary>Teacher-forced kinds: scored with the inference service's Score, no generation.</summary>
    public static bool IsTeacherForced(MetricKind kind) =>
        kind is MetricKind.Loss or MetricKind.Perplexity or MetricKind.MeanTokenAccuracy;

    /// <summary>The prefix a spec puts before its keys: <c>name.</c> when a built-in kind is given a name.</summary>
    public static string Prefix(MetricSpec spec) => spec.Kind != MetricKind.Custom && spec.Name.Length > 0 ? spec.Name + "." : "";

    /// <summary>The confusion-matrix key of a classification spec.</summary>
    public static string ConfusionKey(MetricSpec spec) => spec.Name.Length > 0 ? spec.Name : "classification";

    /// <summary>Everything ListMetrics answers.</summary>
    public IEnumerable<MetricInfo> List()
    {
        MetricInfo Info(MetricKind kind, string description, bool generation, bool labels, bool corpus, params string[] keys)
        {
            var info = new MetricInfo
            {
                Kind = kind, Name = kind.ToString(), Description = description, RequiresGeneration = generation,
                RequiresLabels = labels, CorpusLevel = corpus,
            };
            info.OutputKeys.AddRange(keys);
            return info;
        }

        yield return Info(MetricKind.Loss, "Token-weighted mean cross-entropy of the reference given the prompt, teacher-forced (nats).", false, false, true, "loss");
        yield return Info(MetricKind.Perplexity, "exp(loss) over the scored reference tokens, teacher-forced.", false, false, true, "perplexity");
        yield return Info(MetricKind.MeanTokenAccuracy, "Reference tokens that are the model's argmax prediction, teacher-forced.", false, false, true, "mean_token_accuracy");
        yield return Info(MetricKind.ExactMatch, "SQuAD-normalised exact match (lower case, no punctuation or articles, collapsed whitespace).", true, false, false, "exact_match");
        yield return Info(MetricKind.TokenF1, "SQuAD token-level F1 over normalised tokens.", true, false, false, "token_f1");
        yield return Info(MetricKind.Rouge, "ROUGE-1/2/L F-measure (rouge-score tokenisation, no stemming).", true, false, false, "rouge1", "rouge2", "rougeL");
        yield return Info(MetricKind.Bleu, "Corpus BLEU, sacreBLEU defaults (13a, exp smoothing); per example: sentence BLEU.", true, false, true, "bleu");
        yield return Info(MetricKind.Chrf, "Corpus chrF2 (character 6-grams, beta 2), sacreBLEU defaults; per example: sentence chrF.", true, false, true, "chrf");
        yield return Info(MetricKind.Classification, "Accuracy, macro/micro precision, recall, F1, per-label scores and a confusion matrix of labels extracted from the answers.",
            true, true, true, "accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1", "precision/<label>", "recall/<label>", "f1/<label>");
        yield return Info(MetricKind.NumericMatch, "The answer's final number (after ####, else the last number) equals the reference's (GSM8K).", true, false, false, "numeric_match");
        foreach (var checker in _checkers.Values.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            var info = Info(MetricKind.Custom, checker.Description, true, false, false, checker.Name);
            info.Name = checker.Name;
            yield return info;
        }
    }

    /// <summary>Checks the specs of a request (INVALID_ARGUMENT naming the field).</summary>
    public void Validate(IReadOnlyList<MetricSpec> specs, bool rag, string field = "metrics")
    {
        if (specs.Count == 0)
        {
            RpcErrors.InvalidArgument(field, "give at least one metric (see ListMetrics)");
        }
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < specs.Count; i++)
        {
            var spec = specs[i];
            var at = $"{field}[{i}]";
            if (spec.Kind == MetricKind.Unspecified || !Enum.IsDefined(spec.Kind))
            {
                RpcErrors.InvalidArgument(at + ".kind", $"must be a MetricKind other than UNSPECIFIED, got {(int)spec.Kind}");
            }
            if (spec.Kind == MetricKind.Custom && !_checkers.ContainsKey(spec.Name))
            {
                RpcErrors.InvalidArgument(at + ".name", $"unknown checker '{spec.Name}'; registered: {string.Join(", ", _checkers.Keys.Order(StringComparer.Ordinal))}");
            }
            if (spec.Kind != MetricKind.Custom && spec.Name.Length > 0 && !Regex.IsMatch(spec.Name, "^[A-Za-z0-9_-]{1,40}$"))
            {
                RpcErrors.InvalidArgument(at + ".name", $"'{spec.Name}' is not a valid key prefix (letters, digits, _ and -, at most 40)");
            }
            if (rag && IsTeacherForced(spec.Kind))
            {
                RpcErrors.InvalidArgument(at + ".kind", $"{spec.Kind} needs a model target (teacher-forced scoring); a RAG target only generates");
            }
            if (spec.OptionsCase == MetricSpec.OptionsOneofCase.Classification && spec.Kind != MetricKind.Classification
                || spec.OptionsCase == MetricSpec.OptionsOneofCase.NumericMatch && spec.Kind != MetricKind.NumericMatch)
            {
                RpcErrors.InvalidArgument(at + ".options", $"options of another kind than {spec.Kind}");
            }
            if (spec.Classification is { } c)
            {
                CheckPattern(c.ExtractPattern, at + ".classification.extract_pattern");
                if (c.Labels.Any(string.IsNullOrWhiteSpace) || c.Labels.Distinct(StringComparer.Ordinal).Count() != c.Labels.Count)
                {
                    RpcErrors.InvalidArgument(at + ".classification.labels", "labels must be distinct and non-empty");
                }
            }
            if (spec.NumericMatch is { } n)
            {
                CheckPattern(n.ExtractPattern, at + ".numeric_match.extract_pattern");
                if (!(n.RelativeTolerance >= 0 && n.RelativeTolerance < 1))
                {
                    RpcErrors.InvalidArgument(at + ".numeric_match.relative_tolerance", $"must be in [0, 1), got {n.RelativeTolerance}");
                }
            }
            var key = $"{(int)spec.Kind}:{Prefix(spec)}:{(spec.Kind == MetricKind.Custom ? spec.Name : "")}";
            if (!keys.Add(key))
            {
                RpcErrors.InvalidArgument(at, $"{spec.Kind}{(spec.Name.Length > 0 ? " '" + spec.Name + "'" : "")} is requested twice; give the second one a different name");
            }
        }
    }

    private static void CheckPattern(string pattern, string field)
    {
        if (pattern.Length == 0)
        {
            return;
        }
        try
        {
            var regex = new Regex(pattern, RegexOptions.None, TimeSpan.FromSeconds(1));
            if (regex.GetGroupNumbers().Length < 2)
            {
                RpcErrors.InvalidArgument(field, "needs a capture group: its first group is the extracted value");
            }
        }
        catch (ArgumentException e)
        {
            RpcErrors.InvalidArgument(field, $"is not a valid regular expression: {e.Message}");
        }
    }
}
