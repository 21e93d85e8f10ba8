using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.InferenceService.Models;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>
/// Batched prefill, batched Embed and UnloadModel's wait, over real HTTP/2: what runs together must equal what runs
/// alone, and an unload must not cut short the sequences it waits for.
/// </summary>
[Trait("Category", "Functional")]
public sealed class BatchingTests
{
    private const string Stories = "stories260K-hf";
    private const string Slow = "slow-random";

    private static readonly string[] Prompts =
    [
        "Once upon a time",
        "Tom",
        "Lily and her mom went to the park. They saw a big tree with red apples, and Lily wanted one.",
        "The little dog was sad because",
        "One day, a boy named Ben found a shiny stone in the garden. He showed it to his sister, who",
        "Sue",
        "The sun was hot and the children played in the water near the house",
        "Max and Mia",
    ];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    [Fact]
    public async Task Generate_EightConcurrentPromptsPrefilledInChunksTogether_SameTextsAsOneAtATime()
    {
        // 8 prompt tokens per step: the longer prompts take several steps while the others already decode.
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:MaxBatch"] = "8", ["Inference:PrefillTokensPerStep"] = "8" });
        var requests = Prompts.Select((p, i) => new GenerateRequest
        {
            Model = new ModelRef { BaseModelId = Stories },
            Input = new GenerationInput { Completion = new CompletionInput { Prompt = p } },
            Sampling = new SamplingParameters { Temperature = i % 2 == 0 ? 0 : 0.8, Seed = 40 + i, MaxNewTokens = 24 + (i * 3) },
        }).ToList();
        var alone = new List<GenerateResponse>();
        foreach (var request in requests)
        {
            alone.Add(await server.Client.GenerateAsync(request, Options));
        }

        var together = await Task.WhenAll(requests.Select(r => server.Client.GenerateAsync(r, Options)));

        Assert.Equal(alone.Select(r => r.Text), together.Select(r => r.Text));
        Assert.Equal(alone.Select(r => r.TokenIds.ToList()), together.Select(r => r.TokenIds.ToList()));
        Assert.All(together, r => Assert.True(r.Usage.TimeToFirstTokenMs > 0));
    }

    [Fact]
    public void Embedder_InputsOfDifferentLengthsWithAndWithoutAdapter_BatchedEqualsOneForwardPerInput()
    {
        var directory = Path.Combine(InferenceServer.RequireModels(), Stories);
        var model = LlamaModel.LoadHf(directory);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        // 40 inputs of 1 to about 100 tokens, more than one batched forward's 512 rows in all.
        var inputs = Enumerable.Range(0, 40)
            .Select(i => tokenizer.Encode(string.Concat(Enumerable.Repeat(Prompts[i % Prompts.Length] + " ", 1 + (i % 4))), addSpecialTokens: true))
            .Append([1])
            .ToList();
        Assert.True(inputs.Sum(i => i.Length) > Embedder.BatchTokens);
        var adapter = LoRAWeights.From(RandomAdapter(model));

        foreach (var (pooling, lora) in new[] { (Pooling.Mean, (LoRAWeights?)null), (Pooling.LastToken, null), (Pooling.Mean, adapter) })
        {
            var batched = Embedder.Embed(model, inputs, skipFirst: true, pooling, normalize: false, lora);
            var alone = Embedder.Embed(model, inputs, skipFirst: true, pooling, normalize: false, lora, batched: false);
            for (var i = 0; i < inputs.Count; i++)
            {
                // fp32: the batched GEMM sums in another order than the lone short input's decode kernel; raw pooled
                // states are O(1), so 1e-5 absolute is float rounding through five layers, far below any real difference.
                EmbedTests.AssertClose(batched[i], [.. alone[i].Select(v => (double)v)], 1e-5, 1e-5);
            }

            if (lora is not null)
            {
                var plain = Embedder.Embed(model, inputs, skipFirst: true, pooling, normalize: false, null);
                Assert.NotEqual(plain[0], batched[0]);
            }
        }
    }

    [Fact]
    public async Task Embed_ManyTextsInOneRequest_EqualOneRequestPerText()
    {
        await using var server = await InferenceServer.StartAsync();
        var texts = Enumerable.Range(0, 24).Select(i => string.Concat(Enumerable.Repeat(Prompts[i % Prompts.Length] + " ", 1 + (i % 3)))).ToList();
        var model = new ModelRef { BaseModelId = Stories };

        var together = await server.Client.EmbedAsync(new EmbedRequest { Model = model, Inputs = { texts } }, Options);

        Assert.Equal(texts.Count, together.Embeddings.Count);
        for (var i = 0; i < texts.Count; i++)
        {
            var alone = await server.Client.EmbedAsync(new EmbedRequest { Model = model, Inputs = { texts[i] } }, Options);
            Assert.Equal(alone.Embeddings[0].TokenCount, together.Embeddings[i].TokenCount);
            EmbedTests.AssertClose([.. together.Embeddings[i].Values], [.. alone.Embeddings[0].Values.Select(v => (double)v)], 1e-5, 2e-6);
        }
    }

