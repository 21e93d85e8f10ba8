using TuningPlatform.Curation.Model;
using TuningPlatform.Curation.Statistics;
using TuningPlatform.CurationService.Tests.Infrastructure;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Evaluation.Prompts;
using EngineChat = TuningPlatform.Engine.Chat;

namespace TuningPlatform.CurationService.Tests.Ingest;

/// <summary>Token counts with a chat template, against the engine rendering it directly.</summary>
public sealed class TemplateCountTests
{
    [Fact]
    public void Render_ChatmlTemplate_CountsTheTemplatesRenderingAndTrainsOnTheAnswerWithItsEndToken()
    {
        var directory = Path.Combine(Assets.TokenizersRoot, "smollm2-135m");
        var tokenizer = Tokenizer.Load(Path.Combine(directory, "tokenizer.json"));
        var template = EngineChat.ChatTemplate.Load(directory, "chatml");
        var renderer = new TrainingRenderer(tokenizer, template);
        Assert.True(renderer.UsesModelTemplate);
        var example = new Example
        {
            Messages =
            [
                new ChatMessage(Role.System, "You answer in one sentence."),
                new ChatMessage(Role.User, "What is the capital of France?"),
                new ChatMessage(Role.Assistant, "Paris is the capital of France."),
            ],
        };

        var rendered = renderer.Render(example);

        var expected = template.Render(
        [
            EngineChat.ChatMessage.System("You answer in one sentence."),
            EngineChat.ChatMessage.User("What is the capital of France?"),
            EngineChat.ChatMessage.Assistant("Paris is the capital of France."),
        ]);
        Assert.Equal(expected, rendered.Text);
        Assert.Equal(tokenizer.Encode(expected).Length, rendered.TokenCount);
        var (start, end) = Assert.Single(rendered.TrainedSpans);
        Assert.Equal("Paris is the capital of France.<|im_end|>\n", rendered.Text[start..end]);
        // The answer's tokens and its end-of-turn marker: the role header is context, not trained.
        Assert.Equal(tokenizer.Encode("Paris is the capital of France.<|im_end|>\n", addSpecialTokens: false).Length, rendered.TrainedTokenCount);
    }

    [Fact]
    public void Render_Llama3OwnTemplate_AssistantWithWeightZeroIsContextNotTrained()
    {
        // llama3's own template (from its tokenizer_config.json), which appends the assistant header after every
        // rendering: the trained part is what training sees after the prompt, so it ends with that header.
        var directory = Path.Combine(Assets.TokenizersRoot, "llama3");
        var template = EngineChat.ChatTemplate.FromModelDirectory(directory);
        Assert.NotNull(template);
        var renderer = new TrainingRenderer(Tokenizer.Load(Path.Combine(directory, "tokenizer.json")), template);
        Assert.True(renderer.UsesModelTemplate);
        var example = new Example
        {
            Messages =
            [
                new ChatMessage(Role.User, "Hi"),
                new ChatMessage(Role.Assistant, "Hello!") { Weight = 0 },
                new ChatMessage(Role.User, "Bye"),
                new ChatMessage(Role.Assistant, "Goodbye!"),
            ],
        };
        var rendered = renderer.Render(example);
        var (start, end) = Assert.Single(rendered.TrainedSpans);
        Assert.Equal("Goodbye!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", rendered.Text[start..end]);
        Assert.Contains("Hello!", rendered.Text[..start]);
    }

    [Fact]
    public void Render_ModelWithoutTemplate_IsThePlainPromptTrainingAndEvaluationUse()
    {
        // A model without a chat template (stories260K, llama2 base): training renders its conversations with the plain prompt (each content
        // and a newline) and trains on the tokens after the prompt's; evaluation prompts it the same way.
        var tokenizer = Tokenizer.Load(Path.Combine(Assets.TokenizersRoot, "llama2", "tokenizer.json"));
        var renderer = new TrainingRenderer(tokenizer);
        Assert.False(renderer.UsesModelTemplate);
        var example = new Example
        {
            Messages =
            [
                new ChatMessage(Role.User, "Lily had a cat. What was its name?"),
                new ChatMessage(Role.Assistant, "Tom"),
            ],
        };

        var rendered = renderer.Render(example);

        var full = PlainPrompt.Render(["Lily had a cat. What was its name?", "Tom"]);
        var prompt = PlainPrompt.Render(["Lily had a cat. What was its name?"]);
        Assert.Equal(full, rendered.Text);
        var fullIds = tokenizer.Encode(full);
        var promptIds = tokenizer.Encode(prompt);
        Assert.Equal(fullIds.Length, rendered.TokenCount);
        var common = fullIds.Zip(promptIds).TakeWhile(p => p.First == p.Second).Count();
        Assert.Equal(fullIds.Length - common, rendered.TrainedTokenCount);
        var (start, end) = Assert.Single(rendered.TrainedSpans);
        Assert.Equal("Tom\n", rendered.Text[start..end]);
        Assert.DoesNotContain("<|im_start|>", rendered.Text, StringComparison.Ordinal);
    }
}
