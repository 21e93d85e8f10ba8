using System.Collections.Concurrent;
using System.Security.Cryptography;
using Google.Protobuf;
using Microsoft.Extensions.Options;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.Retrieval.Vectors;

namespace TuningPlatform.RetrievalService.Collections;

/// <summary>An open collection: its definition, its store, its vectors (when it has embeddings) and its write lock.</summary>
internal sealed class CollectionEntry(Collection definition, CollectionStore store, IVectorStore? vectors) : IDisposable
{
    public Collection Definition { get; set; } = definition;

    public CollectionStore Store { get; } = store;

    public IVectorStore? Vectors { get; set; } = vectors;

    /// <summary>Held by an ingestion or a document delete; one writer at a time.</summary>
    public SemaphoreSlim WriteLock { get; } = new(1, 1);

    public bool Deleted { get; set; }

    public void Dispose()
    {
        Store.Dispose();
        Vectors?.Dispose();
        WriteLock.Dispose();
    }
}

/// <summary>
/// The collections under <c>&lt;data&gt;/collections</c>: one SQLite file <c>&lt;id&gt;.db</c> each (its definition in
/// the <c>meta</c> table as proto JSON), plus <c>&lt;id&gt;.vec</c> when it has embeddings. Every file is opened at
/// start, so collections survive restarts; names resolve to ids in memory.
/// </summary>
internal sealed class CollectionRegistry : IDisposable
{
    private const string DefinitionKey = "collection";
    private const string RequestIdKey = "request_id";

    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly ConcurrentDictionary<string, CollectionEntry> _byId = new(StringComparer.Ordinal);
    private readonly Lock _createLock = new();

    private readonly long _hnswThreshold;
    private readonly RetrievalOptions _options;

