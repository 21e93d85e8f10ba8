// `api_call_match`: does a generated Gorilla answer (Patil et al. 2023, "Gorilla: Large Language
// Model Connected with Massive APIs"; the APIBench datasets) call the reference's API with the
// reference's arguments? Gorilla's own evaluation compares abstract syntax trees of the calls;
// this checker compares parsed calls (see PythonCall):
//   reference call: the first call after `<<<api_call>>>:` or `'api_call':` in the reference,
//     else its first call (so both a bare `api_call` field and a full Gorilla answer work);
//   the prediction matches when any call in it has
//     - the same callee, or one whose dotted name ends with the other's (`pipeline` ~
//       `transformers.pipeline`, same last component required), and
//     - every reference argument, taken in written order (index i): a keyword k=v is matched by
//       k=v, or by a positional v at index i when the prediction does not name k (APIBench writes
//       `torch.hub.load(repo_or_dir='x', model='y')` where answers write `torch.hub.load('x', 'y')`);
//       a positional v by a positional v at index i;
//     - with option strict=true, no argument beyond the reference's.
//   Values compare canonically: quote style, whitespace and 1 vs 1.0 do not matter.
//   A reference without a parseable call scores 0 with an `error` entry (a data problem in one
//   example should not fail a whole run).
namespace TuningPlatform.Evaluation.Checkers;

/// <summary>Matches the API call of a Gorilla-style answer against the reference call.</summary>
public sealed class ApiCallChecker : IAnswerChecker
{
    private static readonly string[] Markers = ["<<<api_call>>>:", "'api_call':", "\"api_call\":"];

    /// <inheritdoc/>
    public string Name => "api_call_match";

    /// <inheritdoc/>
    public string Description =>
        "1 when the prediction calls the reference's API (dotted callee) with every reference argument (keyword or same-position positional); option strict=true also forbids extra arguments.";

    /// <inheritdoc/>
    public CheckResult Check(string prediction, string reference, IReadOnlyDictionary<string, string> options)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(options);
        var strict = options.TryGetValue("strict", out var value) && bool.TryParse(value, out var parsed) && parsed;
        var expected = ReferenceCall(reference);
        if (expected is null)
        {
            // A data problem in one example, not a reason to fail the run: score 0 and say why.
            return new CheckResult(0.0, new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["error"] = $"the reference has no parseable API call: '{Truncate(reference)}'",
            });
        }

        var candidates = PythonCall.FindAll(prediction);
        var match = candidates.FirstOrDefault(call => Matches(call, expected, strict));
        var extracted = new Dictionary<string, string>(StringComparer.Ordinal) { ["reference_call"] = expected.Canonical };
        var shown = match ?? PreferredCall(prediction, candidates);
        if (shown is not null)
        {
            extracted["api_call"] = shown.Canonical;
        }

        return new CheckResult(match is null ? 0.0 : 1.0, extracted);
    }

    /// <summary>The call a reference text names (after an api_call marker when there is one).</summary>
    public static PythonCall? ReferenceCall(string reference)
    {
        foreach (var marker in Markers)
        {
            var at = reference.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0 && PythonCall.First(reference[(at + marker.Length)..]) is { } call)
            {
                return call;
            }
        }

        return PythonCall.First(reference);
    }

    /// <summary>Whether <paramref name="candidate"/> calls <paramref name="expected"/>'s API with its arguments.</summary>
    public static bool Matches(PythonCall candidate, PythonCall expected, bool strict = false)
    {
        if (!SameCallee(candidate.Callee, expected.Callee))
        {
            return false;
        }

        // Reference arguments in written order; argument i of the reference may be given by
        // keyword anywhere, or positionally at index i of the candidate.
        var used = new bool[candidate.Arguments.Count];
        for (var i = 0; i < expected.Arguments.Count; i++)
        {
            var (name, value) = expected.Arguments[i];
            var at = name is null ? -1 : IndexOfKeyword(candidate, name);
            if (at < 0 && (name is null || candidate.Keyword(name) is null) && i < candidate.Arguments.Count && candidate.Arguments[i].Name is null)
            {
                at = i;
            }

            if (at < 0 || candidate.Arguments[at].Value != value)
            {
                return false;
            }

            used[at] = true;
        }

        return !strict || used.All(u => u);
    }

    private static int IndexOfKeyword(PythonCall call, string name)
    {
        for (var i = 0; i < call.Arguments.Count; i++)
        {
            if (call.Arguments[i].Name == name)
            {
                return i;
            }
        }

        return -1;
    }

    private static bool SameCallee(string a, string b)
    {
        if (a == b)
        {
            return true;
        }

        var (shorter, longer) = a.Length < b.Length ? (a, b) : (b, a);
        return longer.EndsWith("." + shorter, StringComparison.Ordinal);
    }

    private static PythonCall? PreferredCall(string prediction, IReadOnlyList<PythonCall> candidates)
    {
        foreach (var marker in Markers)
        {
            var at = prediction.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0 && PythonCall.First(prediction[(at + marker.Length)..]) is { } call)
            {
                return call;
            }
        }

        return candidates.FirstOrDefault();
    }

    private static string Truncate(string text) => text.Length <= 80 ? text : text[..80] + "…";
}
