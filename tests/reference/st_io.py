"""Reading and writing safetensors for the PyTorch fixture scripts (torch_dit.py, torch_vae.py),
from the published format: an 8-byte little-endian header length, a JSON header (name -> dtype,
shape, data_offsets; optional "__metadata__" of strings), the raw bytes."""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ref_safetensors  # noqa: E402  (tests/ref_safetensors.py, shared with the numpy references)


def read_safetensors(path):
    """name -> float64 torch tensor, in header order (tests/ref_safetensors.py reads the file)."""
    return {name: torch.from_numpy(a) for name, a in ref_safetensors.read_safetensors(path, "st_io").items()}


def write_safetensors(path, tensors, metadata):
    """tensors: (name, numpy array) pairs in file order; integer arrays are stored as I32, every
    other one as F32."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, a in tensors:
        is_int = np.issubdtype(np.asarray(a).dtype, np.integer)
        raw = np.ascontiguousarray(a, dtype="<i4" if is_int else "<f4").tobytes()
        header[name] = {"dtype": "I32" if is_int else "F32", "shape": list(np.shape(a)),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
