#!/usr/bin/env python3
"""Makes the committed PyTorch fixtures of the DiT forward pass (tests/fixtures/dit_torch_*.safetensors)
that tests/test_dit_torch.c checks difftune's dit_forward against.

A PyTorch DiT written for the test from shared/reference/dit.md with torch.nn.functional (conv2d,
layer_norm, silu, gelu with the tanh approximation, softmax), run in float64 on weights made by
tests/tools/gen_dit in the official layout. The weights are not committed: gen_dit makes them
bit-identically from its arguments, which each fixture records (with the weights' sum and sum of
squares, so the test can tell a changed generator from a broken DiT). pos_embed is computed here
from dit.md and checked against the file's. A fixture holds:
  x      (B, C, H, W) float32    the input (noised latents)
  t, y   (B) int32               timesteps and labels (y = num_classes: the null class)
  block0 (B, N, D) float32       the tokens after block 0
  out    (B, C_out, H, W) float32 the whole forward (epsilon, then the variance channels)
and metadata gen_dit_args, num_heads, weights_sum, weights_sumsq, torch_version.

Needs PyTorch (Debian python3-torch); the tests never run this script.
Usage: torch_dit.py --gen-dit BUILD/tests/tools/gen_dit [--out-dir tests/fixtures]
"""
import argparse
import math
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from st_io import read_safetensors, write_safetensors

FREQ_DIM = 256
LN_EPS = 1e-6

FIXTURES = [
    # name, gen_dit arguments, heads, timesteps, labels, input seed
    ("dit_torch_small",
     "--layout official --hidden 64 --heads 4 --patch 2 --depth 2 --input-size 8 --in-channels 4 "
     "--classes 10 --learn-sigma 1 --seed 21", 4, [0, 437, 999], [3, 9, 10], 201),
    ("dit_torch_xl",
     "--layout official --arch DiT-XL/2 --depth 1 --input-size 4 --classes 1000 --learn-sigma 1 "
     "--dtype bf16 --seed 22", 16, [12, 999], [207, 1000], 202),
]


def pos_embed(hidden, grid):
    """(N, D): the first D/2 dims encode the column, the last D/2 the row; each half is
    [sin(pos w_k) for k < D/4, then cos(pos w_k)], w_k = 1 / 10000^(k / (D/4))."""
    q = hidden // 4
    omega = 1.0 / 10000.0 ** (torch.arange(q, dtype=torch.float64) / q)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")
    def half(pos):
        a = pos.reshape(-1, 1) * omega[None, :]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)
    return torch.cat([half(cols), half(rows)], dim=1)


def timestep_frequencies(t):
    """(B, 256): [cos(t f_k) for k < 128, then sin(t f_k)], f_k = exp(-ln(10000) k / 128)."""
    half = FREQ_DIM // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    a = t.to(torch.float64)[:, None] * f[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


def linear(w, name, x):
    return F.linear(x, w[name + ".weight"], w[name + ".bias"])


def modulate(x, shift, scale):
    return F.layer_norm(x, (x.shape[-1],), eps=LN_EPS) * (1 + scale[:, None, :]) + shift[:, None, :]


def dit_forward(w, x, t, y, heads, pe_tol):
    """Returns (out (B, C_out, H, W), tokens after block 0 (B, N, D)); the file's pos_embed must
    be dit.md's within pe_tol (its dtype's rounding)."""
    wx = w["x_embedder.proj.weight"]
    D, C, p = wx.shape[0], wx.shape[1], wx.shape[2]
    B, _, H, W = x.shape
    h, g = H // p, W // p
    tok = F.conv2d(x, wx, w["x_embedder.proj.bias"], stride=p)          # (B, D, h, w)
    tok = tok.flatten(2).transpose(1, 2)                                 # (B, N, D), row-major
    pe = pos_embed(D, h)
    assert torch.allclose(pe, w["pos_embed"][0], rtol=0, atol=pe_tol), "the file's pos_embed is off dit.md"
    tok = tok + pe[None]
    temb = linear(w, "t_embedder.mlp.2", F.silu(linear(w, "t_embedder.mlp.0", timestep_frequencies(t))))
    c = temb + w["y_embedder.embedding_table.weight"][y]
    depth = 0
    while "blocks.%d.attn.qkv.weight" % depth in w:
        depth += 1
    hd = D // heads
    block0 = None
    for i in range(depth):
        pre = "blocks.%d." % i
        mod = linear(w, pre + "adaLN_modulation.1", F.silu(c))
        sh_msa, sc_msa, g_msa, sh_mlp, sc_mlp, g_mlp = mod.chunk(6, dim=1)
        a = modulate(tok, sh_msa, sc_msa)
        qkv = linear(w, pre + "attn.qkv", a).reshape(B, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                # (B, heads, N, hd)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, -1, D)
        tok = tok + g_msa[:, None, :] * linear(w, pre + "attn.proj", att)
        m = modulate(tok, sh_mlp, sc_mlp)
        m = linear(w, pre + "mlp.fc2", F.gelu(linear(w, pre + "mlp.fc1", m), approximate="tanh"))
        tok = tok + g_mlp[:, None, :] * m
        if i == 0:
            block0 = tok.clone()
    shift, scale = linear(w, "final_layer.adaLN_modulation.1", F.silu(c)).chunk(2, dim=1)
    o = linear(w, "final_layer.linear", modulate(tok, shift, scale))     # (B, N, p*p*C_out)
    c_out = o.shape[-1] // (p * p)
    o = o.reshape(B, h, g, p, p, c_out)
    o = torch.einsum("nhwpqc->nchpwq", o).reshape(B, c_out, h * p, g * p)
    return o, block0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen-dit", required=True)
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    args = ap.parse_args()
    for name, gen_args, heads, ts, ys, seed in FIXTURES:
        with tempfile.TemporaryDirectory() as tmp:
            wpath = os.path.join(tmp, "w.safetensors")
            subprocess.run([args.gen_dit, "--out", wpath] + gen_args.split(), check=True,
                           stdout=subprocess.DEVNULL)
            w = read_safetensors(wpath)
        params = [v for k, v in w.items() if k != "pos_embed"]
        wsum = float(sum(v.sum() for v in params))
        wsumsq = float(sum((v * v).sum() for v in params))
        C = w["x_embedder.proj.weight"].shape[1]
        size = int(gen_args.split("--input-size ")[1].split()[0])
        gen = torch.Generator().manual_seed(seed)
        x32 = torch.randn(len(ts), C, size, size, generator=gen, dtype=torch.float32)
        t = torch.tensor(ts, dtype=torch.int32)
        y = torch.tensor(ys, dtype=torch.int32)
        pe_tol = 4e-3 if "--dtype bf16" in gen_args else 1e-3 if "--dtype f16" in gen_args else 1e-6
        out, block0 = dit_forward(w, x32.to(torch.float64), t, y.long(), heads, pe_tol)
        meta = {"gen_dit_args": gen_args, "num_heads": str(heads), "weights_sum": repr(wsum),
                "weights_sumsq": repr(wsumsq), "torch_version": torch.__version__,
                "computed_in": "float64"}
        path = os.path.join(args.out_dir, name + ".safetensors")
        write_safetensors(path, [("x", x32.numpy()), ("t", t.numpy()), ("y", y.numpy()),
                                 ("block0", block0.to(torch.float32).numpy()),
                                 ("out", out.to(torch.float32).numpy())], meta)
        print("%s: %d bytes, out max |.| %.4g" % (path, os.path.getsize(path), float(out.abs().max())))


if __name__ == "__main__":
    main()
