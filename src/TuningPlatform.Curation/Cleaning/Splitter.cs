using System.Diagnostics;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>
/// Seeded train/validation/test assignment, by fractions or counts, optionally stratified by label, then a
/// leakage pass: an example whose exact (or near-) duplicate sits in another split is moved into the split
/// of its cluster's first member, so nothing is evaluated on what was trained on.
/// </summary>
public sealed record Splitter(double TrainFraction, double ValidationFraction, double TestFraction, long? ValidationCount, long? TestCount,
    long Seed, bool StratifyByLabel, double LeakageNearDuplicateThreshold)
{
    public (List<Example> Examples, StepOutcome Outcome) Apply(IReadOnlyList<Example> examples, CancellationToken cancellationToken = default)
    {
        var watch = Stopwatch.StartNew();
        var splits = new Split[examples.Count];
        var groups = StratifyByLabel
            ? examples.Select((e, i) => (e.Label, i)).GroupBy(p => p.Label, p => p.i).Select(g => g.ToList())
            : [Enumerable.Range(0, examples.Count).ToList()];
        foreach (var group in groups)
        {
            AssignInRankOrder([.. group.OrderBy(i => RankOf(examples[i]))], examples.Count, splits);
        }
        var leaks = FixLeaks(examples, splits, cancellationToken);
        var result = examples.Select((e, i) => e with { Split = splits[i] }).ToList();
        var counts = result.GroupBy(e => e.Split).ToDictionary(g => g.Key, g => g.LongCount());
        return (result, new StepOutcome { Before = examples.Count, After = result.Count, SplitCounts = counts, LeaksFixed = leaks, ElapsedMs = watch.ElapsedMilliseconds });
    }

    /// <summary>
    /// The splits of examples, given each one's <see cref="RankOf"/> in input order, without stratification:
    /// what <see cref="Apply"/> assigns before its leakage pass, computed from the ranks alone so that a
    /// streaming pass can split a version that does not fit in memory.
    /// </summary>
    public Split[] Assign(IReadOnlyList<ulong> ranks)
    {
        var splits = new Split[ranks.Count];
        var order = new int[ranks.Count];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }
        var keys = ranks.ToArray();
        // A stable order (ties keep input order), as OrderBy gives Apply.
        Array.Sort(keys, order, Comparer<ulong>.Default);
        for (var start = 0; start < keys.Length;)
        {
            var end = start + 1;
            while (end < keys.Length && keys[end] == keys[start])
            {
                end++;
            }
            Array.Sort(order, start, end - start);
            start = end;
        }
        AssignInRankOrder(order, ranks.Count, splits);
        return splits;
    }

    private void AssignInRankOrder(IReadOnlyList<int> order, long total, Split[] splits)
    {
        var n = order.Count;
        long validation, test;
        if (ValidationCount is { } vc && TestCount is { } tc)
        {
            // Counts are for the whole version: a stratum gets its proportional share.
            validation = (long)Math.Round(vc * (double)n / Math.Max(total, 1));
            test = (long)Math.Round(tc * (double)n / Math.Max(total, 1));
        }
        else
        {
            validation = (long)Math.Round(ValidationFraction * n);
            test = (long)Math.Round(TestFraction * n);
        }
        validation = Math.Min(validation, n);
        test = Math.Min(test, n - validation);
        for (var k = 0; k < n; k++)
        {
            splits[order[k]] = k < test ? Split.Test : k < test + validation ? Split.Validation : Split.Train;
        }
    }

    private long FixLeaks(IReadOnlyList<Example> examples, Split[] splits, CancellationToken cancellationToken)
    {
        int[] roots;
        if (LeakageNearDuplicateThreshold > 0)
        {
            roots = new NearDuplicateDetector(LeakageNearDuplicateThreshold).FindClusters(examples.Select(e => e.FullText()).ToList(), cancellationToken);
        }
        else
        {
            var first = new Dictionary<UInt128, int>();
            roots = new int[examples.Count];
            for (var i = 0; i < examples.Count; i++)
            {
                var key = ExactDeduplicator.Fingerprint(DedupKeys.Of(examples[i], DedupKey.FullConversation, true));
                roots[i] = first.TryGetValue(key, out var root) ? root : first[key] = i;
            }
        }
        long moved = 0;
        for (var i = 0; i < examples.Count; i++)
        {
            if (splits[i] != splits[roots[i]])
            {
                splits[i] = splits[roots[i]];
                moved++;
            }
        }
        return moved;
    }

    /// <summary>Cross-split duplicates: examples whose exact duplicate (case and whitespace ignored) sits in another split.</summary>
    public static long CountCrossSplitDuplicates(IEnumerable<Example> examples)
    {
        var firstSplit = new Dictionary<UInt128, Split>();
        long count = 0;
        foreach (var e in examples)
        {
            var key = ExactDeduplicator.Fingerprint(DedupKeys.Of(e, DedupKey.FullConversation, true));
            if (firstSplit.TryGetValue(key, out var split))
            {
                if (split != e.Split)
                {
                    count++;
                }
            }
            else
            {
                firstSplit[key] = e.Split;
            }
        }
        return count;
    }

    /// <summary>The seeded rank that orders examples for assignment: a mix of the example's id and the seed.</summary>
    public ulong RankOf(Example example)
    {
        var id = ExampleCodec.ExampleId(example);
        var h = Convert.ToUInt64(id[..16], 16) ^ (ulong)Seed * 0x9E3779B97F4A7C15UL;
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
        return h ^ (h >> 31);
    }
}
