using System.Text.Json;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Optim;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Engine.Training.Recipes;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>
/// LoRA: the low-rank op against finite differences in float64; a whole-model adapter's loss and A/B gradients
/// against PyTorch float64 (Fixtures/training/lora-gqa-tied: rsLoRA r=4 on q, v, gate, down; rtol 1e-4,
/// atol 1e-6); parity (zero B leaves the loss unchanged, merged equals unmerged); PEFT save/load.
/// </summary>
public sealed class LoRATests
{
    [Fact]
    public void LoRAOp_OddShape_GradientsMatchFiniteDifferences()
    {
        const int N = 5;
        const int I = 7;
        const int O = 3;
        const int R = 2;
        const double S = 1.7;
        var x = GradCheck.Random(N * I, 31);
        var a = GradCheck.Random(R * I, 32);
        var b = GradCheck.Random(O * R, 33);
        var dout = GradCheck.Random(N * O, 34);
        var u = new double[N * R];
        var scratch = new double[N * R];
        var y = new double[N * O];
        double Loss()
        {
            Array.Clear(y);
            LoRAOp.Forward<double>(y, u, scratch, x, a, b, N, O, I, R, S);
            return GradCheck.Dot(y, dout);
        }

        Loss();
        var dx = new double[N * I];
        var da = new double[R * I];
        var db = new double[O * R];
        LoRAOp.Backward<double>(dx, da, db, scratch, dout, x, u, a, b, N, O, I, R, S);

        GradCheck.AssertMatchesFiniteDifferences(x, dx, Loss, "dx");
        GradCheck.AssertMatchesFiniteDifferences(a, da, Loss, "dA");
        GradCheck.AssertMatchesFiniteDifferences(b, db, Loss, "dB");
    }

    [Fact]
    public void ForwardBackward_PeftAdapter_MatchesPyTorchFloat64()
    {
        var model = TrainingFixtures.Model("gqa-tied");
        var batch = TrainingFixtures.Batch("gqa-tied");
        var adapter = LoRAAdapter.Load(TrainingFixtures.Directory("lora-gqa-tied"), model);
        var graph = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null, adapter.Projections());
        var (expectedLoss, reference) = TrainingFixtures.Gradients("lora-gqa-tied");
        using var _ = reference;

        var loss = graph.ForwardBackward(batch, 1f / batch.TargetCount);

