using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class BleuTests
{
    // sacreBLEU's README example (two reference streams), transposed to per-segment references.
    internal static readonly string[] Hypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."];

    internal static readonly IReadOnlyList<string>[] References =
    [
        ["The dog bit the man.", "The dog had bit the man."],
        ["It was not unexpected.", "No one was surprised."],
        ["The man bit him first.", "The man had bitten the dog."],
    ];

    // Apostrophes and dashes between letters stay inside words; periods and commas split unless
    // between digits; "-\n" joins a hyphenated line break.
    [Theory]
    [InlineData("Hello, world.", "Hello , world .")]
    [InlineData("It wasn't 3.5 or 1,000 - 12-3", "It wasn't 3.5 or 1,000 - 12 - 3")]
    [InlineData("a&amp;b &lt;tag&gt; &quot;q&quot;", "a & b < tag > \" q \"")]
    [InlineData("end.\nnext line-\nbreak", "end . next linebreak")]
    [InlineData("U.S. e-mail x,y 5,a", "U . S . e-mail x , y 5 , a")]
    public void Tokenize13a_MtevalRules_Applied(string line, string expected) =>
        Assert.Equal(expected, Bleu.Tokenize13a(line));

    [Fact]
    public void Corpus_SacreBleuReadmeExample_Reproduced()
    {
        // Published: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18).
        var score = Bleu.Corpus(Hypotheses, References);
        TestData.AssertClose(48.53, score.Score, 0.005, "BLEU");
        double[] precisions = [82.4, 50.0, 45.5, 37.5];
        for (var n = 0; n < 4; n++)
        {
            TestData.AssertClose(precisions[n], score.Precisions[n], 0.05, $"p{n + 1}");
        }

        TestData.AssertClose(0.943, score.BrevityPenalty, 0.0005, "BP");
        Assert.Equal(17, score.HypothesisLength);
        Assert.Equal(18, score.ReferenceLength);
    }

    [Fact]
    public void Sentence_HandComputedCases()
    {
        Assert.Equal(100.0, Bleu.Sentence("The cat sat on the mat.", ["The cat sat on the mat."]).Score, 12);
        Assert.Equal(0.0, Bleu.Sentence("", ["The cat"]).Score);
        // 3 tokens, effective order 3: p = 2/3, 1/2 (one of two bigrams), exp smoothing for 0 trigrams: 1/(2·1).
        // hyp "a b c" vs ref "a b d": p1 = 2/3, p2 = 1/2, p3 = 1/2 (smoothed), BP = 1.
        var expected = Math.Exp((Math.Log(200.0 / 3) + Math.Log(50) + Math.Log(50)) / 3);
        TestData.AssertClose(expected, Bleu.Sentence("a b c", ["a b d"]).Score, 1e-9, "sentence BLEU");
    }

    [Fact]
    public void Corpus_BrevityPenalty_UsesClosestShorterReference()
    {
        // hyp length 4; references of length 3 and 5 are equally close: the shorter (3) counts, BP = 1.
        var statistics = Bleu.SegmentStatistics("a b c d", ["a b c", "a b c d e"]);
        Assert.Equal(3, statistics.ReferenceLength);
    }

    [Fact]
    public void Statistics_ReferenceFixture_MatchPythonPortAndNltk()
    {
        foreach (var c in TestData.Cases("bleu_sentences"))
        {
            var hypothesis = c.GetProperty("hypothesis").GetString()!;
            var references = c.GetProperty("references").Strings();
            Assert.Equal(c.GetProperty("tokenized").GetString(), Bleu.Tokenize13a(hypothesis));
            var stats = Bleu.SegmentStatistics(hypothesis, references);
            var expected = c.GetProperty("stats").Doubles();
            Assert.Equal(expected, (double[])[stats.HypothesisLength, stats.ReferenceLength, .. stats.Correct, .. stats.Total]);
            TestData.AssertClose(c.GetProperty("sentence_bleu").GetDouble(), Bleu.Sentence(hypothesis, references).Score, 1e-9, $"sentence BLEU of '{hypothesis}'");
        }

        var nltkChecked = 0;
        foreach (var c in TestData.Cases("bleu_corpora"))
        {
            var hypotheses = c.GetProperty("hypotheses").Strings();
            var references = c.GetProperty("references").EnumerateArray().Select(r => (IReadOnlyList<string>)r.Strings()).ToList();
            var score = Bleu.Corpus(hypotheses, references);
            TestData.AssertClose(c.GetProperty("bleu").GetDouble(), score.Score, 1e-9, "corpus BLEU");
            if (c.GetProperty("nltk_bleu").ValueKind == System.Text.Json.JsonValueKind.Number)
            {
                TestData.AssertClose(c.GetProperty("nltk_bleu").GetDouble(), score.Score, 1e-9, "corpus BLEU vs NLTK");
                nltkChecked++;
            }
        }

        Assert.True(nltkChecked >= 3, $"only {nltkChecked} corpora carry an NLTK value");
    }
}
