using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Ingest;

/// <summary>Container format; numeric values are those of tuning.curation.v1.FileFormat.</summary>
public enum FileFormat
{
    Unspecified = 0,
    Jsonl = 1,
    Json = 2,
    Csv = 3,
    Text = 4,
}

/// <summary>Record shape; numeric values are those of tuning.curation.v1.RecordFormat.</summary>
public enum RecordFormat
{
    Unspecified = 0,
    Alpaca = 1,
    ShareGpt = 2,
    OpenAiChat = 3,
    PromptCompletion = 4,
    Text = 5,
}

/// <summary>Compression; numeric values are those of tuning.curation.v1.Compression.</summary>
public enum Compression
{
    Unspecified = 0,
    None = 1,
    Gzip = 2,
}

/// <summary>The names a file uses for the canonical fields; empty = the canonical (or detected) name. Dots reach into objects.</summary>
public sealed record FieldMap
{
    public string Instruction { get; init; } = "";
    public string Input { get; init; } = "";
    public string Output { get; init; } = "";
    public string System { get; init; } = "";
    public string History { get; init; } = "";
    public string Conversations { get; init; } = "";
    public string Messages { get; init; } = "";
    public string Tools { get; init; } = "";
    public string Role { get; init; } = "";
    public string Content { get; init; } = "";
    public string Weight { get; init; } = "";
    public string Prompt { get; init; } = "";
    public string Completion { get; init; } = "";
    public string Text { get; init; } = "";
    public string Label { get; init; } = "";

    /// <summary>Source role name → canonical role name (system, user, assistant, tool).</summary>
    public IReadOnlyDictionary<string, string> RoleAliases { get; init; } = new Dictionary<string, string>();

    public IReadOnlyList<string> MetadataFields { get; init; } = [];
}

/// <summary>How to read and validate one upload or import.</summary>
public sealed record IngestOptions
{
    public FileFormat FileFormat { get; init; }

    public RecordFormat RecordFormat { get; init; }

    public Compression Compression { get; init; }

    public FieldMap FieldMap { get; init; } = new();

    /// <summary>Keep the valid records and drop the bad ones (true), or reject the whole file on any error (false).</summary>
    public bool DropBadRows { get; init; }

    public bool SplitTextOnBlankLines { get; init; }

    public int MaxReportedIssues { get; init; } = 1000;

    /// <summary>JSONL and text lines longer than this are LINE_TOO_LONG.</summary>
    public int MaxLineBytes { get; init; } = 8 * 1024 * 1024;

    /// <summary>A JSON array file is read whole; larger ones are refused (use JSONL).</summary>
    public long MaxJsonArrayBytes { get; init; } = 512L * 1024 * 1024;

    /// <summary>More records than this ends the ingest with <see cref="IngestLimitException"/>.</summary>
    public long MaxRecords { get; init; } = 10_000_000;

    /// <summary>Counts an example's tokens as rendered for training; null = no context-length check.</summary>
    public Func<Example, int>? CountTokens { get; init; }

    public int MaxSeqLength { get; init; }

    /// <summary>Records read before the shape is decided.</summary>
    public int DetectionSampleSize { get; init; } = 100;
}

/// <summary>What detection found and what the ingest used.</summary>
public sealed record DetectionResult
{
    public FileFormat FileFormat { get; init; }
    public RecordFormat RecordFormat { get; init; }
    public Compression Compression { get; init; }
    public bool FileFormatOverridden { get; init; }
    public bool RecordFormatOverridden { get; init; }
    public double Confidence { get; init; }
    public string Encoding { get; init; } = "utf-8";
    public IReadOnlyDictionary<string, long> FieldsSeen { get; init; } = new Dictionary<string, long>();
    public FieldMap FieldMap { get; init; } = new();
    public long RecordsSampled { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>Why an ingest stopped as a whole rather than reporting a record: the status code a service should answer.</summary>
public enum IngestFailureKind
{
    InvalidArgument,
    ResourceExhausted,
}

/// <summary>An ingest that cannot go on (undecodable compression, a size limit); names the setting or field at fault.</summary>
public sealed class IngestLimitException(IngestFailureKind kind, string param, string message) : Exception(message)
{
    public IngestFailureKind Kind { get; } = kind;

    public string Param { get; } = param;
}
