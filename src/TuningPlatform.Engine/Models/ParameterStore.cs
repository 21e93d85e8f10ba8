namespace TuningPlatform.Engine.Models;

/// <summary>A named view into a <see cref="ParameterStore"/>: offset and shape within the flat buffer.</summary>
public sealed class Parameter
{
    private readonly ParameterStore _store;

    internal Parameter(ParameterStore store, string name, int[] shape, long offset)
    {
        _store = store;
        Name = name;
        Shape = shape;
        Offset = offset;
        Length = shape.Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>Engine name (e.g. layers.0.attn.q_proj); checkpoint names live in <see cref="HfCheckpointKeys"/>.</summary>
    public string Name { get; }

    /// <summary>Shape, PyTorch order.</summary>
    public int[] Shape { get; }

    /// <summary>Start within the flat buffer.</summary>
    public long Offset { get; }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>The values.</summary>
    public Span<float> Span => _store.Data.AsSpan((int)Offset, (int)Length);

    /// <summary>The values as memory (for writers).</summary>
    public Memory<float> Memory => _store.Data.AsMemory((int)Offset, (int)Length);
}

/// <summary>
/// All parameters of a model in one flat fp32 buffer with named views, so zeroing, optimizer steps and
/// checkpointing are single loops (gradients and optimizer state get stores of the same layout).
/// </summary>
public sealed class ParameterStore
{
    private readonly List<Parameter> _parameters = [];
    private readonly Dictionary<string, Parameter> _byName = new(StringComparer.Ordinal);
    private float[] _data = [];
    private long _length;
    private bool _sealed;

    /// <summary>The flat buffer (allocated by <see cref="Allocate"/>).</summary>
    public float[] Data => _sealed ? _data : throw new InvalidOperationException("parameters are not allocated yet");

    /// <summary>Parameters in declaration order.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Total element count.</summary>
    public long Count => _length;

    /// <summary>Looks a parameter up by engine name.</summary>
    public Parameter this[string name] => _byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"no parameter '{name}'");

    /// <summary>Declares a parameter; call before <see cref="Allocate"/>.</summary>
    public Parameter Add(string name, params int[] shape)
    {
        if (_sealed)
        {
            throw new InvalidOperationException("parameters are already allocated");
        }

        var p = new Parameter(this, name, shape, _length);
        _parameters.Add(p);
        _byName.Add(name, p);
        _length += p.Length;
        return p;
    }

    /// <summary>Allocates the flat buffer for every declared parameter.</summary>
    public void Allocate()
    {
        if (_length > Array.MaxLength)
        {
            throw new NotSupportedException($"{_length} parameters exceed one fp32 buffer ({Array.MaxLength}); models this large are out of scope for the CPU engine");
        }

        _data = new float[_length];
        _sealed = true;
    }
}
