#!/usr/bin/env python3
"""Independent float64 reference of the FID Inception-v3 feature extractor (2048-d pool features).

Written from the upstream sources, not from difftune's C code:
  * mseitzer/pytorch-fid, src/pytorch_fid/inception.py: InceptionV3(output_blocks=(3,),
    resize_input=True, normalize_input=True, use_fid_inception=True), fid_inception_v3(),
    FIDInceptionA / FIDInceptionC / FIDInceptionE_1 / FIDInceptionE_2;
  * pytorch/vision, torchvision/models/inception.py: Inception3's stem, BasicConv2d
    (Conv2d bias=False -> BatchNorm2d(eps=0.001) -> ReLU), InceptionB (Mixed_6a) and
    InceptionD (Mixed_7a), and the layer constructors (kernel sizes, paddings, channels).

Forward pass (all in float64, NHWC internally):
  x in [0, 1] -> F.interpolate(size=(299, 299), mode="bilinear", align_corners=False)
  -> 2x - 1 -> Conv2d_1a_3x3 (s2) -> Conv2d_2a_3x3 -> Conv2d_2b_3x3 (p1) -> maxpool 3/2
  -> Conv2d_3b_1x1 -> Conv2d_4a_3x3 -> maxpool 3/2 -> Mixed_5b,5c,5d (FIDInceptionA)
  -> Mixed_6a (InceptionB) -> Mixed_6b..6e (FIDInceptionC) -> Mixed_7a (InceptionD)
  -> Mixed_7b (FIDInceptionE_1) -> Mixed_7c (FIDInceptionE_2) -> global average pool -> 2048.
The FID blocks' pool branches use avg_pool2d(3, stride 1, padding 1, count_include_pad=False),
except Mixed_7c (FIDInceptionE_2), which uses max_pool2d(3, stride 1, padding 1).
Batch norm is applied unfolded: (y - running_mean) / sqrt(running_var + 0.001) * weight + bias.

Usage:
  ref_inception.py WEIGHTS.safetensors INPUT.txt OUTPUT.txt
      WEIGHTS  safetensors with pytorch-fid's FID Inception state dict names (e.g.
               "Mixed_5b.branch5x5_2.conv.weight", "Conv2d_1a_3x3.bn.running_var");
               fc.* and *.num_batches_tracked are ignored. F32, F64 and F16 tensors are read.
      INPUT    whitespace-separated text: "n C H W" then n*C*H*W floats (row-major n,C,H,W),
               images in [-1, 1] (difftune's convention; mapped to [0, 1] as (x + 1) / 2).
               C must be 1 (replicated to 3 channels) or 3.
      OUTPUT   written with n*2048 floats, one per line ("%.17g"), image-major.
  ref_inception.py --self-test
      checks the building blocks (bilinear resize, pools, convolutions, batch norm) against
      hand-computed values and naive loops; prints "self-test ok" and exits 0 on success.
Exits non-zero with a message on stderr on any error (missing tensor, bad shape, bad input).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_safetensors import read_safetensors  # noqa: E402  (the shared safetensors reader)

BN_EPS = 0.001
IMAGE_SIZE = 299
FEATURE_DIM = 2048


class RefError(Exception):
    pass


def fail(msg):
    sys.stderr.write("ref_inception.py: %s\n" % msg)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Architecture (torchvision Inception3 + pytorch-fid patches)
# ---------------------------------------------------------------------------------------------
# A conv spec: (name, in_channels, out_channels, (kh, kw), (sh, sw), (ph, pw)).

def _c(name, cin, cout, k, s=1, p=0):
    k = (k, k) if isinstance(k, int) else tuple(k)
    s = (s, s) if isinstance(s, int) else tuple(s)
    p = (p, p) if isinstance(p, int) else tuple(p)
    return (name, cin, cout, k, s, p)


def stem_convs():
    return [
        _c("Conv2d_1a_3x3", 3, 32, 3, s=2),
        _c("Conv2d_2a_3x3", 32, 32, 3),
        _c("Conv2d_2b_3x3", 32, 64, 3, p=1),
        # maxpool 3, stride 2
        _c("Conv2d_3b_1x1", 64, 80, 1),
        _c("Conv2d_4a_3x3", 80, 192, 3),
        # maxpool 3, stride 2
    ]


def block_a(name, cin, pool_features):  # InceptionA / FIDInceptionA
    return [
        _c(name + ".branch1x1", cin, 64, 1),
        _c(name + ".branch5x5_1", cin, 48, 1),
        _c(name + ".branch5x5_2", 48, 64, 5, p=2),
        _c(name + ".branch3x3dbl_1", cin, 64, 1),
        _c(name + ".branch3x3dbl_2", 64, 96, 3, p=1),
        _c(name + ".branch3x3dbl_3", 96, 96, 3, p=1),
        _c(name + ".branch_pool", cin, pool_features, 1),
    ]


def block_b(name, cin):  # InceptionB (Mixed_6a)
    return [
        _c(name + ".branch3x3", cin, 384, 3, s=2),
        _c(name + ".branch3x3dbl_1", cin, 64, 1),
        _c(name + ".branch3x3dbl_2", 64, 96, 3, p=1),
        _c(name + ".branch3x3dbl_3", 96, 96, 3, s=2),
    ]


def block_c(name, cin, c7):  # InceptionC / FIDInceptionC
    return [
        _c(name + ".branch1x1", cin, 192, 1),
        _c(name + ".branch7x7_1", cin, c7, 1),
        _c(name + ".branch7x7_2", c7, c7, (1, 7), p=(0, 3)),
        _c(name + ".branch7x7_3", c7, 192, (7, 1), p=(3, 0)),
        _c(name + ".branch7x7dbl_1", cin, c7, 1),
        _c(name + ".branch7x7dbl_2", c7, c7, (7, 1), p=(3, 0)),
        _c(name + ".branch7x7dbl_3", c7, c7, (1, 7), p=(0, 3)),
        _c(name + ".branch7x7dbl_4", c7, c7, (7, 1), p=(3, 0)),
        _c(name + ".branch7x7dbl_5", c7, 192, (1, 7), p=(0, 3)),
        _c(name + ".branch_pool", cin, 192, 1),
    ]


def block_d(name, cin):  # InceptionD (Mixed_7a)
    return [
        _c(name + ".branch3x3_1", cin, 192, 1),
        _c(name + ".branch3x3_2", 192, 320, 3, s=2),
        _c(name + ".branch7x7x3_1", cin, 192, 1),
        _c(name + ".branch7x7x3_2", 192, 192, (1, 7), p=(0, 3)),
        _c(name + ".branch7x7x3_3", 192, 192, (7, 1), p=(3, 0)),
        _c(name + ".branch7x7x3_4", 192, 192, 3, s=2),
    ]


def block_e(name, cin):  # InceptionE / FIDInceptionE_1 / FIDInceptionE_2
    return [
        _c(name + ".branch1x1", cin, 320, 1),
        _c(name + ".branch3x3_1", cin, 384, 1),
        _c(name + ".branch3x3_2a", 384, 384, (1, 3), p=(0, 1)),
        _c(name + ".branch3x3_2b", 384, 384, (3, 1), p=(1, 0)),
        _c(name + ".branch3x3dbl_1", cin, 448, 1),
        _c(name + ".branch3x3dbl_2", 448, 384, 3, p=1),
        _c(name + ".branch3x3dbl_3a", 384, 384, (1, 3), p=(0, 1)),
        _c(name + ".branch3x3dbl_3b", 384, 384, (3, 1), p=(1, 0)),
        _c(name + ".branch_pool", cin, 192, 1),
    ]


def all_convs():
    """Every BasicConv2d of the FID Inception, in forward order."""
    return (stem_convs()
            + block_a("Mixed_5b", 192, 32)
            + block_a("Mixed_5c", 256, 64)
            + block_a("Mixed_5d", 288, 64)
            + block_b("Mixed_6a", 288)
            + block_c("Mixed_6b", 768, 128)
            + block_c("Mixed_6c", 768, 160)
            + block_c("Mixed_6d", 768, 160)
            + block_c("Mixed_6e", 768, 192)
            + block_d("Mixed_7a", 768)
            + block_e("Mixed_7b", 1280)
            + block_e("Mixed_7c", 2048))


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

def load_weights(path):
    """name -> (spec, conv weight (Cout, Cin, kh, kw), bn (weight, bias, mean, var)), validated."""
    if not os.path.isfile(path):
        raise RefError("%s: no such file" % path)
    tensors = read_safetensors(path, "ref_inception.py")
    layers = {}
    used = set()
    for spec in all_convs():
        name, cin, cout, (kh, kw), _, _ = spec
        want = {
            name + ".conv.weight": (cout, cin, kh, kw),
            name + ".bn.weight": (cout,),
            name + ".bn.bias": (cout,),
            name + ".bn.running_mean": (cout,),
            name + ".bn.running_var": (cout,),
        }
        for key, shape in want.items():
            if key not in tensors:
                raise RefError("%s: missing tensor %s" % (path, key))
            if tuple(tensors[key].shape) != shape:
                raise RefError("%s: tensor %s has shape %s, expected %s"
                               % (path, key, tuple(tensors[key].shape), shape))
            if not np.all(np.isfinite(tensors[key])):
                raise RefError("%s: tensor %s has non-finite values" % (path, key))
            used.add(key)
        var = tensors[name + ".bn.running_var"]
        if np.any(var + BN_EPS <= 0):
            raise RefError("%s: %s.bn.running_var + eps is not positive" % (path, name))
        layers[name] = (spec, tensors[name + ".conv.weight"],
                        (tensors[name + ".bn.weight"], tensors[name + ".bn.bias"],
                         tensors[name + ".bn.running_mean"], var))
    extra = sorted(k for k in tensors if k not in used and not k.startswith("fc.")
                   and not k.endswith(".num_batches_tracked"))
    if extra:
        sys.stderr.write("ref_inception.py: warning: ignoring %d unknown tensors, e.g. %s\n"
                         % (len(extra), extra[:3]))
    return layers


# ---------------------------------------------------------------------------------------------
# Building blocks (NHWC, float64)
# ---------------------------------------------------------------------------------------------

def out_size(n, k, s, p):
    """PyTorch conv / pool output length (floor mode, no dilation)."""
    return (n + 2 * p - k) // s + 1


def bilinear_resize(x, oh, ow):
    """F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False) for NCHW x.

    Source coordinate src = (dst + 0.5) * (in / out) - 0.5, clamped below at 0; i0 = floor(src),
    i1 = min(i0 + 1, in - 1), weights (1 - l, l) with l = src - i0 (PyTorch's
    area_pixel_compute_source_index, scale = in/out because a size, not a factor, is given).
    """
    def axis(n_in, n_out):
        scale = n_in / n_out
        src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = src - i0
        return i0, i1, lam

    _, _, h, w = x.shape
    y0, y1, ly = axis(h, oh)
    x0, x1, lx = axis(w, ow)
    rows = (x[:, :, y0, :] * (1.0 - ly)[None, None, :, None]
            + x[:, :, y1, :] * ly[None, None, :, None])
    return rows[:, :, :, x0] * (1.0 - lx) + rows[:, :, :, x1] * lx


def conv2d(x, weight, stride, padding):
    """Cross-correlation like nn.Conv2d (no bias) on NHWC x with an OIHW weight, via im2col."""
    n, h, w, c = x.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise RefError("conv: input has %d channels, weight expects %d" % (c, cin))
    sh, sw = stride
    ph, pw = padding
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0:
        cols = x.reshape(n * h * w, c)
        wmat = weight.reshape(cout, cin)
    else:
        if ph or pw:
            x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        # cols[n, oy, ox, ky, kx, c] = x[n, oy*sh + ky, ox*sw + kx, c]
        cols = np.empty((n, oh, ow, kh, kw, c), dtype=np.float64)
        for ky in range(kh):
            for kx in range(kw):
                cols[:, :, :, ky, kx, :] = x[:, ky:ky + sh * (oh - 1) + 1:sh,
                                             kx:kx + sw * (ow - 1) + 1:sw, :]
        cols = cols.reshape(n * oh * ow, kh * kw * c)
        wmat = weight.transpose(0, 2, 3, 1).reshape(cout, kh * kw * cin)
    return (cols @ wmat.T).reshape(n, oh, ow, cout)


def batch_norm(y, bn):
    gamma, beta, mean, var = bn
    return (y - mean) / np.sqrt(var + BN_EPS) * gamma + beta


def basic_conv(x, layer):
    """torchvision BasicConv2d: conv (bias=False) -> BatchNorm2d(eps=0.001) -> ReLU."""
    (_, _, _, _, stride, padding), weight, bn = layer
    return np.maximum(batch_norm(conv2d(x, weight, stride, padding), bn), 0.0)


def max_pool(x, k, s, p):
    """F.max_pool2d(kernel k, stride s, padding p, floor mode) on NHWC x; padding is -inf."""
    n, h, w, c = x.shape
    oh, ow = out_size(h, k, s, p), out_size(w, k, s, p)
    if p:
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-np.inf)
    out = None
    for ky in range(k):
        for kx in range(k):
            v = x[:, ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s, :]
            out = v.copy() if out is None else np.maximum(out, v)
    return out


def avg_pool_3x3_s1_p1_exclude_pad(x):
    """F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False) on NHWC x."""
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = np.zeros_like(x)
    for ky in range(3):
        for kx in range(3):
            total += xp[:, ky:ky + h, kx:kx + w, :]
    ones = np.pad(np.ones((h, w)), 1)
    count = np.zeros((h, w))
    for ky in range(3):
        for kx in range(3):
            count += ones[ky:ky + h, kx:kx + w]
    return total / count[None, :, :, None]


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

def mixed_a(x, L, name):  # FIDInceptionA
    b1 = basic_conv(x, L[name + ".branch1x1"])
    b5 = basic_conv(basic_conv(x, L[name + ".branch5x5_1"]), L[name + ".branch5x5_2"])
    b3 = basic_conv(x, L[name + ".branch3x3dbl_1"])
    b3 = basic_conv(b3, L[name + ".branch3x3dbl_2"])
    b3 = basic_conv(b3, L[name + ".branch3x3dbl_3"])
    bp = basic_conv(avg_pool_3x3_s1_p1_exclude_pad(x), L[name + ".branch_pool"])
    return np.concatenate([b1, b5, b3, bp], axis=3)


def mixed_b(x, L, name):  # InceptionB
    b3 = basic_conv(x, L[name + ".branch3x3"])
    bd = basic_conv(x, L[name + ".branch3x3dbl_1"])
    bd = basic_conv(bd, L[name + ".branch3x3dbl_2"])
    bd = basic_conv(bd, L[name + ".branch3x3dbl_3"])
    bp = max_pool(x, 3, 2, 0)
    return np.concatenate([b3, bd, bp], axis=3)


def mixed_c(x, L, name):  # FIDInceptionC
    b1 = basic_conv(x, L[name + ".branch1x1"])
    b7 = x
    for i in (1, 2, 3):
        b7 = basic_conv(b7, L[name + ".branch7x7_%d" % i])
    bd = x
    for i in (1, 2, 3, 4, 5):
        bd = basic_conv(bd, L[name + ".branch7x7dbl_%d" % i])
    bp = basic_conv(avg_pool_3x3_s1_p1_exclude_pad(x), L[name + ".branch_pool"])
    return np.concatenate([b1, b7, bd, bp], axis=3)


def mixed_d(x, L, name):  # InceptionD
    b3 = basic_conv(basic_conv(x, L[name + ".branch3x3_1"]), L[name + ".branch3x3_2"])
    b7 = x
    for i in (1, 2, 3, 4):
        b7 = basic_conv(b7, L[name + ".branch7x7x3_%d" % i])
    bp = max_pool(x, 3, 2, 0)
    return np.concatenate([b3, b7, bp], axis=3)


def mixed_e(x, L, name, pool):  # FIDInceptionE_1 (pool="avg") / FIDInceptionE_2 (pool="max")
    b1 = basic_conv(x, L[name + ".branch1x1"])
    b3 = basic_conv(x, L[name + ".branch3x3_1"])
    b3 = np.concatenate([basic_conv(b3, L[name + ".branch3x3_2a"]),
                         basic_conv(b3, L[name + ".branch3x3_2b"])], axis=3)
    bd = basic_conv(x, L[name + ".branch3x3dbl_1"])
    bd = basic_conv(bd, L[name + ".branch3x3dbl_2"])
    bd = np.concatenate([basic_conv(bd, L[name + ".branch3x3dbl_3a"]),
                         basic_conv(bd, L[name + ".branch3x3dbl_3b"])], axis=3)
    if pool == "avg":
        pooled = avg_pool_3x3_s1_p1_exclude_pad(x)
    else:
        pooled = max_pool(x, 3, 1, 1)
    bp = basic_conv(pooled, L[name + ".branch_pool"])
    return np.concatenate([b1, b3, bd, bp], axis=3)


def preprocess(images01):
    """pytorch-fid InceptionV3.forward's input handling: resize to 299x299, then 2x - 1."""
    x = bilinear_resize(images01, IMAGE_SIZE, IMAGE_SIZE)
    return 2.0 * x - 1.0


