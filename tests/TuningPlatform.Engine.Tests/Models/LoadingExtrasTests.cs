using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Kernels;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Tests.Models;

/// <summary>bf16 weight storage, generation_config.json and the tokenizer/model vocabulary check.</summary>
public sealed class LoadingExtrasTests
{
    private static readonly ModelLoadOptions Bf16 = new() { WeightDType = ParameterDType.BFloat16 };

    [Fact]
    public void LoadHf_Bf16Storage_SameLogitsAsFp32ForBf16Checkpoint()
    {
        // The checkpoint's weights are bf16 already, so holding them in bf16 loses nothing: only the
        // summation order inside the kernels may differ.
        var (fp32, tokens, expected) = ReferenceLogitsTests.LoadVariant("bf16-weights");
        var bf16 = LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/bf16-weights"), Bf16);
        var v = bf16.Config.VocabSize;
        var a = new float[tokens.Length * v];
        var b = new float[tokens.Length * v];

        fp32.Forward(fp32.CreateState(tokens.Length), tokens, a, allPositions: true);
        bf16.Forward(bf16.CreateState(tokens.Length), tokens, b, allPositions: true);

        NumericAssert.AssertClose(b, a, 1e-5, 1e-6, "bf16-stored vs fp32-stored logits");
        NumericAssert.AssertClose(b, expected, 1e-4, 1e-5, "bf16-stored vs PyTorch float64 logits");
        Assert.Equal(ParameterDType.BFloat16, bf16.Layers[0].Wq.DType);
        Assert.Equal(ParameterDType.Float32, bf16.Layers[0].AttentionNorm.DType);
    }

    [Fact]
    public void LoadHf_Bf16Storage_HalvesWeightMemory()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var fp32 = LlamaModel.LoadHf(dir);
        var bf16 = LlamaModel.LoadHf(dir, Bf16);
        var normElements = fp32.Parameters.Parameters.Where(p => p.Shape.Length == 1).Sum(p => p.Length);

        Assert.Equal(fp32.Parameters.Count, bf16.Parameters.Count);
        Assert.Equal(fp32.Parameters.Count * 4, fp32.Parameters.ByteSize);
        Assert.Equal((fp32.Parameters.Count - normElements) * 2 + normElements * 4, bf16.Parameters.ByteSize);
        Assert.True(bf16.Parameters.ByteSize < fp32.Parameters.ByteSize * 0.51, $"{bf16.Parameters.ByteSize} vs {fp32.Parameters.ByteSize} bytes");
    }

    [Fact]
    public void Generate_Bf16StoredStories260K_StillTellsTheStory()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var loaded = PretrainedModel.Load(dir, Bf16);

        var result = new Generator(loaded.Model, loaded.Tokenizer).Generate("Once upon a time", new GenerationOptions { MaxNewTokens = 12 }, cancellationToken: TestContext.Current.CancellationToken);

        Assert.StartsWith(", there was a little girl", result.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Parameter_Bf16_SpanThrowsAndCopyRoundsToNearestEven()
    {
        var model = LlamaModel.Create(LlamaModel.LoadHf(TestAssets.Fixture("tiny-llama/gqa-tied")).Config, Bf16);
        var wq = model.Layers[0].Wq;
        var values = NumericAssert.Random((int)wq.Length, 11);

        wq.CopyFrom(values);

        Assert.Throws<InvalidOperationException>(() => wq.Span.Length);
        var back = wq.ToFloat32();
        for (var i = 0; i < values.Length; i++)
        {
            Assert.Equal(SafeTensorsWriter.ToBFloat16(values[i]), (ushort)(BitConverter.SingleToUInt32Bits(back[i]) >> 16));
        }
    }

    [Theory]
    [InlineData(1, 7, 5)]
    [InlineData(1, 33, 47)]
    [InlineData(1, 300, 288)]
    [InlineData(3, 65, 257)]
    [InlineData(13, 100, 300)]
    public void ForwardBf16_OddShapes_MatchesNaive(int m, int n, int k)
    {
        var a = NumericAssert.Random(m * k, 1);
        var w = NumericAssert.Random(n * k, 2).Select(SafeTensorsWriter.ToBFloat16).ToArray();
        var bias = NumericAssert.Random(n, 3);
        var expected = new float[m * n];
        var actual = new float[m * n];
        MatMul.NaiveBf16(a, w, bias, expected, m, n, k);

        MatMul.ForwardBf16(a, w, bias, actual, m, n, k);

        NumericAssert.AssertClose(actual, expected, 1e-4, 1e-5 * Math.Sqrt(k), $"bf16 matmul {m}x{n}x{k}");
    }

    [Fact]
    public void GenerationConfig_Stories260K_EosAndGreedyDefaults()
    {
        var model = LlamaModel.LoadHf(TestAssets.Require("models", "stories260K-hf"));

        Assert.NotNull(model.GenerationConfig);
        Assert.Equal([2], model.GenerationConfig.EosTokenIds!);
        Assert.Equal(1, model.GenerationConfig.BosTokenId);
        Assert.Equal(0, model.GenerationConfig.ToOptions().Temperature);
    }

    [Fact]
    public void GenerationConfig_SamplingFileWithEosList_BecomesOptions()
    {
        var dir = Directory.CreateTempSubdirectory("genconfig-");
        try
        {
            var path = Path.Combine(dir.FullName, "generation_config.json");
            File.WriteAllText(path, """{"do_sample": true, "temperature": 0.6, "top_p": 0.9, "eos_token_id": [128001, 128009], "max_length": 100, "transformers_version": "4.43"}""");

            var options = GenerationConfig.Load(path).ToOptions(promptTokens: 30);

            Assert.Equal(0.6f, options.Temperature);
            Assert.Equal(0.9f, options.TopP);
            Assert.Equal(50, options.TopK);
            Assert.Equal(70, options.MaxNewTokens);
            Assert.Equal([128001, 128009], options.StopTokenIds!);

            File.WriteAllText(path, """{"top_p": 2}""");
            var e = Assert.Throws<ModelFormatException>(() => GenerationConfig.Load(path));
            Assert.Contains("generation_config.json", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void PretrainedModel_TokenizerLargerThanVocabulary_ErrorNamesBothFiles()
    {
        var source = TestAssets.Require("models", "stories260K-hf");
        var bigTokenizer = TestAssets.Require("tokenizers", "llama2", "tokenizer.json");
        var dir = Directory.CreateTempSubdirectory("vocab-mismatch-");
        try
        {
            foreach (var f in new[] { "config.json", "model.safetensors" })
            {
                File.Copy(Path.Combine(source, f), Path.Combine(dir.FullName, f));
            }

            File.Copy(bigTokenizer, Path.Combine(dir.FullName, "tokenizer.json"));

            var e = Assert.Throws<ModelFormatException>(() => PretrainedModel.Load(dir.FullName));

            Assert.Contains(Path.Combine(dir.FullName, "tokenizer.json"), e.Message, StringComparison.Ordinal);
            Assert.Contains(Path.Combine(dir.FullName, "config.json"), e.Message, StringComparison.Ordinal);
            Assert.Contains("32000", e.Message, StringComparison.Ordinal);
            Assert.Contains("vocab_size 512", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void PretrainedModel_Stories260K_LoadsEverything()
    {
        var loaded = PretrainedModel.Load(TestAssets.Require("models", "stories260K-hf"));

        Assert.Equal(512, loaded.Tokenizer.VocabSize);
        Assert.Null(loaded.ChatTemplate);
        Assert.NotNull(loaded.GenerationConfig);
    }
}
