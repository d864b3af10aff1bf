"""Reading safetensors for the Python references (tests/ref_*.py, and through
tests/reference/st_io.py the PyTorch fixture scripts), written from the published format only:
an 8-byte little-endian header length, a JSON header (name -> dtype, shape, data_offsets; an
optional "__metadata__" of strings), then the raw little-endian bytes."""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2", "I32": "<i4", "I64": "<i8"}


def read_safetensors(path, who="ref"):
    """Every tensor of the file as a float64 array, keyed by name in header order (metadata
    dropped). Exits 1 naming the file (and `who`, the calling script) when the file is short, a
    dtype is not one of DTYPES or a tensor's bytes do not fit its shape."""
    def fail(msg):
        sys.stderr.write("%s: %s: %s\n" % (who, path, msg))
        sys.exit(1)

    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail("shorter than the 8-byte header length")
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in DTYPES:
            fail("tensor %s has unsupported dtype %s" % (name, dt))
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[dt])
        if dt == "BF16":  # the top half of an IEEE float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        shape = tuple(info["shape"])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            fail("tensor %s: %d elements for shape %s" % (name, arr.size, shape))
        tensors[name] = arr.reshape(shape).astype(np.float64)
    return tensors
