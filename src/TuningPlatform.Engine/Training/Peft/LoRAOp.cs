// LoRA update of a linear layer, training pair (Hu et al. 2021; PEFT's lora.Linear):
//   forward   u = x̃ · Aᵀ                     x̃ = dropout(x) (x itself without dropout)
//             y += s · u · Bᵀ                 s = α / r, or α / √r with rsLoRA
//   backward  dB += s · dyᵀ · u
//             du = s · dy · B
//             dA += duᵀ · x̃,   dx̃ += du · A
//
//   x̃  [N, I]    A [R, I]    B [O, R]    u [N, R]    y, dy [N, O]
//   scratch [N, R]
//
// Cached for backward: u (and x̃, which the caller regenerates from its dropout mask). Backward accumulates.
// The frozen base y = x · W₀ᵀ is the caller's; this op only adds the low-rank path.
// Reference: peft/tuners/lora/layer.py (Linear.forward: result + lora_B(lora_A(dropout(x))) * scaling).
using System.Numerics;
using System.Numerics.Tensors;
using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Engine.Training.Peft;

/// <summary>The low-rank path of a LoRA linear layer and its gradients.</summary>
public static class LoRAOp
{
    /// <summary>Adds s·(x̃·Aᵀ)·Bᵀ to <paramref name="output"/>; writes u = x̃·Aᵀ to <paramref name="u"/>.</summary>
    public static void Forward<T>(Span<T> output, Span<T> u, Span<T> scratch, ReadOnlySpan<T> x, ReadOnlySpan<T> a, ReadOnlySpan<T> b,
        int rows, int outFeatures, int inFeatures, int rank, T scale)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var nr = rows * rank;
        TrainingGemm.NT(x, a, u, rows, rank, inFeatures, accumulate: false);
        TensorPrimitives.Multiply(u[..nr], scale, scratch[..nr]);
        TrainingGemm.NT<T>(scratch[..nr], b, output, rows, outFeatures, rank, accumulate: true);
    }

    /// <summary>Accumulates dx̃ (skipped when empty), dA and dB.</summary>
    public static void Backward<T>(Span<T> dx, Span<T> dA, Span<T> dB, Span<T> scratch, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> x,
        ReadOnlySpan<T> u, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int rows, int outFeatures, int inFeatures, int rank, T scale)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var nr = rows * rank;
        var s = scratch[..nr];
        // dB += dyᵀ · (s·u)
        TensorPrimitives.Multiply(u[..nr], scale, s);
        TrainingGemm.TN<T>(dOutput, s, dB, outFeatures, rank, rows, accumulate: true);
        // du = s · dy · B, then dA and dx.
        TrainingGemm.NN(dOutput, b, s, rows, rank, outFeatures, accumulate: false);
        TensorPrimitives.Multiply(s, scale, s);
        TrainingGemm.TN<T>(s, x, dA, rank, inFeatures, rows, accumulate: true);
        if (!dx.IsEmpty)
        {
            TrainingGemm.NN<T>(s, a, dx, rows, inFeatures, rank, accumulate: true);
        }
    }
}
