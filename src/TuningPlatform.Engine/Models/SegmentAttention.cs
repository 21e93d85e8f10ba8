// Causal grouped-query attention for a batch of segments, each over its own KV cache:
//   the T rows of one forward are S segments of consecutive rows; segment s has n_s rows at positions
//   start_s .. start_s + n_s − 1 of sequence s, whose keys and values are in caches[s] (already written for
//   this step). For row t of segment s (position p) and head h, with kv head g = h / (H / Hkv):
//     s[j]      = (q[t, h] · K_s[g, j]) / sqrt(Dh)        for j ≤ p
//     out[t, h] = Σ_j softmax(s)[j] · V_s[g, j]
//
//   q, out   [T, H, Dh]
//   K_s, V_s [Hkv, S_s, Dh]   layer `layer` of caches[s]
//   scores   [chunks, Smax]   scratch, one row per parallel chunk
//
// Prefill of several prompts (segments of many rows) and batched decode (segments of one row) both come here, so
// every (row, head) pair of the whole batch is split across the worker pool in one go, instead of one pool run per
// sequence. Each (row, head) pair is computed exactly as Ops.Attention computes it (same operations in the same
// order), so a sequence's output does not depend on the others in its batch.
// Reference: Ops/Attention.cs; vLLM's varlen (ragged) attention for the layout.
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Models;

/// <summary>Attention over ragged segments, each with its own KV cache (see the file header).</summary>
internal sealed unsafe class SegmentAttention : IParallelJob
{
    // Below this many multiply-adds, waking the workers costs more than the work (as Ops.Attention).
    private const long MinParallelWork = 1 << 16;

    private float[] _q = [];
    private float[] _output = [];
    private float[] _scores = [];
    private int[] _rowSegment = [];
    private int[] _positions = [];
    private IReadOnlyList<KvCache> _caches = [];
    private int _layer;
    private int _rows;
    private int _heads;
    private int _group;
    private int _headDim;
    private int _scoresStride;
    private bool _fast;

    /// <summary>Runs attention of layer <paramref name="layer"/> for <paramref name="rows"/> rows (see the file header).</summary>
    public void Run(float[] output, float[] q, float[] scores, int scoresStride, int[] rowSegment, int[] positions, IReadOnlyList<KvCache> caches,
        int layer, int rows, int heads, int kvHeads, int headDim, WorkerPool pool)
    {
        _q = q;
        _output = output;
        _scores = scores;
        _scoresStride = scoresStride;
        _rowSegment = rowSegment;
        _positions = positions;
        _caches = caches;
        _layer = layer;
        _rows = rows;
        _heads = heads;
        _group = heads / kvHeads;
        _headDim = headDim;
        _fast = DecodeMatMul.IsAccelerated(headDim) && headDim % 16 == 0;
        var work = 0L;
        for (var t = 0; t < rows; t++)
        {
            work += (long)heads * (positions[t] + 1) * headDim;
        }

        var chunks = Math.Min(Math.Min(pool.Threads * 4, scores.Length / scoresStride), rows * heads);
        pool.Run(this, work < MinParallelWork ? 1 : chunks);
        _caches = [];
    }

    /// <summary>Runs one chunk of the (row, head) pairs.</summary>
    public void Execute(int chunk, int chunkCount)
    {
        var total = _rows * _heads;
        var first = (int)((long)total * chunk / chunkCount);
        var last = (int)((long)total * (chunk + 1) / chunkCount);
        var dh = _headDim;
        var scores = _scores.AsSpan(chunk * _scoresStride, _scoresStride);
        var scale = 1f / MathF.Sqrt(dh);
        for (var item = first; item < last; item++)
        {
            var t = item / _heads;
            var h = item % _heads;
            var g = h / _group;
            var cache = _caches[_rowSegment[t]];
            var len = _positions[t] + 1;
            var qv = _q.AsSpan(item * dh, dh);
            var keys = cache.Keys[_layer].AsSpan(g * cache.MaxSequence * dh);
            var values = cache.Values[_layer].AsSpan(g * cache.MaxSequence * dh);
            if (_fast)
            {
                FastItem(qv, keys, values, scores[..len], _output.AsSpan(item * dh, dh), scale);
                continue;
            }

            for (var j = 0; j < len; j++)
            {
                scores[j] = TensorPrimitives.Dot(qv, keys.Slice(j * dh, dh)) * scale;
            }

            var s = scores[..len];
            // As Ops.Attention: shift by the maximum first (TensorPrimitives.SoftMax does not, and exp overflows past ~88).
            TensorPrimitives.Subtract(s, TensorPrimitives.Max(s), s);
            TensorPrimitives.SoftMax(s, s);
            var o = _output.AsSpan(item * dh, dh);
            o.Clear();
            for (var j = 0; j < len; j++)
            {
                TensorPrimitives.MultiplyAdd(values.Slice(j * dh, dh), s[j], o, o);
            }
        }
    }

