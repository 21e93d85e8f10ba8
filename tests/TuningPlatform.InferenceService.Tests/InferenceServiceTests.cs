using System.Text.Json;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>The inference service over real HTTP/2, serving the real stories260K model.</summary>
[Trait("Category", "Functional")]
public sealed class InferenceServiceTests
{
    private const string Model = "stories260K-hf";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    private static ModelRef Stories => new() { BaseModelId = Model };

    private static GenerateRequest Completion(string prompt, int maxNewTokens, double temperature = 0, long seed = 1) => new()
    {
        Model = Stories,
        Input = new GenerationInput { Completion = new CompletionInput { Prompt = prompt } },
        Sampling = new SamplingParameters { Temperature = temperature, MaxNewTokens = maxNewTokens, Seed = seed },
    };

    [Fact]
    public async Task Generate_GreedyFromBos_ReproducesLlama2cReference()
    {
        var reference = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(InferenceServer.RequireModels(), Model, "greedy_reference.json"), Ct)).RootElement;
        var generated = reference.GetProperty("greedy_ids").GetArrayLength() - reference.GetProperty("prompt_ids").GetArrayLength();
        await using var server = await InferenceServer.StartAsync();
        var response = await server.Client.GenerateAsync(Completion("", generated), Options);
        Assert.Equal(reference.GetProperty("greedy_text").GetString(), response.Text);
        Assert.Equal(reference.GetProperty("greedy_ids").EnumerateArray().Skip(1).Select(e => e.GetInt32()), response.TokenIds);
        Assert.Equal(1, response.Usage.PromptTokens);
        Assert.Equal(generated, response.Usage.CompletionTokens);
        Assert.Equal(FinishReason.Length, response.FinishReason);
        Assert.Equal(Model, response.ModelId);
    }

    [Fact]
    public async Task GenerateStream_SameRequest_DeltasConcatenateToGenerateTextThenFinal()
    {
        await using var server = await InferenceServer.StartAsync();
        var unary = await server.Client.GenerateAsync(Completion("Once upon a time", 60, temperature: 0.8, seed: 7), Options);
        var request = Completion("Once upon a time", 60, temperature: 0.8, seed: 7);
        using var call = server.Client.GenerateStream(new GenerateStreamRequest { Model = request.Model, Input = request.Input, Sampling = request.Sampling }, Options);
        var text = "";
        GenerationFinal? final = null;
        await foreach (var message in call.ResponseStream.ReadAllAsync(Ct))
        {
            if (message.EventCase == GenerateStreamResponse.EventOneofCase.Delta)
            {
                Assert.Null(final);
                Assert.NotEmpty(message.Delta.Text);
                text += message.Delta.Text;
            }
            else
            {
                final = message.Final;
            }
        }
        Assert.Equal(unary.Text, text);
        Assert.NotNull(final);
        Assert.Equal(unary.Usage.CompletionTokens, final.Usage.CompletionTokens);
        Assert.Equal(7, final.Seed);
        Assert.True(final.Usage.TimeToFirstTokenMs > 0);
    }

    [Fact]
    public async Task GenerateStream_LongStreamInterval_MessagesJoinFourDeltasUntilTheEnd()
    {
        // With a 10 s interval every message after the first waits for four deltas (stories260K makes 40 in well
        // under that) or for the end of the stream: ⌈39 / 4⌉ = 10 more, so 11 in all if each token is one delta
        // (a token that ends mid-character joins the next delta, which can only lower the count).
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:StreamIntervalMs"] = "10000" });
        var request = Completion("Once upon a time", 40);
        var unary = await server.Client.GenerateAsync(request, Options);
        Assert.Equal(40, unary.Usage.CompletionTokens);
        var messages = await StreamMessagesAsync(server, request);
        Assert.Equal(unary.Text, string.Concat(messages));
        Assert.InRange(messages.Count, 6, 11);
    }

    [Fact]
    public async Task GenerateStream_TwoStreamsInOneBatch_MessagesJoinEightDeltas()
    {
        // Two streams decoded together may join 4 deltas each per sequence in the batch: 8. With a 10 s interval each
        // stream's 40 tokens arrive as the first, then ⌈39 / 8⌉ = 5 more messages (alone: 10 more). The 300 ms
        // admission window puts both in the first step.
        await using var server = await InferenceServer.StartAsync(new()
        {
            ["Inference:StreamIntervalMs"] = "10000",
            ["Inference:AdmissionWindowMs"] = "300",
        });
        var request = Completion("Once upon a time", 40);
        var unary = await server.Client.GenerateAsync(request, Options);
        var streams = await Task.WhenAll(StreamMessagesAsync(server, request), StreamMessagesAsync(server, request));
        foreach (var messages in streams)
        {
            Assert.Equal(unary.Text, string.Concat(messages));
            Assert.InRange(messages.Count, 3, 6);
        }
    }

    [Fact]
    public async Task Generate_AdmissionWindow_LaterRequestJoinsTheFirstPrefill()
    {
        // An idle model waits up to the window for requests arriving with the first: A waits the whole 400 ms (the batch
        // of 8 never fills), B arrives 150 ms after A and starts in the same step, so its time to first token is shorter
        // than A's by about the 150 ms it came later.
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:AdmissionWindowMs"] = "400" });
        await server.Client.GenerateAsync(Completion("warm", 1), Options);
        await Task.Delay(200, Ct);
        var first = server.Client.GenerateAsync(Completion("Once upon a time", 4), Options);
        await Task.Delay(150, Ct);
        var second = await server.Client.GenerateAsync(Completion("Tom had a", 4), Options);
        var a = (await first).Usage.TimeToFirstTokenMs;
        var b = second.Usage.TimeToFirstTokenMs;
        Assert.InRange(a, 390, 5000);
        Assert.True(b < a - 75, $"the second request's first token came {b:0} ms after its arrival, the first's {a:0} ms: they should share the first step");
    }

    [Fact]
    public async Task Generate_AdmissionWindow_RestartsAtEachArrival()
    {
        // A 200 ms window that each arrival restarts: B comes 150 ms after A and C 150 ms after B, so the model waits
        // until 200 ms after C (500 ms after A) and the three share the first step. A window fixed at A's arrival would
        // have started A at 200 ms, before C came.
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:AdmissionWindowMs"] = "200" });
        await server.Client.GenerateAsync(Completion("warm", 1), Options);
        await Task.Delay(200, Ct);
        var a = server.Client.GenerateAsync(Completion("Once upon a time", 4), Options);
        await Task.Delay(150, Ct);
        var b = server.Client.GenerateAsync(Completion("Tom had a", 4), Options);
        await Task.Delay(150, Ct);
        var c = await server.Client.GenerateAsync(Completion("The dog", 4), Options);
        var ttftA = (await a).Usage.TimeToFirstTokenMs;
        var ttftB = (await b).Usage.TimeToFirstTokenMs;
        var ttftC = c.Usage.TimeToFirstTokenMs;
        Assert.InRange(ttftA, 480, 5000);
        Assert.True(ttftB < ttftA - 75 && ttftC < ttftB - 75, $"first tokens {ttftA:0}, {ttftB:0}, {ttftC:0} ms after each arrival: the three should share the first step");
    }

    [Fact]
    public async Task Generate_AdmissionWindow_EndsWhenThePromptsFillAPrefillStep()
    {
        // A prompt that fills the first prefill step on its own (4 tokens a step here) does not wait for companions:
        // any would be prefilled a step later anyway. Its first token comes well inside the 400 ms window.
        await using var server = await InferenceServer.StartAsync(new()
        {
            ["Inference:AdmissionWindowMs"] = "400",
            ["Inference:PrefillTokensPerStep"] = "4",
        });
        await server.Client.GenerateAsync(Completion("warm", 1), Options);
        await Task.Delay(200, Ct);
        var response = await server.Client.GenerateAsync(Completion("Once upon a time there was a little girl", 4), Options);
        Assert.True(response.Usage.PromptTokens >= 4, $"the prompt has {response.Usage.PromptTokens} tokens");
        Assert.InRange(response.Usage.TimeToFirstTokenMs, 0, 300);
    }

    [Fact]
    public async Task Generate_FourConcurrentRequests_SameTextsAsOneAtATime()
    {
        await using var server = await InferenceServer.StartAsync();
        var requests = Enumerable.Range(0, 4).Select(i => Completion(i % 2 == 0 ? "Once upon a time" : "Tom had a", 40 + (i * 10), temperature: 0.9, seed: 100 + i)).ToList();
        var alone = new List<string>();
        foreach (var request in requests)
        {
            alone.Add((await server.Client.GenerateAsync(request, Options)).Text);
        }
        var together = await Task.WhenAll(requests.Select(r => server.Client.GenerateAsync(r, Options)));
        Assert.Equal(alone, together.Select(r => r.Text));
    }

    [Fact]
    public async Task GenerateStream_ClientCancels_SequenceLeavesTheBatch()
    {
        await using var server = await InferenceServer.StartAsync();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var request = Completion("Once upon a time", 400, temperature: 1);
        using (var call = server.Client.GenerateStream(new GenerateStreamRequest { Model = request.Model, Input = request.Input, Sampling = request.Sampling }, new CallOptions { CancellationToken = cts.Token }))
        {
            Assert.True(await call.ResponseStream.MoveNext(Ct));
            cts.Cancel();
            await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        }
        var until = DateTime.UtcNow.AddSeconds(10);
        GetStatusResponse status;
        do
        {
            await Task.Delay(50, Ct);
            status = await server.Client.GetStatusAsync(new GetStatusRequest(), Options);
        }
        while (status.ActiveSequences > 0 && DateTime.UtcNow < until);
        Assert.Equal(0, status.ActiveSequences);
        Assert.Equal("alive", (await server.Client.GenerateAsync(Completion("alive", 1), Options)).Usage.CompletionTokens == 1 ? "alive" : "dead");
    }

    [Fact]
    public async Task Models_ListLoadUnload_StatesAndMemory()
    {
        await using var server = await InferenceServer.StartAsync();
        var listed = await server.Client.ListModelsAsync(new ListModelsRequest(), Options);
        var entry = Assert.Single(listed.Models, m => m.Id == Model);
        Assert.Equal(LoadState.Available, entry.State);
        Assert.Equal(512, entry.VocabSize);
        var loaded = await server.Client.LoadModelAsync(new LoadModelRequest { Model = Stories, Pinned = true }, Options);
        Assert.Equal(LoadState.Loaded, loaded.Model.State);
        Assert.Equal(260_032, loaded.Model.ParameterCount);
        Assert.True(loaded.Model.Pinned);
        Assert.True(loaded.Memory.UsedBytes >= 260_032 * 4);
        Assert.Single((await server.Client.ListModelsAsync(new ListModelsRequest { LoadedOnly = true }, Options)).Models);
        await server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Model }, Options);
        Assert.Equal(0, (await server.Client.GetStatusAsync(new GetStatusRequest(), Options)).LoadedModels);
        var ex = await Assert.ThrowsAsync<RpcException>(() => server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Model }, Options));
        Assert.Equal(StatusCode.NotFound, ex.StatusCode);
        await server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Model, AllowMissing = true }, Options);
    }

    [Fact]
    public async Task Models_FolderWithAConfigButNoWeights_IsNotAModel()
    {
        // A second models root: a copy of stories260K with its weights, and a folder with only its config and tokenizer.
        var root = Directory.CreateTempSubdirectory("tp-models-").FullName;
        try
        {
            var source = Path.Combine(InferenceServer.RequireModels(), Model);
            foreach (var (folder, files) in new[] { ("with-weights", new[] { "config.json", "model.safetensors", "tokenizer.json" }), ("config-only", new[] { "config.json", "tokenizer.json" }) })
            {
                Directory.CreateDirectory(Path.Combine(root, folder));
                foreach (var file in files)
                {
                    File.Copy(Path.Combine(source, file), Path.Combine(root, folder, file));
                }
            }

            await using var server = await InferenceServer.StartAsync(new() { ["Inference:ModelRoots:1"] = root });
            var ids = (await server.Client.ListModelsAsync(new ListModelsRequest(), Options)).Models.Select(m => m.Id).ToList();
            Assert.Contains("with-weights", ids);
            Assert.DoesNotContain("config-only", ids);
            var missing = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { BaseModelId = "config-only" } }, Options));
            Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task LoadModel_Bf16_HalvesTheMatricesAndServes()
    {
        await using var server = await InferenceServer.StartAsync();
        var fp32 = await server.Client.LoadModelAsync(new LoadModelRequest { Model = Stories }, Options);
        var fp32Text = (await server.Client.GenerateAsync(Completion("Once upon a time", 20), Options)).Text;
        await server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Model }, Options);

        var bf16 = await server.Client.LoadModelAsync(new LoadModelRequest { Model = Stories, Dtype = ModelDtype.Bf16 }, Options);
        Assert.Equal(ModelDtype.Bf16, bf16.Model.Dtype);
        Assert.Equal(ModelDtype.Fp32, fp32.Model.Dtype);
        // Weights only: every matrix in 2 bytes instead of 4, norms stay fp32 (the KV cache is the same in both).
        var weights32 = fp32.Memory.ModelsBytes;
        var weights16 = bf16.Memory.ModelsBytes;
        Assert.InRange(weights16, weights32 / 2, weights32 * 51 / 100);
        var bf16Text = (await server.Client.GenerateAsync(Completion("Once upon a time", 20), Options)).Text;
        Assert.NotEmpty(bf16Text);
        // bf16 rounding moves the logits a little; the first words of a greedy story agree.
        Assert.Equal(fp32Text.Split(' ')[..3], bf16Text.Split(' ')[..3]);

        var unknown = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadModelAsync(new LoadModelRequest { Model = Stories, Dtype = (ModelDtype)9 }, Options));
        Assert.Equal((StatusCode.InvalidArgument, "dtype"), (unknown.StatusCode, unknown.Trailers.GetValue("x-error-param")));
    }

    [Fact]
    public async Task TokenizeAndCount_Text_AgreeAndRoundTrip()
    {
        await using var server = await InferenceServer.StartAsync();
        var tokenized = await server.Client.TokenizeAsync(new TokenizeRequest { ModelId = Model, Input = new TokenizerInput { Text = "Once upon a time" }, AddSpecialTokens = true }, Options);
        Assert.Equal(1, tokenized.TokenIds[0]);
        Assert.Equal(tokenized.TokenIds.Count, tokenized.Pieces.Count);
        var count = await server.Client.CountTokensAsync(new CountTokensRequest
        {
            ModelId = Model,
            AddSpecialTokens = true,
            Inputs = { new TokenizerInput { Text = "Once upon a time" }, new TokenizerInput { Text = "" } },
        }, Options);
        Assert.Equal([tokenized.TokenIds.Count, 1], count.Counts);
        Assert.Equal(tokenized.TokenIds.Count + 1, count.Total);
    }

    [Theory]
    [InlineData("temperature", "sampling.temperature")]
    [InlineData("top_p", "sampling.top_p")]
    [InlineData("repetition_penalty", "sampling.repetition_penalty")]
    [InlineData("top_logprobs", "sampling.top_logprobs")]
    [InlineData("max_new_tokens", "sampling.max_new_tokens")]
    public async Task Generate_ParameterOutOfRange_InvalidArgumentNamingIt(string parameter, string field)
    {
        await using var server = await InferenceServer.StartAsync();
        var request = Completion("Once", 10);
        switch (parameter)
        {
            case "temperature":
                request.Sampling.Temperature = 3;
                break;
            case "top_p":
                request.Sampling.TopP = 0;
                break;
            case "repetition_penalty":
                request.Sampling.RepetitionPenalty = 0.5;
                break;
            case "top_logprobs":
                request.Sampling.TopLogprobs = 21;
                break;
            default:
                request.Sampling.MaxNewTokens = 10_000;
                break;
        }
        var ex = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(request, Options));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith(field + ":", ex.Status.Detail);
        Assert.Equal(field, ex.Trailers.GetValue("x-error-param"));
    }

    [Fact]
    public async Task Generate_PromptLongerThanContext_InvalidArgumentNamingTheLimit()
    {
        await using var server = await InferenceServer.StartAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(Completion(string.Concat(Enumerable.Repeat("Once upon a time. ", 200)), 0), Options));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("holds 512", ex.Status.Detail);
    }

    [Fact]
    public async Task Generate_BadTargets_PreciseStatuses()
    {
        await using var server = await InferenceServer.StartAsync();
        var unknown = Completion("x", 1);
        unknown.Model = new ModelRef { BaseModelId = "no-such-model" };
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(unknown, Options))).StatusCode);

        var chat = Completion("x", 1);
        chat.Input = new GenerationInput { Chat = new ChatInput { Messages = { new ChatMessage { Role = ChatRole.User, Content = "hi" } } } };
        var noTemplate = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(chat, Options));
        Assert.Equal(StatusCode.FailedPrecondition, noTemplate.StatusCode);
        Assert.Contains("no chat template", noTemplate.Status.Detail);

        var adapter = Completion("x", 1);
        adapter.Model.AdapterId = "some-adapter";
        var unknownAdapter = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(adapter, Options));
        Assert.Equal((StatusCode.NotFound, "model.adapter_id"), (unknownAdapter.StatusCode, unknownAdapter.Trailers.GetValue("x-error-param")));

        var noInput = Completion("x", 1);
        noInput.Input = null;
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(noInput, Options))).StatusCode);
    }

    [Fact]
    public async Task Generate_QueueLimitZero_ResourceExhausted()
    {
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:MaxQueue"] = "0" });
        var ex = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(Completion("x", 1), Options));
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Contains("Inference:MaxQueue", ex.Status.Detail);
    }

    [Fact]
    public async Task LoadModel_OverMemoryBudget_ResourceExhaustedNamingTheSetting()
    {
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:MemoryBudgetBytes"] = "100000" });
        var ex = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadModelAsync(new LoadModelRequest { Model = Stories }, Options));
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Contains("Inference:MemoryBudgetBytes", ex.Status.Detail);
    }

    [Fact]
    public async Task Generate_LoadOnDemandOff_FailedPrecondition()
    {
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:LoadOnDemand"] = "false" });
        var ex = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(Completion("x", 1), Options));
        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
    }

    [Fact]
    public async Task Score_GreedyContinuation_MatchesGenerationLogprobsAndEveryTokenIsArgmax()
    {
        await using var server = await InferenceServer.StartAsync();
        var generate = Completion("Once upon a time", 30);
        generate.Sampling.Logprobs = true;
        var generated = await server.Client.GenerateAsync(generate, Options);

        var score = await server.Client.ScoreAsync(new ScoreRequest
        {
            Model = Stories,
            Input = new GenerationInput { Completion = new CompletionInput { Prompt = "Once upon a time" } },
            Completion = generated.Text,
            ReturnTokenLogprobs = true,
            TopLogprobs = 2,
        }, Options);
        Assert.Equal(30, score.CompletionTokens);
        // Greedy decoding chose the argmax every time, so teacher forcing finds every token correct.
        Assert.Equal(30, score.CorrectTokens);
        var expected = generated.Logprobs.Sum(l => l.Logprob);
        Assert.InRange(score.SumLogprob, expected - 1e-3, expected + 1e-3);
        Assert.Equal(Math.Exp(-score.SumLogprob / 30), score.Perplexity, 9);
        Assert.Equal(generated.TokenIds, score.TokenLogprobs.Select(t => t.TokenId));
        Assert.All(score.TokenLogprobs, t => Assert.Equal(2, t.TopLogprobs.Count));
    }

    [Fact]
    public async Task Score_BadInputs_PreciseStatuses()
    {
        await using var server = await InferenceServer.StartAsync();
        var request = new ScoreRequest { Model = Stories, Input = new GenerationInput { Completion = new CompletionInput { Prompt = "x" } }, Completion = "" };
        var empty = await Assert.ThrowsAsync<RpcException>(() => server.Client.ScoreAsync(request, Options));
        Assert.Equal(StatusCode.InvalidArgument, empty.StatusCode);
        Assert.StartsWith("completion:", empty.Status.Detail);
        request.Completion = string.Concat(Enumerable.Repeat("Once upon a time. ", 200));
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(() => server.Client.ScoreAsync(request, Options))).StatusCode);
        request.Completion = "ok";
        request.Input = new GenerationInput { Chat = new ChatInput { Messages = { new ChatMessage { Role = ChatRole.User, Content = "hi" } } } };
        var noTemplate = await Assert.ThrowsAsync<RpcException>(() => server.Client.ScoreAsync(request, Options));
        Assert.Equal(StatusCode.FailedPrecondition, noTemplate.StatusCode);
        Assert.Contains("no chat template", noTemplate.Status.Detail);
    }

    [Fact]
    public async Task Generate_Logprobs_OnePerTokenWithAlternatives()
    {
        await using var server = await InferenceServer.StartAsync();
        var request = Completion("Once upon a time", 5);
        request.Sampling.Logprobs = true;
        request.Sampling.TopLogprobs = 3;
        var response = await server.Client.GenerateAsync(request, Options);
        Assert.Equal(5, response.Logprobs.Count);
        foreach (var (logprob, id) in response.Logprobs.Zip(response.TokenIds))
        {
            Assert.Equal(id, logprob.TokenId);
            Assert.True(logprob.Logprob <= 0);
            Assert.Equal(3, logprob.TopLogprobs.Count);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(id, logprob.TopLogprobs[0].TokenId);
        }
    }

    // The text of each delta message of a streamed request, in order.
    private static async Task<List<string>> StreamMessagesAsync(InferenceServer server, GenerateRequest request)
    {
        using var call = server.Client.GenerateStream(new GenerateStreamRequest { Model = request.Model, Input = request.Input, Sampling = request.Sampling }, Options);
        var messages = new List<string>();
        await foreach (var message in call.ResponseStream.ReadAllAsync(Ct))
        {
            if (message.EventCase == GenerateStreamResponse.EventOneofCase.Delta)
            {
                messages.Add(message.Delta.Text);
            }
        }
        return messages;
    }
}
