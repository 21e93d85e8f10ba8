namespace TuningPlatform.RetrievalService;

/// <summary>Settings of the retrieval service (configuration section <c>Retrieval</c>, environment <c>Retrieval__…</c>).</summary>
public sealed class RetrievalOptions
{
    /// <summary>Where collections and the job log live. Default: <c>&lt;TUNING_DATA_DIR or ./.data&gt;/retrieval</c>.</summary>
    public string DataDirectory { get; set; } = "";

    /// <summary>Server folders that IngestDocuments may read (FolderSource.path is relative to one, or absolute inside one).
    /// Empty = folder ingestion is refused.</summary>
    public List<string> IngestRoots { get; set; } = [];

    /// <summary>Inline documents per IngestDocuments call. Default 1000.</summary>
    public int MaxInlineDocuments { get; set; } = 1000;

    /// <summary>Bytes of inline text per IngestDocuments call. Default 32 MiB.</summary>
    public long MaxInlineBytes { get; set; } = 32L << 20;

    /// <summary>Bytes of one document (inline, file, or JSONL record). Default 8 MiB.</summary>
    public long MaxDocumentBytes { get; set; } = 8L << 20;

    /// <summary>Files one folder ingestion may read. Default 100000.</summary>
    public int MaxFolderFiles { get; set; } = 100_000;

    /// <summary>
    /// Vector values (vectors × dimensions) from which a collection whose index kind is UNSPECIFIED uses HNSW instead
    /// of exact search. Default 16 000 000 (about 10 ms per exact query on this machine; see the benchmark).
    /// </summary>
    public long HnswThresholdValues { get; set; } = 16_000_000;

    /// <summary>Base URL of a Qdrant server's REST API (e.g. <c>http://127.0.0.1:6333</c>); empty = the QDRANT backend is refused.</summary>
    public string QdrantUrl { get; set; } = "";

    /// <summary>Sent as Qdrant's <c>api-key</c> header when set.</summary>
    public string QdrantApiKey { get; set; } = "";
}
