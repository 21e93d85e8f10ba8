using System.Numerics.Tensors;

namespace TuningPlatform.Engine.Generation;

/// <summary>
/// Picks the next token from logits: repetition penalty, then greedy argmax (temperature 0) or
/// temperature → top-k → softmax → top-p → min-p → a draw from a seeded SplitMix64 stream.
/// Buffers are sized once for the vocabulary.
/// </summary>
public sealed class Sampler
{
    private readonly GenerationOptions _options;
    private readonly float[] _probs;
    private readonly int[] _order;
    private ulong _state;

    /// <summary>Creates a sampler for a vocabulary of <paramref name="vocabSize"/>.</summary>
    public Sampler(GenerationOptions options, int vocabSize)
    {
        options.Validate();
        _options = options;
        _probs = new float[vocabSize];
        _order = new int[vocabSize];
        _state = options.Seed;
    }

    /// <summary>Chooses a token; <paramref name="logits"/> is modified (penalty, temperature).</summary>
    public int Sample(Span<float> logits, ReadOnlySpan<int> context)
    {
        if (_options.RepetitionPenalty != 1)
        {
            ApplyRepetitionPenalty(logits, context, _options.RepetitionPenalty);
        }

        if (_options.Temperature == 0)
        {
            return TensorPrimitives.IndexOfMax(logits);
        }

        var v = logits.Length;
        TensorPrimitives.Divide(logits, _options.Temperature, logits);
        // TensorPrimitives.SoftMax does not subtract the maximum: a logit over ~88 (easily reached at a low
        // temperature) overflows exp to ∞ and every probability to NaN. The shift leaves the softmax unchanged.
        TensorPrimitives.Subtract(logits, TensorPrimitives.Max(logits), logits);
        var probs = _probs.AsSpan(0, v);
        TensorPrimitives.SoftMax(logits, probs);

        // Candidates sorted by probability, most likely first, cut by top-k.
        var order = _order.AsSpan(0, v);
        for (var i = 0; i < v; i++)
        {
            order[i] = i;
        }

        var probsArray = _probs;
        order.Sort((a, b) => probsArray[b].CompareTo(probsArray[a]) is var c && c != 0 ? c : a.CompareTo(b));
        var n = _options.TopK > 0 ? Math.Min(_options.TopK, v) : v;

        if (_options.TopP < 1)
        {
            // Renormalise over the top-k set first, as HF applies top-k before top-p.
            var total = 0f;
            for (var i = 0; i < n; i++)
            {
                total += probs[order[i]];
            }

            var cumulative = 0f;
            var keep = n;
            for (var i = 0; i < n; i++)
            {
                cumulative += probs[order[i]] / total;
                if (cumulative >= _options.TopP)
                {
                    keep = i + 1;
                    break;
                }
            }

            n = keep;
        }

        if (_options.MinP > 0)
        {
            var threshold = _options.MinP * probs[order[0]];
            var keep = 1;
            while (keep < n && probs[order[keep]] >= threshold)
            {
                keep++;
            }

            n = keep;
        }

        var sum = 0.0;
        for (var i = 0; i < n; i++)
        {
            sum += probs[order[i]];
        }

        var r = NextDouble() * sum;
        var acc = 0.0;
        for (var i = 0; i < n; i++)
        {
            acc += probs[order[i]];
            if (r < acc)
            {
                return order[i];
            }
        }

        return order[n - 1];
    }

    /// <summary>HF's repetition penalty: each token seen in the context has its logit divided (if positive) or multiplied (if negative).</summary>
    public static void ApplyRepetitionPenalty(Span<float> logits, ReadOnlySpan<int> context, float penalty)
    {
        // A token repeated in the context is penalised once, so remember which were done.
        var done = logits.Length <= 1 << 16 ? stackalloc bool[logits.Length] : new bool[logits.Length];
        foreach (var id in context)
        {
            if ((uint)id < (uint)logits.Length && !done[id])
            {
                done[id] = true;
                logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
            }
        }
    }

    // SplitMix64: tiny, fast and identical on every runtime, unlike System.Random's algorithm choice.
    private double NextDouble()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
