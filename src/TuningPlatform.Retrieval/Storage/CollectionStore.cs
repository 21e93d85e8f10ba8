using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using TuningPlatform.Retrieval.Chunking;

namespace TuningPlatform.Retrieval.Storage;

/// <summary>
/// One collection's documents, chunks and lexical index in one SQLite file: tables <c>documents</c>,
/// <c>doc_meta</c> (filterable metadata), <c>chunks</c> (rowid = the chunk's key everywhere) and the FTS5 table
/// <c>chunks_fts</c> ranked with BM25. Each document is written in one transaction, so a reader or a crash sees a
/// document either fully indexed or not at all. One connection per store, used under a lock.
/// </summary>
public sealed class CollectionStore : IDisposable
{
    private const string Schema = """
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS documents (
            id TEXT PRIMARY KEY, title TEXT NOT NULL, source_uri TEXT NOT NULL, format INTEGER NOT NULL,
            metadata TEXT NOT NULL, sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, chunk_count INTEGER NOT NULL,
            ingested_at_ms INTEGER NOT NULL, job_id TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS doc_meta (document_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (key, value, document_id));
        CREATE INDEX IF NOT EXISTS doc_meta_by_document ON doc_meta (document_id);
        CREATE TABLE IF NOT EXISTS chunks (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL UNIQUE, document_id TEXT NOT NULL,
            chunk_index INTEGER NOT NULL, text TEXT NOT NULL, heading_path TEXT NOT NULL, token_count INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (document_id);
        """;

    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();

    private CollectionStore(SqliteConnection connection, string path)
    {
        _connection = connection;
        Path = path;
    }

    public string Path { get; }

