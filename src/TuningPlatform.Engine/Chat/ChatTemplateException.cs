namespace TuningPlatform.Engine.Chat;

/// <summary>
/// A chat template that cannot be parsed or rendered: unsupported syntax, a runtime type error, or the
/// template's own raise_exception. Names the template and the line and column in its source.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>Creates the exception; <paramref name="line"/> and <paramref name="column"/> are 1-based (0 when unknown).</summary>
    public ChatTemplateException(string templateName, int line, int column, string detail, bool raisedByTemplate = false)
        : base(line > 0 ? $"{templateName} line {line}, column {column}: {detail}" : $"{templateName}: {detail}")
    {
        TemplateName = templateName;
        Line = line;
        Column = column;
        Detail = detail;
        RaisedByTemplate = raisedByTemplate;
    }

    /// <summary>Which template (e.g. "chat_template of …/tokenizer_config.json" or "built-in llama3").</summary>
    public string TemplateName { get; }

    /// <summary>1-based line of the offending construct in the template source.</summary>
    public int Line { get; }

    /// <summary>1-based column of the offending construct.</summary>
    public int Column { get; }

    /// <summary>The problem, without the position prefix.</summary>
    public string Detail { get; }

    /// <summary>True when the template itself called raise_exception (e.g. roles do not alternate).</summary>
    public bool RaisedByTemplate { get; }

    internal static ChatTemplateException At(string name, string source, int offset, string detail, bool raised = false)
    {
        var (line, column) = Position(source, offset);
        return new ChatTemplateException(name, line, column, detail, raised);
    }

    private static (int Line, int Column) Position(string source, int offset)
    {
        offset = Math.Clamp(offset, 0, source.Length);
        var line = 1;
        var lineStart = 0;
        for (var i = 0; i < offset; i++)
        {
            if (source[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        return (line, offset - lineStart + 1);
    }
}
