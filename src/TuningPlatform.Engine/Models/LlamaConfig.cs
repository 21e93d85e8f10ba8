using System.Text.Json;
using System.Text.Json.Serialization;
using TuningPlatform.Engine.IO;

namespace TuningPlatform.Engine.Models;

/// <summary>RoPE frequency scaling from config.json's rope_scaling (linear, or llama3's banded rescale).</summary>
public sealed record RopeScaling
{
    /// <summary>Scaling kind: "default", "linear" or "llama3".</summary>
    [JsonPropertyName("rope_type")]
    public string? RopeType { get; init; }

    /// <summary>Older configs spell the kind "type".</summary>
    [JsonPropertyName("type")]
    public string? LegacyType { get; init; }

    /// <summary>Frequency divisor.</summary>
    [JsonPropertyName("factor")]
    public double Factor { get; init; } = 1;

    /// <summary>llama3: wavelengths above original_max / low_freq_factor are divided by factor.</summary>
    [JsonPropertyName("low_freq_factor")]
    public double LowFreqFactor { get; init; } = 1;

    /// <summary>llama3: wavelengths below original_max / high_freq_factor are kept.</summary>
    [JsonPropertyName("high_freq_factor")]
    public double HighFreqFactor { get; init; } = 4;

    /// <summary>llama3: the context length the model was pretrained with.</summary>
    [JsonPropertyName("original_max_position_embeddings")]
    public int OriginalMaxPositions { get; init; } = 8192;

    /// <summary>The effective kind.</summary>
    [JsonIgnore]
    public string Kind => RopeType ?? LegacyType ?? "default";
}

/// <summary>
/// A Llama-family model's shape and hyperparameters (config.json of model types llama, mistral, qwen2).
/// Hugging Face spellings live only in the attributes.
/// </summary>
public sealed record LlamaConfig
{
    private static readonly JsonSerializerOptions ReadOptions = new() { NumberHandling = JsonNumberHandling.AllowReadingFromString };

    /// <summary>"llama", "mistral" or "qwen2".</summary>
    [JsonPropertyName("model_type")]
    public string ModelType { get; init; } = "llama";

    /// <summary>D: model (residual stream) width.</summary>
    [JsonPropertyName("hidden_size")]
    public int HiddenSize { get; init; }

    /// <summary>F: SwiGLU hidden width.</summary>
    [JsonPropertyName("intermediate_size")]
    public int IntermediateSize { get; init; }

    /// <summary>L: number of decoder layers.</summary>
    [JsonPropertyName("num_hidden_layers")]
    public int NumLayers { get; init; }

    /// <summary>H: query heads.</summary>
    [JsonPropertyName("num_attention_heads")]
    public int NumHeads { get; init; }

    /// <summary>Hkv as written (absent means multi-head attention).</summary>
    [JsonPropertyName("num_key_value_heads")]
    public int? NumKeyValueHeadsRaw { get; init; }

    /// <summary>Dh as written (absent means D / H).</summary>
    [JsonPropertyName("head_dim")]
    public int? HeadDimRaw { get; init; }

    /// <summary>V: vocabulary size.</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; }

    /// <summary>Longest sequence the model was trained for.</summary>
    [JsonPropertyName("max_position_embeddings")]
    public int MaxPositions { get; init; } = 2048;

    /// <summary>RMSNorm epsilon.</summary>
    [JsonPropertyName("rms_norm_eps")]
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>RoPE base.</summary>
    [JsonPropertyName("rope_theta")]
    public double RopeTheta { get; init; } = 10000;

    /// <summary>Optional RoPE frequency scaling.</summary>
    [JsonPropertyName("rope_scaling")]
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>Whether the output head shares the token embedding matrix.</summary>
    [JsonPropertyName("tie_word_embeddings")]
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Llama's attention_bias: biases on q, k, v and o projections.</summary>
    [JsonPropertyName("attention_bias")]
    public bool AttentionBias { get; init; }

    /// <summary>Biases on the MLP projections (unsupported when true).</summary>
    [JsonPropertyName("mlp_bias")]
    public bool MlpBias { get; init; }

