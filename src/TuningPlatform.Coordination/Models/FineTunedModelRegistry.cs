using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace TuningPlatform.Coordination.Models;

/// <summary>
/// A model produced by a training job, as the training service registers it and the inference and
/// evaluation services resolve it. Paths are absolute paths on this machine (artifact store directories).
/// </summary>
/// <param name="Id"><c>ft:&lt;base&gt;:&lt;suffix&gt;:&lt;job id&gt;</c>; the suffix may be empty. A checkpoint of the job
/// (registered while it trains) has <c>:ckpt-&lt;step&gt;</c> appended.</param>
/// <param name="BaseModelId">The base model's id (a folder name under the model roots).</param>
/// <param name="JobId">The training job that produced it.</param>
/// <param name="Method"><c>full</c>, <c>lora</c> or <c>qlora</c>.</param>
/// <param name="Objective"><c>sft</c> or <c>continued_pretraining</c>.</param>
/// <param name="CreatedAt">When it was registered.</param>
/// <param name="AdapterPath">LoRA/QLoRA: the PEFT directory (adapter_config.json, adapter_model.safetensors).</param>
/// <param name="ModelPath">Full fine-tuning: the HF model directory.</param>
/// <param name="MergedModelPath">An HF directory with the adapter merged into the base, when the job asked for one.</param>
public sealed record FineTunedModel(
    string Id,
    string BaseModelId,
    string JobId,
    string Method,
    string Objective,
    DateTimeOffset CreatedAt,
    string? AdapterPath = null,
    string? ModelPath = null,
    string? MergedModelPath = null)
{
    /// <summary>The suffix the job was given (may be empty).</summary>
    public string Suffix { get; init; } = "";

    /// <summary>Artifact ids, by role (adapter, model, merged_model), for the training API.</summary>
    public IReadOnlyDictionary<string, string> ArtifactIds { get; init; } = new Dictionary<string, string>();

    /// <summary>The training dataset version.</summary>
    public string TrainingVersionId { get; init; } = "";

    /// <summary>Final metrics of the job (train_loss, valid_loss, trained_tokens, …).</summary>
    public IReadOnlyDictionary<string, double> Metrics { get; init; } = new Dictionary<string, double>();

    /// <summary>The job's metadata.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>LoRA settings used, as the training service serialised them (JSON object), or empty.</summary>
    public string LoraJson { get; init; } = "";
}

