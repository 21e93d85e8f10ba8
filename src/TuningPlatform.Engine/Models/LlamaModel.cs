using System.Numerics.Tensors;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Ops;
using TuningPlatform.Engine.Threading;

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

/// <summary>
/// A Llama-family decoder (Llama 2/3, TinyLlama, SmolLM2, Mistral, Qwen2): embedding → L × (RMSNorm →
/// GQA attention with RoPE → residual → RMSNorm → SwiGLU MLP → residual) → RMSNorm → output head.
/// Parameters live in one <see cref="ParameterStore"/>; the forward pass runs over the preallocated
/// buffers of a <see cref="LlamaState"/>.
/// </summary>
public sealed class LlamaModel
{
    private LlamaModel(LlamaConfig config, int ropePositions)
    {
        Config = config;
        var d = config.HiddenSize;
        var qDim = config.NumHeads * config.HeadDim;
        var kvDim = config.NumKeyValueHeads * config.HeadDim;
        var f = config.IntermediateSize;
        var store = new ParameterStore();
        Embeddings = store.Add("tok_embeddings", config.VocabSize, d);
        var layers = new LlamaLayerParameters[config.NumLayers];
        for (var l = 0; l < config.NumLayers; l++)
        {
            var p = $"layers.{l}.";
            layers[l] = new LlamaLayerParameters(
                store.Add(p + "sa_norm", d),
                store.Add(p + "attn.q_proj", qDim, d),
                store.Add(p + "attn.k_proj", kvDim, d),
                store.Add(p + "attn.v_proj", kvDim, d),
                store.Add(p + "attn.output_proj", d, qDim),
                config.QkvBias ? store.Add(p + "attn.q_bias", qDim) : null,
                config.QkvBias ? store.Add(p + "attn.k_bias", kvDim) : null,
                config.QkvBias ? store.Add(p + "attn.v_bias", kvDim) : null,
                config.OutputBias ? store.Add(p + "attn.output_bias", d) : null,
                store.Add(p + "mlp_norm", d),
                store.Add(p + "mlp.w1", f, d),
                store.Add(p + "mlp.w3", f, d),
                store.Add(p + "mlp.w2", d, f));
        }

        FinalNorm = store.Add("norm", d);
        Output = config.TieWordEmbeddings ? Embeddings : store.Add("output", config.VocabSize, d);
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

    /// <summary>Creates a model with zeroed parameters (fill them, or load a checkpoint).</summary>
    public static LlamaModel Create(LlamaConfig config)
    {
        config.Validate("config");
        return new LlamaModel(config, RopePositions(config));
    }

    /// <summary>Loads a Hugging Face model directory: config.json and single or sharded safetensors (F32/F16/BF16).</summary>
    public static LlamaModel LoadHf(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new ModelFormatException(directory, "model directory not found");
        }

        var config = LlamaConfig.Load(Path.Combine(directory, "config.json"));
        var model = new LlamaModel(config, RopePositions(config));
        using var checkpoint = SafeTensorsCheckpoint.Open(directory);
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

            checkpoint.ReadAsFloat32(key, p.Span);
        }

