using System.Globalization;

namespace TuningPlatform.CurationService;

/// <summary>
/// Settings of the curation service (section <c>Curation</c>, environment <c>Curation__…</c>), plus the data
/// directory <c>TUNING_DATA_DIR</c> that the AppHost injects (default <c>.data/</c>).
/// </summary>
public sealed record CurationOptions
{
    public required string DataDirectory { get; init; }

    /// <summary>Folders ImportDataset may read from; empty = imports are refused.</summary>
    public IReadOnlyList<string> ImportRoots { get; init; } = [];

    /// <summary>Folders whose sub-folders are models (a <c>tokenizer.json</c>, optionally <c>config.json</c>) named by their folder name.</summary>
    public IReadOnlyList<string> TokenizerRoots { get; init; } = [];

    /// <summary>The tokenizer model used when a request names none; empty = none.</summary>
    public string DefaultTokenizer { get; init; } = "";

    /// <summary>Context length when a model has no config.json with max_position_embeddings.</summary>
    public int DefaultContextLength { get; init; } = 2048;

    public long MaxUploadBytes { get; init; } = 2L * 1024 * 1024 * 1024;

    public int MaxLineBytes { get; init; } = 8 * 1024 * 1024;

    public long MaxExamples { get; init; } = 10_000_000;

    public long MaxJsonArrayBytes { get; init; } = 512L * 1024 * 1024;

    public static CurationOptions FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection("Curation");
        var dataDirectory = Path.GetFullPath(configuration["TUNING_DATA_DIR"] is { Length: > 0 } dir ? dir : ".data");
        return new CurationOptions
        {
            DataDirectory = dataDirectory,
            ImportRoots = List(section, "ImportRoots").Select(Path.GetFullPath).ToList(),
            TokenizerRoots = List(section, "TokenizerRoots").Select(Path.GetFullPath).DefaultIfEmpty(Path.Combine(dataDirectory, "models")).ToList(),
            DefaultTokenizer = section["DefaultTokenizer"] ?? "",
            DefaultContextLength = Int(section, "DefaultContextLength", 2048),
            MaxUploadBytes = Long(section, "MaxUploadBytes", 2L * 1024 * 1024 * 1024),
            MaxLineBytes = Int(section, "MaxLineBytes", 8 * 1024 * 1024),
            MaxExamples = Long(section, "MaxExamples", 10_000_000),
            MaxJsonArrayBytes = Long(section, "MaxJsonArrayBytes", 512L * 1024 * 1024),
        };
    }

    /// <summary>A list from indexed keys (<c>ImportRoots:0</c>) or one value separated by <c>;</c>.</summary>
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

    private static long Long(IConfigurationSection section, string key, long fallback) =>
        section[key] is { Length: > 0 } v ? long.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture) : fallback;
}
