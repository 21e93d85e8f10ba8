using System.Text.Json;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Tests.Models;

/// <summary>
/// Logits of tiny random-weight models against a float64 PyTorch forward pass (Fixtures/tiny-llama/generate.py):
/// GQA and MHA, tied and untied heads, explicit head_dim, qwen2 q/k/v biases, llama3 and linear RoPE
/// scaling, BF16 and F16 weights. Tolerance: rtol 1e-4, atol 1e-5 (fp32 compute vs fp64 reference;
/// the largest observed difference is 3.8e-6 on logits up to 19).
/// </summary>
public sealed class ReferenceLogitsTests
{
    public static TheoryData<string> Variants => ["gqa-tied", "mha-untied-headdim", "qwen2-bias", "llama3-rope", "linear-rope", "bf16-weights", "f16-weights"];

    [Theory]
    [MemberData(nameof(Variants))]
    public void Forward_TinyRandomModel_MatchesPyTorchFloat64(string variant)
    {
        var (model, tokens, expected) = LoadVariant(variant);
        var logits = new float[tokens.Length * model.Config.VocabSize];

        model.Forward(model.CreateState(tokens.Length), tokens, logits, allPositions: true);

        NumericAssert.AssertClose(logits, expected, 1e-4, 1e-5, $"{variant} logits");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Forward_TokenByTokenWithKvCache_EqualsFullRecompute(string variant)
    {
        var (model, tokens, _) = LoadVariant(variant);
        var v = model.Config.VocabSize;
        var full = new float[tokens.Length * v];
        model.Forward(model.CreateState(tokens.Length), tokens, full, allPositions: true);

        var state = model.CreateState(tokens.Length);
        var step = new float[v];
        for (var t = 0; t < tokens.Length; t++)
        {
            model.Forward(state, tokens.AsSpan(t, 1), step);
            NumericAssert.AssertClose(step, full.AsSpan(t * v, v), 1e-5, 1e-5, $"{variant} position {t}");
        }
    }

    [Fact]
    public void Forward_PrefillInChunks_EqualsSinglePass()
    {
        var (model, tokens, expected) = LoadVariant("gqa-tied");
        var v = model.Config.VocabSize;
        var chunked = new float[tokens.Length * v];

        model.Forward(model.CreateState(tokens.Length, maxChunk: 4), tokens, chunked, allPositions: true);

        NumericAssert.AssertClose(chunked, expected, 1e-4, 1e-4, "chunked prefill logits");
    }

    [Fact]
    public void LoadHf_ConfigFields_ReadHfSpellings()
    {
        var dir = TestAssets.Fixture("tiny-llama/llama3-rope");
        var config = LlamaConfig.Load(Path.Combine(dir, "config.json"));
        var qwen = LlamaConfig.Load(Path.Combine(TestAssets.Fixture("tiny-llama/qwen2-bias"), "config.json"));
        var mha = LlamaConfig.Load(Path.Combine(TestAssets.Fixture("tiny-llama/mha-untied-headdim"), "config.json"));

        Assert.Equal("llama3", config.RopeScaling!.Kind);
        Assert.Equal(8.0, config.RopeScaling.Factor);
        Assert.Equal(512, config.RopeScaling.OriginalMaxPositions);
        Assert.Equal(500000.0, config.RopeTheta);
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal(2, config.NumKeyValueHeads);
        Assert.True(qwen.QkvBias);
        Assert.False(qwen.OutputBias);
        Assert.Equal([2, 3], qwen.EosTokenIds!);
        Assert.Equal(12, mha.HeadDim);
        Assert.Equal(4, mha.NumKeyValueHeads);
    }

    internal static (LlamaModel Model, int[] Tokens, float[] Logits) LoadVariant(string variant)
    {
        var dir = TestAssets.Fixture($"tiny-llama/{variant}");
        var model = LlamaModel.LoadHf(dir);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "reference.json")));
        var tokens = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var logits = doc.RootElement.GetProperty("logits").EnumerateArray()
            .SelectMany(row => row.EnumerateArray().Select(x => (float)x.GetDouble()))
            .ToArray();
        return (model, tokens, logits);
    }
}
