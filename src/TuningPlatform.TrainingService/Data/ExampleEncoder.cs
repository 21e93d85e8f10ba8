using TuningPlatform.Engine.Chat;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training;

namespace TuningPlatform.TrainingService.Data;

/// <summary>What encoding a set of records found.</summary>
/// <param name="Examples">Token sequences with their prompt lengths (records without a completion are left out).</param>
/// <param name="WithoutCompletion">Conversations whose last turn is not the assistant's (nothing to learn from).</param>
public sealed record EncodedExamples(List<TrainingExample> Examples, int WithoutCompletion)
{
    /// <summary>The <paramref name="percentile"/> (0–100) of the example lengths in tokens; 0 when there are none.</summary>
    public int LengthPercentile(double percentile)
    {
        if (Examples.Count == 0)
        {
            return 0;
        }
        var lengths = Examples.Select(e => e.Tokens.Length).Order().ToArray();
        var index = (int)Math.Ceiling(percentile / 100 * lengths.Length) - 1;
        return lengths[Math.Clamp(index, 0, lengths.Length - 1)];
    }
}

/// <summary>
/// Turns records into training examples with the model's tokenizer and chat template. A conversation is
/// rendered whole (the completion) and without its last assistant turn plus the generation prompt (the
/// prompt); the loss falls on the tokens after their common prefix, i.e. on the last assistant turn.
/// Earlier assistant turns are context. A text example is BOS + text + EOS with loss on every token.
/// Without a template (a model that has none, with <c>Training:FallbackChatTemplate</c> = <c>plain</c>), a
/// conversation is the evaluation service's <see cref="PlainPrompt"/>: each message's content and a newline,
/// the answer's newline included, so that a fine-tuned model is evaluated on the prompt shape it learned.
/// </summary>
public sealed class ExampleEncoder(Tokenizer tokenizer, ChatTemplate? template)
{
    /// <summary>The fallback name that selects <see cref="PlainPrompt"/> for models without a chat template.</summary>
    public const string PlainFallback = "plain";

    /// <summary>Encodes every record.</summary>
    public EncodedExamples Encode(IEnumerable<DatasetRecord> records)
    {
        var examples = new List<TrainingExample>();
        var withoutCompletion = 0;
        foreach (var record in records)
        {
            if (record.Text is not null)
            {
                var ids = tokenizer.Encode(record.Text, addSpecialTokens: true);
                var tokens = tokenizer.EosTokenId is { } eos ? [.. ids, eos] : ids;
                examples.Add(new TrainingExample(tokens, 0));
                continue;
            }
            var last = record.Messages.Count - 1;
            if (last < 0 || record.Messages[last].Role != "assistant")
            {
                withoutCompletion++;
                continue;
            }
            examples.Add(EncodeConversation(record.Messages));
        }
        return new EncodedExamples(examples, withoutCompletion);
    }

    /// <summary>One conversation whose last turn is the assistant's.</summary>
    public TrainingExample EncodeConversation(IReadOnlyList<ChatMessage> messages)
    {
        var context = messages.Take(messages.Count - 1).ToList();
        var full = EncodeText(template?.Render(messages) ?? PlainPrompt.Render(messages.Select(m => m.Content)));
        var prompt = EncodeText(template?.Render(context, addGenerationPrompt: true) ?? PlainPrompt.Render(context.Select(m => m.Content)));
        var common = 0;
        while (common < prompt.Length && common < full.Length && prompt[common] == full[common])
        {
            common++;
        }
        return new TrainingExample(full, common);
    }

    /// <summary>Encodes a rendering; the tokenizer adds BOS unless the template already wrote it.</summary>
    private int[] EncodeText(string text)
    {
        var templateWroteBos = template?.BosToken is { Length: > 0 } bos && text.StartsWith(bos, StringComparison.Ordinal);
        return tokenizer.Encode(text, addSpecialTokens: !templateWroteBos);
    }
}
