// The training graph of a Llama-family decoder over a packed batch of N = B·T rows:
//
//   x₀ = Embedding(tokens)
//   for l in 0..L:  a = x_l + o_proj(Attention(RoPE(q_proj(n₁)), RoPE(k_proj(n₁)), v_proj(n₁)))   n₁ = RmsNorm(x_l)
//                   x_{l+1} = a + down_proj(SwiGLU(gate_proj(n₂), up_proj(n₂)))                  n₂ = RmsNorm(a)
//   loss = Σ_{rows with a target} CE(head(RmsNorm(x_L)), target) · gradScale
//
// ForwardBackward runs the forward pass caching each layer's activations, the head and cross-entropy in
// chunks (forward and backward together, Ops/CrossEntropyOp), then every op's Backward in exact reverse
// order, accumulating into the gradients. With activation checkpointing only each layer's input x_l is
// kept; backward recomputes the layer's forward into one shared cache just before its backward.
//
// Per-layer cache (B batch, T sequence, N = B·T, D model, H/Hkv heads, Dh head dim, F MLP hidden):
//   rstd1, rstd2 [N]; n1, a, n2 [N, D]; q [N, H·Dh]; k, v [N, Hkv·Dh]; probs [B, H, T, T];
//   att [N, H·Dh]; gate, up, hidden [N, F].   Plus x_l [N, D] for every layer and the final norm.
// Reference: HF LlamaForCausalLM.forward with labels (shifted inside the batch here); llm.c gpt2_forward /
// gpt2_backward for the structure.
using System.Numerics.Tensors;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Ops;

namespace TuningPlatform.Engine.Training;

/// <summary>Where a projection sits, for factories that choose dense, LoRA or quantised modules.</summary>
/// <param name="Layer">Decoder layer index.</param>
/// <param name="Name">PEFT target-module name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.</param>
/// <param name="Weight">The model's weight [O, I].</param>
/// <param name="Bias">The model's bias [O], if any.</param>
public sealed record ProjectionSlot(int Layer, string Name, Parameter Weight, Parameter? Bias);

/// <summary>Shape and memory choices of a training graph.</summary>
public sealed record TrainingGraphOptions
{
    /// <summary>Rows of the head + cross-entropy computed at once (logits scratch is this × V: 65 MB at V = 32000); fewer chunks stream the head weight and its gradient fewer times.</summary>
    public int LossChunkRows { get; init; } = 512;

    /// <summary>Keep only each layer's input and recompute the layer in backward (less memory, about one more forward).</summary>
    public bool ActivationCheckpointing { get; init; }
}

/// <summary>Loss of one forward pass: Σ per-token cross-entropy over <see cref="Tokens"/> target tokens.</summary>
/// <param name="Sum">Σ of per-token losses.</param>
/// <param name="Tokens">Tokens that carried a loss.</param>
public readonly record struct LossSum(double Sum, int Tokens)
{
    /// <summary>Target tokens whose largest logit is the target (argmax = label).</summary>
    public int Correct { get; init; }

    /// <summary>Mean loss per target token.</summary>
    public double Mean => Tokens == 0 ? 0 : Sum / Tokens;

    /// <summary>Mean token accuracy: <see cref="Correct"/> / <see cref="Tokens"/>.</summary>
    public double Accuracy => Tokens == 0 ? 0 : (double)Correct / Tokens;
}

/// <summary>Forward and backward passes of a <see cref="LlamaModel"/> over packed batches, with every activation buffer sized once.</summary>
public sealed class LlamaTrainingModel
{
    private static readonly string[] ProjectionNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    private readonly LlamaModel _model;
    private readonly ParameterGradients? _gradients;
    private readonly ITrainableLinear[][] _projections;
    private readonly LayerCache[] _caches;
    private readonly float[][] _layerInputs;
    private readonly float[] _finalRstd;
    private readonly float[] _finalNorm;
    private readonly float[] _dFinalNorm;
    private readonly float[] _lossScratch;
    private readonly float[] _dX;
    private readonly float[] _dXn;
    private readonly float[] _dQ;
    private readonly float[] _dK;
    private readonly float[] _dV;
    private readonly float[] _dAtt;
    private readonly float[] _dGate;
    private readonly float[] _dUp;
    private readonly float[] _dHidden;
    private readonly float[] _proj;
    private readonly int _chunkRows;

