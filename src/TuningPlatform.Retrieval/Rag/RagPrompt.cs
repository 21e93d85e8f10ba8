using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace TuningPlatform.Retrieval.Rag;

/// <summary>A chunk placed in a prompt: its source (title or file) and text.</summary>
public sealed record PromptChunk(string Source, string Title, string Text);

/// <summary>
/// Renders retrieval-augmented prompts: each chunk through the chunk template (<c>{index}</c> 1-based,
/// <c>{source}</c>, <c>{title}</c>, <c>{text}</c>), joined by blank lines into <c>{context}</c>, then the prompt
/// template (<c>{context}</c>, <c>{question}</c>). Placeholders are replaced in one pass, so text that itself
/// contains <c>{question}</c> is never expanded again. Also finds the <c>[n]</c> citations of an answer.
/// </summary>
public static partial class RagPrompt
{
    /// <summary>The default prompt template (retrieval.proto, RagPromptSettings).</summary>
    public const string DefaultPromptTemplate = "Answer the question using the numbered sources below and cite them as [n].\n\n{context}\n\nQuestion: {question}";

    /// <summary>The default chunk template.</summary>
    public const string DefaultChunkTemplate = "[{index}] ({source}) {text}";

    /// <summary>RAFT's chunk template (gorilla raft.py).</summary>
    public const string RaftChunkTemplate = "<DOCUMENT>{text}</DOCUMENT>";

    /// <summary>RAFT's prompt template.</summary>
    public const string RaftPromptTemplate = "{context}\n{question}";

    /// <summary>One chunk rendered at 1-based <paramref name="index"/>.</summary>
    public static string RenderChunk(string chunkTemplate, int index, PromptChunk chunk) =>
        Substitute(chunkTemplate, name => name switch
        {
            "index" => index.ToString(CultureInfo.InvariantCulture),
            "source" => chunk.Source,
            "title" => chunk.Title,
            "text" => chunk.Text,
            _ => null,
        });

    /// <summary>The chunks rendered and joined with <paramref name="separator"/>.</summary>
    public static string RenderContext(string chunkTemplate, IReadOnlyList<PromptChunk> chunks, string separator = "\n\n") =>
        string.Join(separator, chunks.Select((c, i) => RenderChunk(chunkTemplate, i + 1, c)));

    /// <summary>The user message: <paramref name="promptTemplate"/> with the context and the question.</summary>
    public static string Render(string promptTemplate, string context, string question) =>
        Substitute(promptTemplate, name => name switch
        {
            "context" => context,
            "question" => question,
            _ => null,
        });

    /// <summary>The distinct citation numbers <c>[n]</c> (also <c>[1, 3]</c>) in <paramref name="answer"/> that point to one of <paramref name="count"/> chunks, in order of appearance.</summary>
    public static IReadOnlyList<int> FindCitations(string answer, int count)
    {
        var found = new List<int>();
        foreach (Match match in CitationGroup().Matches(answer))
        {
            foreach (var part in match.Groups[1].Value.Split(','))
            {
                if (int.TryParse(part.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 && n <= count && !found.Contains(n))
                {
                    found.Add(n);
                }
            }
        }
        return found;
    }

    private static string Substitute(string template, Func<string, string?> value)
    {
        var builder = new StringBuilder(template.Length);
        var i = 0;
        while (i < template.Length)
        {
            if (template[i] == '{')
            {
                var close = template.IndexOf('}', i + 1);
                if (close > i && value(template[(i + 1)..close]) is { } replacement)
                {
                    builder.Append(replacement);
                    i = close + 1;
                    continue;
                }
            }
            builder.Append(template[i]);
            i++;
        }
        return builder.ToString();
    }

    [GeneratedRegex(@"\[(\d+(?:\s*,\s*\d+)*)\]")]
    private static partial Regex CitationGroup();
}
