using TuningPlatform.Retrieval.Storage;
using TuningPlatform.Retrieval.Vectors;

namespace TuningPlatform.Retrieval.Search;

/// <summary>Which retrievers answer. Values match <c>tuning.common.v1.RetrievalMode</c>.</summary>
public enum SearchMode
{
    Unspecified = 0,
    Lexical = 1,
    Dense = 2,
    Hybrid = 3,
}

/// <summary>One search, resolved: the query text (lexical) and vector (dense), k, filters and fusion settings.</summary>
public sealed record SearchQuery(
    string Text,
    float[]? Vector,
    SearchMode Mode,
    int TopK,
    IReadOnlyList<MetadataCondition> Filters,
    int RrfK = ReciprocalRankFusion.DefaultK,
    int CandidatesPerRetriever = 0);

/// <summary>A hit with its chunk, final score, and each retriever's 1-based rank (0 = absent) and score.</summary>
public sealed record SearchHit(ChunkRecord Chunk, double Score, int LexicalRank, double? LexicalScore, int DenseRank, double? DenseScore);

/// <summary>The hits, best first, and the time each retriever took.</summary>
public sealed record SearchResult(IReadOnlyList<SearchHit> Hits, double LexicalMs, double DenseMs);

/// <summary>
/// Lexical (BM25), dense (exact inner product) and hybrid (RRF of both) search over one collection.
/// Hybrid takes <c>CandidatesPerRetriever</c> (default 4 × k) from each retriever before fusing.
/// </summary>
public static class Retriever
{
    public static SearchResult Search(CollectionStore store, IVectorStore? vectors, SearchQuery query)
    {
        var candidates = query.Mode == SearchMode.Hybrid
            ? Math.Max(query.TopK, query.CandidatesPerRetriever > 0 ? query.CandidatesPerRetriever : 4 * query.TopK)
            : query.TopK;
        IReadOnlyList<ScoredChunk> lexical = [];
        IReadOnlyList<ScoredChunk> dense = [];
        var lexicalMs = 0.0;
        var denseMs = 0.0;
        if (query.Mode is SearchMode.Lexical or SearchMode.Hybrid)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            lexical = store.SearchLexical(query.Text, candidates, query.Filters);
            lexicalMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }
        if (query.Mode is SearchMode.Dense or SearchMode.Hybrid)
        {
            if (vectors is null || query.Vector is null)
            {
                throw new InvalidOperationException("dense search needs a vector store and a query vector");
            }
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var allowed = query.Filters.Count > 0 ? store.FilterChunks(query.Filters) : null;
            dense = vectors is QdrantVectorStore qdrant
                ? qdrant.Search(query.Vector, candidates, allowed)
                : vectors.Search(query.Vector, candidates, allowed is null ? null : allowed.Contains);
            denseMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }
        List<(long RowId, double Score, int LexicalRank, double? LexicalScore, int DenseRank, double? DenseScore)> ranked = query.Mode switch
        {
            SearchMode.Lexical => [.. lexical.Select((h, i) => (h.RowId, h.Score, i + 1, (double?)h.Score, 0, (double?)null))],
            SearchMode.Dense => [.. dense.Select((h, i) => (h.RowId, h.Score, 0, (double?)null, i + 1, (double?)h.Score))],
            _ => [.. ReciprocalRankFusion.Fuse([lexical, dense], query.TopK, query.RrfK)
                .Select(f => (f.RowId, f.Score, f.Ranks[0], f.Scores[0], f.Ranks[1], f.Scores[1]))],
        };
        var chunks = store.GetChunks(ranked.Select(r => r.RowId));
        var hits = ranked
            .Where(r => chunks.ContainsKey(r.RowId))
            .Take(query.TopK)
            .Select(r => new SearchHit(chunks[r.RowId], r.Score, r.LexicalRank, r.LexicalScore, r.DenseRank, r.DenseScore))
            .ToList();
        return new SearchResult(hits, lexicalMs, denseMs);
    }
}
