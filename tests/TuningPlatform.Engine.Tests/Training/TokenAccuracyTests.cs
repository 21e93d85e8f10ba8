using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Ops;
using TuningPlatform.Engine.Training.Recipes;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>
/// Mean token accuracy (argmax of the logits = the label, over target rows only), counted inside the chunked head +
/// cross-entropy, against a naive float64 computation of every logit.
/// </summary>
public sealed class TokenAccuracyTests
{
    [Fact]
    public void CrossEntropy_CorrectCount_MatchesNaiveFloat64Argmax()
    {
        const int N = 203, D = 17, V = 97;
        var x = NumericAssert.Random(N * D, 11);
        var w = NumericAssert.Random(V * D, 12);
        var naive = NaiveLogits(x, w, N, V, D);
        // Half the rows take their naive argmax as the target, a quarter another token, a quarter none: the count is neither 0 nor all.
        var targets = Enumerable.Range(0, N).Select(i => (i % 4) switch
        {
            0 or 1 => ArgMax(naive, i, V),
            2 => (ArgMax(naive, i, V) + 1 + i % (V - 1)) % V,
            _ => CrossEntropyOp.IgnoreIndex,
        }).ToArray();
        var (expected, ambiguous) = NaiveCorrect(naive, targets, V, 1e-4);
        Assert.InRange(expected, 40, targets.Count(t => t != CrossEntropyOp.IgnoreIndex) - 40);

        // float64 path, odd chunk size, loss only and with gradients: exact.
        var xd = x.Select(v => (double)v).ToArray();
        var wd = w.Select(v => (double)v).ToArray();
        CrossEntropyOp.ForwardBackward<double>(default, default, xd, wd, targets, V, D, 1, 7, new double[CrossEntropyOp.ScratchLength(7, V, D)], out var correctD);
        CrossEntropyOp.ForwardBackward<double>(new double[N * D], new double[V * D], xd, wd, targets, V, D, 1, 7,
            new double[CrossEntropyOp.ScratchLength(7, V, D)], out var correctDGrad);
        Assert.Equal(expected, correctD);
        Assert.Equal(expected, correctDGrad);

        // fp32 fast path (vectorised rows on the worker pool): equal except where the top two logits are within 1e-4.
        CrossEntropyOp.ForwardBackward<float>(new float[N * D], new float[V * D], x, w, targets, V, D, 0.5f, 16,
            new float[CrossEntropyOp.ScratchLength(16, V, D)], out var correctF);
        CrossEntropyOp.ForwardBackward<float>(default, default, x, w, targets, V, D, 0, 64, new float[CrossEntropyOp.ScratchLength(64, V, D)], out var correctFLoss);
        Assert.InRange(correctF, expected - ambiguous, expected + ambiguous);
        Assert.Equal(correctF, correctFLoss);
    }

    [Fact]
    public void CrossEntropy_IgnoredRowsAndWrongTargets_CountNothing()
    {
        const int V = 5, D = 2;
        // Row logits z = x · Wᵀ with W = [e0; e1; 0; 0; 0]: row 0 peaks at token 0, row 1 at token 1.
        float[] w = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        float[] x = [3, 0, 0, 3, 3, 0];
        var scratch = new float[CrossEntropyOp.ScratchLength(2, V, D)];

        CrossEntropyOp.ForwardBackward<float>(default, default, x, w, [0, 1, CrossEntropyOp.IgnoreIndex], V, D, 1, 2, scratch, out var allRight);
        CrossEntropyOp.ForwardBackward<float>(default, default, x, w, [1, 0, 0], V, D, 1, 2, scratch, out var twoWrong);

        Assert.Equal(2, allRight);
        Assert.Equal(1, twoWrong);
    }

    [Fact]
    public void Stories260K_LossAndTrainStep_CountTheTokensInferenceArgmaxPredicts()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var model = LlamaModel.LoadHf(dir);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(dir, "tokenizer.json"));
        var tokens = tokenizer.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her big red ball.");
        const int Seq = 64;
        Assert.InRange(tokens.Length, 10, Seq);
        // Prompt of 5 tokens: rows before it carry no target and must not count.
        var example = new TrainingExample(tokens, 5);
        var batch = TrainingBatch.Pack([example], 1, Seq)[0];

        // Reference: the inference forward's logits for every position, argmax in float64 over the rows that have a target.
        var v = model.Config.VocabSize;
        var logits = new float[tokens.Length * v];
        model.Forward(model.CreateState(Seq), tokens, logits, allPositions: true);
        var naive = logits.Select(l => (double)l).ToArray();
        var (expected, ambiguous) = NaiveCorrect(naive, batch.Targets.AsSpan(0, tokens.Length).ToArray(), v, 1e-3);
        Assert.Equal(tokens.Length - 5, batch.TargetCount);
        Assert.InRange(expected, 1, batch.TargetCount - 1);

        var graph = new LlamaTrainingModel(model, 1, Seq, null);
        var loss = graph.Loss(batch);
        Assert.InRange(loss.Correct, expected - ambiguous, expected + ambiguous);
        Assert.Equal((double)loss.Correct / loss.Tokens, loss.Accuracy, 15);

        // A training step reports the same count for its micro-batches (read before the update), and Evaluate the summed one.
        var grads = new ParameterGradients(model.Parameters);
        var trainer = new Trainer(new LlamaTrainingModel(model, 1, Seq, grads), grads,
            new TrainerOptions { Schedule = new Engine.Training.Optim.LearningRateSchedule(1e-3, 0, 4) });
        var evaluated = trainer.EvaluateSum([batch, batch]);
        Assert.Equal(2 * loss.Correct, evaluated.Correct);
        Assert.Equal(2 * loss.Tokens, evaluated.Tokens);
        var step = trainer.TrainStep([batch, batch]);
        Assert.Equal(2 * loss.Correct, step.CorrectTokens);
        Assert.Equal(loss.Accuracy, step.TokenAccuracy, 15);
    }

    private static double[] NaiveLogits(float[] x, float[] w, int n, int v, int d)
    {
        var z = new double[n * v];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < v; j++)
            {
                var sum = 0.0;
                for (var k = 0; k < d; k++)
                {
                    sum += (double)x[i * d + k] * w[j * d + k];
                }

                z[i * v + j] = sum;
            }
        }

        return z;
    }

    private static int ArgMax(double[] z, int row, int v)
    {
        var best = 0;
        for (var j = 1; j < v; j++)
        {
            if (z[row * v + j] > z[row * v + best])
            {
                best = j;
            }
        }

        return best;
    }

    // Correct rows by float64 argmax, and how many target rows have a runner-up within `gap` of the top (where a float32 argmax may differ).
    private static (int Correct, int Ambiguous) NaiveCorrect(double[] z, int[] targets, int v, double gap)
    {
        var correct = 0;
        var ambiguous = 0;
        for (var i = 0; i < targets.Length; i++)
        {
            if (targets[i] == CrossEntropyOp.IgnoreIndex)
            {
                continue;
            }

            var best = ArgMax(z, i, v);
            correct += best == targets[i] ? 1 : 0;
            var top = z[i * v + best];
            if (Enumerable.Range(0, v).Any(j => j != best && top - z[i * v + j] < gap * Math.Max(1, Math.Abs(top))))
            {
                ambiguous++;
            }
        }

        return (correct, ambiguous);
    }
}
