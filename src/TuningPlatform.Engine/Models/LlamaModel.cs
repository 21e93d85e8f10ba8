using System.Numerics.Tensors;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Ops;
using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Training.Quantization;

namespace TuningPlatform.Engine.Models;

/// <summary>One decoder layer's parameter views.</summary>
public sealed record LlamaLayerParameters(
    Parameter AttentionNorm,
    Parameter Wq,
    Parameter Wk,
    Parameter Wv,
    Parameter Wo,
    Parameter? Bq,
    Parameter? Bk,
    Parameter? Bv,
    Parameter? Bo,
    Parameter MlpNorm,
    Parameter WGate,
    Parameter WUp,
    Parameter WDown);

/// <summary>How to hold a model in memory.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>
    /// Storage of the weight matrices (embeddings, projections, head). BFloat16 halves their memory and
    /// the bytes decode reads per token; norms and biases stay fp32, and compute is fp32 either way.
    /// </summary>
    public ParameterDType WeightDType { get; init; } = ParameterDType.Float32;

    /// <summary>
    /// Storage of the seven projection matrices of every layer, when it should differ from <see cref="WeightDType"/>:
    /// <see cref="ParameterDType.Nf4"/> quantises them as they are loaded, so a QLoRA base never holds a dense copy
    /// (about 0.52 byte per projection weight; embeddings, head and norms keep WeightDType / fp32).
    /// </summary>
    public ParameterDType? ProjectionDType { get; init; }
}

/// <summary>
/// A Llama-family decoder (Llama 2/3, TinyLlama, SmolLM2, Mistral, Qwen2): embedding → L × (RMSNorm →
/// GQA attention with RoPE → residual → RMSNorm → SwiGLU MLP → residual) → RMSNorm → output head.
/// Parameters live in one <see cref="ParameterStore"/>; the forward pass runs over the preallocated
/// buffers of a <see cref="LlamaState"/>.
/// </summary>
public sealed class LlamaModel
{
    // NF4 projections wrapped once for the dequantising GEMM (they share the parameter's NF4 codes).
    private readonly Dictionary<Parameter, Nf4Linear> _nf4 = [];

    private LlamaModel(LlamaConfig config, int ropePositions, ModelLoadOptions? options = null)
    {
        Config = config;
        var wt = (options ?? new ModelLoadOptions()).WeightDType;
        var pt = options?.ProjectionDType ?? wt;
        if (wt == ParameterDType.Nf4)
        {
            throw new ArgumentException("NF4 holds projection weights only (ProjectionDType); embeddings and the head need fp32 or bf16", nameof(options));
        }

        var d = config.HiddenSize;
        var qDim = config.NumHeads * config.HeadDim;
        var kvDim = config.NumKeyValueHeads * config.HeadDim;
        var f = config.IntermediateSize;
        var store = new ParameterStore();
        Embeddings = store.Add("tok_embeddings", wt, config.VocabSize, d);
        var layers = new LlamaLayerParameters[config.NumLayers];
        for (var l = 0; l < config.NumLayers; l++)
        {
            var p = $"layers.{l}.";
            layers[l] = new LlamaLayerParameters(
                store.Add(p + "sa_norm", d),
                store.Add(p + "attn.q_proj", pt, qDim, d),
                store.Add(p + "attn.k_proj", pt, kvDim, d),
                store.Add(p + "attn.v_proj", pt, kvDim, d),
                store.Add(p + "attn.output_proj", pt, d, qDim),
                config.QkvBias ? store.Add(p + "attn.q_bias", qDim) : null,
                config.QkvBias ? store.Add(p + "attn.k_bias", kvDim) : null,
                config.QkvBias ? store.Add(p + "attn.v_bias", kvDim) : null,
                config.OutputBias ? store.Add(p + "attn.output_bias", d) : null,
                store.Add(p + "mlp_norm", d),
                store.Add(p + "mlp.w1", pt, f, d),
                store.Add(p + "mlp.w3", pt, f, d),
                store.Add(p + "mlp.w2", pt, d, f));
        }

        FinalNorm = store.Add("norm", d);
        Output = config.TieWordEmbeddings ? Embeddings : store.Add("output", wt, config.VocabSize, d);
        store.Allocate();
        Parameters = store;
        Layers = layers;
        Rope = new RopeTable(config.HeadDim, ropePositions, config.RopeTheta, config.RopeScaling);
    }

