// ROUGE-N and ROUGE-L as Google's rouge-score package computes them (Lin 2004,
// "ROUGE: A Package for Automatic Evaluation of Summaries"; github.com/google-research/
// google-research/tree/master/rouge):
//   tokens(s): lower case, replace every run of characters outside [a-z0-9] by a space,
//     split on whitespace (optionally stem tokens longer than 3 characters).
//   ROUGE-N: overlap = Σ_g min(count_pred(g), count_ref(g)) over n-grams g;
//     P = overlap / max(#pred n-grams, 1), R = overlap / max(#ref n-grams, 1).
//   ROUGE-L: P = LCS(pred, ref) / |pred|, R = LCS / |ref| (all zero when either side is empty).
//   ROUGE-Lsum (summary level): lines are sentences; for each reference sentence r the
//     union of its LCS token positions with every prediction sentence is taken, and each
//     token in that union is a hit while both sides still have an unused count of it;
//     P = hits / #pred tokens, R = hits / #ref tokens.
//   F = 2PR / (P + R), or 0 when P + R = 0.
// With several references the result with the highest F-measure is kept (rouge-score's score_multi).
using System.Text;

namespace TuningPlatform.Evaluation.Metrics;

/// <summary>Precision, recall and F-measure of one ROUGE variant.</summary>
public readonly record struct RougeScore(double Precision, double Recall, double FMeasure)
{
    internal static RougeScore From(double precision, double recall) =>
        new(precision, recall, precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0);
}

/// <summary>ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum, as rouge-score computes them.</summary>
public static class Rouge
{
    /// <summary>rouge-score's tokenisation. <paramref name="stemmer"/> (off by default) is applied to tokens longer than 3 characters.</summary>
    public static IReadOnlyList<string> Tokenize(string text, Func<string, string>? stemmer = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = new List<string>();
        var current = new StringBuilder();
        foreach (var c in text.ToLowerInvariant())
        {
            if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9'))
            {
                current.Append(c);
            }
            else
            {
                Flush();
            }
        }

        Flush();
        return tokens;

        void Flush()
        {
            if (current.Length == 0)
            {
                return;
            }

            var token = current.ToString();
            current.Clear();
            if (stemmer is not null && token.Length > 3)
            {
                token = stemmer(token);
            }

            if (token.Length > 0 && token.All(ch => ch is (>= 'a' and <= 'z') or (>= '0' and <= '9')))
            {
                tokens.Add(token);
            }
        }
    }

    /// <summary>ROUGE-N between a prediction and a reference.</summary>
    public static RougeScore RougeN(string prediction, string reference, int n, Func<string, string>? stemmer = null) =>
        RougeN(Tokenize(prediction, stemmer), Tokenize(reference, stemmer), n);

    /// <summary>ROUGE-N on token lists.</summary>
    public static RougeScore RougeN(IReadOnlyList<string> prediction, IReadOnlyList<string> reference, int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        var predicted = NGrams.Count(prediction, n);
        var target = NGrams.Count(reference, n);
        var overlap = 0;
        foreach (var (gram, count) in predicted)
        {
            overlap += Math.Min(count, target.GetValueOrDefault(gram));
        }

        var predictedTotal = Math.Max(prediction.Count - n + 1, 0);
        var targetTotal = Math.Max(reference.Count - n + 1, 0);
        return RougeScore.From((double)overlap / Math.Max(predictedTotal, 1), (double)overlap / Math.Max(targetTotal, 1));
    }

    /// <summary>Sentence-level ROUGE-L (newlines are ordinary whitespace).</summary>
    public static RougeScore RougeL(string prediction, string reference, Func<string, string>? stemmer = null) =>
        RougeL(Tokenize(prediction, stemmer), Tokenize(reference, stemmer));

    /// <summary>Sentence-level ROUGE-L on token lists.</summary>
    public static RougeScore RougeL(IReadOnlyList<string> prediction, IReadOnlyList<string> reference)
    {
        if (prediction.Count == 0 || reference.Count == 0)
        {
            return default;
        }

        var lcs = LcsTable(reference, prediction)[reference.Count, prediction.Count];
        return RougeScore.From((double)lcs / prediction.Count, (double)lcs / reference.Count);
    }

    /// <summary>Summary-level ROUGE-Lsum: each non-empty line is a sentence.</summary>
    public static RougeScore RougeLsum(string prediction, string reference, Func<string, string>? stemmer = null)
    {
        var predicted = Sentences(prediction, stemmer);
        var target = Sentences(reference, stemmer);
        var m = target.Sum(s => s.Count);
        var n = predicted.Sum(s => s.Count);
        if (m == 0 || n == 0)
        {
            return default;
        }

        var referenceLeft = CountTokens(target);
        var predictionLeft = CountTokens(predicted);
        var hits = 0;
        foreach (var sentence in target)
        {
            var union = new SortedSet<int>();
            foreach (var candidate in predicted)
            {
                union.UnionWith(LcsReferencePositions(sentence, candidate));
            }

            foreach (var position in union)
            {
                var token = sentence[position];
                if (predictionLeft.GetValueOrDefault(token) > 0 && referenceLeft.GetValueOrDefault(token) > 0)
                {
                    hits++;
                    predictionLeft[token]--;
                    referenceLeft[token]--;
                }
            }
        }

        return RougeScore.From((double)hits / n, (double)hits / m);
    }

    /// <summary>The score against the reference with the highest F-measure.</summary>
    public static RougeScore BestOf(IEnumerable<string> references, Func<string, RougeScore> score)
    {
        ArgumentNullException.ThrowIfNull(references);
        var best = default(RougeScore);
        var any = false;
        foreach (var reference in references)
        {
            var candidate = score(reference);
            if (!any || candidate.FMeasure > best.FMeasure)
            {
                best = candidate;
                any = true;
            }
        }

        return best;
    }

    // table[i, j] = LCS length of ref[..i] and pred[..j].
    private static int[,] LcsTable(IReadOnlyList<string> reference, IReadOnlyList<string> prediction)
    {
        var table = new int[reference.Count + 1, prediction.Count + 1];
        for (var i = 1; i <= reference.Count; i++)
        {
            for (var j = 1; j <= prediction.Count; j++)
            {
                table[i, j] = reference[i - 1] == prediction[j - 1]
                    ? table[i - 1, j - 1] + 1
                    : Math.Max(table[i - 1, j], table[i, j - 1]);
            }
        }

        return table;
    }

    // Positions in the reference of one LCS, found by the backtrack rouge-score uses
    // (on a tie, step back in the reference), so that Lsum picks the same tokens.
    private static List<int> LcsReferencePositions(IReadOnlyList<string> reference, IReadOnlyList<string> prediction)
    {
        var table = LcsTable(reference, prediction);
        var positions = new List<int>();
        var i = reference.Count;
        var j = prediction.Count;
        while (i > 0 && j > 0)
        {
            if (reference[i - 1] == prediction[j - 1])
            {
                positions.Add(i - 1);
                i--;
                j--;
            }
            else if (table[i, j - 1] > table[i - 1, j])
            {
                j--;
            }
            else
            {
                i--;
            }
        }

        return positions;
    }

    private static List<IReadOnlyList<string>> Sentences(string text, Func<string, string>? stemmer)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Split('\n')
            .Where(line => line.Length > 0)
            .Select(line => Tokenize(line, stemmer))
            .ToList();
    }

    private static Dictionary<string, int> CountTokens(IEnumerable<IReadOnlyList<string>> sentences)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in sentences.SelectMany(s => s))
        {
            counts[token] = counts.GetValueOrDefault(token) + 1;
        }

        return counts;
    }
}
