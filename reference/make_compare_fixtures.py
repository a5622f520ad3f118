#!/usr/bin/env python3
"""Generate the small committed fixtures under fixtures/compare/ used by tests/compare_*.rs.

They are written by the real upstream writers, so the Rust readers are tested against what
users actually feed them:
  - torch_ref.safetensors / torch_act.safetensors: safetensors.torch.save_file (torch 2.x),
    F32/F16/BF16/I64/BOOL, with and without "voxtrace trace v1" metadata;
  - numpy_compressed.npz: numpy.savez_compressed (deflated members);
  - numpy_stored.npz: numpy.savez (stored members);
  - npy_dir/: numpy.save, nested folders;
  - metrics_ref.safetensors / metrics_act.safetensors + numpy_metrics.json: a pair with
    random values, zeros, NaN and Inf (safetensors.numpy.save_file) and the metrics computed
    for it by the independent numpy implementation in reference/compare_numpy_bench.py
    (default tolerances), so the Rust metrics are cross-checked against numpy;
  - expected.json: for every file and tensor, the shape, dtype, and the exact float64 values
    (as IEEE-754 bit patterns, u64) obtained in Python with torch `.double()` /
    numpy `.astype(np.float64)`, plus the safetensors data-offset order parsed from the header.

Regenerate (from the crate root):
    .venv-ref/bin/python reference/make_compare_fixtures.py fixtures/compare
"""

import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
from safetensors.numpy import save_file as save_file_np
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_numpy_bench  # noqa: E402


def bits(values):
    return [int.from_bytes(struct.pack("<d", float(v)), "little") for v in values]


def entry_torch(t):
    return {
        "shape": list(t.shape),
        "dtype": {
            torch.float32: "F32",
            torch.float16: "F16",
            torch.bfloat16: "BF16",
            torch.int64: "I64",
            torch.bool: "BOOL",
        }[t.dtype],
        "bits": bits(t.double().flatten().tolist()),
    }


NP_DTYPES = {
    "f8": "F64", "f4": "F32", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16",
    "i1": "I8", "u1": "U8", "b1": "BOOL",
}


def entry_np(a):
    key = a.dtype.str[1:]
    return {
        "shape": list(a.shape),
        "dtype": NP_DTYPES[key],
        # C-order values regardless of the array's memory layout.
        "bits": bits(np.ascontiguousarray(a).astype(np.float64).ravel(order="C").tolist()),
    }


def safetensors_offset_order(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return [k for k, _ in sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[0]))]