    /// <summary>Shape and hyperparameters.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Every parameter, in one flat buffer.</summary>
    public ParameterStore Parameters { get; }

    /// <summary>Token embeddings [V, D].</summary>
    public Parameter Embeddings { get; }

    /// <summary>Decoder layers.</summary>
    public IReadOnlyList<LlamaLayerParameters> Layers { get; }

    /// <summary>Final RMSNorm weight [D].</summary>
    public Parameter FinalNorm { get; }

    /// <summary>Output head [V, D]; the embedding matrix itself when tied.</summary>
    public Parameter Output { get; }

    /// <summary>RoPE tables for positions up to max_position_embeddings.</summary>
    public RopeTable Rope { get; }

    /// <summary>Sampling defaults and EOS ids from generation_config.json, when the model directory has one.</summary>
    public GenerationConfig? GenerationConfig { get; private set; }

    /// <summary>Creates a model with zeroed parameters (fill them, or load a checkpoint).</summary>
    public static LlamaModel Create(LlamaConfig config, ModelLoadOptions? options = null)
    {
        config.Validate("config");
        return new LlamaModel(config, RopePositions(config), options);
    }

    /// <summary>
    /// Loads a Hugging Face model directory: config.json, single or sharded safetensors (F32/F16/BF16, converted
    /// to the storage type <paramref name="options"/> asks for) and generation_config.json when present.
    /// </summary>
    public static LlamaModel LoadHf(string directory, ModelLoadOptions? options = null)
    {
        if (!Directory.Exists(directory))
        {
            throw new ModelFormatException(directory, "model directory not found");
        }

        var config = LlamaConfig.Load(Path.Combine(directory, "config.json"));
        var model = new LlamaModel(config, RopePositions(config), options)
        {
            GenerationConfig = GenerationConfig.FromModelDirectory(directory),
        };
        using var checkpoint = SafeTensorsCheckpoint.Open(directory);
        float[]? staging = null;
        foreach (var p in model.Parameters.Parameters)
        {
            var key = HfCheckpointKeys.ToHf(p.Name);
            var info = checkpoint.Find(key) ?? throw new ModelFormatException(checkpoint.Description,
                $"missing tensor '{key}' (expected shape [{string.Join(", ", p.Shape)}] for model_type {config.ModelType}); is this a {config.ModelType} checkpoint matching config.json?");
            if (!info.Shape.SequenceEqual(p.Shape.Select(x => (long)x)))
            {
                throw new ModelFormatException(checkpoint.FileOf(key),
                    $"tensor '{key}' has shape [{string.Join(", ", info.Shape)}] but config.json implies [{string.Join(", ", p.Shape)}]");
            }

            if (p.DType == ParameterDType.Float32)
            {
                checkpoint.ReadAsFloat32(key, p.Span);
            }
            else
            {
                // Narrowed through one fp32 staging buffer, reused across tensors (bf16 sources round-trip exactly).
                if (staging is null || staging.Length < p.Length)
                {
                    staging = new float[p.Length];
                }

                checkpoint.ReadAsFloat32(key, staging.AsSpan(0, (int)p.Length));
                p.CopyFrom(staging.AsSpan(0, (int)p.Length));
            }
        }

        return model;
    }