    /// <summary>Activation; only "silu" (SwiGLU) is supported.</summary>
    [JsonPropertyName("hidden_act")]
    public string HiddenAct { get; init; } = "silu";

    /// <summary>Beginning-of-sequence id.</summary>
    [JsonPropertyName("bos_token_id")]
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence id(s): config.json allows one id or a list.</summary>
    [JsonPropertyName("eos_token_id")]
    [JsonConverter(typeof(IntOrArrayConverter))]
    public int[]? EosTokenIds { get; init; }

    /// <summary>The dtype the checkpoint was saved in (informational).</summary>
    [JsonPropertyName("torch_dtype")]
    public string? TorchDType { get; init; }

    /// <summary>Hkv: key/value heads (grouped-query attention when fewer than H).</summary>
    [JsonIgnore]
    public int NumKeyValueHeads => NumKeyValueHeadsRaw ?? NumHeads;

    /// <summary>Dh: per-head width.</summary>
    [JsonIgnore]
    public int HeadDim => HeadDimRaw ?? (NumHeads == 0 ? 0 : HiddenSize / NumHeads);

    /// <summary>Whether q/k/v projections carry biases (qwen2 always; llama with attention_bias).</summary>
    [JsonIgnore]
    public bool QkvBias => ModelType == "qwen2" || AttentionBias;

    /// <summary>Whether the output projection carries a bias (llama with attention_bias).</summary>
    [JsonIgnore]
    public bool OutputBias => ModelType != "qwen2" && AttentionBias;

    /// <summary>Reads and validates a config.json.</summary>
    public static LlamaConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "file not found; a Hugging Face model directory needs config.json");
        }

        LlamaConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<LlamaConfig>(File.ReadAllBytes(path), ReadOptions);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not a valid config.json ({e.Message})", e);
        }

        if (config is null)
        {
            throw new ModelFormatException(path, "config.json is null");
        }

        config.Validate(path);
        return config;
    }

    /// <summary>Serializes to config.json form.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull });

    /// <summary>Checks the shape is one this engine runs; throws <see cref="ModelFormatException"/> naming <paramref name="path"/>.</summary>
    public void Validate(string path)
    {
        if (ModelType is not ("llama" or "mistral" or "qwen2"))
        {
            throw new ModelFormatException(path, $"model_type '{ModelType}' is not supported; supported: llama, mistral, qwen2");
        }

        void Positive(string name, int value)
        {
            if (value <= 0)
            {
                throw new ModelFormatException(path, $"{name} is {value}; expected a positive integer");
            }
        }

        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumLayers);
        Positive("num_attention_heads", NumHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("vocab_size", VocabSize);
        Positive("head_dim", HeadDim);
        if (NumHeads % NumKeyValueHeads != 0)
        {
            throw new ModelFormatException(path, $"num_attention_heads {NumHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}");
        }

        if (HeadDim % 2 != 0)
        {
            throw new ModelFormatException(path, $"head_dim {HeadDim} is odd; RoPE needs an even head dimension");
        }

        if (HiddenAct is not ("silu" or "swish"))
        {
            throw new ModelFormatException(path, $"hidden_act '{HiddenAct}' is not supported; only silu (SwiGLU)");
        }

        if (MlpBias)
        {
            throw new ModelFormatException(path, "mlp_bias=true is not supported");
        }

        if (RopeScaling is { } s && s.Kind is not ("default" or "linear" or "llama3"))
        {
            throw new ModelFormatException(path, $"rope_scaling type '{s.Kind}' is not supported; supported: linear, llama3");
        }
    }

    /// <summary>Reads an int or an int array as int[].</summary>
    internal sealed class IntOrArrayConverter : JsonConverter<int[]>
    {
        public override int[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Number)
            {
                return [reader.GetInt32()];
            }

            if (reader.TokenType == JsonTokenType.Null)
            {
                return null;
            }

            return JsonSerializer.Deserialize<int[]>(ref reader);
        }

        public override void Write(Utf8JsonWriter writer, int[] value, JsonSerializerOptions options)
        {
            if (value.Length == 1)
            {
                writer.WriteNumberValue(value[0]);
                return;
            }

            JsonSerializer.Serialize(writer, value);
        }
    }
}
