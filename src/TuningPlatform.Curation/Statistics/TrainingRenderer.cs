using System.Text;
using TuningPlatform.Curation.Model;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Curation.Statistics;

/// <summary>A rendered example: the text as the model sees it and the character spans trained on.</summary>
public sealed record RenderedExample(string Text, IReadOnlyList<(int Start, int End)> TrainedSpans, int TokenCount, int TrainedTokenCount);

/// <summary>
/// Renders examples for counting: a ChatML-shaped layout (`&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n`), with
/// the assistant contents (weight ≠ 0) plus their end marker as the trained spans; raw text is all trained.
/// Counts are exact for the tokenizer and close to, not identical with, each model's own chat template.
/// </summary>
public sealed class TrainingRenderer(Tokenizer tokenizer)
{
    public RenderedExample Render(Example example)
    {
        if (example.Text is not null)
        {
            var n = tokenizer.Encode(example.Text).Length;
            return new RenderedExample(example.Text, [(0, example.Text.Length)], n, n);
        }
        var text = new StringBuilder();
        var spans = new List<(int, int)>();
        var trainedTokens = 0;
        foreach (var message in example.Messages)
        {
            text.Append("<|im_start|>").Append(RoleNames.ToName(message.Role)).Append('\n');
            var content = message.Content;
            foreach (var call in message.ToolCalls)
            {
                content += $"\n<tool_call>{{\"name\": \"{call.Name}\", \"arguments\": {call.ArgumentsJson}}}</tool_call>";
            }
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
}
