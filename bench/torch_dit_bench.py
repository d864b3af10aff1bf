#!/usr/bin/env python3
"""torch_dit_bench.py — the PyTorch reference for bench_gpu_train and bench_gpu_sample.

The same DiT (adaLN-Zero blocks, learned sigma; DiT-XL/2 by default) and the same work as the C
benchmarks, written the way a PyTorch user would, so difftune's numbers have a baseline:

  train   one step = fresh timesteps and labels (the null class included), x0 copied from pinned
          host memory, eps ~ N(0, 1), x_t = q_sample(x0, t, eps), forward under bf16 autocast
          (fp32 master weights), loss = mean over the batch of [mse(eps, eps_hat) + vb] where vb is
          the reference's variational bound term in bits per dim (KL of the true posterior from the
          model's, mean from a detached eps_hat; discretised Gaussian NLL at t = 0; --no-vb drops
          it), backward, AdamW (fused on CUDA; lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay),
          EMA 0.9999 with torch._foreach_lerp_, and a synchronize at the end of the step (the C
          step downloads its losses, which synchronizes too).
  sample  DDIM (eta 0) or ancestral DDPM over the respaced chain t_k = round(k (T-1)/(S-1)), with
          classifier-free guidance on a [cond; null] batch (guidance on all eps channels, the
          variance channels from the conditional half), under bf16 autocast; the sample stays fp32.

Weights are random and non-zero (xavier-variance normals, label table N(0, 0.02), biases
N(0, 1e-3)) as in the C benchmarks: the published adaLN-Zero init would make the output zero.
FLOPs are counted analytically exactly as bench/bench_gpu_common.h does (a training step is 3x the
forward); the matmul ceiling is measured here with torch (F.linear at the run's dtype: bf16 in,
bf16 out, fp32 accumulation; fp32 without TF32), and MFU is against it. The JSON keys are the C
benchmarks' keys plus a few torch-only ones (torch_version, compile_seconds, error, vb).

Only torch and the standard library. Runs on a CPU at toy sizes, in fp32:
    python3 bench/torch_dit_bench.py train --device cpu --arch DiT-S/8 --image 8 --batch 4 --steps 2
Exit status: 0 done, 1 failed, 3 torch.compile failed (the JSON records the error).
"""
import argparse
import contextlib
import json
import math
import platform
import resource
import statistics
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
T_STEPS = 1000
FREQ_DIM = 256
GIB = 1024.0 ** 3


def parse_arch(name):
    """'DiT-XL/2' -> (depth, hidden, heads, patch)."""
    if not name.startswith("DiT-") or "/" not in name:
        raise SystemExit(f"unknown arch {name} (DiT-S|B|L|XL/2|4|8)")
    size, patch = name[4:].split("/", 1)
    if size not in ARCHS or patch not in ("2", "4", "8"):
        raise SystemExit(f"unknown arch {name} (DiT-S|B|L|XL/2|4|8)")
    return ARCHS[size] + (int(patch),)


# ---- the model --------------------------------------------------------------------------------

def timestep_embedding(t, dim=FREQ_DIM):
    """[cos(t f_k), sin(t f_k)], f_k = exp(-ln(10000) k / (dim/2)) (cos first, as DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def pos_embed_2d(dim, grid):
    """Fixed 2D sin-cos table (N, D) in float64: first D/2 dims the column, last D/2 the row."""
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def one(pos):
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([one(cols), one(rows)], dim=1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def attn(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(B, N, D))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.ada(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        h = self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), shift_mlp, scale_mlp)), approximate="tanh"))
        return x + gate_mlp.unsqueeze(1) * h


class DiT(nn.Module):
    def __init__(self, depth, hidden, heads, patch, image, channels, classes, learn_sigma=True):
        super().__init__()
        self.patch, self.channels = patch, channels
        self.out_channels = 2 * channels if learn_sigma else channels
        self.x_embedder = nn.Conv2d(channels, hidden, patch, stride=patch)
        self.t_mlp = nn.Sequential(nn.Linear(FREQ_DIM, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.y_table = nn.Embedding(classes + 1, hidden)  # last row: the null class
        self.register_buffer("pos_embed", pos_embed_2d(hidden, image // patch).float()[None], persistent=False)
        self.blocks = nn.ModuleList([Block(hidden, heads) for _ in range(depth)])
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final_linear = nn.Linear(hidden, patch * patch * self.out_channels)

    def forward(self, x, t, y):
        B, _, H, W = x.shape
        x = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_mlp(timestep_embedding(t)) + self.y_table(y)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_ada(c).chunk(2, dim=1)
        x = self.final_linear(modulate(self.final_norm(x), shift, scale))
        p, h, w, co = self.patch, H // self.patch, W // self.patch, self.out_channels
        x = x.reshape(B, h, w, p, p, co)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(B, co, H, W)


def init_random(model):
    """Random non-zero weights, as bench_init_params in bench/bench_gpu_common.h."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "y_table" in name:
                p.normal_(0.0, 0.02)
            elif p.ndim == 1:
                p.normal_(0.0, 1e-3)
            else:
                fan_out, fan_in = p.shape[0], p[0].numel()
                p.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))


