// Linear, training pair:
//   forward   y = x · Wᵀ + b
//   backward  dx += dy · W,   dW += dyᵀ · x,   db += Σ_n dy[n, :]
//
//   x  [N, I]   (N = B·T rows)
//   W  [O, I]   nn.Linear.weight layout
//   b  [O]      optional
//   y  [N, O]
//
// Cached for backward: x. Backward accumulates; an empty dx, dW or db is skipped (a frozen weight has no dW,
// the first consumer of the tokens needs no dx).
// Reference: torch.nn.Linear; llm.c matmul_backward. Kernels: Training/Kernels/TrainingGemm.cs.
using System.Numerics;
using System.Numerics.Tensors;
using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Fully connected layer and its gradients.</summary>
public static class LinearOp
{
    /// <summary>y[N, O] = x[N, I] · W[O, I]ᵀ (+ b).</summary>
    public static void Forward<T>(Span<T> output, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, ReadOnlySpan<T> bias, int rows, int outFeatures, int inFeatures)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        TrainingGemm.NT(x, weight, output, rows, outFeatures, inFeatures, accumulate: false);
        if (!bias.IsEmpty)
        {
            for (var n = 0; n < rows; n++)
            {
                var row = output.Slice(n * outFeatures, outFeatures);
                TensorPrimitives.Add(row, bias[..outFeatures], row);
            }
        }
    }

    /// <summary>Accumulates dx, dW and db (each skipped when empty).</summary>
    public static void Backward<T>(Span<T> dx, Span<T> dWeight, Span<T> dBias, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> x, ReadOnlySpan<T> weight,
        int rows, int outFeatures, int inFeatures)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!dx.IsEmpty)
        {
            TrainingGemm.NN(dOutput, weight, dx, rows, inFeatures, outFeatures, accumulate: true);
        }

        if (!dWeight.IsEmpty)
        {
            TrainingGemm.TN(dOutput, x, dWeight, outFeatures, inFeatures, rows, accumulate: true);
        }

        if (!dBias.IsEmpty)
        {
            for (var n = 0; n < rows; n++)
            {
                TensorPrimitives.Add(dBias[..outFeatures], dOutput.Slice(n * outFeatures, outFeatures), dBias);
            }
        }
    }
}
