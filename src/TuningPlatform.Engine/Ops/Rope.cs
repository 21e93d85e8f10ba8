// Rotary position embedding, rotate-half form (Hugging Face layout):
//   for each head vector x[0..Dh) at position p and i < Dh/2, with θ_i = p · invFreq[i]:
//     out[i]        = x[i] · cos θ_i − x[i + Dh/2] · sin θ_i
//     out[i + Dh/2] = x[i + Dh/2] · cos θ_i + x[i] · sin θ_i
//
//   x      [T, heads, Dh]   q (heads = H) or k (heads = Hkv), rotated in place
//   table  cos/sin [P, Dh/2] for positions 0..P
//
// llama2.c rotates interleaved pairs (x[2i], x[2i+1]); its q/k weights are permuted on load so this one
// form serves both. Cached for backward: nothing (the rotation is orthogonal; backward rotates by −θ).
// Scaling (rope_scaling): linear divides every frequency by factor; llama3 divides low frequencies by
// factor, keeps high ones and blends in between.
// Reference: HF modeling_rope_utils (_compute_default/linear/llama3_parameters), apply_rotary_pos_emb.
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Ops;

/// <summary>Precomputed cos/sin tables for RoPE.</summary>
public sealed class RopeTable
{
    /// <summary>Builds tables for <paramref name="maxPositions"/> positions of a <paramref name="headDim"/>-wide head.</summary>
    public RopeTable(int headDim, int maxPositions, double theta, RopeScaling? scaling)
    {
        HeadDim = headDim;
        MaxPositions = maxPositions;
        var half = headDim / 2;
        InverseFrequencies = new float[half];
        for (var i = 0; i < half; i++)
        {
            // fp32 as PyTorch and llama2.c compute it, so angles round the same way.
            var f = 1f / MathF.Pow((float)theta, 2 * i / (float)headDim);
            InverseFrequencies[i] = scaling?.Kind switch
            {
                "linear" => f / (float)scaling.Factor,
                "llama3" => Llama3(f, scaling),
                _ => f,
            };
        }

        Cos = new float[maxPositions * half];
        Sin = new float[maxPositions * half];
        for (var p = 0; p < maxPositions; p++)
        {
            for (var i = 0; i < half; i++)
            {
                var angle = p * InverseFrequencies[i];
                Cos[p * half + i] = MathF.Cos(angle);
                Sin[p * half + i] = MathF.Sin(angle);
            }
        }
    }

    /// <summary>Dh.</summary>
    public int HeadDim { get; }

    /// <summary>Positions covered.</summary>
    public int MaxPositions { get; }

    /// <summary>invFreq[i] after scaling, [Dh/2].</summary>
    public float[] InverseFrequencies { get; }

    /// <summary>cos θ, [P, Dh/2].</summary>
    public float[] Cos { get; }

    /// <summary>sin θ, [P, Dh/2].</summary>
    public float[] Sin { get; }

    private static float Llama3(float invFreq, RopeScaling s)
    {
        var lowFreqWavelen = s.OriginalMaxPositions / s.LowFreqFactor;
        var highFreqWavelen = s.OriginalMaxPositions / s.HighFreqFactor;
        var wavelen = 2 * Math.PI / invFreq;
        if (wavelen > lowFreqWavelen)
        {
            return (float)(invFreq / s.Factor);
        }

        if (wavelen < highFreqWavelen)
        {
            return invFreq;
        }

        var smooth = (s.OriginalMaxPositions / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (float)((1 - smooth) * invFreq / s.Factor + smooth * invFreq);
    }
}

/// <summary>Applies rotary position embeddings.</summary>
public static class Rope
{
    /// <summary>Rotates <paramref name="x"/> [T, heads, Dh] in place; row t sits at position positions[t].</summary>
    public static void Forward(Span<float> x, ReadOnlySpan<int> positions, int heads, RopeTable table)
    {
        var dh = table.HeadDim;
        var half = dh / 2;
        for (var t = 0; t < positions.Length; t++)
        {
            var p = positions[t];
            if ((uint)p >= (uint)table.MaxPositions)
            {
                throw new ArgumentOutOfRangeException(nameof(positions), $"position {p} is beyond the RoPE table ({table.MaxPositions} positions)");
            }

            var cos = table.Cos.AsSpan(p * half, half);
            var sin = table.Sin.AsSpan(p * half, half);
            for (var h = 0; h < heads; h++)
            {
                var v = x.Slice((t * heads + h) * dh, dh);
                for (var i = 0; i < half; i++)
                {
                    var x1 = v[i];
                    var x2 = v[i + half];
                    v[i] = x1 * cos[i] - x2 * sin[i];
                    v[i + half] = x2 * cos[i] + x1 * sin[i];
                }
            }
        }
    }
}
