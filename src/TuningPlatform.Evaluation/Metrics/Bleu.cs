// BLEU as sacreBLEU computes it with its defaults (Papineni et al. 2002; Post 2018,
// "A Call for Clarity in Reporting BLEU Scores"; github.com/mjpost/sacrebleu):
//   tokenise each hypothesis and reference with mteval-v13a (Tokenizer13a below), case kept;
//   for n = 1..4: correct_n = Σ_segments Σ_g min(count_hyp(g), max_refs count_ref(g)),
//                 total_n   = Σ_segments #hyp n-grams;
//   c = Σ hyp lengths, r = Σ the reference length closest to each hyp length (ties: the shorter);
//   BP = 1 if c ≥ r, else exp(1 − r/c) (0 when c = 0);
//   p_n = 100·correct_n / total_n; when correct_n = 0 the `exp` smoothing of mteval uses
//     p_n = 100 / (2^k · total_n), k counting the zero orders so far;
//   BLEU = BP · exp(Σ_{n≤N'} ln p_n / N'), N' = 4, or 0 when some total_n = 0.
// Sentence BLEU (sacrebleu.sentence_bleu) is the same on one segment with effective order:
// N' = the highest n with total_n > 0.
// Scores are on sacreBLEU's 0–100 scale.
using System.Text.RegularExpressions;

namespace TuningPlatform.Evaluation.Metrics;

/// <summary>Sufficient statistics of BLEU for one or more segments; they add up over a corpus.</summary>
public sealed record BleuStatistics(double HypothesisLength, double ReferenceLength, double[] Correct, double[] Total)
{
    /// <summary>Sums segment statistics, segment s counted weights[s] times (bootstrap resampling); empty weights count each once.</summary>
    public static BleuStatistics Sum(IReadOnlyList<BleuStatistics> segments, ReadOnlySpan<int> weights)
    {
        var order = segments.Count > 0 ? segments[0].Correct.Length : Bleu.MaxOrder;
        var correct = new double[order];
        var total = new double[order];
        double hypothesis = 0, reference = 0;
        for (var s = 0; s < segments.Count; s++)
        {
            var w = weights.IsEmpty ? 1 : weights[s];
            if (w == 0)
            {
                continue;
            }

            var segment = segments[s];
            hypothesis += w * segment.HypothesisLength;
            reference += w * segment.ReferenceLength;
            for (var n = 0; n < order; n++)
            {
                correct[n] += w * segment.Correct[n];
                total[n] += w * segment.Total[n];
            }
        }

        return new BleuStatistics(hypothesis, reference, correct, total);
    }
}

/// <summary>A BLEU score with its parts, as sacreBLEU reports them.</summary>
public sealed record BleuScore(double Score, double[] Precisions, double BrevityPenalty, double HypothesisLength, double ReferenceLength)
{
    /// <summary>Hypothesis length over reference length.</summary>
    public double Ratio => ReferenceLength > 0 ? HypothesisLength / ReferenceLength : 0;
}

/// <summary>Corpus and sentence BLEU with sacreBLEU's defaults (13a tokenisation, max order 4, exp smoothing).</summary>
public static partial class Bleu
{
    /// <summary>Highest n-gram order (sacreBLEU's default).</summary>
    public const int MaxOrder = 4;

