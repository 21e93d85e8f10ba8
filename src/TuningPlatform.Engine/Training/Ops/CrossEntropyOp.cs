// Output head fused with cross-entropy, computed in chunks of rows (the B·T·V logits never exist at once):
//   for each row n with a target (targets[n] ≠ IgnoreIndex), in chunks of C rows:
//     z = x[n] · Wᵀ                        logits   [C, V]
//     loss[n] = logsumexp(z) − z[target]
//     dz = (softmax(z) − onehot(target)) · scale
//     dx[n] += dz · W,   dW += dzᵀ · x[n]
//   Rows without a target (prompt tokens, padding) cost nothing: they are skipped before the head.
//
//   x        [N, D]    final-norm output
//   W        [V, D]    head (the embedding matrix when tied)
//   targets  [N]       next-token ids, IgnoreIndex to skip
//   scratch  [C·V + 2·C·D]   logits, gathered rows, their gradient
//
// Forward and backward happen in the same pass (the logits are thrown away chunk by chunk), so dx and
// dW are ready when the model's backward starts; scale is 1 / (number of target tokens in the step).
// Empty dx and dW give the loss alone (validation). Returns Σ loss over the target rows, in double.
// Reference: torch.nn.functional.cross_entropy(ignore_index=-100, reduction="sum"); Liger's fused
// linear cross-entropy; llm.c fused_classifier.
using System.Numerics;
using System.Numerics.Tensors;
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
        where T : unmanaged, IFloatingPointIeee754<T>
    {
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
            for (var i = 0; i < c; i++)
            {
                var zi = z.Slice(i * vocab, vocab);
                var target = targets[rows[i]];
                var max = TensorPrimitives.Max(zi);
                var sum = 0.0;
                for (var j = 0; j < vocab; j++)
                {
                    sum += double.CreateTruncating(T.Exp(zi[j] - max));
                }

                var lse = double.CreateTruncating(max) + Math.Log(sum);
                total += lse - double.CreateTruncating(zi[target]);
                if (wantGrad)
                {
                    // dz = (softmax − onehot) · scale, written over the logits.
                    var lseT = T.CreateTruncating(lse);
                    for (var j = 0; j < vocab; j++)
                    {
                        zi[j] = T.Exp(zi[j] - lseT) * gradScale;
                    }

                    zi[target] -= gradScale;
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
}
