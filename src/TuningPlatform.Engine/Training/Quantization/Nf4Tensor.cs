// NF4 blockwise quantisation with double quantisation (Dettmers et al. 2023, QLoRA):
//   blocks of 64 consecutive weights; per block absmax a_b = max |w|; each w/a_b is stored as the 4-bit index
//   of the nearest of the 16 NF4 values (quantiles of N(0, 1) scaled to [−1, 1], with an exact 0).
//   Double quantisation: the absmaxes, less their mean μ, are stored as int8 with one fp32 scale per group
//   of 256 blocks:  a_b ≈ μ + c_b · s_g / 127,   s_g = max_{b∈g} |a_b − μ|.
//   Memory: 0.5 byte/weight + 1 byte per 64 weights + 4 bytes per 16,384 weights ≈ 0.516 byte/weight.
//
//   codes    [ceil(n/2)]        two indices per byte, element 2i in the low nibble
//   absmax   [ceil(n/64)]       int8 codes
//   scales   [ceil(blocks/256)] fp32
//
// bitsandbytes quantises the absmaxes with its dynamic 8-bit map; this uses linear absmax int8 (simpler,
// and the error it adds, ≤ s_g/254 per block, is reported by the tests). Dequantisation is exact arithmetic
// on these codes, so QLoRA equals LoRA over Dequantize()'s weights.
// Reference: bitsandbytes functional.quantize_4bit (NF4 table), QLoRA paper §3 "Double Quantization".
namespace TuningPlatform.Engine.Training.Quantization;

/// <summary>A weight matrix in NF4 with double-quantised block scales; ≈0.52 byte per weight.</summary>
public sealed class Nf4Tensor
{
    /// <summary>Weights per absmax block.</summary>
    public const int BlockSize = 64;

    /// <summary>Blocks per double-quantisation group.</summary>
    public const int GroupSize = 256;

    /// <summary>The 16 NF4 values (bitsandbytes' table), ascending.</summary>
    public static readonly float[] Codebook =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
        -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236572f, 1.0f,
    ];

    private readonly byte[] _codes;
    private readonly sbyte[] _absmaxCodes;
    private readonly float[] _groupScales;
    private readonly float _absmaxMean;

    private Nf4Tensor(int[] shape, byte[] codes, sbyte[] absmaxCodes, float[] groupScales, float absmaxMean)
    {
        Shape = shape;
        Length = shape.Aggregate(1, (a, b) => a * b);
        _codes = codes;
        _absmaxCodes = absmaxCodes;
        _groupScales = groupScales;
        _absmaxMean = absmaxMean;
    }

    /// <summary>Shape, PyTorch order.</summary>
    public int[] Shape { get; }

    /// <summary>Number of weights.</summary>
    public int Length { get; }

    /// <summary>Bytes held: codes, absmax codes, group scales and the mean.</summary>
    public long ByteSize => _codes.Length + _absmaxCodes.Length + 4L * _groupScales.Length + 4;

    /// <summary>Quantises <paramref name="weights"/> (any length; the last block may be short).</summary>
    public static Nf4Tensor Quantize(ReadOnlySpan<float> weights, params int[] shape)
    {
        var n = weights.Length;
        if (shape.Aggregate(1L, (a, b) => a * b) != n)
        {
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] does not hold {n} weights", nameof(shape));
        }

        var blocks = (n + BlockSize - 1) / BlockSize;
        var absmax = new float[blocks];
        for (var b = 0; b < blocks; b++)
        {
            var block = weights.Slice(b * BlockSize, Math.Min(BlockSize, n - b * BlockSize));
            var m = 0f;
            foreach (var w in block)
            {
                m = Math.Max(m, Math.Abs(w));
            }

            absmax[b] = m;
        }

        // Double quantisation of the absmaxes: int8 around their mean, one scale per group of 256 blocks.
        var mean = blocks == 0 ? 0f : (float)absmax.Average(x => (double)x);
        var groups = (blocks + GroupSize - 1) / GroupSize;
        var scales = new float[groups];
        var absmaxCodes = new sbyte[blocks];
        for (var g = 0; g < groups; g++)
        {
            var end = Math.Min(blocks, (g + 1) * GroupSize);
            var s = 0f;
            for (var b = g * GroupSize; b < end; b++)
            {
                s = Math.Max(s, Math.Abs(absmax[b] - mean));
            }

            scales[g] = s;
            for (var b = g * GroupSize; b < end; b++)
            {
                absmaxCodes[b] = s == 0 ? (sbyte)0 : (sbyte)Math.Round((absmax[b] - mean) / s * 127);
            }
        }

        // Weights are normalised by the absmax that dequantisation will see, so codes and scales agree.
        var codes = new byte[(n + 1) / 2];
        var tensor = new Nf4Tensor(shape, codes, absmaxCodes, scales, mean);
        for (var b = 0; b < blocks; b++)
        {
            var a = tensor.BlockAbsmax(b);
            var inv = a == 0 ? 0f : 1f / a;
            var end = Math.Min(n, (b + 1) * BlockSize);
            for (var i = b * BlockSize; i < end; i++)
            {
                var index = Nearest(Math.Clamp(weights[i] * inv, -1f, 1f));
                codes[i >> 1] |= (byte)((i & 1) == 0 ? index : index << 4);
            }
        }

        return tensor;
    }

    /// <summary>The dequantised absmax of block <paramref name="block"/>.</summary>
    public float BlockAbsmax(int block) => _absmaxMean + _absmaxCodes[block] * (_groupScales[block / GroupSize] / 127f);

    /// <summary>Writes the dequantised weights to <paramref name="destination"/>.</summary>
    public void Dequantize(Span<float> destination)
    {
        for (var b = 0; b * BlockSize < Length; b++)
        {
            var a = BlockAbsmax(b);
            var end = Math.Min(Length, (b + 1) * BlockSize);
            for (var i = b * BlockSize; i < end; i++)
            {
                var code = _codes[i >> 1];
                destination[i] = Codebook[(i & 1) == 0 ? code & 0xF : code >> 4] * a;
            }
        }
    }

    /// <summary>Writes weights <paramref name="start"/> .. start + destination.Length, dequantised, to <paramref name="destination"/> (a GEMM packs panels with this).</summary>
    public void DequantizeRange(long start, Span<float> destination)
    {
        if (start < 0 || start + destination.Length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"range [{start}, {start + destination.Length}) is outside the tensor's {Length} weights");
        }

        var i = (int)start;
        var end = i + destination.Length;
        var o = 0;
        var codebook = Codebook.AsSpan();
        while (i < end)
        {
            // One block at a time: its absmax once, then codes two per byte.
            var block = i / BlockSize;
            var a = BlockAbsmax(block);
            var blockEnd = Math.Min(end, (block + 1) * BlockSize);
            for (; i < blockEnd; i++, o++)
            {
                var code = _codes[i >> 1];
                destination[o] = codebook[(i & 1) == 0 ? code & 0xF : code >> 4] * a;
            }
        }
    }

    /// <summary>The dequantised weights as a new array.</summary>
    public float[] Dequantize()
    {
        var result = new float[Length];
        Dequantize(result);
        return result;
    }

    // Nearest codebook index: the table is ascending, so compare with the midpoints.
    private static int Nearest(float x)
    {
        var i = 0;
        while (i < 15 && x > (Codebook[i] + Codebook[i + 1]) * 0.5f)
        {
            i++;
        }

        return i;
    }
}
