using System.Globalization;
using System.Text.Json;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Tests.Tokenizers;

/// <summary>
/// Id-for-id parity with Hugging Face's tokenizers (JS port) on 1,505 varied strings per tokenizer:
/// prose, code, whitespace runs, digits, accents, CJK, emoji, special-token text and lone surrogates.
/// Fixtures come from Fixtures/tokenizers/generate.cjs.
/// </summary>
public sealed class HfParityTests
{
    private static readonly Lazy<List<string>> Inputs = new(ReadInputs);

    [Theory]
    [InlineData("gpt2", "tokenizers/gpt2")]
    [InlineData("llama2", "tokenizers/llama2")]
    [InlineData("llama3", "tokenizers/llama3")]
    [InlineData("mistral-like-spm", "tokenizers/mistral-like-spm")]
    [InlineData("smollm2-135m", "tokenizers/smollm2-135m")]
    [InlineData("stories260K", "models/stories260K-hf")]
    public void Encode_VariedStrings_MatchesHuggingFace(string name, string dir)
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require([.. dir.Split('/'), "tokenizer.json"]));
        var (expectedIds, _) = ReadExpected(name);
        var inputs = Inputs.Value;
        Assert.Equal(inputs.Count, expectedIds.Count);

        var failures = new List<string>();
        for (var i = 0; i < inputs.Count; i++)
        {
            var actual = tokenizer.Encode(inputs[i], addSpecialTokens: false);
            if (!actual.SequenceEqual(expectedIds[i]))
            {
                failures.Add($"#{i} {JsonSerializer.Serialize(inputs[i])}: expected [{string.Join(' ', expectedIds[i])}], got [{string.Join(' ', actual)}]");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {inputs.Count} strings differ:\n{string.Join('\n', failures.Take(20))}");
    }

    [Theory]
    [InlineData("gpt2", "tokenizers/gpt2")]
    [InlineData("llama2", "tokenizers/llama2")]
    [InlineData("llama3", "tokenizers/llama3")]
    [InlineData("mistral-like-spm", "tokenizers/mistral-like-spm")]
    [InlineData("smollm2-135m", "tokenizers/smollm2-135m")]
    [InlineData("stories260K", "models/stories260K-hf")]
    public void Decode_ReferenceIds_MatchesHuggingFace(string name, string dir)
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require([.. dir.Split('/'), "tokenizer.json"]));
        var (expectedIds, decoded) = ReadExpected(name);
        var inputs = Inputs.Value;

        var failures = new List<string>();
        for (var i = 0; i < inputs.Count; i++)
        {
            var want = decoded[i] ?? inputs[i];
            var actual = tokenizer.Decode(expectedIds[i]);
            if (actual != want)
            {
                failures.Add($"#{i}: expected {JsonSerializer.Serialize(want)}, got {JsonSerializer.Serialize(actual)}");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {inputs.Count} decodes differ:\n{string.Join('\n', failures.Take(20))}");
    }

    private static List<string> ReadInputs()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestAssets.Fixture("tokenizers/inputs.json")));
        var list = doc.RootElement.GetProperty("strings").EnumerateArray().Select(e => e.GetString()!).ToList();
        foreach (var units in doc.RootElement.GetProperty("utf16").EnumerateArray())
        {
            list.Add(new string(units.EnumerateArray().Select(u => (char)u.GetInt32()).ToArray()));
        }

        return list;
    }

    private static (List<int[]> Ids, List<string?> Decoded) ReadExpected(string name)
    {
        var lines = File.ReadAllText(TestAssets.Fixture($"tokenizers/{name}.ids.txt")).Split('\n');
        var split = Array.IndexOf(lines, "#decode");
        var ids = lines[..split]
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray())
            .ToList();
        var decoded = lines[(split + 1)..(split + 1 + ids.Count)]
            .Select(l => l == "=" ? null : JsonSerializer.Deserialize<string>(l))
            .ToList();
        return (ids, decoded);
    }
}
