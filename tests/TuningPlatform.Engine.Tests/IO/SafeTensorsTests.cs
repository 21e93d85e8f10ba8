using System.Text;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tests.Models;

namespace TuningPlatform.Engine.Tests.IO;

/// <summary>safetensors writer/reader round trips, sharded checkpoints and loud errors on bad files.</summary>
public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("engine-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(SafeTensorsDType.F32, 0)]
    [InlineData(SafeTensorsDType.BF16, 1.0 / 128)]
    [InlineData(SafeTensorsDType.F16, 1.0 / 1024)]
    public void Write_ThenRead_RoundTripsWithinDTypePrecision(SafeTensorsDType dtype, double rtol)
    {
        var a = NumericAssert.Random(3 * 5, 11, 3);
        var b = NumericAssert.Random(7, 12);
        var path = Path.Combine(_dir, "t.safetensors");

        SafeTensorsWriter.Write(path, [new("a", [3, 5], a, dtype), new("b", [7], b, dtype)], new Dictionary<string, string> { ["format"] = "pt" });
        using var file = SafeTensorsFile.Open(path);

        Assert.Equal([3L, 5L], file.Tensors["a"].Shape);
        Assert.Equal(dtype, file.Tensors["b"].DType);
        Assert.Equal("pt", file.Metadata["format"]);
        NumericAssert.AssertClose(file.ReadAsFloat32("a"), a, rtol, 0, "a");
        NumericAssert.AssertClose(file.ReadAsFloat32("b"), b, rtol, 0, "b");
    }

    [Fact]
    public void ToBFloat16_RoundsToNearestEven()
    {
        Assert.Equal(0x3F80, SafeTensorsWriter.ToBFloat16(1f));
        Assert.Equal(0x3F80, SafeTensorsWriter.ToBFloat16(BitConverter.Int32BitsToSingle(0x3F808000)));
        Assert.Equal(0x3F82, SafeTensorsWriter.ToBFloat16(BitConverter.Int32BitsToSingle(0x3F818000)));
        Assert.Equal(0x3F81, SafeTensorsWriter.ToBFloat16(BitConverter.Int32BitsToSingle(0x3F808001)));
    }

    [Fact]
    public void LoadHf_ShardedCheckpoint_EqualsSingleFile()
    {
        var (model, tokens, expected) = ReferenceLogitsTests.LoadVariant("qwen2-bias");
        var keys = model.Parameters.Parameters.ToList();
        var half = keys.Count / 2;
        var shards = new[] { keys[..half], keys[half..] };
        var map = new List<string>();
        for (var s = 0; s < 2; s++)
        {
            var name = $"model-0000{s + 1}-of-00002.safetensors";
            SafeTensorsWriter.Write(Path.Combine(_dir, name), shards[s]
                .Select(p => new SafeTensorsWriter.Entry(HfCheckpointKeys.ToHf(p.Name), p.Shape.Select(x => (long)x).ToArray(), p.Memory, SafeTensorsDType.F32)).ToList());
            map.AddRange(shards[s].Select(p => $"\"{HfCheckpointKeys.ToHf(p.Name)}\": \"{name}\""));
        }

        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"), $"{{\"metadata\": {{}}, \"weight_map\": {{{string.Join(", ", map)}}}}}");
        File.Copy(Path.Combine(TestAssets.Fixture("tiny-llama/qwen2-bias"), "config.json"), Path.Combine(_dir, "config.json"));

        var sharded = LlamaModel.LoadHf(_dir);
        var logits = new float[tokens.Length * sharded.Config.VocabSize];
        sharded.Forward(sharded.CreateState(tokens.Length), tokens, logits, allPositions: true);

        NumericAssert.AssertClose(sharded.Parameters.Data, model.Parameters.Data, 0, 0, "parameters");
        NumericAssert.AssertClose(logits, expected, 1e-4, 1e-5, "sharded logits");
    }

    [Fact]
    public void Open_TruncatedHeader_NamesFileAndProblem()
    {
        var path = Path.Combine(_dir, "bad.safetensors");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes(1000L), .. "{\"a\":"u8.ToArray()]);

        var ex = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));

        Assert.Contains(path, ex.Message);
        Assert.Contains("header", ex.Message);
    }

    [Fact]
    public void Open_CorruptJsonHeader_NamesFileAndProblem()
    {
        var path = Path.Combine(_dir, "bad.safetensors");
        var header = "{not json}   "u8.ToArray();
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((long)header.Length), .. header]);

        var ex = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));

        Assert.Contains("not valid JSON", ex.Message);
    }

    [Fact]
    public void Open_TruncatedData_ReportsOffsetsOutsideFile()
    {
        var path = Path.Combine(_dir, "t.safetensors");
        SafeTensorsWriter.Write(path, [new("a", [64], new float[64])]);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);

        var ex = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));

        Assert.Contains("'a'", ex.Message);
        Assert.Contains("truncated", ex.Message);
    }

    [Fact]
    public void Open_UnsupportedDType_NamesTensorAndDType()
    {
        var path = Path.Combine(_dir, "i8.safetensors");
        var header = Encoding.UTF8.GetBytes("{\"w\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((long)header.Length), .. header, 1, 2, 3, 4]);

        var ex = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));

        Assert.Contains("'w'", ex.Message);
        Assert.Contains("I8", ex.Message);
    }

    [Fact]
    public void LoadHf_MissingTensor_NamesKey()
    {
        CopyVariantWithout("gqa-tied", "model.layers.1.mlp.up_proj.weight", reshape: false);

        var ex = Assert.Throws<ModelFormatException>(() => LlamaModel.LoadHf(_dir));

        Assert.Contains("missing tensor 'model.layers.1.mlp.up_proj.weight'", ex.Message);
    }

    [Fact]
    public void LoadHf_MisshapenTensor_NamesKeyAndShapes()
    {
        CopyVariantWithout("gqa-tied", "model.norm.weight", reshape: true);

        var ex = Assert.Throws<ModelFormatException>(() => LlamaModel.LoadHf(_dir));

        Assert.Contains("'model.norm.weight' has shape [31]", ex.Message);
        Assert.Contains("[32]", ex.Message);
    }

    [Fact]
    public void LoadConfig_UnsupportedModelType_NamesTypeAndFile()
    {
        var path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, "{\"model_type\": \"gpt_neox\", \"hidden_size\": 8}");

        var ex = Assert.Throws<ModelFormatException>(() => LlamaConfig.Load(path));

        Assert.Contains(path, ex.Message);
        Assert.Contains("gpt_neox", ex.Message);
    }

    private void CopyVariantWithout(string variant, string key, bool reshape)
    {
        var src = TestAssets.Fixture($"tiny-llama/{variant}");
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(_dir, "config.json"));
        using var file = SafeTensorsFile.Open(Path.Combine(src, "model.safetensors"));
        var entries = file.Tensors.Values
            .Where(t => reshape || t.Name != key)
            .Select(t => t.Name == key
                ? new SafeTensorsWriter.Entry(t.Name, [t.Shape[0] - 1], file.ReadAsFloat32(t.Name)[..^1])
                : new SafeTensorsWriter.Entry(t.Name, t.Shape, file.ReadAsFloat32(t.Name)))
            .ToList();
        SafeTensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), entries);
    }
}