        Assert.Equal(4.0, adapter.Config.Scale, 12);
        Assert.Equal(expectedLoss, loss.Mean, expectedLoss * 1e-5);
        Assert.Equal(reference.Tensors.Count, adapter.Parameters.Parameters.Count);
        for (var l = 0; l < model.Config.NumLayers; l++)
        {
            foreach (var name in adapter.Config.TargetModules)
            {
                var (a, b) = adapter.Pair(l, name)!.Value;
                NumericAssert.AssertClose(adapter.Gradients[a], reference.ReadAsFloat32(LoRAAdapter.PeftKey(l, name, "A")), 1e-4, 1e-6, $"layer {l} {name} lora_A");
                NumericAssert.AssertClose(adapter.Gradients[b], reference.ReadAsFloat32(LoRAAdapter.PeftKey(l, name, "B")), 1e-4, 1e-6, $"layer {l} {name} lora_B");
            }
        }
    }

    [Fact]
    public void Loss_NewAdapterWithZeroB_EqualsBaseModel()
    {
        var model = TrainingFixtures.Model("qwen2-untied");
        var batch = TrainingFixtures.Batch("qwen2-untied");
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { TargetModules = LoRAConfig.AllLinear, Dropout = 0.1 }, seed: 1);

        var baseLoss = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null).Loss(batch);
        var loraLoss = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null, adapter.Projections()).Loss(batch);

        Assert.Equal(baseLoss, loraLoss);
        Assert.All(adapter.Parameters.Parameters.Where(p => p.Name.EndsWith("lora_a", StringComparison.Ordinal)),
            p => Assert.Contains(p.Span.ToArray(), x => x != 0));
    }

    [Fact]
    public void MergeInto_TrainedAdapter_EqualsUnmergedLoss()
    {
        var model = TrainingFixtures.Model("gqa-tied");
        var batch = TrainingFixtures.Batch("gqa-tied");
        var adapter = LoRAAdapter.Load(TrainingFixtures.Directory("lora-gqa-tied"), model);
        var unmerged = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null, adapter.Projections()).Loss(batch);

        adapter.MergeInto(model);
        var merged = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null).Loss(batch);

        Assert.Equal(unmerged.Sum, merged.Sum, unmerged.Sum * 1e-5);
    }

    [Fact]
    public void SaveLoad_RoundTrip_SameTensorsAndPeftConfig()
    {
        var model = TrainingFixtures.Model("qwen2-untied");
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 3, Alpha = 6, TargetModules = ["k_proj", "up_proj"], BaseModel = "tiny" }, seed: 5);
        adapter.Parameters.Data.AsSpan().Fill(0.25f);
        var dir = Path.Combine(Path.GetTempPath(), "tp-lora-" + Guid.NewGuid().ToString("N"));
        try
        {
            adapter.Save(dir);
            var loaded = LoRAAdapter.Load(dir, model);
            using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "adapter_config.json")));

            Assert.Equal(adapter.Parameters.Data.ToArray(), loaded.Parameters.Data.ToArray());
            Assert.Equal(3, json.RootElement.GetProperty("r").GetInt32());
            Assert.Equal(6, json.RootElement.GetProperty("lora_alpha").GetDouble());
            Assert.Equal("LORA", json.RootElement.GetProperty("peft_type").GetString());
            Assert.False(json.RootElement.GetProperty("use_rslora").GetBoolean());
            Assert.Equal(["k_proj", "up_proj"], loaded.Config.TargetModules);
            Assert.Equal("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight", LoRAAdapter.PeftKey(1, "up_proj", "B"));
            Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ForwardBackward_DropoutWithCheckpointing_GradientsIdentical()
    {
        var model = TrainingFixtures.Model("gqa-tied");
        var batch = TrainingFixtures.Batch("gqa-tied");
        var config = new LoRAConfig { TargetModules = LoRAConfig.AllLinear, Dropout = 0.3, Rank = 2 };
        var plain = LoRAAdapter.Create(model, config, seed: 3);
        var recomputed = LoRAAdapter.Create(model, config, seed: 3);
        plain.Parameters.Data.AsSpan().Fill(0.1f);
        recomputed.Parameters.Data.AsSpan().Fill(0.1f);

        new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null, plain.Projections(dropoutSeed: 9)).ForwardBackward(batch, 0.1f);
        new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null, recomputed.Projections(dropoutSeed: 9), new TrainingGraphOptions { ActivationCheckpointing = true })
            .ForwardBackward(batch, 0.1f);

        Assert.Equal(plain.Gradients.Data, recomputed.Gradients.Data);
        Assert.Contains(plain.Gradients.Data, g => g != 0);
    }

    [Fact]
    public void TrainStep_LoRAOnAllLinear_LowersLossAndFreezesBase()
    {
        var model = TrainingFixtures.Model("qwen2-untied");
        var before = model.Parameters.Data.ToArray();
        var batch = TrainingFixtures.Batch("qwen2-untied");
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { TargetModules = LoRAConfig.AllLinear, Rank = 4, Alpha = 8 }, seed: 11);
        var graph = new LlamaTrainingModel(model, batch.Batch, batch.Sequence, null, adapter.Projections());
        var trainer = new Trainer(graph, adapter.Gradients, new TrainerOptions { Schedule = new LearningRateSchedule(2e-2, 0, 8, DecayKind.Constant) });

        var losses = Enumerable.Range(0, 8).Select(_ => trainer.TrainStep([batch]).Loss).ToArray();

        Assert.True(losses[^1] < 0.9 * losses[0], $"LoRA loss should fall: {string.Join(", ", losses)}");
        Assert.Equal(before, model.Parameters.Data.ToArray());
    }
}