        return model;
    }

    /// <summary>Writes config.json and model.safetensors (HF keys) into <paramref name="directory"/>.</summary>
    public void SaveHf(string directory, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        Directory.CreateDirectory(directory);
        var entries = Parameters.Parameters
            .Select(p => new SafeTensorsWriter.Entry(HfCheckpointKeys.ToHf(p.Name), p.Shape.Select(x => (long)x).ToArray(), p.Memory, dtype))
            .ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), entries, new Dictionary<string, string> { ["format"] = "pt" });
        var configJson = Config with { TorchDType = dtype switch { SafeTensorsDType.BF16 => "bfloat16", SafeTensorsDType.F16 => "float16", _ => "float32" } };
        File.WriteAllText(Path.Combine(directory, "config.json"), configJson.ToJson());
    }

    /// <summary>Allocates the KV cache and activation buffers for sequences up to <paramref name="maxSequence"/> tokens.</summary>
    public LlamaState CreateState(int maxSequence, int maxChunk = 64, WorkerPool? pool = null) =>
        new(this, Math.Min(maxSequence, Rope.MaxPositions), maxChunk, pool ?? WorkerPool.Shared);

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions state.Cache.Length onwards, appending to the KV cache.
    /// Writes the logits of the last token to <paramref name="logits"/> [V], or of every token [T, V] when
    /// <paramref name="allPositions"/>.
    /// </summary>
    public void Forward(LlamaState state, ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions = false)
    {
        var v = Config.VocabSize;
        if (logits.Length < (allPositions ? tokens.Length * v : v))
        {
            throw new ArgumentException($"logits needs {(allPositions ? tokens.Length * v : v)} floats, has {logits.Length}", nameof(logits));
        }

        if (state.Cache.Length + tokens.Length > state.Cache.MaxSequence)
        {
            throw new InvalidOperationException($"sequence of {state.Cache.Length + tokens.Length} tokens exceeds the state's {state.Cache.MaxSequence} positions");
        }

        for (var done = 0; done < tokens.Length; done += state.MaxChunk)
        {
            var n = Math.Min(state.MaxChunk, tokens.Length - done);
            var last = done + n == tokens.Length;
            var chunkLogits = allPositions ? logits.Slice(done * v, n * v) : (last ? logits[..v] : Span<float>.Empty);
            ForwardChunk(state, tokens.Slice(done, n), chunkLogits, allPositions);
        }
    }

    private void ForwardChunk(LlamaState s, ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions)
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
        var start = s.Cache.Length;

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
        for (var i = 0; i < t; i++)
        {
            positions[i] = start + i;
        }

        Embedding.Forward(x, tokens, Embeddings.Span, d);
        for (var l = 0; l < c.NumLayers; l++)
        {
            var w = Layers[l];
            // Attention block: x += Wo · attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x))
            RmsNorm.Forward(xn, rstd, x, w.AttentionNorm.Span, d, eps);
            Linear.Forward(q, xn, w.Wq.Span, Bias(w.Bq), t, qDim, d);
            Linear.Forward(k, xn, w.Wk.Span, Bias(w.Bk), t, kvDim, d);
            Linear.Forward(val, xn, w.Wv.Span, Bias(w.Bv), t, kvDim, d);
            Ops.Rope.Forward(q, positions, h, Rope);
            Ops.Rope.Forward(k, positions, hkv, Rope);
            s.Cache.Write(l, start, k, val, t);
            Attention.Forward(att, q, s.Cache.Keys[l], s.Cache.Values[l], s.Scores, start, t, h, hkv, dh, s.Cache.MaxSequence, s.Pool);
            Linear.Forward(proj, att, w.Wo.Span, Bias(w.Bo), t, d, qDim);
            TensorPrimitives.Add(x, proj, x);

            // MLP block: x += W2 · (silu(W1·n(x)) ⊙ W3·n(x))
            RmsNorm.Forward(xn, rstd, x, w.MlpNorm.Span, d, eps);
            Linear.Forward(gate, xn, w.WGate.Span, default, t, f, d);
            Linear.Forward(up, xn, w.WUp.Span, default, t, f, d);
            SwiGlu.Forward(hidden, gate, up);
            Linear.Forward(proj, hidden, w.WDown.Span, default, t, d, f);
            TensorPrimitives.Add(x, proj, x);
        }

        s.Cache.Length = start + t;
        if (logits.IsEmpty)
        {
            return;
        }

        // Only the rows whose logits are wanted go through the final norm and the head.
        var first = allPositions ? 0 : t - 1;
        var rows = t - first;
        RmsNorm.Forward(xn[..(rows * d)], rstd, x.Slice(first * d, rows * d), FinalNorm.Span, d, eps);
        Linear.Forward(logits[..(rows * c.VocabSize)], xn[..(rows * d)], Output.Span, default, rows, c.VocabSize, d);
    }

    // RoPE tables cover at most 16k positions: far beyond what CPU generation reaches, and a 128k-position
    // table would cost tens of MB per model.
    private static int RopePositions(LlamaConfig config) => Math.Clamp(config.MaxPositions, 1, 16384);

    private static ReadOnlySpan<float> Bias(Parameter? p) => p is null ? default : p.Span;
}

/// <summary>Per-sequence inference state: the KV cache and activation buffers, allocated once.</summary>
public sealed class LlamaState
{
    internal LlamaState(LlamaModel model, int maxSequence, int maxChunk, WorkerPool pool)
    {
        var c = model.Config;
        Pool = pool;
        MaxChunk = Math.Max(1, maxChunk);
        Cache = new KvCache(c, maxSequence);
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
        Scores = new float[Attention.ScratchLength(maxSequence, pool)];
    }

    /// <summary>The KV cache; its Length is the number of tokens processed.</summary>
    public KvCache Cache { get; }

    /// <summary>Largest number of tokens one forward chunk processes (longer prompts are split).</summary>
    public int MaxChunk { get; }

    internal WorkerPool Pool { get; }

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

    internal float[] Scores { get; }

    /// <summary>Forgets the sequence so the state can be reused.</summary>
    public void Reset() => Cache.Reset();
}