def forward_flops(depth, hidden, patch, image, channels, learn_sigma):
    """Analytic forward FLOPs of one image (2 per multiply-add), as bench_dit_forward_flops."""
    N, D, L = (image // patch) ** 2, float(hidden), float(depth)
    patch_dim, out_dim = channels * patch * patch, patch * patch * (2 * channels if learn_sigma else channels)
    per_token = patch_dim * D + L * (3 * D * D + D * D + 8 * D * D) + D * out_dim
    attention = L * 2.0 * N * N * D
    per_image = FREQ_DIM * D + D * D + L * 6 * D * D + 2 * D * D
    return 2.0 * (N * per_token + attention + per_image)


# ---- diffusion --------------------------------------------------------------------------------

def base_alphas_cumprod():
    betas = torch.linspace(1e-4, 0.02, T_STEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def chain_tables(alphas_cumprod):
    """Float64 tables of a (possibly respaced) chain, from its alpha_bar."""
    ac = alphas_cumprod
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    betas = 1.0 - ac / ac_prev
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    post_logvar = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
    return {
        "sqrt_ac": ac.sqrt(), "sqrt_1m_ac": (1.0 - ac).sqrt(),
        "sqrt_recip_ac": (1.0 / ac).sqrt(), "sqrt_recipm1_ac": (1.0 / ac - 1.0).sqrt(),
        "coef1": betas * ac_prev.sqrt() / (1.0 - ac), "coef2": (1.0 - ac_prev) * (1.0 - betas).sqrt() / (1.0 - ac),
        "post_logvar": post_logvar, "log_betas": torch.log(betas), "ac_prev": ac_prev,
    }


def approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_nll(x, means, log_scales):
    """-log p(x) of x in [-1, 1] under a Gaussian discretised into 255 bins (nats)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
    return -log_probs


def training_losses(out, x0, xt, eps, t, tab, learn_sigma, vb):
    """Per-sample loss (B): mse over C,H,W [+ vb in bits per dim], as the C diffusion_loss op."""
    C = x0.shape[1]
    g = lambda name: tab[name][t].view(-1, 1, 1, 1)
    eps_hat = out[:, :C]
    mse = (eps - eps_hat).pow(2).mean(dim=(1, 2, 3))
    if not (learn_sigma and vb):
        return mse
    true_mean = g("coef1") * x0 + g("coef2") * xt
    true_logvar = g("post_logvar")
    frac = (out[:, C:] + 1.0) / 2.0
    model_logvar = frac * g("log_betas") + (1.0 - frac) * true_logvar
    x0_pred = g("sqrt_recip_ac") * xt - g("sqrt_recipm1_ac") * eps_hat.detach()
    model_mean = g("coef1") * x0_pred + g("coef2") * xt
    kl = 0.5 * (-1.0 + model_logvar - true_logvar + torch.exp(true_logvar - model_logvar)
                + (true_mean - model_mean).pow(2) * torch.exp(-model_logvar))
    kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
    nll = discretized_gaussian_nll(x0, model_mean, 0.5 * model_logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
    return mse + torch.where(t == 0, nll, kl)


# ---- measurement helpers ----------------------------------------------------------------------

class Timer:
    """Wall time of a region: cudaEvents + synchronize on CUDA, perf_counter elsewhere."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0
        return False


def matmul_ceiling(device, dtype, M, D):
    """Best F.linear TFLOP/s over a square product and the model's four linear shapes."""
    square = 8192 if device.type == "cuda" else 2048
    shapes = [(square, square, square), (M, 3 * D, D), (M, D, D), (M, 4 * D, D), (M, D, 4 * D)]
    best_sq, best_model = 0.0, 0.0
    for i, (m, n, k) in enumerate(shapes):
        try:
            a = torch.randn(m, k, device=device, dtype=dtype)
            w = torch.randn(n, k, device=device, dtype=dtype)
            reps, trials = (5, 5) if device.type == "cuda" else (1, 3)
            for _ in range(2):
                F.linear(a, w)
            best = None
            for _ in range(trials):
                with Timer(device) as tm:
                    for _ in range(reps):
                        F.linear(a, w)
                per = tm.seconds / reps
                best = per if best is None or per < best else best
            tflops = 2.0 * m * n * k / best * 1e-12
            del a, w
        except RuntimeError as e:  # out of memory on a small device: skip the shape
            print(f"matmul ceiling: {m}x{n}x{k} skipped: {e}", file=sys.stderr)
            continue
        if i == 0:
            best_sq = tflops
        else:
            best_model = max(best_model, tflops)
    name = str(dtype).replace("torch.", "")
    method = (f"torch F.linear {name}, best of 5x5 (cudaEvents)" if device.type == "cuda"
              else f"torch F.linear {name}, best of 3")
    return {"matmul_ceiling_tflops": max(best_sq, best_model), "matmul_ceiling_square_tflops": best_sq,
            "matmul_ceiling_model_tflops": best_model, "matmul_ceiling_method": method, "square": square}


def device_info(device):
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.name, props.total_memory / GIB
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name, 0.0


def memory_fields(device):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    if device.type == "cuda":
        alloc = torch.cuda.max_memory_allocated(device) / GIB
        reserved = torch.cuda.max_memory_reserved(device) / GIB
        return {"peak_memory_gib": alloc, "allocated_memory_gib": alloc, "device_memory_gib": reserved,
                "host_rss_gib": rss}
    return {"peak_memory_gib": rss, "allocated_memory_gib": 0.0, "device_memory_gib": 0.0, "host_rss_gib": rss}


# ---- the two modes ----------------------------------------------------------------------------

def build(args, device):
    depth, hidden, heads, patch = parse_arch(args.arch)
    # Built on the device where torch supports it (no minutes-long CPU init of a large model).
    where = device if hasattr(device, "__enter__") else contextlib.nullcontext()
    with where:
        model = DiT(depth, hidden, heads, patch, args.image, args.channels, args.classes, bool(args.learn_sigma))
    model = model.to(device)
    init_random(model)
    flops = forward_flops(depth, hidden, patch, args.image, args.channels, bool(args.learn_sigma))
    return model, flops, hidden, (args.image // patch) ** 2


def maybe_compile(model, args):
    return torch.compile(model) if args.compile else model


def run_train(args, device, dtype, rec):
    model, fwd_flops, hidden, tokens = build(args, device)
    rec["params"] = sum(p.numel() for p in model.parameters())
    fmodel = maybe_compile(model, args)
    params = list(model.parameters())
    try:
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                fused=device.type == "cuda")
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    tab = {k: v.float().to(device) for k, v in chain_tables(base_alphas_cumprod()).items()}
    B = args.batch
    gen = torch.Generator().manual_seed(2)
    x0_host = torch.randn(B, args.channels, args.image, args.image, generator=gen)
    if device.type == "cuda":
        x0_host = x0_host.pin_memory()
        torch.cuda.reset_peak_memory_stats(device)
    autocast = dtype == torch.bfloat16

    def step():
        x0 = x0_host.to(device, non_blocking=True)
        t = torch.randint(0, T_STEPS, (B,), device=device)
        y = torch.randint(0, args.classes + 1, (B,), device=device)
        eps = torch.randn_like(x0)
        xt = tab["sqrt_ac"][t].view(-1, 1, 1, 1) * x0 + tab["sqrt_1m_ac"][t].view(-1, 1, 1, 1) * eps
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = fmodel(xt, t, y)
        loss = training_losses(out.float(), x0, xt, eps, t, tab, args.learn_sigma, args.vb).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - 0.9999)
        return loss.detach()

    times, loss = [], None
    t0 = time.perf_counter()
    for i in range(args.warmup + args.steps):
        with Timer(device) as tm:
            loss = step()
        if i == 0:
            rec["compile_seconds"] = time.perf_counter() - t0 if args.compile else 0.0
        if i >= args.warmup:
            times.append(tm.seconds)
    med = statistics.median(times)
    step_flops = 3.0 * fwd_flops * B
    rec.update({
        "steps": args.steps, "warmup": args.warmup, "loss": float(loss.item()),
        "step_ms_median": med * 1e3, "step_ms_mean": statistics.mean(times) * 1e3, "step_ms_min": min(times) * 1e3,
        "images_per_second": B / med, "gflop_per_image_forward": fwd_flops * 1e-9, "flop_per_step": step_flops,
        "tflops": step_flops / med * 1e-12,
    })
    rec.update(memory_fields(device))
    del step, opt, ema, fmodel, model, params
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return B * tokens, hidden


def run_sample(args, device, dtype, rec):
    model, fwd_flops, hidden, tokens = build(args, device)
    rec["params"] = sum(p.numel() for p in model.parameters())
    model.eval()
    fmodel = maybe_compile(model, args)
    ddim = args.sampler == "ddim"
    steps = args.steps or (50 if ddim else 250)
    if steps < 2 or steps > T_STEPS:
        raise SystemExit("--steps must be 2..1000")
    B, C, guided = args.batch, args.channels, args.cfg != 1.0
    MB = 2 * B if guided else B
    base = base_alphas_cumprod()
    labels = torch.tensor([(i * 97) % args.classes for i in range(B)], device=device)
    y = torch.cat([labels, torch.full_like(labels, args.classes)]) if guided else labels
    autocast = dtype == torch.bfloat16

    def chain(n):
        kept = sorted({math.floor(k * (T_STEPS - 1) / (n - 1) + 0.5) for k in range(n)})  # C round()
        tab = {k: v.tolist() for k, v in chain_tables(base[kept]).items()}
        return kept, tab

    def run(kept, tab, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(B, C, args.image, args.image, device=device, generator=gen)
        with torch.no_grad():
            for i in range(len(kept) - 1, -1, -1):
                xin = torch.cat([x, x]) if guided else x
                t = torch.full((MB,), kept[i], device=device, dtype=torch.long)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    out = fmodel(xin, t, y)
                out = out.float()
                if guided:
                    eps = out[B:, :C] + args.cfg * (out[:B, :C] - out[B:, :C])
                    rest = out[:B, C:]
                else:
                    eps, rest = out[:, :C], out[:, C:]
                x0_pred = tab["sqrt_recip_ac"][i] * x - tab["sqrt_recipm1_ac"][i] * eps
                if ddim:
                    ac_prev = tab["ac_prev"][i]
                    x = x0_pred * math.sqrt(ac_prev) + math.sqrt(1.0 - ac_prev) * eps
                else:
                    mean = tab["coef1"][i] * x0_pred + tab["coef2"][i] * x
                    if args.learn_sigma:
                        frac = (rest + 1.0) / 2.0
                        logvar = frac * tab["log_betas"][i] + (1.0 - frac) * tab["post_logvar"][i]
                    else:
                        logvar = torch.full_like(x, tab["post_logvar"][i])
                    if i > 0:
                        mean = mean + torch.exp(0.5 * logvar) * torch.randn(x.shape, device=device, generator=gen)
                    x = mean
        return x

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    warm = chain(2)
    for w in range(args.warmup):
        run(*warm, seed=w)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rec["compile_seconds"] = time.perf_counter() - t0 if args.compile else 0.0
    kept, tab = chain(steps)
    times, x = [], None
    for r in range(args.repeats):
        with Timer(device) as tm:
            x = run(kept, tab, seed=100 + r)
        times.append(tm.seconds)
    med = statistics.median(times)
    run_flops = fwd_flops * MB * len(kept)
    finite = bool(torch.isfinite(x).all().item())
    rec.update({
        "sampler": args.sampler, "sampling_steps": len(kept), "cfg": args.cfg, "model_batch": MB,
        "warmup": args.warmup, "repeats": args.repeats, "run_seconds_median": med,
        "run_seconds_mean": statistics.mean(times), "step_ms_median": med / len(kept) * 1e3,
        "images_per_second": B / med, "forwards_per_second": MB * len(kept) / med,
        "gflop_per_image_forward": fwd_flops * 1e-9, "flop_per_run": run_flops, "tflops": run_flops / med * 1e-12,
        "output_finite": finite, "output_std": float(x.float().std().item()) if finite else None,
    })
    rec.update(memory_fields(device))
    del run, fmodel, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return MB * tokens, hidden


def main():
    ap = argparse.ArgumentParser(description="PyTorch DiT reference benchmark (train | sample)")
    ap.add_argument("mode", choices=["train", "sample"])
    ap.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--arch", default="DiT-XL/2")
    ap.add_argument("--image", type=int, default=32)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--learn-sigma", type=int, default=1)
    ap.add_argument("--no-vb", dest="vb", action="store_false", help="train on the mse term alone")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None,
                    help="train: timed steps (default 20); sample: chain length (50 ddim, 250 ddpm)")
    ap.add_argument("--warmup", type=int, default=None, help="train: default 3 (5 with --compile); sample: 1")
    ap.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.mode == "train":
        args.steps = 20 if args.steps is None else args.steps
        args.warmup = (5 if args.compile else 3) if args.warmup is None else args.warmup
    else:
        args.steps = args.steps or 0
        args.warmup = 1 if args.warmup is None else args.warmup
    if args.batch < 1 or args.steps < 0 or args.warmup < 0 or args.repeats < 1:
        ap.error("batch, steps, warmup and repeats must be positive")
    if args.mode == "train" and args.steps < 1:
        ap.error("--steps must be at least 1")

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"{args.device}: torch sees no CUDA device")
    precision = args.precision if device.type == "cuda" else "fp32"  # CPU: fp32 only
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # fp32 means fp32: no TF32 in matmuls or the patch convolution (as the C fp32 mode).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name, total = device_info(device)
    rec = {"benchmark": args.mode, "impl": "torch", "device": str(device), "device_name": name,
           "precision": precision, "compile": bool(args.compile), "arch": args.arch, "image": args.image,
           "channels": args.channels, "classes": args.classes, "learn_sigma": args.learn_sigma,
           "batch": args.batch, "threads": torch.get_num_threads(), "torch_version": torch.__version__,
           "device_total_gib": total, "vb": bool(args.vb and args.learn_sigma), "error": None}
    status = 0
    try:
        rows, hidden = (run_train if args.mode == "train" else run_sample)(args, device, dtype, rec)
        rec.update(matmul_ceiling(device, dtype, rows, hidden))
        rec.pop("square", None)
        rec["mfu"] = rec["tflops"] / rec["matmul_ceiling_tflops"] if rec["matmul_ceiling_tflops"] else None
    except Exception as e:  # noqa: BLE001 - reported, not hidden: the JSON carries the error
        traceback.print_exc()
        rec["error"] = f"{type(e).__name__}: {e}"[:2000]
        status = 3 if args.compile else 1
        print(f"torch_dit_bench: {'torch.compile run' if args.compile else 'run'} failed: {rec['error'][:300]}",
              file=sys.stderr)

    if rec["error"] is None:
        what = (f"step {rec['step_ms_median']:.2f} ms median" if args.mode == "train" else
                f"{rec['sampler'].upper()}-{rec['sampling_steps']} cfg {args.cfg}: {rec['run_seconds_median']:.3f} s/run")
        print(f"torch_dit_bench {args.mode}: {args.arch} on {device} ({name}), {precision}"
              f"{', compiled' if args.compile else ''}, batch {args.batch}, {rec['params']} params")
        print(f"  {what}, {rec['images_per_second']:.3f} images/s, {rec['tflops']:.2f} TFLOP/s, "
              f"ceiling {rec['matmul_ceiling_tflops']:.2f} ({rec['matmul_ceiling_method']}), "
              f"MFU {100 * (rec['mfu'] or 0):.1f}%")
        print(f"  peak memory {rec['peak_memory_gib']:.2f} GiB"
              + (f", compile+warm-up {rec['compile_seconds']:.1f} s" if args.compile else "")
              + (f", last loss {rec['loss']:.4f}" if args.mode == "train" else
                 f", output finite {rec['output_finite']}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rec, f)
            f.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
