using System.Text.RegularExpressions;

namespace TuningPlatform.TrainingService.Data;

/// <summary>
/// Base models: each sub-folder of a model root that holds a <c>config.json</c> is a model whose id is the folder
/// name (the inference service's convention). The first root that has the id wins.
/// </summary>
public sealed partial class ModelCatalog(TrainingOptions options)
{
    /// <summary>The model directory for <paramref name="id"/>, or null when no root has it (or the id is not a folder name).</summary>
    public string? Find(string id)
    {
        if (!IdPattern().IsMatch(id) || id is "." or "..")
        {
            return null;
        }
        return options.ModelRoots
            .Select(root => Path.Combine(root, id))
            .FirstOrDefault(dir => File.Exists(Path.Combine(dir, "config.json")));
    }

    /// <summary>True when <paramref name="id"/> could name a model folder.</summary>
    public static bool IsValidId(string id) => IdPattern().IsMatch(id) && id is not "." and not "..";

    [GeneratedRegex("^[A-Za-z0-9._-]{1,128}$")]
    private static partial Regex IdPattern();
}