    /// <summary>Writes config.json and model.safetensors (HF keys) into <paramref name="directory"/>.</summary>
    public void SaveHf(string directory, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        Directory.CreateDirectory(directory);
        var entries = Parameters.Parameters
            .Select(p => new SafeTensorsWriter.Entry(HfCheckpointKeys.ToHf(p.Name), p.Shape.Select(x => (long)x).ToArray(),
                p.DType == ParameterDType.Float32 ? p.Memory : p.ToFloat32(), dtype))
            .ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), entries, new Dictionary<string, string> { ["format"] = "pt" });
        var configJson = Config with { TorchDType = dtype switch { SafeTensorsDType.BF16 => "bfloat16", SafeTensorsDType.F16 => "float16", _ => "float32" } };
        File.WriteAllText(Path.Combine(directory, "config.json"), configJson.ToJson());
    }

    /// <summary>Allocates the KV cache and activation buffers for sequences up to <paramref name="maxSequence"/> tokens.</summary>
    public LlamaState CreateState(int maxSequence, int maxChunk = 64, WorkerPool? pool = null)
    {
        var positions = Math.Min(maxSequence, Rope.MaxPositions);
        return new(this, positions, positions, maxChunk, pool ?? WorkerPool.Shared);
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions state.Cache.Length onwards, appending to the KV cache.
    /// Writes the logits of the last token to <paramref name="logits"/> [V], or of every token [T, V] when
    /// <paramref name="allPositions"/>.
    /// </summary>
    public void Forward(LlamaState state, ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions = false) =>
        Forward(state, state.Cache, tokens, logits, allPositions);

    /// <summary>
    /// <see cref="Forward(LlamaState, ReadOnlySpan{int}, Span{float}, bool)"/> with a LoRA adapter applied to every row
    /// without merging it (null = the base alone).
    /// </summary>
    public void Forward(LlamaState state, ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions, LoRAWeights? adapter) =>
        Forward(state, state.Cache, tokens, logits, allPositions, adapter);

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions state.Cache.Length onwards (appending to the KV cache) and writes the
    /// final hidden state of every token, after the final RMSNorm and before the head, to <paramref name="hidden"/> [T, D]
    /// (what embeddings pool). <paramref name="adapter"/>: a LoRA adapter applied without merging, or null.
    /// </summary>
    public void ForwardHidden(LlamaState state, ReadOnlySpan<int> tokens, Span<float> hidden, LoRAWeights? adapter = null)
    {
        var d = Config.HiddenSize;
        var cache = state.Cache;
        if (hidden.Length < tokens.Length * d)
        {
            throw new ArgumentException($"hidden needs {tokens.Length * d} floats, has {hidden.Length}", nameof(hidden));
        }

        if (cache.Length + tokens.Length > cache.MaxSequence)
        {
            throw new InvalidOperationException($"sequence of {cache.Length + tokens.Length} tokens exceeds the cache's {cache.MaxSequence} positions");
        }

        CheckAdapter(adapter);
        for (var done = 0; done < tokens.Length; done += state.MaxChunk)
        {
            var n = Math.Min(state.MaxChunk, tokens.Length - done);
            var start = cache.Length;
            for (var i = 0; i < n; i++)
            {
                state.Positions[i] = start + i;
            }

            DecoderLayers(state, tokens.Slice(done, n), cache, start, adapter, default);
            cache.Length = start + n;
            RmsNorm.Forward(hidden.Slice(done * d, n * d), state.Rstd.AsSpan(0, n), state.X.AsSpan(0, n * d), FinalNorm.Span, d, (float)Config.RmsNormEps);
        }
    }

    /// <summary>
    /// Decodes one new token for each of several sequences at once: row b is <paramref name="tokens"/>[b] at
    /// position caches[b].Length of its own cache. The linear layers run as one [B, D] product (Kernels/DecodeMatMul up
    /// to 32 rows), so each weight is read once per step for all B sequences; attention runs per sequence over its cache,
    /// all (sequence, head) pairs split across the pool together. Writes logits [B, V]
    /// and advances every cache by one. <paramref name="buffers"/> supplies the activations
    /// (<see cref="CreateBatchBuffers"/>).
    /// </summary>
    public void ForwardBatch(LlamaState buffers, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, Span<float> logits) =>
        ForwardBatch(buffers, caches, tokens, logits, null);

    /// <summary>
    /// <see cref="ForwardBatch(LlamaState, IReadOnlyList{KvCache}, ReadOnlySpan{int}, Span{float})"/> where row b runs with
    /// <paramref name="adapters"/>[b] applied to the projections it targets (null entries, or a null list, = the base):
    /// each row gets its own low-rank update inside the same step, so sequences on different adapters decode together.
    /// </summary>
    public void ForwardBatch(LlamaState buffers, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, Span<float> logits, IReadOnlyList<LoRAWeights?>? adapters)
    {
        var b = tokens.Length;
        if (b > buffers.MaxChunk)
        {
            throw new ArgumentException($"batch of {b} exceeds the buffers' {buffers.MaxChunk} rows", nameof(tokens));
        }

        var ones = buffers.Ones.AsSpan(0, b);
        ForwardSegments(buffers, caches, tokens, ones, logits, adapters, default);
    }

    /// <summary>
    /// Prefills several sequences in one forward pass (batched prefill): the tokens of every sequence are the rows of
    /// one set of GEMMs, so each weight is read once for all of them, while attention runs per sequence over its own
    /// cache. Sequence s contributes <paramref name="lengths"/>[s] consecutive tokens of <paramref name="tokens"/>, at
    /// positions caches[s].Length onwards (a later chunk of a long prompt continues where the last one stopped), and
    /// <paramref name="adapters"/>[s] (or null) is applied to its rows alone. Writes the logits of the last token of each
    /// sequence whose <paramref name="wantLogits"/> entry is true (all when empty), in sequence order, as consecutive
    /// rows of <paramref name="logits"/> [W, V], and advances every cache by its length. Each sequence gets what it gets
    /// prefilled alone: the rows of a GEMM do not mix, and attention never looks across sequences.
    /// </summary>
    public void ForwardPrefill(LlamaState buffers, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, ReadOnlySpan<int> lengths,
        Span<float> logits, IReadOnlyList<LoRAWeights?>? adapters = null, ReadOnlySpan<bool> wantLogits = default) =>
        ForwardSegments(buffers, caches, tokens, lengths, logits, adapters, wantLogits);

    /// <summary>
    /// <see cref="ForwardPrefill"/> that writes the final hidden state of every row (after the final RMSNorm, before
    /// the head) to <paramref name="hidden"/> [T, D] instead of logits: what embeddings of several inputs pool.
    /// </summary>
    public void ForwardPrefillHidden(LlamaState buffers, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, ReadOnlySpan<int> lengths,
        Span<float> hidden, IReadOnlyList<LoRAWeights?>? adapters = null)
    {
        var d = Config.HiddenSize;
        if (hidden.Length < tokens.Length * d)
        {
            throw new ArgumentException($"hidden needs {tokens.Length * d} floats, has {hidden.Length}", nameof(hidden));
        }

        adapters = CheckSegments(buffers, caches, tokens, lengths, adapters);
        SegmentLayers(buffers, caches, tokens, lengths, adapters);
        var t = tokens.Length;
        RmsNorm.Forward(hidden[..(t * d)], buffers.Rstd.AsSpan(0, t), buffers.X.AsSpan(0, t * d), FinalNorm.Span, d, (float)Config.RmsNormEps);
    }

    /// <summary>Activation buffers for <see cref="ForwardBatch(LlamaState, IReadOnlyList{KvCache}, ReadOnlySpan{int}, Span{float})"/> and <see cref="ForwardPrefill"/>: up to <paramref name="maxBatch"/> rows (tokens), attention over up to <paramref name="maxSequence"/> positions; no KV cache of their own.</summary>
    public LlamaState CreateBatchBuffers(int maxBatch, int maxSequence, WorkerPool? pool = null) =>
        new(this, 0, Math.Min(maxSequence, Rope.MaxPositions), Math.Max(1, maxBatch), pool ?? WorkerPool.Shared);

    private void ForwardSegments(LlamaState buffers, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, ReadOnlySpan<int> lengths,
        Span<float> logits, IReadOnlyList<LoRAWeights?>? adapters, ReadOnlySpan<bool> wantLogits)
    {
        var v = Config.VocabSize;
        var d = Config.HiddenSize;
        if (!wantLogits.IsEmpty && wantLogits.Length != lengths.Length)
        {
            throw new ArgumentException($"{lengths.Length} sequences but {wantLogits.Length} logits flags; one per sequence, or none for all", nameof(wantLogits));
        }

        var wanted = 0;
        for (var i = 0; i < lengths.Length; i++)
        {
            wanted += wantLogits.IsEmpty || wantLogits[i] ? 1 : 0;
        }

        if (logits.Length < wanted * v)
        {
            throw new ArgumentException($"logits needs {wanted * v} floats, has {logits.Length}", nameof(logits));
        }

        adapters = CheckSegments(buffers, caches, tokens, lengths, adapters);
        SegmentLayers(buffers, caches, tokens, lengths, adapters);

        // The last row of each sequence that wants logits moves up to row w (w never passes that row, so nothing
        // still needed is overwritten), then the final norm and the head run over those W rows only.
        var x = buffers.X;
        var row = 0;
        var w = 0;
        for (var i = 0; i < lengths.Length; i++)
        {
            row += lengths[i];
            if (wantLogits.IsEmpty || wantLogits[i])
            {
                if (w != row - 1)
                {
                    Array.Copy(x, (row - 1) * d, x, w * d, d);
                }

                w++;
            }
        }

        if (w > 0)
        {
            Head(buffers, 0, w, logits);
        }
    }

    // Checks a ragged batch; returns the adapters, or null when there are none to apply.
    private IReadOnlyList<LoRAWeights?>? CheckSegments(LlamaState buffers, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, ReadOnlySpan<int> lengths,
        IReadOnlyList<LoRAWeights?>? adapters)
    {
        var n = lengths.Length;
        if (caches.Count != n)
        {
            throw new ArgumentException($"{n} sequences but {caches.Count} caches; one cache per sequence", nameof(caches));
        }

        if (adapters is not null)
        {
            if (adapters.Count != n)
            {
                throw new ArgumentException($"{n} sequences but {adapters.Count} adapters; one (or null) per sequence", nameof(adapters));
            }

            var any = false;
            foreach (var adapter in adapters)
            {
                CheckAdapter(adapter);
                any |= adapter is not null;
            }

            adapters = any ? adapters : null;
        }

        var total = 0;
        for (var i = 0; i < n; i++)
        {
            var cache = caches[i];
            if (lengths[i] < 1)
            {
                throw new ArgumentException($"sequence {i} has {lengths[i]} tokens; each needs at least one", nameof(lengths));
            }

            if (cache.Length + lengths[i] > cache.MaxSequence)
            {
                throw new InvalidOperationException($"sequence {i}: {cache.Length} + {lengths[i]} tokens exceed its KV cache of {cache.MaxSequence} positions");
            }

            if (cache.MaxSequence > buffers.ScoresSequence)
            {
                throw new ArgumentException($"sequence {i} has a cache of {cache.MaxSequence} positions; the buffers' attention scratch covers {buffers.ScoresSequence}", nameof(caches));
            }

            for (var j = 0; j < i; j++)
            {
                if (ReferenceEquals(caches[j], cache))
                {
                    throw new ArgumentException($"sequences {j} and {i} share one KV cache; each needs its own", nameof(caches));
                }
            }

            total += lengths[i];
        }

        if (total != tokens.Length)
        {
            throw new ArgumentException($"the lengths add up to {total} tokens but {tokens.Length} were given", nameof(lengths));
        }

        if (total > buffers.MaxChunk)
        {
            throw new ArgumentException($"{total} tokens exceed the buffers' {buffers.MaxChunk} rows", nameof(tokens));
        }

        return adapters;
    }

    // The decoder layers over a checked ragged batch; advances every cache by its length.
    private void SegmentLayers(LlamaState s, IReadOnlyList<KvCache> caches, ReadOnlySpan<int> tokens, ReadOnlySpan<int> lengths, IReadOnlyList<LoRAWeights?>? adapters)
    {
        var row = 0;
        for (var i = 0; i < lengths.Length; i++)
        {
            var start = caches[i].Length;
            for (var j = 0; j < lengths[i]; j++, row++)
            {
                s.Positions[row] = start + j;
                s.RowSegment[row] = i;
            }
        }

        DecoderLayers(s, tokens, null, 0, null, new Segments(caches, lengths, adapters));
        for (var i = 0; i < lengths.Length; i++)
        {
            caches[i].Length += lengths[i];
        }
    }

    internal void Forward(LlamaState state, KvCache cache, ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions = false, LoRAWeights? adapter = null)
    {
        CheckAdapter(adapter);
        var v = Config.VocabSize;
        if (logits.Length < (allPositions ? tokens.Length * v : v))
        {
            throw new ArgumentException($"logits needs {(allPositions ? tokens.Length * v : v)} floats, has {logits.Length}", nameof(logits));
        }

        if (cache.Length + tokens.Length > cache.MaxSequence)
        {
            throw new InvalidOperationException($"sequence of {cache.Length + tokens.Length} tokens exceeds the cache's {cache.MaxSequence} positions");
        }

        if (cache.MaxSequence > state.ScoresSequence)
        {
            throw new ArgumentException($"a cache of {cache.MaxSequence} positions needs attention scratch the state's buffers ({state.ScoresSequence}) do not have", nameof(cache));
        }

        for (var done = 0; done < tokens.Length; done += state.MaxChunk)
        {
            var n = Math.Min(state.MaxChunk, tokens.Length - done);
            var last = done + n == tokens.Length;
            var chunkLogits = allPositions ? logits.Slice(done * v, n * v) : (last ? logits[..v] : Span<float>.Empty);
            ForwardChunk(state, cache, tokens.Slice(done, n), chunkLogits, allPositions, adapter);
        }
    }

    private void ForwardChunk(LlamaState s, KvCache cache, ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions, LoRAWeights? adapter)
    {
        var t = tokens.Length;
        var start = cache.Length;
        for (var i = 0; i < t; i++)
        {
            s.Positions[i] = start + i;
        }

        DecoderLayers(s, tokens, cache, start, adapter, default);
        cache.Length = start + t;
        if (logits.IsEmpty)
        {
            return;
        }

        // Only the rows whose logits are wanted go through the final norm and the head.
        var first = allPositions ? 0 : t - 1;
        Head(s, first, t - first, logits);
    }

    // Embedding and the L decoder layers over T rows at s.Positions. Either the T rows are consecutive
    // positions start.. of one sequence (cache, with `adapter` on every row), or they are a ragged batch
    // (segments: sequence i owns the next lengths[i] rows, its cache caches[i] and its adapter adapters[i]).
    private void DecoderLayers(LlamaState s, ReadOnlySpan<int> tokens, KvCache? cache, int start, LoRAWeights? adapter, Segments segments)
    {
        var c = Config;
        var t = tokens.Length;
        var d = c.HiddenSize;
        var h = c.NumHeads;
        var hkv = c.NumKeyValueHeads;
        var dh = c.HeadDim;
        var qDim = h * dh;
        var kvDim = hkv * dh;
        var f = c.IntermediateSize;
        var eps = (float)c.RmsNormEps;

        var x = s.X.AsSpan(0, t * d);
        var xn = s.XNorm.AsSpan(0, t * d);
        var q = s.Q.AsSpan(0, t * qDim);
        var k = s.K.AsSpan(0, t * kvDim);
        var val = s.V.AsSpan(0, t * kvDim);
        var att = s.Att.AsSpan(0, t * qDim);
        var proj = s.Proj.AsSpan(0, t * d);
        var gate = s.Gate.AsSpan(0, t * f);
        var up = s.Up.AsSpan(0, t * f);
        var hidden = s.Hidden.AsSpan(0, t * f);
        var rstd = s.Rstd.AsSpan(0, t);
        var positions = s.Positions.AsSpan(0, t);
        var lora = adapter is not null || segments.Adapters is not null;

        if (Embeddings.DType == ParameterDType.BFloat16)
        {
            Embedding.Forward(x, tokens, Embeddings.Bf16Span, d);
        }
        else
        {
            Embedding.Forward(x, tokens, Embeddings.Span, d);
        }

        for (var l = 0; l < c.NumLayers; l++)
        {
            var w = Layers[l];
            // Attention block: x += Wo · attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x))
            RmsNorm.Forward(xn, rstd, x, w.AttentionNorm.Span, d, eps);
            Project(s, q, xn, w.Wq, Bias(w.Bq), t, qDim, d);
            Project(s, k, xn, w.Wk, Bias(w.Bk), t, kvDim, d);
            Project(s, val, xn, w.Wv, Bias(w.Bv), t, kvDim, d);
            if (lora)
            {
                AddLoRA(s, s.Q, s.XNorm, t, qDim, d, l, LoRAModule.Query, adapter, segments);
                AddLoRA(s, s.K, s.XNorm, t, kvDim, d, l, LoRAModule.Key, adapter, segments);
                AddLoRA(s, s.V, s.XNorm, t, kvDim, d, l, LoRAModule.Value, adapter, segments);
            }

            Ops.Rope.Forward(q, positions, h, Rope);
            Ops.Rope.Forward(k, positions, hkv, Rope);
            if (segments.Caches is null)
            {
                cache!.Write(l, start, k, val, t);
                Attention.Forward(att, q, cache.Keys[l], cache.Values[l], s.Scores, start, t, h, hkv, dh, cache.MaxSequence, s.Pool);
            }
            else
            {
                // Each sequence writes its rows' k/v into its own cache; then every (row, head) pair of the batch
                // attends over its own sequence's cache, split across the pool in one run.
                var row = 0;
                for (var i = 0; i < segments.Lengths.Length; i++)
                {
                    var n = segments.Lengths[i];
                    segments.Caches[i].Write(l, segments.Caches[i].Length, k.Slice(row * kvDim, n * kvDim), val.Slice(row * kvDim, n * kvDim), n);
                    row += n;
                }

                s.SegmentAttention.Run(s.Att, s.Q, s.Scores, s.ScoresSequence, s.RowSegment, s.Positions, segments.Caches, l, t, h, hkv, dh, s.Pool);
            }

            Project(s, proj, att, w.Wo, Bias(w.Bo), t, d, qDim);
            if (lora)
            {
                AddLoRA(s, s.Proj, s.Att, t, d, qDim, l, LoRAModule.Output, adapter, segments);
            }

            TensorPrimitives.Add(x, proj, x);

            // MLP block: x += W2 · (silu(W1·n(x)) ⊙ W3·n(x))
            RmsNorm.Forward(xn, rstd, x, w.MlpNorm.Span, d, eps);
            Project(s, gate, xn, w.WGate, default, t, f, d);
            Project(s, up, xn, w.WUp, default, t, f, d);
            if (lora)
            {
                AddLoRA(s, s.Gate, s.XNorm, t, f, d, l, LoRAModule.Gate, adapter, segments);
                AddLoRA(s, s.Up, s.XNorm, t, f, d, l, LoRAModule.Up, adapter, segments);
            }

            SwiGlu.Forward(hidden, gate, up);
            Project(s, proj, hidden, w.WDown, default, t, d, f);
            if (lora)
            {
                AddLoRA(s, s.Proj, s.Hidden, t, d, f, l, LoRAModule.Down, adapter, segments);
            }

            TensorPrimitives.Add(x, proj, x);
        }
    }

    // Final RMSNorm and output head for rows first..first+rows of s.X.
    private void Head(LlamaState s, int first, int rows, Span<float> logits)
    {
        var d = Config.HiddenSize;
        var xn = s.XNorm.AsSpan(0, rows * d);
        RmsNorm.Forward(xn, s.Rstd.AsSpan(0, rows), s.X.AsSpan(first * d, rows * d), FinalNorm.Span, d, (float)Config.RmsNormEps);
        Project(s, logits[..(rows * Config.VocabSize)], xn, Output, default, rows, Config.VocabSize, d);
    }

    // A linear layer: NF4 weights through the QLoRA kernel that dequantises inside the GEMM (no fp32 copy of the matrix);
    // decode-sized batches (≤ 32 rows) of fp32 or bf16 weights through the kernel that streams W once for all rows;
    // everything else (prefill) through Linear.Forward.
    private void Project(LlamaState s, Span<float> output, ReadOnlySpan<float> x, Parameter weight, ReadOnlySpan<float> bias, int rows, int outFeatures, int inFeatures)
    {
        if (weight.DType == ParameterDType.Nf4)
        {
            // Nf4Linear shares the parameter's NF4 tensor and adds its bias itself.
            Nf4Projection(weight).Forward(output[..(rows * outFeatures)], x[..(rows * inFeatures)], rows, training: false);
            if (!bias.IsEmpty)
            {
                for (var r = 0; r < rows; r++)
                {
                    var row = output.Slice(r * outFeatures, outFeatures);
                    TensorPrimitives.Add(row, bias, row);
                }
            }
        }
        else if (rows > DecodeMatMul.MaxRows || !DecodeMatMul.IsAccelerated(inFeatures))
        {
            Linear.Forward(output, x, weight, bias, rows, outFeatures, inFeatures);
        }
        else if (weight.DType == ParameterDType.BFloat16)
        {
            DecodeMatMul.ForwardBf16(x, weight.Bf16Span, bias, output, rows, outFeatures, inFeatures, s.Pool);
        }
        else
        {
            DecodeMatMul.Forward(x, weight.Span, bias, output, rows, outFeatures, inFeatures, s.Pool);
        }
    }

    // The low-rank update of one projection: for every row (adapter), or for the rows of sequence i alone
    // (segments.Adapters[i]). LoRAWeights.Apply computes each row alone, so both give a row the same result, and
    // sequences on adapters can be updated in parallel (disjoint rows) without changing any of them.
    private static void AddLoRA(LlamaState s, float[] output, float[] input, int rows, int outDim, int inDim, int layer, LoRAModule module,
        LoRAWeights? adapter, Segments segments)
    {
        if (adapter is not null)
        {
            adapter.Apply(output.AsSpan(0, rows * outDim), input.AsSpan(0, rows * inDim), rows, layer, module);
            return;
        }

        if (segments.Adapters is not { } adapters)
        {
            return;
        }

        var row = 0;
        for (var i = 0; i < segments.Lengths.Length; i++)
        {
            s.SegmentStart[i] = row;
            row += segments.Lengths[i];
        }

        s.SegmentStart[segments.Lengths.Length] = row;
        s.SegmentLoRA.Run(output, input, s.SegmentStart, adapters, segments.Lengths.Length, outDim, inDim, layer, module, s.Pool);
    }

    private Nf4Linear Nf4Projection(Parameter weight)
    {
        lock (_nf4)
        {
            if (!_nf4.TryGetValue(weight, out var linear))
            {
                _nf4[weight] = linear = new Nf4Linear(weight, null);
            }

            return linear;
        }
    }

    private void CheckAdapter(LoRAWeights? adapter)
    {
        if (adapter is not null && !adapter.Fits(Config))
        {
            throw new ArgumentException($"the LoRA adapter (r={adapter.Rank}, {adapter.Layers} layers) was built for a model of another shape than this {Config.ModelType} model ({Config.NumLayers} layers, hidden size {Config.HiddenSize})", nameof(adapter));
        }
    }

    // RoPE tables cover at most 16k positions: far beyond what CPU generation reaches, and a 128k-position
    // table would cost tens of MB per model.
    private static int RopePositions(LlamaConfig config) => Math.Clamp(config.MaxPositions, 1, 16384);

    private static ReadOnlySpan<float> Bias(Parameter? p) => p is null ? default : p.Span;
}