    public CollectionRegistry(IOptions<RetrievalOptions> options)
    {
        _options = options.Value;
        _hnswThreshold = options.Value.HnswThresholdValues;
        Directory = Path.Combine(options.Value.DataDirectory, "collections");
        System.IO.Directory.CreateDirectory(Directory);
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "col-*.db"))
        {
            var store = CollectionStore.Open(file);
            var json = store.GetMeta(DefinitionKey);
            if (json is null)
            {
                // Created but never finished (crash during CreateCollection): not a collection.
                store.Dispose();
                continue;
            }
            var definition = Parser.Parse<Collection>(json);
            IVectorStore? vectors = null;
            try
            {
                vectors = OpenVectors(definition);
            }
            catch (QdrantException)
            {
                // Qdrant is away at start: the collection serves lexical search until the service restarts with Qdrant up.
            }
            _byId[definition.Id] = new CollectionEntry(definition, store, vectors);
        }
    }

    public string Directory { get; }

    public IEnumerable<CollectionEntry> All => _byId.Values.Where(e => !e.Deleted);

    /// <summary>By id or by name; null when absent.</summary>
    public CollectionEntry? Find(string idOrName)
    {
        if (_byId.TryGetValue(idOrName, out var entry) && !entry.Deleted)
        {
            return entry;
        }
        return All.FirstOrDefault(e => e.Definition.Name == idOrName);
    }

    /// <summary>Creates the collection; returns the existing one for a repeated request id, or null when the name is taken.</summary>
    public (CollectionEntry? Entry, bool Created) Create(Collection definition, string requestId)
    {
        lock (_createLock)
        {
            if (requestId.Length > 0 && All.FirstOrDefault(e => e.Store.GetMeta(RequestIdKey) == requestId) is { } earlier)
            {
                return (earlier, false);
            }
            if (All.Any(e => e.Definition.Name == definition.Name))
            {
                return (null, false);
            }
            definition.Id = "col-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
            // The vector store first: an unreachable Qdrant leaves nothing behind.
            var vectors = OpenVectors(definition);
            var store = CollectionStore.Open(Path.Combine(Directory, definition.Id + ".db"), definition.Lexical?.PorterStemming ?? false);
            if (requestId.Length > 0)
            {
                store.SetMeta(RequestIdKey, requestId);
            }
            store.SetMeta(DefinitionKey, Formatter.Format(definition));
            var entry = new CollectionEntry(definition, store, vectors);
            _byId[definition.Id] = entry;
            return (entry, true);
        }
    }

    /// <summary>Whether <paramref name="entry"/> was created by a request with this (non-empty) id.</summary>
    public bool HasRequestId(CollectionEntry entry, string requestId) => requestId.Length > 0 && entry.Store.GetMeta(RequestIdKey) == requestId;

    public void Save(CollectionEntry entry) => entry.Store.SetMeta(DefinitionKey, Formatter.Format(entry.Definition));

    /// <summary>Bytes on disk: the SQLite file with its WAL, and the vector log.</summary>
    public long SizeBytes(CollectionEntry entry) =>
        new[] { ".db", ".db-wal", ".vec" }.Select(s => new FileInfo(Path.Combine(Directory, entry.Definition.Id + s))).Where(f => f.Exists).Sum(f => f.Length);

    /// <summary>Closes and removes the collection's files; returns the bytes freed.</summary>
    public long Delete(CollectionEntry entry)
    {
        var size = SizeBytes(entry);
        (entry.Vectors as QdrantVectorStore)?.Drop();
        entry.Deleted = true;
        _byId.TryRemove(entry.Definition.Id, out _);
        entry.Dispose();
        foreach (var suffix in new[] { ".db", ".db-wal", ".db-shm", ".vec" })
        {
            File.Delete(Path.Combine(Directory, entry.Definition.Id + suffix));
        }
        return size;
    }

    public void Dispose()
    {
        foreach (var entry in _byId.Values)
        {
            entry.Dispose();
        }
    }

    /// <summary>
    /// An index kind left UNSPECIFIED switches from exact search to HNSW once the collection holds
    /// <c>Retrieval:HnswThresholdValues</c> vector values (vectors × dimensions), the size at which one exact query
    /// passes about 10 ms here (bench/TuningPlatform.Bench.Retrieval). Returns whether it switched.
    /// </summary>
    public bool UpgradeIfLarge(CollectionEntry entry)
    {
        if (entry.Definition.VectorStore?.IndexKind is not (null or VectorIndexKind.Unspecified) || entry.Vectors is not ExactVectorStore exact
            || (long)exact.Count * exact.Dimensions < _hnswThreshold)
        {
            return false;
        }
        entry.Vectors = HnswVectorStore.Wrap(exact, HnswOptionsOf(entry.Definition), entry.Definition.VectorStore?.Distance != DistanceMetric.Dot);
        entry.Definition.ActiveIndexKind = VectorIndexKind.Hnsw;
        Save(entry);
        return true;
    }

    internal static HnswOptions HnswOptionsOf(Collection definition)
    {
        var hnsw = definition.VectorStore?.Hnsw ?? new HnswSettings();
        return new HnswOptions(hnsw.M == 0 ? 16 : hnsw.M, hnsw.EfConstruction == 0 ? 200 : hnsw.EfConstruction, hnsw.EfSearch == 0 ? 64 : hnsw.EfSearch);
    }

    private IVectorStore? OpenVectors(Collection definition)
    {
        if (definition.Embedding is not { Dimensions: > 0 } embedding)
        {
            return null;
        }
        var normalize = definition.VectorStore?.Distance != DistanceMetric.Dot;
        if (definition.VectorStore?.Backend == VectorStoreBackend.Qdrant)
        {
            var name = definition.VectorStore.QdrantCollection.Length > 0 ? definition.VectorStore.QdrantCollection : "tuning_" + definition.Id;
            return QdrantVectorStore.Open(_options.QdrantUrl, _options.QdrantApiKey, name, embedding.Dimensions, normalize);
        }
        var exact = ExactVectorStore.Open(Path.Combine(Directory, definition.Id + ".vec"), embedding.Dimensions, normalize);
        var kind = definition.VectorStore?.IndexKind ?? VectorIndexKind.Unspecified;
        if (kind == VectorIndexKind.Hnsw || (kind == VectorIndexKind.Unspecified && (long)exact.Count * exact.Dimensions >= _hnswThreshold))
        {
            definition.ActiveIndexKind = VectorIndexKind.Hnsw;
            return HnswVectorStore.Wrap(exact, HnswOptionsOf(definition), normalize);
        }
        return exact;
    }
}