    /// <summary>
    /// Builds the graph for batches up to <paramref name="maxBatch"/> × <paramref name="sequence"/>. <paramref name="gradients"/>
    /// receives the gradients of the model's own parameters (null freezes embeddings, norms and head: adapter
    /// training); <paramref name="projections"/> chooses each projection's module (default: dense over the model's weight).
    /// </summary>
    public LlamaTrainingModel(LlamaModel model, int maxBatch, int sequence, ParameterGradients? gradients,
        Func<ProjectionSlot, ITrainableLinear>? projections = null, TrainingGraphOptions? options = null)
    {
        options ??= new TrainingGraphOptions();
        var c = model.Config;
        if (sequence > model.Rope.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(sequence), $"sequence {sequence} exceeds the model's RoPE table of {model.Rope.MaxPositions} positions");
        }

        _model = model;
        _gradients = gradients;
        MaxBatch = maxBatch;
        Sequence = sequence;
        Options = options;
        projections ??= slot => slot.Weight.DType == ParameterDType.Nf4 && gradients is null
            ? new Quantization.Nf4Linear(slot.Weight, slot.Bias)
            : new DenseLinear(slot.Weight, slot.Bias, gradients);
        _projections = new ITrainableLinear[c.NumLayers][];
        for (var l = 0; l < c.NumLayers; l++)
        {
            var w = model.Layers[l];
            _projections[l] =
            [
                projections(new ProjectionSlot(l, "q_proj", w.Wq, w.Bq)),
                projections(new ProjectionSlot(l, "k_proj", w.Wk, w.Bk)),
                projections(new ProjectionSlot(l, "v_proj", w.Wv, w.Bv)),
                projections(new ProjectionSlot(l, "o_proj", w.Wo, w.Bo)),
                projections(new ProjectionSlot(l, "gate_proj", w.WGate, null)),
                projections(new ProjectionSlot(l, "up_proj", w.WUp, null)),
                projections(new ProjectionSlot(l, "down_proj", w.WDown, null)),
            ];
        }

        var n = maxBatch * sequence;
        var d = c.HiddenSize;
        var qDim = c.NumHeads * c.HeadDim;
        var kvDim = c.NumKeyValueHeads * c.HeadDim;
        var f = c.IntermediateSize;
        _caches = new LayerCache[options.ActivationCheckpointing ? 1 : c.NumLayers];
        for (var i = 0; i < _caches.Length; i++)
        {
            _caches[i] = new LayerCache(n, d, qDim, kvDim, f, AttentionOp.ProbsLength(maxBatch, sequence, c.NumHeads));
        }

        _layerInputs = new float[c.NumLayers + 1][];
        for (var l = 0; l <= c.NumLayers; l++)
        {
            _layerInputs[l] = new float[n * d];
        }

