namespace TuningPlatform.Retrieval.Storage;

/// <summary>A stored document. <see cref="Format"/> holds <c>TextFormat</c>'s value.</summary>
public sealed record DocumentRecord(
    string Id,
    string Title,
    string SourceUri,
    int Format,
    IReadOnlyDictionary<string, string> Metadata,
    string Sha256,
    long SizeBytes,
    int ChunkCount,
    DateTimeOffset IngestedAt,
    string IngestionJobId);

/// <summary>A stored chunk. <see cref="RowId"/> is the key shared by the lexical index and the vector store.</summary>
public sealed record ChunkRecord(long RowId, string ChunkId, string DocumentId, int Index, string Text, IReadOnlyList<string> HeadingPath, int TokenCount);

/// <summary>Metadata filter operators; values match <c>tuning.common.v1.FilterOperator</c>.</summary>
public enum FilterOperator
{
    Unspecified = 0,
    EqualTo = 1,
    NotEqualTo = 2,
    In = 3,
    NotIn = 4,
    GreaterThan = 5,
    GreaterOrEqual = 6,
    LessThan = 7,
    LessOrEqual = 8,
    Exists = 9,
    Prefix = 10,
}

/// <summary>A condition on a document's metadata, inherited by its chunks. Several are combined with AND.</summary>
public sealed record MetadataCondition(string Key, FilterOperator Operator, IReadOnlyList<string> Values)
{
    /// <summary>Null when well formed, else what is wrong (without the field path).</summary>
    public string? Validate()
    {
        if (Key.Length == 0)
        {
            return "key is required";
        }
        return Operator switch
        {
            FilterOperator.Unspecified => "operator is required",
            FilterOperator.EqualTo or FilterOperator.NotEqualTo or FilterOperator.Prefix when Values.Count != 1 => $"{Operator} takes exactly one value, got {Values.Count}",
            FilterOperator.In or FilterOperator.NotIn when Values.Count == 0 => $"{Operator} takes at least one value",
            FilterOperator.GreaterThan or FilterOperator.GreaterOrEqual or FilterOperator.LessThan or FilterOperator.LessOrEqual
                when Values.Count != 1 || !double.TryParse(Values[0], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _)
                => $"{Operator} takes exactly one number, got [{string.Join(", ", Values)}]",
            > FilterOperator.Prefix => $"unknown operator {(int)Operator}",
            _ => null,
        };
    }
}

/// <summary>A chunk found by one retriever, with that retriever's score (BM25: higher is better; dense: cosine or dot).</summary>
public sealed record ScoredChunk(long RowId, double Score);
