// Output head fused with cross-entropy, computed in chunks of rows (the B·T·V logits never exist at once):
//   for each row n with a target (targets[n] ≠ IgnoreIndex), in chunks of C rows:
//     z = x[n] · Wᵀ                        logits   [C, V]
//     loss[n] = logsumexp(z) − z[target]
//     dz = (softmax(z) − onehot(target)) · scale
//     dx[n] += dz · W,   dW += dzᵀ · x[n]
//     correct += (argmax(z) == target)     first index of the maximum, as torch.argmax
//   Rows without a target (prompt tokens, padding) cost nothing: they are skipped before the head.
//
//   x        [N, D]    final-norm output
//   W        [V, D]    head (the embedding matrix when tied)
//   targets  [N]       next-token ids, IgnoreIndex to skip
//   scratch  [C·V + 2·C·D]   logits, gathered rows, their gradient
//
// Forward and backward happen in the same pass (the logits are thrown away chunk by chunk), so dx and
// dW are ready when the model's backward starts; scale is 1 / (number of target tokens in the step).
// Empty dx and dW give the loss alone (validation). Returns Σ loss over the target rows, in double, and the
// number of those rows whose logits peak at the target (token accuracy), read while the chunk's logits exist.
// Reference: torch.nn.functional.cross_entropy(ignore_index=-100, reduction="sum"); Liger's fused
// linear cross-entropy; llm.c fused_classifier.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Training.Kernels;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Chunked output head + cross-entropy, forward and backward in one pass.</summary>
public static class CrossEntropyOp
{
    /// <summary>Target id that contributes no loss (PyTorch's ignore_index).</summary>
    public const int IgnoreIndex = -100;

    /// <summary>Scratch length for chunks of <paramref name="chunkRows"/> rows.</summary>
    public static int ScratchLength(int chunkRows, int vocab, int dim) => chunkRows * (vocab + 2 * dim);

    /// <summary>Returns Σ loss over target rows; accumulates dx and dW (each skipped when empty) scaled by <paramref name="gradScale"/>.</summary>
    public static double ForwardBackward<T>(Span<T> dx, Span<T> dWeight, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, ReadOnlySpan<int> targets,
        int vocab, int dim, T gradScale, int chunkRows, Span<T> scratch)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        ForwardBackward(dx, dWeight, x, weight, targets, vocab, dim, gradScale, chunkRows, scratch, out _);

    /// <summary>
    /// As the other overload, and counts in <paramref name="correct"/> the target rows whose largest logit (first on ties)
    /// is the target's: the numerator of the mean token accuracy.
    /// </summary>
    public static double ForwardBackward<T>(Span<T> dx, Span<T> dWeight, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, ReadOnlySpan<int> targets,
        int vocab, int dim, T gradScale, int chunkRows, Span<T> scratch, out int correct)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        correct = 0;
        if (scratch.Length < ScratchLength(chunkRows, vocab, dim))
        {
            throw new ArgumentException($"cross-entropy scratch needs {ScratchLength(chunkRows, vocab, dim)} elements, has {scratch.Length}", nameof(scratch));
        }

        var logits = scratch[..(chunkRows * vocab)];
        var xc = scratch.Slice(chunkRows * vocab, chunkRows * dim);
        var dxc = scratch.Slice(chunkRows * (vocab + dim), chunkRows * dim);
        var rows = new int[chunkRows];
        var wantGrad = !dx.IsEmpty || !dWeight.IsEmpty;
        var total = 0.0;
        var n = 0;
        while (n < targets.Length)
        {
            // Gather the next chunk of rows that have a target.
            var c = 0;
            for (; n < targets.Length && c < chunkRows; n++)
            {
                var target = targets[n];
                if (target == IgnoreIndex)
                {
                    continue;
                }

                if ((uint)target >= (uint)vocab)
                {
                    throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} at row {n} is outside the vocabulary [0, {vocab})");
                }

                rows[c] = n;
                x.Slice(n * dim, dim).CopyTo(xc.Slice(c * dim, dim));
                c++;
            }

            if (c == 0)
            {
                break;
            }

            var z = logits[..(c * vocab)];
            TrainingGemm.NT(xc[..(c * dim)], weight, z, c, vocab, dim, accumulate: false);
            if (typeof(T) == typeof(float))
            {
                total += SoftmaxRowsFloat(MemoryMarshal.Cast<T, float>(z), rows.AsSpan(0, c), targets, vocab, float.CreateTruncating(gradScale), wantGrad,
                    out var chunkCorrect);
                correct += chunkCorrect;
            }
            else
            {
                for (var i = 0; i < c; i++)
                {
                    var zi = z.Slice(i * vocab, vocab);
                    var target = targets[rows[i]];
                    if (IndexOfMax(zi) == target)
                    {
                        correct++;
                    }

                    total += SoftmaxRow(zi, target, gradScale, wantGrad);
                }
            }

            if (!wantGrad)
            {
                continue;
            }

            if (!dx.IsEmpty)
            {
                TrainingGemm.NN(z, weight, dxc[..(c * dim)], c, dim, vocab, accumulate: false);
                for (var i = 0; i < c; i++)
                {
                    var row = dx.Slice(rows[i] * dim, dim);
                    TensorPrimitives.Add(row, dxc.Slice(i * dim, dim), row);
                }
            }

