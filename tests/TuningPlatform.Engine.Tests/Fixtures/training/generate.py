"""PyTorch float64 references for the training engine (loss, every gradient, a 10-step AdamW trajectory).

For each variant directory: config.json and model.safetensors (seeded random fp32 weights), batch.json
(a packed B x T batch: tokens, targets with -100 where no loss is taken, positions restarting at 0 inside
each packed example) and gradients.safetensors (d mean-loss / d parameter for every parameter, HF keys)
with the loss in its metadata. The model is written from Hugging Face's modeling_llama / modeling_qwen2
(RMSNorm, rotate-half RoPE, grouped-query attention via repeat_kv, SwiGLU, tied or untied head, q/k/v
biases) with a block-diagonal causal mask built from the positions, as padding-free packing does;
autograd gives the gradients.

lora-gqa-tied/: a PEFT adapter directory (rsLoRA r=4 on q, v, gate, down; B not zero) for gqa-tied, and
gradients.safetensors with the loss on gqa-tied's batch and d loss / d lora_A, lora_B (PEFT key names).

trajectory.json (variant gqa-tied): 10 optimizer steps, each accumulating two micro-batches (loss summed
over both and divided by their target tokens), torch.nn.utils.clip_grad_norm_(max_norm=1.0), torch.optim.AdamW
(lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1 on matrices only, none on norms/biases) and
HF's cosine schedule with 3 warmup steps (lambda(s) = s / 3 during warmup). Records each step's loss (before
the update), the gradient norm before clipping and the learning rate used.

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
torch.set_default_dtype(torch.float64)

BASE = dict(
    model_type="llama", hidden_size=24, intermediate_size=44, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, vocab_size=53, max_position_embeddings=64,
    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, hidden_act="silu",
    bos_token_id=1, eos_token_id=2, attention_bias=False, torch_dtype="float32",
)
VARIANTS = {
    "gqa-tied": dict(),
    "qwen2-untied": dict(model_type="qwen2", num_key_value_heads=1, tie_word_embeddings=False, rope_theta=1000000.0),
}
B, T = 2, 13


def head_dim(c):
    return c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])


def make_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    h, hkv, dh = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)

    def rnd(*shape, scale):
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

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
    # The reference sees exactly the stored fp32 weights.
    return {k: t.float().double() for k, t in w.items()}


def make_batch(c, seed):
    """Row 0 packs three examples (5 + 4 + 3 tokens, 1 pad); row 1 holds one 13-token example.
    Prompts: the first 2 tokens of each example carry no loss."""
    g = torch.Generator().manual_seed(seed)
    lengths = [[5, 4, 3], [13]]
    tokens, targets, positions = [], [], []
    for row in lengths:
        tok, tgt, pos = [], [], []
        for n in row:
            ex = torch.randint(3, c["vocab_size"], (n,), generator=g).tolist()
            for i in range(n):
                tok.append(ex[i])
                pos.append(i)
                nxt = i + 1
                tgt.append(ex[nxt] if nxt < n and nxt >= 2 else -100)
        while len(tok) < T:
            pos.append(len(tok) - sum(row))
            tok.append(0)
            tgt.append(-100)
        tokens += tok
        targets += tgt
        positions += pos
    return dict(batch=B, seq=T, tokens=tokens, targets=targets, positions=positions)


def inv_freq(c):
    dh = head_dim(c)
    return 1.0 / (c["rope_theta"] ** (torch.arange(0, dh, 2) / dh))


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward_loss(c, w, batch, reduction="mean", lora=None):
    b, t = batch["batch"], batch["seq"]
    h, hkv, dh = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    eps = c["rms_norm_eps"]
    tokens = torch.tensor(batch["tokens"]).view(b, t)
    pos = torch.tensor(batch["positions"]).view(b, t)
    targets = torch.tensor(batch["targets"])
    # Example start of each row = t - pos; key s is visible from query r iff start(r) <= s <= r.
    idx = torch.arange(t)
    start = idx.view(1, t) - pos
    visible = (idx.view(1, 1, t) <= idx.view(1, t, 1)) & (idx.view(1, 1, t) >= start.view(b, t, 1))
    mask = torch.zeros(b, 1, t, t).masked_fill(~visible.view(b, 1, t, t), float("-inf"))
    freqs = pos.double().unsqueeze(-1) * inv_freq(c)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)
    x = w["model.embed_tokens.weight"][tokens]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(name, block="self_attn", inp=None):
            inp = n if inp is None else inp
            y = inp @ w[p + f"{block}.{name}.weight"].T
            bias = w.get(p + f"{block}.{name}.bias")
            y = y if bias is None else y + bias
            if lora is not None and name in lora["targets"]:
                # PEFT lora.Linear: result + lora_B(lora_A(dropout(x))) * scaling (no dropout here).
                key = f"base_model.model.model.layers.{i}.{block}.{name}"
                y = y + (inp @ lora["weights"][key + ".lora_A.weight"].T) @ lora["weights"][key + ".lora_B.weight"].T * lora["scale"]
            return y

        q = proj("q_proj").view(b, t, h, dh).transpose(1, 2)
        k = proj("k_proj").view(b, t, hkv, dh).transpose(1, 2)
        v = proj("v_proj").view(b, t, hkv, dh).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(h // hkv, dim=1)
        v = v.repeat_interleave(h // hkv, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + mask, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, t, h * dh)
        x = x + proj("o_proj", inp=o)
        n = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        hidden = torch.nn.functional.silu(proj("gate_proj", "mlp")) * proj("up_proj", "mlp")
        x = x + proj("down_proj", "mlp", inp=hidden)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    logits = (x @ head.T).view(b * t, -1)
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction=reduction)


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.float().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for b in blobs:
            fh.write(b)


def trajectory(c, w0):
    w = {k: v.clone().requires_grad_(True) for k, v in w0.items()}
    decay = [v for k, v in w.items() if v.dim() >= 2]
    no_decay = [v for k, v in w.items() if v.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.1), dict(params=no_decay, weight_decay=0.0)],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    steps, warmup = 10, 3

    def lam(s):
        if s < warmup:
            return s / max(1, warmup)
        progress = (s - warmup) / max(1, steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    micro = [make_batch(c, seed=100 + i) for i in range(2 * steps)]
    losses, norms, lrs = [], [], []
    for s in range(steps):
        opt.zero_grad()
        pair = micro[2 * s: 2 * s + 2]
        count = sum(sum(1 for x in m["targets"] if x != -100) for m in pair)
        total = 0.0
        for m in pair:
            loss = forward_loss(c, w, m, reduction="sum") / count
            loss.backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(list(w.values()), max_norm=1.0)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(total)
        norms.append(norm.item())
    return dict(steps=steps, warmup=warmup, lr=1e-2, weight_decay=0.1, max_grad_norm=1.0, micro_batches=micro,
                losses=losses, grad_norms=norms, learning_rates=lrs, torch=torch.__version__)


LORA = dict(r=4, lora_alpha=8.0, use_rslora=True, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"])


def lora_fixture(c, w, batch):
    """A LoRA adapter (rsLoRA: scale alpha / sqrt(r) = 4) on q, v, gate, down of gqa-tied with A Kaiming-uniform
    and B random (not zero, so both have gradients); the loss and d loss / d A, B with the base frozen."""
    g = torch.Generator().manual_seed(77)
    weights = {}
    for i in range(c["num_hidden_layers"]):
        for name in LORA["target_modules"]:
            block = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            base = w[f"model.layers.{i}.{block}.{name}.weight"]
            key = f"base_model.model.model.layers.{i}.{block}.{name}"
            bound = 1 / math.sqrt(base.shape[1])
            weights[key + ".lora_A.weight"] = ((torch.rand(LORA["r"], base.shape[1], generator=g) * 2 - 1) * bound).float().double()
            weights[key + ".lora_B.weight"] = ((torch.rand(base.shape[0], LORA["r"], generator=g) * 2 - 1) * 0.2).float().double()
    out = os.path.join(HERE, "lora-gqa-tied")
    os.makedirs(out, exist_ok=True)
    config = dict(peft_type="LORA", task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=0.0,
                  target_modules=LORA["target_modules"], use_rslora=True, base_model_name_or_path="gqa-tied", bias="none",
                  inference_mode=True)
    with open(os.path.join(out, "adapter_config.json"), "w") as fh:
        json.dump(config, fh, indent=1)
    write_safetensors(os.path.join(out, "adapter_model.safetensors"), weights, {"format": "pt"})
    params = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    lora = dict(targets=LORA["target_modules"], weights=params, scale=LORA["lora_alpha"] / math.sqrt(LORA["r"]))
    loss = forward_loss(c, w, batch, lora=lora)
    loss.backward()
    write_safetensors(os.path.join(out, "gradients.safetensors"), {k: v.grad for k, v in params.items()},
                      {"format": "pt", "loss": repr(loss.item()), "torch": torch.__version__})
    print("lora-gqa-tied", f"loss {loss.item():.6f}")


def main():
    for index, (name, overrides) in enumerate(VARIANTS.items()):
        c = dict(BASE, **overrides)
        w = make_weights(c, seed=2000 + index)
        out = os.path.join(HERE, name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as fh:
            json.dump(c, fh, indent=1)
        write_safetensors(os.path.join(out, "model.safetensors"), w, {"format": "pt"})
        batch = make_batch(c, seed=7 + index)
        with open(os.path.join(out, "batch.json"), "w") as fh:
            json.dump(batch, fh)
        params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        loss = forward_loss(c, params, batch)
        loss.backward()
        grads = {k: v.grad for k, v in params.items()}
        write_safetensors(os.path.join(out, "gradients.safetensors"), grads,
                          {"format": "pt", "loss": repr(loss.item()), "torch": torch.__version__})
        print(name, f"loss {loss.item():.6f}", f"max |grad| {max(g.abs().max().item() for g in grads.values()):.4f}")
        if name == "gqa-tied":
            traj = trajectory(c, w)
            with open(os.path.join(HERE, "trajectory.json"), "w") as fh:
                json.dump(traj, fh)
            print("trajectory", [round(x, 5) for x in traj["losses"]])
            lora_fixture(c, w, batch)


if __name__ == "__main__":
    main()
