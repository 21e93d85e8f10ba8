using System.Globalization;

namespace TuningPlatform.TrainingService;

/// <summary>
/// Settings of the training service and its workers (section <c>Training</c>, environment <c>Training__…</c>),
/// plus <c>TUNING_DATA_DIR</c> (default <c>.data/</c>) and the curation address <c>services:curation:grpc:0</c>
/// that the AppHost injects.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Configuration key of the curation service's address.</summary>
    public const string CurationAddressKey = "services:curation:grpc:0";

    /// <summary>The platform's data directory (artifacts, fine-tuned registry, job files).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Folders whose sub-folders holding a config.json are base models, named by their folder name.</summary>
    public IReadOnlyList<string> ModelRoots { get; init; } = [];

    /// <summary>Training workers hosted in the API process (0 = none: jobs wait for worker processes).</summary>
    public int Workers { get; init; } = 1;

    /// <summary>The curation service's gRPC address; empty = not configured.</summary>
    public string CurationAddress { get; init; } = "";

    /// <summary>
    /// For models without a chat template of their own: <c>plain</c> (the evaluation service's plain prompt, each
    /// message's content and a newline) or the name of a built-in template (<c>alpaca</c>, <c>chatml</c>, …).
    /// </summary>
    public string FallbackChatTemplate { get; init; } = "plain";

    /// <summary>Jobs that may wait in QUEUED (and VALIDATING) at once; CreateJob answers RESOURCE_EXHAUSTED beyond.</summary>
    public int MaxQueuedJobs { get; init; } = 100;

    /// <summary>Memory a worker may give one job; a larger estimate is refused at creation.</summary>
    public long MaxJobMemoryBytes { get; init; } = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Runs of a job, across retries and reclaims after a lost worker.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Sweep supervisors in this process: each follows one sweep parent at a time (they train nothing).</summary>
    public int SweepSupervisors { get; init; } = 2;

    /// <summary>How often a sweep supervisor reads its children's status and validation losses.</summary>
    public TimeSpan SweepPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Where job files (live metrics, checkpoints) live: <c>&lt;data&gt;/training/jobs</c>.</summary>
    public string JobsDirectory => Path.Combine(DataDirectory, "training", "jobs");

    /// <summary>The artifact store's root: <c>&lt;data&gt;/artifacts</c>.</summary>
    public string ArtifactsDirectory => Path.Combine(DataDirectory, "artifacts");

    /// <summary>Reads the options from configuration.</summary>
    public static TrainingOptions FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection("Training");
        var dataDirectory = Path.GetFullPath(configuration["TUNING_DATA_DIR"] is { Length: > 0 } dir ? dir : ".data");
        var defaults = new TrainingOptions { DataDirectory = dataDirectory };
        return new TrainingOptions
        {
            DataDirectory = dataDirectory,
            ModelRoots = List(section, "ModelRoots").Select(Path.GetFullPath).DefaultIfEmpty(Path.Combine(dataDirectory, "models")).ToList(),
            Workers = Int(section, "Workers", defaults.Workers),
            CurationAddress = configuration[CurationAddressKey] ?? "",
            FallbackChatTemplate = section["FallbackChatTemplate"] is { Length: > 0 } t ? t : defaults.FallbackChatTemplate,
            MaxQueuedJobs = Int(section, "MaxQueuedJobs", defaults.MaxQueuedJobs),
            MaxJobMemoryBytes = section["MaxJobMemoryBytes"] is { Length: > 0 } m
                ? long.Parse(m, NumberStyles.Integer, CultureInfo.InvariantCulture)
                : defaults.MaxJobMemoryBytes,
            MaxAttempts = Int(section, "MaxAttempts", defaults.MaxAttempts),
            SweepSupervisors = Int(section, "SweepSupervisors", defaults.SweepSupervisors),
            SweepPollInterval = section["SweepPollSeconds"] is { Length: > 0 } poll
                ? TimeSpan.FromSeconds(double.Parse(poll, NumberStyles.Float, CultureInfo.InvariantCulture))
                : defaults.SweepPollInterval,
        };
    }

    /// <summary>A list from indexed keys (<c>ModelRoots:0</c>) or one value separated by <c>;</c>.</summary>
    private static IEnumerable<string> List(IConfigurationSection section, string key)
    {
        var child = section.GetSection(key);
        var items = child.GetChildren().Select(c => c.Value).Where(v => !string.IsNullOrWhiteSpace(v)).Select(v => v!).ToList();
        if (items.Count == 0 && !string.IsNullOrWhiteSpace(child.Value))
        {
            items = [.. child.Value.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
        }
        return items;
    }

    private static int Int(IConfigurationSection section, string key, int fallback) =>
        section[key] is { Length: > 0 } v ? int.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture) : fallback;
}
