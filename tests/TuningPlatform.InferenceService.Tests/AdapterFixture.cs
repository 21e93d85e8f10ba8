using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Peft;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>
/// Two PEFT adapters over stories260K (LoRA r=4 on every projection, PEFT's A initialisation, B filled with seeded
/// non-zero values so that each changes the model's answers), the base with adapter A merged in (an HF model
/// directory), and a fine-tuned registry folder, all in a temporary directory removed at the end.
/// </summary>
public sealed class AdapterFixture : IDisposable
{
    public const string Base = "stories260K-hf";
    public const string Merged = "stories260K-merged-a";

    public AdapterFixture()
    {
        Root = Directory.CreateTempSubdirectory("inference-adapters-").FullName;
        var models = InferenceServer.ModelsFolder;
        if (models is null)
        {
            return;
        }
        BaseDirectory = Path.Combine(models, Base);
        AdapterRoot = Path.Combine(Root, "adapters");
        ModelRoot = Path.Combine(Root, "models");
        FineTuned = Path.Combine(Root, "fine-tuned");
        var model = LlamaModel.LoadHf(BaseDirectory);
        WriteAdapter(Path.Combine(AdapterRoot, "a"), model, seed: 1);
        WriteAdapter(Path.Combine(AdapterRoot, "b"), model, seed: 2);
        WriteAdapter(Path.Combine(AdapterRoot, "c"), model, seed: 3);

        // A rank the tensors do not have: the loader must name the tensor and refuse.
        var bad = Path.Combine(AdapterRoot, "bad-rank");
        WriteAdapter(bad, model, seed: 4);
        var config = Path.Combine(bad, "adapter_config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"r\": 4", "\"r\": 8", StringComparison.Ordinal));
        Directory.CreateDirectory(Path.Combine(AdapterRoot, "empty"));

        var merged = LlamaModel.LoadHf(BaseDirectory);
        LoRAAdapter.Load(Path.Combine(AdapterRoot, "a"), merged).MergeInto(merged);
        MergedDirectory = Path.Combine(ModelRoot, Merged);
        merged.SaveHf(MergedDirectory);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
        {
            File.Copy(Path.Combine(BaseDirectory, file), Path.Combine(MergedDirectory, file));
        }
    }

    public string Root { get; }

    public string BaseDirectory { get; } = "";

    public string AdapterRoot { get; } = "";

    public string ModelRoot { get; } = "";

    public string FineTuned { get; } = "";

    public string MergedDirectory { get; } = "";

    /// <summary>Server settings: the extra models folder, the adapter folder and the registry.</summary>
    public Dictionary<string, string?> Settings(Dictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Inference:ModelRoots:1"] = ModelRoot,
            ["Inference:AdapterRoots:0"] = AdapterRoot,
            ["Inference:FineTunedDirectory"] = FineTuned,
        };
        foreach (var (key, value) in extra ?? [])
        {
            settings[key] = value;
        }
        return settings;
    }

    /// <summary>Registers a fine-tuned model as the training service does.</summary>
    public string Register(string jobId, string method, string? adapterPath = null, string? modelPath = null, string? mergedPath = null)
    {
        var id = FineTunedModelRegistry.FormatId(Base, "demo", jobId);
        new FineTunedModelRegistry(FineTuned).Register(new FineTunedModel(id, Base, jobId, method, "sft", DateTimeOffset.UtcNow, adapterPath, modelPath, mergedPath));
        return id;
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private static void WriteAdapter(string directory, LlamaModel model, int seed)
    {
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 4, Alpha = 8, TargetModules = LoRAConfig.AllLinear }, seed);
        var rng = new Random(seed + 1000);
        foreach (var parameter in adapter.Parameters.Parameters.Where(p => p.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
        {
            var span = parameter.Span;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (float)((rng.NextDouble() * 2 - 1) * 0.1);
            }
        }
        adapter.Save(directory);
    }
}
