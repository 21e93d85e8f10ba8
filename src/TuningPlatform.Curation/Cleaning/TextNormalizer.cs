using System.Text;
using System.Text.RegularExpressions;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>Unicode normalisation (NFC or NFKC) and whitespace cleanup of every message; never reorders anything.</summary>
public sealed partial record TextNormalizer(NormalizationForm? Form, bool CollapseWhitespace, bool RemoveControlCharacters, bool NormalizeNewlines, bool DropEmpty)
{
    public (List<Example> Examples, StepOutcome Outcome) Apply(IReadOnlyList<Example> examples)
    {
        var result = new List<Example>(examples.Count);
        long modified = 0;
        foreach (var example in examples)
        {
            var changed = example.Text is not null
                ? example with { Text = Clean(example.Text) }
                : example with { Messages = example.Messages.Select(m => m with { Content = Clean(m.Content) }).ToList() };
            var isModified = !changed.Texts().SequenceEqual(example.Texts(), StringComparer.Ordinal);
            if (!isModified)
            {
                changed = example;
            }
            if (DropEmpty && changed.Texts().All(string.IsNullOrWhiteSpace) && !changed.Messages.Any(m => m.ToolCalls.Count > 0))
            {
                continue;
            }
            if (DropEmpty && !changed.IsText && changed.Messages.Any(m => m.Role == Role.Assistant && m.ToolCalls.Count == 0 && string.IsNullOrWhiteSpace(m.Content)))
            {
                continue;
            }
            if (isModified)
            {
                modified++;
            }
            result.Add(changed);
        }
        return (result, new StepOutcome { Before = examples.Count, After = result.Count, Modified = modified });
    }

    public string Clean(string text)
    {
        if (Form is { } form && !text.IsNormalized(form))
        {
            text = text.Normalize(form);
        }
        if (NormalizeNewlines)
        {
            text = text.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        }
        if (RemoveControlCharacters)
        {
            var builder = new StringBuilder(text.Length);
            foreach (var c in text)
            {
                if (!char.IsControl(c) || c is '\n' or '\t' or '\r')
                {
                    builder.Append(c);
                }
            }
            text = builder.ToString();
        }
        if (CollapseWhitespace)
        {
            text = SpaceRuns().Replace(text, " ");
            text = SpaceAroundNewline().Replace(text, "\n");
            text = text.Trim();
        }
        return text;
    }

    [GeneratedRegex("[ \\t\\u00A0\\u2000-\\u200A\\u3000]{2,}|[\\t\\u00A0\\u2000-\\u200A\\u3000]")]
    private static partial Regex SpaceRuns();

    [GeneratedRegex(" *\\n *")]
    private static partial Regex SpaceAroundNewline();
}
