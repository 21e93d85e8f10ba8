namespace TuningPlatform.Engine.Training;

/// <summary>
/// A projection inside the decoder as the training graph sees it: dense (trainable or frozen), LoRA over
/// a frozen fp32/bf16/NF4 base. Forward may cache what its Backward needs (per instance, one per layer).
/// </summary>
public interface ITrainableLinear
{
    /// <summary>I: input features.</summary>
    int InFeatures { get; }

    /// <summary>O: output features.</summary>
    int OutFeatures { get; }

    /// <summary>output[rows, O] = f(x[rows, I]); <paramref name="training"/> turns dropout on.</summary>
    void Forward(Span<float> output, ReadOnlySpan<float> x, int rows, bool training);

    /// <summary>Accumulates dx (skipped when empty) and this module's own parameter gradients, given the forward input x.</summary>
    void Backward(Span<float> dx, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> x, int rows);
}
