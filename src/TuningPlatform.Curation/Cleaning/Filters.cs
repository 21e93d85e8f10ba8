using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>Keeps the examples a predicate accepts.</summary>
public static class Filters
{
    public static (List<Example> Examples, StepOutcome Outcome) Keep(IReadOnlyList<Example> examples, Func<Example, bool> keep)
    {
        var result = examples.Where(keep).ToList();
        return (result, new StepOutcome { Before = examples.Count, After = result.Count });
    }

    /// <summary>User/assistant turns within [min, max]; 0 = no bound.</summary>
    public static Func<Example, bool> TurnCount(int min, int max) =>
        e => e.IsText || (e.TurnCount >= min && (max == 0 || e.TurnCount <= max));

    /// <summary>Token count within [min, max]; 0 = no lower bound.</summary>
    public static Func<Example, bool> TokenLength(Func<Example, int> count, int min, int max) =>
        e =>
        {
            var tokens = count(e);
            return tokens >= min && tokens <= max;
        };

    /// <summary>Detected language in the list (or undetermined, when kept).</summary>
    public static Func<Example, bool> Language(IReadOnlyCollection<string> languages, double minConfidence, bool keepUndetermined) =>
        e =>
        {
            var (language, confidence) = LanguageDetector.Detect(string.Join("\n", e.Texts()));
            if (language == LanguageDetector.Undetermined || confidence < minConfidence)
            {
                return keepUndetermined;
            }
            return languages.Contains(language, StringComparer.OrdinalIgnoreCase);
        };
}
