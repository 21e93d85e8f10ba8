using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Optim;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Engine.Training.Recipes;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>Save and resume: a run stopped, saved and resumed in a fresh process state gives the losses of a run that never stopped.</summary>
public sealed class CheckpointTests
{
    private const int Steps = 8;
    private const int StopAt = 3;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Resume_AfterSave_SameLossesAsUninterrupted(bool lora)
    {
        var uninterrupted = new List<double>();
        var (trainer, examples) = Setup(lora);
        Run(trainer, examples, new TrainingCursor(0, 0), Steps, uninterrupted);

        var path = Path.Combine(Path.GetTempPath(), $"tp-checkpoint-{Guid.NewGuid():N}.safetensors");
        try
        {
            var resumed = new List<double>();
            var (first, _) = Setup(lora);
            var cursor = Run(first, examples, new TrainingCursor(0, 0), StopAt, resumed);
            TrainingCheckpoint.Save(path, first, cursor);

            // A fresh model, adapter and trainer, as another worker would build them, then the checkpoint.
            var (second, _) = Setup(lora);
            var restored = TrainingCheckpoint.Load(path, second);
            Assert.Equal(cursor, restored);
            Assert.Equal(StopAt, second.Step);
            Run(second, examples, restored, Steps - StopAt, resumed);

            Assert.Equal(uninterrupted, resumed);
            Assert.False(File.Exists(path + ".tmp"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Load_OtherMethod_SaysWhatDiffers()
    {
        var path = Path.Combine(Path.GetTempPath(), $"tp-checkpoint-{Guid.NewGuid():N}.safetensors");
        try
        {
            var (full, _) = Setup(lora: false);
            TrainingCheckpoint.Save(path, full, new TrainingCursor(0, 0));
            var (adapter, _) = Setup(lora: true);

            var e = Assert.Throws<ModelFormatException>(() => TrainingCheckpoint.Load(path, adapter));
            Assert.Contains("trained parameters", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    // Seeded setup; LoRA with dropout so the checkpoint must carry the dropout random state too.
    private static (Trainer Trainer, TrainingExample[] Examples) Setup(bool lora)
    {
        var model = TrainingFixtures.Model("gqa-tied");
        var examples = Enumerable.Range(0, 10)
            .Select(i => new TrainingExample(Enumerable.Range(0, 5 + i % 4).Select(j => 3 + (i * 5 + j * 13) % 50).ToArray(), 2))
            .ToArray();
        var options = new TrainerOptions { Schedule = new LearningRateSchedule(1e-2, 2, Steps, DecayKind.Cosine), AdamW = new AdamWOptions { WeightDecay = 0.1 } };
        if (!lora)
        {
            var grads = new ParameterGradients(model.Parameters);
            return (new Trainer(new LlamaTrainingModel(model, 2, 12, grads), grads, options), examples);
        }

        var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 4, Alpha = 8, Dropout = 0.2, TargetModules = LoRAConfig.AllLinear }, seed: 7);
        var graph = new LlamaTrainingModel(model, 2, 12, null, adapter.Projections(dropoutSeed: 9));
        return (new Trainer(graph, adapter.Gradients, options), examples);
    }

    // Steps through epochs of seeded packing from the cursor; returns the cursor after the last step.
    private static TrainingCursor Run(Trainer trainer, TrainingExample[] examples, TrainingCursor cursor, int steps, List<double> losses)
    {
        var (epoch, index) = (cursor.Epoch, cursor.Batch);
        for (var s = 0; s < steps; s++)
        {
            var batches = Trainer.PackEpoch(examples, 2, 12, seed: 42, epoch);
            losses.Add(trainer.TrainStep([batches[index]]).Loss);
            if (++index == batches.Count)
            {
                (epoch, index) = (epoch + 1, 0);
            }
        }

        return new TrainingCursor(epoch, index);
    }
}
