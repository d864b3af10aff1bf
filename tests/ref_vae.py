#!/usr/bin/env python3
"""Independent float64 reference of the SD VAE (diffusers AutoencoderKL), for tests/test_vae.c.

Written from the diffusers model definitions (Encoder, Decoder, ResnetBlock2D, UNetMidBlock2D,
Downsample2D, Upsample2D, the mid-block Attention), not from difftune's C code: the safetensors
reader, the convolutions (im2col in numpy), GroupNorm, SiLU, the attention, nearest upsampling
and the posterior are all spelled out here in float64.

Usage: ref_vae.py WEIGHTS INPUTS_JSON OUTDIR
  WEIGHTS      a diffusers AutoencoderKL safetensors file (F32, F16 or BF16; current or legacy
               attention names; attention weights (C, C) or (C, C, 1, 1)); the architecture is
               read from the shapes.
  INPUTS_JSON  {"batch": B, "height": H, "width": W, "images": file of (B, 3, H, W) float32,
                "latents": file of (B, latent, H/f, W/f) float32 scaled latents}
               (little-endian, row-major, names relative to the JSON file's directory).
  OUTDIR       receives mean.f32 and std.f32 (B, latent, H/f, W/f): the posterior mean and
               std = exp(0.5 clamp(logvar, -30, 20)), both times 0.18215; and decoded.f32
               (B, 3, H, W): the decoder applied to latents / 0.18215.
"""
import json
import os
import sys

import numpy as np

from ref_safetensors import read_safetensors

SCALE = 0.18215
GROUPS = 32
EPS = 1e-6


def fail(msg):
    sys.stderr.write("ref_vae.py: %s\n" % msg)
    sys.exit(1)


class Weights:
    def __init__(self, tensors):
        self.t = tensors
        self.legacy = "encoder.mid_block.attentions.0.query.weight" in tensors

    def get(self, name):
        if name not in self.t:
            fail("missing tensor %s" % name)
        return self.t[name]

    def has(self, name):
        return name in self.t

    def linear(self, prefix, current, legacy):
        """(weight as (out, in), bias) of an attention projection under either naming."""
        base = "%s.%s" % (prefix, legacy if self.legacy else current)
        w = self.get(base + ".weight")
        return w.reshape(w.shape[0], w.shape[1]), self.get(base + ".bias")


def conv2d(x, w, b, stride=1, pad=(0, 0, 0, 0)):
    """Cross-correlation of x (B, C, H, W) with w (OC, C, K, K) plus b; pad = (top, bottom, left,
    right) zero rows and columns."""
    top, bottom, left, right = pad
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    B, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    Ho = (H - KH) // stride + 1
    Wo = (W - KW) // stride + 1
    cols = np.empty((B, C, KH, KW, Ho, Wo))
    for i in range(KH):
        for j in range(KW):
            cols[:, :, i, j] = x[:, :, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride]
    out = np.matmul(w.reshape(OC, C * KH * KW), cols.reshape(B, C * KH * KW, Ho * Wo))
    return out.reshape(B, OC, Ho, Wo) + b[None, :, None, None]


def conv_layer(W, prefix, x, pad=1):
    return conv2d(x, W.get(prefix + ".weight"), W.get(prefix + ".bias"), 1, (pad, pad, pad, pad))


def group_norm(W, prefix, x):
    B, C, H, Wd = x.shape
    g = x.reshape(B, GROUPS, -1)
    mean = g.mean(axis=2, keepdims=True)
    var = g.var(axis=2, keepdims=True)
    y = ((g - mean) / np.sqrt(var + EPS)).reshape(B, C, H, Wd)
    return y * W.get(prefix + ".weight")[None, :, None, None] + W.get(prefix + ".bias")[None, :, None, None]


def silu(x):
    return x / (1.0 + np.exp(-x))


def resnet(W, prefix, x):
    h = conv_layer(W, prefix + ".conv1", silu(group_norm(W, prefix + ".norm1", x)))
    h = conv_layer(W, prefix + ".conv2", silu(group_norm(W, prefix + ".norm2", h)))
    if W.has(prefix + ".conv_shortcut.weight"):
        x = conv_layer(W, prefix + ".conv_shortcut", x, pad=0)
    return x + h


