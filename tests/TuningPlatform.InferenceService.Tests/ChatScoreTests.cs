using System.Text.Json;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>
/// Chat-form Score over real HTTP/2, on stories260K given a small chat template (a copy of the model directory with
/// a tokenizer_config.json chat_template): the assistant turn's tokens, end-of-turn included, scored against a
/// log-softmax computed in float64 from the engine's logits in the test.
/// </summary>
[Trait("Category", "Functional")]
public sealed class ChatScoreTests : IDisposable
{
    private const string Model = "stories260K-chat";
    private const string Template =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}User: {{ message['content'] }}\n" +
        "{% elif message['role'] == 'assistant' %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}" +
        "{% if add_generation_prompt %}Assistant:{% endif %}";

    private readonly string _root = Directory.CreateTempSubdirectory("inference-chat-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task Score_ChatForm_ScoresTheAssistantTurnThroughItsEndToken()
    {
        var directory = CopyWithTemplate();
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:ModelRoots:1"] = _root });
        const string answer = "Once upon a time there was a cat.";
        var chat = new ChatInput { Messages = { new ChatMessage { Role = ChatRole.User, Content = "Tell me a story." } } };
        var request = new ScoreRequest
        {
            Model = new ModelRef { BaseModelId = Model },
            Input = new GenerationInput { Chat = chat },
            Completion = answer,
            ReturnTokenLogprobs = true,
        };
        var scored = await server.Client.ScoreAsync(request, Options);
        request.ExcludeEndToken = true;
        var withoutEnd = await server.Client.ScoreAsync(request, Options);

        // The reference: the two renderings written out by hand, tokenised, and scored from the engine's logits in float64.
        var context = "<s>User: Tell me a story.\nAssistant:";
        var full = context + " " + answer + "</s>\n";
        var tokenizer = HfTokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        var contextIds = tokenizer.Encode(context, addSpecialTokens: false);
        var fullIds = tokenizer.Encode(full, addSpecialTokens: false);
        Assert.Equal(contextIds, fullIds[..contextIds.Length]);
        var end = Array.IndexOf(fullIds, 2, contextIds.Length);
        Assert.True(end > contextIds.Length, "the rendered answer ends with </s> (id 2)");
        var model = LlamaModel.LoadHf(directory);
        var logits = new float[(end + 1) * 512];
        model.Forward(model.CreateState(end + 1), fullIds.AsSpan(0, end + 1), logits, allPositions: true);
        var expected = new List<double>();
        for (var p = contextIds.Length; p <= end; p++)
        {
            var row = logits.AsSpan((p - 1) * 512, 512).ToArray().Select(v => (double)v).ToArray();
            var max = row.Max();
            expected.Add(row[fullIds[p]] - max - Math.Log(row.Sum(v => Math.Exp(v - max))));
        }

        Assert.Equal(contextIds.Length, scored.PromptTokens);
        Assert.Equal(end + 1 - contextIds.Length, scored.CompletionTokens);
        Assert.Equal(fullIds[contextIds.Length..(end + 1)], scored.TokenLogprobs.Select(t => t.TokenId));
        Assert.Equal(expected.Sum(), scored.SumLogprob, 1e-3);
        EmbedTests.AssertClose([.. scored.TokenLogprobs.Select(t => (float)t.Logprob)], expected, 1e-4, 1e-4);
        Assert.Equal(scored.CompletionTokens - 1, withoutEnd.CompletionTokens);
        Assert.Equal(expected.Take(expected.Count - 1).Sum(), withoutEnd.SumLogprob, 1e-3);
        Assert.Equal(Math.Exp(-scored.SumLogprob / scored.CompletionTokens), scored.Perplexity, 9);

        // Generation renders the same context (with its generation prompt).
        var generated = await server.Client.GenerateAsync(new GenerateRequest
        {
            Model = new ModelRef { BaseModelId = Model },
            Input = new GenerationInput { Chat = chat },
            Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 5 },
            ReturnRenderedPrompt = true,
        }, Options);
        Assert.Equal(context, generated.RenderedPrompt);
        Assert.Equal(contextIds.Length, generated.Usage.PromptTokens);
    }

    [Fact]
    public async Task Score_ChatFormErrors_PreciseStatuses()
    {
        CopyWithTemplate();
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:ModelRoots:1"] = _root });
        var request = new ScoreRequest
        {
            Model = new ModelRef { BaseModelId = Model },
            Input = new GenerationInput { Chat = new ChatInput() },
            Completion = "x",
        };
        var empty = await Assert.ThrowsAsync<RpcException>(() => server.Client.ScoreAsync(request, Options));
        Assert.Equal((StatusCode.InvalidArgument, "input.chat.messages"), (empty.StatusCode, empty.Trailers.GetValue("x-error-param")));
        request.Input.Chat.Messages.Add(new ChatMessage { Role = ChatRole.User, Content = "hi" });
        request.Input.Chat.ContinueFinalMessage = true;
        var notAssistant = await Assert.ThrowsAsync<RpcException>(() => server.Client.ScoreAsync(request, Options));
        Assert.Equal((StatusCode.InvalidArgument, "input.chat.continue_final_message"), (notAssistant.StatusCode, notAssistant.Trailers.GetValue("x-error-param")));
        request.Input.Chat.ContinueFinalMessage = false;
        request.Completion = string.Concat(Enumerable.Repeat("Once upon a time. ", 200));
        var tooLong = await Assert.ThrowsAsync<RpcException>(() => server.Client.ScoreAsync(request, Options));
        Assert.Equal(StatusCode.InvalidArgument, tooLong.StatusCode);
        Assert.Contains("context of 512", tooLong.Status.Detail);
    }

    private string CopyWithTemplate()
    {
        var source = Path.Combine(InferenceServer.RequireModels(), "stories260K-hf");
        var target = Path.Combine(_root, Model);
        Directory.CreateDirectory(target);
        foreach (var file in new[] { "config.json", "model.safetensors", "tokenizer.json", "generation_config.json" })
        {
            File.Copy(Path.Combine(source, file), Path.Combine(target, file));
        }
        var config = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllText(Path.Combine(source, "tokenizer_config.json")))!;
        config["chat_template"] = JsonSerializer.SerializeToElement(Template);
        File.WriteAllText(Path.Combine(target, "tokenizer_config.json"), JsonSerializer.Serialize(config));
        return target;
    }
}
