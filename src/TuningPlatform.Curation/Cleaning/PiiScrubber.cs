using System.Net;
using System.Text.RegularExpressions;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Cleaning;

/// <summary>Kinds of personal data and secrets; names match tuning.curation.v1.PiiKind.</summary>
public enum PiiKind
{
    Email = 1,
    PhoneNumber = 2,
    CreditCard = 3,
    IpAddress = 4,
    Secret = 5,
}

/// <summary>
/// Finds e-mail addresses, phone numbers, card numbers that pass the Luhn check, IPv4/IPv6 addresses and
/// API keys or tokens, and replaces each with a placeholder (or drops the example). Secrets are matched
/// first and card numbers before phone numbers, so one string is never counted twice.
/// </summary>
public sealed partial class PiiScrubber(IReadOnlyCollection<PiiKind> kinds, bool dropExample)
{
    public static readonly IReadOnlyDictionary<PiiKind, string> Placeholders = new Dictionary<PiiKind, string>
    {
        [PiiKind.Email] = "[EMAIL]",
        [PiiKind.PhoneNumber] = "[PHONE]",
        [PiiKind.CreditCard] = "[CREDIT_CARD]",
        [PiiKind.IpAddress] = "[IP_ADDRESS]",
        [PiiKind.Secret] = "[SECRET]",
    };

    private readonly HashSet<PiiKind> _kinds = kinds.Count == 0 ? [.. Enum.GetValues<PiiKind>()] : [.. kinds];

    public (List<Example> Examples, StepOutcome Outcome) Apply(IReadOnlyList<Example> examples)
    {
        var findings = new Dictionary<PiiKind, long>();
        var result = new List<Example>(examples.Count);
        long modified = 0;
        foreach (var example in examples)
        {
            var before = findings.Values.Sum();
            var scrubbed = example.Text is not null
                ? example with { Text = Scrub(example.Text, findings) }
                : example with { Messages = example.Messages.Select(m => m with { Content = Scrub(m.Content, findings) }).ToList() };
            if (findings.Values.Sum() == before)
            {
                result.Add(example);
                continue;
            }
            if (!dropExample)
            {
                modified++;
                result.Add(scrubbed);
            }
        }
        return (result, new StepOutcome
        {
            Before = examples.Count,
            After = result.Count,
            Modified = modified,
            Findings = findings.ToDictionary(p => p.Key.ToString(), p => p.Value),
        });
    }

    /// <summary>Replaces every finding in <paramref name="text"/> and counts it by kind.</summary>
    public string Scrub(string text, Dictionary<PiiKind, long> findings)
    {
        if (_kinds.Contains(PiiKind.Secret))
        {
            text = Replace(text, KnownSecret(), PiiKind.Secret, findings, _ => true);
            text = AssignedSecret().Replace(text, m =>
            {
                if (!LooksRandom(m.Groups["value"].Value))
                {
                    return m.Value;
                }
                Count(findings, PiiKind.Secret);
                return m.Value[..(m.Groups["value"].Index - m.Index)] + Placeholders[PiiKind.Secret];
            });
        }
        if (_kinds.Contains(PiiKind.Email))
        {
            text = Replace(text, Email(), PiiKind.Email, findings, _ => true);
        }
        if (_kinds.Contains(PiiKind.CreditCard))
        {
            text = Replace(text, CardCandidate(), PiiKind.CreditCard, findings, m => PassesLuhn(m.Value));
        }
        if (_kinds.Contains(PiiKind.IpAddress))
        {
            text = Replace(text, Ipv4(), PiiKind.IpAddress, findings, _ => true);
            text = Replace(text, Ipv6Candidate(), PiiKind.IpAddress, findings,
                m => m.Value.Count(c => c == ':') >= 2 && IPAddress.TryParse(m.Value, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6);
        }
        if (_kinds.Contains(PiiKind.PhoneNumber))
        {
            text = Replace(text, Phone(), PiiKind.PhoneNumber, findings, m => m.Value.Count(char.IsDigit) is >= 9 and <= 15);
        }
        return text;
    }

    /// <summary>The Luhn checksum over the digits of <paramref name="number"/> (separators ignored).</summary>
    public static bool PassesLuhn(string number)
    {
        var digits = number.Where(char.IsDigit).Select(c => c - '0').ToArray();
        if (digits.Length is < 13 or > 19)
        {
            return false;
        }
        var sum = 0;
        for (var i = 0; i < digits.Length; i++)
        {
            var d = digits[digits.Length - 1 - i];
            if (i % 2 == 1)
            {
                d *= 2;
                if (d > 9)
                {
                    d -= 9;
                }
            }
            sum += d;
        }
        return sum % 10 == 0;
    }

    private static string Replace(string text, Regex regex, PiiKind kind, Dictionary<PiiKind, long> findings, Func<Match, bool> accept) =>
        regex.Replace(text, m =>
        {
            if (!accept(m))
            {
                return m.Value;
            }
            Count(findings, kind);
            return Placeholders[kind];
        });

    private static void Count(Dictionary<PiiKind, long> findings, PiiKind kind) => findings[kind] = findings.GetValueOrDefault(kind) + 1;

    /// <summary>At least 16 characters mixing letters and digits: a token, not a word.</summary>
    private static bool LooksRandom(string value) =>
        value.Length >= 16 && value.Any(char.IsDigit) && value.Any(char.IsLetter) && value.Distinct().Count() >= 10;

    [GeneratedRegex(@"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|sk_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|xox[abposr]-[A-Za-z0-9-]{10,}|hf_[A-Za-z0-9]{30,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})")]
    private static partial Regex KnownSecret();

    [GeneratedRegex(@"(?i)\b(?:api[_-]?key|access[_-]?key|secret(?:[_-]?key)?|token|password|passwd|auth)\b[""']?\s*[:=]\s*[""']?(?<value>[A-Za-z0-9_\-+/=.]{16,})")]
    private static partial Regex AssignedSecret();

    [GeneratedRegex(@"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")]
    private static partial Regex Email();

    [GeneratedRegex(@"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")]
    private static partial Regex CardCandidate();

    [GeneratedRegex(@"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])")]
    private static partial Regex Ipv4();

    [GeneratedRegex(@"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")]
    private static partial Regex Ipv6Candidate();

    [GeneratedRegex(@"(?<![\w+]|\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?!\w|[ .-]\d)")]
    private static partial Regex Phone();
}
