// Frozen NF4 projection for QLoRA: y = x · deq(W)ᵀ + b, dx += dy · deq(W). The weight lives in NF4
// (≈0.52 byte/param) and is dequantised inside the GEMM, one packed 32-column panel at a time
// (Kernels/PackedGemm), so no fp32 copy of the matrix ever exists. Without AVX-512 each product
// dequantises the matrix into one thread-local fp32 scratch instead. Nothing is cached; there is no
// weight gradient.
using System.Numerics.Tensors;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Engine.Training.Quantization;

/// <summary>A frozen linear layer whose weight is held in NF4 (the QLoRA base).</summary>
public sealed class Nf4Linear : ITrainableLinear
{
    [ThreadStatic]
    private static float[]? _widened;

    private readonly Parameter? _bias;

    /// <summary>Quantises <paramref name="weight"/> [O, I] (fp32 or bf16; an NF4 parameter is shared as it is) to NF4; the bias, if any, stays fp32.</summary>
    public Nf4Linear(Parameter weight, Parameter? bias)
    {
        // A weight loaded as NF4 (ModelLoadOptions.ProjectionDType) is used as it is: no dense copy anywhere.
        Weight = weight.DType == ParameterDType.Nf4
            ? weight.Nf4 ?? Nf4Tensor.Quantize(new float[weight.Length], weight.Shape)
            : Nf4Tensor.Quantize(weight.ToFloat32(), weight.Shape);
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
    public unsafe void Forward(Span<float> output, ReadOnlySpan<float> x, int rows, bool training)
    {
        var bias = _bias is null ? default : _bias.Span;
        if (!PackedGemm.IsSupported)
        {
            MatMul.Forward(x, Widen(), bias, output, rows, OutFeatures, InFeatures);
            return;
        }

        Check(x.Length, rows * InFeatures, output.Length, rows * OutFeatures);
        fixed (float* px = x, py = output)
        {
            PackedGemm.Run(px, InFeatures, 1, Weight, InFeatures, GemmLayout.NK, py, OutFeatures, rows, OutFeatures, InFeatures, 1f, accumulate: false, WorkerPool.Shared);
        }

        if (!bias.IsEmpty)
        {
            for (var n = 0; n < rows; n++)
            {
                var row = output.Slice(n * OutFeatures, OutFeatures);
                TensorPrimitives.Add(row, bias, row);
            }
        }
    }

    /// <inheritdoc/>
    public unsafe void Backward(Span<float> dx, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, int rows)
    {
        if (!dx.IsEmpty && PackedGemm.IsSupported)
        {
            Check(dOutput.Length, rows * OutFeatures, dx.Length, rows * InFeatures);
            fixed (float* pdy = dOutput, pdx = dx)
            {
                // dx[rows, I] += dy[rows, O] · W[O, I]: W read as a K×N (O×I) operand.
                PackedGemm.Run(pdy, OutFeatures, 1, Weight, InFeatures, GemmLayout.KN, pdx, InFeatures, rows, InFeatures, OutFeatures, 1f, accumulate: true, WorkerPool.Shared);
            }
        }
        else if (!dx.IsEmpty)
        {
            TrainingGemm.NN<float>(dOutput, Widen(), dx, rows, InFeatures, OutFeatures, accumulate: true);
        }
    }

    private static void Check(int input, int needInput, int output, int needOutput)
    {
        if (input < needInput || output < needOutput)
        {
            throw new ArgumentException($"NF4 linear buffers: input needs {needInput} (has {input}), output {needOutput} ({output})");
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
