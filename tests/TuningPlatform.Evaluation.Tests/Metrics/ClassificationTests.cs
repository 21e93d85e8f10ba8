using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class ClassificationTests
{
    [Fact]
    public void Evaluate_YesNoMaybe_HandComputed()
    {
        string[] references = ["yes", "yes", "no", "no", "maybe"];
        string?[] predictions = ["yes", "no", "no", null, "yes"];
        var report = Classification.Evaluate(references, predictions, ["yes", "no", "maybe"]);
        Assert.Equal(0.4, report.Accuracy, 12);
        // yes: TP 1, predicted 2, actual 2 → P = R = F1 = 1/2. no: TP 1, predicted 2, actual 2 → 1/2. maybe: 0.
        Assert.Equal(0.5, report.PerClass[0].F1, 12);
        Assert.Equal(0.5, report.PerClass[1].F1, 12);
        Assert.Equal(0.0, report.PerClass[2].F1, 12);
        Assert.Equal(1.0 / 3, report.MacroF1, 12);
        // micro: TP 2, predicted 4 (the unlabelled one is no class's positive), actual 5.
        Assert.Equal(0.5, report.MicroPrecision, 12);
        Assert.Equal(0.4, report.MicroRecall, 12);
        Assert.Equal(["yes", "no", "maybe", Classification.NoLabel], report.Confusion.Labels);
        Assert.Equal(1, report.Confusion[1, 3]);
        Assert.Equal(1, report.Confusion[2, 0]);
    }

    [Fact]
    public void Evaluate_ReferenceOutsideLabelSet_Throws() =>
        Assert.Throws<ArgumentException>(() => Classification.Evaluate(["cat"], ["cat"], ["yes", "no"]));

    [Theory]
    [InlineData("Yes, definitely.", "yes")]
    [InlineData("The answer is no; maybe later.", "no")]
    [InlineData("nobody knows", null)]
    [InlineData("MAYBE", "maybe")]
    public void ExtractLabel_FirstWholeWordLabel_Found(string prediction, string? expected) =>
        Assert.Equal(expected, Classification.ExtractLabel(prediction, ["yes", "no", "maybe"]));

    [Fact]
    public void Evaluate_ReferenceFixture_MatchesScikitLearn()
    {
        foreach (var c in TestData.Cases("classification"))
        {
            var labels = c.GetProperty("labels").Strings();
            var report = Classification.Evaluate(c.GetProperty("references").Strings(), c.GetProperty("predictions").Strings(), labels);
            TestData.AssertClose(c.GetProperty("accuracy").GetDouble(), report.Accuracy, 1e-12, "accuracy");
            for (var k = 0; k < labels.Length; k++)
            {
                TestData.AssertClose(c.GetProperty("precision").Doubles()[k], report.PerClass[k].Precision, 1e-12, $"precision/{labels[k]}");
                TestData.AssertClose(c.GetProperty("recall").Doubles()[k], report.PerClass[k].Recall, 1e-12, $"recall/{labels[k]}");
                TestData.AssertClose(c.GetProperty("f1").Doubles()[k], report.PerClass[k].F1, 1e-12, $"f1/{labels[k]}");
                Assert.Equal(c.GetProperty("support")[k].GetInt32(), report.PerClass[k].Support);
            }

            var macro = c.GetProperty("macro").Doubles();
            var micro = c.GetProperty("micro").Doubles();
            TestData.AssertClose(macro[0], report.MacroPrecision, 1e-12, "macro P");
            TestData.AssertClose(macro[1], report.MacroRecall, 1e-12, "macro R");
            TestData.AssertClose(macro[2], report.MacroF1, 1e-12, "macro F1");
            TestData.AssertClose(micro[0], report.MicroPrecision, 1e-12, "micro P");
            TestData.AssertClose(micro[1], report.MicroRecall, 1e-12, "micro R");
            TestData.AssertClose(micro[2], report.MicroF1, 1e-12, "micro F1");
            Assert.Equal(c.GetProperty("confusion").EnumerateArray().Select(e => e.GetInt64()).ToArray(), report.Confusion.Counts);
        }
    }
}
