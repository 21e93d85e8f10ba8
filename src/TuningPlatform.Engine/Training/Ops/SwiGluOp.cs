// SwiGLU, training pair:
//   forward   out = silu(g) ⊙ u,   silu(g) = g · σ(g)
//   backward  dg += dout ⊙ u ⊙ σ(g) · (1 + g · (1 − σ(g))),   du += dout ⊙ silu(g)
//
//   gate g [N, F]   x · W_gateᵀ
//   up   u [N, F]   x · W_upᵀ
//   out    [N, F]   fed to W_down
//
// Cached for backward: gate and up (σ(g) is recomputed). Backward accumulates. fp32 runs vectorised
// (TensorPrimitives) in blocks of 512 with σ and silu in stack scratch; other types run the scalar loop.
// Reference: HF LlamaMLP; Shazeer 2020, "GLU Variants Improve Transformer".
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>SiLU-gated linear unit and its gradient.</summary>
public static class SwiGluOp
{
    /// <summary>out = g·σ(g)·u elementwise.</summary>
    public static void Forward<T>(Span<T> output, ReadOnlySpan<T> gate, ReadOnlySpan<T> up)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
        {
            var o = MemoryMarshal.Cast<T, float>(output)[..gate.Length];
            TensorPrimitives.Sigmoid(MemoryMarshal.Cast<T, float>(gate), o);
            TensorPrimitives.Multiply(o, MemoryMarshal.Cast<T, float>(gate), o);
            TensorPrimitives.Multiply(o, MemoryMarshal.Cast<T, float>(up)[..gate.Length], o);
            return;
        }

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
        if (typeof(T) == typeof(float))
        {
            BackwardFloat(MemoryMarshal.Cast<T, float>(dGate), MemoryMarshal.Cast<T, float>(dUp), MemoryMarshal.Cast<T, float>(dOutput),
                MemoryMarshal.Cast<T, float>(gate), MemoryMarshal.Cast<T, float>(up));
            return;
        }

        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            var sig = T.One / (T.One + T.Exp(-g));
            var dy = dOutput[i];
            dGate[i] += dy * up[i] * sig * (T.One + g * (T.One - sig));
            dUp[i] += dy * g * sig;
        }
    }

    // dg += dy·u·(σ + silu·(1 − σ)),  du += dy·silu,  blockwise.
    private static void BackwardFloat(Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        const int Block = 512;
        Span<float> sig = stackalloc float[Block];
        Span<float> silu = stackalloc float[Block];
        Span<float> t = stackalloc float[Block];
        for (var i0 = 0; i0 < gate.Length; i0 += Block)
        {
            var n = Math.Min(Block, gate.Length - i0);
            var s = sig[..n];
            var u = silu[..n];
            var w = t[..n];
            var g = gate.Slice(i0, n);
            var dy = dOutput.Slice(i0, n);
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(g, s, u);
            var du = dUp.Slice(i0, n);
            TensorPrimitives.FusedMultiplyAdd(dy, u, du, du);
            // w = σ + silu·(1 − σ) = σ + silu − silu·σ
            TensorPrimitives.Multiply(u, s, w);
            TensorPrimitives.Subtract(u, w, w);
            TensorPrimitives.Add(w, s, w);
            TensorPrimitives.Multiply(w, up.Slice(i0, n), w);
            var dg = dGate.Slice(i0, n);
            TensorPrimitives.FusedMultiplyAdd(dy, w, dg, dg);
        }
    }
}
