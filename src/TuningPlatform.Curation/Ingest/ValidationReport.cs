namespace TuningPlatform.Curation.Ingest;

/// <summary>Every kind of problem validation reports; the numeric values are those of tuning.curation.v1.ValidationIssueCode.</summary>
public enum IssueCode
{
    InvalidJson = 1,
    InvalidUtf8 = 2,
    ByteOrderMark = 3,
    InvalidCsv = 4,
    MissingField = 5,
    WrongType = 6,
    UnrecognizedField = 7,
    EmptyContent = 8,
    UnknownRole = 9,
    MissingAssistantMessage = 10,
    MissingUserMessage = 11,
    InvalidRoleOrder = 12,
    InvalidWeight = 13,
    InvalidToolCall = 14,
    LineTooLong = 15,
    ExceedsContextLength = 16,
    NoTrainableTokens = 17,
    TemplateRenderFailed = 18,
    DuplicateId = 19,
}

public enum Severity
{
    Error = 1,
    Warning = 2,
}

/// <summary>One validation problem: file, 1-based line, 0-based record index, field path, message and a snippet.</summary>
public sealed record ValidationIssue(Severity Severity, IssueCode Code, string File, long Line, long RecordIndex, string Field, string Message, string Snippet = "")
{
    public override string ToString() => $"{File}:{Line}: {Field}: {Code}: {Message}";
}

/// <summary>
/// Totals and the first issues (capped), in file order. Counts by code are exact even when the list is
/// capped, so a person sees at once which kind of problem dominates.
/// </summary>
public sealed class ValidationReport(int maxIssues)
{
    private readonly List<ValidationIssue> _issues = [];
    private readonly Dictionary<IssueCode, long> _counts = [];

    public int MaxIssues { get; } = maxIssues;

    public long RecordsTotal { get; set; }

    public long RecordsValid { get; set; }

    public long RecordsInvalid { get; set; }

    public long ErrorCount { get; private set; }

    public long WarningCount { get; private set; }

    public bool Truncated { get; private set; }

    public IReadOnlyList<ValidationIssue> Issues => _issues;

    public IReadOnlyDictionary<IssueCode, long> CountsByCode => _counts;

    public void Add(ValidationIssue issue)
    {
        if (issue.Severity == Severity.Error)
        {
            ErrorCount++;
        }
        else
        {
            WarningCount++;
        }
        _counts[issue.Code] = _counts.GetValueOrDefault(issue.Code) + 1;
        if (_issues.Count < MaxIssues)
        {
            _issues.Add(issue with { Snippet = Snip(issue.Snippet) });
        }
        else
        {
            Truncated = true;
        }
    }

    internal static string Snip(string text) => text.Length <= 200 ? text : text[..200];
}
