// AdamW with decoupled weight decay, over the flat buffers of one ParameterStore (Loshchilov & Hutter 2019):
//   p ← p · (1 − lr · λ)                          decay only where the parameter is a matrix (not norms, biases)
//   m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
//   p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
// State: m, v [P] (P = fp32 elements of the store), step t. Parameters, gradients and moments share one
// layout, so the step is one loop per parameter range.
// Reference: torch.optim.AdamW (single-tensor path), whose operation order this follows.
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Training.Optim;

/// <summary>AdamW hyperparameters (PyTorch's defaults except weight decay, which PEFT recipes usually set).</summary>
public sealed record AdamWOptions
{
    /// <summary>β₁: first-moment decay.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>β₂: second-moment decay.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>ε added to the denominator.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>λ: decoupled weight decay, applied to matrices only.</summary>
    public double WeightDecay { get; init; }
}

/// <summary>AdamW over every fp32 parameter of a store; matrices decay, vectors (norms, biases) do not.</summary>
public sealed class AdamW
{
    private readonly ParameterStore _store;
    private readonly ParameterGradients _gradients;
    private readonly (int Offset, int Length, bool Decay)[] _ranges;

    /// <summary>Creates zeroed moments for the parameters behind <paramref name="gradients"/>.</summary>
    public AdamW(ParameterGradients gradients, AdamWOptions? options = null)
    {
        _gradients = gradients;
        _store = gradients.Store;
        Options = options ?? new AdamWOptions();
        M = new float[_store.Data.Count];
        V = new float[_store.Data.Count];
        _ranges = _store.Parameters
            .Where(p => p.DType == ParameterDType.Float32)
            .GroupBy(p => p.Offset)
            .Select(g => g.First())
            .Select(p => ((int)p.Offset, (int)p.Length, p.Shape.Length >= 2))
            .ToArray();
    }

    /// <summary>Hyperparameters.</summary>
    public AdamWOptions Options { get; }

    /// <summary>First moments, laid out like the parameters.</summary>
    public float[] M { get; }

    /// <summary>Second moments, laid out like the parameters.</summary>
    public float[] V { get; }

    /// <summary>Steps taken (t).</summary>
    public int StepCount { get; set; }

    /// <summary>Applies one update with learning rate <paramref name="learningRate"/> from the current gradients.</summary>
    public void Step(double learningRate)
    {
        StepCount++;
        var o = Options;
        var b1 = (float)o.Beta1;
        var b2 = (float)o.Beta2;
        var bc1 = 1 - Math.Pow(o.Beta1, StepCount);
        var bc2Sqrt = (float)Math.Sqrt(1 - Math.Pow(o.Beta2, StepCount));
        var stepSize = (float)(learningRate / bc1);
        var eps = (float)o.Epsilon;
        var decay = (float)(1 - learningRate * o.WeightDecay);
        var p = _store.Data;
        var g = _gradients.Data;
        foreach (var (offset, length, decays) in _ranges)
        {
            Update(p.AsSpan(offset, length), g.AsSpan(offset, length), M.AsSpan(offset, length), V.AsSpan(offset, length),
                decays ? decay : 1f, b1, b2, stepSize, bc2Sqrt, eps);
        }
    }

    // One range: Vector512 lanes, then the same arithmetic scalar for the tail (identical per element).
    private static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, float pd, float b1, float b2,
        float stepSize, float bc2Sqrt, float eps)
    {
        var i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var (vb1, vb2, vc1, vc2) = (Vector512.Create(b1), Vector512.Create(b2), Vector512.Create(1 - b1), Vector512.Create(1 - b2));
            var (vpd, vstep, vbc, veps) = (Vector512.Create(pd), Vector512.Create(stepSize), Vector512.Create(bc2Sqrt), Vector512.Create(eps));
            for (; i <= p.Length - 16; i += 16)
            {
                var gi = Vector512.Create(g.Slice(i, 16));
                var mi = vb1 * Vector512.Create(m.Slice(i, 16)) + vc1 * gi;
                var vi = vb2 * Vector512.Create(v.Slice(i, 16)) + vc2 * gi * gi;
                mi.CopyTo(m.Slice(i, 16));
                vi.CopyTo(v.Slice(i, 16));
                var pi = Vector512.Create(p.Slice(i, 16)) * vpd - vstep * mi / (Vector512.Sqrt(vi) / vbc + veps);
                pi.CopyTo(p.Slice(i, 16));
            }
        }

        for (; i < p.Length; i++)
        {
            var gi = g[i];
            var mi = m[i] = b1 * m[i] + (1 - b1) * gi;
            var vi = v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            p[i] = p[i] * pd - stepSize * mi / (MathF.Sqrt(vi) / bc2Sqrt + eps);
        }
    }
}
