using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>Keeps the first occurrence of each key; memory is 16 bytes per distinct example (a truncated SHA-256).</summary>
public sealed record ExactDeduplicator(DedupKey Key, bool IgnoreCaseAndWhitespace)
{
    public (List<Example> Examples, StepOutcome Outcome) Apply(IReadOnlyList<Example> examples)
    {
        var watch = Stopwatch.StartNew();
        var seen = new HashSet<UInt128>();
        var result = new List<Example>(examples.Count);
        foreach (var example in examples)
        {
            if (seen.Add(Fingerprint(DedupKeys.Of(example, Key, IgnoreCaseAndWhitespace))))
            {
                result.Add(example);
            }
        }
        return (result, new StepOutcome { Before = examples.Count, After = result.Count, ElapsedMs = watch.ElapsedMilliseconds });
    }

    /// <summary>Counts examples identical to an earlier one.</summary>
    public static long CountDuplicates(IEnumerable<Example> examples)
    {
        var seen = new HashSet<UInt128>();
        return examples.LongCount(e => !seen.Add(Fingerprint(DedupKeys.Of(e, DedupKey.FullConversation, false))));
    }

    public static UInt128 Fingerprint(string text)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(text), hash);
        return new UInt128(BitConverter.ToUInt64(hash[..8]), BitConverter.ToUInt64(hash[8..16]));
    }
}
