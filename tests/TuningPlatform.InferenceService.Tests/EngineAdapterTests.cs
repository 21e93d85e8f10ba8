using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Peft;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>
/// The engine's per-sequence LoRA path (what the service serves through): rows of one batched step on different
/// adapters equal each sequence run alone with its adapter; an unmerged adapter equals the merged model; a zero-B
/// adapter equals the base exactly.
/// </summary>
public sealed class EngineAdapterTests(AdapterFixture fixture) : IClassFixture<AdapterFixture>
{
    private static readonly int[][] Prompts = [[1, 403, 407, 261, 378], [1, 306, 450], [1, 403, 407, 261, 378, 300, 301]];

    [Fact]
    public void ForwardBatch_RowsOnDifferentAdapters_EachEqualsItsSequenceAlone()
    {
        InferenceServer.RequireModels();
        var model = LlamaModel.LoadHf(fixture.BaseDirectory);
        LoRAWeights?[] adapters = [LoRAWeights.Load(Path.Combine(fixture.AdapterRoot, "a"), model), null, LoRAWeights.Load(Path.Combine(fixture.AdapterRoot, "b"), model)];
        const int V = 512;
        var caches = new List<KvCache>();
        var expected = new float[Prompts.Length * V];
        for (var i = 0; i < Prompts.Length; i++)
        {
            var state = model.CreateState(32);
            var scratch = new float[V];
            model.Forward(state, Prompts[i], scratch, false, adapters[i]);
            caches.Add(state.Cache);
            var alone = model.CreateState(32);
            model.Forward(alone, [.. Prompts[i], 20 + i], expected.AsSpan(i * V, V), false, adapters[i]);
        }
        var batched = new float[Prompts.Length * V];
        model.ForwardBatch(model.CreateBatchBuffers(3, 32), caches, [20, 21, 22], batched, adapters);
        EmbedTests.AssertClose(batched, [.. expected.Select(e => (double)e)], 1e-4, 1e-5);
        // The adapters do change the rows they apply to.
        var plain = new float[Prompts.Length * V];
        var fresh = Prompts.Select(p =>
        {
            var state = model.CreateState(32);
            model.Forward(state, p, new float[V]);
            return state.Cache;
        }).ToList();
        model.ForwardBatch(model.CreateBatchBuffers(3, 32), fresh, [20, 21, 22], plain);
        Assert.True(plain.AsSpan(0, V).SequenceCompareTo(batched.AsSpan(0, V)) != 0);
        Assert.True(plain.AsSpan(V, V).SequenceEqual(batched.AsSpan(V, V)));
    }

    [Fact]
    public void Forward_UnmergedAdapter_EqualsMergedModel_ZeroBEqualsBase()
    {
        InferenceServer.RequireModels();
        var model = LlamaModel.LoadHf(fixture.BaseDirectory);
        var merged = LlamaModel.LoadHf(fixture.MergedDirectory);
        var adapter = LoRAWeights.Load(Path.Combine(fixture.AdapterRoot, "a"), model);
        var tokens = Prompts[2];
        var unmerged = new float[tokens.Length * 512];
        var reference = new float[tokens.Length * 512];
        model.Forward(model.CreateState(16), tokens, unmerged, true, adapter);
        merged.Forward(merged.CreateState(16), tokens, reference, allPositions: true);
        EmbedTests.AssertClose(unmerged, [.. reference.Select(e => (double)e)], 1e-4, 1e-4);

        var zero = LoRAWeights.From(LoRAAdapter.Create(model, new LoRAConfig { Rank = 2, TargetModules = LoRAConfig.AllLinear }, seed: 5));
        var withZero = new float[tokens.Length * 512];
        var plain = new float[tokens.Length * 512];
        model.Forward(model.CreateState(16), tokens, withZero, true, zero);
        model.Forward(model.CreateState(16), tokens, plain, allPositions: true);
        Assert.Equal(plain, withZero);

        // A batch of sequences on mixed adapters generates what each generates alone.
        var batch = new BatchGenerator(model, null, maxBatch: 3, maxSequence: 64);
        var options = new GenerationOptions { MaxNewTokens = 20, Temperature = 0 };
        var together = Prompts.Select((p, i) => batch.Add(p, options, null, i == 1 ? null : adapter)).ToList();
        batch.RunToCompletion(TestContext.Current.CancellationToken);
        for (var i = 0; i < Prompts.Length; i++)
        {
            var alone = new BatchGenerator(model, null, maxBatch: 1, maxSequence: 64);
            var sequence = alone.Add(Prompts[i], options, null, i == 1 ? null : adapter);
            alone.RunToCompletion(TestContext.Current.CancellationToken);
            Assert.Equal(sequence.TokenIds, together[i].TokenIds);
        }
    }
}
