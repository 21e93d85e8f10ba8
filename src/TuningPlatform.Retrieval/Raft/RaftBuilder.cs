using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Rag;

namespace TuningPlatform.Retrieval.Raft;

/// <summary>A context unit (a chunk or a whole document) that can be placed in a RAFT example.</summary>
public sealed record RaftDocument(string DocumentId, string Text);

/// <summary>A (question, answer, oracle document) triple.</summary>
public sealed record RaftTriple(string Question, string Answer, string OracleDocumentId);

/// <summary>How the target answer is written.</summary>
public enum RaftAnswerMode
{
    /// <summary>Quote the supporting span of the oracle (when found), then the answer line.</summary>
    Quote,

    /// <summary>The answer line alone.</summary>
    AnswerOnly,
}

/// <summary>RAFT settings, resolved: k distractors, the oracle fraction P, the seed, the prompt shape and the answer form.</summary>
public sealed record RaftOptions(
    int NumDistractors = 4,
    double OracleFraction = 0.8,
    long Seed = 42,
    string ChunkTemplate = RagPrompt.RaftChunkTemplate,
    string PromptTemplate = RagPrompt.RaftPromptTemplate,
    string AnswerPrefix = RaftBuilder.DefaultAnswerPrefix,
    RaftAnswerMode AnswerMode = RaftAnswerMode.Quote,
    string SystemPrompt = "");

/// <summary>One training example: the user message (context + question), the target, and what went into it.</summary>
public sealed record RaftExample(
    string Question,
    string Answer,
    string OracleDocumentId,
    string SystemPrompt,
    string UserMessage,
    string Target,
    bool HasOracle,
    bool Quoted,
    IReadOnlyList<string> ContextDocumentIds);

/// <summary>
/// Builds RAFT examples (Zhang et al. 2024, "RAFT: Adapting Language Model to Domain Specific RAG"): for
/// round(P·n) of the n questions, chosen by a seeded shuffle, the context holds the oracle and k distractors; for
/// the rest, k + 1 distractors. Each context is shuffled. The target quotes the oracle's supporting span
/// (<c>##begin_quote##…##end_quote##</c>) when the answer, or a run of at least <see cref="MinQuoteWords"/> of its
/// words, occurs verbatim in the oracle, then ends with the answer line (<c>&lt;ANSWER&gt;: …</c>). One
/// <see cref="Random"/> seeded with the seed drives every draw, in question order, so a seed reproduces the set.
/// </summary>
public static class RaftBuilder
{
    /// <summary>gorilla raft.py's final answer prefix.</summary>
    public const string DefaultAnswerPrefix = "<ANSWER>: ";

    public const string BeginQuote = "##begin_quote##";
    public const string EndQuote = "##end_quote##";

    /// <summary>The shortest run of answer words quoted when the whole answer is not found.</summary>
    public const int MinQuoteWords = 3;

    /// <summary>
    /// Builds one example per triple whose oracle <paramref name="oracle"/> finds (the others are skipped and
    /// counted by the caller). <paramref name="distractors"/> returns up to <c>count</c> units from documents other than the
    /// oracle document, drawing with the given random source.
    /// </summary>
    public static IReadOnlyList<RaftExample> Build(IReadOnlyList<RaftTriple> triples, Func<RaftTriple, RaftDocument?> oracle,
        Func<RaftTriple, Random, int, IReadOnlyList<RaftDocument>> distractors, RaftOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.NumDistractors, 0);
        if (options.OracleFraction is < 0 or > 1 || double.IsNaN(options.OracleFraction))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.OracleFraction, "the oracle fraction must be in [0, 1]");
        }
        var random = new Random(unchecked((int)(options.Seed ^ (options.Seed >> 32))));
        var resolved = triples.Select(t => (Triple: t, Oracle: oracle(t))).Where(p => p.Oracle is not null).ToList();
        // Exactly round(P·n) examples carry the oracle, chosen by a seeded permutation.
        var withOracle = (int)Math.Round(options.OracleFraction * resolved.Count, MidpointRounding.AwayFromZero);
        var order = Enumerable.Range(0, resolved.Count).ToArray();
        random.Shuffle(order);
        var oracleSet = order.Take(withOracle).ToHashSet();
        var examples = new List<RaftExample>(resolved.Count);
        for (var i = 0; i < resolved.Count; i++)
        {
            var (triple, oracleUnit) = resolved[i];
            var hasOracle = oracleSet.Contains(i);
            var context = new List<RaftDocument>(distractors(triple, random, hasOracle ? options.NumDistractors : options.NumDistractors + 1));
            if (hasOracle)
            {
                context.Add(oracleUnit!);
            }
            var shuffled = context.ToArray();
            random.Shuffle(shuffled);
            var rendered = RagPrompt.RenderContext(options.ChunkTemplate,
                [.. shuffled.Select(d => new PromptChunk(d.DocumentId, d.DocumentId, d.Text))]);
            var user = RagPrompt.Render(options.PromptTemplate, rendered, triple.Question);
            var quote = options.AnswerMode == RaftAnswerMode.Quote ? FindQuote(oracleUnit!.Text, triple.Answer) : null;
            var target = (quote is null ? "" : BeginQuote + quote + EndQuote + "\n") + options.AnswerPrefix + triple.Answer;
            examples.Add(new RaftExample(triple.Question, triple.Answer, triple.OracleDocumentId, options.SystemPrompt, user, target, hasOracle,
                quote is not null, [.. shuffled.Select(d => d.DocumentId)]));
        }
        return examples;
    }

    /// <summary>
    /// The span of <paramref name="oracle"/> that supports <paramref name="answer"/>: the answer itself when it occurs
    /// (case-insensitively; the oracle's own characters are returned), else the longest run of at least
    /// <see cref="MinQuoteWords"/> consecutive answer words that occurs; null when neither does.
    /// </summary>
    public static string? FindQuote(string oracle, string answer)
    {
        var trimmed = answer.Trim();
        if (trimmed.Length == 0)
        {
            return null;
        }
        var at = oracle.IndexOf(trimmed, StringComparison.OrdinalIgnoreCase);
        if (at >= 0)
        {
            return oracle.Substring(at, trimmed.Length);
        }
        var words = SimpleTokenSplitter.Instance.Split(trimmed).Select(s => trimmed.Substring(s.Start, s.Length)).ToList();
        var spans = SimpleTokenSplitter.Instance.Split(trimmed);
        for (var length = words.Count - 1; length >= MinQuoteWords; length--)
        {
            for (var start = 0; start + length <= words.Count; start++)
            {
                // The answer's own text from the first to the last word of the run (its spacing and punctuation kept).
                var from = spans[start].Start;
                var to = spans[start + length - 1].Start + spans[start + length - 1].Length;
                var run = trimmed[from..to];
                var found = oracle.IndexOf(run, StringComparison.OrdinalIgnoreCase);
                if (found >= 0)
                {
                    return oracle.Substring(found, run.Length);
                }
            }
        }
        return null;
    }
}