// A ragged batch: sequence i owns the next Lengths[i] rows, its KV cache Caches[i] and its adapter Adapters[i] (a null
// list: the base for all). Default (Caches null): the rows are one sequence's.
internal readonly ref struct Segments(IReadOnlyList<KvCache>? caches, ReadOnlySpan<int> lengths, IReadOnlyList<LoRAWeights?>? adapters)
{
    public IReadOnlyList<KvCache>? Caches { get; } = caches;

    public ReadOnlySpan<int> Lengths { get; } = lengths;

    public IReadOnlyList<LoRAWeights?>? Adapters { get; } = adapters;
}

/// <summary>Per-sequence inference state: the KV cache and activation buffers, allocated once.</summary>
public sealed class LlamaState
{
    internal LlamaState(LlamaModel model, int cacheSequence, int scoresSequence, int maxChunk, WorkerPool pool)
    {
        var c = model.Config;
        Pool = pool;
        MaxChunk = Math.Max(1, maxChunk);
        ScoresSequence = scoresSequence;
        Cache = new KvCache(c, cacheSequence);
        var t = MaxChunk;
        X = new float[t * c.HiddenSize];
        XNorm = new float[t * c.HiddenSize];
        Q = new float[t * c.NumHeads * c.HeadDim];
        K = new float[t * c.NumKeyValueHeads * c.HeadDim];
        V = new float[t * c.NumKeyValueHeads * c.HeadDim];
        Att = new float[t * c.NumHeads * c.HeadDim];
        Proj = new float[t * c.HiddenSize];
        Gate = new float[t * c.IntermediateSize];
        Up = new float[t * c.IntermediateSize];
        Hidden = new float[t * c.IntermediateSize];
        Rstd = new float[t];
        Positions = new int[t];
        RowSegment = new int[t];
        SegmentStart = new int[t + 1];
        Ones = new int[t];
        Array.Fill(Ones, 1);
        Scores = new float[Attention.ScratchLength(scoresSequence, pool)];
    }

    /// <summary>The KV cache; its Length is the number of tokens processed.</summary>
    public KvCache Cache { get; }

    /// <summary>Largest number of tokens one forward chunk processes (longer prompts are split).</summary>
    public int MaxChunk { get; }

    internal WorkerPool Pool { get; }

    internal int ScoresSequence { get; }

    internal float[] X { get; }

    internal float[] XNorm { get; }

    internal float[] Q { get; }

    internal float[] K { get; }

    internal float[] V { get; }

    internal float[] Att { get; }

    internal float[] Proj { get; }

    internal float[] Gate { get; }

    internal float[] Up { get; }

    internal float[] Hidden { get; }

    internal float[] Rstd { get; }

    internal int[] Positions { get; }

    // Ragged batches: the sequence of each row, and a run of ones (the lengths of a decode step).
    internal int[] RowSegment { get; }

    internal int[] Ones { get; }

    internal int[] SegmentStart { get; }

    internal SegmentAttention SegmentAttention { get; } = new();

    internal SegmentLoRA SegmentLoRA { get; } = new();

    internal float[] Scores { get; }

    /// <summary>Forgets the sequence so the state can be reused.</summary>
    public void Reset() => Cache.Reset();
}
