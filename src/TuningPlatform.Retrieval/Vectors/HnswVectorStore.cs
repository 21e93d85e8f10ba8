using System.Numerics.Tensors;
using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.Retrieval.Vectors;

/// <summary>
/// The embedded store with an HNSW index: the vectors persist in an <see cref="ExactVectorStore"/> log (the
/// source of truth), and the graph is built in memory from it when opened and kept up to date on every upsert
/// and delete. Unfiltered searches use the graph; a search with a metadata filter runs exactly over the allowed ids
/// (a filtered graph search could miss them all).
/// </summary>
public sealed class HnswVectorStore : IVectorStore
{
    private readonly ExactVectorStore _exact;
    private readonly HnswIndex _index;
    private readonly bool _normalize;

    private HnswVectorStore(ExactVectorStore exact, HnswOptions options, bool normalize)
    {
        _exact = exact;
        _normalize = normalize;
        _index = new HnswIndex(exact.Dimensions, options);
        foreach (var (id, vector) in exact.Snapshot())
        {
            _index.Add(id, vector);
        }
    }

    public int Dimensions => _exact.Dimensions;

    public int Count => _exact.Count;

    /// <summary>Opens the log at <paramref name="path"/> and builds the graph over its vectors.</summary>
    public static HnswVectorStore Open(string path, int dimensions, HnswOptions options, bool normalize = true) =>
        new(ExactVectorStore.Open(path, dimensions, normalize), options, normalize);

    /// <summary>Takes over an open exact store (its vectors go into a new graph).</summary>
    public static HnswVectorStore Wrap(ExactVectorStore exact, HnswOptions options, bool normalize = true) => new(exact, options, normalize);

    public void Upsert(IReadOnlyList<(long Id, float[] Vector)> vectors)
    {
        _exact.Upsert(vectors);
        foreach (var (id, vector) in vectors)
        {
            var stored = vector;
            if (_normalize)
            {
                stored = new float[vector.Length];
                TensorPrimitives.Divide(vector, TensorPrimitives.Norm(vector), stored);
            }
            _index.Add(id, stored);
        }
    }

    public void Delete(IReadOnlyCollection<long> ids)
    {
        _exact.Delete(ids);
        foreach (var id in ids)
        {
            _index.Remove(id);
        }
    }

    public IReadOnlyList<ScoredChunk> Search(ReadOnlySpan<float> query, int k, Func<long, bool>? allowed = null)
    {
        if (allowed is not null)
        {
            return _exact.Search(query, k, allowed);
        }
        if (query.Length != Dimensions)
        {
            throw new ArgumentException($"query: expected {Dimensions} dimensions, got {query.Length}");
        }
        var q = query.ToArray();
        if (_normalize)
        {
            TensorPrimitives.Divide(q, TensorPrimitives.Norm(q), q);
        }
        return _index.Search(q, k);
    }

    public void Dispose() => _exact.Dispose();
}
