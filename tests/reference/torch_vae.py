#!/usr/bin/env python3
"""Makes the committed PyTorch fixtures of the SD VAE (tests/fixtures/vae_torch_*.safetensors)
that tests/test_vae.c checks difftune's VAE against.

A PyTorch implementation of diffusers' AutoencoderKL written for the test with
torch.nn.functional (conv2d, pad, group_norm, silu, interpolate, softmax), run in float64 on
weights made by tests/tools/gen_vae. The weights are not committed: gen_vae makes them
bit-identically from its arguments, which each fixture records (with the weights' sum and sum of
squares, so the test can tell a changed generator from a broken VAE). A fixture holds:
  images  (B, 3, H, W) float32 in [-1, 1]   the encoder's input
  latents (B, 4, h, w) float32               scaled latents, the decoder's input
  mean, std (B, 4, h, w) float32             0.18215 * posterior mean and std of images
  decoded (B, 3, H, W) float32               decoder(latents / 0.18215)
and metadata gen_vae_args, weights_sum, weights_sumsq, torch_version.

Needs PyTorch (Debian python3-torch); the tests never run this script.
Usage: torch_vae.py --gen-vae BUILD/tests/tools/gen_vae [--out-dir tests/fixtures]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from st_io import read_safetensors, write_safetensors

SCALE = 0.18215
GROUPS = 32
EPS = 1e-6

FIXTURES = [
    # name, gen_vae arguments, batch, image size, input seed
    ("vae_torch_small", "--channels 32,64,64,64 --layers 1 --seed 11", 2, 32, 101),
    ("vae_torch_published", "--seed 5 --dtype bf16 --attn legacy --attn-conv", 1, 16, 102),
]


class VAE:
    """diffusers AutoencoderKL (Encoder, Decoder, ResnetBlock2D, UNetMidBlock2D) as functions of
    a state dict, either attention naming."""

    def __init__(self, sd):
        self.sd = sd
        self.legacy = "encoder.mid_block.attentions.0.query.weight" in sd
        self.levels = self.count("encoder.down_blocks.{}.resnets.0.conv1.weight")
        self.layers = self.count("encoder.down_blocks.0.resnets.{}.conv1.weight")

    def count(self, fmt):
        n = 0
        while fmt.format(n) in self.sd:
            n += 1
        return n

    def conv(self, prefix, x, stride=1, padding=1):
        return F.conv2d(x, self.sd[prefix + ".weight"], self.sd[prefix + ".bias"], stride=stride, padding=padding)

    def norm(self, prefix, x):
        return F.group_norm(x, GROUPS, self.sd[prefix + ".weight"], self.sd[prefix + ".bias"], eps=EPS)

    def resnet(self, prefix, x):
        h = self.conv(prefix + ".conv1", F.silu(self.norm(prefix + ".norm1", x)))
        h = self.conv(prefix + ".conv2", F.silu(self.norm(prefix + ".norm2", h)))
        if prefix + ".conv_shortcut.weight" in self.sd:
            x = self.conv(prefix + ".conv_shortcut", x, padding=0)
        return x + h

    def linear(self, prefix, current, legacy, x):
        name = "%s.%s" % (prefix, legacy if self.legacy else current)
        w = self.sd[name + ".weight"]
        return F.linear(x, w.reshape(w.shape[0], w.shape[1]), self.sd[name + ".bias"])

    def attention(self, prefix, x):
        B, C, H, W = x.shape
        h = self.norm(prefix + ".group_norm", x).reshape(B, C, H * W).transpose(1, 2)
        q = self.linear(prefix, "to_q", "query", h)
        k = self.linear(prefix, "to_k", "key", h)
        v = self.linear(prefix, "to_v", "value", h)
        p = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * C ** -0.5, dim=-1)
        o = self.linear(prefix, "to_out.0", "proj_attn", torch.bmm(p, v))
        return x + o.transpose(1, 2).reshape(B, C, H, W)

    def mid(self, prefix, x):
        x = self.resnet(prefix + ".mid_block.resnets.0", x)
        x = self.attention(prefix + ".mid_block.attentions.0", x)
        return self.resnet(prefix + ".mid_block.resnets.1", x)

    def encode(self, x):
        x = self.conv("encoder.conv_in", x)
        for i in range(self.levels):
            for j in range(self.layers):
                x = self.resnet("encoder.down_blocks.%d.resnets.%d" % (i, j), x)
            if i < self.levels - 1:
                x = F.pad(x, (0, 1, 0, 1))
                x = self.conv("encoder.down_blocks.%d.downsamplers.0.conv" % i, x, stride=2, padding=0)
        x = self.mid("encoder", x)
        x = self.conv("encoder.conv_out", F.silu(self.norm("encoder.conv_norm_out", x)))
        mean, logvar = torch.chunk(self.conv("quant_conv", x, padding=0), 2, dim=1)
        return SCALE * mean, SCALE * torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))

    def decode(self, z):
        x = self.conv("post_quant_conv", z / SCALE, padding=0)
        x = self.conv("decoder.conv_in", x)
        x = self.mid("decoder", x)
        for i in range(self.levels):
            for j in range(self.layers + 1):
                x = self.resnet("decoder.up_blocks.%d.resnets.%d" % (i, j), x)
            if i < self.levels - 1:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                x = self.conv("decoder.up_blocks.%d.upsamplers.0.conv" % i, x)
        return self.conv("decoder.conv_out", F.silu(self.norm("decoder.conv_norm_out", x)))


def make_fixture(gen_vae, out_dir, name, args, batch, size, seed):
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "vae.safetensors")
        subprocess.run([gen_vae, "--out", weights] + args.split(), check=True, stdout=subprocess.DEVNULL)
        sd = read_safetensors(weights)
    # the sum and sum of squares of the float32 values, as test_vae.c recomputes them
    flat = np.concatenate([t.numpy().ravel() for t in sd.values()])
    vae = VAE(sd)
    g = torch.Generator().manual_seed(seed)
    f = 2 ** (vae.levels - 1)
    images = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).float()
    latents = torch.randn(batch, 4, size // f, size // f, generator=g).float()
    with torch.no_grad():
        mean, std = vae.encode(images.double())
        decoded = vae.decode(latents.double())
    path = os.path.join(out_dir, name + ".safetensors")
    write_safetensors(path, [
        ("images", images.numpy()), ("latents", latents.numpy()), ("mean", mean.numpy()),
        ("std", std.numpy()), ("decoded", decoded.numpy())],
        {"gen_vae_args": args, "weights_sum": repr(float(flat.sum())),
         "weights_sumsq": repr(float((flat * flat).sum())), "torch_version": torch.__version__,
         "script": "tests/reference/torch_vae.py"})
    print("%s: %d bytes; mean std %.4f, std mean %.4f, decoded std %.4f" % (
        path, os.path.getsize(path), mean.std().item(), std.mean().item(), decoded.std().item()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gen-vae", required=True, help="the built tests/tools/gen_vae")
    ap.add_argument("--out-dir", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")))
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    for name, args, batch, size, seed in FIXTURES:
        make_fixture(a.gen_vae, a.out_dir, name, args, batch, size, seed)


if __name__ == "__main__":
    main()
