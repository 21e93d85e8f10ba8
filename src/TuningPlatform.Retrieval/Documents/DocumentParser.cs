namespace TuningPlatform.Retrieval.Documents;

/// <summary>
/// Turns plain text, Markdown and reStructuredText into sections of paragraphs. Paragraphs are separated by
/// blank lines; code blocks (Markdown fences, reStructuredText indented blocks) stay whole paragraphs and never
/// produce headings.
/// </summary>
public static class DocumentParser
{
    private const string RstAdornment = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    /// <summary>The format named by a file name: .md/.markdown, .rst (also .rst.txt), .jsonl, else plain text.</summary>
    public static TextFormat DetectFormat(string fileName)
    {
        var name = fileName.ToLowerInvariant();
        return name switch
        {
            _ when name.EndsWith(".md", StringComparison.Ordinal) || name.EndsWith(".markdown", StringComparison.Ordinal) => TextFormat.Markdown,
            _ when name.EndsWith(".rst", StringComparison.Ordinal) || name.EndsWith(".rst.txt", StringComparison.Ordinal) => TextFormat.ReStructuredText,
            _ when name.EndsWith(".jsonl", StringComparison.Ordinal) => TextFormat.Jsonl,
            _ => TextFormat.Text,
        };
    }

    public static ParsedDocument Parse(string text, TextFormat format) => format switch
    {
        TextFormat.Markdown => ParseMarkdown(Lines(text)),
        TextFormat.ReStructuredText => ParseRst(Lines(text)),
        _ => ParsePlain(Lines(text)),
    };

    private static string[] Lines(string text) => text.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n').Split('\n');

    private static ParsedDocument ParsePlain(string[] lines)
    {
        var builder = new SectionBuilder();
        foreach (var line in lines)
        {
            builder.Line(line);
        }
        return builder.Build(title: null);
    }

    private static ParsedDocument ParseMarkdown(string[] lines)
    {
        var builder = new SectionBuilder();
        string? title = null;
        string? fence = null;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var trimmed = line.TrimStart();
            if (fence is not null)
            {
                builder.Line(line, keepBlank: true);
                if (trimmed.StartsWith(fence, StringComparison.Ordinal))
                {
                    fence = null;
                    builder.EndParagraph();
                }
                continue;
            }
            if (trimmed.StartsWith("```", StringComparison.Ordinal) || trimmed.StartsWith("~~~", StringComparison.Ordinal))
            {
                fence = trimmed[..3];
                builder.EndParagraph();
                builder.Line(line, keepBlank: true);
                continue;
            }
            if (AtxLevel(line) is var level and > 0)
            {
                var heading = line[level..].Trim().TrimEnd('#').Trim();
                builder.Heading(heading, level);
                title ??= level == 1 ? heading : null;
                continue;
            }
            var next = i + 1 < lines.Length ? lines[i + 1] : "";
            if (!builder.InParagraph && line.Trim().Length > 0 && IsSetextUnderline(next))
            {
                var setextLevel = next.Trim()[0] == '=' ? 1 : 2;
                builder.Heading(line.Trim(), setextLevel);
                title ??= setextLevel == 1 ? line.Trim() : null;
                i++;
                continue;
            }
            builder.Line(line);
        }
        return builder.Build(title);
    }

    private static int AtxLevel(string line)
    {
        var level = 0;
        while (level < line.Length && level < 7 && line[level] == '#')
        {
            level++;
        }
        return level is >= 1 and <= 6 && (level == line.Length || line[level] == ' ') ? level : 0;
    }

    private static bool IsSetextUnderline(string line)
    {
        var t = line.Trim();
        return t.Length >= 2 && (t.All(c => c == '=') || t.All(c => c == '-'));
    }

    private static ParsedDocument ParseRst(string[] lines)
    {
        var builder = new SectionBuilder();
        // Section levels are given by the order in which adornment styles first appear.
        var styles = new List<(char Char, bool Overline)>();
        string? title = null;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            // Overline + title + underline of the same character.
            if (IsAdornment(line) && i + 2 < lines.Length && IsTitleLine(lines[i + 1]) && IsAdornment(lines[i + 2])
                && lines[i + 2].TrimEnd()[0] == line.TrimEnd()[0] && lines[i + 1].Trim().Length <= line.TrimEnd().Length)
            {
                var heading = AddRstHeading(builder, styles, lines[i + 1].Trim(), line.TrimEnd()[0], overline: true);
                title ??= heading;
                i += 2;
                continue;
            }
            // Title + underline at least as long as the title.
            if (!builder.InParagraph && IsTitleLine(line) && i + 1 < lines.Length && IsAdornment(lines[i + 1])
                && lines[i + 1].TrimEnd().Length >= line.TrimEnd().Length)
            {
                var heading = AddRstHeading(builder, styles, line.Trim(), lines[i + 1].TrimEnd()[0], overline: false);
                title ??= heading;
                i++;
                continue;
            }
            builder.Line(line);
        }
        return builder.Build(title);
    }

    private static string AddRstHeading(SectionBuilder builder, List<(char, bool)> styles, string heading, char adornment, bool overline)
    {
        var index = styles.IndexOf((adornment, overline));
        if (index < 0)
        {
            styles.Add((adornment, overline));
            index = styles.Count - 1;
        }
        builder.Heading(heading, index + 1);
        return heading;
    }

    private static bool IsTitleLine(string line) => line.Length > 0 && !char.IsWhiteSpace(line[0]) && !IsAdornment(line);

    private static bool IsAdornment(string line)
    {
        var t = line.TrimEnd();
        return t.Length >= 3 && RstAdornment.Contains(t[0], StringComparison.Ordinal) && t.All(c => c == t[0]);
    }

    /// <summary>Collects lines into paragraphs and paragraphs into sections under a stack of headings.</summary>
    private sealed class SectionBuilder
    {
        private readonly List<Section> _sections = [];
        private readonly List<(string Text, int Level)> _stack = [];
        private readonly List<string> _paragraphs = [];
        private readonly List<string> _lines = [];
        private string? _heading;

        public bool InParagraph => _lines.Count > 0;

        public void Line(string line, bool keepBlank = false)
        {
            if (line.Trim().Length == 0 && !keepBlank)
            {
                EndParagraph();
                return;
            }
            _lines.Add(line.TrimEnd());
        }

        public void EndParagraph()
        {
            while (_lines.Count > 0 && _lines[^1].Length == 0)
            {
                _lines.RemoveAt(_lines.Count - 1);
            }
            if (_lines.Count > 0)
            {
                _paragraphs.Add(string.Join('\n', _lines));
                _lines.Clear();
            }
        }

        public void Heading(string text, int level)
        {
            EndSection();
            while (_stack.Count > 0 && _stack[^1].Level >= level)
            {
                _stack.RemoveAt(_stack.Count - 1);
            }
            _stack.Add((text, level));
            _heading = text;
        }

        public ParsedDocument Build(string? title)
        {
            EndSection();
            return new ParsedDocument(title, _sections);
        }

        private void EndSection()
        {
            EndParagraph();
            if (_paragraphs.Count > 0 || _heading is not null)
            {
                _sections.Add(new Section(_heading, [.. _stack.Select(s => s.Text)], [.. _paragraphs]));
            }
            _paragraphs.Clear();
            _heading = null;
        }
    }
}
