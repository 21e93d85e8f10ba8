// A LoRA linear layer by composition: a frozen base module (fp32, bf16 or NF4) plus the low-rank path of
// LoRAOp over adapter parameters A [R, I] and B [O, R]. Dropout on the LoRA input is a deterministic hash
// of (seed, round, module, element), so activation checkpointing's recompute sees the same mask; the
// round advances after each backward.
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Training.Peft;

/// <summary>y = base(x) + s·B·A·dropout(x), with A and B trainable and the base frozen.</summary>
public sealed class LoRALinear : ITrainableLinear
{
    [ThreadStatic]
    private static float[]? _dropped;

    [ThreadStatic]
    private static float[]? _scratch;

    private readonly ParameterGradients _gradients;
    private readonly ulong _id;
    private float[] _u = [];

    /// <summary>Wraps a frozen <paramref name="baseLayer"/> with adapter parameters <paramref name="a"/> [R, I] and <paramref name="b"/> [O, R].</summary>
    public LoRALinear(ITrainableLinear baseLayer, Parameter a, Parameter b, ParameterGradients gradients, float scale, float dropout, ulong seed, int moduleId)
    {
        Base = baseLayer;
        A = a;
        B = b;
        _gradients = gradients;
        Scale = scale;
        Dropout = dropout;
        Rank = a.Shape[0];
        _id = seed ^ ((ulong)moduleId * 0x9E3779B97F4A7C15UL);
        if (a.Shape[1] != baseLayer.InFeatures || b.Shape[0] != baseLayer.OutFeatures || b.Shape[1] != Rank)
        {
            throw new ArgumentException($"LoRA shapes A [{string.Join(", ", a.Shape)}], B [{string.Join(", ", b.Shape)}] do not fit a {baseLayer.OutFeatures}×{baseLayer.InFeatures} base");
        }
    }

    /// <summary>The frozen base layer.</summary>
    public ITrainableLinear Base { get; }

    /// <summary>lora_A [R, I].</summary>
    public Parameter A { get; }

    /// <summary>lora_B [O, R].</summary>
    public Parameter B { get; }

    /// <summary>s: α/r (or α/√r with rsLoRA).</summary>
    public float Scale { get; }

    /// <summary>Dropout probability on the LoRA input.</summary>
    public float Dropout { get; }

    /// <summary>R.</summary>
    public int Rank { get; }

    /// <summary>Backward passes so far: the dropout masks' random state (saved and restored by checkpoints).</summary>
    public long Round { get; set; }

    /// <inheritdoc/>
    public int InFeatures => Base.InFeatures;

    /// <inheritdoc/>
    public int OutFeatures => Base.OutFeatures;

    /// <inheritdoc/>
    public void Forward(Span<float> output, ReadOnlySpan<float> x, int rows, bool training)
    {
        Base.Forward(output, x, rows, training);
        if (_u.Length < rows * Rank)
        {
            _u = new float[rows * Rank];
        }

        var input = training && Dropout > 0 ? Dropped(x, rows) : x;
        LoRAOp.Forward(output, _u, Scratch(rows * Rank), input, A.Span, B.Span, rows, OutFeatures, InFeatures, Rank, Scale);
    }

    /// <inheritdoc/>
    public void Backward(Span<float> dx, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, int rows)
    {
        Base.Backward(dx, dOutput, x, rows);
        var n = rows * InFeatures;
        if (Dropout > 0)
        {
            // dx̃ into scratch, then through the mask: dx += dx̃ ⊙ mask / (1 − p).
            var dropped = Dropped(x, rows);
            var dxd = new float[n];
            LoRAOp.Backward(dxd, _gradients[A], _gradients[B], Scratch(rows * Rank), dOutput, dropped, _u, A.Span, B.Span, rows, OutFeatures, InFeatures, Rank, Scale);
            if (!dx.IsEmpty)
            {
                var keep = 1f / (1 - Dropout);
                for (var i = 0; i < n; i++)
                {
                    dx[i] += Kept(i) ? dxd[i] * keep : 0;
                }
            }
        }
        else
        {
            LoRAOp.Backward(dx, _gradients[A], _gradients[B], Scratch(rows * Rank), dOutput, x, _u, A.Span, B.Span, rows, OutFeatures, InFeatures, Rank, Scale);
        }

        Round++;
    }

    private ReadOnlySpan<float> Dropped(ReadOnlySpan<float> x, int rows)
    {
        var n = rows * InFeatures;
        if (_dropped is null || _dropped.Length < n)
        {
            _dropped = new float[n];
        }

        var keep = 1f / (1 - Dropout);
        for (var i = 0; i < n; i++)
        {
            _dropped[i] = Kept(i) ? x[i] * keep : 0;
        }

        return _dropped.AsSpan(0, n);
    }

    // SplitMix64 of (module, round, element): uniform in [0, 1) from the top 24 bits.
    private bool Kept(int index)
    {
        var z = _id + (ulong)Round * 0xD1B54A32D192ED03UL + (ulong)index * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 40) * (1.0 / (1 << 24)) >= Dropout;
    }

    private static Span<float> Scratch(int length)
    {
        if (_scratch is null || _scratch.Length < length)
        {
            _scratch = new float[length];
        }

        return _scratch.AsSpan(0, length);
    }
}