    [Fact]
    public async Task UnloadModel_WhileStreaming_WaitsForTheSequenceToFinish()
    {
        using var models = SlowModelFolder();
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:ModelRoots:0"] = models.Path });
        using var call = server.Client.GenerateStream(LongStream(), Options);
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        Assert.Equal(1, (await server.Client.GetStatusAsync(new GetStatusRequest(), Options)).ActiveSequences);

        var unload = await server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Slow }, Options);

        // The unload answered after the sequence ended: the stream holds every token and a normal final message.
        Assert.Equal(0, (await server.Client.GetStatusAsync(new GetStatusRequest(), Options)).LoadedModels);
        GenerationFinal? final = null;
        while (await call.ResponseStream.MoveNext(Ct))
        {
            if (call.ResponseStream.Current.EventCase == GenerateStreamResponse.EventOneofCase.Final)
            {
                final = call.ResponseStream.Current.Final;
            }
        }

        Assert.NotNull(final);
        Assert.Equal(FinishReason.Length, final.FinishReason);
        Assert.Equal(900, final.Usage.CompletionTokens);
        Assert.Equal(0, unload.Memory.UsedBytes);
    }

    [Fact]
    public async Task UnloadModel_ForceWhileStreaming_SequenceEndsAborted()
    {
        using var models = SlowModelFolder();
        await using var server = await InferenceServer.StartAsync(new() { ["Inference:ModelRoots:0"] = models.Path });
        using var call = server.Client.GenerateStream(LongStream(), Options);
        Assert.True(await call.ResponseStream.MoveNext(Ct));

        await server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Slow, Force = true }, Options);

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(Ct))
            {
                Assert.NotEqual(GenerateStreamResponse.EventOneofCase.Final, call.ResponseStream.Current.EventCase);
            }
        });
        Assert.Equal(StatusCode.Aborted, e.StatusCode);
        Assert.Equal(0, (await server.Client.GetStatusAsync(new GetStatusRequest(), Options)).LoadedModels);
    }

    private static GenerateStreamRequest LongStream() => new()
    {
        Model = new ModelRef { BaseModelId = Slow },
        Input = new GenerationInput { Completion = new CompletionInput { Prompt = "Once upon a time" } },
        Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 900 },
    };

    // A random-weight model large enough that 900 tokens take a good fraction of a second (stories260K finishes its
    // stories in a few milliseconds), with stories260K's tokenizer and its end-of-sequence rows zeroed: their logit is
    // then 0 while the greedy maximum of random logits is positive, so it always runs to max_new_tokens.
    private static TempFolder SlowModelFolder()
    {
        var tokenizerDir = Path.Combine(InferenceServer.RequireModels(), Stories);
        var folder = new TempFolder();
        var config = new LlamaConfig
        {
            HiddenSize = 192,
            IntermediateSize = 512,
            NumLayers = 6,
            NumHeads = 6,
            NumKeyValueHeadsRaw = 3,
            VocabSize = 512,
            MaxPositions = 1024,
            RmsNormEps = 1e-5,
            TieWordEmbeddings = true,
            EosTokenIds = [2],
        };
        var model = LlamaModel.Create(config);
        var rng = new Random(5);
        foreach (var p in model.Parameters.Parameters)
        {
            var span = p.Span;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = p.Shape.Length == 1 ? 1f : (float)((rng.NextDouble() * 2) - 1) * 0.05f;
            }
        }

        model.Embeddings.Span.Slice(2 * config.HiddenSize, config.HiddenSize).Clear();
        var directory = Path.Combine(folder.Path, Slow);
        model.SaveHf(directory);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(tokenizerDir, file), Path.Combine(directory, file));
        }

        return folder;
    }

    private static LoRAAdapter RandomAdapter(LlamaModel model)
    {
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 4, Alpha = 8, TargetModules = LoRAConfig.AllLinear }, seed: 11);
        var rng = new Random(11);
        foreach (var p in adapter.Parameters.Parameters.Where(p => p.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
        {
            var span = p.Span;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (float)((rng.NextDouble() * 2) - 1) * 0.1f;
            }
        }

        return adapter;
    }

    private sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("inference-batching-").FullName;

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
