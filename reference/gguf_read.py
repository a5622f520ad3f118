#!/usr/bin/env python3
"""Describe a GGUF file as PyPI `gguf` 0.19.0's own reader (`gguf.GGUFReader`) sees it, as JSON.

Used by tests/quant_gguf.rs (a file written by voxtrace's writer, read back by the package) and
by reference/gguf_cases.py (the description of the package-written fixture files).

Output, on stdout (or `--out FILE`):

    {"version": 3, "alignment": 32, "data_offset": N,
     "metadata": [{"key": K, "types": ["ARRAY", "INT32"], "values": [...]}, ...],
     "tensors": [{"name": N, "type": "Q8_0", "dims": [ne0, ne1, ...], "start": ABS_OFFSET,
                  "n_bytes": B, "data": HEX, "dequantized": [f32 bits, ...]}, ...]}

`types` is the reader's list (an array's own type, then its first element's, recursively);
`values` are the leaves the reader finds, flattened, each a string: integers in decimal, floats as
the hex of their IEEE bits (`f32` 8 digits, `f64` 16), bools `true` / `false`, strings as the hex
of their bytes. `dequantized` (F32, F16, BF16, Q8_0, Q4_0 only) is `gguf.quants.dequantize` of
the tensor's bytes, as f32 bit patterns.

    .venv/bin/python reference/gguf_read.py FILE.gguf [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.quants import dequantize

DEQUANTIZED = {
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
}


def leaf(part: np.ndarray, vtype: GGUFValueType) -> str:
    if vtype == GGUFValueType.STRING:
        return part.tobytes().hex()
    if vtype == GGUFValueType.FLOAT32:
        return f"{int(part.view(np.uint32)[0]):08x}"
    if vtype == GGUFValueType.FLOAT64:
        return f"{int(part.view(np.uint64)[0]):016x}"
    if vtype == GGUFValueType.BOOL:
        return "true" if bool(part[0]) else "false"
    return str(int(part[0]))


def describe(path: Path) -> dict:
    r = GGUFReader(path)
    metadata = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header (version, counts)
        leaf_type = field.types[-1]
        values = [] if field.types == [GGUFValueType.ARRAY] else [leaf(field.parts[i], leaf_type) for i in field.data]
        metadata.append({"key": key, "types": [t.name for t in field.types], "values": values})
    tensors = []
    for t in r.tensors:
        entry = {
            "name": t.name,
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "start": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "data": np.asarray(t.data).tobytes().hex(),
        }
        if t.tensor_type in DEQUANTIZED:
            deq = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            entry["dequantized"] = [int(v) for v in deq.view(np.uint32).ravel()]
        tensors.append(entry)
    version = int(r.fields["GGUF.version"].parts[0][0])
    return {
        "version": version,
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "metadata": metadata,
        "tensors": tensors,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = json.dumps(describe(args.file), indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
