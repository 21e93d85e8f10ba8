namespace TuningPlatform.Engine.Generation;

/// <summary>How to pick tokens and when to stop. Temperature 0 is greedy decoding.</summary>
public sealed record GenerationOptions
{
    /// <summary>Upper bound on generated tokens.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Softmax temperature; 0 picks the most likely token (greedy).</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the smallest set whose probability reaches p (1 = off).</summary>
    public float TopP { get; init; } = 1;

    /// <summary>Drop tokens less likely than min_p × the top probability (0 = off).</summary>
    public float MinP { get; init; }

    /// <summary>Divides positive logits (multiplies negative ones) of tokens already in the sequence (1 = off).</summary>
    public float RepetitionPenalty { get; init; } = 1;

    /// <summary>Seed of the sampler's random stream; same seed, same tokens.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Generation stops when the text contains any of these; the text is cut before it.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Token ids that end generation (null: the model's EOS ids).</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Return the log-probability of each chosen token (under the model's raw distribution, before penalties and temperature).</summary>
    public bool Logprobs { get; init; }

    /// <summary>With <see cref="Logprobs"/>: also return this many most likely alternatives per position (0–20).</summary>
    public int TopLogprobs { get; init; }

    /// <summary>Prepend BOS when encoding a text prompt (through the tokenizer's post-processor).</summary>
    public bool AddSpecialTokens { get; init; } = true;

    /// <summary>Checks the values are in range; throws <see cref="ArgumentOutOfRangeException"/> naming the option.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "must be ≥ 0");
        }

        if (Temperature < 0 || float.IsNaN(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "must be ≥ 0");
        }

        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "must be ≥ 0");
        }

        if (TopP is <= 0 or > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1]");
        }

        if (MinP is < 0 or > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "must be in [0, 1]");
        }

        if (TopLogprobs is < 0 or > Generation.Logprobs.MaxTop)
        {
            throw new ArgumentOutOfRangeException(nameof(TopLogprobs), TopLogprobs, $"must be in [0, {Generation.Logprobs.MaxTop}]");
        }

        if (RepetitionPenalty <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "must be > 0");
        }
    }
}

/// <summary>Why generation ended.</summary>
public enum FinishReason
{
    /// <summary>MaxNewTokens reached.</summary>
    Length,

    /// <summary>A stop token was generated.</summary>
    StopToken,

    /// <summary>A stop string appeared in the text.</summary>
    StopString,

    /// <summary>The model's context is full.</summary>
    ContextFull,

    /// <summary>The caller cancelled the sequence (batched decoding).</summary>
    Cancelled,
}

/// <summary>The outcome of one generation.</summary>
public sealed record GenerationResult(
    int[] PromptIds,
    int[] TokenIds,
    string Text,
    FinishReason FinishReason,
    TimeSpan TimeToFirstToken,
    TimeSpan Elapsed)
{
    /// <summary>Per generated token: its log-probability and the top alternatives, when requested.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }

    /// <summary>Generated tokens per second after the first (decode speed).</summary>
    public double DecodeTokensPerSecond => TokenIds.Length > 1 && Elapsed > TimeToFirstToken
        ? (TokenIds.Length - 1) / (Elapsed - TimeToFirstToken).TotalSeconds
        : 0;
}
