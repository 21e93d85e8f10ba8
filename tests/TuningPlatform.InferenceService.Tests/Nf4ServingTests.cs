using System.Numerics.Tensors;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training.Quantization;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>
/// NF4 serving: the seven projections of every layer held as NF4 (QLoRA's format) and multiplied by the dequantising
/// GEMM. Checked against an fp32 model carrying the dequantised weights (the same function, computed densely), against
/// the original fp32 model for top-1 agreement, and for its memory.
/// </summary>
[Trait("Category", "Functional")]
public sealed class Nf4ServingTests
{
    private const string Model = "stories260K-hf";

    private const string Story = "Once upon a time, there was a little girl named Lily. She liked to play in the park with her ball. "
        + "One day, she saw a big dog. The dog was sad because it was lost. Lily wanted to help the dog find its home, so she asked her mom.";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    [Fact]
    public void Forward_Nf4Projections_EqualDequantisedFp32AndAgreeWithFp32()
    {
        var directory = Path.Combine(InferenceServer.RequireModels(), Model);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        var ids = tokenizer.Encode(Story, addSpecialTokens: true);
        var fp32 = LlamaModel.LoadHf(directory);
        var nf4 = LlamaModel.LoadHf(directory, new ModelLoadOptions { ProjectionDType = ParameterDType.Nf4 });
        var dequantised = DequantisedCopy(directory);
        var v = fp32.Config.VocabSize;

        // Prefill of every position (GEMM rows), then a few decode steps (one row each).
        var expected = Logits(dequantised, ids);
        var actual = Logits(nf4, ids);
        NumericAssert(actual, expected, 1e-4, 1e-4);

        var original = Logits(fp32, ids);
        var rows = ids.Length;
        var agree = Enumerable.Range(0, rows).Count(t => TensorPrimitives.IndexOfMax(actual.AsSpan(t * v, v)) == TensorPrimitives.IndexOfMax(original.AsSpan(t * v, v)));
        var agreement = (double)agree / rows;
        var bytes = (nf4.Parameters.ByteSize, fp32.Parameters.ByteSize);
        TestContext.Current.TestOutputHelper?.WriteLine($"NF4 vs fp32 stories260K: top-1 agreement {agree}/{rows} = {agreement:P1}; weights {bytes.Item1} vs {bytes.Item2} bytes ({(double)bytes.Item1 / bytes.Item2:0.000}×)");
        // NF4 moves every weight by up to half a quantisation step (4 bits); on a 260K-parameter model most argmaxes survive.
        Assert.True(agreement >= 0.8, $"top-1 agreement {agreement:P1} with fp32 is below 80%");
        // And it is quantised at all: the logits move by far more than the 1e-4 the equality above allows.
        var moved = actual.Zip(original).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(moved > 1e-2, $"NF4 logits differ from fp32 by at most {moved}; the projections were not quantised");
        Assert.InRange((double)bytes.Item1 / bytes.Item2, 0.15, 0.4);
    }

    [Fact]
    public async Task LoadModel_Nf4_SmallerAndServesTheDequantisedModelsText()
    {
        var directory = Path.Combine(InferenceServer.RequireModels(), Model);
        await using var server = await InferenceServer.StartAsync();
        var fp32 = await server.Client.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { BaseModelId = Model } }, Options);
        await server.Client.UnloadModelAsync(new UnloadModelRequest { ModelId = Model }, Options);

        var nf4 = await server.Client.LoadModelAsync(new LoadModelRequest { Model = new ModelRef { BaseModelId = Model }, Dtype = ModelDtype.Nf4 }, Options);
        var generated = await server.Client.GenerateAsync(new GenerateRequest
        {
            Model = new ModelRef { BaseModelId = Model },
            Input = new GenerationInput { Completion = new CompletionInput { Prompt = "Once upon a time" } },
            Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 30 },
        }, Options);

        Assert.Equal(ModelDtype.Nf4, nf4.Model.Dtype);
        Assert.True(nf4.Memory.ModelsBytes < fp32.Memory.ModelsBytes, $"NF4 {nf4.Memory.ModelsBytes} bytes vs fp32 {fp32.Memory.ModelsBytes}");
        var reference = DequantisedCopy(directory);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        var expected = Greedy(reference, tokenizer.Encode("Once upon a time", addSpecialTokens: true), generated.TokenIds.Count);
        Assert.Equal(expected, generated.TokenIds);
    }

    // stories260K in fp32 with every projection replaced by its NF4 round trip: what NF4 serving must compute.
    private static LlamaModel DequantisedCopy(string directory)
    {
        var model = LlamaModel.LoadHf(directory);
        foreach (var layer in model.Layers)
        {
            foreach (var p in new[] { layer.Wq, layer.Wk, layer.Wv, layer.Wo, layer.WGate, layer.WUp, layer.WDown })
            {
                p.CopyFrom(Nf4Tensor.Quantize(p.Span, p.Shape).Dequantize());
            }
        }

        return model;
    }

    private static float[] Logits(LlamaModel model, int[] ids)
    {
        var v = model.Config.VocabSize;
        var logits = new float[ids.Length * v];
        var state = model.CreateState(ids.Length);
        var prefill = ids.Length - 4;
        model.Forward(state, ids.AsSpan(0, prefill), logits, allPositions: true);
        for (var t = prefill; t < ids.Length; t++)
        {
            model.Forward(state, ids.AsSpan(t, 1), logits.AsSpan(t * v, v));
        }

        return logits;
    }

    private static List<int> Greedy(LlamaModel model, int[] prompt, int count)
    {
        var v = model.Config.VocabSize;
        var state = model.CreateState(prompt.Length + count);
        var logits = new float[v];
        model.Forward(state, prompt, logits);
        var ids = new List<int>();
        for (var n = 0; n < count; n++)
        {
            var next = TensorPrimitives.IndexOfMax(logits);
            ids.Add(next);
            model.Forward(state, [next], logits);
        }

        return ids;
    }

    private static void NumericAssert(float[] actual, float[] expected, double rtol, double atol) =>
        EmbedTests.AssertClose(actual, [.. expected.Select(e => (double)e)], rtol, atol);
}