    /// <summary>mteval-v13a tokenisation, as sacreBLEU's Tokenizer13a.</summary>
    public static string Tokenize13a(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        line = line.Replace("<skipped>", "", StringComparison.Ordinal)
            .Replace("-\n", "", StringComparison.Ordinal)
            .Replace("\n", " ", StringComparison.Ordinal);
        if (line.Contains('&', StringComparison.Ordinal))
        {
            line = line.Replace("&quot;", "\"", StringComparison.Ordinal)
                .Replace("&amp;", "&", StringComparison.Ordinal)
                .Replace("&lt;", "<", StringComparison.Ordinal)
                .Replace("&gt;", ">", StringComparison.Ordinal);
        }

        line = $" {line} ";
        line = Punctuation().Replace(line, " $1 ");
        line = PeriodCommaAfterNonDigit().Replace(line, "$1 $2 ");
        line = PeriodCommaBeforeNonDigit().Replace(line, " $1 $2");
        line = DashAfterDigit().Replace(line, "$1 $2 ");
        return string.Join(' ', line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    /// <summary>The statistics of one segment against its references (each tokenised with 13a).</summary>
    public static BleuStatistics SegmentStatistics(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(references);
        if (references.Count == 0)
        {
            throw new ArgumentException("BLEU needs at least one reference per segment.", nameof(references));
        }

        var hyp = Words(hypothesis);
        var refs = references.Select(Words).ToList();
        var closest = ClosestReferenceLength(hyp.Length, refs.Select(r => r.Length));
        var correct = new double[MaxOrder];
        var total = new double[MaxOrder];
        for (var n = 1; n <= MaxOrder; n++)
        {
            var maxReference = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var reference in refs)
            {
                foreach (var (gram, count) in NGrams.Count(reference, n))
                {
                    maxReference[gram] = Math.Max(count, maxReference.GetValueOrDefault(gram));
                }
            }

            foreach (var (gram, count) in NGrams.Count(hyp, n))
            {
                total[n - 1] += count;
                correct[n - 1] += Math.Min(count, maxReference.GetValueOrDefault(gram));
            }
        }

        return new BleuStatistics(hyp.Length, closest, correct, total);
    }

    /// <summary>Corpus BLEU: one hypothesis per segment, and for each segment its references.</summary>
    public static BleuScore Corpus(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references)
    {
        ArgumentNullException.ThrowIfNull(hypotheses);
        ArgumentNullException.ThrowIfNull(references);
        if (hypotheses.Count != references.Count)
        {
            throw new ArgumentException($"{hypotheses.Count} hypotheses but {references.Count} reference sets; BLEU pairs them one to one.", nameof(references));
        }

        var segments = hypotheses.Select((h, i) => SegmentStatistics(h, references[i])).ToList();
        return FromStatistics(BleuStatistics.Sum(segments, default), effectiveOrder: false);
    }

    /// <summary>Sentence BLEU (sacrebleu.sentence_bleu: exp smoothing, effective order).</summary>
    public static BleuScore Sentence(string hypothesis, IReadOnlyList<string> references) =>
        FromStatistics(SegmentStatistics(hypothesis, references), effectiveOrder: true);

    /// <summary>BLEU from summed statistics (sacreBLEU's compute_bleu with smooth_method='exp').</summary>
    public static BleuScore FromStatistics(BleuStatistics statistics, bool effectiveOrder)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        var c = statistics.HypothesisLength;
        var r = statistics.ReferenceLength;
        var brevityPenalty = c < r ? (c > 0 ? Math.Exp(1 - r / c) : 0.0) : 1.0;
        var order = statistics.Correct.Length;
        var precisions = new double[order];
        var usedOrder = order;
        var smoothing = 1.0;
        for (var n = 0; n < order; n++)
        {
            if (statistics.Total[n] == 0)
            {
                // No n-grams of this order: with effective order the score uses the lower orders only.
                if (effectiveOrder)
                {
                    usedOrder = n;
                }

                break;
            }

            if (statistics.Correct[n] == 0)
            {
                smoothing *= 2;
                precisions[n] = 100.0 / (smoothing * statistics.Total[n]);
            }
            else
            {
                precisions[n] = 100.0 * statistics.Correct[n] / statistics.Total[n];
            }
        }

        var score = 0.0;
        if (usedOrder > 0 && precisions.Take(usedOrder).All(p => p > 0))
        {
            score = brevityPenalty * Math.Exp(precisions.Take(usedOrder).Sum(Math.Log) / usedOrder);
        }

        return new BleuScore(score, precisions, brevityPenalty, c, r);
    }

    private static string[] Words(string text) =>
        Tokenize13a(text).Split(' ', StringSplitOptions.RemoveEmptyEntries);

    private static int ClosestReferenceLength(int hypothesisLength, IEnumerable<int> referenceLengths)
    {
        var closest = -1;
        var closestDiff = int.MaxValue;
        foreach (var length in referenceLengths)
        {
            var diff = Math.Abs(hypothesisLength - length);
            if (diff < closestDiff || (diff == closestDiff && length < closest))
            {
                closestDiff = diff;
                closest = length;
            }
        }

        return closest;
    }

    // Punctuation and symbols: { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
    [GeneratedRegex(@"([\{-\~\[-\` -\&\(-\+\:-\@\/])")]
    private static partial Regex Punctuation();

    [GeneratedRegex(@"([^0-9])([\.,])")]
    private static partial Regex PeriodCommaAfterNonDigit();

    [GeneratedRegex(@"([\.,])([^0-9])")]
    private static partial Regex PeriodCommaBeforeNonDigit();

    [GeneratedRegex(@"([0-9])(-)")]
    private static partial Regex DashAfterDigit();
}
