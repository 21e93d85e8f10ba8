// Causal grouped-query attention over packed sequences, training pair.
//   Row t of sequence b sits at position pos[b, t] inside its own example, so its example began at row
//   t0 = t − pos[b, t]; it attends to rows s ∈ [t0, t] only (causal, and never across examples).
//   With kv head g = h / (H / Hkv) and scale = 1/√Dh:
//     forward   S[s] = scale · q[t, h] · k[s, g],   P = softmax_s(S),   out[t, h] = Σ_s P[s] · v[s, g]
//     backward  dP[s] = dout[t, h] · v[s, g]
//               dv[s, g] += P[s] · dout[t, h]
//               dS[s] = P[s] · (dP[s] − Σ_j P[j] dP[j])          (softmax Jacobian)
//               dq[t, h] += scale · Σ_s dS[s] · k[s, g],   dk[s, g] += scale · dS[s] · q[t, h]
//
//   q, dq      [B, T, H, Dh]     after RoPE
//   k, v, dk…  [B, T, Hkv, Dh]   k after RoPE
//   pos        [B, T]
//   out        [B, T, H, Dh]
//   probs      [B, H, T, T]      cached for backward: row t holds P over s ∈ [t0, t]; other entries unused
//
// Backward accumulates. GQA needs no repeat_kv copy: the group's heads accumulate into one dk/dv head.
// Reference: HF LlamaAttention (eager, repeat_kv) with a block-diagonal causal mask as in padding-free
// packing (position_ids restarting per example); llm.c attention_forward / attention_backward.
using System.Numerics;
using System.Numerics.Tensors;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Causal GQA attention confined to each packed example, and its gradient.</summary>
public static class AttentionOp
{
    /// <summary>Length of the probability cache for one layer: B·H·T·T.</summary>
    public static long ProbsLength(int batch, int seq, int heads) => (long)batch * heads * seq * seq;

    /// <summary>Computes out and caches the attention probabilities.</summary>
    public static void Forward<T>(Span<T> output, Span<T> probs, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
        ReadOnlySpan<int> positions, int batch, int seq, int heads, int kvHeads, int headDim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var group = heads / kvHeads;
        var scale = T.One / T.Sqrt(T.CreateTruncating(headDim));
        for (var b = 0; b < batch; b++)
        {
            for (var t = 0; t < seq; t++)
            {
                var t0 = ExampleStart(positions, b, seq, t);
                var qRow = (b * seq + t) * heads;
                for (var h = 0; h < heads; h++)
                {
                    var g = h / group;
                    var qh = q.Slice((qRow + h) * headDim, headDim);
                    var p = probs.Slice((int)((((long)b * heads + h) * seq + t) * seq), seq);
                    var max = T.NegativeInfinity;
                    for (var s = t0; s <= t; s++)
                    {
                        var score = scale * TensorPrimitives.Dot(qh, k.Slice(((b * seq + s) * kvHeads + g) * headDim, headDim));
                        p[s] = score;
                        max = T.Max(max, score);
                    }

                    var sum = T.Zero;
                    for (var s = t0; s <= t; s++)
                    {
                        p[s] = T.Exp(p[s] - max);
                        sum += p[s];
                    }

                    var o = output.Slice((qRow + h) * headDim, headDim);
                    o.Clear();
                    var inv = T.One / sum;
                    for (var s = t0; s <= t; s++)
                    {
                        p[s] *= inv;
                        TensorPrimitives.MultiplyAdd(v.Slice(((b * seq + s) * kvHeads + g) * headDim, headDim), p[s], o, o);
                    }
                }
            }
        }
    }

    /// <summary>Accumulates dq, dk and dv from dout and the cached probabilities.</summary>
    public static void Backward<T>(Span<T> dq, Span<T> dk, Span<T> dv, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> probs,
        ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<int> positions,
        int batch, int seq, int heads, int kvHeads, int headDim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var group = heads / kvHeads;
        var scale = T.One / T.Sqrt(T.CreateTruncating(headDim));
        var dp = new T[seq];
        for (var b = 0; b < batch; b++)
        {
            for (var t = 0; t < seq; t++)
            {
                var t0 = ExampleStart(positions, b, seq, t);
                var qRow = (b * seq + t) * heads;
                for (var h = 0; h < heads; h++)
                {
                    var g = h / group;
                    var p = probs.Slice((int)((((long)b * heads + h) * seq + t) * seq), seq);
                    var dO = dOutput.Slice((qRow + h) * headDim, headDim);
                    var qh = q.Slice((qRow + h) * headDim, headDim);
                    var dqh = dq.Slice((qRow + h) * headDim, headDim);

                    // dP and dv; Σ P·dP for the softmax Jacobian.
                    var pdp = T.Zero;
                    for (var s = t0; s <= t; s++)
                    {
                        var kv = ((b * seq + s) * kvHeads + g) * headDim;
                        dp[s] = TensorPrimitives.Dot(dO, v.Slice(kv, headDim));
                        pdp += p[s] * dp[s];
                        var dvs = dv.Slice(kv, headDim);
                        TensorPrimitives.MultiplyAdd(dO, p[s], dvs, dvs);
                    }

                    // dS, then dq and dk.
                    for (var s = t0; s <= t; s++)
                    {
                        var kv = ((b * seq + s) * kvHeads + g) * headDim;
                        var ds = scale * p[s] * (dp[s] - pdp);
                        TensorPrimitives.MultiplyAdd(k.Slice(kv, headDim), ds, dqh, dqh);
                        var dks = dk.Slice(kv, headDim);
                        TensorPrimitives.MultiplyAdd(qh, ds, dks, dks);
                    }
                }
            }
        }
    }

    private static int ExampleStart(ReadOnlySpan<int> positions, int b, int seq, int t)
    {
        var pos = positions[b * seq + t];
        if (pos < 0 || pos > t)
        {
            throw new ArgumentOutOfRangeException(nameof(positions), $"position {pos} at row {t} of sequence {b}: positions count up from 0 inside each packed example");
        }

        return t - pos;
    }
}
