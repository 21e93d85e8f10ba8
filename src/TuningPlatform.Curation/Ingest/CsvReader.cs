using System.Text;

namespace TuningPlatform.Curation.Ingest;

/// <summary>
/// RFC 4180 rows: fields separated by commas, optionally quoted; a quoted field may hold commas, newlines
/// and doubled quotes. A row that cannot be read (quote in the middle of an unquoted field, unterminated
/// quote) comes back with an error and its first line.
/// </summary>
internal sealed class CsvReader(TextReader reader)
{
    public sealed record Row(long Line, List<string> Fields, string? Error);

    /// <summary>The current 1-based line.</summary>
    public long Line { get; private set; } = 1;

    public Row? ReadRow()
    {
        var first = reader.Peek();
        if (first < 0)
        {
            return null;
        }
        var startLine = Line;
        var fields = new List<string>();
        var field = new StringBuilder();
        string? error = null;
        var quoted = false;
        var fieldStart = true;
        while (true)
        {
            var c = reader.Read();
            if (c < 0)
            {
                if (quoted)
                {
                    error = "a quoted field is not closed before the end of the file";
                }
                fields.Add(field.ToString());
                return new Row(startLine, fields, error);
            }
            var ch = (char)c;
            if (quoted)
            {
                if (ch == '"')
                {
                    if (reader.Peek() == '"')
                    {
                        reader.Read();
                        field.Append('"');
                    }
                    else
                    {
                        quoted = false;
                    }
                }
                else
                {
                    if (ch == '\n')
                    {
                        Line++;
                    }
                    field.Append(ch);
                }
                continue;
            }
            switch (ch)
            {
                case ',':
                    fields.Add(field.ToString());
                    field.Clear();
                    fieldStart = true;
                    continue;
                case '\r':
                    continue;
                case '\n':
                    Line++;
                    fields.Add(field.ToString());
                    return new Row(startLine, fields, error);
                case '"' when fieldStart:
                    quoted = true;
                    fieldStart = false;
                    continue;
                case '"':
                    error ??= $"a quote inside an unquoted field (field {fields.Count + 1}); quote the whole field and double inner quotes";
                    field.Append(ch);
                    continue;
                default:
                    fieldStart = false;
                    field.Append(ch);
                    continue;
            }
        }
    }
}
