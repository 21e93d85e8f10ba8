using System.Text.Json;
using System.Text.Json.Serialization;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Generation;

/// <summary>
/// A model's generation_config.json: the sampling defaults its authors recommend and the ids that end a
/// turn (Llama 3 instruct lists both &lt;|end_of_text|&gt; and &lt;|eot_id|&gt; here). Hugging Face spellings
/// live only in the attributes.
/// </summary>
public sealed record GenerationConfig
{
    private static readonly JsonSerializerOptions ReadOptions = new() { NumberHandling = JsonNumberHandling.AllowReadingFromString };

    /// <summary>Sample (true) or decode greedily (false, HF's default).</summary>
    [JsonPropertyName("do_sample")]
    public bool? DoSample { get; init; }

    /// <summary>Softmax temperature when sampling.</summary>
    [JsonPropertyName("temperature")]
    public float? Temperature { get; init; }

    /// <summary>Top-k cut (HF's default 50 when sampling).</summary>
    [JsonPropertyName("top_k")]
    public int? TopK { get; init; }

    /// <summary>Nucleus cut.</summary>
    [JsonPropertyName("top_p")]
    public float? TopP { get; init; }

    /// <summary>Min-p cut.</summary>
    [JsonPropertyName("min_p")]
    public float? MinP { get; init; }

    /// <summary>Repetition penalty.</summary>
    [JsonPropertyName("repetition_penalty")]
    public float? RepetitionPenalty { get; init; }

    /// <summary>New-token limit.</summary>
    [JsonPropertyName("max_new_tokens")]
    public int? MaxNewTokens { get; init; }

    /// <summary>Total length limit (prompt + new tokens), used when max_new_tokens is absent.</summary>
    [JsonPropertyName("max_length")]
    public int? MaxLength { get; init; }

    /// <summary>Beginning-of-sequence id.</summary>
    [JsonPropertyName("bos_token_id")]
    public int? BosTokenId { get; init; }

    /// <summary>Ids that end generation (one id or a list in the file).</summary>
    [JsonPropertyName("eos_token_id")]
    [JsonConverter(typeof(LlamaConfig.IntOrArrayConverter))]
    public int[]? EosTokenIds { get; init; }

    /// <summary>Padding id.</summary>
    [JsonPropertyName("pad_token_id")]
    public int? PadTokenId { get; init; }

    /// <summary>Reads a generation_config.json; a bad file says which and why.</summary>
    public static GenerationConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "file not found");
        }

        try
        {
            var config = JsonSerializer.Deserialize<GenerationConfig>(File.ReadAllBytes(path), ReadOptions)
                ?? throw new ModelFormatException(path, "generation_config.json is null");
            config.Validate(path);
            return config;
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not a valid generation_config.json ({e.Message})", e);
        }
    }

    /// <summary>The directory's generation_config.json, or null when it has none.</summary>
    public static GenerationConfig? FromModelDirectory(string directory)
    {
        var path = Path.Combine(directory, "generation_config.json");
        return File.Exists(path) ? Load(path) : null;
    }

    /// <summary>
    /// Options with this file's defaults (greedy unless do_sample; when sampling, HF's defaults temperature 1
    /// and top_k 50 fill what the file leaves out). Override per request with <c>with { … }</c>.
    /// </summary>
    public GenerationOptions ToOptions(int promptTokens = 0)
    {
        var options = new GenerationOptions { StopTokenIds = EosTokenIds };
        if (MaxNewTokens is int n)
        {
            options = options with { MaxNewTokens = n };
        }
        else if (MaxLength is int total && total - promptTokens > 0)
        {
            options = options with { MaxNewTokens = total - promptTokens };
        }

        if (RepetitionPenalty is float rp)
        {
            options = options with { RepetitionPenalty = rp };
        }

        if (DoSample != true)
        {
            return options;
        }

        return options with
        {
            Temperature = Temperature ?? 1,
            TopK = TopK ?? 50,
            TopP = TopP ?? 1,
            MinP = MinP ?? 0,
        };
    }

    private void Validate(string path)
    {
        if (Temperature is < 0 || TopK is < 0 || TopP is <= 0 or > 1 || MinP is < 0 or > 1 || RepetitionPenalty is <= 0 || MaxNewTokens is < 0)
        {
            throw new ModelFormatException(path, $"out-of-range sampling values (temperature {Temperature}, top_k {TopK}, top_p {TopP}, min_p {MinP}, repetition_penalty {RepetitionPenalty}, max_new_tokens {MaxNewTokens})");
        }
    }
}