def attention(W, prefix, x):
    B, C, H, Wd = x.shape
    h = group_norm(W, prefix + ".group_norm", x).reshape(B, C, H * Wd).transpose(0, 2, 1)
    qw, qb = W.linear(prefix, "to_q", "query")
    kw, kb = W.linear(prefix, "to_k", "key")
    vw, vb = W.linear(prefix, "to_v", "value")
    ow, ob = W.linear(prefix, "to_out.0", "proj_attn")
    q = h @ qw.T + qb
    k = h @ kw.T + kb
    v = h @ vw.T + vb
    s = q @ k.transpose(0, 2, 1) / np.sqrt(C)
    s = np.exp(s - s.max(axis=2, keepdims=True))
    p = s / s.sum(axis=2, keepdims=True)
    o = (p @ v) @ ow.T + ob
    return x + o.transpose(0, 2, 1).reshape(B, C, H, Wd)


def mid_block(W, prefix, x):
    x = resnet(W, prefix + ".mid_block.resnets.0", x)
    x = attention(W, prefix + ".mid_block.attentions.0", x)
    return resnet(W, prefix + ".mid_block.resnets.1", x)


def count(W, fmt):
    n = 0
    while W.has(fmt % n):
        n += 1
    return n


def encode(W, x):
    levels = count(W, "encoder.down_blocks.%d.resnets.0.conv1.weight")
    layers = count(W, "encoder.down_blocks.0.resnets.%d.conv1.weight")
    x = conv_layer(W, "encoder.conv_in", x)
    for i in range(levels):
        for j in range(layers):
            x = resnet(W, "encoder.down_blocks.%d.resnets.%d" % (i, j), x)
        if i < levels - 1:
            p = "encoder.down_blocks.%d.downsamplers.0.conv" % i
            x = conv2d(x, W.get(p + ".weight"), W.get(p + ".bias"), 2, (0, 1, 0, 1))
    x = mid_block(W, "encoder", x)
    x = conv_layer(W, "encoder.conv_out", silu(group_norm(W, "encoder.conv_norm_out", x)))
    moments = conv_layer(W, "quant_conv", x, pad=0)
    mean, logvar = np.split(moments, 2, axis=1)
    std = np.exp(0.5 * np.clip(logvar, -30.0, 20.0))
    return SCALE * mean, SCALE * std


def decode(W, z):
    levels = count(W, "decoder.up_blocks.%d.resnets.0.conv1.weight")
    layers = count(W, "decoder.up_blocks.0.resnets.%d.conv1.weight")
    x = conv_layer(W, "post_quant_conv", z / SCALE, pad=0)
    x = conv_layer(W, "decoder.conv_in", x)
    x = mid_block(W, "decoder", x)
    for i in range(levels):
        for j in range(layers):
            x = resnet(W, "decoder.up_blocks.%d.resnets.%d" % (i, j), x)
        if i < levels - 1:
            x = x.repeat(2, axis=2).repeat(2, axis=3)
            x = conv_layer(W, "decoder.up_blocks.%d.upsamplers.0.conv" % i, x)
    return conv_layer(W, "decoder.conv_out", silu(group_norm(W, "decoder.conv_norm_out", x)))


def main():
    if len(sys.argv) != 4:
        fail("usage: ref_vae.py WEIGHTS INPUTS_JSON OUTDIR")
    W = Weights(read_safetensors(sys.argv[1], "ref_vae.py"))
    with open(sys.argv[2]) as f:
        spec = json.load(f)
    base = os.path.dirname(os.path.abspath(sys.argv[2]))
    B, H, Wd = spec["batch"], spec["height"], spec["width"]
    images = np.fromfile(os.path.join(base, spec["images"]), dtype="<f4").astype(np.float64)
    if images.size != B * 3 * H * Wd:
        fail("images: %d floats, expected %d" % (images.size, B * 3 * H * Wd))
    images = images.reshape(B, 3, H, Wd)
    latents = np.fromfile(os.path.join(base, spec["latents"]), dtype="<f4").astype(np.float64)
    lat = W.get("post_quant_conv.weight").shape[0]
    factor = 2 ** (count(W, "encoder.down_blocks.%d.resnets.0.conv1.weight") - 1)
    if latents.size != B * lat * (H // factor) * (Wd // factor):
        fail("latents: %d floats for batch %d, %d channels, %dx%d" % (latents.size, B, lat, H // factor, Wd // factor))
    latents = latents.reshape(B, lat, H // factor, Wd // factor)
    mean, std = encode(W, images)
    decoded = decode(W, latents)
    out = sys.argv[3]
    mean.astype("<f4").tofile(os.path.join(out, "mean.f32"))
    std.astype("<f4").tofile(os.path.join(out, "std.f32"))
    decoded.astype("<f4").tofile(os.path.join(out, "decoded.f32"))


if __name__ == "__main__":
    main()
