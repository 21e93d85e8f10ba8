// RoPE, training pair (rotate-half form, positions restarting inside packed examples):
//   forward   for i < Dh/2, θ = pos[n] · invFreq[i]:
//               y[i] = x[i] cos θ − x[i + Dh/2] sin θ,   y[i + Dh/2] = x[i + Dh/2] cos θ + x[i] sin θ
//   backward  the rotation is orthogonal, so dx = R(−θ) · dy:
//               dx[i] = dy[i] cos θ + dy[i + Dh/2] sin θ,   dx[i + Dh/2] = dy[i + Dh/2] cos θ − dy[i] sin θ
//
//   x, dy  [N, heads, Dh]   q (heads = H) or k (heads = Hkv); both passes work in place
//   pos    [N]              position of each row inside its own example
//   table  cos/sin [P, Dh/2] (Ops/RopeTable)
//
// Cached for backward: nothing (positions only). Backward overwrites its buffer in place (no accumulation).
// Reference: HF apply_rotary_pos_emb; the inference form is Ops/Rope.cs.
using System.Numerics;
using TuningPlatform.Engine.Ops;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Rotary position embedding and its (transposed-rotation) gradient, in place.</summary>
public static class RopeOp
{
    /// <summary>Rotates each head of each row of <paramref name="x"/> by its position's angles.</summary>
    public static void Forward<T>(Span<T> x, ReadOnlySpan<int> positions, int heads, RopeTable table)
        where T : unmanaged, IFloatingPointIeee754<T> => Rotate(x, positions, heads, table, T.One);

    /// <summary>Rotates each head of <paramref name="dx"/> back by its position's angles (the gradient of <see cref="Forward"/>).</summary>
    public static void Backward<T>(Span<T> dx, ReadOnlySpan<int> positions, int heads, RopeTable table)
        where T : unmanaged, IFloatingPointIeee754<T> => Rotate(dx, positions, heads, table, -T.One);

    private static void Rotate<T>(Span<T> x, ReadOnlySpan<int> positions, int heads, RopeTable table, T direction)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var dh = table.HeadDim;
        var half = dh / 2;
        for (var n = 0; n < positions.Length; n++)
        {
            var p = positions[n];
            if ((uint)p >= (uint)table.MaxPositions)
            {
                throw new ArgumentOutOfRangeException(nameof(positions), $"position {p} at row {n} is beyond the RoPE table ({table.MaxPositions} positions)");
            }

            var cos = table.Cos.AsSpan(p * half, half);
            var sin = table.Sin.AsSpan(p * half, half);
            for (var h = 0; h < heads; h++)
            {
                var v = x.Slice((n * heads + h) * dh, dh);
                for (var i = 0; i < half; i++)
                {
                    var c = T.CreateTruncating(cos[i]);
                    var s = direction * T.CreateTruncating(sin[i]);
                    var x1 = v[i];
                    var x2 = v[i + half];
                    v[i] = x1 * c - x2 * s;
                    v[i + half] = x2 * c + x1 * s;
                }
            }
        }
    }
}
