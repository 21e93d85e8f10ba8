using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class ChrFTests
{
    [Fact]
    public void Corpus_SacreBleuReadmeExample_Reproduced() =>
        TestData.AssertClose(59.73, ChrF.Corpus(BleuTests.Hypotheses, BleuTests.References), 0.005, "chrF2 (published 59.73)");

    [Fact]
    public void Sentence_HandComputedCases()
    {
        Assert.Equal(100.0, ChrF.Sentence("a cat", ["acat"]), 12);
        Assert.Equal(0.0, ChrF.Sentence("xyz", ["abc"]));
        // "ab" vs "ac": 1-grams P = R = 1/2; 2-grams P = R = 0 (both sides have one): averages 1/4 each, F = 1/4.
        TestData.AssertClose(25.0, ChrF.Sentence("ab", ["ac"]), 1e-9, "chrF");
    }

    [Fact]
    public void Sentence_SupplementaryPlaneCharacters_CountOnce() =>
        Assert.Equal(100.0, ChrF.Sentence("😀x", ["😀x"]), 12);

    [Fact]
    public void Scores_ReferenceFixture_MatchPythonPort()
    {
        foreach (var c in TestData.Cases("bleu_sentences"))
        {
            var hypothesis = c.GetProperty("hypothesis").GetString()!;
            TestData.AssertClose(c.GetProperty("sentence_chrf").GetDouble(), ChrF.Sentence(hypothesis, c.GetProperty("references").Strings()), 1e-9, $"chrF of '{hypothesis}'");
        }

        foreach (var c in TestData.Cases("bleu_corpora"))
        {
            var references = c.GetProperty("references").EnumerateArray().Select(r => (IReadOnlyList<string>)r.Strings()).ToList();
            TestData.AssertClose(c.GetProperty("chrf").GetDouble(), ChrF.Corpus(c.GetProperty("hypotheses").Strings(), references), 1e-9, "corpus chrF");
        }
    }
}
