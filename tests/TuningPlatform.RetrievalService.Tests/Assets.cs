using TuningPlatform.Testing;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>The shared test documents (../shared/assets relative to the repository root) and scratch folders.</summary>
internal static class Assets
{
    public static string? PythonDocs => Existing(Path.Combine("corpora", "python-docs", "library"));

    public static string RequirePythonDocs() =>
        PythonDocs ?? throw Skip("../shared/assets/corpora/python-docs/library is absent; these tests need the shared assets.");

    public static string RequireGorilla() =>
        Existing(Path.Combine("datasets", "gorilla_apibench")) ?? throw Skip("../shared/assets/datasets/gorilla_apibench is absent; these tests need the shared assets.");

    /// <summary>A fresh empty folder under the system temp folder; delete it in finally.</summary>
    public static string TempFolder()
    {
        var path = Path.Combine(Path.GetTempPath(), "tp-retrieval-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    public static void DeleteFolder(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }

    private static string? Existing(string relative)
    {
        var path = RepositoryPaths.SharedAsset(relative);
        return Directory.Exists(path) ? path : null;
    }

    private static Exception Skip(string message)
    {
        Assert.Skip(message);
        return new InvalidOperationException(message);
    }
}