    /// <summary>Opens (creating when absent) the collection file. The stemming choice is fixed when the file is created.</summary>
    public static CollectionStore Open(string path, bool porterStemming = false)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        connection.Open();
        connection.CreateFunction("tp_num", (string? value) =>
            double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) ? number : (double?)null);
        using (var command = connection.CreateCommand())
        {
            var tokenize = porterStemming ? "porter unicode61" : "unicode61";
            command.CommandText = Schema + $"CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, tokenize = '{tokenize}');";
            command.ExecuteNonQuery();
        }
        return new CollectionStore(connection, path);
    }

    public string? GetMeta(string key)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT value FROM meta WHERE key = $key", ("$key", key));
            return command.ExecuteScalar() as string;
        }
    }

    public void SetMeta(string key, string value)
    {
        lock (_lock)
        {
            using var command = _connection.Command("INSERT INTO meta (key, value) VALUES ($key, $value) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                ("$key", key), ("$value", value));
            command.ExecuteNonQuery();
        }
    }

    public DocumentRecord? FindDocument(string id)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT * FROM documents WHERE id = $id", ("$id", id));
            using var reader = command.ExecuteReader();
            return reader.Read() ? ReadDocument(reader) : null;
        }
    }

    /// <summary>Documents in id order after <paramref name="afterId"/>, optionally only those whose id starts with a prefix.</summary>
    public IReadOnlyList<DocumentRecord> ListDocuments(string idPrefix, string? afterId, int limit)
    {
        lock (_lock)
        {
            using var command = _connection.Command("""
                SELECT * FROM documents WHERE substr(id, 1, length($prefix)) = $prefix AND ($after IS NULL OR id > $after)
                ORDER BY id LIMIT $limit
                """, ("$prefix", idPrefix), ("$after", afterId), ("$limit", limit));
            using var reader = command.ExecuteReader();
            var documents = new List<DocumentRecord>();
            while (reader.Read())
            {
                documents.Add(ReadDocument(reader));
            }
            return documents;
        }
    }

    public (long Documents, long Chunks) Count()
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)");
            using var reader = command.ExecuteReader();
            reader.Read();
            return (reader.GetInt64(0), reader.GetInt64(1));
        }
    }

    /// <summary>
    /// Replaces a document and its chunks in one transaction. <paramref name="indexedText"/> gives the text put in
    /// the lexical index for each chunk (e.g. with its heading path prepended); null = the chunk text.
    /// Returns the rowids of the removed and of the added chunks, in chunk order.
    /// </summary>
    public (IReadOnlyList<long> Removed, IReadOnlyList<long> Added) UpsertDocument(DocumentRecord document, IReadOnlyList<Chunk> chunks, Func<Chunk, string>? indexedText = null)
    {
        lock (_lock)
        {
            using var transaction = _connection.BeginTransaction();
            var removed = DeleteLocked(document.Id);
            using (var insert = _connection.Command("""
                INSERT INTO documents VALUES ($id, $title, $source, $format, $metadata, $sha, $size, $chunks, $at, $job)
                """,
                ("$id", document.Id), ("$title", document.Title), ("$source", document.SourceUri), ("$format", document.Format),
                ("$metadata", JsonSerializer.Serialize(document.Metadata)), ("$sha", document.Sha256), ("$size", document.SizeBytes),
                ("$chunks", chunks.Count), ("$at", document.IngestedAt.ToUnixTimeMilliseconds()), ("$job", document.IngestionJobId)))
            {
                insert.ExecuteNonQuery();
            }
            foreach (var (key, value) in document.Metadata)
            {
                using var meta = _connection.Command("INSERT INTO doc_meta VALUES ($id, $key, $value)", ("$id", document.Id), ("$key", key), ("$value", value));
                meta.ExecuteNonQuery();
            }
            var added = new List<long>(chunks.Count);
            using var chunkInsert = _connection.Command("""
                INSERT INTO chunks (chunk_id, document_id, chunk_index, text, heading_path, token_count)
                VALUES ($cid, $id, $index, $text, $headings, $tokens) RETURNING rowid
                """, ("$cid", ""), ("$id", document.Id), ("$index", 0), ("$text", ""), ("$headings", ""), ("$tokens", 0));
            using var ftsInsert = _connection.Command("INSERT INTO chunks_fts (rowid, body) VALUES ($rowid, $body)", ("$rowid", 0L), ("$body", ""));
            foreach (var chunk in chunks)
            {
                chunkInsert.Parameters["$cid"].Value = ChunkId(document.Id, chunk.Index);
                chunkInsert.Parameters["$index"].Value = chunk.Index;
                chunkInsert.Parameters["$text"].Value = chunk.Text;
                chunkInsert.Parameters["$headings"].Value = JsonSerializer.Serialize(chunk.HeadingPath);
                chunkInsert.Parameters["$tokens"].Value = chunk.TokenCount;
                var rowId = (long)chunkInsert.ExecuteScalar()!;
                ftsInsert.Parameters["$rowid"].Value = rowId;
                ftsInsert.Parameters["$body"].Value = indexedText?.Invoke(chunk) ?? chunk.Text;
                ftsInsert.ExecuteNonQuery();
                added.Add(rowId);
            }
            transaction.Commit();
            return (removed, added);
        }
    }

    /// <summary>Deletes a document and its chunks; returns the removed chunk rowids, or null when there was no such document.</summary>
    public IReadOnlyList<long>? DeleteDocument(string id)
    {
        lock (_lock)
        {
            using var transaction = _connection.BeginTransaction();
            using var exists = _connection.Command("SELECT 1 FROM documents WHERE id = $id", ("$id", id));
            if (exists.ExecuteScalar() is null)
            {
                return null;
            }
            var removed = DeleteLocked(id);
            transaction.Commit();
            return removed;
        }
    }

    public static string ChunkId(string documentId, int index) => string.Create(CultureInfo.InvariantCulture, $"{documentId}#c{index}");

    /// <summary>BM25 over the lexical index: the best <paramref name="k"/> chunks for any of the query's words, best first.</summary>
    public IReadOnlyList<ScoredChunk> SearchLexical(string query, int k, IReadOnlyList<MetadataCondition> filters)
    {
        var match = MatchExpression(query);
        if (match.Length == 0)
        {
            return [];
        }
        lock (_lock)
        {
            var parameters = new List<(string, object?)> { ("$match", match), ("$k", k) };
            var where = FilterSql(filters, parameters, "c.document_id");
            using var command = _connection.Command($"""
                SELECT c.rowid, -bm25(chunks_fts) FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid
                WHERE chunks_fts MATCH $match{where}
                ORDER BY bm25(chunks_fts) LIMIT $k
                """, [.. parameters]);
            using var reader = command.ExecuteReader();
            var hits = new List<ScoredChunk>();
            while (reader.Read())
            {
                hits.Add(new ScoredChunk(reader.GetInt64(0), reader.GetDouble(1)));
            }
            return hits;
        }
    }

    /// <summary>Rowids of the chunks whose document passes every filter (for filtering dense search).</summary>
    public HashSet<long> FilterChunks(IReadOnlyList<MetadataCondition> filters)
    {
        lock (_lock)
        {
            var parameters = new List<(string, object?)>();
            var where = FilterSql(filters, parameters, "c.document_id");
            using var command = _connection.Command($"SELECT c.rowid FROM chunks c WHERE 1 = 1{where}", [.. parameters]);
            using var reader = command.ExecuteReader();
            var ids = new HashSet<long>();
            while (reader.Read())
            {
                ids.Add(reader.GetInt64(0));
            }
            return ids;
        }
    }

    /// <summary>The chunks with these rowids (those still present), keyed by rowid.</summary>
    public Dictionary<long, ChunkRecord> GetChunks(IEnumerable<long> rowIds)
    {
        var ids = rowIds.Distinct().ToList();
        var chunks = new Dictionary<long, ChunkRecord>();
        if (ids.Count == 0)
        {
            return chunks;
        }
        lock (_lock)
        {
            using var command = _connection.Command($"SELECT * FROM chunks WHERE rowid IN ({string.Join(',', ids.Select(i => i.ToString(CultureInfo.InvariantCulture)))})");
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var chunk = new ChunkRecord(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetString(4),
                    JsonSerializer.Deserialize<string[]>(reader.GetString(5)) ?? [], reader.GetInt32(6));
                chunks[chunk.RowId] = chunk;
            }
            return chunks;
        }
    }

    /// <summary>The chunks of one document in chunk order (empty when there is no such document).</summary>
    public IReadOnlyList<ChunkRecord> GetDocumentChunks(string documentId)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT * FROM chunks WHERE document_id = $id ORDER BY chunk_index", ("$id", documentId));
            using var reader = command.ExecuteReader();
            var chunks = new List<ChunkRecord>();
            while (reader.Read())
            {
                chunks.Add(new ChunkRecord(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetString(4),
                    JsonSerializer.Deserialize<string[]>(reader.GetString(5)) ?? [], reader.GetInt32(6)));
            }
            return chunks;
        }
    }

    /// <summary>Every document id, in id order.</summary>
    public IReadOnlyList<string> AllDocumentIds()
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT id FROM documents ORDER BY id");
            using var reader = command.ExecuteReader();
            var ids = new List<string>();
            while (reader.Read())
            {
                ids.Add(reader.GetString(0));
            }
            return ids;
        }
    }

    /// <summary>FTS5 query: each word of the text quoted (so no user text is read as FTS5 syntax), joined with OR.</summary>
    public static string MatchExpression(string query)
    {
        var words = SimpleTokenSplitter.Instance.Split(query)
            .Select(t => query.Substring(t.Start, t.Length))
            .Where(w => char.IsLetterOrDigit(w[0]) || w[0] == '_')
            .Select(w => w.ToLowerInvariant())
            .Distinct(StringComparer.Ordinal);
        return string.Join(" OR ", words.Select(w => $"\"{w}\""));
    }

    public void Dispose()
    {
        _connection.Dispose();
    }

    private List<long> DeleteLocked(string documentId)
    {
        var removed = new List<long>();
        using (var select = _connection.Command("SELECT rowid FROM chunks WHERE document_id = $id", ("$id", documentId)))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                removed.Add(reader.GetInt64(0));
            }
        }
        using var delete = _connection.Command("""
            DELETE FROM chunks_fts WHERE rowid IN (SELECT rowid FROM chunks WHERE document_id = $id);
            DELETE FROM chunks WHERE document_id = $id;
            DELETE FROM doc_meta WHERE document_id = $id;
            DELETE FROM documents WHERE id = $id;
            """, ("$id", documentId));
        delete.ExecuteNonQuery();
        return removed;
    }

    private static string FilterSql(IReadOnlyList<MetadataCondition> filters, List<(string, object?)> parameters, string documentColumn)
    {
        var sql = new StringBuilder();
        for (var i = 0; i < filters.Count; i++)
        {
            var f = filters[i];
            var key = $"$fk{i}";
            parameters.Add((key, f.Key));
            string Value(int j)
            {
                var name = $"$fv{i}_{j}";
                parameters.Add((name, f.Values[j]));
                return name;
            }
            string Number()
            {
                var name = $"$fn{i}";
                parameters.Add((name, double.Parse(f.Values[0], NumberStyles.Float, CultureInfo.InvariantCulture)));
                return name;
            }
            var exists = $"SELECT 1 FROM doc_meta m WHERE m.document_id = {documentColumn} AND m.key = {key}";
            var condition = f.Operator switch
            {
                FilterOperator.EqualTo => $"EXISTS ({exists} AND m.value = {Value(0)})",
                FilterOperator.NotEqualTo => $"NOT EXISTS ({exists} AND m.value = {Value(0)})",
                FilterOperator.In => $"EXISTS ({exists} AND m.value IN ({string.Join(", ", f.Values.Select((_, j) => Value(j)))}))",
                FilterOperator.NotIn => $"NOT EXISTS ({exists} AND m.value IN ({string.Join(", ", f.Values.Select((_, j) => Value(j)))}))",
                FilterOperator.GreaterThan => $"EXISTS ({exists} AND tp_num(m.value) > {Number()})",
                FilterOperator.GreaterOrEqual => $"EXISTS ({exists} AND tp_num(m.value) >= {Number()})",
                FilterOperator.LessThan => $"EXISTS ({exists} AND tp_num(m.value) < {Number()})",
                FilterOperator.LessOrEqual => $"EXISTS ({exists} AND tp_num(m.value) <= {Number()})",
                FilterOperator.Exists => $"EXISTS ({exists})",
                FilterOperator.Prefix => PrefixCondition(exists, Value(0)),
                _ => throw new ArgumentException($"filters[{i}]: {f.Validate() ?? "unsupported operator"}"),
            };
            sql.Append(" AND ").Append(condition);
        }
        return sql.ToString();
    }

    private static string PrefixCondition(string exists, string value) => $"EXISTS ({exists} AND substr(m.value, 1, length({value})) = {value})";

    private static DocumentRecord ReadDocument(SqliteDataReader reader) => new(
        reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3),
        JsonSerializer.Deserialize<Dictionary<string, string>>(reader.GetString(4)) ?? [],
        reader.GetString(5), reader.GetInt64(6), reader.GetInt32(7),
        DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(8)), reader.GetString(9));
}
