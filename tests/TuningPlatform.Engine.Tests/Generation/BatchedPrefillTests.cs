using System.Numerics.Tensors;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training.Peft;

namespace TuningPlatform.Engine.Tests.Generation;

/// <summary>
/// Batched prefill (all joining prompts as the rows of one forward, attention per sequence over its own cache) must give
/// what prefilling each prompt alone gives: the same logits within 1e-5 relative (fp32; the GEMM may run where the lone
/// short prompt took the decode kernel, which sums in another order), the same KV caches, the same greedy text.
/// </summary>
public sealed class BatchedPrefillTests
{
    // Lengths 1 to 41, past the 16-row serial chunk used below: alone, every chunk takes the decode kernel (≤ 32 rows);
    // together (79 rows) they take the GEMM.
    private static readonly int[][] Prompts =
    [
        [1, 5, 9],
        [1, .. Enumerable.Range(0, 40).Select(i => 3 + (i * 7 % 50))],
        [1],
        [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49],
        [1, .. Enumerable.Range(0, 22).Select(i => 4 + (i * 11 % 55))],
    ];

    [Theory]
    [InlineData("gqa-tied")]
    [InlineData("qwen2-bias")]
    [InlineData("mha-untied-headdim")]
    public void ForwardPrefill_PromptsOfDifferentLengthsAndAdapters_EqualEachPrefilledAlone(string variant)
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture($"tiny-llama/{variant}"));
        var v = model.Config.VocabSize;
        var adapters = new[] { RandomAdapter(model, 3), null, RandomAdapter(model, 4), RandomAdapter(model, 3), null };

        // Reference: each prompt alone through the single-sequence forward (chunks of 16 rows), then one decode step.
        var expectedPrefill = new float[Prompts.Length][];
        var expectedDecode = new float[Prompts.Length][];
        var expectedCaches = new KvCache[Prompts.Length];
        for (var i = 0; i < Prompts.Length; i++)
        {
            var state = model.CreateState(64, maxChunk: 16);
            expectedPrefill[i] = new float[v];
            model.Forward(state, Prompts[i], expectedPrefill[i], false, adapters[i]);
            expectedCaches[i] = Snapshot(model, state.Cache);
            expectedDecode[i] = new float[v];
            model.Forward(state, [7 + i], expectedDecode[i], false, adapters[i]);
        }

        var caches = Prompts.Select(_ => new KvCache(model.Config, 64)).ToList();
        var buffers = model.CreateBatchBuffers(Prompts.Sum(p => p.Length), 64);
        var logits = new float[Prompts.Length * v];
        model.ForwardPrefill(buffers, caches, Prompts.SelectMany(p => p).ToArray(), Prompts.Select(p => p.Length).ToArray(), logits, adapters);

        for (var i = 0; i < Prompts.Length; i++)
        {
            NumericAssert.AssertClose(logits.AsSpan(i * v, v), expectedPrefill[i], 1e-5, 1e-6, $"{variant}: prefill logits of prompt {i} ({Prompts[i].Length} tokens)");
            Assert.Equal(Prompts[i].Length, caches[i].Length);
            for (var l = 0; l < model.Config.NumLayers; l++)
            {
                NumericAssert.AssertClose(caches[i].Keys[l], expectedCaches[i].Keys[l], 1e-5, 1e-6, $"{variant}: keys of layer {l}, prompt {i}");
                NumericAssert.AssertClose(caches[i].Values[l], expectedCaches[i].Values[l], 1e-5, 1e-6, $"{variant}: values of layer {l}, prompt {i}");
            }
        }

        var decoded = new float[Prompts.Length * v];
        model.ForwardBatch(buffers, caches, Enumerable.Range(0, Prompts.Length).Select(i => 7 + i).ToArray(), decoded, adapters);
        for (var i = 0; i < Prompts.Length; i++)
        {
            NumericAssert.AssertClose(decoded.AsSpan(i * v, v), expectedDecode[i], 1e-5, 1e-6, $"{variant}: first decode step after prompt {i}");
        }
    }

    [Theory]
    [InlineData(64, 4, 2)]
    [InlineData(192, 4, 4)]
    public void ForwardPrefillAndBatch_HeadDimMultipleOf16_EqualSingleSequenceForward(int hidden, int heads, int kvHeads)
    {
        // Head dims 16 and 48 take the register-tiled attention of ragged batches; the single-sequence path keeps
        // Ops.Attention, so this checks one against the other.
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = 2 * hidden,
            NumLayers = 2,
            NumHeads = heads,
            NumKeyValueHeadsRaw = kvHeads,
            VocabSize = 97,
            MaxPositions = 128,
            RmsNormEps = 1e-5,
        };
        var model = LlamaModel.Create(config);
        var rng = new Random(3);
        foreach (var p in model.Parameters.Parameters)
        {
            var span = p.Span;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = p.Shape.Length == 1 ? 1f : (float)((rng.NextDouble() * 2) - 1) * 0.3f;
            }
        }

        var v = config.VocabSize;
        int[][] prompts = [[1, 5, 9], [.. Enumerable.Range(0, 70).Select(i => 2 + (i * 13 % 90))], [4]];
        var expected = new float[prompts.Length][];
        var expectedNext = new float[prompts.Length][];
        for (var i = 0; i < prompts.Length; i++)
        {
            var state = model.CreateState(128);
            expected[i] = new float[v];
            model.Forward(state, prompts[i], expected[i]);
            expectedNext[i] = new float[v];
            model.Forward(state, [10 + i], expectedNext[i]);
        }

        var caches = prompts.Select(_ => new KvCache(config, 128)).ToList();
        var buffers = model.CreateBatchBuffers(128, 128);
        var logits = new float[prompts.Length * v];
        model.ForwardPrefill(buffers, caches, prompts.SelectMany(p => p).ToArray(), prompts.Select(p => p.Length).ToArray(), logits);
        var next = new float[prompts.Length * v];
        model.ForwardBatch(buffers, caches, [10, 11, 12], next);

        for (var i = 0; i < prompts.Length; i++)
        {
            NumericAssert.AssertClose(logits.AsSpan(i * v, v), expected[i], 1e-5, 1e-5, $"head dim {hidden / heads}: prefill logits of prompt {i}");
            NumericAssert.AssertClose(next.AsSpan(i * v, v), expectedNext[i], 1e-5, 1e-5, $"head dim {hidden / heads}: decode logits after prompt {i}");
        }
    }

    [Fact]
    public void ForwardPrefill_LongPromptInChunksBesideOthers_EqualsPrefilledAloneAndSkipsUnwantedLogits()
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/gqa-tied"));
        var v = model.Config.VocabSize;
        var adapter = RandomAdapter(model, 9);
        var longPrompt = Prompts[1];
        var expected = new float[v];
        model.Forward(model.CreateState(64), longPrompt, expected, false, adapter);
        var shortExpected = new float[v];
        model.Forward(model.CreateState(64), Prompts[3], shortExpected);

        // Step 1: the first 17 tokens of the long prompt (no logits wanted) beside the whole short one;
        // step 2: the rest of the long prompt alone.
        var caches = new List<KvCache> { new(model.Config, 64), new(model.Config, 64) };
        var buffers = model.CreateBatchBuffers(32, 64);
        var logits = new float[2 * v];
        Array.Fill(logits, float.NaN);
        model.ForwardPrefill(buffers, caches, [.. longPrompt[..17], .. Prompts[3]], [17, Prompts[3].Length], logits, [adapter, null], [false, true]);
        NumericAssert.AssertClose(logits.AsSpan(0, v), shortExpected, 1e-5, 1e-6, "the short prompt's logits, written as the first wanted row");
        Assert.True(float.IsNaN(logits[v]), "only the wanted rows are written");
        Assert.Equal(17, caches[0].Length);

        model.ForwardPrefill(buffers, [caches[0]], longPrompt[17..], [longPrompt.Length - 17], logits, [adapter]);
        NumericAssert.AssertClose(logits.AsSpan(0, v), expected, 1e-5, 1e-6, "the long prompt prefilled in two chunks");
        Assert.Equal(longPrompt.Length, caches[0].Length);
    }

    [Fact]
    public void ForwardPrefill_BadBatches_ThrowAndLeaveCachesUntouched()
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/gqa-tied"));
        var v = model.Config.VocabSize;
        var buffers = model.CreateBatchBuffers(8, 64);
        var cache = new KvCache(model.Config, 64);
        var other = new KvCache(model.Config, 16);
        var logits = new float[2 * v];

        Assert.Throws<ArgumentException>(() => model.ForwardPrefill(buffers, [cache, other], [1, 2, 3], [2, 2], logits));
        Assert.Throws<ArgumentException>(() => model.ForwardPrefill(buffers, [cache, cache], [1, 2, 3], [2, 1], logits));
        Assert.Throws<ArgumentException>(() => model.ForwardPrefill(buffers, [cache, other], [1, 2, 3], [3, 0], logits));
        Assert.Throws<ArgumentException>(() => model.ForwardPrefill(buffers, [cache], [.. Enumerable.Repeat(1, 9)], [9], logits));
        other.Length = 15;
        Assert.Throws<InvalidOperationException>(() => model.ForwardPrefill(buffers, [cache, other], [1, 2, 3], [1, 2], logits));
        Assert.Equal(0, cache.Length);
        Assert.Equal(15, other.Length);
    }

    [Fact]
    public void Step_Stories260KJoiningPromptsWithAdaptersAndSmallPrefillBudget_SameGreedyTextAsEachAlone()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var model = LlamaModel.LoadHf(dir);
        var tokenizer = Tokenizer.Load(dir);
        string[] texts =
        [
            "Once upon a time",
            "Lily and Tom went to the park. They saw a big dog and a little cat playing with a red ball near the tree.",
            "The",
            "One day, a little boy named Ben went to the park with his mom",
            "Sue liked to sing",
        ];
        var adapters = new[] { null, RandomAdapter(model, 21), RandomAdapter(model, 22), null, RandomAdapter(model, 21) };
        var prompts = texts.Select(t => tokenizer.Encode(t, addSpecialTokens: true)).ToArray();
        var options = new GenerationOptions { MaxNewTokens = 30, Temperature = 0, StopTokenIds = [] };
        var alone = prompts.Select((p, i) => GreedyAlone(model, p, adapters[i], options.MaxNewTokens)).ToArray();

        // A budget of 16 prompt tokens per step: the long prompt takes several steps while the others decode.
        var batch = new BatchGenerator(model, tokenizer, maxBatch: 5, maxSequence: 128, prefillTokensPerStep: 16);
        var ct = TestContext.Current.CancellationToken;
        var sequences = new List<BatchSequence> { batch.Add(prompts[0], options, null, adapters[0]), batch.Add(prompts[1], options, null, adapters[1]) };
        batch.Step(ct);
        Assert.Equal(2, sequences[0].TokenIds.Count);
        Assert.Empty(sequences[1].TokenIds);
        sequences.Add(batch.Add(prompts[2], options, null, adapters[2]));
        sequences.Add(batch.Add(prompts[3], options, null, adapters[3]));
        batch.Step(ct);
        sequences.Add(batch.Add(prompts[4], options, null, adapters[4]));
        batch.RunToCompletion(ct);

        for (var i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(alone[i], sequences[i].TokenIds);
        }
    }

    [Fact]
    public void Step_SequencesJoiningTogether_AllGetTheirFirstTokenInOneStep()
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/mha-untied-headdim"));
        var batch = new BatchGenerator(model, null, maxBatch: 4, maxSequence: 64);
        var options = new GenerationOptions { MaxNewTokens = 5, StopTokenIds = [] };
        var sequences = Prompts.Take(4).Select(p => batch.Add(p, options)).ToList();
        Assert.All(sequences, s => Assert.Empty(s.TokenIds));

        batch.Step(TestContext.Current.CancellationToken);

        // Prefilled together, first token sampled, then decoded once in the same step.
        Assert.All(sequences, s => Assert.Equal(2, s.TokenIds.Count));
        Assert.All(sequences, s => Assert.True(s.TimeToFirstToken > TimeSpan.Zero));
    }

    // Greedy decoding through the single-sequence forward alone: the independent path batched prefill must match.
    private static int[] GreedyAlone(LlamaModel model, int[] prompt, LoRAWeights? adapter, int count)
    {
        var state = model.CreateState(128);
        var logits = new float[model.Config.VocabSize];
        model.Forward(state, prompt, logits, false, adapter);
        var ids = new List<int>();
        for (var n = 0; n < count; n++)
        {
            var next = TensorPrimitives.IndexOfMax(logits);
            ids.Add(next);
            if (n < count - 1)
            {
                model.Forward(state, [next], logits, false, adapter);
            }
        }

        return [.. ids];
    }

    private static KvCache Snapshot(LlamaModel model, KvCache cache)
    {
        var copy = new KvCache(model.Config, cache.MaxSequence) { Length = cache.Length };
        for (var l = 0; l < cache.Layers; l++)
        {
            cache.Keys[l].CopyTo(copy.Keys[l], 0);
            cache.Values[l].CopyTo(copy.Values[l], 0);
        }

        return copy;
    }

    // A LoRA adapter on every projection with non-zero B, so it changes every row it is applied to.
    private static LoRAWeights RandomAdapter(LlamaModel model, int seed)
    {
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 4, Alpha = 8, TargetModules = LoRAConfig.AllLinear }, seed);
        var rng = new Random(seed);
        foreach (var p in adapter.Parameters.Parameters.Where(p => p.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
        {
            var span = p.Span;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (float)((rng.NextDouble() * 2) - 1) * 0.2f;
            }
        }

        return LoRAWeights.From(adapter);
    }
}
