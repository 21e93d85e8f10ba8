// Frozen NF4 projection for QLoRA: y = x · deq(W)ᵀ + b, dx += dy · deq(W). The weight lives in NF4
// (≈0.52 byte/param); each product dequantises it into one thread-local fp32 scratch matrix just before the
// GEMM, so at most one layer's weight is ever widened. Nothing is cached; there is no weight gradient.
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Engine.Training.Quantization;

/// <summary>A frozen linear layer whose weight is held in NF4 (the QLoRA base).</summary>
public sealed class Nf4Linear : ITrainableLinear
{
    [ThreadStatic]
    private static float[]? _widened;

    private readonly Parameter? _bias;

    /// <summary>Quantises <paramref name="weight"/> [O, I] (fp32 or bf16) to NF4; the bias, if any, stays fp32.</summary>
    public Nf4Linear(Parameter weight, Parameter? bias)
    {
        Weight = Nf4Tensor.Quantize(weight.ToFloat32(), weight.Shape);
        _bias = bias;
        OutFeatures = weight.Shape[0];
        InFeatures = weight.Shape[1];
    }

    /// <summary>The quantised weight.</summary>
    public Nf4Tensor Weight { get; }

    /// <inheritdoc/>
    public int InFeatures { get; }

    /// <inheritdoc/>
    public int OutFeatures { get; }

    /// <inheritdoc/>
    public void Forward(Span<float> output, ReadOnlySpan<float> x, int rows, bool training) =>
        MatMul.Forward(x, Widen(), _bias is null ? default : _bias.Span, output, rows, OutFeatures, InFeatures);

    /// <inheritdoc/>
    public void Backward(Span<float> dx, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, int rows)
    {
        if (!dx.IsEmpty)
        {
            TrainingGemm.NN<float>(dOutput, Widen(), dx, rows, InFeatures, OutFeatures, accumulate: true);
        }
    }

    private Span<float> Widen()
    {
        if (_widened is null || _widened.Length < Weight.Length)
        {
            _widened = new float[Weight.Length];
        }

        var w = _widened.AsSpan(0, Weight.Length);
        Weight.Dequantize(w);
        return w;
    }
}