    // Head dims that are multiples of 16 (48, 64, 128: the real models): the scores as one matrix-vector product over
    // the cached keys (DecodeMatMul, 4 keys per register tile) and the weighted sum of values in registers, instead of
    // one TensorPrimitives call per cached position. Same mathematics; the sums run in another order than Ops.Attention's,
    // so a row agrees with the single-sequence path within float rounding rather than bitwise.
    private static void FastItem(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> s, Span<float> output, float scale)
    {
        var dh = q.Length;
        var len = s.Length;
        DecodeMatMul.Forward(q, keys[..(len * dh)], default, s, 1, len, dh, SingleThread);
        TensorPrimitives.Multiply(s, scale, s);
        TensorPrimitives.Subtract(s, TensorPrimitives.Max(s), s);
        TensorPrimitives.SoftMax(s, s);
        // The weighted sum of values, 64 output columns at a time: one accumulator per 16 columns and per parity of
        // the position, so up to 8 independent FMA chains run at once (a single chain per 16 columns waited the FMA's
        // 4-cycle latency at every position): 0.37 µs against 0.87 over 200 positions at head dimension 48.
        fixed (float* pv = values, ps = s, po = output)
        {
            for (var c = 0; c < dh; c += 64)
            {
                switch ((dh - c) / 16)
                {
                    case 1: WeightedSum<Count1>(pv + c, ps, po + c, len, dh); break;
                    case 2: WeightedSum<Count2>(pv + c, ps, po + c, len, dh); break;
                    case 3: WeightedSum<Count3>(pv + c, ps, po + c, len, dh); break;
                    default: WeightedSum<Count4>(pv + c, ps, po + c, len, dh); break;
                }
            }
        }
    }

    // o[0..16·TV] = Σ_j s[j] · v[j·dh .. j·dh + 16·TV]: even positions into one set of accumulators, odd into
    // another, added at the end (a fixed order, so a row's result does not depend on the other rows of its step).
    private static void WeightedSum<TV>(float* v, float* s, float* o, int len, int dh)
        where TV : struct, ICount
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        var j = 0;
        for (; j + 2 <= len; j += 2)
        {
            var r0 = v + ((long)j * dh);
            var r1 = r0 + dh;
            var w0 = Vector512.Create(s[j]);
            var w1 = Vector512.Create(s[j + 1]);
            a0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0), a0);
            b0 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(r1), b0);
            if (TV.Value > 1)
            {
                a1 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0 + 16), a1);
                b1 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(r1 + 16), b1);
            }

            if (TV.Value > 2)
            {
                a2 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0 + 32), a2);
                b2 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(r1 + 32), b2);
            }

            if (TV.Value > 3)
            {
                a3 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0 + 48), a3);
                b3 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(r1 + 48), b3);
            }
        }

        if (j < len)
        {
            var r0 = v + ((long)j * dh);
            var w0 = Vector512.Create(s[j]);
            a0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0), a0);
            if (TV.Value > 1)
            {
                a1 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0 + 16), a1);
            }

            if (TV.Value > 2)
            {
                a2 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0 + 32), a2);
            }

            if (TV.Value > 3)
            {
                a3 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(r0 + 48), a3);
            }
        }

        (a0 + b0).Store(o);
        if (TV.Value > 1)
        {
            (a1 + b1).Store(o + 16);
        }

        if (TV.Value > 2)
        {
            (a2 + b2).Store(o + 32);
        }

        if (TV.Value > 3)
        {
            (a3 + b3).Store(o + 48);
        }
    }

    // Inner products run inside a chunk that already has a thread of the pool.
    private static readonly WorkerPool SingleThread = new(1);
}

/// <summary>
/// The LoRA updates of one projection for a ragged batch: sequence i's rows get adapters[i]'s update (none when null),
/// the sequences on adapters dealt round-robin across the worker pool (each writes only its own rows, and Apply computes
/// every row alone, so the split changes no result).
/// </summary>
internal sealed class SegmentLoRA : IParallelJob
{
    private float[] _output = [];
    private float[] _input = [];
    private int[] _starts = [];
    private int[] _work = [];
    private int _workCount;
    private IReadOnlyList<LoRAWeights?> _adapters = [];
    private int _outDim;
    private int _inDim;
    private int _layer;
    private LoRAModule _module;

    /// <summary>Adds the updates for <paramref name="segments"/> sequences whose rows start at <paramref name="starts"/>.</summary>
    public void Run(float[] output, float[] input, int[] starts, IReadOnlyList<LoRAWeights?> adapters, int segments, int outDim, int inDim,
        int layer, LoRAModule module, WorkerPool pool)
    {
        if (_work.Length < segments)
        {
            _work = new int[Math.Max(segments, 2 * _work.Length)];
        }

        _workCount = 0;
        for (var i = 0; i < segments; i++)
        {
            if (adapters[i]?.Targets(layer, module) == true)
            {
                _work[_workCount++] = i;
            }
        }

        _output = output;
        _input = input;
        _starts = starts;
        _adapters = adapters;
        _outDim = outDim;
        _inDim = inDim;
        _layer = layer;
        _module = module;
        pool.Run(this, Math.Min(_workCount, pool.Threads));
        _adapters = [];
    }

    /// <summary>Runs the sequences on adapters numbered chunk, chunk + chunkCount, ….</summary>
    public void Execute(int chunk, int chunkCount)
    {
        for (var w = chunk; w < _workCount; w += chunkCount)
        {
            var i = _work[w];
            var first = _starts[i];
            var n = _starts[i + 1] - first;
            _adapters[i]!.Apply(_output.AsSpan(first * _outDim, n * _outDim), _input.AsSpan(first * _inDim, n * _inDim), n, _layer, _module);
        }
    }
}
