using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Training.Quantization;

namespace TuningPlatform.Engine.Models;

/// <summary>How a parameter is held in memory. Compute is always fp32; bf16 storage halves the bytes read per token, NF4 stores a frozen QLoRA base in about 0.52 byte per weight.</summary>
public enum ParameterDType
{
    /// <summary>IEEE fp32 (trainable).</summary>
    Float32,

    /// <summary>bfloat16, widened to fp32 inside the kernels (frozen weights for inference or a LoRA base).</summary>
    BFloat16,

    /// <summary>NF4 with double-quantised block scales (Training/Quantization/Nf4Tensor), outside the flat buffers: a frozen QLoRA base, quantised as it is loaded.</summary>
    Nf4,
}

/// <summary>A named view into a <see cref="ParameterStore"/>: offset and shape within the flat buffer of its dtype.</summary>
public sealed class Parameter
{
    private readonly ParameterStore _store;

    internal Parameter(ParameterStore store, string name, int[] shape, long offset, ParameterDType dtype)
    {
        _store = store;
        Name = name;
        Shape = shape;
        Offset = offset;
        DType = dtype;
        Length = shape.Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>Storage type; <see cref="Span"/> needs Float32, <see cref="Bf16Span"/> BFloat16.</summary>
    public ParameterDType DType { get; }

    /// <summary>Bytes this parameter occupies.</summary>
    public long ByteSize => DType switch
    {
        ParameterDType.BFloat16 => Length * 2,
        ParameterDType.Nf4 => Nf4?.ByteSize ?? 0,
        _ => Length * 4,
    };

    /// <summary>The quantised values (NF4 parameters only; set by <see cref="CopyFrom"/>, zero until then).</summary>
    public Nf4Tensor? Nf4 { get; private set; }

    /// <summary>Engine name (e.g. layers.0.attn.q_proj); checkpoint names live in <see cref="HfCheckpointKeys"/>.</summary>
    public string Name { get; }

    /// <summary>Shape, PyTorch order.</summary>
    public int[] Shape { get; }

    /// <summary>Start within the flat buffer.</summary>
    public long Offset { get; }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>The values (fp32 parameters only).</summary>
    public Span<float> Span => DType == ParameterDType.Float32
        ? _store.Data.AsSpan((int)Offset, (int)Length)
        : throw new InvalidOperationException($"parameter '{Name}' is stored in {DType}; read it with CopyTo");

    /// <summary>The values as memory (fp32 parameters only, for writers).</summary>
    public Memory<float> Memory => DType == ParameterDType.Float32
        ? _store.Data.AsMemory((int)Offset, (int)Length)
        : throw new InvalidOperationException($"parameter '{Name}' is stored in {DType}; read it with CopyTo");

    /// <summary>The raw bf16 values (bf16 parameters only).</summary>
    public Span<ushort> Bf16Span => DType == ParameterDType.BFloat16
        ? _store.Bf16Data.AsSpan((int)Offset, (int)Length)
        : throw new InvalidOperationException($"parameter '{Name}' is stored in {DType}; use Span or CopyTo");

    /// <summary>Sets the values from fp32, rounding to nearest-even when stored in bf16, quantising when stored in NF4.</summary>
    public void CopyFrom(ReadOnlySpan<float> source)
    {
        if (source.Length != Length)
        {
            throw new ArgumentException($"parameter '{Name}' has {Length} elements; got {source.Length}", nameof(source));
        }

        if (DType == ParameterDType.Float32)
        {
            source.CopyTo(Span);
            return;
        }

        if (DType == ParameterDType.Nf4)
        {
            Nf4 = Nf4Tensor.Quantize(source, Shape);
            return;
        }

        var dst = Bf16Span;
        for (var i = 0; i < source.Length; i++)
        {
            dst[i] = SafeTensorsWriter.ToBFloat16(source[i]);
        }
    }

    /// <summary>Widens the values to fp32 into <paramref name="destination"/>.</summary>
    public void CopyTo(Span<float> destination)
    {
        if (DType == ParameterDType.Float32)
        {
            Span.CopyTo(destination);
            return;
        }

        if (DType == ParameterDType.Nf4)
        {
            if (Nf4 is null)
            {
                destination[..(int)Length].Clear();
            }
            else
            {
                Nf4.Dequantize(destination);
            }

            return;
        }

        var src = Bf16Span;
        for (var i = 0; i < src.Length; i++)
        {
            destination[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
        }
    }

    /// <summary>The values as a new fp32 array.</summary>
    public float[] ToFloat32()
    {
        var result = new float[Length];
        CopyTo(result);
        return result;
    }
}

/// <summary>
/// All parameters of a model in one flat fp32 buffer with named views, so zeroing, optimizer steps and
/// checkpointing are single loops (gradients and optimizer state get stores of the same layout).
/// </summary>
public sealed class ParameterStore
{
    private readonly List<Parameter> _parameters = [];
    private readonly Dictionary<string, Parameter> _byName = new(StringComparer.Ordinal);
    private ArraySegment<float> _data = ArraySegment<float>.Empty;
    private ArraySegment<ushort> _bf16 = ArraySegment<ushort>.Empty;
    private long _length;
    private long _bf16Length;
    private long _nf4Length;
    private bool _sealed;

    /// <summary>
    /// The flat fp32 buffer (allocated by <see cref="Allocate"/>): a segment of a pinned array that starts on a 64-byte
    /// boundary, so the kernels' vector loads of a weight row never straddle two cache lines.
    /// </summary>
    public ArraySegment<float> Data => _sealed ? _data : throw new InvalidOperationException("parameters are not allocated yet");

    /// <summary>The flat bf16 buffer of parameters declared with <see cref="ParameterDType.BFloat16"/>.</summary>
    public ArraySegment<ushort> Bf16Data => _sealed ? _bf16 : throw new InvalidOperationException("parameters are not allocated yet");

    /// <summary>Bytes held by both buffers and every NF4 parameter.</summary>
    public long ByteSize => _length * 4 + _bf16Length * 2 + _parameters.Sum(p => p.DType == ParameterDType.Nf4 ? p.ByteSize : 0);

    /// <summary>Parameters in declaration order.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Total element count, every dtype.</summary>
    public long Count => _length + _bf16Length + _nf4Length;

    /// <summary>Looks a parameter up by engine name.</summary>
    public Parameter this[string name] => _byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"no parameter '{name}'");

    /// <summary>Declares an fp32 parameter; call before <see cref="Allocate"/>.</summary>
    public Parameter Add(string name, params int[] shape) => Add(name, ParameterDType.Float32, shape);

    /// <summary>Declares a parameter of the given storage type; call before <see cref="Allocate"/>.</summary>
    public Parameter Add(string name, ParameterDType dtype, params int[] shape)
    {
        if (_sealed)
        {
            throw new InvalidOperationException("parameters are already allocated");
        }

        var offset = dtype switch
        {
            ParameterDType.Float32 => _length,
            ParameterDType.BFloat16 => _bf16Length,
            _ => 0,
        };
        var p = new Parameter(this, name, shape, offset, dtype);
        _parameters.Add(p);
        _byName.Add(name, p);
        switch (dtype)
        {
            case ParameterDType.Float32:
                _length += p.Length;
                break;
            case ParameterDType.BFloat16:
                _bf16Length += p.Length;
                break;
            default:
                _nf4Length += p.Length;
                break;
        }

        return p;
    }

    /// <summary>Allocates the flat buffer for every declared parameter.</summary>
    public void Allocate()
    {
        if (_length > Array.MaxLength || _bf16Length > Array.MaxLength)
        {
            throw new NotSupportedException($"{Count} parameters exceed one buffer ({Array.MaxLength}); models this large are out of scope for the CPU engine");
        }

        _data = Aligned<float>((int)_length);
        _bf16 = Aligned<ushort>((int)_bf16Length);
        _sealed = true;
    }

    // A zeroed segment of `length` elements starting on a 64-byte boundary, inside a pinned array (which the GC never
    // moves, so the boundary holds for the array's life). Measured on a decode step's products (8 rows, weights in
    // L2, one thread): 31.6 µs a call against 36.2 with the weights where the allocator happened to put them.
    private static unsafe ArraySegment<T> Aligned<T>(int length)
        where T : unmanaged
    {
        if (length == 0)
        {
            return ArraySegment<T>.Empty;
        }

        var slack = 64 / sizeof(T);
        var array = GC.AllocateArray<T>(length + slack, pinned: true);
        fixed (T* p = array)
        {
            var start = (int)((64 - ((nint)p & 63)) & 63) / sizeof(T);
            return new ArraySegment<T>(array, start, length);
        }
    }
}
