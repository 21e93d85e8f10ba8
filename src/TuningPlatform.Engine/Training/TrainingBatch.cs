using TuningPlatform.Engine.Training.Ops;

namespace TuningPlatform.Engine.Training;

/// <summary>One tokenised example: its ids and how many leading ids are prompt (no loss on them unless asked).</summary>
public sealed record TrainingExample(int[] Tokens, int PromptLength);

/// <summary>
/// A batch of B rows × T tokens, each row packing one or more examples without padding between them:
/// positions restart at 0 at each example (so attention and RoPE restart too), and targets hold the next
/// token inside the same example or <see cref="CrossEntropyOp.IgnoreIndex"/> (prompt tokens, the last token
/// of an example, padding).
/// </summary>
public sealed class TrainingBatch
{
    /// <summary>Wraps explicit arrays [B·T]; positions must count up from 0 inside each example.</summary>
    public TrainingBatch(int batch, int seq, int[] tokens, int[] targets, int[] positions)
    {
        if (tokens.Length != batch * seq || targets.Length != batch * seq || positions.Length != batch * seq)
        {
            throw new ArgumentException($"a {batch}×{seq} batch needs {batch * seq} tokens, targets and positions; got {tokens.Length}, {targets.Length}, {positions.Length}");
        }

        for (var b = 0; b < batch; b++)
        {
            for (var t = 0; t < seq; t++)
            {
                var p = positions[b * seq + t];
                var ok = t == 0 ? p == 0 : p == 0 || p == positions[b * seq + t - 1] + 1;
                if (!ok)
                {
                    throw new ArgumentException($"position {p} at row {b}, column {t}: positions start at 0 in each row and count up by one inside each packed example", nameof(positions));
                }
            }
        }

        Batch = batch;
        Sequence = seq;
        Tokens = tokens;
        Targets = targets;
        Positions = positions;
        TargetCount = targets.Count(x => x != CrossEntropyOp.IgnoreIndex);
    }

    /// <summary>B.</summary>
    public int Batch { get; }

    /// <summary>T.</summary>
    public int Sequence { get; }

    /// <summary>Input ids [B·T].</summary>
    public int[] Tokens { get; }

    /// <summary>Next-token targets [B·T], IgnoreIndex where no loss is taken.</summary>
    public int[] Targets { get; }

    /// <summary>Position of each token inside its example [B·T].</summary>
    public int[] Positions { get; }

    /// <summary>Number of tokens that carry a loss.</summary>
    public int TargetCount { get; }

    /// <summary>
    /// Packs <paramref name="examples"/> in order, first-fit into rows of <paramref name="seq"/> tokens (an example
    /// longer than a row is truncated), padding each row's tail with <paramref name="padToken"/>. Loss is on
    /// completion tokens only unless <paramref name="trainOnPrompt"/>. Returns as many batches of
    /// <paramref name="batch"/> rows as needed.
    /// </summary>
    public static IReadOnlyList<TrainingBatch> Pack(IEnumerable<TrainingExample> examples, int batch, int seq, bool trainOnPrompt = false, int padToken = 0)
    {
        // Rows as (tokens, targets, positions, used length).
        var rows = new List<(int[] Tokens, int[] Targets, int[] Positions, int Used)>();
        foreach (var example in examples)
        {
            var n = Math.Min(example.Tokens.Length, seq);
            if (n == 0)
            {
                continue;
            }

            if (rows.Count == 0 || rows[^1].Used + n > seq)
            {
                rows.Add((new int[seq], new int[seq], new int[seq], 0));
            }

            var (tok, tgt, pos, used) = rows[^1];
            for (var i = 0; i < n; i++)
            {
                tok[used + i] = example.Tokens[i];
                pos[used + i] = i;
                // Token i predicts token i + 1 of the same example, when that one is a completion token (or all are trained).
                var next = i + 1;
                tgt[used + i] = next < n && (trainOnPrompt || next >= example.PromptLength) ? example.Tokens[next] : CrossEntropyOp.IgnoreIndex;
            }

            rows[^1] = (tok, tgt, pos, used + n);
        }

        var batches = new List<TrainingBatch>();
        for (var r = 0; r < rows.Count; r += batch)
        {
            var tokens = new int[batch * seq];
            var targets = new int[batch * seq];
            var positions = new int[batch * seq];
            for (var b = 0; b < batch; b++)
            {
                var used = 0;
                if (r + b < rows.Count)
                {
                    rows[r + b].Tokens.CopyTo(tokens, b * seq);
                    rows[r + b].Targets.CopyTo(targets, b * seq);
                    rows[r + b].Positions.CopyTo(positions, b * seq);
                    used = rows[r + b].Used;
                }

                // The tail (or an empty row) is one more example made of padding, with no loss.
                for (var i = used; i < seq; i++)
                {
                    tokens[b * seq + i] = padToken;
                    targets[b * seq + i] = CrossEntropyOp.IgnoreIndex;
                    positions[b * seq + i] = i - used;
                }
            }

            batches.Add(new TrainingBatch(batch, seq, tokens, targets, positions));
        }

        return batches;
    }
}
