using System.Text.Json;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>Loads the committed PyTorch references under Fixtures/training (see generate.py there).</summary>
internal static class TrainingFixtures
{
    public static string Directory(string variant) => TestAssets.Fixture($"training/{variant}");

    public static LlamaModel Model(string variant) => LlamaModel.LoadHf(Directory(variant));

    public static TrainingBatch Batch(string variant)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory(variant), "batch.json")));
        return ReadBatch(doc.RootElement);
    }

    public static TrainingBatch ReadBatch(JsonElement e) => new(
        e.GetProperty("batch").GetInt32(),
        e.GetProperty("seq").GetInt32(),
        Ints(e.GetProperty("tokens")),
        Ints(e.GetProperty("targets")),
        Ints(e.GetProperty("positions")));

    public static (double Loss, SafeTensorsFile Gradients) Gradients(string variant)
    {
        var file = SafeTensorsFile.Open(Path.Combine(Directory(variant), "gradients.safetensors"));
        return (double.Parse(file.Metadata["loss"], System.Globalization.CultureInfo.InvariantCulture), file);
    }

    public static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
