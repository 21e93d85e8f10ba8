// Log-probabilities of the next token: logprob(i) = logits[i] − logsumexp(logits).
//
//   logits [V]   raw model output for one position (before repetition penalty and temperature, as
//                OpenAI's and vLLM's logprobs report the model's own distribution)
//
// The top-k alternatives are found by one pass with a k-slot insertion list (k ≤ 20), so no sort of V.
using System.Numerics.Tensors;

namespace TuningPlatform.Engine.Generation;

/// <summary>A candidate token and its log-probability.</summary>
public readonly record struct TokenAlternative(int TokenId, float Logprob);

/// <summary>The chosen token's log-probability and, when asked, the most likely alternatives (most likely first).</summary>
public sealed record TokenLogprob(int TokenId, float Logprob, TokenAlternative[] TopAlternatives);

/// <summary>Computes <see cref="TokenLogprob"/> values from logits.</summary>
public static class Logprobs
{
    /// <summary>The most alternatives one position can report.</summary>
    public const int MaxTop = 20;

    /// <summary>log softmax(logits)[chosen] and the <paramref name="top"/> most likely tokens.</summary>
    public static TokenLogprob Compute(ReadOnlySpan<float> logits, int chosen, int top)
    {
        var max = TensorPrimitives.Max(logits);
        var sum = 0.0;
        foreach (var l in logits)
        {
            sum += Math.Exp(l - max);
        }

        var lse = max + (float)Math.Log(sum);
        top = Math.Min(top, logits.Length);
        var alternatives = new TokenAlternative[top];
        var count = 0;
        for (var i = 0; i < logits.Length && top > 0; i++)
        {
            var l = logits[i];
            if (count == top && l <= alternatives[count - 1].Logprob)
            {
                continue;
            }

            // Insert keeping descending order; ties keep the lower id first.
            var j = count < top ? count++ : top - 1;
            while (j > 0 && alternatives[j - 1].Logprob < l)
            {
                alternatives[j] = alternatives[j - 1];
                j--;
            }

            alternatives[j] = new TokenAlternative(i, l);
        }

        for (var i = 0; i < alternatives.Length; i++)
        {
            alternatives[i] = alternatives[i] with { Logprob = alternatives[i].Logprob - lse };
        }

        return new TokenLogprob(chosen, logits[chosen] - lse, alternatives);
    }
}
