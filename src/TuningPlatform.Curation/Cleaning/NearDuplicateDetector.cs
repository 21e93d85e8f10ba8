using System.Diagnostics;
using System.Runtime.InteropServices;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>
/// Near-duplicate clusters by MinHash over word shingles and LSH banding (Broder 1997; Leskovec et al.,
/// Mining of Massive Datasets ch. 3). Each document gets a signature of <c>k</c> minimum hashes; two
/// documents share a band bucket with probability 1 − (1 − J^r)^b, so only bucket mates are compared,
/// and a candidate pair is kept when its signatures agree on at least <see cref="Threshold"/> of the slots
/// (the estimate of their Jaccard similarity). Near-linear in the number of documents: no all-pairs pass.
/// </summary>
public sealed record NearDuplicateDetector(double Threshold = 0.8, int NumPermutations = 128, int ShingleWords = 5, int Bands = 0, long Seed = 1)
{
    /// <summary>The (bands, rows) used: explicit bands, or the pair whose S-curve midpoint (1/b)^(1/r) sits a little below the threshold, for recall.</summary>
    public (int Bands, int Rows) BandLayout()
    {
        if (Bands > 0)
        {
            return (Bands, Math.Max(1, NumPermutations / Bands));
        }
        var target = Threshold * 0.85;
        var best = (Bands: 1, Rows: NumPermutations);
        var bestError = double.MaxValue;
        for (var b = 1; b <= NumPermutations; b++)
        {
            var r = NumPermutations / b;
            var error = Math.Abs(Math.Pow(1.0 / b, 1.0 / r) - target);
            if (error < bestError)
            {
                bestError = error;
                best = (b, r);
            }
        }
        return best;
    }

    /// <summary>For each document, the index of its cluster's first member (itself when it is first or alone).</summary>
    public int[] FindClusters(IReadOnlyList<string> texts, CancellationToken cancellationToken = default)
    {
        var (bands, rows) = BandLayout();
        var (a, b) = Coefficients();
        var signatures = new uint[texts.Count][];
        for (var i = 0; i < texts.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            signatures[i] = Signature(texts[i], a, b);
        }
        var parent = Enumerable.Range(0, texts.Count).ToArray();
        for (var band = 0; band < bands; band++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var buckets = new Dictionary<ulong, int>(texts.Count);
            for (var i = 0; i < texts.Count; i++)
            {
                var key = BandHash(signatures[i], band * rows, rows);
                ref var first = ref CollectionsMarshal.GetValueRefOrAddDefault(buckets, key, out var exists);
                if (!exists)
                {
                    first = i;
                    continue;
                }
                if (Find(parent, first) != Find(parent, i) && Similarity(signatures[first], signatures[i]) >= Threshold)
                {
                    Union(parent, first, i);
                }
            }
        }
        var roots = new int[texts.Count];
        for (var i = 0; i < texts.Count; i++)
        {
            roots[i] = Find(parent, i);
        }
        return roots;
    }

    /// <summary>Removes every cluster member but the first.</summary>
    public (List<Example> Examples, StepOutcome Outcome) Apply(IReadOnlyList<Example> examples, DedupKey key, CancellationToken cancellationToken = default)
    {
        var watch = Stopwatch.StartNew();
        var roots = FindClusters(examples.Select(e => DedupKeys.Of(e, key, false)).ToList(), cancellationToken);
        var result = new List<Example>(examples.Count);
        var clusters = new HashSet<int>();
        for (var i = 0; i < examples.Count; i++)
        {
            if (roots[i] == i)
            {
                result.Add(examples[i]);
            }
            else
            {
                clusters.Add(roots[i]);
            }
        }
        return (result, new StepOutcome { Before = examples.Count, After = result.Count, Clusters = clusters.Count, ElapsedMs = watch.ElapsedMilliseconds });
    }

    /// <summary>Estimated Jaccard similarity: the share of signature slots that agree.</summary>
    public static double Similarity(uint[] x, uint[] y)
    {
        var equal = 0;
        for (var i = 0; i < x.Length; i++)
        {
            if (x[i] == y[i])
            {
                equal++;
            }
        }
        return (double)equal / x.Length;
    }

    /// <summary>Exact Jaccard similarity of two texts' shingle sets (for tests and reports).</summary>
    public double Jaccard(string x, string y)
    {
        var sx = Shingles(x).ToHashSet();
        var sy = Shingles(y).ToHashSet();
        var union = sx.Union(sy).Count();
        return union == 0 ? 1 : (double)sx.Intersect(sy).Count() / union;
    }

    internal uint[] Signature(string text, ulong[] a, ulong[] b)
    {
        var signature = new uint[NumPermutations];
        Array.Fill(signature, uint.MaxValue);
        foreach (var shingle in Shingles(text))
        {
            for (var k = 0; k < signature.Length; k++)
            {
                // Multiply-shift universal hashing: one cheap permutation per slot.
                var h = (uint)((a[k] * shingle + b[k]) >> 32);
                if (h < signature[k])
                {
                    signature[k] = h;
                }
            }
        }
        return signature;
    }

    internal (ulong[] A, ulong[] B) Coefficients()
    {
        var state = (ulong)Seed;
        var a = new ulong[NumPermutations];
        var b = new ulong[NumPermutations];
        for (var k = 0; k < NumPermutations; k++)
        {
            a[k] = SplitMix(ref state) | 1;
            b[k] = SplitMix(ref state);
        }
        return (a, b);
    }

    /// <summary>64-bit hashes of the word shingles (lower-cased words of letters and digits).</summary>
    internal IEnumerable<ulong> Shingles(string text)
    {
        var words = new List<ulong>();
        var hash = 14695981039346656037UL;
        var inWord = false;
        foreach (var c in text)
        {
            if (char.IsLetterOrDigit(c))
            {
                hash = (hash ^ char.ToLowerInvariant(c)) * 1099511628211UL;
                inWord = true;
            }
            else if (inWord)
            {
                words.Add(hash);
                hash = 14695981039346656037UL;
                inWord = false;
            }
        }
        if (inWord)
        {
            words.Add(hash);
        }
        var k = Math.Min(ShingleWords, Math.Max(words.Count, 1));
        for (var i = 0; i + k <= words.Count; i++)
        {
            var h = 0x9E3779B97F4A7C15UL;
            for (var j = 0; j < k; j++)
            {
                h = Mix(h ^ words[i + j]);
            }
            yield return h;
        }
    }

    private static ulong BandHash(uint[] signature, int start, int rows)
    {
        var h = 0xCBF29CE484222325UL;
        for (var i = start; i < start + rows && i < signature.Length; i++)
        {
            h = Mix(h ^ signature[i]);
        }
        return h;
    }

    private static ulong SplitMix(ref ulong state)
    {
        state += 0x9E3779B97F4A7C15UL;
        return Mix(state);
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static int Find(int[] parent, int i)
    {
        while (parent[i] != i)
        {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        return i;
    }

    /// <summary>Joins two clusters; the smaller index becomes the root, so a cluster's root is its first member.</summary>
    private static void Union(int[] parent, int x, int y)
    {
        var rx = Find(parent, x);
        var ry = Find(parent, y);
        if (rx < ry)
        {
            parent[ry] = rx;
        }
        else if (ry < rx)
        {
            parent[rx] = ry;
        }
    }
}
