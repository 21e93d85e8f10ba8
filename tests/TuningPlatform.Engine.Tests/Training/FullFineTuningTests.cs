using System.Text.Json;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Optim;
using TuningPlatform.Engine.Training.Recipes;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>
/// Full fine-tuning against PyTorch: 10 AdamW steps (2 accumulated micro-batches each, clipping at 1.0,
/// weight decay 0.1 on matrices, 3 warmup steps then cosine) from Fixtures/training/trajectory.json, computed
/// in float64. Tolerance: losses rtol 2e-4, gradient norms rtol 1e-3 (fp32 training against fp64; the
/// gap grows with each step).
/// </summary>
public sealed class FullFineTuningTests
{
    [Fact]
    public void TrainStep_TenStepsWithWarmupAndClipping_MatchesPyTorchTrajectory()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestAssets.Fixture("training/trajectory.json")));
        var root = doc.RootElement;
        var micro = root.GetProperty("micro_batches").EnumerateArray().Select(TrainingFixtures.ReadBatch).ToArray();
        var steps = root.GetProperty("steps").GetInt32();
        var model = TrainingFixtures.Model("gqa-tied");
        var grads = new ParameterGradients(model.Parameters);
        var graph = new LlamaTrainingModel(model, micro[0].Batch, micro[0].Sequence, grads);
        var trainer = new Trainer(graph, grads, new TrainerOptions
        {
            Schedule = new LearningRateSchedule(root.GetProperty("lr").GetDouble(), root.GetProperty("warmup").GetInt32(), steps),
            AdamW = new AdamWOptions { WeightDecay = root.GetProperty("weight_decay").GetDouble() },
            MaxGradNorm = root.GetProperty("max_grad_norm").GetDouble(),
        });
        var expectedLoss = root.GetProperty("losses").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        var expectedNorm = root.GetProperty("grad_norms").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        var expectedLr = root.GetProperty("learning_rates").EnumerateArray().Select(x => x.GetDouble()).ToArray();

        for (var s = 0; s < steps; s++)
        {
            var result = trainer.TrainStep([micro[2 * s], micro[2 * s + 1]]);

            Assert.Equal(expectedLr[s], result.LearningRate, 1e-12);
            Assert.True(Math.Abs(result.Loss - expectedLoss[s]) <= 2e-4 * expectedLoss[s], $"step {s}: loss {result.Loss}, PyTorch {expectedLoss[s]}");
            Assert.True(Math.Abs(result.GradNorm - expectedNorm[s]) <= 1e-3 * expectedNorm[s], $"step {s}: grad norm {result.GradNorm}, PyTorch {expectedNorm[s]}");
        }
    }

    [Fact]
    public void TrainStep_SameSeedTwice_SameLosses()
    {
        static double[] Run()
        {
            var model = TrainingFixtures.Model("qwen2-untied");
            var examples = Enumerable.Range(0, 12)
                .Select(i => new TrainingExample(Enumerable.Range(0, 4 + i % 5).Select(j => 3 + (i * 7 + j * 11) % 50).ToArray(), 2))
                .ToArray();
            var grads = new ParameterGradients(model.Parameters);
            var graph = new LlamaTrainingModel(model, 2, 12, grads);
            var trainer = new Trainer(graph, grads, new TrainerOptions { Schedule = new LearningRateSchedule(5e-3, 1, 4, DecayKind.Linear) });
            var batches = Trainer.PackEpoch(examples, 2, 12, seed: 42, epoch: 0);
            return batches.Select(b => trainer.TrainStep([b]).Loss).ToArray();
        }

        var first = Run();
        var second = Run();

        Assert.True(first.Length >= 3);
        Assert.Equal(first, second);
        Assert.All(first, x => Assert.True(double.IsFinite(x) && x > 0));
    }

    [Fact]
    public void LearningRateSchedule_WarmupThenDecay_FollowsHfFormulas()
    {
        var cosine = new LearningRateSchedule(1.0, 2, 10);
        var linear = new LearningRateSchedule(1.0, 2, 10, DecayKind.Linear);

        Assert.Equal([0.0, 0.5, 1.0], [cosine.At(0), cosine.At(1), cosine.At(2)]);
        Assert.Equal(0.5, cosine.At(6), 12);
        Assert.Equal(0.0, cosine.At(10), 12);
        Assert.Equal(0.5, linear.At(6), 12);
        Assert.Equal(0.0, linear.At(12), 12);
    }

    [Fact]
    public void ClipByGlobalNorm_AboveMax_ScalesToMax()
    {
        float[] a = [3, 0];
        float[] b = [0, 4];

        var norm = GradientClipping.ClipByGlobalNorm([a, b], 1.0);

        Assert.Equal(5.0, norm, 12);
        Assert.Equal(0.6f, a[0], 5);
        Assert.Equal(0.8f, b[1], 5);
    }
}
