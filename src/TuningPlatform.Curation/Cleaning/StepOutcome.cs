using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>What one curation step did: counts before and after and its own counters.</summary>
public sealed record StepOutcome
{
    public long Before { get; init; }
    public long After { get; init; }
    public long Removed => Before - After;
    public long Modified { get; init; }
    public IReadOnlyDictionary<string, long> Findings { get; init; } = new Dictionary<string, long>();
    public IReadOnlyDictionary<Split, long> SplitCounts { get; init; } = new Dictionary<Split, long>();
    public long LeaksFixed { get; init; }
    public long Clusters { get; init; }
    public long ElapsedMs { get; init; }
}

/// <summary>Which text identifies a duplicate.</summary>
public enum DedupKey
{
    FullConversation,
    Prompt,
}

/// <summary>Keys for de-duplication.</summary>
public static class DedupKeys
{
    public static string Of(Example example, DedupKey key, bool ignoreCaseAndWhitespace)
    {
        var text = key == DedupKey.Prompt ? example.PromptText() : example.FullText();
        return ignoreCaseAndWhitespace ? CollapseAll(text.ToLowerInvariant()) : text;
    }

    private static string CollapseAll(string text) => string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
}
