using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Tests.Generation;

/// <summary>Batched decoding must produce what each sequence produces alone; logprobs must be log softmax of the logits.</summary>
public sealed class BatchGeneratorTests
{
    private static readonly string[] Prompts = ["Once upon a time", "Lily and Tom", "The cat sat on", "One day, a little boy named Ben went to the park with his mom"];

    [Fact]
    public void Step_Stories260KSequencesJoiningLate_EqualEachDecodedAlone()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var model = LlamaModel.LoadHf(dir);
        var tokenizer = Tokenizer.Load(dir);
        var options = new[]
        {
            new GenerationOptions { MaxNewTokens = 40 },
            new GenerationOptions { MaxNewTokens = 25, StopStrings = ["."] },
            new GenerationOptions { MaxNewTokens = 50, Temperature = 0.8f, TopP = 0.9f, Seed = 7 },
            new GenerationOptions { MaxNewTokens = 30, RepetitionPenalty = 1.3f },
        };
        var ct = TestContext.Current.CancellationToken;
        var alone = Prompts.Select((p, i) => new Generator(model, tokenizer).Generate(p, options[i], cancellationToken: ct)).ToArray();

        var batch = new BatchGenerator(model, tokenizer, maxBatch: 4, maxSequence: 128);
        var streamed = new System.Text.StringBuilder();
        var sequences = new List<BatchSequence> { batch.Add(Prompts[0], options[0], d => streamed.Append(d)), batch.Add(Prompts[1], options[1]) };
        for (var i = 0; i < 3; i++)
        {
            batch.Step(ct);
        }

        sequences.Add(batch.Add(Prompts[2], options[2]));
        batch.Step(ct);
        sequences.Add(batch.Add(Prompts[3], options[3]));
        batch.RunToCompletion(ct);

        for (var i = 0; i < Prompts.Length; i++)
        {
            var result = sequences[i].ToResult();
            Assert.Equal(alone[i].TokenIds, result.TokenIds);
            Assert.Equal(alone[i].Text, result.Text);
            Assert.Equal(alone[i].FinishReason, result.FinishReason);
        }

