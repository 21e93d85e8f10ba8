// SwiGLU activation: out = silu(gate) ⊙ up,   silu(g) = g · σ(g)
//
//   gate [T, F]   x · W_gateᵀ
//   up   [T, F]   x · W_upᵀ
//   out  [T, F]   fed to W_down
//
// Cached for backward: gate and up (σ(gate) is recomputed).
// Reference: HF LlamaMLP (act_fn(gate_proj(x)) * up_proj(x)); Shazeer 2020, "GLU Variants Improve Transformer".
using System.Numerics.Tensors;

namespace TuningPlatform.Engine.Ops;

/// <summary>SiLU-gated linear unit.</summary>
public static class SwiGlu
{
    /// <summary>out = gate · σ(gate) · up, elementwise.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        TensorPrimitives.Sigmoid(gate, output);
        TensorPrimitives.Multiply(output, gate, output);
        TensorPrimitives.Multiply(output, up, output);
    }
}
