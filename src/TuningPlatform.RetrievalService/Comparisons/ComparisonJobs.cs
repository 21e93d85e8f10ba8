using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuningPlatform.RetrievalService.Comparisons;

/// <summary>
/// A comparison's Redis job (kind <see cref="Kind"/>, ids <c>cjob-…</c>): which comparison to run and the run settings
/// that the stored Comparison does not keep. The comparison's state, rows and events stay in
/// <see cref="ComparisonStore"/>; the job only carries the run, so that a run whose process died is reclaimed by the
/// job system and resumes from the rows already stored.
/// </summary>
internal sealed record ComparisonJobPayload(
    [property: JsonPropertyName("comparison_id")] string ComparisonId,
    [property: JsonPropertyName("max_concurrency")] int MaxConcurrency,
    [property: JsonPropertyName("bootstrap_resamples")] int Resamples,
    [property: JsonPropertyName("oracle_field")] string OracleField)
{
    public const string Kind = "comparison";

    public string Serialize() => JsonSerializer.Serialize(this);

    public static ComparisonJobPayload Deserialize(string json) =>
        JsonSerializer.Deserialize<ComparisonJobPayload>(json) ?? throw new JsonException("an empty comparison job payload");
}
