namespace TuningPlatform.Engine.Models;

/// <summary>
/// Keys and values of every layer for one sequence, laid out [L][Hkv, S, Dh] so that one head's keys
/// over all positions are contiguous (attention then reads them as a matrix). Keys are stored after RoPE.
/// </summary>
public sealed class KvCache
{
    /// <summary>Allocates a cache for <paramref name="maxSequence"/> positions.</summary>
    public KvCache(LlamaConfig config, int maxSequence)
    {
        Layers = config.NumLayers;
        KvHeads = config.NumKeyValueHeads;
        HeadDim = config.HeadDim;
        MaxSequence = maxSequence;
        var perLayer = (long)KvHeads * maxSequence * HeadDim;
        if (perLayer > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(maxSequence), $"a KV cache of {maxSequence} positions is too large for one layer");
        }

        Keys = new float[Layers][];
        Values = new float[Layers][];
        for (var l = 0; l < Layers; l++)
        {
            Keys[l] = new float[perLayer];
            Values[l] = new float[perLayer];
        }
    }

    /// <summary>L.</summary>
    public int Layers { get; }

    /// <summary>Hkv.</summary>
    public int KvHeads { get; }

    /// <summary>Dh.</summary>
    public int HeadDim { get; }

    /// <summary>S: positions the cache can hold.</summary>
    public int MaxSequence { get; }

    /// <summary>Positions filled so far; the next token goes at this position.</summary>
    public int Length { get; set; }

    /// <summary>Keys per layer, [Hkv, S, Dh].</summary>
    public float[][] Keys { get; }

    /// <summary>Values per layer, [Hkv, S, Dh].</summary>
    public float[][] Values { get; }

    /// <summary>Forgets every position (the memory is kept for reuse).</summary>
    public void Reset() => Length = 0;

    /// <summary>Stores k, v [T, Hkv, Dh] of layer <paramref name="layer"/> at positions start..start+T.</summary>
    public void Write(int layer, int start, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int count)
    {
        if (start + count > MaxSequence)
        {
            throw new InvalidOperationException($"KV cache holds {MaxSequence} positions; writing {count} at {start} overflows it");
        }

        var keys = Keys[layer];
        var values = Values[layer];
        for (var t = 0; t < count; t++)
        {
            for (var g = 0; g < KvHeads; g++)
            {
                var src = (t * KvHeads + g) * HeadDim;
                var dst = ((g * MaxSequence) + start + t) * HeadDim;
                k.Slice(src, HeadDim).CopyTo(keys.AsSpan(dst, HeadDim));
                v.Slice(src, HeadDim).CopyTo(values.AsSpan(dst, HeadDim));
            }
        }
    }
}
