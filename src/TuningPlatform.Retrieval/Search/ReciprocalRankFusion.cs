using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.Retrieval.Search;

/// <summary>A fused result: the RRF score, and per input list the 1-based rank (0 = absent) and that list's score.</summary>
public sealed record FusedChunk(long RowId, double Score, IReadOnlyList<int> Ranks, IReadOnlyList<double?> Scores);

/// <summary>
/// Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): score(d) = Σ over lists containing d of
/// 1 / (k + rank(d)), ranks 1-based. Only ranks count, so BM25 and cosine scores need no calibration.
/// Ties go to the chunk with the better best rank, then to the lower rowid, so the order is deterministic.
/// </summary>
public static class ReciprocalRankFusion
{
    public const int DefaultK = 60;

    public static IReadOnlyList<FusedChunk> Fuse(IReadOnlyList<IReadOnlyList<ScoredChunk>> lists, int topK, int k = DefaultK)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        var fused = new Dictionary<long, (double Score, int[] Ranks, double?[] Scores)>();
        for (var list = 0; list < lists.Count; list++)
        {
            for (var i = 0; i < lists[list].Count; i++)
            {
                var hit = lists[list][i];
                if (!fused.TryGetValue(hit.RowId, out var entry))
                {
                    entry = (0, new int[lists.Count], new double?[lists.Count]);
                }
                if (entry.Ranks[list] != 0)
                {
                    continue;
                }
                entry.Ranks[list] = i + 1;
                entry.Scores[list] = hit.Score;
                entry.Score += 1.0 / (k + i + 1);
                fused[hit.RowId] = entry;
            }
        }
        return [.. fused
            .OrderByDescending(e => e.Value.Score)
            .ThenBy(e => e.Value.Ranks.Where(r => r > 0).Min())
            .ThenBy(e => e.Key)
            .Take(topK)
            .Select(e => new FusedChunk(e.Key, e.Value.Score, e.Value.Ranks, e.Value.Scores))];
    }
}
