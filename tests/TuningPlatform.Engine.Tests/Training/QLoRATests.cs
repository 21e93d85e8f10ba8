using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Engine.Training.Quantization;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>NF4 with double quantisation: the codebook, error bounds, memory per weight, and QLoRA equal to LoRA over the dequantised base.</summary>
public sealed class QLoRATests
{
    [Fact]
    public void Codebook_SixteenNormalQuantiles_AscendingWithExactZeroAndUnitEnds()
    {
        var c = Nf4Tensor.Codebook;

        Assert.Equal(16, c.Length);
        Assert.Equal(-1f, c[0]);
        Assert.Equal(0f, c[7]);
        Assert.Equal(1f, c[15]);
        Assert.True(c.Zip(c.Skip(1)).All(p => p.First < p.Second));
        // Asymmetric as in bitsandbytes: 7 negative, 8 positive values.
        Assert.Equal(0.07958029955625534f, c[8]);
        Assert.Equal(-0.6961928009986877f, c[1]);
    }

    [Fact]
    public void QuantizeDequantize_GaussianWeights_ErrorWithinBlockBound()
    {
        // 100 blocks of 64 plus a short tail of 37: odd on purpose.
        const int N = 100 * 64 + 37;
        var rng = new Random(3);
        var w = new float[N];
        for (var i = 0; i < N; i++)
        {
            // Box–Muller normal with a few larger blocks so the absmaxes vary.
            var g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            w[i] = (float)(g * 0.02 * (1 + i / 64 % 5));
        }

        var q = Nf4Tensor.Quantize(w, N);
        var back = q.Dequantize();

        // Per element: half the widest codebook gap (0.152) times the block's absmax, plus the absmax's own int8
        // error, at most half a step of 1/127 of the group's largest deviation from the mean absmax.
        var absmaxes = Enumerable.Range(0, (N + 63) / 64).Select(b => w.Skip(b * 64).Take(64).Max(Math.Abs)).ToArray();
        var deviation = absmaxes.Max(a => Math.Abs(a - absmaxes.Average()));
        double sumSq = 0, errSq = 0;
        for (var b = 0; b * 64 < N; b++)
        {
            var end = Math.Min(N, (b + 1) * 64);
            var absmax = absmaxes[b];
            var absmaxError = Math.Abs(q.BlockAbsmax(b) - absmax);
            for (var i = b * 64; i < end; i++)
            {
                var err = Math.Abs(back[i] - w[i]);
                Assert.True(err <= 0.1520 * absmax + absmaxError + 1e-7, $"element {i}: |error| {err} exceeds bound for absmax {absmax}");
                errSq += err * err;
                sumSq += (double)w[i] * w[i];
            }

            Assert.True(absmaxError <= deviation / 254 * 1.001 + 1e-7, $"block {b}: absmax error {absmaxError}, bound {deviation / 254}");
        }

        var relativeRms = Math.Sqrt(errSq / sumSq);
        Assert.True(relativeRms < 0.12, $"relative RMS error {relativeRms}");
    }

    [Fact]
    public void ByteSize_LargeMatrix_AboutHalfAByteAndAFractionPerWeight()
    {
        var w = NumericAssert.Random(768 * 288, 4);

        var q = Nf4Tensor.Quantize(w, 768, 288);

        var perWeight = (double)q.ByteSize / w.Length;
        Assert.InRange(perWeight, 0.5, 0.52);
    }

