// Linear: out = x · Wᵀ + b
//
//   x    [T, I]   (T = B·T rows)
//   W    [O, I]   nn.Linear.weight layout
//   b    [O]      optional
//   out  [T, O]
//
// Cached for backward: x (dW = doutᵀ·x, dx = dout·W).
// Reference: torch.nn.Linear; kernels in Kernels/MatMul.cs.
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Kernels;
using TuningPlatform.Engine.Training.Ops;

namespace TuningPlatform.Engine.Ops;

/// <summary>Fully connected layer over explicit buffers.</summary>
public static class Linear
{
    [ThreadStatic]
    private static float[]? _widened;

    /// <summary>out[T, O] = x[T, I] · W[O, I]ᵀ (+ bias).</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int rows, int outFeatures, int inFeatures) =>
        MatMul.Forward(x, weight, bias, output, rows, outFeatures, inFeatures);

    /// <summary>out[T, O] = x[T, I] · W[O, I]ᵀ (+ bias) with W held as fp32, bf16 or NF4.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> x, Parameter weight, ReadOnlySpan<float> bias, int rows, int outFeatures, int inFeatures)
    {
        if (weight.DType == ParameterDType.Nf4)
        {
            // Generation over a QLoRA base: widened one matrix at a time into thread-local scratch.
            if (_widened is null || _widened.Length < weight.Length)
            {
                _widened = new float[weight.Length];
            }

            var w = _widened.AsSpan(0, (int)weight.Length);
            weight.CopyTo(w);
            MatMul.Forward(x, w, bias, output, rows, outFeatures, inFeatures);
        }
        else if (weight.DType == ParameterDType.BFloat16)
        {
            MatMul.ForwardBf16(x, weight.Bf16Span, bias, output, rows, outFeatures, inFeatures);
        }
        else if (rows > DecodeMatMul.MaxRows && PackedGemm.IsSupported)
        {
            // Prefill-sized products through the training GEMM (B packed once per product, a 6 × 32 register tile):
            // at 1024³ it runs at about 0.75× OpenBLAS's rate where MatMul.Gemm ran at 0.63–0.71×, and prefill is
            // mostly these products.
            LinearOp.Forward<float>(output, x, weight.Span, bias, rows, outFeatures, inFeatures);
        }
        else
        {
            MatMul.Forward(x, weight.Span, bias, output, rows, outFeatures, inFeatures);
        }
    }
}
