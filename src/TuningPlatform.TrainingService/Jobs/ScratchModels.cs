using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Engine.Models;
using TuningPlatform.Grpc;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// Models trained from nothing: a Llama config built from the request (vocabulary and special tokens from the
/// tokenizer model), initialised from a seed the way Hugging Face initialises Llama (normal(0, σ) matrices,
/// RMSNorm weights 1, biases 0), so every process that runs the job builds the same starting weights.
/// </summary>
public static class ScratchModels
{
    private const string Param = "model_source.from_scratch";

    /// <summary>The architecture of <paramref name="s"/>; INVALID_ARGUMENT naming the field that does not hold.</summary>
    public static LlamaConfig BuildConfig(ScratchModelConfig s, LlamaConfig tokenizerModel)
    {
        Positive(s.HiddenSize, "hidden_size", 16_384);
        Positive(s.IntermediateSize, "intermediate_size", 65_536);
        Positive(s.NumHiddenLayers, "num_hidden_layers", 256);
        Positive(s.NumAttentionHeads, "num_attention_heads", 256);
        if (s.NumKeyValueHeads < 0)
        {
            RpcErrors.InvalidArgument(Param + ".num_key_value_heads", $"must be ≥ 0, got {s.NumKeyValueHeads}");
        }
        Positive(s.MaxPositionEmbeddings, "max_position_embeddings", 1 << 20);
        var kv = s.NumKeyValueHeads == 0 ? s.NumAttentionHeads : s.NumKeyValueHeads;
        if (s.HiddenSize % s.NumAttentionHeads != 0 || s.HiddenSize / s.NumAttentionHeads % 2 != 0)
        {
            RpcErrors.InvalidArgument(Param + ".num_attention_heads",
                $"hidden_size {s.HiddenSize} must split into {s.NumAttentionHeads} heads of an even size (RoPE)");
        }
        if (s.NumAttentionHeads % kv != 0)
        {
            RpcErrors.InvalidArgument(Param + ".num_key_value_heads", $"num_attention_heads {s.NumAttentionHeads} is not a multiple of {kv}");
        }
        if (s.RopeTheta < 0 || s.RmsNormEps < 0 || s.InitializerRange < 0)
        {
            RpcErrors.InvalidArgument(Param, "rope_theta, rms_norm_eps and initializer_range must be ≥ 0 (0 = default)");
        }
        return new LlamaConfig
        {
            HiddenSize = s.HiddenSize,
            IntermediateSize = s.IntermediateSize,
            NumLayers = s.NumHiddenLayers,
            NumHeads = s.NumAttentionHeads,
            NumKeyValueHeadsRaw = kv,
            VocabSize = tokenizerModel.VocabSize,
            MaxPositions = s.MaxPositionEmbeddings,
            RopeTheta = s.RopeTheta == 0 ? 10_000 : s.RopeTheta,
            RmsNormEps = s.RmsNormEps == 0 ? 1e-5 : s.RmsNormEps,
            TieWordEmbeddings = s.TieWordEmbeddings,
            AttentionBias = s.AttentionBias,
            BosTokenId = tokenizerModel.BosTokenId,
            EosTokenIds = tokenizerModel.EosTokenIds,
        };
    }

    /// <summary>A new model with seeded random weights.</summary>
    public static LlamaModel Create(LlamaConfig config, double initializerRange, long seed)
    {
        var model = LlamaModel.Create(config);
        var std = initializerRange == 0 ? 0.02 : initializerRange;
        var random = new Random(unchecked((int)(seed * 31 + 5)));
        foreach (var parameter in model.Parameters.Parameters)
        {
            var values = parameter.Span;
            var isVector = parameter.Shape.Length == 1;
            var isNorm = isVector && parameter.Name.Contains("norm", StringComparison.Ordinal);
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = isNorm ? 1f : isVector ? 0f : (float)(std * Gaussian(random));
            }
        }
        return model;
    }

    private static double Gaussian(Random random)
    {
        // Box–Muller: one standard normal from two uniforms in (0, 1].
        var u1 = 1.0 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    private static void Positive(int value, string name, int max)
    {
        if (value <= 0 || value > max)
        {
            RpcErrors.InvalidArgument($"{Param}.{name}", $"must be in [1, {max}], got {value}");
        }
    }
}
