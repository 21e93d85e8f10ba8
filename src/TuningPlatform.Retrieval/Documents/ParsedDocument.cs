namespace TuningPlatform.Retrieval.Documents;

/// <summary>How a document's text is read. Values match <c>tuning.retrieval.v1.DocumentFormat</c>.</summary>
public enum TextFormat
{
    Unspecified = 0,
    Text = 1,
    Markdown = 2,
    ReStructuredText = 3,
    Jsonl = 4,
}

/// <summary>A run of paragraphs under one heading (null for text before the first heading); HeadingPath holds the headings above and including it, outermost first.</summary>
public sealed record Section(string? Heading, IReadOnlyList<string> HeadingPath, IReadOnlyList<string> Paragraphs);

/// <summary>A document cut into sections, in reading order.</summary>
public sealed record ParsedDocument(string? Title, IReadOnlyList<Section> Sections);
