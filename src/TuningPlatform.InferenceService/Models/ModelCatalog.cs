using Microsoft.Extensions.Options;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Models;

/// <summary>A model the server can load: an HF directory under one of the model roots.</summary>
public sealed record CatalogEntry(string Id, string Directory, LlamaConfig Config);

/// <summary>
/// Finds the models under <see cref="InferenceOptions.ModelRoots"/>: each sub-folder holding a
/// config.json is a model whose id is the folder name. Ids never become paths without this lookup.
/// </summary>
public sealed class ModelCatalog(IOptions<InferenceOptions> options)
{
    /// <summary>Every model found now, by id.</summary>
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
                var config = Path.Combine(directory, "config.json");
                if (!File.Exists(config))
                {
                    continue;
                }
                try
                {
                    entries.TryAdd(Path.GetFileName(directory), new CatalogEntry(Path.GetFileName(directory), directory, LlamaConfig.Load(config)));
                }
                catch (Exception ex) when (ex is ModelFormatException or IOException or System.Text.Json.JsonException)
                {
                    // A folder with an unreadable or unsupported config is not a servable model; LoadModel names the problem.
                }
            }
        }
        return [.. entries.Values];
    }

    /// <summary>The model with this id, or null.</summary>
    public CatalogEntry? Find(string id) => List().FirstOrDefault(e => e.Id == id);
}
