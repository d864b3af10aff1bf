#!/usr/bin/env python3
"""Writes a reference safetensors file for test_safetensors, independently of difftune's writer.

Usage: make_safetensors.py OUT

Written from the published format description only: an 8-byte little-endian unsigned header
length N, N bytes of UTF-8 JSON mapping each tensor name to {"dtype", "shape", "data_offsets":
[begin, end]} (offsets relative to the byte after the header) plus an optional "__metadata__"
object of string -> string, then the tensor bytes, little-endian, row-major.

The file deliberately exercises what a careless reader gets wrong: the tensors are listed in the
header in a different order from their bytes in the data section, the header length is not a
multiple of 8 (so the data section is unaligned), and it holds F16 (including a subnormal and the
largest finite value), BF16, F64, I64, U8, a 0-d scalar and an empty tensor. The expected values
are repeated in tests/test_safetensors.c.
"""
import json
import struct
import sys


def f32_bytes(vals):
    return struct.pack("<%df" % len(vals), *vals)


def f16_bytes(vals):
    return struct.pack("<%de" % len(vals), *vals)


def bf16_bytes(vals):
    # bfloat16 is the top half of an IEEE float32; these values are exactly representable.
    out = b""
    for v in vals:
        (bits,) = struct.unpack("<I", struct.pack("<f", v))
        assert bits & 0xFFFF == 0, v
        out += struct.pack("<H", bits >> 16)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_safetensors.py OUT")
    out = sys.argv[1]

    # name -> (dtype, shape, raw bytes)
    tensors = {
        "layer.weight": ("F32", [2, 3], f32_bytes([0.5 * i - 1.0 for i in range(6)])),
        "half": ("F16", [2, 2], f16_bytes([0.5, -1.25, 65504.0, 2.0 ** -24])),
        "brain": ("BF16", [3], bf16_bytes([1.0, -2.5, 3.140625])),
        "double": ("F64", [2], struct.pack("<2d", 1e-3, -7.25)),
        "counts": ("I64", [3], struct.pack("<3q", -1, 2 ** 40, 7)),
        "bytes": ("U8", [1, 5], bytes([0, 1, 127, 128, 255])),
        "scalar": ("F32", [], f32_bytes([42.5])),
        "empty": ("F32", [0, 4], b""),
    }
    header_order = ["scalar", "layer.weight", "bytes", "half", "empty", "counts", "brain",
                    "double"]
    data_order = ["double", "brain", "half", "layer.weight", "empty", "counts", "bytes",
                  "scalar"]
    assert sorted(header_order) == sorted(tensors) == sorted(data_order)

    offsets = {}
    data = b""
    for name in data_order:
        raw = tensors[name][2]
        offsets[name] = [len(data), len(data) + len(raw)]
        data += raw

    header = {"__metadata__": {"format": "pt", "note": "written by make_safetensors.py"}}
    for name in header_order:
        dtype, shape, _ = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets[name]}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if len(text) % 8 == 0:
        text += b" "  # keep the data section unaligned on purpose

    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)


if __name__ == "__main__":
    main()