            if (!dWeight.IsEmpty)
            {
                TrainingGemm.TN(z, xc[..(c * dim)], dWeight, vocab, dim, c, accumulate: true);
            }
        }

        return total;
    }

    // First index of the largest element (a NaN row has none that counts: −1).
    private static int IndexOfMax<T>(ReadOnlySpan<T> z)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var best = -1;
        var max = T.NegativeInfinity;
        for (var j = 0; j < z.Length; j++)
        {
            if (z[j] > max || (best < 0 && z[j] == max))
            {
                max = z[j];
                best = j;
            }
        }

        return best;
    }

    // Reference row: loss of one row in double; with wantGrad, overwrites the logits with (softmax − onehot)·scale.
    private static double SoftmaxRow<T>(Span<T> zi, int target, T gradScale, bool wantGrad)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var max = TensorPrimitives.Max<T>(zi);
        var sum = 0.0;
        for (var j = 0; j < zi.Length; j++)
        {
            sum += double.CreateTruncating(T.Exp(zi[j] - max));
        }

        var lse = double.CreateTruncating(max) + Math.Log(sum);
        var loss = lse - double.CreateTruncating(zi[target]);
        if (wantGrad)
        {
            var lseT = T.CreateTruncating(lse);
            for (var j = 0; j < zi.Length; j++)
            {
                zi[j] = T.Exp(zi[j] - lseT) * gradScale;
            }

            zi[target] -= gradScale;
        }

        return loss;
    }

    // fp32 rows, vectorised (TensorPrimitives) and split across the worker pool; returns Σ of the rows' losses.
    private static unsafe double SoftmaxRowsFloat(Span<float> z, ReadOnlySpan<int> rows, ReadOnlySpan<int> targets, int vocab, float gradScale, bool wantGrad,
        out int correct)
    {
        var job = SoftmaxJob.Instance;
        var losses = job.Losses.Length >= rows.Length ? job.Losses : job.Losses = new double[rows.Length];
        var hits = job.Correct.Length >= rows.Length ? job.Correct : job.Correct = new bool[rows.Length];
        var rowTargets = job.Targets.Length >= rows.Length ? job.Targets : job.Targets = new int[rows.Length];
        for (var i = 0; i < rows.Length; i++)
        {
            rowTargets[i] = targets[rows[i]];
        }

        fixed (float* pz = z)
        {
            job.Z = pz;
            job.Rows = rows.Length;
            job.Vocab = vocab;
            job.GradScale = gradScale;
            job.WantGrad = wantGrad;
            WorkerPool.Shared.Run(job, Math.Min(rows.Length, WorkerPool.Shared.Threads * 4));
            job.Z = null;
        }

        var total = 0.0;
        correct = 0;
        for (var i = 0; i < rows.Length; i++)
        {
            total += losses[i];
            correct += hits[i] ? 1 : 0;
        }

        return total;
    }

    // z ← exp(z − max) in one pass that also returns Σ z (Vector512 where available).
    private static float ExpInPlace(Span<float> z, float max)
    {
        var i = 0;
        var total = 0f;
        if (Vector512.IsHardwareAccelerated)
        {
            var vm = Vector512.Create(max);
            var acc = Vector512<float>.Zero;
            ref var start = ref MemoryMarshal.GetReference(z);
            for (; i <= z.Length - 16; i += 16)
            {
                var e = Vector512.Exp(Vector512.LoadUnsafe(ref start, (nuint)i) - vm);
                e.StoreUnsafe(ref start, (nuint)i);
                acc += e;
            }

            total = Vector512.Sum(acc);
        }

        for (; i < z.Length; i++)
        {
            z[i] = MathF.Exp(z[i] - max);
            total += z[i];
        }

        return total;
    }

    private sealed unsafe class SoftmaxJob : IParallelJob
    {
        [ThreadStatic]
        private static SoftmaxJob? _instance;

        public float* Z;
        public int Rows;
        public int Vocab;
        public float GradScale;
        public bool WantGrad;

        public static SoftmaxJob Instance => _instance ??= new SoftmaxJob();

        public double[] Losses { get; set; } = [];

        public int[] Targets { get; set; } = [];

        public bool[] Correct { get; set; } = [];

        public void Execute(int chunk, int chunkCount)
        {
            var r0 = (int)((long)Rows * chunk / chunkCount);
            var r1 = (int)((long)Rows * (chunk + 1) / chunkCount);
            for (var i = r0; i < r1; i++)
            {
                var zi = new Span<float>(Z + (long)i * Vocab, Vocab);
                var target = Targets[i];
                var zt = zi[target];
                // e = exp(z − max) in place; loss = log Σe − (z_target − max); dz = e · scale/Σe − scale·onehot.
                // Argmax before the logits become probabilities: its element is the max (IndexOfMax takes the first on ties).
                var argmax = TensorPrimitives.IndexOfMax(zi);
                Correct[i] = argmax == target;
                var max = argmax < 0 ? TensorPrimitives.Max(zi) : zi[argmax];
                var sum = ExpInPlace(zi, max);
                Losses[i] = Math.Log(sum) - (zt - max);
                if (WantGrad)
                {
                    TensorPrimitives.Multiply(zi, GradScale / sum, zi);
                    zi[target] -= GradScale;
                }
            }
        }
    }
}
