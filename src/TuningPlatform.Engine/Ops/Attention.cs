// Causal grouped-query attention over a KV cache:
//   for query row t (absolute position p = start + t) and head h, with kv head g = h / (H / Hkv):
//     s[j]        = (q[t, h] · K[g, j]) / sqrt(Dh)          for j ≤ p
//     a           = softmax(s)
//     out[t, h]   = Σ_j a[j] · V[g, j]
//
//   q      [T, H, Dh]      after RoPE
//   K, V   [Hkv, S, Dh]    cache of one layer (positions 0..start+T filled, keys after RoPE)
//   out    [T, H, Dh]
//   scores [chunks, S]     scratch, one row per parallel chunk
//
// Cached for backward: q, K, V and the attention probabilities (or the softmax statistics to recompute them).
// Reference: HF LlamaAttention (eager, repeat_kv for GQA); llm.c attention_forward.
using System.Numerics.Tensors;
using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Ops;

/// <summary>Causal multi-head / grouped-query attention over a KV cache.</summary>
public static unsafe class Attention
{
    /// <summary>Scratch length <see cref="Forward"/> needs for a cache of <paramref name="maxSequence"/> positions.</summary>
    public static int ScratchLength(int maxSequence, WorkerPool pool) => ChunkCount(pool) * maxSequence;

    /// <summary>Reference kernel (one thread, no scratch reuse), for tests.</summary>
    public static void Naive(Span<float> output, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        int start, int count, int heads, int kvHeads, int headDim, int maxSequence)
    {
        var scale = 1.0 / Math.Sqrt(headDim);
        var group = heads / kvHeads;
        var scores = new double[start + count];
        for (var t = 0; t < count; t++)
        {
            var len = start + t + 1;
            for (var h = 0; h < heads; h++)
            {
                var g = h / group;
                var max = double.NegativeInfinity;
                for (var j = 0; j < len; j++)
                {
                    var s = 0.0;
                    for (var i = 0; i < headDim; i++)
                    {
                        s += (double)q[(t * heads + h) * headDim + i] * keys[(g * maxSequence + j) * headDim + i];
                    }

                    scores[j] = s * scale;
                    max = Math.Max(max, scores[j]);
                }

                var sum = 0.0;
                for (var j = 0; j < len; j++)
                {
                    scores[j] = Math.Exp(scores[j] - max);
                    sum += scores[j];
                }

                for (var i = 0; i < headDim; i++)
                {
                    var acc = 0.0;
                    for (var j = 0; j < len; j++)
                    {
                        acc += scores[j] / sum * values[(g * maxSequence + j) * headDim + i];
                    }

                    output[(t * heads + h) * headDim + i] = (float)acc;
                }
            }
        }
    }

    /// <summary>Fast kernel: (row, head) pairs split across the pool, vectorised dot products and accumulation.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        Span<float> scores, int start, int count, int heads, int kvHeads, int headDim, int maxSequence, WorkerPool? pool = null)
    {
        pool ??= WorkerPool.Shared;
        var chunks = Math.Min(ChunkCount(pool), count * heads);
        if (scores.Length < chunks * maxSequence)
        {
            throw new ArgumentException($"attention scratch needs {chunks * maxSequence} floats, has {scores.Length}", nameof(scores));
        }

        fixed (float* po = output, pq = q, pk = keys, pv = values, ps = scores)
        {
            var job = Job.Instance;
            job.Output = po;
            job.Q = pq;
            job.K = pk;
            job.V = pv;
            job.Scores = ps;
            job.Start = start;
            job.Count = count;
            job.Heads = heads;
            job.Group = heads / kvHeads;
            job.HeadDim = headDim;
            job.MaxSequence = maxSequence;
            // Tiny problems are not worth waking the workers.
            var work = (long)count * heads * (start + count) * headDim;
            pool.Run(job, work < 1 << 16 ? 1 : chunks);
        }
    }

    private static int ChunkCount(WorkerPool pool) => pool.Threads * 4;

    private sealed class Job : IParallelJob
    {
        [ThreadStatic]
        private static Job? _instance;

        public float* Output;
        public float* Q;
        public float* K;
        public float* V;
        public float* Scores;
        public int Start;
        public int Count;
        public int Heads;
        public int Group;
        public int HeadDim;
        public int MaxSequence;

        public static Job Instance => _instance ??= new Job();

        public void Execute(int chunk, int chunkCount)
        {
            var total = Count * Heads;
            var first = (int)((long)total * chunk / chunkCount);
            var last = (int)((long)total * (chunk + 1) / chunkCount);
            var scores = new Span<float>(Scores + (long)chunk * MaxSequence, MaxSequence);
            var scale = 1f / MathF.Sqrt(HeadDim);
            for (var item = first; item < last; item++)
            {
                var t = item / Heads;
                var h = item % Heads;
                var g = h / Group;
                var len = Start + t + 1;
                var qv = new ReadOnlySpan<float>(Q + (long)item * HeadDim, HeadDim);
                var kBase = K + (long)g * MaxSequence * HeadDim;
                var vBase = V + (long)g * MaxSequence * HeadDim;
                for (var j = 0; j < len; j++)
                {
                    scores[j] = TensorPrimitives.Dot(qv, new ReadOnlySpan<float>(kBase + (long)j * HeadDim, HeadDim)) * scale;
                }

                var s = scores[..len];
                // TensorPrimitives.SoftMax is exp(x) / Σ exp(x) without subtracting the maximum: a score above ~88
                // overflows to ∞ / ∞ = NaN. Shifting by the maximum leaves the result unchanged and keeps exp ≤ 1.
                TensorPrimitives.Subtract(s, TensorPrimitives.Max(s), s);
                TensorPrimitives.SoftMax(s, s);
                var o = new Span<float>(Output + (long)item * HeadDim, HeadDim);
                o.Clear();
                for (var j = 0; j < len; j++)
                {
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vBase + (long)j * HeadDim, HeadDim), s[j], o, o);
                }
            }
        }
    }
}
