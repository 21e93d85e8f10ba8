// A LoRA adapter in its serving form, applied per row without merging (LoRAX / S-LoRA style): within one
// batched forward, row i on adapter a gets, for every projection a targets,
//   y_i += s_a · (x_i · A_aᵀ) · B_aᵀ          s = α / r, or α / √r with rsLoRA
// while rows on the base (or on other adapters) see their own weights only. The base weights are never
// touched, so any number of adapters share one base in memory.
//
//   x_i  [I]      A [R, I]      Bᵀ [R, O]  (B [O, R] transposed at load, so the update is R axpys of length O)
//   u    [R]      y_i [O]
//
// Each row is computed alone, so a sequence's result does not depend on which other rows share its step.
// Reference: peft/tuners/lora/layer.py (Linear.forward); Chen et al., Punica (2023); Sheng et al., S-LoRA (2023).
using System.Numerics.Tensors;
using TuningPlatform.Engine.Training.Peft;

namespace TuningPlatform.Engine.Models;

/// <summary>The projections a LoRA adapter can target, in PEFT's <c>target_modules</c> order.</summary>
public enum LoRAModule
{
    /// <summary>q_proj.</summary>
    Query,

    /// <summary>k_proj.</summary>
    Key,

    /// <summary>v_proj.</summary>
    Value,

    /// <summary>o_proj.</summary>
    Output,

    /// <summary>gate_proj.</summary>
    Gate,

    /// <summary>up_proj.</summary>
    Up,

    /// <summary>down_proj.</summary>
    Down,
}

/// <summary>
/// A LoRA adapter held for inference over an unmodified base model: A [R, I] and Bᵀ [R, O] of every targeted
/// projection, copied out of a <see cref="LoRAAdapter"/> (no gradients). Pass it per sequence to
/// <see cref="LlamaModel.ForwardBatch(LlamaState, IReadOnlyList{KvCache}, ReadOnlySpan{int}, Span{float}, IReadOnlyList{LoRAWeights?})"/>
/// or <see cref="Generation.BatchGenerator"/>.
/// </summary>
public sealed class LoRAWeights
{
    private const int Modules = 7;
    private readonly float[]?[] _a;
    private readonly float[]?[] _bt;
    private readonly int[] _out;
    private readonly int[] _in;

    private LoRAWeights(LoRAAdapter adapter)
    {
        var model = adapter.Model;
        var layers = model.Config.NumLayers;
        Config = adapter.Config;
        Rank = adapter.Config.Rank;
        Scale = (float)adapter.Config.Scale;
        Layers = layers;
        _a = new float[]?[layers * Modules];
        _bt = new float[]?[layers * Modules];
        _out = new int[layers * Modules];
        _in = new int[layers * Modules];
        for (var l = 0; l < layers; l++)
        {
            for (var m = 0; m < Modules; m++)
            {
                if (adapter.Pair(l, LoRAConfig.AllLinear[m]) is not { } pair)
                {
                    continue;
                }

                var (a, b) = pair;

                var o = b.Shape[0];
                var i = a.Shape[1];
                var bt = new float[Rank * o];
                var bs = b.Span;
                for (var row = 0; row < o; row++)
                {
                    for (var r = 0; r < Rank; r++)
                    {
                        bt[r * o + row] = bs[row * Rank + r];
                    }
                }

                _a[l * Modules + m] = a.Span.ToArray();
                _bt[l * Modules + m] = bt;
                _out[l * Modules + m] = o;
                _in[l * Modules + m] = i;
                ByteSize += (long)(a.Length + bt.Length) * sizeof(float);
            }
        }

        HiddenSize = model.Config.HiddenSize;
        IntermediateSize = model.Config.IntermediateSize;
        QueryDim = model.Config.NumHeads * model.Config.HeadDim;
        KeyValueDim = model.Config.NumKeyValueHeads * model.Config.HeadDim;
    }

    /// <summary>adapter_config.json.</summary>
    public LoRAConfig Config { get; }

    /// <summary>R.</summary>
    public int Rank { get; }

    /// <summary>s: α/r (α/√r with rsLoRA).</summary>
    public float Scale { get; }

    /// <summary>Layers of the base it was built for.</summary>
    public int Layers { get; }

    /// <summary>Bytes of A and B held.</summary>
    public long ByteSize { get; }

    private int HiddenSize { get; }

    private int IntermediateSize { get; }

    private int QueryDim { get; }

    private int KeyValueDim { get; }

    /// <summary>Copies the A and B matrices of <paramref name="adapter"/> (after which the adapter itself may be dropped).</summary>
    public static LoRAWeights From(LoRAAdapter adapter) => new(adapter);

    /// <summary>Loads a PEFT adapter directory for <paramref name="model"/> (<see cref="LoRAAdapter.Load"/>: names the file and tensor on any mismatch).</summary>
    public static LoRAWeights Load(string directory, LlamaModel model) => new(LoRAAdapter.Load(directory, model));

    /// <summary>Whether it was built for a model of <paramref name="config"/>'s shape.</summary>
    public bool Fits(LlamaConfig config) =>
        config.NumLayers == Layers && config.HiddenSize == HiddenSize && config.IntermediateSize == IntermediateSize
        && config.NumHeads * config.HeadDim == QueryDim && config.NumKeyValueHeads * config.HeadDim == KeyValueDim;

    /// <summary>Whether projection <paramref name="module"/> of <paramref name="layer"/> carries an update.</summary>
    public bool Targets(int layer, LoRAModule module) => _a[layer * Modules + (int)module] is not null;

    /// <summary>
    /// Adds s·(x·Aᵀ)·Bᵀ of projection <paramref name="module"/> in <paramref name="layer"/> to each of <paramref name="rows"/>
    /// rows of <paramref name="output"/> [rows, O] from <paramref name="input"/> [rows, I]; no-op when not targeted.
    /// </summary>
    public void Apply(Span<float> output, ReadOnlySpan<float> input, int rows, int layer, LoRAModule module)
    {
        var index = layer * Modules + (int)module;
        var a = _a[index];
        if (a is null)
        {
            return;
        }

        var bt = _bt[index]!;
        var o = _out[index];
        var i = _in[index];
        Span<float> u = stackalloc float[Rank];
        for (var row = 0; row < rows; row++)
        {
            var x = input.Slice(row * i, i);
            var y = output.Slice(row * o, o);
            // u = s · A·x, then y += Σ_r u[r] · Bᵀ[r, :] (R vectorised axpys over the output).
            for (var r = 0; r < Rank; r++)
            {
                u[r] = Scale * TensorPrimitives.Dot(a.AsSpan(r * i, i), x);
            }

            for (var r = 0; r < Rank; r++)
            {
                TensorPrimitives.MultiplyAdd(bt.AsSpan(r * o, o), u[r], y, y);
            }
        }
    }
}