        _finalRstd = new float[n];
        _finalNorm = new float[n * d];
        _dFinalNorm = new float[n * d];
        _chunkRows = Math.Max(1, Math.Min(options.LossChunkRows, n));
        _lossScratch = new float[CrossEntropyOp.ScratchLength(_chunkRows, c.VocabSize, d)];
        _dX = new float[n * d];
        _dXn = new float[n * d];
        _dQ = new float[n * qDim];
        _dK = new float[n * kvDim];
        _dV = new float[n * kvDim];
        _dAtt = new float[n * qDim];
        _dGate = new float[n * f];
        _dUp = new float[n * f];
        _dHidden = new float[n * f];
        _proj = new float[n * d];
    }

    /// <summary>The model whose parameters are read (and trained, when gradients were given).</summary>
    public LlamaModel Model => _model;

    /// <summary>Gradients of the model's own parameters, or null when they are frozen.</summary>
    public ParameterGradients? Gradients => _gradients;

    /// <summary>Largest B.</summary>
    public int MaxBatch { get; }

    /// <summary>T.</summary>
    public int Sequence { get; }

    /// <summary>Graph options.</summary>
    public TrainingGraphOptions Options { get; }

    /// <summary>The module of projection <paramref name="name"/> (q_proj … down_proj) in layer <paramref name="layer"/>.</summary>
    public ITrainableLinear Projection(int layer, string name) => _projections[layer][Array.IndexOf(ProjectionNames, name)];

    /// <summary>Bytes held by activation caches and gradient scratch (not parameters, gradients or optimizer state).</summary>
    public long ActivationBytes =>
        4L * (_caches.Sum(x => x.Length) + _layerInputs.Sum(x => (long)x.Length) + _finalRstd.Length + _finalNorm.Length + _dFinalNorm.Length
              + _lossScratch.Length + _dX.Length + _dXn.Length + _dQ.Length + _dK.Length + _dV.Length + _dAtt.Length
              + _dGate.Length + _dUp.Length + _dHidden.Length + _proj.Length);

    /// <summary>
    /// Forward and backward over <paramref name="batch"/>: returns the summed loss and accumulates gradients of
    /// Σ loss · <paramref name="gradScale"/> (pass 1 / target tokens of the whole optimizer step for a mean).
    /// </summary>
    public LossSum ForwardBackward(TrainingBatch batch, float gradScale)
    {
        CheckBatch(batch);
        var n = batch.Batch * batch.Sequence;
        var d = _model.Config.HiddenSize;
        Forward(batch, keepCaches: !Options.ActivationCheckpointing, training: true);

        // Head and cross-entropy: forward and backward together, chunk by chunk.
        var xL = _layerInputs[_model.Config.NumLayers].AsSpan(0, n * d);
        var dNorm = _dFinalNorm.AsSpan(0, n * d);
        dNorm.Clear();
        var headGrad = _gradients is null ? default : _gradients[_model.Output];
        var sum = CrossEntropyOp.ForwardBackward<float>(dNorm, headGrad, _finalNorm.AsSpan(0, n * d), _model.Output.Span, batch.Targets,
            _model.Config.VocabSize, d, gradScale, _chunkRows, _lossScratch, out var correct);

        var dX = _dX.AsSpan(0, n * d);
        dX.Clear();
        RmsNormOp.Backward<float>(dX, _gradients is null ? default : _gradients[_model.FinalNorm], dNorm, xL, _model.FinalNorm.Span,
            _finalRstd.AsSpan(0, n), d);

        for (var l = _model.Config.NumLayers - 1; l >= 0; l--)
        {
            var cache = _caches[Options.ActivationCheckpointing ? 0 : l];
            if (Options.ActivationCheckpointing)
            {
                LayerForward(l, batch, cache, training: true);
            }

            LayerBackward(l, batch, cache);
        }

        if (_gradients is not null)
        {
            EmbeddingOp.Backward<float>(_gradients[_model.Embeddings], batch.Tokens, dX, d);
        }

        return new LossSum(sum, batch.TargetCount) { Correct = correct };
    }

    /// <summary>The loss alone (validation): no gradients, no backward caches beyond one layer's.</summary>
    public LossSum Loss(TrainingBatch batch)
    {
        CheckBatch(batch);
        var n = batch.Batch * batch.Sequence;
        Forward(batch, keepCaches: false, training: false);
        var sum = CrossEntropyOp.ForwardBackward<float>(default, default, _finalNorm.AsSpan(0, n * _model.Config.HiddenSize), _model.Output.Span,
            batch.Targets, _model.Config.VocabSize, _model.Config.HiddenSize, 0, _chunkRows, _lossScratch, out var correct);
        return new LossSum(sum, batch.TargetCount) { Correct = correct };
    }

    private void CheckBatch(TrainingBatch batch)
    {
        if (batch.Batch > MaxBatch || batch.Sequence != Sequence)
        {
            throw new ArgumentException($"batch is {batch.Batch}×{batch.Sequence}; this graph was built for up to {MaxBatch}×{Sequence}", nameof(batch));
        }
    }

    private void Forward(TrainingBatch batch, bool keepCaches, bool training)
    {
        var c = _model.Config;
        var n = batch.Batch * batch.Sequence;
        var d = c.HiddenSize;
        if (_model.Embeddings.DType == ParameterDType.BFloat16)
        {
            Engine.Ops.Embedding.Forward(_layerInputs[0].AsSpan(0, n * d), batch.Tokens, _model.Embeddings.Bf16Span, d);
        }
        else
        {
            EmbeddingOp.Forward<float>(_layerInputs[0].AsSpan(0, n * d), batch.Tokens, _model.Embeddings.Span, d);
        }

        for (var l = 0; l < c.NumLayers; l++)
        {
            LayerForward(l, batch, _caches[keepCaches ? l : 0], training);
        }

        RmsNormOp.Forward<float>(_finalNorm.AsSpan(0, n * d), _finalRstd.AsSpan(0, n), _layerInputs[c.NumLayers].AsSpan(0, n * d),
            _model.FinalNorm.Span, d, (float)c.RmsNormEps);
    }

    // Layer l: reads x_l from _layerInputs[l], writes x_{l+1} to _layerInputs[l + 1], caches into s.
    private void LayerForward(int l, TrainingBatch batch, LayerCache s, bool training)
    {
        var c = _model.Config;
        var w = _model.Layers[l];
        var p = _projections[l];
        var (b, t) = (batch.Batch, batch.Sequence);
        var n = b * t;
        var d = c.HiddenSize;
        var qDim = c.NumHeads * c.HeadDim;
        var kvDim = c.NumKeyValueHeads * c.HeadDim;
        var f = c.IntermediateSize;
        var eps = (float)c.RmsNormEps;
        var x = _layerInputs[l].AsSpan(0, n * d);
        var xOut = _layerInputs[l + 1].AsSpan(0, n * d);
        var proj = _proj.AsSpan(0, n * d);

        // Attention block.
        RmsNormOp.Forward<float>(s.N1.AsSpan(0, n * d), s.Rstd1.AsSpan(0, n), x, w.AttentionNorm.Span, d, eps);
        p[0].Forward(s.Q.AsSpan(0, n * qDim), s.N1.AsSpan(0, n * d), n, training);
        p[1].Forward(s.K.AsSpan(0, n * kvDim), s.N1.AsSpan(0, n * d), n, training);
        p[2].Forward(s.V.AsSpan(0, n * kvDim), s.N1.AsSpan(0, n * d), n, training);
        RopeOp.Forward<float>(s.Q.AsSpan(0, n * qDim), batch.Positions, c.NumHeads, _model.Rope);
        RopeOp.Forward<float>(s.K.AsSpan(0, n * kvDim), batch.Positions, c.NumKeyValueHeads, _model.Rope);
        AttentionOp.Forward<float>(s.Att.AsSpan(0, n * qDim), s.Probs, s.Q.AsSpan(0, n * qDim), s.K.AsSpan(0, n * kvDim), s.V.AsSpan(0, n * kvDim),
            batch.Positions, b, t, c.NumHeads, c.NumKeyValueHeads, c.HeadDim);
        p[3].Forward(proj, s.Att.AsSpan(0, n * qDim), n, training);
        TensorPrimitives.Add(x, proj, s.A.AsSpan(0, n * d));

        // MLP block.
        RmsNormOp.Forward<float>(s.N2.AsSpan(0, n * d), s.Rstd2.AsSpan(0, n), s.A.AsSpan(0, n * d), w.MlpNorm.Span, d, eps);
        p[4].Forward(s.Gate.AsSpan(0, n * f), s.N2.AsSpan(0, n * d), n, training);
        p[5].Forward(s.Up.AsSpan(0, n * f), s.N2.AsSpan(0, n * d), n, training);
        SwiGluOp.Forward<float>(s.Hidden.AsSpan(0, n * f), s.Gate.AsSpan(0, n * f), s.Up.AsSpan(0, n * f));
        p[6].Forward(proj, s.Hidden.AsSpan(0, n * f), n, training);
        TensorPrimitives.Add(s.A.AsSpan(0, n * d), proj, xOut);
    }

    // Layer l in reverse: _dX holds dL/dx_{l+1} on entry and dL/dx_l on exit.
    private void LayerBackward(int l, TrainingBatch batch, LayerCache s)
    {
        var c = _model.Config;
        var w = _model.Layers[l];
        var p = _projections[l];
        var (b, t) = (batch.Batch, batch.Sequence);
        var n = b * t;
        var d = c.HiddenSize;
        var qDim = c.NumHeads * c.HeadDim;
        var kvDim = c.NumKeyValueHeads * c.HeadDim;
        var f = c.IntermediateSize;
        var dX = _dX.AsSpan(0, n * d);
        var dXn = _dXn.AsSpan(0, n * d);

        // MLP block: x_{l+1} = a + down(swiglu(gate(n2), up(n2))); the residual passes dX through unchanged.
        var dHidden = Cleared(_dHidden, n * f);
        p[6].Backward(dHidden, dX, s.Hidden.AsSpan(0, n * f), n);
        var dGate = Cleared(_dGate, n * f);
        var dUp = Cleared(_dUp, n * f);
        SwiGluOp.Backward<float>(dGate, dUp, dHidden, s.Gate.AsSpan(0, n * f), s.Up.AsSpan(0, n * f));
        dXn.Clear();
        p[4].Backward(dXn, dGate, s.N2.AsSpan(0, n * d), n);
        p[5].Backward(dXn, dUp, s.N2.AsSpan(0, n * d), n);
        RmsNormOp.Backward<float>(dX, Grad(w.MlpNorm), dXn, s.A.AsSpan(0, n * d), w.MlpNorm.Span, s.Rstd2.AsSpan(0, n), d);

        // Attention block: a = x_l + o(attention(rope(q(n1)), rope(k(n1)), v(n1))).
        var dAtt = Cleared(_dAtt, n * qDim);
        p[3].Backward(dAtt, dX, s.Att.AsSpan(0, n * qDim), n);
        var dQ = Cleared(_dQ, n * qDim);
        var dK = Cleared(_dK, n * kvDim);
        var dV = Cleared(_dV, n * kvDim);
        AttentionOp.Backward<float>(dQ, dK, dV, dAtt, s.Probs, s.Q.AsSpan(0, n * qDim), s.K.AsSpan(0, n * kvDim), s.V.AsSpan(0, n * kvDim),
            batch.Positions, b, t, c.NumHeads, c.NumKeyValueHeads, c.HeadDim);
        RopeOp.Backward<float>(dQ, batch.Positions, c.NumHeads, _model.Rope);
        RopeOp.Backward<float>(dK, batch.Positions, c.NumKeyValueHeads, _model.Rope);
        dXn.Clear();
        p[0].Backward(dXn, dQ, s.N1.AsSpan(0, n * d), n);
        p[1].Backward(dXn, dK, s.N1.AsSpan(0, n * d), n);
        p[2].Backward(dXn, dV, s.N1.AsSpan(0, n * d), n);
        RmsNormOp.Backward<float>(dX, Grad(w.AttentionNorm), dXn, _layerInputs[l].AsSpan(0, n * d), w.AttentionNorm.Span, s.Rstd1.AsSpan(0, n), d);
    }

    private Span<float> Grad(Parameter p) => _gradients is null ? default : _gradients[p];

    private static Span<float> Cleared(float[] buffer, int length)
    {
        var span = buffer.AsSpan(0, length);
        span.Clear();
        return span;
    }

    private sealed class LayerCache(int n, int d, int qDim, int kvDim, int f, long probs)
    {
        public float[] Rstd1 { get; } = new float[n];
        public float[] N1 { get; } = new float[n * d];
        public float[] Q { get; } = new float[n * qDim];
        public float[] K { get; } = new float[n * kvDim];
        public float[] V { get; } = new float[n * kvDim];
        public float[] Probs { get; } = new float[probs];
        public float[] Att { get; } = new float[n * qDim];
        public float[] A { get; } = new float[n * d];
        public float[] Rstd2 { get; } = new float[n];
        public float[] N2 { get; } = new float[n * d];
        public float[] Gate { get; } = new float[n * f];
        public float[] Up { get; } = new float[n * f];
        public float[] Hidden { get; } = new float[n * f];

        public long Length => (long)Rstd1.Length + N1.Length + Q.Length + K.Length + V.Length + Probs.Length + Att.Length + A.Length
                              + Rstd2.Length + N2.Length + Gate.Length + Up.Length + Hidden.Length;
    }
}
