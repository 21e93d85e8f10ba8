// Loss and perplexity from teacher-forced per-token log-likelihoods (the completion tokens
// only; prompt tokens are masked, as in training):
//   NLL_t = −log p(token_t | tokens_<t), natural log;
//   example loss = mean of its NLL_t; corpus loss = Σ_examples Σ_t NLL_t / Σ_examples T_e
//     (token-weighted, the figure Hugging Face's Trainer reports as eval_loss for packed
//     batches; an unweighted mean of example losses overweights short examples);
//   perplexity = exp(corpus loss) (Jelinek et al. 1977; Jurafsky & Martin, SLP3 §3.3);
//   mean token accuracy = Σ_t [argmax_t == token_t] / Σ T_e.
namespace TuningPlatform.Evaluation.Metrics;

/// <summary>One example's summed negative log-likelihood over its completion tokens.</summary>
public readonly record struct TokenLoss(double SumNll, long TokenCount, long CorrectTokens = 0)
{
    /// <summary>Mean NLL per token (NaN when the example has no completion tokens).</summary>
    public double MeanNll => TokenCount > 0 ? SumNll / TokenCount : double.NaN;

    /// <summary>From per-token log-probabilities (natural log, ≤ 0) of the target tokens.</summary>
    public static TokenLoss FromLogProbabilities(ReadOnlySpan<double> logProbabilities, long correctTokens = 0)
    {
        var sum = 0.0;
        foreach (var logProbability in logProbabilities)
        {
            if (double.IsNaN(logProbability) || logProbability > 0)
            {
                throw new ArgumentException($"A log-probability must be ≤ 0; got {logProbability.ToString(System.Globalization.CultureInfo.InvariantCulture)}.", nameof(logProbabilities));
            }

            sum -= logProbability;
        }

        return new TokenLoss(sum, logProbabilities.Length, correctTokens);
    }
}

/// <summary>Token-weighted loss, perplexity and token accuracy over examples.</summary>
public static class LanguageModelLoss
{
    /// <summary>Σ NLL / Σ tokens over the examples (each counted weights[e] times; empty weights = once).</summary>
    public static double Loss(IReadOnlyList<TokenLoss> examples, ReadOnlySpan<int> weights = default)
    {
        var (nll, tokens, _) = Sum(examples, weights);
        return tokens > 0 ? nll / tokens : double.NaN;
    }

    /// <summary>exp(token-weighted loss).</summary>
    public static double Perplexity(IReadOnlyList<TokenLoss> examples, ReadOnlySpan<int> weights = default) =>
        Math.Exp(Loss(examples, weights));

    /// <summary>Correct argmax tokens / tokens.</summary>
    public static double TokenAccuracy(IReadOnlyList<TokenLoss> examples, ReadOnlySpan<int> weights = default)
    {
        var (_, tokens, correct) = Sum(examples, weights);
        return tokens > 0 ? (double)correct / tokens : double.NaN;
    }

    private static (double Nll, long Tokens, long Correct) Sum(IReadOnlyList<TokenLoss> examples, ReadOnlySpan<int> weights)
    {
        ArgumentNullException.ThrowIfNull(examples);
        double nll = 0;
        long tokens = 0, correct = 0;
        for (var e = 0; e < examples.Count; e++)
        {
            var w = weights.IsEmpty ? 1 : weights[e];
            nll += w * examples[e].SumNll;
            tokens += w * examples[e].TokenCount;
            correct += w * examples[e].CorrectTokens;
        }

        return (nll, tokens, correct);
    }
}
