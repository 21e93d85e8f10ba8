namespace TuningPlatform.Testing;

/// <summary>
/// Where the repository and its neighbour ../shared/assets are, for every test project (linked in by
/// tests/Directory.Build.props): the repository root is the nearest folder above the test binaries that
/// holds TuningPlatform.sln.
/// </summary>
internal static class RepositoryPaths
{
    private static readonly Lazy<string> LazyRoot = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TuningPlatform.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("TuningPlatform.sln not found above " + AppContext.BaseDirectory);
    });

    /// <summary>The repository root.</summary>
    public static string Root => LazyRoot.Value;

    /// <summary>The full path of <c>../shared/assets/&lt;parts&gt;</c>, whether or not it exists.</summary>
    public static string SharedAsset(params string[] parts) => Path.GetFullPath(Path.Combine([Root, "..", "shared", "assets", .. parts]));

    /// <summary>The shared asset's path; skips the calling test, naming the path, when it is absent.</summary>
    public static string RequireSharedAsset(params string[] parts)
    {
        var path = SharedAsset(parts);
        if (!File.Exists(path) && !Directory.Exists(path))
        {
            Assert.Skip($"shared asset {path} is absent: tests read ../shared/assets beside the repository.");
        }
        return path;
    }
}
