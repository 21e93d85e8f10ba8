using System.Text.Json;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Tests.Generation;

/// <summary>The real stories260K model must reproduce llama2.c run.c's greedy continuation exactly.</summary>
public sealed class StoriesGreedyTests
{
    [Fact]
    public void Generate_Llama2cBinGreedy_MatchesRunCReference()
    {
        var model = Llama2cCheckpoint.Load(TestAssets.Require("models", "stories260K-llama2c", "stories260K.bin"));
        var tokenizer = Llama2cTokenizer.FromFile(TestAssets.Require("models", "stories260K-llama2c", "tok512.bin"), model.Config.VocabSize);

        AssertReproducesReference(model, tokenizer);
    }

    [Fact]
    public void Generate_HfDirectoryGreedy_MatchesRunCReference()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var model = LlamaModel.LoadHf(dir);
        var tokenizer = Tokenizer.Load(dir);

        AssertReproducesReference(model, tokenizer);
    }

    [Fact]
    public void Load_Llama2cBin_EqualsHfSafetensorsAfterQkPermutation()
    {
        var fromBin = Llama2cCheckpoint.Load(TestAssets.Require("models", "stories260K-llama2c", "stories260K.bin"));
        var fromHf = LlamaModel.LoadHf(TestAssets.Require("models", "stories260K-hf"));

        Assert.Equal(fromHf.Parameters.Count, fromBin.Parameters.Count);
        foreach (var p in fromHf.Parameters.Parameters)
        {
            NumericAssert.AssertClose(fromBin.Parameters[p.Name].Span, p.Span, 0, 0, p.Name);
        }
    }

    [Fact]
    public void Generate_StreamingCallback_ConcatenatesToFinalText()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var generator = new Generator(LlamaModel.LoadHf(dir), Tokenizer.Load(dir));
        var deltas = new List<string>();

        var result = generator.Generate("Once upon a time", new GenerationOptions { MaxNewTokens = 60 }, deltas.Add, TestContext.Current.CancellationToken);

        Assert.Equal(result.Text, string.Concat(deltas));
        Assert.True(deltas.Count > 10);
    }

    [Fact]
    public void Generate_StopString_CutsTextBeforeIt()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var generator = new Generator(LlamaModel.LoadHf(dir), Tokenizer.Load(dir));
        var deltas = new List<string>();

        var result = generator.Generate([1], new GenerationOptions { MaxNewTokens = 200, StopStrings = ["Lily"] }, deltas.Add, TestContext.Current.CancellationToken);

        Assert.Equal(FinishReason.StopString, result.FinishReason);
        Assert.Equal("Once upon a time, there was a little girl named ", result.Text);
        Assert.Equal(result.Text, string.Concat(deltas));
    }

    [Fact]
    public void Generate_SamplingWithSameSeed_IsDeterministicAndDiffersFromGreedy()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");
        var generator = new Generator(LlamaModel.LoadHf(dir), Tokenizer.Load(dir));
        var options = new GenerationOptions { MaxNewTokens = 80, Temperature = 1.0f, TopK = 40, TopP = 0.9f, MinP = 0.02f, RepetitionPenalty = 1.1f, Seed = 7 };

        var a = generator.Generate([1], options, null, TestContext.Current.CancellationToken);
        var b = generator.Generate([1], options, null, TestContext.Current.CancellationToken);
        var c = generator.Generate([1], options with { Seed = 8 }, null, TestContext.Current.CancellationToken);
        var greedy = generator.Generate([1], new GenerationOptions { MaxNewTokens = 80 }, null, TestContext.Current.CancellationToken);

        Assert.Equal(a.TokenIds, b.TokenIds);
        Assert.NotEqual(a.TokenIds, c.TokenIds);
        Assert.NotEqual(greedy.TokenIds, a.TokenIds);
    }

    private static void AssertReproducesReference(LlamaModel model, Tokenizer tokenizer)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestAssets.Require("models", "stories260K-hf", "greedy_reference.json")));
        var prompt = doc.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var expected = doc.RootElement.GetProperty("greedy_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var expectedText = doc.RootElement.GetProperty("greedy_text").GetString();
        var generator = new Generator(model, tokenizer);

        var result = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = expected.Length - prompt.Length, StopTokenIds = [] }, null, TestContext.Current.CancellationToken);

        Assert.Equal(expected, prompt.Concat(result.TokenIds).ToArray());
        Assert.Equal(expectedText, result.Text);
    }
}