def inception_features(L, images01):
    """(n, 3, H, W) images in [0, 1] -> (n, 2048) pool features (block 3 of pytorch-fid)."""
    x = preprocess(images01).transpose(0, 2, 3, 1)  # NHWC
    x = basic_conv(x, L["Conv2d_1a_3x3"])
    x = basic_conv(x, L["Conv2d_2a_3x3"])
    x = basic_conv(x, L["Conv2d_2b_3x3"])
    x = max_pool(x, 3, 2, 0)
    x = basic_conv(x, L["Conv2d_3b_1x1"])
    x = basic_conv(x, L["Conv2d_4a_3x3"])
    x = max_pool(x, 3, 2, 0)
    x = mixed_a(x, L, "Mixed_5b")
    x = mixed_a(x, L, "Mixed_5c")
    x = mixed_a(x, L, "Mixed_5d")
    x = mixed_b(x, L, "Mixed_6a")
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = mixed_c(x, L, name)
    x = mixed_d(x, L, "Mixed_7a")
    x = mixed_e(x, L, "Mixed_7b", "avg")
    x = mixed_e(x, L, "Mixed_7c", "max")
    if x.shape[1:] != (8, 8, FEATURE_DIM):
        raise RefError("internal: final map is %s, expected (8, 8, 2048)" % (x.shape[1:],))
    return x.mean(axis=(1, 2))  # AdaptiveAvgPool2d((1, 1))


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------

