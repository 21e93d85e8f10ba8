// Embedding: out[t, :] = table[tokens[t], :]
//
//   tokens [T]      ids in [0, V)
//   table  [V, D]   token embedding matrix
//   out    [T, D]
//
// Cached for backward: the token ids (the gradient scatters rows back into dtable).
// Reference: torch.nn.Embedding; llm.c encoder_forward.
namespace TuningPlatform.Engine.Ops;

/// <summary>Token embedding lookup.</summary>
public static class Embedding
{
    /// <summary>Copies the embedding row of each token into <paramref name="output"/>.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<int> tokens, ReadOnlySpan<float> table, int dim)
    {
        var vocab = table.Length / dim;
        for (var t = 0; t < tokens.Length; t++)
        {
            var id = tokens[t];
            if ((uint)id >= (uint)vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} at position {t} is outside the vocabulary [0, {vocab})");
            }

            table.Slice(id * dim, dim).CopyTo(output.Slice(t * dim, dim));
        }
    }

    /// <summary>The same lookup from a bf16 table, widening each row to fp32.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<int> tokens, ReadOnlySpan<ushort> table, int dim)
    {
        var vocab = table.Length / dim;
        for (var t = 0; t < tokens.Length; t++)
        {
            var id = tokens[t];
            if ((uint)id >= (uint)vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} at position {t} is outside the vocabulary [0, {vocab})");
            }

            var row = table.Slice(id * dim, dim);
            var dst = output.Slice(t * dim, dim);
            for (var i = 0; i < dim; i++)
            {
                dst[i] = BitConverter.Int32BitsToSingle(row[i] << 16);
            }
        }
    }
}
