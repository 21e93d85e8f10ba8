namespace TuningPlatform.Engine.Models;

/// <summary>The one map between engine parameter names and Hugging Face checkpoint keys.</summary>
public static class HfCheckpointKeys
{
    /// <summary>The HF key of an engine parameter name.</summary>
    public static string ToHf(string name)
    {
        if (name == "tok_embeddings")
        {
            return "model.embed_tokens.weight";
        }

        if (name == "norm")
        {
            return "model.norm.weight";
        }

        if (name == "output")
        {
            return "lm_head.weight";
        }

        // layers.{i}.{part}
        var dot = name.IndexOf('.', 7);
        var layer = name[7..dot];
        var part = name[(dot + 1)..];
        var hf = part switch
        {
            "sa_norm" => "input_layernorm.weight",
            "mlp_norm" => "post_attention_layernorm.weight",
            "attn.q_proj" => "self_attn.q_proj.weight",
            "attn.k_proj" => "self_attn.k_proj.weight",
            "attn.v_proj" => "self_attn.v_proj.weight",
            "attn.output_proj" => "self_attn.o_proj.weight",
            "attn.q_bias" => "self_attn.q_proj.bias",
            "attn.k_bias" => "self_attn.k_proj.bias",
            "attn.v_bias" => "self_attn.v_proj.bias",
            "attn.output_bias" => "self_attn.o_proj.bias",
            "mlp.w1" => "mlp.gate_proj.weight",
            "mlp.w3" => "mlp.up_proj.weight",
            "mlp.w2" => "mlp.down_proj.weight",
            _ => throw new ArgumentException($"no checkpoint key for parameter '{name}'", nameof(name)),
        };
        return $"model.layers.{layer}.{hf}";
    }
}