def main(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    expected = {}

    # ---- torch safetensors pair -------------------------------------------------------------
    g = torch.Generator().manual_seed(1234)
    order = [
        "input_features",
        "model.audio_tower.conv1.out",
        "model.audio_tower.layers.0.out",
        "model.language_model.embed_tokens.out",
        "model.attention_mask",
        "generated_ids",
    ]
    ref = {
        "input_features": torch.randn(1, 4, 6, generator=g, dtype=torch.float32),
        "model.audio_tower.conv1.out": torch.randn(2, 3, 4, generator=g).to(torch.float16),
        "model.audio_tower.layers.0.out": torch.randn(2, 5, generator=g).to(torch.bfloat16),
        "model.language_model.embed_tokens.out": torch.randn(3, generator=g),
        "model.attention_mask": torch.tensor([[True, False, True], [False, True, True]]),
        "generated_ids": torch.tensor([[1, 22, 333, 4444, 55555]], dtype=torch.int64),
    }
    meta = {
        "voxtrace.format": "trace-v1",
        "voxtrace.order": json.dumps(order),
        "voxtrace.source": "pytorch " + torch.__version__.split("+")[0] + " fixture",
    }
    save_file(ref, os.path.join(out, "torch_ref.safetensors"), metadata=meta)

    act = {
        # identical
        "input_features": ref["input_features"].clone(),
        # same values, stored as F32 instead of F16 (dtype difference only)
        "model.audio_tower.conv1.out": ref["model.audio_tower.conv1.out"].to(torch.float32),
        # BF16 with element [1, 2] increased by exactly 0.5 (computed in f64, exact in bf16
        # for |x| < 2 only after rounding, so the expected values are recorded below)
        "model.audio_tower.layers.0.out": ref["model.audio_tower.layers.0.out"].clone(),
        # "model.language_model.embed_tokens.out" is missing on purpose
        "model.attention_mask": ref["model.attention_mask"].t().contiguous(),  # shape [3, 2]
        "generated_ids": ref["generated_ids"].clone(),
        "model.extra_debug.out": torch.zeros(2, dtype=torch.float32),
    }
    act["model.audio_tower.layers.0.out"][1, 2] += 0.5
    save_file(act, os.path.join(out, "torch_act.safetensors"),
              metadata={"voxtrace.source": "fixture actual, no order"})
    for fname, d in (("torch_ref.safetensors", ref), ("torch_act.safetensors", act)):
        expected[fname] = {
            "tensors": {k: entry_torch(v) for k, v in d.items()},
            "offset_order": safetensors_offset_order(os.path.join(out, fname)),
        }
    expected["torch_ref.safetensors"]["declared_order"] = order

    # ---- numpy npz (compressed and stored) --------------------------------------------------
    arrays = {
        "f64": (np.arange(6, dtype=np.float64).reshape(2, 3) - 2.5) / 4.0,
        "f32_big_endian": (np.arange(5, dtype=np.float32) * 1.5 - 3.0).astype(">f4"),
        "f16": (np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 8.0 - 0.5).astype(np.float16),
        "i64": np.array([-(2**40), -1, 0, 7], dtype=np.int64),
        "i32": np.array([[-5, 6], [7, -8]], dtype=np.int32),
        "i16": np.array([-300, 300], dtype=np.int16),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.array([0, 1, 255], dtype=np.uint8),
        "bool": np.array([True, False, True, True]),
        "fortran_f32": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "scalar_f32": np.array(2.25, dtype=np.float32),
        "special_f32": np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32),
    }
    assert arrays["fortran_f32"].flags["F_CONTIGUOUS"] and not arrays["fortran_f32"].flags["C_CONTIGUOUS"]
    np.savez_compressed(os.path.join(out, "numpy_compressed.npz"), **arrays)
    np.savez(os.path.join(out, "numpy_stored.npz"), **arrays)
    for fname in ("numpy_compressed.npz", "numpy_stored.npz"):
        expected[fname] = {
            "tensors": {k: entry_np(v) for k, v in arrays.items()},
            "archive_order": list(arrays.keys()),
        }

    # ---- folder of .npy ---------------------------------------------------------------------
    npy = {
        "model/layers/0/out": np.arange(4, dtype=np.float32) / 2.0,
        "model/layers/2/out": np.arange(4, dtype=np.float32) / 4.0,
        "model/layers/10/out": np.arange(4, dtype=np.float32) / 8.0,
        "logits": np.array([[0.5, -0.25]], dtype=np.float64),
        "tokens": np.array([3, 1, 2], dtype=np.int64),
    }
    for rel, a in npy.items():
        p = os.path.join(out, "npy_dir", rel + ".npy")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        np.save(p, a)
    # A non-.npy file that the reader must ignore.
    with open(os.path.join(out, "npy_dir", "README.txt"), "w") as f:
        f.write("not a tensor\n")
    expected["npy_dir"] = {
        "tensors": {k.replace("/", "."): entry_np(v) for k, v in npy.items()},
    }

    # ---- metrics cross-check pair (numpy) ----------------------------------------------------
    rng = np.random.default_rng(7)
    mref, mact = {}, {}
    a = rng.standard_normal((64, 32)).astype(np.float32)
    mref["dense"] = a
    mact["dense"] = (a + rng.standard_normal(a.shape) * 3e-5).astype(np.float32)
    b = rng.standard_normal(1000).astype(np.float32) * 10
    b[::50] = 0.0
    bb = (b + rng.standard_normal(1000) * 1e-3).astype(np.float32)
    bb[::100] = 0.0  # exact zeros matching zero references
    b[3], bb[3] = np.inf, np.inf          # matching +inf: equal
    b[4], bb[4] = -np.inf, np.inf         # opposite infinities: fail
    b[5], bb[5] = np.nan, np.nan          # NaN in both: fail (equal_nan = False)
    b[6], bb[6] = 1.0, np.nan             # NaN in actual only: fail
    mref["specials"], mact["specials"] = b, bb
    c = (rng.standard_normal((16, 16)) * 4).astype(np.float16)
    mref["half_vs_single"] = c
    mact["half_vs_single"] = (c.astype(np.float32) * np.float32(1.0001)).astype(np.float32)
    mref["zeros"] = np.zeros(8, dtype=np.float32)
    mact["zeros"] = np.zeros(8, dtype=np.float32)
    mref["ints"] = np.arange(-5, 5, dtype=np.int64)
    mact["ints"] = np.arange(-5, 5, dtype=np.int64) * 2
    save_file_np(mref, os.path.join(out, "metrics_ref.safetensors"))
    save_file_np(mact, os.path.join(out, "metrics_act.safetensors"))
    got, _ = compare_numpy_bench.compare(
        os.path.join(out, "metrics_ref.safetensors"),
        os.path.join(out, "metrics_act.safetensors"),
        1e-5, 1e-4,
    )

    def enc(v):
        if isinstance(v, float) and not np.isfinite(v):
            return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")
        return v

    with open(os.path.join(out, "numpy_metrics.json"), "w") as f:
        json.dump({k: {m: enc(v) for m, v in d.items()} for k, d in got.items()}, f, indent=1, sort_keys=True)
        f.write("\n")

    expected["_generator"] = {
        "script": "reference/make_compare_fixtures.py",
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixtures/compare")
