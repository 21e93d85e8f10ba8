using System.Text.RegularExpressions;
using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class NumericMatchTests
{
    [Theory]
    [InlineData("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72")]
    [InlineData("#### 1,000", "1000")]
    [InlineData("So the total is $1,234.50.", "1234.5")]
    [InlineData("It drops by -3 degrees, to 5.", "5")]
    [InlineData("Pages 3-4", "4")]
    [InlineData("x = -7.25", "-7.25")]
    public void Extract_Gsm8kConventions_FinalNumber(string text, string expected) =>
        Assert.Equal(expected, NumericMatch.Format(NumericMatch.Extract(text)!.Value));

    [Fact]
    public void Extract_NoNumber_IsNull() =>
        Assert.Null(NumericMatch.Extract("no digits here."));

    [Theory]
    [InlineData("The answer is 5.0", "#### 5", 0, 1.0)]
    [InlineData("She has 1,000 apples", "#### 1000", 0, 1.0)]
    [InlineData("about 99.9", "#### 100", 0, 0.0)]
    [InlineData("about 99.9", "#### 100", 0.01, 1.0)]
    [InlineData("I don't know", "#### 3", 0, 0.0)]
    public void Score_EqualValues_Match(string prediction, string reference, double tolerance, double expected) =>
        Assert.Equal(expected, NumericMatch.Score(prediction, reference, tolerance));

    [Fact]
    public void Score_CustomPattern_UsesFirstGroup() =>
        Assert.Equal(1.0, NumericMatch.Score("Answer: 42 (checked 43 times)", "#### 42", pattern: new Regex(@"Answer:\s*(\S+)")));
}
