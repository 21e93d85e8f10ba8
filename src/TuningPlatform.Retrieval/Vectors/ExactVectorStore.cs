using System.Numerics.Tensors;
using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.Retrieval.Vectors;

/// <summary>
/// The embedded vector store: every vector in one flat in-memory matrix, searched exhaustively with
/// <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>. With <c>normalize</c> each vector
/// (and each query) is scaled to unit L2 norm, so the score is the cosine similarity.
/// Persistence is an append-only log (<c>TPVEC1</c>, dimension, then records: op byte 1 = put id + vector,
/// 2 = delete id), replayed on open; a torn last record from a crash is ignored, and the log is rewritten
/// compactly when dead records outnumber live ones.
/// </summary>
public sealed class ExactVectorStore : IVectorStore
{
    private static readonly byte[] Magic = "TPVEC1"u8.ToArray();

    private readonly string _path;
    private readonly bool _normalize;
    private readonly Dictionary<long, int> _slots = [];
    private readonly List<long> _ids = [];
    private readonly Lock _lock = new();
    private float[] _matrix;
    private FileStream _log;
    private long _deadRecords;

    private ExactVectorStore(string path, int dimensions, bool normalize)
    {
        _path = path;
        _normalize = normalize;
        Dimensions = dimensions;
        _matrix = new float[dimensions * 64];
        _log = null!;
    }