    [Fact]
    public void ForwardBackward_Nf4Base_EqualsLoRAOverDequantisedWeights()
    {
        var quantModel = TrainingFixtures.Model("gqa-tied");
        var denseModel = TrainingFixtures.Model("gqa-tied");
        var batch = TrainingFixtures.Batch("gqa-tied");
        var config = new LoRAConfig { TargetModules = LoRAConfig.AllLinear, Rank = 3, Alpha = 6 };
        var qlora = LoRAAdapter.Create(quantModel, config, seed: 2);
        var lora = LoRAAdapter.Create(denseModel, config, seed: 2);
        qlora.Parameters.Data.AsSpan().Fill(0.05f);
        lora.Parameters.Data.AsSpan().Fill(0.05f);

        // The dense reference runs on exactly the weights NF4 dequantises to.
        var nf4 = new Dictionary<Parameter, Nf4Linear>();
        var qGraph = new LlamaTrainingModel(quantModel, batch.Batch, batch.Sequence, null,
            qlora.Projections(frozenBase: slot => nf4[slot.Weight] = new Nf4Linear(slot.Weight, slot.Bias)));
        foreach (var (weight, layer) in nf4)
        {
            var twin = denseModel.Parameters[weight.Name];
            layer.Weight.Dequantize(twin.Span);
        }

        var dGraph = new LlamaTrainingModel(denseModel, batch.Batch, batch.Sequence, null, lora.Projections());

        var q = qGraph.ForwardBackward(batch, 1f / batch.TargetCount);
        var d = dGraph.ForwardBackward(batch, 1f / batch.TargetCount);

        Assert.Equal(d.Sum, q.Sum, Math.Abs(d.Sum) * 1e-6);
        NumericAssert.AssertClose(qlora.Gradients.Data, lora.Gradients.Data, 1e-5, 1e-7, "adapter gradients");
        Assert.Equal(7 * quantModel.Config.NumLayers, nf4.Count);
    }

    [Fact]
    public void LoadHf_Nf4Projections_NoDenseCopyAndSameLossAsQuantisingAfterLoad()
    {
        var dense = TrainingFixtures.Model("gqa-tied");
        var quantised = LlamaModel.LoadHf(TrainingFixtures.Directory("gqa-tied"), new ModelLoadOptions { ProjectionDType = ParameterDType.Nf4 });
        var batch = TrainingFixtures.Batch("gqa-tied");
        var config = new LoRAConfig { TargetModules = LoRAConfig.AllLinear, Rank = 3, Alpha = 6 };
        var fromDense = LoRAAdapter.Create(dense, config, seed: 2);
        var fromLoad = LoRAAdapter.Create(quantised, config, seed: 2);
        fromDense.Parameters.Data.AsSpan().Fill(0.05f);
        fromLoad.Parameters.Data.AsSpan().Fill(0.05f);

        // Base memory: the projections are NF4 only, and the fp32 buffer holds embeddings and norms alone.
        var projections = quantised.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.WGate, l.WUp, l.WDown }).ToList();
        Assert.All(projections, p => Assert.Equal(ParameterDType.Nf4, p.DType));
        var perWeight = (double)projections.Sum(p => p.ByteSize) / projections.Sum(p => p.Length);
        Assert.InRange(perWeight, 0.5, 0.6);
        Assert.Equal(dense.Parameters.Data.Count - projections.Sum(p => p.Length), quantised.Parameters.Data.Count);

        // The default frozen base of an NF4 model is NF4; it equals quantising the fp32 weights after loading.
        var loadGraph = new LlamaTrainingModel(quantised, batch.Batch, batch.Sequence, null, fromLoad.Projections());
        var denseGraph = new LlamaTrainingModel(dense, batch.Batch, batch.Sequence, null,
            fromDense.Projections(frozenBase: slot => new Nf4Linear(slot.Weight, slot.Bias)));
        var a = loadGraph.ForwardBackward(batch, 1f / batch.TargetCount);
        var b = denseGraph.ForwardBackward(batch, 1f / batch.TargetCount);

        Assert.Equal(b.Sum, a.Sum);
        NumericAssert.AssertClose(fromLoad.Gradients.Data, fromDense.Gradients.Data, 0, 0, "adapter gradients");
        Assert.IsType<Nf4Linear>(((LoRALinear)loadGraph.Projection(0, "q_proj")).Base);
    }
}
