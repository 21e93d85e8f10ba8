"""Reference logits for tiny random-weight Llama-family models, computed by PyTorch in float64.

Each variant directory gets a Hugging Face-style config.json and model.safetensors (random weights,
seeded) and reference.json: the input tokens and the float64 logits [T, V] of a from-scratch PyTorch
forward pass written from Hugging Face's modeling_llama / modeling_qwen2 (RMSNorm, rotate-half RoPE with
default, linear or llama3 scaling, grouped-query attention via repeat_kv, SwiGLU, tied or untied head,
q/k/v biases). bf16/f16 variants store half-precision weights; the reference uses those rounded weights.

Run with Debian's python3 and python3-torch (1.13), not another installation:
    apt-get install -y python3-torch
    /usr/bin/python3 generate.py
CI does not need PyTorch: the generated files are committed.
"""
import json
import math
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = dict(
    model_type="llama", hidden_size=32, intermediate_size=40, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, vocab_size=61, max_position_embeddings=64,
    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, hidden_act="silu",
    bos_token_id=1, eos_token_id=2, attention_bias=False,
)

VARIANTS = {
    "gqa-tied": dict(),
    "mha-untied-headdim": dict(num_key_value_heads=4, head_dim=12, tie_word_embeddings=False),
    "qwen2-bias": dict(model_type="qwen2", rope_theta=1000000.0, tie_word_embeddings=False, eos_token_id=[2, 3]),
    "llama3-rope": dict(rope_theta=500000.0, rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                               high_freq_factor=4.0, original_max_position_embeddings=512)),
    "linear-rope": dict(rope_scaling=dict(type="linear", factor=4.0), num_key_value_heads=1),
    "bf16-weights": dict(torch_dtype="bfloat16", tie_word_embeddings=False),
    "f16-weights": dict(torch_dtype="float16"),
}
TOKENS = [1, 17, 42, 5, 60, 33, 8, 21, 3]


def head_dim(c):
    return c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])


def make_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    h, hkv, dh = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)

    def rnd(*shape, scale):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale

    w = {"model.embed_tokens.weight": rnd(v, d, scale=1.0)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rnd(d, scale=0.2)
        w[p + "self_attn.q_proj.weight"] = rnd(h * dh, d, scale=1 / math.sqrt(d))
        w[p + "self_attn.k_proj.weight"] = rnd(hkv * dh, d, scale=1 / math.sqrt(d))
        w[p + "self_attn.v_proj.weight"] = rnd(hkv * dh, d, scale=1 / math.sqrt(d))
        w[p + "self_attn.o_proj.weight"] = rnd(d, h * dh, scale=1 / math.sqrt(h * dh))
        if c["model_type"] == "qwen2":
            w[p + "self_attn.q_proj.bias"] = rnd(h * dh, scale=0.5)
            w[p + "self_attn.k_proj.bias"] = rnd(hkv * dh, scale=0.5)
            w[p + "self_attn.v_proj.bias"] = rnd(hkv * dh, scale=0.5)
        w[p + "post_attention_layernorm.weight"] = 1 + rnd(d, scale=0.2)
        w[p + "mlp.gate_proj.weight"] = rnd(f, d, scale=1 / math.sqrt(d))
        w[p + "mlp.up_proj.weight"] = rnd(f, d, scale=1 / math.sqrt(d))
        w[p + "mlp.down_proj.weight"] = rnd(d, f, scale=1 / math.sqrt(f))
    w["model.norm.weight"] = 1 + rnd(d, scale=0.2)
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = rnd(v, d, scale=1 / math.sqrt(d))
    return w


def inv_freq(c):
    dh = head_dim(c)
    base = 1.0 / (c["rope_theta"] ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh))
    s = c.get("rope_scaling")
    if not s:
        return base
    kind = s.get("rope_type", s.get("type"))
    if kind == "linear":
        return base / s["factor"]
    # HF _compute_llama3_parameters
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / base
    scaled = torch.where(wavelen > low_wavelen, base / factor, base)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(c, w, tokens):
    t = len(tokens)
    h, hkv, dh = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    eps = c["rms_norm_eps"]
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq(c))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = n @ w[p + f"self_attn.{name}.weight"].T
            b = w.get(p + f"self_attn.{name}.bias")
            return y if b is None else y + b

        q = proj("q_proj").view(t, h, dh).transpose(0, 1)
        k = proj("k_proj").view(t, hkv, dh).transpose(0, 1)
        v = proj("v_proj").view(t, hkv, dh).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(h // hkv, dim=0)
        v = v.repeat_interleave(h // hkv, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(t, h * dh)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        n = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = n @ w[p + "mlp.gate_proj.weight"].T
        up = n @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def write_safetensors(path, tensors, dtype):
    names = list(tensors)
    header, blobs, offset = {}, [], 0
    for name in names:
        t = tensors[name].to(dtype).contiguous()
        if dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
            code = "BF16"
        elif dtype == torch.float16:
            raw = t.numpy().tobytes()
            code = "F16"
        else:
            raw = t.numpy().tobytes()
            code = "F32"
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for b in blobs:
            fh.write(b)


def main():
    for index, (name, overrides) in enumerate(VARIANTS.items()):
        c = dict(BASE, **overrides)
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(c.get("torch_dtype"), torch.float32)
        c.setdefault("torch_dtype", "float32")
        w = make_weights(c, seed=1000 + index)
        # The reference sees exactly the stored weights: rounded to the file's dtype, then widened to float64.
        w = {k: v.to(dtype).to(torch.float64) for k, v in w.items()}
        out = os.path.join(HERE, name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as fh:
            json.dump(c, fh, indent=1)
        write_safetensors(os.path.join(out, "model.safetensors"), w, dtype)
        logits = forward(c, w, TOKENS)
        with open(os.path.join(out, "reference.json"), "w") as fh:
            json.dump({"tokens": TOKENS, "logits": logits.tolist(), "torch": torch.__version__}, fh)
        print(name, tuple(logits.shape), f"{logits.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
