"""PyTorch side of the engine benchmark: the same Llama forward with a KV cache, random weights.

Run by TuningPlatform.Bench.Engine with Debian's python3 and python3-torch (1.13), 2 threads,
OMP_WAIT_POLICY=PASSIVE and OPENBLAS_CORETYPE unset (DESIGN.md section 8). Prints one JSON line.

  /usr/bin/python3 bench_torch.py generate '{"dim":288,...}' --prompt 128 --new 256 --batch 1
  /usr/bin/python3 bench_torch.py gemm --size 1024
"""
import argparse
import json
import resource
import time

import torch


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(head_dim, positions, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(positions, dtype=torch.float32), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Llama:
    """HF LlamaForCausalLM's math (rotate-half RoPE, GQA, SwiGLU), eager, with a preallocated KV cache."""

    def __init__(self, c, max_seq, batch, dtype):
        g = torch.Generator().manual_seed(0)
        self.c = c
        d, f, v = c["dim"], c["hidden"], c["vocab"]
        self.h, self.hkv = c["heads"], c["kv_heads"]
        self.dh = d // self.h

        def w(*shape):
            return (torch.randn(*shape, generator=g) * 0.02).to(dtype)

        self.emb = w(v, d)
        self.layers = []
        for _ in range(c["layers"]):
            self.layers.append(dict(
                n1=torch.ones(d), wq=w(self.h * self.dh, d), wk=w(self.hkv * self.dh, d), wv=w(self.hkv * self.dh, d),
                wo=w(d, self.h * self.dh), n2=torch.ones(d), w1=w(f, d), w3=w(f, d), w2=w(d, f)))
        self.norm = torch.ones(d)
        self.out = self.emb if c.get("tied", True) else w(v, d)
        self.cos, self.sin = rope_tables(self.dh, max_seq, c.get("rope_theta", 10000.0))
        self.k = [torch.zeros(batch, self.hkv, max_seq, self.dh) for _ in self.layers]
        self.v = [torch.zeros(batch, self.hkv, max_seq, self.dh) for _ in self.layers]
        self.dtype = dtype

    def linear(self, x, w):
        return torch.matmul(x, w.t().float() if w.dtype != torch.float32 else w.t())

    def forward(self, tokens, start):
        b, t = tokens.shape
        x = self.emb[tokens].float()
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]
        group = self.h // self.hkv
        mask = None
        if t > 1:
            mask = torch.full((t, start + t), float("-inf")).triu(start + 1)
        for i, L in enumerate(self.layers):
            xn = rms_norm(x, L["n1"], 1e-5)
            q = self.linear(xn, L["wq"]).view(b, t, self.h, self.dh).transpose(1, 2)
            k = self.linear(xn, L["wk"]).view(b, t, self.hkv, self.dh).transpose(1, 2)
            v = self.linear(xn, L["wv"]).view(b, t, self.hkv, self.dh).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            self.k[i][:, :, start:start + t] = k
            self.v[i][:, :, start:start + t] = v
            keys = self.k[i][:, :, :start + t].repeat_interleave(group, dim=1)
            vals = self.v[i][:, :, :start + t].repeat_interleave(group, dim=1)
            s = torch.matmul(q, keys.transpose(2, 3)) / (self.dh ** 0.5)
            if mask is not None:
                s = s + mask
            a = torch.matmul(torch.softmax(s, dim=-1), vals).transpose(1, 2).reshape(b, t, -1)
            x = x + self.linear(a, L["wo"])
            xn = rms_norm(x, L["n2"], 1e-5)
            x = x + self.linear(torch.nn.functional.silu(self.linear(xn, L["w1"])) * self.linear(xn, L["w3"]), L["w2"])
        x = rms_norm(x[:, -1], self.norm, 1e-5)
        return self.linear(x, self.out)


def generate(args):
    c = json.loads(args.config)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = Llama(c, args.prompt + args.new, args.batch, dtype)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, c["vocab"], (args.batch, args.prompt), generator=g)
    with torch.no_grad():
        # Warm-up on a short prompt so one-time costs do not land in the timing.
        model.forward(prompt[:, :8], 0)
        t0 = time.perf_counter()
        logits = model.forward(prompt, 0)
        nxt = logits.argmax(-1, keepdim=True)
        ttft = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(args.new - 1):
            logits = model.forward(nxt, args.prompt + i)
            nxt = logits.argmax(-1, keepdim=True)
        decode = time.perf_counter() - t1
    print(json.dumps({
        "ttft_s": ttft,
        "decode_tok_s": args.batch * (args.new - 1) / decode,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
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
    p.add_argument("mode", choices=["generate", "gemm"])
    p.add_argument("config", nargs="?")
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    generate(a) if a.mode == "generate" else gemm(a)
