using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// The parts of a run that creation (to resolve and estimate) and the worker (to train) must compute the same
/// way: the seeded order and batching of each epoch, the step count, parameter counts and the memory estimate.
/// </summary>
public static class Recipe
{
    /// <summary>The engine's names of the LoRA targets, by enum value.</summary>
    public static string ModuleName(LoraTargetModule module) => module switch
    {
        LoraTargetModule.QProj => "q_proj",
        LoraTargetModule.KProj => "k_proj",
        LoraTargetModule.VProj => "v_proj",
        LoraTargetModule.OProj => "o_proj",
        LoraTargetModule.GateProj => "gate_proj",
        LoraTargetModule.UpProj => "up_proj",
        LoraTargetModule.DownProj => "down_proj",
        _ => throw new ArgumentOutOfRangeException(nameof(module), module, "not a LoRA target"),
    };

    /// <summary>
    /// The micro-batches of one epoch: examples in a seeded order (the same in every process, so a resumed run
    /// continues with the batches it would have seen), packed first-fit into rows, or one example per row.
    /// </summary>
    public static IReadOnlyList<TrainingBatch> EpochBatches(IReadOnlyList<TrainingExample> examples, int batch, int seq, long seed, int epoch,
        bool packing, bool trainOnPrompt)
    {
        var order = Enumerable.Range(0, examples.Count).ToArray();
        new Random(unchecked((int)(seed * 1_000_003 + epoch))).Shuffle(order);
        var ordered = order.Select(i => examples[i]);
        return packing ? TrainingBatch.Pack(ordered, batch, seq, trainOnPrompt) : Unpacked(ordered.ToList(), batch, seq, trainOnPrompt);
    }

    /// <summary>Validation batches (in order).</summary>
    public static IReadOnlyList<TrainingBatch> ValidationBatches(IReadOnlyList<TrainingExample> examples, int batch, int seq, bool packing, bool trainOnPrompt) =>
        packing ? TrainingBatch.Pack(examples, batch, seq, trainOnPrompt) : Unpacked(examples, batch, seq, trainOnPrompt);

    /// <summary>One example per row, padded: rows of single-example packs laid side by side.</summary>
    private static List<TrainingBatch> Unpacked(IReadOnlyList<TrainingExample> examples, int batch, int seq, bool trainOnPrompt)
    {
        var result = new List<TrainingBatch>();
        for (var start = 0; start < examples.Count; start += batch)
        {
            var tokens = new int[batch * seq];
            var targets = new int[batch * seq];
            var positions = new int[batch * seq];
            Array.Fill(targets, Engine.Training.Ops.CrossEntropyOp.IgnoreIndex);
            for (var row = 0; row < batch && start + row < examples.Count; row++)
            {
                var single = TrainingBatch.Pack([examples[start + row]], 1, seq, trainOnPrompt);
                if (single.Count == 0)
                {
                    continue;
                }
                single[0].Tokens.CopyTo(tokens, row * seq);
                single[0].Targets.CopyTo(targets, row * seq);
                single[0].Positions.CopyTo(positions, row * seq);
            }
            result.Add(new TrainingBatch(batch, seq, tokens, targets, positions));
        }
        return result;
    }

    /// <summary>Optimizer steps of epoch <paramref name="microBatches"/> / accumulation, rounded up.</summary>
    public static int StepsPerEpoch(int microBatches, int accumulation) => (microBatches + accumulation - 1) / accumulation;

    /// <summary>Parameters of the model described by <paramref name="c"/>: (all, in the seven projections).</summary>
    public static (long Total, long Projections) ParameterCounts(LlamaConfig c)
    {
        long d = c.HiddenSize, f = c.IntermediateSize, q = c.NumHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim, v = c.VocabSize;
        var projections = c.NumLayers * (d * q + 2 * d * kv + q * d + 3 * d * f);
        var biases = c.AttentionBias ? c.NumLayers * (q + 2 * kv) : 0;
        var total = v * d * (c.TieWordEmbeddings ? 1 : 2) + projections + biases + c.NumLayers * 2 * d + d;
        return (total, projections);
    }

    /// <summary>Adapter parameters of rank <paramref name="rank"/> on <paramref name="modules"/> of every layer.</summary>
    public static long LoraParameters(LlamaConfig c, int rank, IEnumerable<string> modules)
    {
        long d = c.HiddenSize, f = c.IntermediateSize, q = c.NumHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
        long perLayer = 0;
        foreach (var m in modules)
        {
            var (input, output) = m switch
            {
                "q_proj" => (d, q),
                "k_proj" or "v_proj" => (d, kv),
                "o_proj" => (q, d),
                "gate_proj" or "up_proj" => (d, f),
                _ => (f, d),
            };
            perLayer += rank * (input + output);
        }
        return c.NumLayers * perLayer;
    }

    /// <summary>
    /// Peak memory of a run: weights in their storage type, gradients and AdamW moments of the trainable
    /// parameters (12 bytes each), and the training graph's activations for a batch × seq micro-batch.
    /// </summary>
    public static long EstimateMemory(LlamaConfig c, TrainingMethod method, WeightDtype baseDtype, long trainable, int batch, int seq, bool checkpointing)
    {
        var (total, projections) = ParameterCounts(c);
        var projectionBytes = method == TrainingMethod.Qlora || baseDtype == WeightDtype.Nf4 ? (long)(projections * 0.52)
            : baseDtype == WeightDtype.Bf16 ? projections * 2 : projections * 4;
        var weights = (total - projections) * 4 + projectionBytes;
        long n = (long)batch * seq, d = c.HiddenSize, f = c.IntermediateSize, q = c.NumHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
        var perLayer = n * (2 + 4 * d + 2 * q + 2 * kv + 3 * f) + (long)batch * c.NumHeads * seq * seq;
        var layers = checkpointing ? 1 : c.NumLayers;
        var activations = layers * perLayer + (c.NumLayers + 1) * n * d + n * (8 * d + 2 * q + 2 * kv + 4 * f) + Math.Min(n, 512) * (c.VocabSize + d);
        return weights + trainable * 12 + activations * 4;
    }
}
