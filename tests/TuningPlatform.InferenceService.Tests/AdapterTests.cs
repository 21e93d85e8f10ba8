using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>LoRA adapters over real HTTP/2: per-sequence application without merging, registry resolution, budget and errors.</summary>
[Trait("Category", "Functional")]
public sealed class AdapterTests(AdapterFixture fixture) : IClassFixture<AdapterFixture>
{
    private const string Base = AdapterFixture.Base;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    private static ModelRef On(string? adapter) => new() { BaseModelId = Base, AdapterId = adapter ?? "" };

    private static GenerateRequest Completion(ModelRef model, string prompt, int maxNewTokens, double temperature = 0, long seed = 1) => new()
    {
        Model = model,
        Input = new GenerationInput { Completion = new CompletionInput { Prompt = prompt } },
        Sampling = new SamplingParameters { Temperature = temperature, MaxNewTokens = maxNewTokens, Seed = seed },
    };

    private Task<InferenceServer> StartAsync(Dictionary<string, string?>? extra = null)
    {
        InferenceServer.RequireModels();
        return InferenceServer.StartAsync(fixture.Settings(extra));
    }

    private static async Task LoadAsync(InferenceServer server, params string[] names)
    {
        foreach (var name in names)
        {
            var loaded = await server.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = name, AdapterId = name, BaseModelId = Base }, Options);
            Assert.Equal(LoadState.Loaded, loaded.Adapter.State);
        }
    }

    [Fact]
    public async Task Generate_OnAdapter_GreedyEqualsMergedModelAndDiffersFromBase()
    {
        await using var server = await StartAsync();
        var loaded = await server.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = "a", AdapterId = "a", BaseModelId = Base }, Options);
        Assert.Equal((4, 8.0, 7), (loaded.Adapter.Rank, loaded.Adapter.Alpha, loaded.Adapter.TargetModules.Count));
        Assert.True(loaded.Memory.AdaptersBytes > 0);

        var onBase = await server.Client.GenerateAsync(Completion(On(null), "Once upon a time", 60), Options);
        var onAdapter = await server.Client.GenerateAsync(Completion(On("a"), "Once upon a time", 60), Options);
        var merged = await server.Client.GenerateAsync(Completion(new ModelRef { BaseModelId = AdapterFixture.Merged }, "Once upon a time", 60), Options);
        Assert.Equal("a", onAdapter.AdapterId);
        Assert.Equal(Base, onAdapter.ModelId);
        Assert.NotEqual(onBase.Text, onAdapter.Text);
        Assert.Equal(merged.TokenIds, onAdapter.TokenIds);
        Assert.Equal(merged.Text, onAdapter.Text);

        // Scoring and embedding apply the adapter too: they agree with the merged model within float32 rounding.
        ScoreRequest Score(ModelRef model) => new()
        {
            Model = model,
            Input = new GenerationInput { Completion = new CompletionInput { Prompt = "Once upon a time" } },
            Completion = onAdapter.Text,
        };
        var scoredAdapter = await server.Client.ScoreAsync(Score(On("a")), Options);
        var scoredMerged = await server.Client.ScoreAsync(Score(new ModelRef { BaseModelId = AdapterFixture.Merged }), Options);
        var scoredBase = await server.Client.ScoreAsync(Score(On(null)), Options);
        Assert.Equal(scoredMerged.SumLogprob, scoredAdapter.SumLogprob, 2e-3);
        Assert.True(scoredAdapter.SumLogprob > scoredBase.SumLogprob + 1, $"adapter {scoredAdapter.SumLogprob} vs base {scoredBase.SumLogprob}");

        var embedAdapter = await server.Client.EmbedAsync(new EmbedRequest { Model = On("a"), Inputs = { "Tom had a big red ball." } }, Options);
        var embedMerged = await server.Client.EmbedAsync(new EmbedRequest { Model = new ModelRef { BaseModelId = AdapterFixture.Merged }, Inputs = { "Tom had a big red ball." } }, Options);
        EmbedTests.AssertClose([.. embedAdapter.Embeddings[0].Values], [.. embedMerged.Embeddings[0].Values.Select(v => (double)v)], 1e-3, 1e-5);
    }

    [Fact]
    public async Task Generate_ClientsOnDifferentAdaptersAtOnce_EachGetsItsSequentialText()
    {
        await using var server = await StartAsync();
        await LoadAsync(server, "a", "b");
        var requests = new[] { "a", "b", null, "a", "b", null }
            .Select((adapter, i) => Completion(On(adapter), i % 2 == 0 ? "Once upon a time" : "Tom had a", 40, temperature: 0.8, seed: 10 + i))
            .ToList();
        var sequential = new List<string>();
        foreach (var request in requests)
        {
            sequential.Add((await server.Client.GenerateAsync(request, Options)).Text);
        }
        Assert.NotEqual(sequential[0], (await server.Client.GenerateAsync(Completion(On("b"), "Once upon a time", 40, 0.8, 10), Options)).Text);

        // All at once: the batch mixes rows on adapter a, adapter b and the base in every step; half stream.
        var together = await Task.WhenAll(requests.Select((r, i) => i % 2 == 0 ? StreamTextAsync(server, r) : UnaryTextAsync(server, r)));
        Assert.Equal(sequential, together);
        var status = await server.Client.ListAdaptersAsync(new ListAdaptersRequest { LoadedOnly = true }, Options);
        // Two sequential and two concurrent requests each; b served one more (the check above).
        Assert.Equal([("a", 4L), ("b", 5L)], status.Adapters.Select(a => (a.Id, a.RequestsServed)).Order());
    }

    [Fact]
    public async Task LoadAdapter_BadRequests_PreciseStatuses()
    {
        await using var server = await StartAsync();
        async Task<RpcException> Fails(LoadAdapterRequest request) => await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadAdapterAsync(request, Options));
        async Task Expect(StatusCode code, string param, LoadAdapterRequest request)
        {
            var ex = await Fails(request);
            Assert.Equal((code, param), (ex.StatusCode, ex.Trailers.GetValue("x-error-param")));
        }

        await Expect(StatusCode.InvalidArgument, "source", new LoadAdapterRequest { BaseModelId = Base });
        await Expect(StatusCode.InvalidArgument, "path", new LoadAdapterRequest { Path = "../adapters/a", BaseModelId = Base });
        await Expect(StatusCode.InvalidArgument, "path", new LoadAdapterRequest { Path = fixture.BaseDirectory, BaseModelId = Base });
        await Expect(StatusCode.InvalidArgument, "base_model_id", new LoadAdapterRequest { Path = "a" });
        await Expect(StatusCode.InvalidArgument, "adapter_id", new LoadAdapterRequest { Path = "a", AdapterId = "has space", BaseModelId = Base });
        await Expect(StatusCode.NotFound, "path", new LoadAdapterRequest { Path = "missing", BaseModelId = Base });
        await Expect(StatusCode.NotFound, "base_model_id", new LoadAdapterRequest { Path = "a", BaseModelId = "no-such-model" });
        await Expect(StatusCode.NotFound, "fine_tuned_model_id", new LoadAdapterRequest { FineTunedModelId = "ft:stories260K-hf:x:ftjob-missing" });
        var badRank = await Fails(new LoadAdapterRequest { Path = "bad-rank", BaseModelId = Base });
        Assert.Equal(StatusCode.FailedPrecondition, badRank.StatusCode);
        Assert.Contains("lora_A.weight", badRank.Status.Detail);
        await Expect(StatusCode.FailedPrecondition, "path", new LoadAdapterRequest { Path = "empty", BaseModelId = Base });

        await LoadAsync(server, "a");
        await LoadAsync(server, "a");
        await Expect(StatusCode.AlreadyExists, "path", new LoadAdapterRequest { Path = "b", AdapterId = "a", BaseModelId = Base });

        var both = Completion(new ModelRef { FineTunedModelId = "ft:stories260K-hf:x:ftjob-1", AdapterId = "a" }, "x", 1);
        var bothEx = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(both, Options));
        Assert.Equal((StatusCode.InvalidArgument, "model.adapter_id"), (bothEx.StatusCode, bothEx.Trailers.GetValue("x-error-param")));
        var wrongBase = Completion(new ModelRef { BaseModelId = AdapterFixture.Merged, AdapterId = "a" }, "x", 1);
        Assert.Equal(StatusCode.FailedPrecondition, (await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(wrongBase, Options))).StatusCode);
        var loadModelWithAdapter = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadModelAsync(new LoadModelRequest { Model = On("a") }, Options));
        Assert.Equal(StatusCode.InvalidArgument, loadModelWithAdapter.StatusCode);

        await server.Client.UnloadAdapterAsync(new UnloadAdapterRequest { AdapterId = "a" }, Options);
        var again = await Assert.ThrowsAsync<RpcException>(() => server.Client.UnloadAdapterAsync(new UnloadAdapterRequest { AdapterId = "a" }, Options));
        Assert.Equal(StatusCode.NotFound, again.StatusCode);
        await server.Client.UnloadAdapterAsync(new UnloadAdapterRequest { AdapterId = "a", AllowMissing = true }, Options);
        var listed = await server.Client.ListAdaptersAsync(new ListAdaptersRequest(), Options);
        Assert.Equal(LoadState.Available, Assert.Single(listed.Adapters, a => a.Id == "a").State);
    }

    [Fact]
    public async Task FineTunedRegistry_LoraLoadsLazily_FullResolvesToItsModel()
    {
        var lora = fixture.Register("ftjob-lora1", "lora", adapterPath: Path.Combine(fixture.AdapterRoot, "a"));
        var full = fixture.Register("ftjob-full1", "full", modelPath: fixture.MergedDirectory);
        await using var server = await StartAsync();
        await LoadAsync(server, "a");
        var byPath = await server.Client.GenerateAsync(Completion(On("a"), "Once upon a time", 30), Options);

        var byId = await server.Client.GenerateAsync(Completion(new ModelRef { FineTunedModelId = lora }, "Once upon a time", 30), Options);
        Assert.Equal(byPath.Text, byId.Text);
        Assert.Equal((Base, lora), (byId.ModelId, byId.AdapterId));
        var asAdapterId = await server.Client.GenerateAsync(Completion(On(lora), "Once upon a time", 30), Options);
        Assert.Equal(byPath.Text, asAdapterId.Text);
        var listed = await server.Client.ListAdaptersAsync(new ListAdaptersRequest { BaseModelId = Base }, Options);
        var entry = Assert.Single(listed.Adapters, a => a.Id == lora);
        Assert.Equal((AdapterOrigin.FineTuned, LoadState.Loaded), (entry.Origin, entry.State));

        var loadedFull = await server.Client.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { FineTunedModelId = full } }, Options);
        Assert.Equal((full, ModelOrigin.FineTuned), (loadedFull.Model.Id, loadedFull.Model.Origin));
        var onFull = await server.Client.GenerateAsync(Completion(new ModelRef { FineTunedModelId = full }, "Once upon a time", 30), Options);
        Assert.Equal(byPath.Text, onFull.Text);
        var loadedLora = await server.Client.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { FineTunedModelId = lora } }, Options);
        Assert.Equal((Base, lora), (loadedLora.Model.Id, loadedLora.Adapter.Id));

        var noMerged = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(Completion(new ModelRef { FineTunedModelId = lora, UseMerged = true }, "x", 1), Options));
        Assert.Equal(StatusCode.FailedPrecondition, noMerged.StatusCode);
        var fullAsAdapter = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadAdapterAsync(new LoadAdapterRequest { FineTunedModelId = full }, Options));
        Assert.Equal(StatusCode.FailedPrecondition, fullAsAdapter.StatusCode);
        var otherBase = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadAdapterAsync(new LoadAdapterRequest { FineTunedModelId = lora, BaseModelId = AdapterFixture.Merged }, Options));
        Assert.Equal(StatusCode.InvalidArgument, otherBase.StatusCode);
        var unknown = await Assert.ThrowsAsync<RpcException>(() => server.Client.GenerateAsync(Completion(new ModelRef { FineTunedModelId = "ft:stories260K-hf:x:ftjob-none" }, "x", 1), Options));
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task LoadAdapter_PastTheBudget_EvictsTheLeastRecentlyUsedIdleAdapter()
    {
        long model, adapter;
        await using (var probe = await StartAsync())
        {
            await probe.Client.LoadModelAsync(new LoadModelRequest { Model = On(null) }, Options);
            var loaded = await probe.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = "a", AdapterId = "a", BaseModelId = Base }, Options);
            (model, adapter) = (loaded.Memory.UsedBytes - loaded.Memory.AdaptersBytes, loaded.Memory.AdaptersBytes);
        }
        // Room for the base and two adapters, not three.
        var budget = (model + (adapter * 5 / 2)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var server = await StartAsync(new() { ["Inference:MemoryBudgetBytes"] = budget });
        await LoadAsync(server, "a", "b");
        await server.Client.GenerateAsync(Completion(On("a"), "x", 1), Options);
        var third = await server.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = "c", AdapterId = "c", BaseModelId = Base }, Options);
        Assert.Equal(["b"], third.EvictedIds);
        Assert.True(third.Memory.UsedBytes <= third.Memory.BudgetBytes);
        var inMemory = await server.Client.ListAdaptersAsync(new ListAdaptersRequest { LoadedOnly = true }, Options);
        Assert.Equal(["a", "c"], inMemory.Adapters.Select(a => a.Id).Order(StringComparer.Ordinal));

        // A request naming the evicted adapter reloads it (load on demand) and evicts the next least recently used.
        var back = await server.Client.GenerateAsync(Completion(On("b"), "x", 1), Options);
        Assert.Equal("b", back.AdapterId);

        // Pinned adapters are never evicted: with a and c pinned, b cannot come back.
        await server.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = "a", AdapterId = "a", BaseModelId = Base, Pinned = true }, Options);
        await server.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = "c", AdapterId = "c", BaseModelId = Base, Pinned = true }, Options);
        var full = await Assert.ThrowsAsync<RpcException>(() => server.Client.LoadAdapterAsync(new LoadAdapterRequest { Path = "b", AdapterId = "b", BaseModelId = Base }, Options));
        Assert.Equal(StatusCode.ResourceExhausted, full.StatusCode);
        Assert.Contains("Inference:MemoryBudgetBytes", full.Status.Detail);
    }

    [Fact]
    public async Task UnloadAdapter_ForceWhileStreaming_SequenceEndsAborted()
    {
        await using var server = await StartAsync();
        await LoadAsync(server, "a");
        var request = Completion(On("a"), "Once upon a time", 400, temperature: 1);
        using var call = server.Client.GenerateStream(new GenerateStreamRequest { Model = request.Model, Input = request.Input, Sampling = request.Sampling }, Options);
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        await server.Client.UnloadAdapterAsync(new UnloadAdapterRequest { AdapterId = "a", Force = true }, Options);
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(Ct))
            {
            }
        });
        Assert.Equal(StatusCode.Aborted, ex.StatusCode);
        var gone = await Assert.ThrowsAsync<RpcException>(() => server.Client.UnloadAdapterAsync(new UnloadAdapterRequest { AdapterId = "a" }, Options));
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        Assert.Equal(0, (await server.Client.GetStatusAsync(new GetStatusRequest(), Options)).ActiveSequences);
    }

    private static async Task<string> UnaryTextAsync(InferenceServer server, GenerateRequest request) =>
        (await server.Client.GenerateAsync(request, Options)).Text;

    private static async Task<string> StreamTextAsync(InferenceServer server, GenerateRequest request)
    {
        using var call = server.Client.GenerateStream(new GenerateStreamRequest { Model = request.Model, Input = request.Input, Sampling = request.Sampling }, Options);
        var text = "";
        await foreach (var message in call.ResponseStream.ReadAllAsync(Ct))
        {
            if (message.EventCase == GenerateStreamResponse.EventOneofCase.Delta)
            {
                text += message.Delta.Text;
            }
        }
        return text;
    }
}
