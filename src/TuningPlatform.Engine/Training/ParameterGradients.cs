using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Training;

/// <summary>
/// Gradients of every fp32 parameter of a <see cref="ParameterStore"/>, in one flat buffer laid out like the
/// store's, so zeroing, norms and the optimizer step are single loops and a parameter's view is its offset.
/// </summary>
public sealed class ParameterGradients
{
    /// <summary>Allocates zeroed gradients for <paramref name="store"/>'s fp32 parameters.</summary>
    public ParameterGradients(ParameterStore store)
    {
        Store = store;
        Data = new float[store.Data.Count];
    }

    /// <summary>The parameters these are gradients of.</summary>
    public ParameterStore Store { get; }

    /// <summary>The flat buffer, index-aligned with <see cref="ParameterStore.Data"/>.</summary>
    public float[] Data { get; }

    /// <summary>The gradient view of one fp32 parameter.</summary>
    public Span<float> this[Parameter parameter] => parameter.DType == ParameterDType.Float32
        ? Data.AsSpan((int)parameter.Offset, (int)parameter.Length)
        : throw new InvalidOperationException($"parameter '{parameter.Name}' is stored in bf16 and cannot be trained; load the model in fp32 for full fine-tuning");

    /// <summary>Sets every gradient to zero.</summary>
    public void Zero() => Array.Clear(Data);
}
