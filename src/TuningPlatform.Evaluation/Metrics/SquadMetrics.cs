// Exact match and token F1 as the official SQuAD evaluation script computes them
// (evaluate-v2.0.py, Rajpurkar et al. 2016/2018):
//   normalize(s) = collapse_whitespace(remove_articles(remove_punctuation(lower(s))))
//     remove_punctuation drops the 32 ASCII characters of Python's string.punctuation;
//     remove_articles replaces the whole words a, an, the with a space.
//   exact_match(p, g) = 1 if normalize(p) == normalize(g) else 0
//   token_f1(p, g): P = |common| / |tokens(p)|, R = |common| / |tokens(g)|, F1 = 2PR / (P + R),
//     where common is the multiset intersection of the whitespace tokens of the normalised
//     strings; F1 = 0 when nothing is common, and 1 when both sides normalise to nothing
//     (the v2.0 rule for no-answer questions).
// With several references the score is the maximum over them (SQuAD's metric_max_over_ground_truths).
using System.Text;
using System.Text.RegularExpressions;

namespace TuningPlatform.Evaluation.Metrics;

/// <summary>SQuAD exact match and token-level F1 with SQuAD's answer normalisation.</summary>
public static partial class SquadMetrics
{
    /// <summary>Python's <c>string.punctuation</c>: every printable ASCII character that is not a letter, digit or space.</summary>
    public const string AsciiPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    /// <summary>Lower case, remove ASCII punctuation, remove the articles a/an/the, collapse whitespace.</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var builder = new StringBuilder(text.Length);
        foreach (var c in text.ToLowerInvariant())
        {
            if (!AsciiPunctuation.Contains(c))
            {
                builder.Append(c);
            }
        }

        var withoutArticles = Articles().Replace(builder.ToString(), " ");
        return string.Join(' ', Tokens(withoutArticles));
    }

    /// <summary>1 when the normalised strings are equal, else 0.</summary>
    public static double ExactMatch(string prediction, string reference) =>
        Normalize(prediction) == Normalize(reference) ? 1.0 : 0.0;

    /// <summary>Maximum exact match over the references (0 when there are none).</summary>
    public static double ExactMatch(string prediction, IEnumerable<string> references) =>
        MaxOver(references, reference => ExactMatch(prediction, reference));

    /// <summary>Token F1 between the normalised strings.</summary>
    public static double TokenF1(string prediction, string reference)
    {
        var predicted = Tokens(Normalize(prediction));
        var gold = Tokens(Normalize(reference));
        if (predicted.Length == 0 || gold.Length == 0)
        {
            return predicted.Length == gold.Length ? 1.0 : 0.0;
        }

        var goldCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in gold)
        {
            goldCounts[token] = goldCounts.GetValueOrDefault(token) + 1;
        }

        var common = 0;
        foreach (var token in predicted)
        {
            if (goldCounts.TryGetValue(token, out var left) && left > 0)
            {
                goldCounts[token] = left - 1;
                common++;
            }
        }

        if (common == 0)
        {
            return 0.0;
        }

        var precision = (double)common / predicted.Length;
        var recall = (double)common / gold.Length;
        return 2 * precision * recall / (precision + recall);
    }

    /// <summary>Maximum token F1 over the references (0 when there are none).</summary>
    public static double TokenF1(string prediction, IEnumerable<string> references) =>
        MaxOver(references, reference => TokenF1(prediction, reference));

    private static string[] Tokens(string text) =>
        text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    private static double MaxOver(IEnumerable<string> references, Func<string, double> score)
    {
        ArgumentNullException.ThrowIfNull(references);
        var best = 0.0;
        foreach (var reference in references)
        {
            best = Math.Max(best, score(reference));
        }

        return best;
    }

    [GeneratedRegex(@"\b(a|an|the)\b")]
    private static partial Regex Articles();
}
