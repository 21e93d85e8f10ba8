using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Tests.Tokenizers;

/// <summary>llama.cpp's tokenizer conformance vectors: every input must encode to exactly the expected ids.</summary>
public sealed class ConformanceVectorTests
{
    private const string Separator = "\n__ggml_vocab_test__\n";

    [Theory]
    [InlineData("gpt-2", "gpt2")]
    [InlineData("llama-bpe", "llama3")]
    [InlineData("llama-spm", "llama2")]
    public void Encode_ConformanceVectors_MatchEveryVector(string vectors, string tokenizerDir)
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require("tokenizers", tokenizerDir, "tokenizer.json"));
        var cases = ReadVectors(vectors);

        var failures = new List<string>();
        foreach (var (input, expected) in cases)
        {
            var actual = tokenizer.Encode(input, addSpecialTokens: false);
            if (!actual.SequenceEqual(expected))
            {
                failures.Add($"{Escape(input)}: expected [{string.Join(' ', expected)}], got [{string.Join(' ', actual)}]");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} vectors differ:\n{string.Join('\n', failures)}");
        Assert.True(cases.Count >= 40, $"only {cases.Count} vectors read");
    }

    [Fact]
    public void Encode_LlamaSpmVectorsWithLlama2cTokenizerBin_MatchEveryVector()
    {
        var tokenizer = Llama2cTokenizer.FromFile(TestAssets.Require("tokenizers", "llama2", "tokenizer.bin"));
        var cases = ReadVectors("llama-spm");

        var failures = cases
            .Select(c => (c.Input, c.Expected, Actual: tokenizer.Encode(c.Input, addSpecialTokens: false)))
            .Where(c => !c.Actual.SequenceEqual(c.Expected))
            .Select(c => $"{Escape(c.Input)}: expected [{string.Join(' ', c.Expected)}], got [{string.Join(' ', c.Actual)}]")
            .ToList();

        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} vectors differ:\n{string.Join('\n', failures)}");
    }

    [Theory]
    [InlineData("gpt-2", "gpt2")]
    [InlineData("llama-bpe", "llama3")]
    [InlineData("llama-spm", "llama2")]
    public void Decode_ConformanceVectors_RoundTripsInput(string vectors, string tokenizerDir)
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require("tokenizers", tokenizerDir, "tokenizer.json"));
        foreach (var (input, expected) in ReadVectors(vectors))
        {
            Assert.Equal(input, tokenizer.Decode(expected));
        }
    }

    internal static List<(string Input, int[] Expected)> ReadVectors(string name)
    {
        var inp = File.ReadAllText(TestAssets.Require("tokenizers", "test-vectors", name + ".inp"));
        var outLines = File.ReadAllText(TestAssets.Require("tokenizers", "test-vectors", name + ".out")).Split('\n');
        var inputs = inp.Split(Separator);
        // The file ends with a separator, so the split leaves one empty trailing element.
        if (inputs[^1].Length == 0)
        {
            inputs = inputs[..^1];
        }

        Assert.True(outLines.Length >= inputs.Length, $"{name}: {inputs.Length} inputs but {outLines.Length} output lines");
        return inputs
            .Select((s, i) => (s, outLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(x => int.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray()))
            .ToList();
    }

    private static string Escape(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}
