using System.Globalization;

namespace TuningPlatform.EvaluationService;

/// <summary>
/// Settings of the evaluation service (section <c>Evaluation</c>, environment <c>Evaluation__…</c>), the data
/// directory <c>TUNING_DATA_DIR</c> and the addresses of the services it calls (<c>services:&lt;name&gt;:grpc:0</c>,
/// injected by the AppHost).
/// </summary>
public sealed record EvaluationOptions
{
    /// <summary>Configuration key of the curation service's address.</summary>
    public const string CurationAddressKey = "services:curation:grpc:0";

    /// <summary>Configuration key of the inference service's address.</summary>
    public const string InferenceAddressKey = "services:inference:grpc:0";

    /// <summary>Configuration key of the retrieval service's address.</summary>
    public const string RetrievalAddressKey = "services:retrieval:grpc:0";

    public required string DataDirectory { get; init; }

    /// <summary>Where reports and run definitions live: <c>&lt;data&gt;/evaluation</c>.</summary>
    public string EvaluationDirectory => Path.Combine(DataDirectory, "evaluation");

    public string CurationAddress { get; init; } = "";

    public string InferenceAddress { get; init; } = "";

    public string RetrievalAddress { get; init; } = "";

    /// <summary>API key sent to the other services (<c>Grpc:ApiKey</c>, the platform's shared key); empty = none.</summary>
    public string ApiKey { get; init; } = "";

    /// <summary>Evaluations run at once in this process (one job worker each).</summary>
    public int Workers { get; init; } = 2;

    /// <summary>Non-terminal evaluations accepted before CreateEvaluation answers RESOURCE_EXHAUSTED.</summary>
    public int MaxPendingEvaluations { get; init; } = 100;

    /// <summary>Every this many milliseconds a running evaluation writes its partial report and a progress event.</summary>
    public int ProgressIntervalMs { get; init; } = 1000;

    public static EvaluationOptions FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection("Evaluation");
        var dataDirectory = Path.GetFullPath(configuration["TUNING_DATA_DIR"] is { Length: > 0 } dir ? dir : ".data");
        var options = new EvaluationOptions
        {
            DataDirectory = dataDirectory,
            CurationAddress = configuration[CurationAddressKey] ?? "",
            InferenceAddress = configuration[InferenceAddressKey] ?? "",
            RetrievalAddress = configuration[RetrievalAddressKey] ?? "",
            ApiKey = configuration["Grpc:ApiKey"] ?? "",
            Workers = Int(section, "Workers", 2),
            MaxPendingEvaluations = Int(section, "MaxPendingEvaluations", 100),
            ProgressIntervalMs = Int(section, "ProgressIntervalMs", 1000),
        };
        if (options.Workers is < 1 or > 64)
        {
            throw new InvalidOperationException($"Evaluation:Workers must be in [1, 64], got {options.Workers}.");
        }
        return options;
    }

    private static int Int(IConfigurationSection section, string key, int fallback) =>
        section[key] is { Length: > 0 } v ? int.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture) : fallback;
}
