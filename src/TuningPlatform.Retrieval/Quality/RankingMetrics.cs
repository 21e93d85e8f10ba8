namespace TuningPlatform.Retrieval.Quality;

/// <summary>
/// Ranking quality of one query with binary relevance, at the document level: the ranked list is the documents of
/// the retrieved chunks in order of their first appearance.
/// <list type="bullet">
/// <item>recall@k = |relevant ∩ first k documents| / |relevant|;</item>
/// <item>reciprocal rank = 1 / (1-based rank of the first relevant document), 0 when none was retrieved;</item>
/// <item>nDCG@k = DCG@k / IDCG@k with DCG@k = Σ_{i ≤ k} rel_i / log2(i + 1) and the ideal ranking putting every
/// relevant document first (min(|relevant|, k) of them).</item>
/// </list>
/// </summary>
public static class RankingMetrics
{
    /// <summary>Distinct document ids in order of first appearance.</summary>
    public static IReadOnlyList<string> DocumentRanking(IEnumerable<string> chunkDocumentIds)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        return [.. chunkDocumentIds.Where(seen.Add)];
    }

    public static double RecallAt(IReadOnlyList<string> ranking, IReadOnlySet<string> relevant, int k) =>
        relevant.Count == 0 ? 0 : (double)ranking.Take(k).Count(relevant.Contains) / relevant.Count;

    public static double ReciprocalRank(IReadOnlyList<string> ranking, IReadOnlySet<string> relevant)
    {
        for (var i = 0; i < ranking.Count; i++)
        {
            if (relevant.Contains(ranking[i]))
            {
                return 1.0 / (i + 1);
            }
        }
        return 0;
    }

    public static double NdcgAt(IReadOnlyList<string> ranking, IReadOnlySet<string> relevant, int k)
    {
        if (relevant.Count == 0)
        {
            return 0;
        }
        var dcg = 0.0;
        for (var i = 0; i < Math.Min(k, ranking.Count); i++)
        {
            if (relevant.Contains(ranking[i]))
            {
                dcg += 1.0 / Math.Log2(i + 2);
            }
        }
        var ideal = 0.0;
        for (var i = 0; i < Math.Min(k, relevant.Count); i++)
        {
            ideal += 1.0 / Math.Log2(i + 2);
        }
        return dcg / ideal;
    }
}
