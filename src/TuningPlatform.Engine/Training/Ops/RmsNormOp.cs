// RMSNorm, training pair:
//   forward   r[n] = 1 / sqrt(mean_i x[n, i]² + eps),   out[n, i] = x[n, i] · r[n] · w[i]
//   backward  with g = dout ⊙ w:
//             dw[i]    += Σ_n dout[n, i] · x[n, i] · r[n]
//             dx[n, i] += r[n] · g[n, i] − x[n, i] · r[n]³ · (Σ_j g[n, j] · x[n, j]) / D
//
//   x    [N, D]
//   w    [D]
//   out  [N, D]
//   rstd [N]      cached for backward, with x
//
// Backward accumulates into dx and dw (dw skipped when empty: a frozen norm).
// Reference: HF LlamaRMSNorm; llm.c layernorm_backward without the mean and bias terms.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Root-mean-square normalisation and its gradient.</summary>
public static class RmsNormOp
{
    /// <summary>Normalises each row of <paramref name="x"/>; writes each row's reciprocal RMS to <paramref name="rstd"/>.</summary>
    public static void Forward<T>(Span<T> output, Span<T> rstd, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, int dim, T eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var rows = x.Length / dim;
        var d = T.CreateTruncating(dim);
        for (var n = 0; n < rows; n++)
        {
            var row = x.Slice(n * dim, dim);
            var r = T.One / T.Sqrt(TensorPrimitives.SumOfSquares(row) / d + eps);
            rstd[n] = r;
            var o = output.Slice(n * dim, dim);
            // x · r first, then · w: the order HF uses, so fp32 rounding matches the inference path.
            TensorPrimitives.Multiply(row, r, o);
            TensorPrimitives.Multiply(o, weight, o);
        }
    }

    /// <summary>Accumulates dx and dw from dout, the cached input and its reciprocal RMS.</summary>
    public static void Backward<T>(Span<T> dx, Span<T> dWeight, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> x, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> rstd, int dim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && dim <= 4096)
        {
            BackwardFloat(MemoryMarshal.Cast<T, float>(dx), MemoryMarshal.Cast<T, float>(dWeight), MemoryMarshal.Cast<T, float>(dOutput),
                MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(weight), MemoryMarshal.Cast<T, float>(rstd), dim);
            return;
        }

        var rows = x.Length / dim;
        var d = T.CreateTruncating(dim);
        for (var n = 0; n < rows; n++)
        {
            var xr = x.Slice(n * dim, dim);
            var dy = dOutput.Slice(n * dim, dim);
            var dxr = dx.Slice(n * dim, dim);
            var r = rstd[n];
            // Σ_j dout·w·x, the projection of the gradient on the input direction.
            var dot = T.Zero;
            for (var i = 0; i < dim; i++)
            {
                dot += dy[i] * weight[i] * xr[i];
            }

            var c = r * r * r * dot / d;
            for (var i = 0; i < dim; i++)
            {
                dxr[i] += r * dy[i] * weight[i] - c * xr[i];
            }

            if (!dWeight.IsEmpty)
            {
                for (var i = 0; i < dim; i++)
                {
                    dWeight[i] += dy[i] * xr[i] * r;
                }
            }
        }
    }

    // The same per row, vectorised: g = dout ⊙ w in stack scratch, dx += r·g − c·x, dw += r·(dout ⊙ x).
    private static void BackwardFloat(Span<float> dx, Span<float> dWeight, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> rstd, int dim)
    {
        var rows = x.Length / dim;
        Span<float> g = stackalloc float[dim];
        Span<float> t = stackalloc float[dim];
        var w = weight[..dim];
        for (var n = 0; n < rows; n++)
        {
            var xr = x.Slice(n * dim, dim);
            var dy = dOutput.Slice(n * dim, dim);
            var dxr = dx.Slice(n * dim, dim);
            var r = rstd[n];
            TensorPrimitives.Multiply(dy, w, g);
            var c = r * r * r * TensorPrimitives.Dot(g, xr) / dim;
            TensorPrimitives.FusedMultiplyAdd(g, r, dxr, dxr);
            TensorPrimitives.FusedMultiplyAdd(xr, -c, dxr, dxr);
            if (!dWeight.IsEmpty)
            {
                TensorPrimitives.Multiply(dy, xr, t);
                TensorPrimitives.FusedMultiplyAdd(t, r, dWeight, dWeight);
            }
        }
    }
}