def read_input(path):
    """INPUT.txt -> (n, 3, H, W) float64 images in [0, 1]."""
    try:
        with open(path) as f:
            tokens = f.read().split()
    except OSError as e:
        raise RefError("%s: %s" % (path, e))
    if len(tokens) < 4:
        raise RefError("%s: expected 'n C H W' then the values" % path)
    try:
        dims = [int(t) for t in tokens[:4]]
    except ValueError:
        raise RefError("%s: header %s is not 4 integers" % (path, tokens[:4]))
    n, c, h, w = dims
    if n < 1 or h < 1 or w < 1 or c not in (1, 3):
        raise RefError("%s: bad shape n=%d C=%d H=%d W=%d (need n, H, W >= 1 and C in {1, 3})"
                       % (path, n, c, h, w))
    count = n * c * h * w
    if len(tokens) - 4 != count:
        raise RefError("%s: %d values for shape (%d, %d, %d, %d), expected %d"
                       % (path, len(tokens) - 4, n, c, h, w, count))
    try:
        vals = np.array([float(t) for t in tokens[4:]], dtype=np.float64)
    except ValueError as e:
        raise RefError("%s: %s" % (path, e))
    if not np.all(np.isfinite(vals)):
        raise RefError("%s: non-finite input values" % path)
    x = vals.reshape(n, c, h, w)
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    return (x + 1.0) / 2.0


