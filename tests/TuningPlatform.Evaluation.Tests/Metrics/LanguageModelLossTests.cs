using TuningPlatform.Evaluation.Metrics;

namespace TuningPlatform.Evaluation.Tests.Metrics;

public class LanguageModelLossTests
{
    [Fact]
    public void Perplexity_TokenWeighted_HandComputed()
    {
        // Example 1: p = 1/2, 1/2; example 2: p = 1/4. Σ NLL = 2 ln 2 + ln 4 = 4 ln 2 over 3 tokens.
        TokenLoss[] examples =
        [
            TokenLoss.FromLogProbabilities([Math.Log(0.5), Math.Log(0.5)], correctTokens: 2),
            TokenLoss.FromLogProbabilities([Math.Log(0.25)]),
        ];
        TestData.AssertClose(4 * Math.Log(2) / 3, LanguageModelLoss.Loss(examples), 1e-12, "loss");
        TestData.AssertClose(Math.Pow(2, 4.0 / 3), LanguageModelLoss.Perplexity(examples), 1e-12, "perplexity");
        TestData.AssertClose(2.0 / 3, LanguageModelLoss.TokenAccuracy(examples), 1e-12, "token accuracy");
        TestData.AssertClose(Math.Log(4), examples[1].MeanNll, 1e-12, "example loss");
    }

    [Fact]
    public void Perplexity_UniformOverVocabulary_EqualsVocabularySize()
    {
        var logProbabilities = Enumerable.Repeat(-Math.Log(512), 100).ToArray();
        TestData.AssertClose(512, LanguageModelLoss.Perplexity([TokenLoss.FromLogProbabilities(logProbabilities)]), 1e-9, "perplexity");
    }

    [Fact]
    public void FromLogProbabilities_PositiveValue_Throws() =>
        Assert.Throws<ArgumentException>(() => TokenLoss.FromLogProbabilities([0.1]));

    [Fact]
    public void Loss_NoTokens_IsNaN() =>
        Assert.True(double.IsNaN(LanguageModelLoss.Loss([new TokenLoss(0, 0)])));
}
