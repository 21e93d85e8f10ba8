// Dense projection y = x · Wᵀ + b over a model parameter: trainable (fp32, gradients into a
// ParameterGradients) or frozen (fp32 or bf16; only dx flows back). A frozen bf16 weight is widened into
// thread-local fp32 scratch for the dx product (one matrix at a time), so the base stays at 2 bytes/param.
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Kernels;
using TuningPlatform.Engine.Training.Ops;

namespace TuningPlatform.Engine.Training;

/// <summary>A plain linear layer over a model parameter, trainable or frozen.</summary>
public sealed class DenseLinear : ITrainableLinear
{
    [ThreadStatic]
    private static float[]? _widened;

    private readonly Parameter _weight;
    private readonly Parameter? _bias;
    private readonly ParameterGradients? _gradients;

    /// <summary>Wraps <paramref name="weight"/> [O, I] and an optional bias [O]; <paramref name="gradients"/> null freezes both.</summary>
    public DenseLinear(Parameter weight, Parameter? bias, ParameterGradients? gradients)
    {
        _weight = weight;
        _bias = bias;
        _gradients = gradients;
        OutFeatures = weight.Shape[0];
        InFeatures = weight.Shape[1];
        if (gradients is not null && weight.DType != ParameterDType.Float32)
        {
            throw new InvalidOperationException($"parameter '{weight.Name}' is stored in {weight.DType} and cannot be trained; load the model in fp32 for full fine-tuning");
        }
    }

    /// <inheritdoc/>
    public int InFeatures { get; }

    /// <inheritdoc/>
    public int OutFeatures { get; }

    /// <summary>The wrapped weight.</summary>
    public Parameter Weight => _weight;

    /// <inheritdoc/>
    public void Forward(Span<float> output, ReadOnlySpan<float> x, int rows, bool training)
    {
        var bias = _bias is null ? default : _bias.Span;
        if (_weight.DType == ParameterDType.BFloat16)
        {
            MatMul.ForwardBf16(x, _weight.Bf16Span, bias, output, rows, OutFeatures, InFeatures);
            return;
        }

        LinearOp.Forward<float>(output, x, _weight.Span, bias, rows, OutFeatures, InFeatures);
    }

    /// <inheritdoc/>
    public void Backward(Span<float> dx, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, int rows)
    {
        if (_weight.DType == ParameterDType.BFloat16)
        {
            if (!dx.IsEmpty)
            {
                var length = (int)_weight.Length;
                if (_widened is null || _widened.Length < length)
                {
                    _widened = new float[length];
                }

                var w = _widened.AsSpan(0, length);
                _weight.CopyTo(w);
                TrainingGemm.NN<float>(dOutput, w, dx, rows, InFeatures, OutFeatures, accumulate: true);
            }

            return;
        }

        var dW = _gradients is null ? default : _gradients[_weight];
        var dB = _gradients is null || _bias is null ? default : _gradients[_bias];
        LinearOp.Backward(dx, dW, dB, dOutput, x, _weight.Span, rows, OutFeatures, InFeatures);
    }
}
