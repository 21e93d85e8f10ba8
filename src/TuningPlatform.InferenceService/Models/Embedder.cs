using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Models;

/// <summary>How an embedding pools the final hidden states.</summary>
public enum Pooling
{
    /// <summary>Mean over the input's tokens (the BOS token conditions them but is not pooled).</summary>
    Mean,

    /// <summary>The hidden state of the last token.</summary>
    LastToken,
}

/// <summary>
/// Text embeddings from a decoder: the final hidden states (after the final RMSNorm, before the head) of one forward
/// pass per input, pooled (mean or last token) in float64 and optionally L2-normalised.
/// </summary>
public static class Embedder
{
    private const int ChunkTokens = 64;

    /// <summary>
    /// Embeds each of <paramref name="inputs"/> (token ids; <paramref name="skipFirst"/>: the first id is a BOS that is run
    /// but not pooled). Runs on the model's decode thread (<see cref="LoadedModel.TryRunExclusive{T}"/>).
    /// </summary>
    public static float[][] Embed(LoadedModel model, IReadOnlyList<int[]> inputs, bool skipFirst, Pooling pooling, bool normalize, LoRAWeights? adapter)
    {
        var llama = model.Model.Model;
        var d = llama.Config.HiddenSize;
        var longest = inputs.Max(i => i.Length);
        var state = llama.CreateState(longest, ChunkTokens);
        var hidden = new float[longest * d];
        var result = new float[inputs.Count][];
        var sum = new double[d];
        for (var n = 0; n < inputs.Count; n++)
        {
            var ids = inputs[n];
            state.Reset();
            llama.ForwardHidden(state, ids, hidden, adapter);
            Array.Clear(sum);
            var first = pooling == Pooling.LastToken ? ids.Length - 1 : (skipFirst && ids.Length > 1 ? 1 : 0);
            for (var t = first; t < ids.Length; t++)
            {
                var row = hidden.AsSpan(t * d, d);
                for (var i = 0; i < d; i++)
                {
                    sum[i] += row[i];
                }
            }
            var count = ids.Length - first;
            var norm = 0.0;
            for (var i = 0; i < d; i++)
            {
                sum[i] /= count;
                norm += sum[i] * sum[i];
            }
            norm = Math.Sqrt(norm);
            var scale = normalize && norm > 0 ? 1 / norm : 1;
            var vector = new float[d];
            for (var i = 0; i < d; i++)
            {
                vector[i] = (float)(sum[i] * scale);
            }
            result[n] = vector;
        }
        return result;
    }
}
