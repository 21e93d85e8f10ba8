using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Models;

/// <summary>The outcome of teacher-forced scoring.</summary>
/// <param name="SumLogprob">Σ log p(completion token | everything before it), natural log.</param>
/// <param name="Correct">Completion tokens that were the model's argmax prediction.</param>
/// <param name="Tokens">Per-token log-probabilities (with alternatives), when asked.</param>
public sealed record ScoreResult(double SumLogprob, long Correct, IReadOnlyList<TokenLogprob> Tokens);

/// <summary>
/// Teacher-forced log-likelihood of a completion after a context: one forward pass over context + completion
/// (in chunks, so the [T, V] logits are never all in memory), reading log softmax at each completion position;
/// with a LoRA adapter applied without merging when one is given.
/// </summary>
public static class Scorer
{
    private const int ChunkTokens = 128;

    /// <summary>Scores <paramref name="completion"/> after <paramref name="context"/>; <paramref name="topLogprobs"/> &lt; 0 returns no per-token list.</summary>
    public static ScoreResult Score(LoadedModel model, IReadOnlyList<int> context, IReadOnlyList<int> completion, int topLogprobs, LoRAWeights? adapter = null)
    {
        var llama = model.Model.Model;
        var vocab = llama.Config.VocabSize;
        int[] tokens = [.. context, .. completion];
        var state = llama.CreateState(tokens.Length, ChunkTokens);
        var logits = new float[ChunkTokens * vocab];
        var sum = 0.0;
        long correct = 0;
        var perToken = new List<TokenLogprob>();
        for (var start = 0; start < tokens.Length - 1; start += ChunkTokens)
        {
            var count = Math.Min(ChunkTokens, tokens.Length - 1 - start);
            // Logits at position p predict token p + 1; the last token predicts nothing we score.
            llama.Forward(state, tokens.AsSpan(start, count), logits.AsSpan(0, count * vocab), allPositions: true, adapter);
            for (var i = 0; i < count; i++)
            {
                var target = start + i + 1;
                if (target < context.Count)
                {
                    continue;
                }
                var row = logits.AsSpan(i * vocab, vocab);
                var scored = Logprobs.Compute(row, tokens[target], Math.Max(topLogprobs, 1));
                sum += scored.Logprob;
                if (scored.TopAlternatives.Length > 0 && scored.TopAlternatives[0].TokenId == tokens[target])
                {
                    correct++;
                }
                if (topLogprobs >= 0)
                {
                    perToken.Add(topLogprobs == 0 ? scored with { TopAlternatives = [] } : scored);
                }
            }
        }
        return new ScoreResult(sum, correct, perToken);
    }
}
