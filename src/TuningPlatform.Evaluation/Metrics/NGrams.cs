namespace TuningPlatform.Evaluation.Metrics;

/// <summary>Counting n-grams of token lists, keyed by the tokens joined with a separator no token contains.</summary>
internal static class NGrams
{
    // U+0001 never survives any of our tokenisers, so joined keys are unambiguous.
    private const char Separator = '\u0001';

    /// <summary>Counts of the n-grams of exactly order <paramref name="n"/>.</summary>
    public static Dictionary<string, int> Count(IReadOnlyList<string> tokens, int n)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var start = 0; start + n <= tokens.Count; start++)
        {
            var key = n == 1 ? tokens[start] : string.Join(Separator, Enumerable.Range(start, n).Select(i => tokens[i]));
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }

        return counts;
    }
}
