using TuningPlatform.Curation.Model;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Curation.Statistics;

/// <summary>A rendered example: the text as the model sees it and the character spans trained on.</summary>
public sealed record RenderedExample(string Text, IReadOnlyList<(int Start, int End)> TrainedSpans, int TokenCount, int TrainedTokenCount);

/// <summary>
/// Renders examples for counting, as training renders them. A conversation is rendered with the model's own chat
/// template (<paramref name="template"/>) or, for a model without one, with <see cref="PlainPrompt"/> (each message's
/// content and a newline: what training and evaluation use for such models). The trained span of an assistant turn
/// (weight ≠ 0) is what the rendering up to and including that turn adds to the rendering before it with the
/// generation prompt, and its tokens are counted the same way (tokens after the common prefix). When the template
/// rejects a conversation (roles out of order, a system turn it does not take), the plain rendering counts it.
/// Raw text is all trained.
/// </summary>
public sealed class TrainingRenderer(Tokenizer tokenizer, Engine.Chat.ChatTemplate? template = null)
{
    /// <summary>True when counts follow the model's own chat template.</summary>
    public bool UsesModelTemplate => template is not null;

    public RenderedExample Render(Example example)
    {
        if (example.Text is not null)
        {
            var n = tokenizer.Encode(example.Text).Length;
            return new RenderedExample(example.Text, [(0, example.Text.Length)], n, n);
        }
        var messages = example.Messages.Select(m => new Engine.Chat.ChatMessage(RoleNames.ToName(m.Role), ContentOf(m))).ToList();
        if (template is not null)
        {
            try
            {
                return RenderIncrementally(example, messages, (list, generationPrompt) => template.Render(list, generationPrompt));
            }
            catch (Engine.Chat.ChatTemplateException)
            {
                // Falls through to the plain rendering.
            }
        }
        return RenderIncrementally(example, messages, static (list, _) => PlainPrompt.Render(list.Select(m => m.Content)));
    }

    public int CountTokens(Example example) => Render(example).TokenCount;

    private RenderedExample RenderIncrementally(Example example, List<Engine.Chat.ChatMessage> messages,
        Func<IReadOnlyList<Engine.Chat.ChatMessage>, bool, string> render)
    {
        var full = render(messages, false);
        var spans = new List<(int, int)>();
        var trainedTokens = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            if (!example.Messages[i].IsTrained)
            {
                continue;
            }
            var before = render(messages[..i], true);
            var through = render(messages[..(i + 1)], false);
            var beforeIds = tokenizer.Encode(before);
            var throughIds = tokenizer.Encode(through);
            var common = 0;
            while (common < beforeIds.Length && common < throughIds.Length && beforeIds[common] == throughIds[common])
            {
                common++;
            }
            trainedTokens += throughIds.Length - common;
            if (through.StartsWith(before, StringComparison.Ordinal) && full.StartsWith(through, StringComparison.Ordinal))
            {
                spans.Add((before.Length, through.Length));
            }
        }
        return new RenderedExample(full, spans, tokenizer.Encode(full).Length, trainedTokens);
    }

    private static string ContentOf(ChatMessage message)
    {
        var content = message.Content;
        foreach (var call in message.ToolCalls)
        {
            content += $"\n<tool_call>{{\"name\": \"{call.Name}\", \"arguments\": {call.ArgumentsJson}}}</tool_call>";
        }
        return content;
    }
}
