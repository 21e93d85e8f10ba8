using System.Text;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Tests.Tokenizers;

/// <summary>Post-processing, streaming and error behaviour of the tokenizers.</summary>
public sealed class TokenizerBehaviourTests
{
    [Fact]
    public void Encode_AddSpecialTokens_PrependsBosFromTemplate()
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require("tokenizers", "llama2", "tokenizer.json"));

        var ids = tokenizer.Encode("Hello world");

        Assert.Equal([1, 15043, 3186], ids);
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
    }

    [Fact]
    public void Encode_SpecialTokenText_BecomesOneId()
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require("tokenizers", "llama3", "tokenizer.json"));

        var ids = tokenizer.Encode("<|begin_of_text|>Hi<|eot_id|>", addSpecialTokens: false);

        Assert.Equal(128000, ids[0]);
        Assert.Equal(tokenizer.TokenToId("<|eot_id|>"), ids[^1]);
        Assert.Equal("Hi", tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("gpt2")]
    public void StreamDecoder_MultiByteCharacters_NeverEmitsHalfACharacter(string name)
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require("tokenizers", name, "tokenizer.json"));
        const string Text = "Emoji 🚀👨‍👩‍👧 and 日本語, café — 𠀀 done.";
        var ids = tokenizer.Encode(Text, addSpecialTokens: false);
        var stream = tokenizer.CreateStreamDecoder();
        var deltas = new List<string>();

        foreach (var id in ids)
        {
            deltas.Add(stream.Push(id));
        }

        deltas.Add(stream.Flush());

        Assert.All(deltas, d => Assert.DoesNotContain('\uFFFD', d));
        Assert.All(deltas, d => Assert.True(d.Length == 0 || !char.IsHighSurrogate(d[^1]), $"delta ends in half a surrogate pair: {d}"));
        Assert.Equal(tokenizer.Decode(ids), string.Concat(deltas));
        Assert.True(ids.Length > deltas.Count(d => d.Length > 0), "some byte tokens should have been held back");
    }

    [Fact]
    public void Decode_InvalidByteSequence_GivesReplacementCharacter()
    {
        var tokenizer = HfTokenizer.FromFile(TestAssets.Require("tokenizers", "llama2", "tokenizer.json"));
        var f0 = tokenizer.TokenToId("<0xF0>")!.Value;

        Assert.Equal("a\uFFFD", tokenizer.Decode([tokenizer.TokenToId("▁a")!.Value, f0]));
    }

    [Fact]
    public void FromJson_UnsupportedModelType_NamesSourceAndType()
    {
        var ex = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.FromJson("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "my/tokenizer.json"));

        Assert.Contains("my/tokenizer.json", ex.Message);
        Assert.Contains("Unigram", ex.Message);
    }

    [Fact]
    public void FromFile_InvalidJson_NamesFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"tok-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, "{ nope");
        try
        {
            var ex = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.FromFile(path));

            Assert.Contains(path, ex.Message);
            Assert.Contains("not valid JSON", ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Llama2cFromFile_Truncated_NamesTokenAndFile()
    {
        var source = File.ReadAllBytes(TestAssets.Require("models", "stories260K-llama2c", "tok512.bin"));
        var path = Path.Combine(Path.GetTempPath(), $"tok-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(path, source[..1000]);
        try
        {
            var ex = Assert.Throws<TokenizerFormatException>(() => Llama2cTokenizer.FromFile(path, 512));

            Assert.Contains(path, ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Llama2cDecode_AfterBos_DropsDummyPrefixSpace()
    {
        var tokenizer = Llama2cTokenizer.FromFile(TestAssets.Require("models", "stories260K-llama2c", "tok512.bin"), 512);

        var ids = tokenizer.Encode("Once upon a time");

        Assert.Equal(1, ids[0]);
        Assert.Equal("Once upon a time", tokenizer.Decode(ids, skipSpecialTokens: true));
        Assert.Equal(Encoding.UTF8.GetByteCount("字"), tokenizer.Encode("字", addSpecialTokens: false).Length - 1);
    }
}
