using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>
/// The whole model's loss and every parameter's gradient for one packed batch (three examples packed in one
/// row, prompt tokens masked, a padded tail) against PyTorch autograd in float64 (Fixtures/training/generate.py).
/// Tolerances: loss rtol 1e-5; gradients rtol 1e-4, atol 1e-6 (fp32 compute against fp64; gradients reach ~1, the largest observed difference is 9e-8).
/// </summary>
public sealed class ModelGradientTests
{
    public static TheoryData<string> Variants => ["gqa-tied", "qwen2-untied"];

    [Theory]
    [MemberData(nameof(Variants))]
    public void ForwardBackward_PackedBatch_MatchesPyTorchFloat64(string variant)
    {
        var model = TrainingFixtures.Model(variant);
        var batch = TrainingFixtures.Batch(variant);
        var grads = new ParameterGradients(model.Parameters);
        var graph = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, grads, options: new TrainingGraphOptions { LossChunkRows = 5 });
        var (expectedLoss, reference) = TrainingFixtures.Gradients(variant);
        using var _ = reference;

        var loss = graph.ForwardBackward(batch, 1f / batch.TargetCount);

        Assert.Equal(expectedLoss, loss.Mean, expectedLoss * 1e-5);
        foreach (var p in model.Parameters.Parameters)
        {
            var key = HfCheckpointKeys.ToHf(p.Name);
            NumericAssert.AssertClose(grads[p], reference.ReadAsFloat32(key), 1e-4, 1e-6, key);
        }

        Assert.Equal(model.Parameters.Parameters.Count, reference.Tensors.Count);
    }

    [Fact]
    public void ForwardBackward_WithActivationCheckpointing_GradientsIdentical()
    {
        var model = TrainingFixtures.Model("qwen2-untied");
        var batch = TrainingFixtures.Batch("qwen2-untied");
        var plain = new ParameterGradients(model.Parameters);
        var recomputed = new ParameterGradients(model.Parameters);

        var a = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, plain).ForwardBackward(batch, 0.1f);
        var b = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, recomputed, options: new TrainingGraphOptions { ActivationCheckpointing = true })
            .ForwardBackward(batch, 0.1f);

        Assert.Equal(a, b);
        Assert.Equal(plain.Data, recomputed.Data);
    }

    [Fact]
    public void Loss_WithoutGradients_EqualsForwardBackwardLoss()
    {
        var model = TrainingFixtures.Model("gqa-tied");
        var batch = TrainingFixtures.Batch("gqa-tied");
        var graph = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, new ParameterGradients(model.Parameters));

        var validation = graph.Loss(batch);
        var training = graph.ForwardBackward(batch, 1f / batch.TargetCount);

        Assert.Equal(training, validation);
    }

    [Fact]
    public void Pack_ExamplesPackedTogether_SameLossesAsOneExamplePerRow()
    {
        var model = TrainingFixtures.Model("gqa-tied");
        TrainingExample[] examples = [new([5, 9, 11, 40, 2], 2), new([7, 8, 30, 31], 1), new([12, 13, 14, 15, 16, 17], 3)];
        var packed = TrainingBatch.Pack(examples, batch: 1, seq: 16);
        var separate = TrainingBatch.Pack(examples, batch: 3, seq: 6);
        var graph1 = new LlamaTrainingModel(model, 1, 16, null);
        var graph3 = new LlamaTrainingModel(model, 3, 6, null);

        Assert.Single(packed);
        Assert.Single(separate);
        var a = graph1.Loss(packed[0]);
        var b = graph3.Loss(separate[0]);

        Assert.Equal(3 + 3 + 3, a.Tokens);
        Assert.Equal(b.Tokens, a.Tokens);
        Assert.Equal(b.Sum, a.Sum, 1e-4);
    }

    [Fact]
    public void Pack_TrainOnPrompt_EveryNextTokenIsATarget()
    {
        var batches = TrainingBatch.Pack([new([5, 9, 11], 2), new([7, 8], 1)], batch: 1, seq: 7, trainOnPrompt: true);

        Assert.Equal([9, 11, -100, 8, -100, -100, -100], batches[0].Targets);
        Assert.Equal([0, 1, 2, 0, 1, 0, 1], batches[0].Positions);
    }
}
