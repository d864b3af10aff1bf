"""Reading and writing safetensors for the PyTorch fixture scripts (torch_dit.py, torch_vae.py),
written from the published format only: an 8-byte little-endian header length, a JSON header
(name -> dtype, shape, data_offsets; optional "__metadata__" of strings), the raw bytes."""
import json
import struct

import numpy as np
import torch


def read_safetensors(path):
    """(name -> float64 torch tensor, the names in header order), from F32, F16 or BF16 tensors."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    data = blob[8 + hlen:]
    out, order = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype={"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[info["dtype"]])
        if info["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(raw.astype(np.float64).reshape(info["shape"]))
        order.append(name)
    return out, order


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
