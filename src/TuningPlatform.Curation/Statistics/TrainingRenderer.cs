using System.Text;
using TuningPlatform.Curation.Model;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Curation.Statistics;

/// <summary>A rendered example: the text as the model sees it and the character spans trained on.</summary>
public sealed record RenderedExample(string Text, IReadOnlyList<(int Start, int End)> TrainedSpans, int TokenCount, int TrainedTokenCount);

/// <summary>
/// Renders examples for counting. With the model's own chat template (<paramref name="template"/>), each
/// conversation is rendered as training renders it: the trained span of an assistant turn (weight ≠ 0) is what
/// the rendering up to and including that turn adds to the rendering before it with the generation prompt, and
/// its tokens are counted the same way (tokens after the common prefix). Without one, or when the template
/// rejects a conversation, a ChatML-shaped layout (`&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n`) with the
/// assistant contents plus their end marker as the trained spans. Raw text is all trained.
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
        if (template is not null && RenderWithTemplate(example, template) is { } withTemplate)
        {
            return withTemplate;
        }
        var text = new StringBuilder();
        var spans = new List<(int, int)>();
        var trainedTokens = 0;
        foreach (var message in example.Messages)
        {
            text.Append("<|im_start|>").Append(RoleNames.ToName(message.Role)).Append('\n');
            var content = ContentOf(message);
            if (message.IsTrained)
            {
                var start = text.Length;
                text.Append(content).Append("<|im_end|>");
                spans.Add((start, text.Length));
                trainedTokens += tokenizer.Encode(content + "<|im_end|>", addSpecialTokens: false).Length;
                text.Append('\n');
            }
            else
            {
                text.Append(content).Append("<|im_end|>\n");
            }
        }
        var rendered = text.ToString();
        return new RenderedExample(rendered, spans, tokenizer.Encode(rendered).Length, trainedTokens);
    }

    public int CountTokens(Example example) => Render(example).TokenCount;

    private RenderedExample? RenderWithTemplate(Example example, Engine.Chat.ChatTemplate chatTemplate)
    {
        var messages = example.Messages.Select(m => new Engine.Chat.ChatMessage(RoleNames.ToName(m.Role), ContentOf(m))).ToList();
        try
        {
            var full = chatTemplate.Render(messages);
            var spans = new List<(int, int)>();
            var trainedTokens = 0;
            for (var i = 0; i < messages.Count; i++)
            {
                if (!example.Messages[i].IsTrained)
                {
                    continue;
                }
                var before = chatTemplate.Render(messages[..i], addGenerationPrompt: true);
                var through = chatTemplate.Render(messages[..(i + 1)]);
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
        catch (Engine.Chat.ChatTemplateException)
        {
            // A template that refuses this conversation (roles out of order, a system turn it does not take): count with the layout.
            return null;
        }
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
