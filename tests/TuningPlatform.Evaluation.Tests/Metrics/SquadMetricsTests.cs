using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class SquadMetricsTests
{
    [Theory]
    [InlineData("The  Cat!", "cat")]
    [InlineData("an apple, a pear", "apple pear")]
    [InlineData("Theatre", "theatre")]
    [InlineData("  U.S.A. ", "usa")]
    public void Normalize_ArticlesPunctuationCaseWhitespace_Removed(string text, string expected) =>
        Assert.Equal(expected, SquadMetrics.Normalize(text));

    [Fact]
    public void ExactMatch_NormalisedEqual_IsOne()
    {
        Assert.Equal(1.0, SquadMetrics.ExactMatch("The Eiffel Tower.", "eiffel tower"));
        Assert.Equal(0.0, SquadMetrics.ExactMatch("Eiffel", "eiffel tower"));
    }

    [Fact]
    public void TokenF1_PartialOverlap_HandComputed()
    {
        // pred tokens {cat, sat}, gold {cat, sat, on, mat}: P = 1, R = 1/2, F1 = 2/3.
        TestData.AssertClose(2.0 / 3, SquadMetrics.TokenF1("the cat sat", "a cat sat on the mat"), 1e-12, "F1");
        // Repeated tokens count as a multiset: pred {the→removed} {cat, cat}, gold {cat}: P = 1/2, R = 1.
        TestData.AssertClose(2.0 / 3, SquadMetrics.TokenF1("cat cat", "cat"), 1e-12, "F1 multiset");
        Assert.Equal(0.0, SquadMetrics.TokenF1("dog", "cat"));
        Assert.Equal(1.0, SquadMetrics.TokenF1("the", "a"));
        Assert.Equal(0.0, SquadMetrics.TokenF1("", "cat"));
    }

    [Fact]
    public void Scores_SeveralReferences_TakeTheMaximum()
    {
        string[] references = ["Denver Broncos", "the Broncos"];
        Assert.Equal(1.0, SquadMetrics.ExactMatch("Broncos", references));
        Assert.Equal(1.0, SquadMetrics.TokenF1("broncos", references));
        Assert.Equal(0.0, SquadMetrics.ExactMatch("x", []));
    }

    [Fact]
    public void Scores_ReferenceFixture_MatchPythonPortOfOfficialScript()
    {
        var count = 0;
        foreach (var c in TestData.Cases("squad"))
        {
            var prediction = c.GetProperty("prediction").GetString()!;
            var reference = c.GetProperty("reference").GetString()!;
            Assert.Equal(c.GetProperty("exact_match").GetDouble(), SquadMetrics.ExactMatch(prediction, reference));
            TestData.AssertClose(c.GetProperty("f1").GetDouble(), SquadMetrics.TokenF1(prediction, reference), 1e-12, $"F1 of '{prediction}' vs '{reference}'");
            count++;
        }

        Assert.True(count >= 60, $"only {count} SQuAD cases in the fixture");
    }
}
