using TuningPlatform.Testing;
using System.Globalization;
using System.Text.Json;

namespace TuningPlatform.Evaluation.Tests;

/// <summary>The committed reference fixture, shared assets, and a closeness assertion that names the case.</summary>
internal static class TestData
{
    private static readonly Lazy<JsonDocument> Reference = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "reference_metrics.json"))));

    /// <summary>A top-level array of Fixtures/reference_metrics.json (written by Fixtures/generate_fixtures.py).</summary>
    public static IEnumerable<JsonElement> Cases(string section) => Reference.Value.RootElement.GetProperty(section).EnumerateArray();

    public static string[] Strings(this JsonElement element) => element.EnumerateArray().Select(e => e.GetString()!).ToArray();

    public static double[] Doubles(this JsonElement element) => element.EnumerateArray().Select(e => e.GetDouble()).ToArray();

    /// <summary>Path of a file under ../shared/assets beside the repository; skips the test when absent.</summary>
    public static string RequireSharedAsset(params string[] parts) => RepositoryPaths.RequireSharedAsset(parts);

    /// <summary>Fails unless |actual − expected| ≤ atol + rtol·|expected|, naming the case.</summary>
    public static void AssertClose(double expected, double actual, double atol, string what, double rtol = 0)
    {
        var diff = Math.Abs(actual - expected);
        if (!(diff <= atol + rtol * Math.Abs(expected)))
        {
            Assert.Fail(string.Create(CultureInfo.InvariantCulture, $"{what}: actual {actual:R}, expected {expected:R} (|diff| {diff:g3} > atol {atol:g3} + rtol {rtol:g3})"));
        }
    }
}
