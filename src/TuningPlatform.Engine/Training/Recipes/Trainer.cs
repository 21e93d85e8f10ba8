using TuningPlatform.Engine.Training.Optim;

namespace TuningPlatform.Engine.Training.Recipes;

/// <summary>Optimizer-step settings of a fine-tuning run.</summary>
public sealed record TrainerOptions
{
    /// <summary>Learning rate over the steps (warmup, then cosine or linear decay).</summary>
    public required LearningRateSchedule Schedule { get; init; }

    /// <summary>AdamW hyperparameters.</summary>
    public AdamWOptions AdamW { get; init; } = new();

    /// <summary>Clip the global gradient norm to this (0 disables clipping; the norm is still reported).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
}

/// <summary>What one optimizer step did.</summary>
/// <param name="Step">0-based step index.</param>
/// <param name="Loss">Mean loss per target token over the step's micro-batches, before the update.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="LearningRate">Rate used for the update.</param>
/// <param name="Tokens">Target tokens in the step.</param>
public sealed record StepResult(int Step, double Loss, double GradNorm, double LearningRate, int Tokens)
{
    /// <summary>Target tokens of the step whose largest logit (before the update) was the target.</summary>
    public int CorrectTokens { get; init; }

    /// <summary>Mean token accuracy of the step: <see cref="CorrectTokens"/> / <see cref="Tokens"/>.</summary>
    public double TokenAccuracy => Tokens == 0 ? 0 : (double)CorrectTokens / Tokens;
}

/// <summary>
/// The training step: gradient accumulation over micro-batches (the loss is the mean over every target token of
/// the step, so accumulation equals one large batch), global-norm clipping, AdamW with the scheduled rate.
/// Trains whatever <c>trainable</c> holds gradients for: the model's own parameters (full fine-tuning) or an
/// adapter's (LoRA, QLoRA).
/// </summary>
public sealed class Trainer
{
    private readonly LlamaTrainingModel _graph;
    private readonly ParameterGradients _trainable;

    /// <summary>Creates the optimizer for <paramref name="trainable"/>'s parameters.</summary>
    public Trainer(LlamaTrainingModel graph, ParameterGradients trainable, TrainerOptions options)
    {
        _graph = graph;
        _trainable = trainable;
        Options = options;
        Optimizer = new AdamW(trainable, options.AdamW);
    }

    /// <summary>Settings.</summary>
    public TrainerOptions Options { get; }

    /// <summary>The optimizer and its moments.</summary>
    public AdamW Optimizer { get; }

    /// <summary>Optimizer steps taken (restored by <see cref="TrainingCheckpoint.Load"/>).</summary>
    public int Step { get; internal set; }

    /// <summary>The training graph.</summary>
    public LlamaTrainingModel Graph => _graph;

    /// <summary>The gradients of the parameters this trainer updates (their store holds the parameters).</summary>
    public ParameterGradients Trainable => _trainable;

    /// <summary>One optimizer step over <paramref name="microBatches"/> (accumulated).</summary>
    public StepResult TrainStep(IReadOnlyList<TrainingBatch> microBatches)
    {
        _trainable.Zero();
        if (!ReferenceEquals(_graph.Gradients, _trainable))
        {
            _graph.Gradients?.Zero();
        }

        var tokens = microBatches.Sum(b => b.TargetCount);
        var scale = tokens == 0 ? 0f : 1f / tokens;
        var sum = 0.0;
        var correct = 0;
        foreach (var batch in microBatches)
        {
            var loss = _graph.ForwardBackward(batch, scale);
            sum += loss.Sum;
            correct += loss.Correct;
        }

        var norm = GradientClipping.ClipByGlobalNorm([_trainable.Data], Options.MaxGradNorm);
        var lr = Options.Schedule.At(Step);
        Optimizer.Step(lr);
        var result = new StepResult(Step, tokens == 0 ? 0 : sum / tokens, norm, lr, tokens) { CorrectTokens = correct };
        Step++;
        return result;
    }

    /// <summary>Mean loss per target token over <paramref name="batches"/> (validation; no gradients).</summary>
    public double Evaluate(IEnumerable<TrainingBatch> batches) => EvaluateSum(batches).Mean;

    /// <summary>Summed loss, target tokens and correctly predicted tokens over <paramref name="batches"/> (validation; no gradients).</summary>
    public LossSum EvaluateSum(IEnumerable<TrainingBatch> batches)
    {
        var sum = 0.0;
        var tokens = 0;
        var correct = 0;
        foreach (var batch in batches)
        {
            var loss = _graph.Loss(batch);
            sum += loss.Sum;
            tokens += loss.Tokens;
            correct += loss.Correct;
        }

        return new LossSum(sum, tokens) { Correct = correct };
    }

    /// <summary>The examples of epoch <paramref name="epoch"/> in a seeded shuffled order, packed into batches (same seed, same order).</summary>
    public static IReadOnlyList<TrainingBatch> PackEpoch(IReadOnlyList<TrainingExample> examples, int batch, int seq, int seed, int epoch, bool trainOnPrompt = false)
    {
        var order = Enumerable.Range(0, examples.Count).ToArray();
        // HashCode.Combine is randomised per process; this mix is not, so a job resumed in another process sees the same order.
        new Random(unchecked((int)(((ulong)(uint)seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)epoch * 0xBF58476D1CE4E5B9UL) >> 16))).Shuffle(order);
        return TrainingBatch.Pack(order.Select(i => examples[i]), batch, seq, trainOnPrompt);
    }
}
