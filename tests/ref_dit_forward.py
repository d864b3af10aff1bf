#!/usr/bin/env python3
"""Independent float64 reference of the DiT forward pass, for tests/test_dit_reference.c.

Written from shared/reference/dit.md (the published DiT, facebookresearch/DiT models.py), not
from difftune's C code: the safetensors reader, the patch-embedding convolution, pos_embed,
the timestep and label embeddings, the adaLN-Zero blocks, the final layer and unpatchify are all
spelled out here with numpy in float64.

Usage: ref_dit_forward.py CHECKPOINT INPUTS_JSON HEADS OUT
  CHECKPOINT   a safetensors file holding the DiT state dict under the official names (other
               tensors, e.g. "train.*", are ignored); the architecture is read from the shapes.
  INPUTS_JSON  {"batch": B, "channels": C, "height": H, "width": W,
                "x": file of B*C*H*W little-endian float32 (B, C, H, W) row-major,
                "t": file of B little-endian int32 timesteps,
                "y": file of B little-endian int32 labels (num_classes = the null class)}
               file names are relative to the JSON file's directory.
  HEADS        attention heads (not recoverable from the shapes).
  OUT          written with the output (B, C_out, H, W) as little-endian float32.
Exits non-zero with a message on any inconsistency (bad shapes, pos_embed off the formula).
"""
import json
import math
import os
import re
import sys

import numpy as np

from ref_safetensors import read_safetensors

FREQ_DIM = 256
LN_EPS = 1e-6


def fail(msg):
    sys.stderr.write("ref_dit_forward.py: %s\n" % msg)
    sys.exit(1)


def infer_arch(w, heads):
    """Architecture dict from the state-dict shapes (see dit.md's table), validating every shape."""
    depth = 0
    while "blocks.%d.attn.qkv.weight" % depth in w:
        depth += 1
    if depth == 0:
        fail("no blocks.0.attn.qkv.weight: not a DiT state dict")
    stray = [k for k in w if re.match(r"blocks\.(\d+)\.", k) and int(k.split(".")[1]) >= depth]
    if stray:
        fail("block tensors beyond depth %d: %s" % (depth, stray[:3]))
    D, c_in, p, p2 = w["x_embedder.proj.weight"].shape
    if p != p2:
        fail("non-square patch kernel %dx%d" % (p, p2))
    N = w["pos_embed"].shape[1]
    grid = int(round(math.sqrt(N)))
    if grid * grid != N:
        fail("pos_embed has %d tokens, not a square grid" % N)
    out_dim = w["final_layer.linear.weight"].shape[0]
    if out_dim % (p * p):
        fail("final_layer.linear has %d outputs, not a multiple of p*p = %d" % (out_dim, p * p))
    if D % heads:
        fail("hidden %d is not divisible by %d heads" % (D, heads))
    arch = {"depth": depth, "D": D, "heads": heads, "p": p, "c_in": c_in, "grid": grid,
            "N": N, "image": grid * p, "c_out": out_dim // (p * p),
            "num_classes": w["y_embedder.embedding_table.weight"].shape[0] - 1}
    check_shapes(w, arch)
    return arch


def expected_shapes(a):
    """The DiT state-dict names and shapes of dit.md for architecture a."""
    D, p = a["D"], a["p"]
    s = {"pos_embed": (1, a["N"], D),
         "x_embedder.proj.weight": (D, a["c_in"], p, p), "x_embedder.proj.bias": (D,),
         "t_embedder.mlp.0.weight": (D, FREQ_DIM), "t_embedder.mlp.0.bias": (D,),
         "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
         "y_embedder.embedding_table.weight": (a["num_classes"] + 1, D),
         "final_layer.linear.weight": (p * p * a["c_out"], D),
         "final_layer.linear.bias": (p * p * a["c_out"],),
         "final_layer.adaLN_modulation.1.weight": (2 * D, D),
         "final_layer.adaLN_modulation.1.bias": (2 * D,)}
    for i in range(a["depth"]):
        for name, shape in (("attn.qkv", (3 * D, D)), ("attn.proj", (D, D)), ("mlp.fc1", (4 * D, D)),
                            ("mlp.fc2", (D, 4 * D)), ("adaLN_modulation.1", (6 * D, D))):
            s["blocks.%d.%s.weight" % (i, name)] = shape
            s["blocks.%d.%s.bias" % (i, name)] = (shape[0],)
    return s


def check_shapes(w, a):
    """Fails unless every DiT tensor of dit.md is present with its shape."""
    for name, shape in expected_shapes(a).items():
        if name not in w:
            fail("missing tensor %s" % name)
        if tuple(w[name].shape) != shape:
            fail("%s has shape %s, DiT expects %s" % (name, tuple(w[name].shape), shape))


def sincos_1d(pos, dim):
    """(M, dim): [sin(pos w_k) for k < dim/2, then cos(pos w_k)], w_k = 1 / 10000^(k / (dim/2))."""
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    arg = pos.astype(np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(arg), np.cos(arg)], axis=1)


