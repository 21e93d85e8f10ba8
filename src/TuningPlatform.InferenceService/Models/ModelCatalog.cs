using Microsoft.Extensions.Options;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Models;

/// <summary>Where a servable model comes from.</summary>
public enum ModelSource
{
    /// <summary>An HF directory under one of the model roots; the id is the folder name.</summary>
    ModelsFolder,

    /// <summary>A FULL fine-tuned model of the registry; the id is its <c>ft:</c> id.</summary>
    FineTuned,

    /// <summary>The merged model of a LoRA fine-tuned model (<c>use_merged</c>); the id is its <c>ft:</c> id.</summary>
    Merged,
}

/// <summary>A model the server can load.</summary>
public sealed record CatalogEntry(string Id, string Directory, LlamaConfig Config, ModelSource Source = ModelSource.ModelsFolder)
{
    /// <summary>The key it is loaded under: merged models share their <c>ft:</c> id with the adapter, so they get a suffix.</summary>
    public string Key => Source == ModelSource.Merged ? Id + "#merged" : Id;
}

/// <summary>
/// Finds the models under <see cref="InferenceOptions.ModelRoots"/> (each sub-folder holding a config.json and safetensors weights is a model
/// whose id is the folder name) and the FULL and merged models of the fine-tuned registry. Ids never become paths
/// without this lookup.
/// </summary>
public sealed class ModelCatalog(IOptions<InferenceOptions> options)
{
    /// <summary>The fine-tuned model registry (<see cref="InferenceOptions.FineTunedDirectory"/>).</summary>
    public FineTunedModelRegistry Registry { get; } = new(options.Value.FineTunedDirectory);

    /// <summary>Every model found now: the models folders, then fine-tuned FULL and merged models.</summary>
    public IReadOnlyList<CatalogEntry> List()
    {
        var entries = new Dictionary<string, CatalogEntry>(StringComparer.Ordinal);
        foreach (var root in options.Value.ModelRoots)
        {
            if (!System.IO.Directory.Exists(root))
            {
                continue;
            }
            foreach (var directory in System.IO.Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
            {
                if (TryEntry(Path.GetFileName(directory), directory, ModelSource.ModelsFolder) is { } entry)
                {
                    entries.TryAdd(entry.Key, entry);
                }
            }
        }
        foreach (var model in Registry.List())
        {
            foreach (var entry in FineTunedEntries(model))
            {
                entries.TryAdd(entry.Key, entry);
            }
        }
        return [.. entries.Values];
    }

    /// <summary>The base (models folder) or FULL fine-tuned model with this id, or null.</summary>
    public CatalogEntry? Find(string id)
    {
        if (FineTunedModelRegistry.IsFineTunedId(id))
        {
            return Registry.Find(id) is { } model ? FineTunedEntries(model).FirstOrDefault(e => e.Source == ModelSource.FineTuned) : null;
        }
        foreach (var root in options.Value.ModelRoots)
        {
            var directory = Path.Combine(root, id);
            if (IsPlainName(id) && TryEntry(id, directory, ModelSource.ModelsFolder) is { } entry)
            {
                return entry;
            }
        }
        return null;
    }

    /// <summary>The merged model of a LoRA fine-tuned model, or null when the job wrote none.</summary>
    public CatalogEntry? FindMerged(FineTunedModel model) => FineTunedEntries(model).FirstOrDefault(e => e.Source == ModelSource.Merged);

    private static IEnumerable<CatalogEntry> FineTunedEntries(FineTunedModel model)
    {
        if (model.Method == "full" && model.ModelPath is { } path && TryEntry(model.Id, path, ModelSource.FineTuned) is { } full)
        {
            yield return full;
        }
        if (model.MergedModelPath is { } merged && TryEntry(model.Id, merged, ModelSource.Merged) is { } entry)
        {
            yield return entry;
        }
    }

    // A folder name, never a path: no separators, no "." or "..".
    private static bool IsPlainName(string id) =>
        id.Length > 0 && id is not ("." or "..") && id.IndexOfAny(['/', '\\']) < 0 && !Path.IsPathRooted(id);

    // What the engine's loader reads (SafeTensors.OpenCheckpoint): a folder with a config but no weights (a tokenizer
    // or a config kept beside the models) is not a model.
    private static bool HasWeights(string directory) =>
        File.Exists(Path.Combine(directory, "model.safetensors.index.json"))
        || (System.IO.Directory.Exists(directory) && System.IO.Directory.EnumerateFiles(directory, "*.safetensors").Any());

    private static CatalogEntry? TryEntry(string id, string directory, ModelSource source)
    {
        var config = Path.Combine(directory, "config.json");
        if (!File.Exists(config) || !HasWeights(directory))
        {
            return null;
        }
        try
        {
            return new CatalogEntry(id, directory, LlamaConfig.Load(config), source);
        }
        catch (Exception ex) when (ex is ModelFormatException or IOException or System.Text.Json.JsonException)
        {
            // A folder with an unreadable or unsupported config is not a servable model; LoadModel names the problem.
            return null;
        }
    }
}