/// <summary>
/// The fine-tuned model registry: one JSON file per model under <c>&lt;data&gt;/fine-tuned/</c>, named by the
/// job id (the last segment of the model id), and one per registered checkpoint (<c>&lt;job id&gt;.ckpt-&lt;step&gt;.json</c>). Written by the training service (atomically: temp file, then
/// rename), read by inference and evaluation, so every process on the machine sees the same registry without
/// a network call. A missing directory is an empty registry.
/// </summary>
public sealed partial class FineTunedModelRegistry
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The registry over <paramref name="directory"/> (usually <c>&lt;TUNING_DATA_DIR&gt;/fine-tuned</c>).</summary>
    public FineTunedModelRegistry(string directory)
    {
        Directory = Path.GetFullPath(directory);
    }

    /// <summary>The folder holding one <c>&lt;job id&gt;.json</c> per model.</summary>
    public string Directory { get; }

    /// <summary>The registry under a data directory: <c>&lt;dataDirectory&gt;/fine-tuned</c>.</summary>
    public static FineTunedModelRegistry ForDataDirectory(string dataDirectory) => new(Path.Combine(dataDirectory, "fine-tuned"));

    /// <summary>Builds <c>ft:&lt;base&gt;:&lt;suffix&gt;:&lt;job id&gt;</c>.</summary>
    public static string FormatId(string baseModelId, string suffix, string jobId) => $"ft:{baseModelId}:{suffix}:{jobId}";

    /// <summary>True when <paramref name="id"/> has the <c>ft:…:…:&lt;job id&gt;</c> shape (it may still be unknown).</summary>
    public static bool IsFineTunedId(string id) => TryGetJobId(id, out _);

    /// <summary>Builds a checkpoint's id: <c>ft:&lt;base&gt;:&lt;suffix&gt;:&lt;job id&gt;:ckpt-&lt;step&gt;</c>.</summary>
    public static string FormatCheckpointId(string baseModelId, string suffix, string jobId, long step) =>
        string.Create(CultureInfo.InvariantCulture, $"{FormatId(baseModelId, suffix, jobId)}:ckpt-{step}");

    /// <summary>
    /// The job id of a fine-tuned model id: its last <c>:</c>-separated segment, or the one before it when the
    /// id names a checkpoint (<c>…:&lt;job id&gt;:ckpt-&lt;step&gt;</c>).
    /// </summary>
    public static bool TryGetJobId(string id, out string jobId)
    {
        jobId = "";
        if (!id.StartsWith("ft:", StringComparison.Ordinal))
        {
            return false;
        }
        var parts = id.Split(':');
        var index = parts.Length - 1;
        if (parts.Length >= 5 && CheckpointPattern().IsMatch(parts[^1]))
        {
            index--;
        }
        var candidate = parts[index];
        if (parts.Length < 4 || !JobIdPattern().IsMatch(candidate) || CheckpointPattern().IsMatch(candidate))
        {
            return false;
        }
        jobId = candidate;
        return true;
    }

    /// <summary>True when <paramref name="id"/> names a checkpoint of a fine-tuned model; gives the model's id and the step.</summary>
    public static bool TryParseCheckpointId(string id, out string modelId, out long step)
    {
        modelId = "";
        step = 0;
        var last = id.LastIndexOf(':');
        if (last < 0 || !CheckpointPattern().IsMatch(id[(last + 1)..]) || !TryGetJobId(id, out _)
            || !long.TryParse(id[(last + 1 + "ckpt-".Length)..], NumberStyles.None, CultureInfo.InvariantCulture, out step))
        {
            return false;
        }
        modelId = id[..last];
        return true;
    }

    /// <summary>Registers (or replaces) a model. Atomic: readers see the old file or the new one, never half of one.</summary>
    public void Register(FineTunedModel model)
    {
        if (!TryGetJobId(model.Id, out var jobId) || jobId != model.JobId)
        {
            throw new ArgumentException($"'{model.Id}' is not a fine-tuned model id ending with its job id '{model.JobId}'.", nameof(model));
        }
        System.IO.Directory.CreateDirectory(Directory);
        var path = FileOf(model.Id, jobId);
        var temp = path + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(model, JsonOptions));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The model with this id, or null when it is unknown (or the id is not a fine-tuned id).</summary>
    public FineTunedModel? Find(string id)
    {
        if (!TryGetJobId(id, out var jobId))
        {
            return null;
        }
        var model = Read(FileOf(id, jobId));
        return model is not null && model.Id == id ? model : null;
    }

    /// <summary>The model a job produced, or null.</summary>
    public FineTunedModel? FindByJob(string jobId) => JobIdPattern().IsMatch(jobId) ? Read(PathOf(jobId)) : null;

    /// <summary>Every registered model, newest first (checkpoints are not listed: see <see cref="ListCheckpoints"/>).</summary>
    public IReadOnlyList<FineTunedModel> List()
    {
        if (!System.IO.Directory.Exists(Directory))
        {
            return [];
        }
        return [.. System.IO.Directory.EnumerateFiles(Directory, "*.json")
            .Where(path => !Path.GetFileName(path).Contains(".ckpt-", StringComparison.Ordinal))
            .Select(Read)
            .OfType<FineTunedModel>()
            .OrderByDescending(m => m.CreatedAt)
            .ThenBy(m => m.Id, StringComparer.Ordinal)];
    }

    /// <summary>The registered checkpoints of a job, highest step first.</summary>
    public IReadOnlyList<FineTunedModel> ListCheckpoints(string jobId)
    {
        if (!JobIdPattern().IsMatch(jobId) || !System.IO.Directory.Exists(Directory))
        {
            return [];
        }
        return [.. System.IO.Directory.EnumerateFiles(Directory, jobId + ".ckpt-*.json")
            .Select(Read)
            .OfType<FineTunedModel>()
            .Where(m => m.JobId == jobId && TryParseCheckpointId(m.Id, out _, out _))
            .OrderByDescending(m => TryParseCheckpointId(m.Id, out _, out var step) ? step : 0)];
    }

    /// <summary>Removes a model's entry (not its artifacts). False when it was not registered.</summary>
    public bool Delete(string id)
    {
        if (Find(id) is null || !TryGetJobId(id, out var jobId))
        {
            return false;
        }
        File.Delete(FileOf(id, jobId));
        return true;
    }

    /// <summary>The file of a model id: <c>&lt;job id&gt;.json</c>, or <c>&lt;job id&gt;.ckpt-&lt;step&gt;.json</c> for a checkpoint.</summary>
    private string FileOf(string id, string jobId) =>
        TryParseCheckpointId(id, out _, out var step)
            ? Path.Combine(Directory, string.Create(CultureInfo.InvariantCulture, $"{jobId}.ckpt-{step}.json"))
            : PathOf(jobId);

    private string PathOf(string jobId) => Path.Combine(Directory, jobId + ".json");

    private static FineTunedModel? Read(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<FineTunedModel>(File.ReadAllText(path), JsonOptions);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or JsonException)
        {
            // Not registered, or a file that is not ours: the registry skips it rather than failing every listing.
            return null;
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex JobIdPattern();

    [GeneratedRegex("^ckpt-[0-9]{1,18}$")]
    private static partial Regex CheckpointPattern();
}