        Assert.Equal(alone[0].Text, streamed.ToString());
        Assert.Equal(FinishReason.StopString, sequences[1].FinishReason);
        Assert.Empty(batch.Active);
    }

    [Theory]
    [InlineData("gqa-tied")]
    [InlineData("qwen2-bias")]
    [InlineData("mha-untied-headdim")]
    public void ForwardBatch_TinyRandomModel_EqualsEachSequenceAlone(string variant)
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture($"tiny-llama/{variant}"));
        var v = model.Config.VocabSize;
        int[][] prompts = [[1, 5, 9], [1, 40, 41, 42, 43, 44, 45], [1], [1, 7, 7, 7, 7]];
        var options = new GenerationOptions { MaxNewTokens = 20, StopTokenIds = [] };

        // Reference: each prompt alone, greedy, through the single-sequence forward.
        var expected = prompts.Select(p =>
        {
            var state = model.CreateState(64);
            var logits = new float[v];
            var ids = new List<int>();
            model.Forward(state, p, logits);
            for (var n = 0; n < options.MaxNewTokens; n++)
            {
                var next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);
                ids.Add(next);
                model.Forward(state, [next], logits);
            }

            return ids;
        }).ToArray();

        var batch = new BatchGenerator(model, null, maxBatch: 3, maxSequence: 64);
        var sequences = prompts.Take(3).Select(p => batch.Add(p, options)).ToList();
        batch.Step(TestContext.Current.CancellationToken);
        batch.Cancel(sequences[2]);
        sequences.Add(batch.Add(prompts[3], options));
        batch.RunToCompletion(TestContext.Current.CancellationToken);

        for (var i = 0; i < prompts.Length; i++)
        {
            if (i == 2)
            {
                Assert.Equal(FinishReason.Cancelled, sequences[i].FinishReason);
                Assert.Equal(expected[i].Take(2), sequences[i].TokenIds);
                continue;
            }

            Assert.Equal(expected[i], sequences[i].TokenIds);
            Assert.Equal(FinishReason.Length, sequences[i].FinishReason);
        }
    }

    [Fact]
    public void ForwardBatch_Logits_CloseToSingleSequenceForward()
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/qwen2-bias"));
        var v = model.Config.VocabSize;
        int[][] prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9]];
        var states = prompts.Select(_ => model.CreateState(32)).ToArray();
        var caches = new List<KvCache>();
        var scratch = new float[v];
        for (var i = 0; i < prompts.Length; i++)
        {
            model.Forward(states[i], prompts[i], scratch);
            caches.Add(states[i].Cache);
        }

        var batched = new float[2 * v];
        model.ForwardBatch(model.CreateBatchBuffers(2, 32), caches, [11, 12], batched);

        for (var i = 0; i < prompts.Length; i++)
        {
            var alone = model.CreateState(32);
            var expected = new float[v];
            model.Forward(alone, [.. prompts[i], 11 + i], expected);
            NumericAssert.AssertClose(batched.AsSpan(i * v, v), expected, 1e-5, 1e-5, $"row {i}");
            Assert.Equal(prompts[i].Length + 1, caches[i].Length);
        }
    }

    [Fact]
    public void Logprobs_Requested_AreLogSoftmaxWithSortedAlternatives()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var model = LlamaModel.LoadHf(dir);
        var tokenizer = Tokenizer.Load(dir);
        var options = new GenerationOptions { MaxNewTokens = 8, Logprobs = true, TopLogprobs = 5 };

        var alone = new Generator(model, tokenizer).Generate("Once upon a time", options, cancellationToken: TestContext.Current.CancellationToken);
        var batch = new BatchGenerator(model, tokenizer, 2, 64);
        var sequence = batch.Add("Once upon a time", options);
        batch.Add("The dog", options with { Logprobs = false });
        batch.RunToCompletion(TestContext.Current.CancellationToken);

        Assert.NotNull(alone.Logprobs);
        Assert.Equal(8, alone.Logprobs.Count);
        for (var i = 0; i < alone.Logprobs.Count; i++)
        {
            var lp = alone.Logprobs[i];
            Assert.Equal(alone.TokenIds[i], lp.TokenId);
            Assert.Equal(5, lp.TopAlternatives.Length);
            // Greedy: the chosen token is the most likely alternative.
            Assert.Equal(lp.TokenId, lp.TopAlternatives[0].TokenId);
            Assert.Equal(lp.Logprob, lp.TopAlternatives[0].Logprob);
            Assert.True(lp.Logprob <= 0);
            for (var j = 1; j < 5; j++)
            {
                Assert.True(lp.TopAlternatives[j].Logprob <= lp.TopAlternatives[j - 1].Logprob);
            }

            Assert.True(lp.TopAlternatives.Sum(a => Math.Exp(a.Logprob)) <= 1 + 1e-5);
            var other = sequence.Logprobs![i];
            Assert.Equal(lp.TokenId, other.TokenId);
            Assert.Equal(lp.Logprob, other.Logprob, 1e-4);
        }
    }

    [Fact]
    public void Logprobs_Compute_MatchesDoublePrecisionLogSoftmax()
    {
        var logits = NumericAssert.Random(1000, 3, scale: 8);

        var lp = Logprobs.Compute(logits, 17, 3);

        var max = logits.Max();
        var lse = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
        Assert.Equal(logits[17] - lse, lp.Logprob, 1e-4);
        var top = logits.Select((l, i) => (l, i)).OrderByDescending(x => x.l).Take(3).ToArray();
        Assert.Equal(top.Select(x => x.i), lp.TopAlternatives.Select(a => a.TokenId));
        Assert.Equal(top[0].l - lse, lp.TopAlternatives[0].Logprob, 1e-4);
    }

    [Fact]
    public void Add_BatchFull_Throws()
    {
        var model = LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/gqa-tied"));
        var batch = new BatchGenerator(model, null, maxBatch: 1, maxSequence: 16);
        batch.Add([1, 2], new GenerationOptions { MaxNewTokens = 4, StopTokenIds = [] });

        var e = Assert.Throws<InvalidOperationException>(() => batch.Add([1], new GenerationOptions()));

        Assert.Contains("batch is full", e.Message, StringComparison.Ordinal);
    }
}
