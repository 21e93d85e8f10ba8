using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class RougeTests
{
    [Fact]
    public void Tokenize_NonAlphanumerics_SplitAndDropped() =>
        Assert.Equal(["it", "s", "a", "well", "known", "u", "s", "caf", "3", "5"], Rouge.Tokenize("It's a well-known U.S. café: 3.5"));

    [Fact]
    public void RougeL_LinPaperExample_PrefersInOrderMatch()
    {
        // Lin (2004) §3.1: reference S1 "police killed the gunman"; S2 and S3 have equal ROUGE-2
        // but S2's LCS is 3 words ("police the gunman") and S3's 2 ("the gunman").
        const string reference = "police killed the gunman";
        Assert.Equal(Rouge.RougeN("police kill the gunman", reference, 2).FMeasure, Rouge.RougeN("the gunman kill police", reference, 2).FMeasure);
        TestData.AssertClose(1.0 / 3, Rouge.RougeN("police kill the gunman", reference, 2).FMeasure, 1e-12, "ROUGE-2 S2");
        TestData.AssertClose(0.75, Rouge.RougeL("police kill the gunman", reference).FMeasure, 1e-12, "ROUGE-L S2");
        TestData.AssertClose(0.5, Rouge.RougeL("the gunman kill police", reference).FMeasure, 1e-12, "ROUGE-L S3");
    }

    [Fact]
    public void RougeLsum_LinPaperUnionLcsExample_HandComputed()
    {
        // Lin (2004) §3.2: r = w1..w5, c1 = w1 w2 w6 w7 w8, c2 = w1 w3 w8 w9 w5; the union LCS is
        // w1 w2 w3 w5, so R = 4/5 and P = 4/10.
        var score = Rouge.RougeLsum("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5");
        TestData.AssertClose(0.8, score.Recall, 1e-12, "recall");
        TestData.AssertClose(0.4, score.Precision, 1e-12, "precision");
    }

    [Fact]
    public void RougeN_UnigramAndBigram_HandComputed()
    {
        // pred "the cat sat", ref "the cat sat on the mat": ROUGE-1 P = 3/3, R = 3/6, F = 2/3.
        var rouge1 = Rouge.RougeN("The cat sat.", "the cat sat on the mat", 1);
        TestData.AssertClose(1.0, rouge1.Precision, 1e-12, "P");
        TestData.AssertClose(0.5, rouge1.Recall, 1e-12, "R");
        TestData.AssertClose(2.0 / 3, rouge1.FMeasure, 1e-12, "F");
        // Bigrams: 2 of 2 predicted, 2 of 5 reference.
        TestData.AssertClose(2 * 1.0 * 0.4 / 1.4, Rouge.RougeN("The cat sat.", "the cat sat on the mat", 2).FMeasure, 1e-12, "ROUGE-2");
        Assert.Equal(default, Rouge.RougeL("", "cat"));
    }

    [Fact]
    public void BestOf_SeveralReferences_KeepsHighestF()
    {
        var best = Rouge.BestOf(["a dog", "the cat sat"], r => Rouge.RougeN("the cat sat", r, 1));
        Assert.Equal(1.0, best.FMeasure);
    }

    [Fact]
    public void Scores_ReferenceFixture_MatchPythonPortOfRougeScore()
    {
        foreach (var c in TestData.Cases("rouge"))
        {
            var prediction = c.GetProperty("prediction").GetString()!;
            var reference = c.GetProperty("reference").GetString()!;
            if (c.TryGetProperty("rougeLsum", out var lsum))
            {
                AssertScore(lsum, Rouge.RougeLsum(prediction, reference), "rougeLsum", prediction);
                continue;
            }

            AssertScore(c.GetProperty("rouge1"), Rouge.RougeN(prediction, reference, 1), "rouge1", prediction);
            AssertScore(c.GetProperty("rouge2"), Rouge.RougeN(prediction, reference, 2), "rouge2", prediction);
            AssertScore(c.GetProperty("rougeL"), Rouge.RougeL(prediction, reference), "rougeL", prediction);
        }
    }

    private static void AssertScore(System.Text.Json.JsonElement expected, RougeScore actual, string what, string prediction)
    {
        var values = expected.Doubles();
        TestData.AssertClose(values[0], actual.Precision, 1e-12, $"{what} P of '{prediction}'");
        TestData.AssertClose(values[1], actual.Recall, 1e-12, $"{what} R of '{prediction}'");
        TestData.AssertClose(values[2], actual.FMeasure, 1e-12, $"{what} F of '{prediction}'");
    }
}