    public int Dimensions { get; }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _ids.Count;
            }
        }
    }

    /// <summary>Opens the log at <paramref name="path"/>, creating it when absent; a file of another dimension is an error.</summary>
    public static ExactVectorStore Open(string path, int dimensions, bool normalize = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        var store = new ExactVectorStore(path, dimensions, normalize);
        store.Load();
        return store;
    }

    public void Upsert(IReadOnlyList<(long Id, float[] Vector)> vectors)
    {
        foreach (var (id, vector) in vectors)
        {
            if (vector.Length != Dimensions)
            {
                throw new ArgumentException($"vector {id}: expected {Dimensions} dimensions, got {vector.Length}");
            }
            if (!float.IsFinite(TensorPrimitives.Sum(vector)) || (_normalize && TensorPrimitives.Norm(vector) == 0))
            {
                throw new ArgumentException($"vector {id}: values must be finite{(_normalize ? " and not all zero" : "")}");
            }
        }
        lock (_lock)
        {
            using var writer = new BinaryWriter(_log, System.Text.Encoding.UTF8, leaveOpen: true);
            foreach (var (id, vector) in vectors)
            {
                var stored = _normalize ? Normalized(vector) : vector;
                PutLocked(id, stored);
                writer.Write((byte)1);
                writer.Write(id);
                foreach (var value in stored)
                {
                    writer.Write(value);
                }
            }
            writer.Flush();
            _log.Flush(flushToDisk: true);
        }
    }

    public void Delete(IReadOnlyCollection<long> ids)
    {
        lock (_lock)
        {
            using var writer = new BinaryWriter(_log, System.Text.Encoding.UTF8, leaveOpen: true);
            foreach (var id in ids)
            {
                if (RemoveLocked(id))
                {
                    writer.Write((byte)2);
                    writer.Write(id);
                    _deadRecords += 2;
                }
            }
            writer.Flush();
            _log.Flush(flushToDisk: true);
            if (_deadRecords > Math.Max(1024, _ids.Count))
            {
                CompactLocked();
            }
        }
    }

    public IReadOnlyList<ScoredChunk> Search(ReadOnlySpan<float> query, int k, Func<long, bool>? allowed = null)
    {
        if (query.Length != Dimensions)
        {
            throw new ArgumentException($"query: expected {Dimensions} dimensions, got {query.Length}");
        }
        var q = _normalize ? Normalized(query.ToArray()) : query.ToArray();
        // A min-heap of the best k so far: the root is the worst kept score.
        var heap = new PriorityQueue<long, float>(k + 1);
        lock (_lock)
        {
            var matrix = _matrix.AsSpan();
            for (var slot = 0; slot < _ids.Count; slot++)
            {
                var id = _ids[slot];
                if (allowed is not null && !allowed(id))
                {
                    continue;
                }
                var score = TensorPrimitives.Dot(q, matrix.Slice(slot * Dimensions, Dimensions));
                if (heap.Count < k)
                {
                    heap.Enqueue(id, score);
                }
                else if (heap.TryPeek(out _, out var worst) && score > worst)
                {
                    heap.DequeueEnqueue(id, score);
                }
            }
        }
        var hits = new ScoredChunk[heap.Count];
        for (var i = hits.Length - 1; i >= 0; i--)
        {
            heap.TryDequeue(out var id, out var score);
            hits[i] = new ScoredChunk(id, score);
        }
        return hits;
    }

    /// <summary>A copy of every stored vector (normalised when the store normalises), in slot order.</summary>
    public IReadOnlyList<(long Id, float[] Vector)> Snapshot()
    {
        lock (_lock)
        {
            var result = new List<(long, float[])>(_ids.Count);
            for (var slot = 0; slot < _ids.Count; slot++)
            {
                result.Add((_ids[slot], _matrix.AsSpan(slot * Dimensions, Dimensions).ToArray()));
            }
            return result;
        }
    }

    public void Dispose()
    {
        _log.Dispose();
    }

    private static float[] Normalized(float[] vector)
    {
        var result = new float[vector.Length];
        TensorPrimitives.Divide(vector, TensorPrimitives.Norm(vector), result);
        return result;
    }

    private void PutLocked(long id, float[] vector)
    {
        if (!_slots.TryGetValue(id, out var slot))
        {
            slot = _ids.Count;
            _ids.Add(id);
            _slots[id] = slot;
            if (_matrix.Length < _ids.Count * Dimensions)
            {
                Array.Resize(ref _matrix, Math.Max(_matrix.Length * 2, _ids.Count * Dimensions));
            }
        }
        else
        {
            _deadRecords++;
        }
        vector.CopyTo(_matrix, slot * Dimensions);
    }

    private bool RemoveLocked(long id)
    {
        if (!_slots.Remove(id, out var slot))
        {
            return false;
        }
        // Move the last vector into the freed slot.
        var last = _ids.Count - 1;
        if (slot != last)
        {
            var moved = _ids[last];
            _ids[slot] = moved;
            _slots[moved] = slot;
            Array.Copy(_matrix, last * Dimensions, _matrix, slot * Dimensions, Dimensions);
        }
        _ids.RemoveAt(last);
        return true;
    }

    private void Load()
    {
        if (File.Exists(_path))
        {
            using var stream = new FileStream(_path, FileMode.Open, FileAccess.Read);
            using var reader = new BinaryReader(stream);
            var header = reader.ReadBytes(Magic.Length + 4);
            if (header.Length < Magic.Length + 4 || !header.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            {
                throw new InvalidDataException($"{_path}: not a TuningPlatform vector log (expected the TPVEC1 header); delete it and re-ingest to rebuild.");
            }
            var dimensions = BitConverter.ToInt32(header, Magic.Length);
            if (dimensions != Dimensions)
            {
                throw new InvalidDataException($"{_path}: holds {dimensions}-dimensional vectors, the collection expects {Dimensions}.");
            }
            var recordBytes = 1 + 8 + (4 * Dimensions);
            var valid = stream.Position;
            while (stream.Length - stream.Position >= 9)
            {
                var op = reader.ReadByte();
                var id = reader.ReadInt64();
                if (op == 1)
                {
                    if (stream.Length - stream.Position < recordBytes - 9)
                    {
                        break;
                    }
                    var vector = new float[Dimensions];
                    for (var i = 0; i < vector.Length; i++)
                    {
                        vector[i] = reader.ReadSingle();
                    }
                    PutLocked(id, vector);
                }
                else if (op == 2)
                {
                    RemoveLocked(id);
                    _deadRecords += 2;
                }
                else
                {
                    break;
                }
                valid = stream.Position;
            }
            stream.Close();
            _log = new FileStream(_path, FileMode.Open, FileAccess.Write);
            // Drop a torn tail so that new records follow the last complete one.
            _log.SetLength(valid);
            _log.Seek(valid, SeekOrigin.Begin);
            return;
        }
        _log = new FileStream(_path, FileMode.CreateNew, FileAccess.Write);
        WriteHeader(_log);
    }

    private void WriteHeader(Stream stream)
    {
        stream.Write(Magic);
        stream.Write(BitConverter.GetBytes(Dimensions));
        stream.Flush();
    }

    private void CompactLocked()
    {
        var temporary = _path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            WriteHeader(stream);
            using var writer = new BinaryWriter(stream);
            for (var slot = 0; slot < _ids.Count; slot++)
            {
                writer.Write((byte)1);
                writer.Write(_ids[slot]);
                foreach (var value in _matrix.AsSpan(slot * Dimensions, Dimensions))
                {
                    writer.Write(value);
                }
            }
            writer.Flush();
            stream.Flush(flushToDisk: true);
        }
        _log.Dispose();
        File.Move(temporary, _path, overwrite: true);
        _log = new FileStream(_path, FileMode.Open, FileAccess.Write);
        _log.Seek(0, SeekOrigin.End);
        _deadRecords = 0;
    }
}
