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
/// Text embeddings from a decoder: the final hidden states (after the final RMSNorm, before the head) of the inputs,
/// pooled (mean or last token) in float64 and optionally L2-normalised. Inputs run together: as many as fit in
/// <see cref="BatchTokens"/> rows go through one batched forward (each with its own KV cache, attention never crossing
/// inputs), so the weights are read once per batch rather than once per input; a longer input runs alone in chunks.
/// </summary>
public static class Embedder
{
    /// <summary>Most tokens (rows) in one batched forward.</summary>
    public const int BatchTokens = 512;

    private const int ChunkTokens = 64;

    /// <summary>
    /// Embeds each of <paramref name="inputs"/> (token ids; <paramref name="skipFirst"/>: the first id is a BOS that is run
    /// but not pooled). Runs on the model's decode thread (<see cref="LoadedModel.TryRunExclusive{T}"/>).
    /// </summary>
    public static float[][] Embed(LoadedModel model, IReadOnlyList<int[]> inputs, bool skipFirst, Pooling pooling, bool normalize, LoRAWeights? adapter) =>
        Embed(model.Model.Model, inputs, skipFirst, pooling, normalize, adapter);

    /// <summary>
    /// <see cref="Embed(LoadedModel, IReadOnlyList{int[]}, bool, Pooling, bool, LoRAWeights?)"/> on a model directly;
    /// <paramref name="batched"/> false runs one forward per input (the reference the batched path is tested against).
    /// </summary>
    public static float[][] Embed(LlamaModel llama, IReadOnlyList<int[]> inputs, bool skipFirst, Pooling pooling, bool normalize, LoRAWeights? adapter, bool batched = true)
    {
        var d = llama.Config.HiddenSize;
        var result = new float[inputs.Count][];
        var longest = inputs.Max(i => i.Length);
        var hidden = new float[Math.Max(longest, Math.Min(BatchTokens, inputs.Sum(i => i.Length))) * d];
        var sum = new double[d];
        var group = new List<int>();
        LlamaState? state = null;
        LlamaState? buffers = null;
        var n = 0;
        while (n < inputs.Count)
        {
            // The next inputs that fit in one batched forward together (an input past the limit runs alone).
            group.Clear();
            var rows = 0;
            while (batched && n < inputs.Count && inputs[n].Length <= BatchTokens && rows + inputs[n].Length <= BatchTokens)
            {
                rows += inputs[n].Length;
                group.Add(n++);
            }

            if (group.Count == 0)
            {
                var ids = inputs[n];
                state ??= llama.CreateState(longest, ChunkTokens);
                state.Reset();
                llama.ForwardHidden(state, ids, hidden, adapter);
                result[n] = Pool(hidden, 0, ids.Length, d, skipFirst, pooling, normalize, sum);
                n++;
                continue;
            }

            var span = group.Max(i => inputs[i].Length);
            buffers ??= llama.CreateBatchBuffers(BatchTokens, Math.Min(longest, BatchTokens));
            var caches = group.Select(_ => new KvCache(llama.Config, span)).ToList();
            var tokens = group.SelectMany(i => inputs[i]).ToArray();
            var lengths = group.Select(i => inputs[i].Length).ToArray();
            llama.ForwardPrefillHidden(buffers, caches, tokens, lengths, hidden, adapter is null ? null : group.Select(_ => (LoRAWeights?)adapter).ToList());
            var row = 0;
            foreach (var i in group)
            {
                result[i] = Pool(hidden, row, inputs[i].Length, d, skipFirst, pooling, normalize, sum);
                row += inputs[i].Length;
            }
        }

        return result;
    }

    // Pools rows first..first+count of hidden [T, D] into one vector (float64 sums), L2-normalised when asked.
    private static float[] Pool(float[] hidden, int first, int count, int d, bool skipFirst, Pooling pooling, bool normalize, double[] sum)
    {
        Array.Clear(sum);
        var from = pooling == Pooling.LastToken ? count - 1 : (skipFirst && count > 1 ? 1 : 0);
        for (var t = from; t < count; t++)
        {
            var row = hidden.AsSpan((first + t) * d, d);
            for (var i = 0; i < d; i++)
            {
                sum[i] += row[i];
            }
        }
        var pooled = count - from;
        var norm = 0.0;
        for (var i = 0; i < d; i++)
        {
            sum[i] /= pooled;
            norm += sum[i] * sum[i];
        }
        norm = Math.Sqrt(norm);
        var scale = normalize && norm > 0 ? 1 / norm : 1;
        var vector = new float[d];
        for (var i = 0; i < d; i++)
        {
            vector[i] = (float)(sum[i] * scale);
        }
        return vector;
    }
}
