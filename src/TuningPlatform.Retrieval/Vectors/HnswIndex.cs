using System.Numerics.Tensors;
using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.Retrieval.Vectors;

/// <summary>HNSW parameters: links per node (M; 2M on layer 0), the candidate list while building and while searching.</summary>
public sealed record HnswOptions(int M = 16, int EfConstruction = 200, int EfSearch = 64, int Seed = 42);

/// <summary>
/// A hierarchical navigable small-world graph (Malkov &amp; Yashunin 2016, arXiv:1603.09320) over inner-product
/// similarity: each vector gets a random top layer (geometric, mL = 1/ln M); insertion descends greedily from the
/// entry point, then on every layer from its own down to 0 links to M neighbours chosen by the paper's heuristic
/// from an ef_construction-wide beam search (2M on layer 0), pruning neighbour lists that overflow the same way. Search descends greedily
/// to layer 1 and runs a beam of max(ef_search, k) on layer 0. Deleted ids stay in the graph as routing nodes
/// and are filtered from results. Vectors are used as given (normalise them for cosine).
/// </summary>
public sealed class HnswIndex
{
    private readonly HnswOptions _options;
    private readonly double _levelFactor;
    private readonly Random _random;
    private readonly List<float[]> _vectors = [];
    private readonly List<long> _ids = [];
    private readonly List<List<int>[]> _links = [];
    private readonly Dictionary<long, int> _nodeOf = [];
    private readonly HashSet<int> _deleted = [];
    private readonly ReaderWriterLockSlim _lock = new();
    private int _entry = -1;
    private int _topLevel = -1;

