#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (stdlib only).

Usage: make_corpus.py

Seeds are small valid inputs of each format plus a few near-misses, so that the fuzzers start
from inside the parsers rather than from random bytes. Existing seed files of the
same name are overwritten; nothing else is removed. The output is deterministic.
"""
import argparse
import gzip
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- job specs ---------------------------------------------------------------------------------

SPECS = {
    "pretrain_named": {"method": "pretrain", "dataset": "ds_0123456789abcdef01234567",
                       "model": {"arch": "DiT-S/2", "image_size": 32, "channels": 3}},
    "pretrain_custom": {"method": "pretrain", "dataset": "data/solid",
                        "model": {"arch": "custom", "depth": 2, "hidden_size": 64,
                                  "num_heads": 4, "patch_size": 4, "image_size": 16,
                                  "channels": 1, "learn_sigma": False, "num_classes": 10},
                        "hyperparameters": {"steps": 10, "batch_size": 8, "learning_rate": 0.001,
                                            "grad_accum": 2, "seed": 7, "precision": "fp32"},
                        "eval": {"sample_every": 0, "fid_every": 0}, "device": "cpu"},
    "full": {"method": "full", "base_model": "mdl_0123456789abcdef01234567",
             "dataset": "ds_0123456789abcdef01234567", "peft": None,
             "hyperparameters": {"learning_rate": 1e-4, "weight_decay": 0.01, "ema_decay": 0.999,
                                 "class_dropout": 0.1, "grad_clip": 1.0},
             "checkpoint": {"every": 100, "keep": 2}, "priority": -5},
    "diff_tuning": {"method": "diff_tuning", "base_model": "mdl_0123456789abcdef01234567",
                    "dataset": "ds_0123456789abcdef01234567",
                    "model": {"arch": "DiT-B/4", "num_classes": None},
                    "diff_tuning": {"power": 1.5, "replay_ratio": 0.25, "replay_weight": 0.1,
                                    "bank_size": 500, "bank_sampler": "ddim", "bank_steps": 50,
                                    "bank_cfg": 1.5},
                    "eval": {"fid_every": 500, "fid_samples": 100,
                             "extractor": "classifier:mdl_0123456789abcdef01234567",
                             "sampler": "ddpm", "steps": 100, "cfg": 2.0},
                    "device": "cuda:0"},
    "forgetting": {"method": "forgetting_curve", "base_model": "mdl_0123456789abcdef01234567",
                   "dataset": "ds_0123456789abcdef01234567",
                   "forgetting": {"checkpoint": "job_0123456789abcdef01234567", "buckets": 10,
                                  "loss_images": 64, "switch_points": 11, "samples": 100}},
    "bad_unknown": {"dataset": "d", "base_model": "m", "hyperparameters": {"lr": 1}},
    "bad_type": {"dataset": "d", "base_model": "m", "hyperparameters": {"steps": 2.0}},
    "bad_range": {"dataset": "d", "base_model": "m", "diff_tuning": {"replay_ratio": 1}},
    "bad_peft": {"dataset": "d", "base_model": "m", "peft": "lora"},
}
RAW_SPECS = {
    "bad_syntax": '{"dataset": "d", ',
    "bad_duplicate": '{"dataset": "d", "dataset": "e"}',
    "bad_root": "[1, 2, 3]",
    "unicode": '{"dataset": "d\\u00e9\\ud83d\\ude00", "base_model": "m"}',
}


def spec_texts():
    out = {k: json.dumps(v) for k, v in SPECS.items()}
    out.update(RAW_SPECS)
    return out


# ---- router and headers ------------------------------------------------------------------------

ROUTE_SEEDS = [
    ("GET", "/"), ("GET", "/ui/js/app.js"), ("POST", "/session"), ("DELETE", "/session"),
    ("GET", "/health"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/workers"),
    ("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/job_0123456789abcdef01234567"),
    ("POST", "/jobs/job_0123456789abcdef01234567/cancel"),
    ("POST", "/jobs/job_0123456789abcdef01234567/retry"),
    ("GET", "/jobs/job_0123456789abcdef01234567/events"),
    ("GET", "/jobs/job_0123456789abcdef01234567/metrics"),
    ("GET", "/jobs/job_0123456789abcdef01234567/samples/step_0000100.png"),
    ("GET", "/jobs/job_0123456789abcdef01234567/checkpoints/step_0000100"),
    ("POST", "/datasets"), ("GET", "/datasets/ds_0123456789abcdef01234567/preview.png"),
    ("DELETE", "/models/mdl_0123456789abcdef01234567"), ("PUT", "/jobs"), ("GET", "/nope"),
    ("GET", "/jobs//cancel"), ("GET", "/ui//x"),
]
HEADER_SEEDS = [("bytes=0-99", "5", '"abc", W/"def"'), ("bytes=-10", "0", "*"),
                ("bytes=100-", "+7", '"x"'), ("bytes=5-1", "-1", ""),
                ("bytes=0-1,3-4", "18446744073709551616", '"a","b"')]


# ---- safetensors -------------------------------------------------------------------------------

def safetensors(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def raw_safetensors(header, data):
    """A file with the header exactly as given (offsets unchecked)."""
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


def dit_checkpoint(depth=1, hidden=8, heads=2, patch=4, image=8, channels=1, classes=2):
    """A DiT checkpoint as checkpoint_save_model lays it out (zero BF16 weights, no
    learn_sigma): the smallest file ingest_model accepts, so its fuzzing starts past the
    config and shape checks."""
    tokens, out = (image // patch) ** 2, patch * patch * channels
    shapes = [("pos_embed", [1, tokens, hidden]),
              ("x_embedder.proj.weight", [hidden, channels, patch, patch]),
              ("x_embedder.proj.bias", [hidden]),
              ("t_embedder.mlp.0.weight", [hidden, 256]), ("t_embedder.mlp.0.bias", [hidden]),
              ("t_embedder.mlp.2.weight", [hidden, hidden]), ("t_embedder.mlp.2.bias", [hidden]),
              ("y_embedder.embedding_table.weight", [classes + 1, hidden])]
    for b in range(depth):
        p = "blocks.%d." % b
        shapes += [(p + "attn.qkv.weight", [3 * hidden, hidden]), (p + "attn.qkv.bias", [3 * hidden]),
                   (p + "attn.proj.weight", [hidden, hidden]), (p + "attn.proj.bias", [hidden]),
                   (p + "mlp.fc1.weight", [4 * hidden, hidden]), (p + "mlp.fc1.bias", [4 * hidden]),
                   (p + "mlp.fc2.weight", [hidden, 4 * hidden]), (p + "mlp.fc2.bias", [hidden]),
                   (p + "adaLN_modulation.1.weight", [6 * hidden, hidden]),
                   (p + "adaLN_modulation.1.bias", [6 * hidden])]
    shapes += [("final_layer.linear.weight", [out, hidden]), ("final_layer.linear.bias", [out]),
               ("final_layer.adaLN_modulation.1.weight", [2 * hidden, hidden]),
               ("final_layer.adaLN_modulation.1.bias", [2 * hidden])]
    config = {"depth": depth, "hidden_size": hidden, "num_heads": heads, "patch_size": patch,
              "image_size": image, "in_channels": channels, "num_classes": classes,
              "learn_sigma": False}
    tensors = []
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        tensors.append((name, "BF16", shape, b"\x00" * (2 * n)))
    return safetensors(tensors, meta={"format": "difftune.dit.v1", "config": json.dumps(config)})


ST_SEEDS = {
    "dit_tiny": dit_checkpoint(),
    "one_f32": safetensors([("w", "F32", [2, 2], f32(1, 2, 3, 4))]),
    "mixed": safetensors([("a", "F16", [3], struct.pack("<3e", 0.5, -2, 65504)),
                          ("b", "BF16", [1], b"\x80\x3f"), ("c", "F64", [], struct.pack("<d", 3.5)),
                          ("d", "I64", [1], struct.pack("<q", -1)), ("e", "U8", [0, 3], b""),
                          ("f", "BOOL", [2], b"\x00\x01")],
                         meta={"format": "pt"}, pad=False),
    "dit_meta_only": safetensors([("x_embedder.proj.weight", "F32", [4, 1, 2, 2], f32(*[0.0] * 16))],
                                 meta={"config": json.dumps({"depth": 1, "hidden_size": 4,
                                                             "num_heads": 1, "patch_size": 2,
                                                             "image_size": 4, "in_channels": 1,
                                                             "num_classes": 2,
                                                             "learn_sigma": False})}),
    "classifier_kind": safetensors([("conv1.weight", "F32", [1], f32(0))],
                                   meta={"difftune_kind": "classifier", "num_classes": "2"}),
    "overlap": raw_safetensors({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                "b": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}},
                               b"\x00\x00"),
    "truncated": safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])[:-3],
}


# ---- IDX ---------------------------------------------------------------------------------------

def idx_images(n, rows, cols, seed=1):
    pix = bytes((seed * 37 + i * 11) & 255 for i in range(n * rows * cols))
    return struct.pack(">IIII", 0x803, n, rows, cols) + pix


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_input(flags, images, labels):
    """fuzz_idx.c's layout: flags, images length (LE16), images, labels."""
    return bytes([flags]) + struct.pack("<H", len(images)) + images + labels


