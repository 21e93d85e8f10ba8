using System.Text.Json;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Tests.IO;

/// <summary>llama2.c → Hugging Face conversion reproduces the shared HF copy of stories260K.</summary>
public sealed class Llama2cConverterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("engine-conv-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Convert_Stories260K_WeightsAndTokenizerMatchSharedHfCopy()
    {
        var bin = TestAssets.Require("models", "stories260K-llama2c", "stories260K.bin");
        var tok = TestAssets.Require("models", "stories260K-llama2c", "tok512.bin");
        var hf = TestAssets.Require("models", "stories260K-hf");

        Llama2cConverter.Convert(bin, tok, _dir);
        var converted = LlamaModel.LoadHf(_dir);
        var reference = LlamaModel.LoadHf(hf);
        var convertedTok = HfTokenizer.FromFile(Path.Combine(_dir, "tokenizer.json"));
        var referenceTok = HfTokenizer.FromFile(Path.Combine(hf, "tokenizer.json"));
        var llama2cTok = Llama2cTokenizer.FromFile(tok, 512);

        NumericAssert.AssertClose(converted.Parameters.Data, reference.Parameters.Data, 0, 0, "parameters");
        Assert.Equal((reference.Config with { TorchDType = null }).ToJson(), (converted.Config with { TorchDType = null }).ToJson());
        foreach (var text in SampleTexts())
        {
            var expected = referenceTok.Encode(text);
            Assert.Equal(expected, convertedTok.Encode(text));
            Assert.Equal(expected, llama2cTok.Encode(text));
            Assert.Equal(referenceTok.Decode(expected), convertedTok.Decode(expected));
        }
    }

    [Fact]
    public void Load_TruncatedLlama2cBin_ReportsExpectedSize()
    {
        var bin = TestAssets.Require("models", "stories260K-llama2c", "stories260K.bin");
        var path = Path.Combine(_dir, "short.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(bin)[..5000]);

        var ex = Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Load(path));

        Assert.Contains(path, ex.Message);
        Assert.Contains("truncated", ex.Message);
    }

    private static IEnumerable<string> SampleTexts()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestAssets.Fixture("tokenizers/inputs.json")));
        // Special-token text is left out: llama2.c's tokenizer does not split on it.
        return doc.RootElement.GetProperty("strings").EnumerateArray().Select(e => e.GetString()!)
            .Where(s => !s.Contains('<'))
            .ToList();
    }
}