    public HnswIndex(int dimensions, HnswOptions? options = null)
    {
        _options = options ?? new HnswOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.M, 2);
        Dimensions = dimensions;
        _levelFactor = 1 / Math.Log(_options.M);
        _random = new Random(_options.Seed);
    }

    public int Dimensions { get; }

    /// <summary>Live (not deleted) vectors.</summary>
    public int Count
    {
        get
        {
            _lock.EnterReadLock();
            try
            {
                return _ids.Count - _deleted.Count;
            }
            finally
            {
                _lock.ExitReadLock();
            }
        }
    }

    /// <summary>Adds a vector; an id already present is deleted first (its node stays as a routing node).</summary>
    public void Add(long id, float[] vector)
    {
        if (vector.Length != Dimensions)
        {
            throw new ArgumentException($"expected {Dimensions} dimensions, got {vector.Length}", nameof(vector));
        }
        _lock.EnterWriteLock();
        try
        {
            if (_nodeOf.TryGetValue(id, out var old))
            {
                _deleted.Add(old);
            }
            var node = _ids.Count;
            var level = (int)Math.Floor(-Math.Log(1 - _random.NextDouble()) * _levelFactor);
            _vectors.Add(vector);
            _ids.Add(id);
            _nodeOf[id] = node;
            var links = new List<int>[level + 1];
            for (var l = 0; l <= level; l++)
            {
                links[l] = new List<int>(MaxLinks(l) + 1);
            }
            _links.Add(links);
            if (_entry < 0)
            {
                _entry = node;
                _topLevel = level;
                return;
            }
            var current = _entry;
            for (var l = _topLevel; l > level; l--)
            {
                current = Greedy(vector, current, l);
            }
            for (var l = Math.Min(level, _topLevel); l >= 0; l--)
            {
                var candidates = SearchLayer(vector, [current], _options.EfConstruction, l);
                var chosen = SelectNeighbours(candidates, _options.M);
                links[l].AddRange(chosen);
                foreach (var neighbour in chosen)
                {
                    var theirs = _links[neighbour][l];
                    theirs.Add(node);
                    if (theirs.Count > MaxLinks(l))
                    {
                        var anchor = _vectors[neighbour];
                        var kept = SelectNeighbours([.. theirs.Select(n => (n, Similarity(anchor, _vectors[n]))).OrderByDescending(p => p.Item2)], MaxLinks(l));
                        theirs.Clear();
                        theirs.AddRange(kept);
                    }
                }
                current = candidates[0].Node;
            }
            if (level > _topLevel)
            {
                _topLevel = level;
                _entry = node;
            }
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    public void Remove(long id)
    {
        _lock.EnterWriteLock();
        try
        {
            if (_nodeOf.Remove(id, out var node))
            {
                _deleted.Add(node);
            }
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>The (approximately) <paramref name="k"/> most similar live ids, best first.</summary>
    public IReadOnlyList<ScoredChunk> Search(ReadOnlySpan<float> query, int k, int efSearch = 0)
    {
        var q = query.ToArray();
        _lock.EnterReadLock();
        try
        {
            if (_entry < 0)
            {
                return [];
            }
            var current = _entry;
            for (var l = _topLevel; l > 0; l--)
            {
                current = Greedy(q, current, l);
            }
            var ef = Math.Max(efSearch > 0 ? efSearch : _options.EfSearch, k + Math.Min(_deleted.Count, 4 * k));
            return [.. SearchLayer(q, [current], ef, 0).Where(c => !_deleted.Contains(c.Node)).Take(k).Select(c => new ScoredChunk(_ids[c.Node], c.Score))];
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private int MaxLinks(int level) => level == 0 ? 2 * _options.M : _options.M;

    /// <summary>
    /// The paper's neighbour heuristic (algorithm 4): going down the candidates, most similar first, keep one only if it
    /// is more similar to the base than to every neighbour kept so far (so links spread in different directions);
    /// then fill up to <paramref name="count"/> with the best of the rest.
    /// </summary>
    private List<int> SelectNeighbours(IReadOnlyList<(int Node, float Score)> candidates, int count)
    {
        var kept = new List<int>(count);
        var skipped = new List<int>();
        foreach (var (node, score) in candidates)
        {
            if (kept.Count >= count)
            {
                break;
            }
            var vector = _vectors[node];
            if (kept.All(k => Similarity(vector, _vectors[k]) < score))
            {
                kept.Add(node);
            }
            else
            {
                skipped.Add(node);
            }
        }
        kept.AddRange(skipped.Take(count - kept.Count));
        return kept;
    }

    private static float Similarity(float[] a, float[] b) => TensorPrimitives.Dot(a, b);

    private int Greedy(float[] query, int start, int level)
    {
        var current = start;
        var best = Similarity(query, _vectors[current]);
        var improved = true;
        while (improved)
        {
            improved = false;
            var links = _links[current];
            if (level >= links.Length)
            {
                break;
            }
            foreach (var n in links[level])
            {
                var s = Similarity(query, _vectors[n]);
                if (s > best)
                {
                    best = s;
                    current = n;
                    improved = true;
                }
            }
        }
        return current;
    }

    /// <summary>Beam search on one layer: the best <paramref name="ef"/> nodes found, most similar first.</summary>
    private List<(int Node, float Score)> SearchLayer(float[] query, IEnumerable<int> entries, int ef, int level)
    {
        var visited = new HashSet<int>();
        var candidates = new PriorityQueue<int, float>();   // best first (negated similarity)
        var results = new PriorityQueue<int, float>();      // worst first
        foreach (var e in entries)
        {
            var s = Similarity(query, _vectors[e]);
            visited.Add(e);
            candidates.Enqueue(e, -s);
            results.Enqueue(e, s);
        }
        while (candidates.TryDequeue(out var node, out var negative))
        {
            results.TryPeek(out _, out var worst);
            if (-negative < worst && results.Count >= ef)
            {
                break;
            }
            var links = _links[node];
            if (level >= links.Length)
            {
                continue;
            }
            foreach (var n in links[level])
            {
                if (!visited.Add(n))
                {
                    continue;
                }
                var s = Similarity(query, _vectors[n]);
                results.TryPeek(out _, out worst);
                if (results.Count < ef || s > worst)
                {
                    candidates.Enqueue(n, -s);
                    results.Enqueue(n, s);
                    if (results.Count > ef)
                    {
                        results.Dequeue();
                    }
                }
            }
        }
        var found = new List<(int, float)>(results.Count);
        while (results.TryDequeue(out var n, out var s))
        {
            found.Add((n, s));
        }
        found.Reverse();
        return found;
    }
}