def pos_embed_formula(grid, D):
    """(N, D) 2D sin-cos table of dit.md item 7: first D/2 dims the column w, last D/2 the row h."""
    h, w = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")  # token n = h*grid + w
    return np.concatenate([sincos_1d(w.reshape(-1), D // 2), sincos_1d(h.reshape(-1), D // 2)], axis=1)


def patch_embed(x, weight, bias):
    """Conv2d(x (B,C,H,W), weight (D,C,p,p), bias (D)), kernel = stride = p -> tokens (B, N, D).

    Computed as the convolution itself: a sum over kernel offsets (u, v) of the strided input
    pixels, so no patch flattening order is assumed. Tokens are the output map flattened (h, w).
    """
    B, C, H, W = x.shape
    D, _, p, _ = weight.shape
    out = np.zeros((B, D, H // p, W // p))
    for u in range(p):
        for v in range(p):
            out += np.einsum("dc,bcij->bdij", weight[:, :, u, v], x[:, :, u::p, v::p])
    out += bias[None, :, None, None]
    return out.reshape(B, D, -1).transpose(0, 2, 1)


def linear(x, w, prefix):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x):
    """LayerNorm over the last axis, no affine parameters, eps 1e-6."""
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS)


def modulate(x, shift, scale):
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


def timestep_embedding(t):
    """(B, 256) = [cos(t f_k) for k < 128, then sin(t f_k)], f_k = exp(-ln(10000) k / 128)."""
    half = FREQ_DIM // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
    arg = t.astype(np.float64)[:, None] * freqs[None, :]
    return np.concatenate([np.cos(arg), np.sin(arg)], axis=1)


def attention(x, w, prefix, heads):
    """Multi-head self-attention: qkv viewed as (N, 3, heads, head_dim), scaled softmax, proj."""
    B, N, D = x.shape
    hd = D // heads
    qkv = linear(x, w, prefix + ".qkv").reshape(B, N, 3, heads, hd).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, hd)
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    logits -= logits.max(axis=-1, keepdims=True)
    att = np.exp(logits)
    att /= att.sum(axis=-1, keepdims=True)
    out = (att @ v).transpose(0, 2, 1, 3).reshape(B, N, D)
    return linear(out, w, prefix + ".proj")


def dit_block(x, c, w, i, heads):
    """One adaLN-Zero block; chunks shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp."""
    pre = "blocks.%d" % i
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = np.split(
        linear(silu(c), w, pre + ".adaLN_modulation.1"), 6, axis=1)
    x = x + gate_msa[:, None, :] * attention(modulate(layer_norm(x), shift_msa, scale_msa),
                                             w, pre + ".attn", heads)
    h = modulate(layer_norm(x), shift_mlp, scale_mlp)
    h = linear(gelu_tanh(linear(h, w, pre + ".mlp.fc1")), w, pre + ".mlp.fc2")
    return x + gate_mlp[:, None, :] * h


def final_layer(x, c, w):
    """(shift, scale) = split(Linear(SiLU(c)), 2), shift first; LN; modulate; Linear."""
    shift, scale = np.split(linear(silu(c), w, "final_layer.adaLN_modulation.1"), 2, axis=1)
    return linear(modulate(layer_norm(x), shift, scale), w, "final_layer.linear")


def unpatchify(tokens, a):
    """(B, N, p*p*C_out) viewed as (B, h, w, p, p, C_out) -> (B, C_out, h*p, w*p)."""
    B, g, p, c = tokens.shape[0], a["grid"], a["p"], a["c_out"]
    x = tokens.reshape(B, g, g, p, p, c)
    x = np.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, c, g * p, g * p)


def dit_forward(w, a, x, t, y):
    """DiT(x (B,C,H,W), t (B), y (B)) -> (B, C_out, H, W), float64."""
    tokens = patch_embed(x, w["x_embedder.proj.weight"], w["x_embedder.proj.bias"])
    tokens = tokens + w["pos_embed"]
    t_emb = linear(silu(linear(timestep_embedding(t), w, "t_embedder.mlp.0")), w, "t_embedder.mlp.2")
    c = t_emb + w["y_embedder.embedding_table.weight"][y]
    for i in range(a["depth"]):
        tokens = dit_block(tokens, c, w, i, a["heads"])
    return unpatchify(final_layer(tokens, c, w), a)


def read_inputs(path, a):
    """x (B,C,H,W) float64, t (B) int64, y (B) int64 from the JSON sidecar and its raw blobs."""
    with open(path) as f:
        spec = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    B, C, H, W = spec["batch"], spec["channels"], spec["height"], spec["width"]
    if (C, H, W) != (a["c_in"], a["image"], a["image"]):
        fail("inputs are (%d, %d, %d), the checkpoint expects (%d, %d, %d)"
             % (C, H, W, a["c_in"], a["image"], a["image"]))
    def blob(key, dtype, count):
        arr = np.fromfile(os.path.join(base, spec[key]), dtype=dtype)
        if arr.size != count:
            fail("%s: %d values, expected %d" % (spec[key], arr.size, count))
        return arr
    x = blob("x", "<f4", B * C * H * W).reshape(B, C, H, W).astype(np.float64)
    t = blob("t", "<i4", B).astype(np.int64)
    y = blob("y", "<i4", B).astype(np.int64)
    if t.min() < 0 or t.max() > 999 or y.min() < 0 or y.max() > a["num_classes"]:
        fail("timesteps or labels out of range: t %s, y %s" % (t, y))
    return x, t, y


def main(argv):
    if len(argv) != 5:
        fail("usage: ref_dit_forward.py CHECKPOINT INPUTS_JSON HEADS OUT")
    w = read_safetensors(argv[1], "ref_dit_forward.py")
    a = infer_arch(w, int(argv[3]))
    pe_err = np.abs(w["pos_embed"][0] - pos_embed_formula(a["grid"], a["D"])).max()
    if pe_err > 1e-6:
        fail("the file's pos_embed is off the dit.md formula by %.3g" % pe_err)
    x, t, y = read_inputs(argv[2], a)
    out = dit_forward(w, a, x, t, y)
    out.astype("<f4").tofile(argv[4])
    print("depth %d hidden %d heads %d patch %d image %d c_in %d c_out %d classes %d pe_err %.3g"
          % (a["depth"], a["D"], a["heads"], a["p"], a["image"], a["c_in"], a["c_out"],
             a["num_classes"], pe_err))


if __name__ == "__main__":
    main(sys.argv)
