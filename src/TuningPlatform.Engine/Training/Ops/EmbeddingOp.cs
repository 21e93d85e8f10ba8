// Embedding, training pair:
//   forward   out[n, :] = table[tokens[n], :]
//   backward  dtable[tokens[n], :] += dout[n, :]          (rows of repeated tokens add up)
//
//   tokens [N]      ids in [0, V), N = B·T
//   table  [V, D]
//   out    [N, D]
//
// Cached for backward: the token ids. Backward accumulates.
// Reference: torch.nn.Embedding; llm.c encoder_forward / encoder_backward.
using System.Numerics;
using System.Numerics.Tensors;

namespace TuningPlatform.Engine.Training.Ops;

/// <summary>Token embedding lookup and its gradient scatter.</summary>
public static class EmbeddingOp
{
    /// <summary>Copies the row of each token into <paramref name="output"/>.</summary>
    public static void Forward<T>(Span<T> output, ReadOnlySpan<int> tokens, ReadOnlySpan<T> table, int dim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var vocab = table.Length / dim;
        for (var n = 0; n < tokens.Length; n++)
        {
            var id = tokens[n];
            if ((uint)id >= (uint)vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} at row {n} is outside the vocabulary [0, {vocab})");
            }

            table.Slice(id * dim, dim).CopyTo(output.Slice(n * dim, dim));
        }
    }

    /// <summary>Adds each row of <paramref name="dOutput"/> into the gradient row of its token.</summary>
    public static void Backward<T>(Span<T> dTable, ReadOnlySpan<int> tokens, ReadOnlySpan<T> dOutput, int dim)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var n = 0; n < tokens.Length; n++)
        {
            var row = dTable.Slice(tokens[n] * dim, dim);
            TensorPrimitives.Add(row, dOutput.Slice(n * dim, dim), row);
        }
    }
}
