namespace TuningPlatform.Evaluation.Checkers;

/// <summary>A checker's verdict on one example: a score in [0, 1] and what it extracted, for the report.</summary>
public sealed record CheckResult(double Score, IReadOnlyDictionary<string, string> Extracted)
{
    /// <summary>A result with nothing extracted.</summary>
    public static CheckResult Of(double score) => new(score, new Dictionary<string, string>());
}

/// <summary>
/// A domain check of a generated answer against its reference (METRIC_KIND_CUSTOM). The service
/// registers checkers by <see cref="Name"/>, which is also the output key of the score; the
/// report's aggregate is the mean score with its bootstrap interval.
/// </summary>
public interface IAnswerChecker
{
    /// <summary>Registry name and output key, e.g. <c>api_call_match</c>.</summary>
    string Name { get; }

    /// <summary>One line for ListMetrics: what is compared and how.</summary>
    string Description { get; }

    /// <summary>Scores one prediction; <paramref name="options"/> are the MetricSpec's checker_options.</summary>
    CheckResult Check(string prediction, string reference, IReadOnlyDictionary<string, string> options);
}