def write_output(path, feats):
    with open(path, "w") as f:
        f.write("".join("%.17g\n" % v for v in feats.reshape(-1)))


# ---------------------------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------------------------

def _naive_conv(x, weight, stride, padding):
    """Direct 6-loop conv (NCHW in, NCHW out), the definition of nn.Conv2d without bias."""
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    oh, ow = out_size(h, kh, stride[0], padding[0]), out_size(w, kw, stride[1], padding[1])
    out = np.zeros((n, cout, oh, ow))
    for b in range(n):
        for o in range(cout):
            for oy in range(oh):
                for ox in range(ow):
                    s = 0.0
                    for i in range(c):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy = oy * stride[0] - padding[0] + ky
                                ix = ox * stride[1] - padding[1] + kx
                                if 0 <= iy < h and 0 <= ix < w:
                                    s += x[b, i, iy, ix] * weight[o, i, ky, kx]
                    out[b, o, oy, ox] = s
    return out


def self_test():
    def check(what, got, want, tol=1e-12):
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=tol):
            raise RefError("self-test %s failed:\n got %s\nwant %s" % (what, got, want))
        print("ok  %s" % what)

    # Bilinear, align_corners=False, 2x2 -> 4x4: src = (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0),
    # 0.25, 0.75, 1.25 (i0 = 1, i1 clamped to 1) -> per-axis weights give these rows.
    img = np.array([[0.0, 1.0], [2.0, 3.0]])[None, None]
    check("bilinear 2x2->4x4", bilinear_resize(img, 4, 4)[0, 0],
          [[0.0, 0.25, 0.75, 1.0],
           [0.5, 0.75, 1.25, 1.5],
           [1.5, 1.75, 2.25, 2.5],
           [2.0, 2.25, 2.75, 3.0]])
    # 4 -> 2 (scale 2): src = 0.5, 2.5 -> mean of neighbouring pairs.
    row = np.array([0.0, 1.0, 4.0, 9.0])[None, None, None, :]
    check("bilinear 1x4->1x2", bilinear_resize(row, 1, 2)[0, 0], [[0.5, 6.5]])
    # 3 -> 5 (scale 0.6): src = -0.2->0, 0.4, 1.0, 1.6, 2.2 (i0 = 2, i1 = 2).
    row = np.array([10.0, 20.0, 40.0])[None, None, None, :]
    check("bilinear 1x3->1x5", bilinear_resize(row, 1, 5)[0, 0], [[10.0, 14.0, 20.0, 32.0, 40.0]])
    # Same size is the identity.
    rnd = np.random.RandomState(0).rand(1, 3, 5, 7)
    check("bilinear identity", bilinear_resize(rnd, 5, 7), rnd)

    # avg_pool2d(3, 1, 1, count_include_pad=False) on [[1,2,3],[4,5,6],[7,8,9]]:
    # corner (0,0) = (1+2+4+5)/4 = 3, edge (0,1) = (1+..+6)/6 = 3.5, centre = 5,
    # corner (2,2) = (5+6+8+9)/4 = 7.
    a = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    check("avg pool exclude pad", avg_pool_3x3_s1_p1_exclude_pad(a)[0, :, :, 0],
          [[3.0, 3.5, 4.0], [4.5, 5.0, 5.5], [6.0, 6.5, 7.0]])
    # max_pool2d(3, 1, 1) pads with -inf: on negative values the border must not become 0.
    check("max pool s1 p1", max_pool(-a, 3, 1, 1)[0, :, :, 0],
          [[-1.0, -1.0, -2.0], [-1.0, -1.0, -2.0], [-4.0, -4.0, -5.0]])
    # max_pool2d(3, 2) on 5x5 0..24 -> 2x2 windows at rows/cols {0..2, 2..4}.
    b = np.arange(25.0).reshape(1, 5, 5, 1)
    check("max pool s2", max_pool(b, 3, 2, 0)[0, :, :, 0], [[12.0, 14.0], [22.0, 24.0]])
    # Stem shape chain of a 299 input.
    sizes = [299]
    for k, s, p in ((3, 2, 0), (3, 1, 0), (3, 1, 1), (3, 2, 0), (1, 1, 0), (3, 1, 0), (3, 2, 0),
                    (3, 2, 0), (3, 2, 0)):
        sizes.append(out_size(sizes[-1], k, s, p))
    check("spatial sizes", sizes, [299, 149, 147, 147, 73, 73, 71, 35, 17, 8], tol=0)

    # 1x1 conv: 2 input channels -> 2 outputs, hand computed.
    x = np.array([[1.0, 2.0], [3.0, -1.0]]).reshape(1, 1, 2, 2)  # NHWC, pixels (1,2), (3,-1)
    wt = np.array([[2.0, 0.5], [-1.0, 3.0]]).reshape(2, 2, 1, 1)
    check("conv 1x1", conv2d(x, wt, (1, 1), (0, 0))[0, 0],
          [[2 * 1 + 0.5 * 2, -1 * 1 + 3 * 2], [2 * 3 + 0.5 * -1, -1 * 3 + 3 * -1]])
    # 3x3 padding-1 conv of all-ones 3x3 with an all-ones kernel = neighbour counts.
    check("conv 3x3 p1 ones", conv2d(np.ones((1, 3, 3, 1)), np.ones((1, 1, 3, 3)), (1, 1),
                                     (1, 1))[0, :, :, 0],
          [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])
    # im2col conv against the naive loop for every kernel/stride/padding shape used.
    rs = np.random.RandomState(1)
    for k, s, p in (((3, 3), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((5, 5), (1, 1), (2, 2)),
                    ((1, 7), (1, 1), (0, 3)), ((7, 1), (1, 1), (3, 0)), ((1, 3), (1, 1), (0, 1)),
                    ((3, 1), (1, 1), (1, 0)), ((1, 1), (1, 1), (0, 0))):
        xin = rs.randn(2, 3, 9, 8)
        wt = rs.randn(4, 3, k[0], k[1])
        got = conv2d(xin.transpose(0, 2, 3, 1), wt, s, p).transpose(0, 3, 1, 2)
        check("conv k%s s%s p%s vs naive" % (k, s, p), got, _naive_conv(xin, wt, s, p), 1e-10)

    # BatchNorm (eval, eps 0.001) then ReLU, hand computed: (y - m) / sqrt(v + 0.001) * g + b.
    y = np.array([[[[1.0, -2.0]]]])
    bn = (np.array([2.0, 1.0]), np.array([0.5, -0.25]), np.array([0.0, 1.0]),
          np.array([0.999, 0.249]))
    check("batch norm", batch_norm(y, bn)[0, 0, 0], [1.0 / 1.0 * 2.0 + 0.5, -3.0 / 0.5 - 0.25])
    layer = (("t", 2, 2, (1, 1), (1, 1), (0, 0)), np.eye(2).reshape(2, 2, 1, 1), bn)
    check("basic conv relu", basic_conv(y, layer)[0, 0, 0], [2.5, 0.0])

    # Block output widths from the branch specs (concat order as in the sources) must equal the
    # in_channels the next block is built with: 5b 256, 5c/5d 288, 6a 768, 6b..6e 768, 7a 1280,
    # 7b/7c 2048.
    widths = {
        "Mixed_5b": 64 + 64 + 96 + 32, "Mixed_5c": 64 + 64 + 96 + 64,
        "Mixed_5d": 64 + 64 + 96 + 64, "Mixed_6a": 384 + 96 + 288,
        "Mixed_6b": 192 * 4, "Mixed_6c": 192 * 4, "Mixed_6d": 192 * 4, "Mixed_6e": 192 * 4,
        "Mixed_7a": 320 + 192 + 768, "Mixed_7b": 320 + 384 * 2 + 384 * 2 + 192,
        "Mixed_7c": 320 + 384 * 2 + 384 * 2 + 192,
    }
    cin = {spec[0].split(".")[0]: spec[1] for spec in all_convs() if spec[0].endswith("_1")
           or spec[0].endswith("branch1x1") or spec[0].endswith("branch3x3")}
    order = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
             "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    check("block widths", [widths[b] for b in order[:-1]], [cin[b] for b in order[1:]], tol=0)
    check("final width", widths["Mixed_7c"], FEATURE_DIM, tol=0)
    check("conv count", len(all_convs()), 94, tol=0)

    print("self-test ok")


# ---------------------------------------------------------------------------------------------

def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        self_test()
        return
    if len(argv) != 4:
        raise RefError("usage: ref_inception.py WEIGHTS.safetensors INPUT.txt OUTPUT.txt | "
                       "--self-test")
    t0 = time.time()
    layers = load_weights(argv[1])
    images = read_input(argv[2])
    feats = inception_features(layers, images)
    write_output(argv[3], feats)
    sys.stderr.write("ref_inception.py: %d image(s) %s -> %d x %d features in %.2f s\n"
                     % (images.shape[0], "x".join(str(d) for d in images.shape[1:]),
                        feats.shape[0], feats.shape[1], time.time() - t0))


if __name__ == "__main__":
    try:
        main(sys.argv)
    except RefError as e:
        fail(str(e))
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        fail("%s: %s" % (type(e).__name__, e))
