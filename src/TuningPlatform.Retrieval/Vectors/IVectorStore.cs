using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.Retrieval.Vectors;

/// <summary>Vectors keyed by chunk rowid, searched by inner product (cosine when the store normalises).</summary>
public interface IVectorStore : IDisposable
{
    int Dimensions { get; }

    int Count { get; }

    /// <summary>Adds or replaces vectors; each must have <see cref="Dimensions"/> finite values.</summary>
    void Upsert(IReadOnlyList<(long Id, float[] Vector)> vectors);

    void Delete(IReadOnlyCollection<long> ids);

    /// <summary>The <paramref name="k"/> best ids by score, best first; only ids that <paramref name="allowed"/> accepts when given.</summary>
    IReadOnlyList<ScoredChunk> Search(ReadOnlySpan<float> query, int k, Func<long, bool>? allowed = null);
}

/// <summary>Turns texts into vectors (the inference service's Embed RPC, once it exists).</summary>
public interface IEmbeddingProvider
{
    Task<float[][]> EmbedAsync(IReadOnlyList<string> texts, CancellationToken cancellationToken);
}
