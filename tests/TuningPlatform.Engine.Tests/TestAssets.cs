using TuningPlatform.Testing;

namespace TuningPlatform.Engine.Tests;

/// <summary>Locates ../shared/assets beside the repository and skips a test with a clear message when absent.</summary>
internal static class TestAssets
{
    /// <summary>The repository root (the directory holding TuningPlatform.sln).</summary>
    public static string RepoRoot => RepositoryPaths.Root;

    /// <summary>Path of a shared asset; skips the calling test when it does not exist.</summary>
    public static string Require(params string[] parts)
    {
        var path = Path.GetFullPath(Path.Combine([RepoRoot, "..", "shared", "assets", .. parts]));
        if (!File.Exists(path) && !Directory.Exists(path))
        {
            Assert.Skip($"shared asset not found: {path}. Tests that need real models and tokenizers read ../shared/assets beside the repository (see README).");
        }

        return path;
    }

    /// <summary>Path of a committed fixture under tests/TuningPlatform.Engine.Tests/Fixtures.</summary>
    public static string Fixture(string name) =>
        Path.Combine(RepoRoot, "tests", "TuningPlatform.Engine.Tests", "Fixtures", name);
}
