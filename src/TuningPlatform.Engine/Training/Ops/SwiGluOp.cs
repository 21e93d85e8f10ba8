// SwiGLU, training pair:
//   forward   out = silu(g) ⊙ u,   silu(g) = g · σ(g)
//   backward  dg += dout ⊙ u ⊙ σ(g) · (1 + g · (1 − σ(g))),   du += dout ⊙ silu(g)
//
//   gate g [N, F]   x · W_gateᵀ
//   up   u [N, F]   x · W_upᵀ
//   out    [N, F]   fed to W_down
//
// Cached for backward: gate and up (σ(g) is recomputed). Backward accumulates.
// Reference: HF LlamaMLP; Shazeer 2020, "GLU Variants Improve Transformer".
using System.Numerics;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>SiLU-gated linear unit and its gradient.</summary>
public static class SwiGluOp
{
    /// <summary>out = g·σ(g)·u elementwise.</summary>
    public static void Forward<T>(Span<T> output, ReadOnlySpan<T> gate, ReadOnlySpan<T> up)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            output[i] = g / (T.One + T.Exp(-g)) * up[i];
        }
    }

    /// <summary>Accumulates the gradients of gate and up.</summary>
    public static void Backward<T>(Span<T> dGate, Span<T> dUp, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> gate, ReadOnlySpan<T> up)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            var sig = T.One / (T.One + T.Exp(-g));
            var dy = dOutput[i];
            dGate[i] += dy * up[i] * sig * (T.One + g * (T.One - sig));
            dUp[i] += dy * g * sig;
        }
    }
}
