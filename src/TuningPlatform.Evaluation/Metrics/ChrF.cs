// chrF as sacreBLEU computes it with its defaults (Popović 2015, "chrF: character n-gram
// F-score for automatic MT evaluation"; sacreBLEU's CHRF with char_order 6, word_order 0,
// beta 2, whitespace dropped, no eps smoothing):
//   for n = 1..6, with whitespace removed and characters as Unicode code points:
//     hyp_n = #hyp n-grams, ref_n = #ref n-grams, match_n = Σ_g min(count_hyp(g), count_ref(g));
//   statistics add up over the segments of a corpus (for several references, each segment
//     keeps the reference with the best segment chrF);
//   P = mean over the orders with hyp_n > 0 and ref_n > 0 of match_n / hyp_n, R likewise;
//   chrF = 100 · (1 + β²)·P·R / (β²·P + R), or 0 when P + R = 0.
using System.Text;

namespace TuningPlatform.Evaluation.Metrics;

/// <summary>chrF with sacreBLEU's defaults; statistics are [hyp_n, ref_n, match_n] per order and add up over a corpus.</summary>
public static class ChrF
{
    /// <summary>Character n-gram order (sacreBLEU's default 6).</summary>
    public const int CharOrder = 6;

    /// <summary>Recall weight (sacreBLEU's default 2: chrF2).</summary>
    public const double Beta = 2.0;

    /// <summary>The statistics of one segment: 3 × <see cref="CharOrder"/> counts, against the best of its references.</summary>
    public static double[] SegmentStatistics(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(references);
        if (references.Count == 0)
        {
            throw new ArgumentException("chrF needs at least one reference per segment.", nameof(references));
        }

        var hyp = CharNGrams(hypothesis);
        double[]? best = null;
        var bestScore = -1.0;
        foreach (var reference in references)
        {
            var refGrams = CharNGrams(reference);
            var statistics = new double[3 * CharOrder];
            for (var n = 0; n < CharOrder; n++)
            {
                var match = 0;
                foreach (var (gram, count) in hyp[n])
                {
                    match += Math.Min(count, refGrams[n].GetValueOrDefault(gram));
                }

                statistics[3 * n] = hyp[n].Values.Sum();
                statistics[3 * n + 1] = refGrams[n].Values.Sum();
                statistics[3 * n + 2] = match;
            }

            var score = FromStatistics(statistics);
            if (score > bestScore)
            {
                bestScore = score;
                best = statistics;
            }
        }

        return best!;
    }

    /// <summary>Corpus chrF (0–100).</summary>
    public static double Corpus(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references)
    {
        ArgumentNullException.ThrowIfNull(hypotheses);
        ArgumentNullException.ThrowIfNull(references);
        if (hypotheses.Count != references.Count)
        {
            throw new ArgumentException($"{hypotheses.Count} hypotheses but {references.Count} reference sets; chrF pairs them one to one.", nameof(references));
        }

        return FromStatistics(Sum(hypotheses.Select((h, i) => SegmentStatistics(h, references[i])).ToList(), default));
    }

    /// <summary>Sentence chrF (0–100).</summary>
    public static double Sentence(string hypothesis, IReadOnlyList<string> references) =>
        FromStatistics(SegmentStatistics(hypothesis, references));

    /// <summary>chrF from summed statistics.</summary>
    public static double FromStatistics(ReadOnlySpan<double> statistics)
    {
        var factor = Beta * Beta;
        double precision = 0, recall = 0;
        var effectiveOrder = 0;
        for (var n = 0; n < statistics.Length / 3; n++)
        {
            var (hyp, reference, match) = (statistics[3 * n], statistics[3 * n + 1], statistics[3 * n + 2]);
            if (hyp > 0 && reference > 0)
            {
                precision += match / hyp;
                recall += match / reference;
                effectiveOrder++;
            }
        }

        if (effectiveOrder == 0)
        {
            return 0.0;
        }

        precision /= effectiveOrder;
        recall /= effectiveOrder;
        return precision + recall > 0 ? 100 * (1 + factor) * precision * recall / (factor * precision + recall) : 0.0;
    }

    /// <summary>Sums segment statistics, segment s counted weights[s] times; empty weights count each once.</summary>
    public static double[] Sum(IReadOnlyList<double[]> segments, ReadOnlySpan<int> weights)
    {
        var sum = new double[3 * CharOrder];
        for (var s = 0; s < segments.Count; s++)
        {
            var w = weights.IsEmpty ? 1 : weights[s];
            for (var k = 0; k < sum.Length; k++)
            {
                sum[k] += w * segments[s][k];
            }
        }

        return sum;
    }

    // Counts of character n-grams of orders 1..CharOrder after removing whitespace (as Python's
    // ''.join(s.split())), over code points so that characters outside the BMP count once.
    private static Dictionary<string, int>[] CharNGrams(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var characters = new List<string>();
        foreach (var rune in text.EnumerateRunes())
        {
            if (!Rune.IsWhiteSpace(rune))
            {
                characters.Add(rune.ToString());
            }
        }

        var grams = new Dictionary<string, int>[CharOrder];
        for (var n = 1; n <= CharOrder; n++)
        {
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var start = 0; start + n <= characters.Count; start++)
            {
                var gram = string.Concat(characters.GetRange(start, n));
                counts[gram] = counts.GetValueOrDefault(gram) + 1;
            }

            grams[n - 1] = counts;
        }

        return grams;
    }
}
