"""PyTorch side of the training benchmark: the same Llama training step as ours, random weights.

Run by TuningPlatform.Bench.Training with Debian's python3 and python3-torch (1.13), 2 threads,
OMP_WAIT_POLICY=PASSIVE and OPENBLAS_CORETYPE unset (DESIGN.md section 8). Prints one JSON line.

The model is Hugging Face's LlamaForCausalLM math in eager mode (RMSNorm, rotate-half RoPE, causal softmax
attention, SwiGLU, tied head), the loss is cross-entropy on every next token (full B x T x V logits, as HF
computes it), then torch.optim.AdamW steps. Methods:
  full   every weight trained
  lora   frozen fp32 base; LoRA A/B (Kaiming-uniform A, zero B) on the projections named by --targets
  qlora  as lora, but each frozen projection is held as NF4 codes + per-64 absmax and dequantised inside
         forward (what bitsandbytes does on CPU: dequantise, then an fp32 matmul); PyTorch 1.13 has no NF4

  /usr/bin/python3 train_torch.py '{"dim":288,...}' --method lora --batch 8 --seq 256 --rank 16 --targets all
  /usr/bin/python3 train_torch.py gemm --size 1024
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
    -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236572, 1.0])


class Nf4Weight:
    """Blockwise NF4 (64 per block): 4-bit codes and an absmax per block; dequantised on every use."""

    def __init__(self, w):
        self.shape = w.shape
        blocks = w.reshape(-1, 64)
        self.absmax = blocks.abs().amax(dim=1, keepdim=True)
        scaled = blocks / self.absmax.clamp(min=1e-12)
        codes = (scaled.unsqueeze(-1) - NF4).abs().argmin(dim=-1).to(torch.uint8).reshape(-1)
        self.codes = codes[0::2] | (codes[1::2] << 4)

    def dequantize(self):
        lo = (self.codes & 0xF).long()
        hi = (self.codes >> 4).long()
        idx = torch.stack([lo, hi], dim=1).reshape(-1, 64)
        return (NF4[idx] * self.absmax).reshape(self.shape)

    def nbytes(self):
        return self.codes.numel() + 4 * self.absmax.numel()


class Linear:
    def __init__(self, w, method, rank, alpha, g):
        self.method = method
        self.lora = rank > 0
        if method == "full":
            self.w = w.requires_grad_()
        elif method == "qlora":
            self.w = Nf4Weight(w)
        else:
            self.w = w
        if self.lora:
            out_f, in_f = w.shape
            bound = 1 / math.sqrt(in_f)
            self.a = ((torch.rand(rank, in_f, generator=g) * 2 - 1) * bound).requires_grad_()
            self.b = torch.zeros(out_f, rank).requires_grad_()
            self.scale = alpha / rank

    def params(self):
        if self.method == "full":
            return [self.w]
        return [self.a, self.b] if self.lora else []

    def __call__(self, x):
        w = self.w.dequantize() if self.method == "qlora" else self.w
        y = F.linear(x, w)
        if self.lora:
            y = y + F.linear(F.linear(x, self.a), self.b) * self.scale
        return y


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Llama:
    def __init__(self, c, method, rank, alpha, targets, seq):
        g = torch.Generator().manual_seed(0)
        d, f, v = c["dim"], c["hidden"], c["vocab"]
        self.h, self.hkv = c["heads"], c["kv_heads"]
        self.dh = d // self.h
        full = method == "full"

        def w(*shape):
            return torch.randn(*shape, generator=g) * 0.02

        def lin(name, *shape):
            r = rank if method != "full" and name in targets else 0
            return Linear(w(*shape), method, r, alpha, g)

        self.emb = w(v, d).requires_grad_(full)
        self.layers = []
        for _ in range(c["layers"]):
            self.layers.append(dict(
                n1=torch.ones(d).requires_grad_(full), n2=torch.ones(d).requires_grad_(full),
                q=lin("q_proj", self.h * self.dh, d), k=lin("k_proj", self.hkv * self.dh, d), v=lin("v_proj", self.hkv * self.dh, d),
                o=lin("o_proj", d, self.h * self.dh), gate=lin("gate_proj", f, d), up=lin("up_proj", f, d), down=lin("down_proj", d, f)))
        self.norm = torch.ones(d).requires_grad_(full)
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, self.dh, 2, dtype=torch.float32) / self.dh))
        emb = torch.cat([torch.outer(torch.arange(seq, dtype=torch.float32), inv)] * 2, dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.mask = torch.full((seq, seq), float("-inf")).triu(1)

    def params(self):
        ps = []
        if self.emb.requires_grad:
            ps += [self.emb, self.norm]
        for L in self.layers:
            if L["n1"].requires_grad:
                ps += [L["n1"], L["n2"]]
            for key in ("q", "k", "v", "o", "gate", "up", "down"):
                ps += L[key].params()
        return ps

    def base_bytes(self):
        total = 0
        for L in self.layers:
            for key in ("q", "k", "v", "o", "gate", "up", "down"):
                lw = L[key].w
                total += lw.nbytes() if isinstance(lw, Nf4Weight) else lw.numel() * 4
        return total

    def loss(self, tokens, targets):
        b, t = tokens.shape
        x = F.embedding(tokens, self.emb)
        group = self.h // self.hkv
        for L in self.layers:
            xn = rms_norm(x, L["n1"])
            q = L["q"](xn).view(b, t, self.h, self.dh).transpose(1, 2)
            k = L["k"](xn).view(b, t, self.hkv, self.dh).transpose(1, 2)
            v = L["v"](xn).view(b, t, self.hkv, self.dh).transpose(1, 2)
            q = q * self.cos[:t] + rotate_half(q) * self.sin[:t]
            k = k * self.cos[:t] + rotate_half(k) * self.sin[:t]
            if group > 1:
                k = k.repeat_interleave(group, dim=1)
                v = v.repeat_interleave(group, dim=1)
            s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh) + self.mask[:t, :t]
            a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(b, t, -1)
            x = x + L["o"](a)
            xn = rms_norm(x, L["n2"])
            x = x + L["down"](F.silu(L["gate"](xn)) * L["up"](xn))
        logits = F.linear(rms_norm(x, self.norm), self.emb)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def train(args):
    c = json.loads(args.config)
    targets = {"qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"]}.get(
        args.targets, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = Llama(c, args.method, args.rank, 2.0 * args.rank, targets, args.seq)
    params = model.params()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(3, c["vocab"], (args.batch, args.seq + 1), generator=g)
    tokens, targets_t = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(tokens, targets_t)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    step_s = statistics.median(times)
    print(json.dumps({
        "tok_s": args.batch * args.seq / step_s,
        "step_s": step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable": sum(p.numel() for p in params),
        "base_bytes": model.base_bytes(),
        "first_loss": losses[0],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


def gemm(args):
    n = args.size
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        torch.mm(a, b)
        reps += 1
    secs = time.perf_counter() - t0
    print(json.dumps({"gflops": 2 * n ** 3 * reps / secs / 1e9, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--method", choices=["full", "lora", "qlora"], default="full")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--targets", default="all")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gemm(a) if a.config == "gemm" else train(a)
