using TuningPlatform.Testing;

namespace TuningPlatform.CurationService.Tests.Infrastructure;

/// <summary>Shared assets (../shared/assets relative to the repository root); tests skip with a message when absent.</summary>
internal static class Assets
{
    public static string RepositoryRoot => RepositoryPaths.Root;

    public static string Dataset(string relative) => Require(Path.Combine(RepositoryRoot, "..", "shared", "assets", "datasets", relative));

    public static string TokenizersRoot => Require(Path.Combine(RepositoryRoot, "..", "shared", "assets", "tokenizers"));

    private static string Require(string path)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full) && !Directory.Exists(full))
        {
            Assert.Skip($"shared asset {full} is absent (tests read ../shared/assets next to the repository)");
        }
        return full;
    }
}
