// RMSNorm: out[t, :] = x[t, :] · rstd[t] · weight,   rstd[t] = 1 / sqrt(mean_i x[t, i]² + eps)
//
//   x      [T, D]
//   weight [D]
//   out    [T, D]
//   rstd   [T]     cached for backward (with x)
//
// Reference: HF LlamaRMSNorm (computed in fp32); llm.c layernorm_forward without mean and bias.
using System.Numerics.Tensors;

namespace TuningPlatform.Engine.Ops;

/// <summary>Root-mean-square layer normalisation.</summary>
public static class RmsNorm
{
    /// <summary>Normalises each of the <c>x.Length / dim</c> rows; writes the reciprocal RMS of each row to <paramref name="rstd"/>.</summary>
    public static void Forward(Span<float> output, Span<float> rstd, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int dim, float eps)
    {
        var rows = x.Length / dim;
        for (var t = 0; t < rows; t++)
        {
            var row = x.Slice(t * dim, dim);
            var r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(row) / dim + eps);
            rstd[t] = r;
            var o = output.Slice(t * dim, dim);
            // x · r first, then · weight: the order HF uses, so fp32 rounding matches.
            TensorPrimitives.Multiply(row, r, o);
            TensorPrimitives.Multiply(o, weight, o);
        }
    }
}
