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
//
// Two kernels, one contract. Naive (generic, float64 finite-difference checks): per row and head, dot
// products and axpys. Fast (fp32, AVX-512): per (sequence, kv head) on the worker pool, every product is a
// strided PackedGemm on the calling thread, reading q, k, v, dout in place:
//   S = scale · Q_h K_gᵀ written straight into the probs cache [T, T], softmax row by row over [t0, t]
//   (zero elsewhere), out_h = P V_g;  backward dP = dO_h V_gᵀ, dV_g += Pᵀ dO_h, dS = P ⊙ (dP − rowsum(P ⊙ dP)),
//   dQ_h += scale · dS K_g, dK_g += scale · dSᵀ Q_h. Rows go in blocks of 48; a block's products cover only
//   the columns from its first row's example start to its last row, so the causal upper triangle (and
//   earlier examples of a packed sequence) are skipped, but for the block's own diagonal square.
// Reference: HF LlamaAttention (eager, repeat_kv) with a block-diagonal causal mask as in padding-free
// packing (position_ids restarting per example); llm.c attention_forward / attention_backward.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Training.Kernels;

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
        if (typeof(T) == typeof(float) && PackedGemm.IsSupported)
        {
            Fast(MemoryMarshal.Cast<T, float>(output), MemoryMarshal.Cast<T, float>(probs), default, default, default, default,
                MemoryMarshal.Cast<T, float>(q), MemoryMarshal.Cast<T, float>(k), MemoryMarshal.Cast<T, float>(v), positions,
                batch, seq, heads, kvHeads, headDim, backward: false);
            return;
        }

        ForwardNaive(output, probs, q, k, v, positions, batch, seq, heads, kvHeads, headDim);
    }

    /// <summary>Accumulates dq, dk and dv from dout and the cached probabilities.</summary>
    public static void Backward<T>(Span<T> dq, Span<T> dk, Span<T> dv, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> probs,
        ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<int> positions,
        int batch, int seq, int heads, int kvHeads, int headDim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && PackedGemm.IsSupported)
        {
            Fast(default, MemoryMarshal.Cast<T, float>(MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(probs), probs.Length)),
                MemoryMarshal.Cast<T, float>(dq), MemoryMarshal.Cast<T, float>(dk), MemoryMarshal.Cast<T, float>(dv), MemoryMarshal.Cast<T, float>(dOutput),
                MemoryMarshal.Cast<T, float>(q), MemoryMarshal.Cast<T, float>(k), MemoryMarshal.Cast<T, float>(v), positions,
                batch, seq, heads, kvHeads, headDim, backward: true);
            return;
        }

        BackwardNaive(dq, dk, dv, dOutput, probs, q, k, v, positions, batch, seq, heads, kvHeads, headDim);
    }

    /// <summary>Reference forward: dot products per row and head.</summary>
    public static void ForwardNaive<T>(Span<T> output, Span<T> probs, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
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

    /// <summary>Reference backward: dot products and axpys per row and head.</summary>
    public static void BackwardNaive<T>(Span<T> dq, Span<T> dk, Span<T> dv, ReadOnlySpan<T> dOutput, ReadOnlySpan<T> probs,
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

    private static unsafe void Fast(Span<float> output, Span<float> probs, Span<float> dq, Span<float> dk, Span<float> dv, ReadOnlySpan<float> dOutput,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> positions,
        int batch, int seq, int heads, int kvHeads, int headDim, bool backward)
    {
        var n = batch * seq;
        if (q.Length < n * heads * headDim || k.Length < n * kvHeads * headDim || v.Length < n * kvHeads * headDim
            || probs.Length < ProbsLength(batch, seq, heads) || positions.Length < n)
        {
            throw new ArgumentException($"attention buffers are smaller than B={batch}, T={seq}, H={heads}, Hkv={kvHeads}, Dh={headDim} need");
        }

        for (var b = 0; b < batch; b++)
        {
            for (var t = 0; t < seq; t++)
            {
                ExampleStart(positions, b, seq, t);
            }
        }

        var job = FastJob.Instance;
        fixed (float* po = output, pp = probs, pdq = dq, pdk = dk, pdv = dv, pdo = dOutput, pq = q, pk = k, pv = v)
        fixed (int* pos = positions)
        {
            job.Output = po;
            job.Probs = pp;
            job.DQ = pdq;
            job.DK = pdk;
            job.DV = pdv;
            job.DOutput = pdo;
            job.Q = pq;
            job.K = pk;
            job.V = pv;
            job.Positions = pos;
            job.Seq = seq;
            job.Heads = heads;
            job.KvHeads = kvHeads;
            job.HeadDim = headDim;
            job.Backward = backward;
            WorkerPool.Shared.Run(job, batch * kvHeads);
        }
    }

    // Rows per causal block: 8 register tiles of the GEMM.
    private const int RowBlock = 48;

    private sealed unsafe class FastJob : IParallelJob
    {
        [ThreadStatic]
        private static FastJob? _instance;

        [ThreadStatic]
        private static float[]? _dp;

        [ThreadStatic]
        private static float[]? _transposed;

        public float* Output;
        public float* Probs;
        public float* DQ;
        public float* DK;
        public float* DV;
        public float* DOutput;
        public float* Q;
        public float* K;
        public float* V;
        public int* Positions;
        public int Seq;
        public int Heads;
        public int KvHeads;
        public int HeadDim;
        public bool Backward;

        public static FastJob Instance => _instance ??= new FastJob();

        // Chunk = one (sequence b, kv head g): it alone writes dk/dv of g, and dq/out of the group's heads.
        public void Execute(int chunk, int chunkCount)
        {
            var (t, dh) = (Seq, HeadDim);
            var b = chunk / KvHeads;
            var g = chunk % KvHeads;
            var kvStride = (long)KvHeads * dh;
            var dpArray = Backward ? (_dp is { } d && d.Length >= t * t ? d : _dp = GC.AllocateUninitializedArray<float>(t * t, pinned: true)) : null;
            // K_g (forward) or V_g (backward) transposed once to [Dh, T]: the Q·Kᵀ and dO·Vᵀ products of every
            // head and row block then read their B in KN layout, packed by vector copies instead of a gather.
            var transposed = _transposed is { } tr && tr.Length >= t * dh ? tr : _transposed = GC.AllocateUninitializedArray<float>(t * dh, pinned: true);
            fixed (float* kvT = transposed)
            {
                Transpose((Backward ? V : K) + (b * t * kvStride) + g * dh, kvStride, kvT, t, dh);
                RunHeads(b, g, kvT, dpArray);
            }
        }

        private void RunHeads(int b, int g, float* kvT, float[]? dpArray)
        {
            var (t, dh) = (Seq, HeadDim);
            var group = Heads / KvHeads;
            var qStride = (long)Heads * dh;
            var kvStride = (long)KvHeads * dh;
            var scale = 1f / MathF.Sqrt(dh);
            var kg = K + (b * t * kvStride) + g * dh;
            var vg = V + (b * t * kvStride) + g * dh;
            var pos = Positions + b * t;
            for (var h = g * group; h < (g + 1) * group; h++)
            {
                var p = Probs + ((long)b * Heads + h) * t * t;
                var qh = Q + (b * t * qStride) + h * dh;
                if (!Backward)
                {
                    // Row block [r0, r1) attends to columns [c0, r1) only (c0: the example start of its first
                    // row), so the causal upper triangle is skipped but for the block's own diagonal square.
                    for (var r0 = 0; r0 < t; r0 += RowBlock)
                    {
                        var r1 = Math.Min(t, r0 + RowBlock);
                        var c0 = r0 - pos[r0];
                        var pBlock = p + (long)r0 * t + c0;
                        // S = scale · Q_h K_gᵀ into the cache, then softmax over each row's own example.
                        PackedGemm.Run(qh + r0 * qStride, qStride, 1, kvT + c0, t, GemmLayout.KN, pBlock, t, r1 - r0, r1 - c0, dh, scale, accumulate: false, null);
                        for (var row = r0; row < r1; row++)
                        {
                            var t0 = row - pos[row];
                            var full = p + (long)row * t;
                            SoftmaxRow(full + t0, row + 1 - t0);
                            new Span<float>(full, t0).Clear();
                            new Span<float>(full + row + 1, t - row - 1).Clear();
                        }

                        PackedGemm.Run(pBlock, t, 1, vg + c0 * kvStride, kvStride, GemmLayout.KN, Output + (b * t * qStride) + h * dh + r0 * qStride, qStride,
                            r1 - r0, dh, r1 - c0, 1f, accumulate: false, null);
                    }

                    continue;
                }

                fixed (float* dp = dpArray)
                {
                    var doh = DOutput + (b * t * qStride) + h * dh;
                    for (var r0 = 0; r0 < t; r0 += RowBlock)
                    {
                        var r1 = Math.Min(t, r0 + RowBlock);
                        var c0 = r0 - pos[r0];
                        var pBlock = p + (long)r0 * t + c0;
                        var dpBlock = dp + (long)r0 * t + c0;
                        // dP = dO_h V_gᵀ;  dV_g += Pᵀ dO_h  (over the block's live columns [c0, r1)).
                        PackedGemm.Run(doh + r0 * qStride, qStride, 1, kvT + c0, t, GemmLayout.KN, dpBlock, t, r1 - r0, r1 - c0, dh, 1f, accumulate: false, null);
                        PackedGemm.Run(pBlock, 1, t, doh + r0 * qStride, qStride, GemmLayout.KN, DV + (b * t * kvStride) + g * dh + c0 * kvStride, kvStride,
                            r1 - c0, dh, r1 - r0, 1f, accumulate: true, null);
                        // dS = P ⊙ (dP − Σ_s P·dP) over each row's live range (zero elsewhere, since P is).
                        for (var row = r0; row < r1; row++)
                        {
                            var t0 = row - pos[row];
                            SoftmaxBackwardRow(p + (long)row * t, dp + (long)row * t, t0, row + 1, t);
                        }

                        // dQ_h += scale · dS K_g;  dK_g += scale · dSᵀ Q_h.
                        PackedGemm.Run(dpBlock, t, 1, kg + c0 * kvStride, kvStride, GemmLayout.KN, DQ + (b * t * qStride) + h * dh + r0 * qStride, qStride,
                            r1 - r0, dh, r1 - c0, scale, accumulate: true, null);
                        PackedGemm.Run(dpBlock, 1, t, qh + r0 * qStride, qStride, GemmLayout.KN, DK + (b * t * kvStride) + g * dh + c0 * kvStride, kvStride,
                            r1 - c0, dh, r1 - r0, scale, accumulate: true, null);
                    }
                }
            }
        }
    }

    // dst[d·rows + s] = src[s·stride + d]: one kv head's [rows, dh] slice to [dh, rows].
    private static unsafe void Transpose(float* src, long stride, float* dst, int rows, int dh)
    {
        for (var s = 0; s < rows; s++)
        {
            var row = src + s * stride;
            for (var d = 0; d < dh; d++)
            {
                dst[(long)d * rows + s] = row[d];
            }
        }
    }

    // In place over n scores: exp(x − max) / Σ, in Vector512 steps with a masked tail.
    private static unsafe void SoftmaxRow(float* x, int n)
    {
        var max = Vector512.Create(float.NegativeInfinity);
        var i = 0;
        for (; i <= n - 16; i += 16)
        {
            max = Vector512.Max(max, Vector512.Load(x + i));
        }

        var m = float.NegativeInfinity;
        for (var j = 0; j < 16; j++)
        {
            m = MathF.Max(m, max[j]);
        }

        for (var j = i; j < n; j++)
        {
            m = MathF.Max(m, x[j]);
        }

        var vm = Vector512.Create(m);
        var sum = Vector512<float>.Zero;
        for (i = 0; i <= n - 16; i += 16)
        {
            var e = Vector512.Exp(Vector512.Load(x + i) - vm);
            e.Store(x + i);
            sum += e;
        }

        var total = Vector512.Sum(sum);
        for (var j = i; j < n; j++)
        {
            x[j] = MathF.Exp(x[j] - m);
            total += x[j];
        }

        var inv = Vector512.Create(1f / total);
        for (i = 0; i <= n - 16; i += 16)
        {
            (Vector512.Load(x + i) * inv).Store(x + i);
        }

        for (var j = i; j < n; j++)
        {
            x[j] *= 1f / total;
        }
    }

    // dS = P ⊙ (dP − Σ P·dP) over the live range [s0, s1) of one row; zero elsewhere (P is zero there).
    private static unsafe void SoftmaxBackwardRow(float* p, float* dp, int s0, int s1, int t)
    {
        var dot = new ReadOnlySpan<float>(p + s0, s1 - s0);
        var live = new Span<float>(dp + s0, s1 - s0);
        var d = TensorPrimitives.Dot(dot, live);
        var i = 0;
        var vd = Vector512.Create(d);
        for (; i <= live.Length - 16; i += 16)
        {
            var q = dp + s0 + i;
            ((Vector512.Load(q) - vd) * Vector512.Load(p + s0 + i)).Store(q);
        }

        for (; i < live.Length; i++)
        {
            live[i] = (live[i] - d) * dot[i];
        }

        new Span<float>(dp, s0).Clear();
        new Span<float>(dp + s1, t - s1).Clear();
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