IDX_SEEDS = {
    "grey_dir": idx_input(7, idx_images(3, 4, 4), idx_labels([0, 1, 2])),
    "rgb_file": idx_input(32 | 64 | 3, idx_images(2, 5, 3), idx_labels([1, 1])),
    "two_sets": idx_input(128 | 15, idx_images(1, 2, 2), idx_labels([9])),
    "bad_count": idx_input(3, idx_images(2, 2, 2), idx_labels([0])),
    "bad_magic": idx_input(3, b"\x00\x00\x08\x02" + idx_images(1, 1, 1)[4:], idx_labels([0])),
}


# ---- archives ----------------------------------------------------------------------------------

def png(w, h, grey=True, seed=0):
    color = 0 if grey else 2
    bpp = 1 if grey else 3
    raw = b"".join(b"\x00" + bytes((seed + x * 40 + y * 90) & 255 for x in range(w * bpp))
                   for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bmp(w, h):
    row = bytes((x * 50) & 255 for x in range(w * 3))
    row += b"\x00" * (-len(row) % 4)
    pixels = row * h
    return (b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) +
            struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0) + pixels)


def bmp_header(w, h):
    """A BMP header alone, claiming w x h 24-bit pixels that the file does not hold."""
    return (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) +
            struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0))


def tar_bytes(members, mode="w", fmt=tarfile.USTAR_FORMAT):
    """members: list of (name, bytes | None for a folder | ('sym', target) | ('hard', target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as t:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uname = info.gname = ""
            if body is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif isinstance(body, tuple):
                info.type = tarfile.SYMTYPE if body[0] == "sym" else tarfile.LNKTYPE
                info.linkname = body[1]
                t.addfile(info)
            else:
                info.size, info.mode = len(body), 0o644
                t.addfile(info, io.BytesIO(body))
    # tarfile pads to a 10 KiB record; the end-of-archive marker (two zero blocks) is enough.
    data = buf.getvalue().rstrip(b"\x00")
    return data + b"\x00" * (-len(data) % 512 + 1024)


def zip_bytes(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, body in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            z.writestr(info, body)
    return buf.getvalue()


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


FOLDER = [("set/", None), ("set/cat/", None), ("set/cat/0.png", png(4, 4)),
          ("set/cat/1.png", png(3, 5, grey=False, seed=9)), ("set/dog/", None),
          ("set/dog/0.bmp", bmp(2, 2))]
INGEST_SEEDS = {
    "folder.tar": tar_bytes(FOLDER),
    "folder.tar.gz": gz(tar_bytes(FOLDER, fmt=tarfile.PAX_FORMAT)),
    "folder.zip": zip_bytes([(n, b or b"") for n, b in FOLDER if b is not None]),
    "folder_stored.zip": zip_bytes([("a/x.png", png(2, 2)), ("b/y.png", png(2, 3))],
                                   zipfile.ZIP_STORED),
    "idx.tar": tar_bytes([("mnist/train-images-idx3-ubyte", idx_images(3, 2, 2)),
                          ("mnist/train-labels-idx1-ubyte", idx_labels([0, 1, 0]))]),
    "junk.tar": tar_bytes([("__MACOSX/._a.png", b"x"), ("c/.DS_Store", b"x"), ("c/a.png", png(2, 2))]),
    "slip.tar": tar_bytes([("../evil.png", png(2, 2))]),
    "abs.zip": zip_bytes([("/tmp/evil.png", png(2, 2))]),
    "symlink.tar": tar_bytes([("c/", None), ("c/link.png", ("sym", "/etc/passwd"))]),
    "hardlink.tar": tar_bytes([("c/a.png", png(2, 2)), ("c/b.png", ("hard", "c/a.png"))]),
    "loose_image.tar": tar_bytes([("a.png", png(2, 2)), ("c/b.png", png(2, 2))]),
    "bad_image.tar": tar_bytes([("c/a.png", b"\x89PNG\r\n\x1a\nnot really")]),
    # An image bomb (fixed in engine/image.c): 54 bytes claiming 16000 x 16000 pixels.
    "bmp_bomb.tar": tar_bytes([("c/a.bmp", bmp_header(16000, 16000))]),
}


# ---- dictionaries (libFuzzer -dict=) -----------------------------------------------------------

SPEC_WORDS = sorted({
    "base_model", "dataset", "method", "peft", "model", "hyperparameters", "diff_tuning",
    "forgetting", "eval", "checkpoint", "device", "priority", "webhook", "url", "events",
    "arch", "depth", "hidden_size", "num_heads", "patch_size", "image_size", "channels",
    "learn_sigma", "num_classes", "steps", "batch_size", "learning_rate", "weight_decay",
    "ema_decay", "class_dropout", "grad_clip", "grad_accum", "seed", "precision", "power",
    "replay_ratio", "replay_weight", "bank_size", "bank_sampler", "bank_steps", "bank_cfg",
    "buckets", "loss_images", "switch_points", "samples", "sample_every", "fid_every",
    "fid_samples", "extractor", "sampler", "cfg", "every", "keep",
    "pretrain", "full", "forgetting_curve", "lora", "DiT-S/2", "DiT-XL/8", "custom", "auto",
    "bf16", "fp32", "ddpm", "ddim", "inception", "classifier:", "cpu", "cuda", "cuda:0",
    "http://", "https://", "status", "progress", "sample", "metric", "log", "error",
    "ds_", "mdl_", "job_", "null", "true", "false", "1e308", "-0", "0.5", "2147483648",
    "9007199254740993", "\\u00e9", "\\ud83d\\ude00", "\\u0000"})
ROUTER_WORDS = sorted({
    "GET", "POST", "DELETE", "HEAD", "PUT", "/", "//", "/jobs", "/datasets", "/models", "/ui/",
    "/session", "/health", "/metrics", "/openapi.json", "/workers", "/cancel", "/retry",
    "/events", "/samples", "/checkpoints", "/preview.png", "job_", "ds_", "mdl_", "bytes=",
    "bytes=-", "-", ",", "*", "W/", "18446744073709551615", "9223372036854775807"})


def dictionary(words):
    """libFuzzer's format: one kwN="..." per line, with \\ and \" escaped."""
    return "".join('kw%d="%s"\n' % (i, w.replace("\\", "\\\\").replace('"', '\\"'))
                   for i, w in enumerate(words))


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    texts = spec_texts()
    for name, text in texts.items():
        put("spec", name + ".json", text)
    for i, (name, text) in enumerate(sorted(texts.items())):
        key = "" if i % 3 == 0 else ("key-%d\n" % i if i % 3 == 1 else "bad key\n")
        put("request", name + ".req", key + text)
    put("request", "deep.req", "k\n" + "[" * 40 + "]" * 40)
    # An unknown key cut inside a character in the error's param (a bug the fuzzer found).
    put("request", "long_unicode_key.req", 'k\n{"%s\u00e9": 1}' % ("a" * 126))
    put("request", "strings.req", '\n{"a": "[{\\"]", "b": [[{"c": "}"}]]}')
    for i, (method, path) in enumerate(ROUTE_SEEDS):
        rng, last, inm = HEADER_SEEDS[i % len(HEADER_SEEDS)]
        put("router", "route_%02d" % i, "\n".join([method, path, rng, last, inm]))
    for name, data in ST_SEEDS.items():
        put("safetensors", name + ".safetensors", data)
    for name, data in IDX_SEEDS.items():
        put("idx", name, data)
    for name, data in INGEST_SEEDS.items():
        put("ingest", name, data)
    for name, words in (("spec", SPEC_WORDS), ("request", SPEC_WORDS), ("router", ROUTER_WORDS)):
        with open(os.path.join(HERE, name + ".dict"), "w") as f:
            f.write("# libFuzzer dictionary of fuzz_%s (written by make_corpus.py)\n" % name)
            f.write(dictionary(words))


if __name__ == "__main__":
    main()
