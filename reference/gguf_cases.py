#!/usr/bin/env python3
"""GGUF fixtures from PyPI `gguf` 0.19.0 itself, for tests/quant_gguf.rs.

Writes into fixtures/quant/ (or `--out DIR`):

- `blocks.safetensors`: f32 inputs and what `gguf.quants.quantize` makes of them as Q8_0, Q4_0,
  F16 and BF16 bytes (`quantize/<case>/input`, `quantize/<case>/<type>`), with
  `gguf.quants.dequantize` of those bytes (`quantize/<case>/<type>.dequantized`); and bytes
  given straight to `dequantize` (`dequantize/<case>/<type>`, `.dequantized`). A quantize
  input's last dimension is its row length.
- `cases.json`: the cases, what each probes, and the inputs the package refuses (rows not whole
  blocks) with its error.
- `small.gguf`, `small_align64.gguf`: written by `gguf.GGUFWriter` with metadata of every value
  type (arrays of several types, nested arrays, non-ASCII strings) and tensors of several ggml
  types, shapes and alignments; `small.json`, `small_align64.json`: how `gguf.GGUFReader` reads
  them (reference/gguf_read.py).

Inputs stay inside what the reference defines: no NaN or infinity in Q8_0 / Q4_0 input, and no
block so small that `1 / d` overflows (ggml and numpy then cast a non-finite float to an integer,
which is undefined; src/quant/blocks.rs documents what voxtrace does there); no signalling NaN
in F16 input (numpy's f32 -> f16 cast of one depends on the CPU). Everything else, ties and
overflow included, is in.

    .venv/bin/python reference/gguf_cases.py [--out DIR]      # or: just reference
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # do not leave reference/__pycache__ behind
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gguf  # noqa: E402
import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFValueType  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import gguf_read  # noqa: E402

ROOT = HERE.parent
OUT = ROOT / "fixtures" / "quant"
GGUF_VERSION = "0.19.0"

QTYPES = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "f16": T.F16, "bf16": T.BF16}


def f32(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


def is_snan32(x: np.ndarray) -> np.ndarray:
    b = x.view(np.uint32)
    return ((b & 0x7F800000) == 0x7F800000) & ((b & 0x007FFFFF) != 0) & ((b & 0x00400000) == 0)


def block(values: dict[int, float], fill: float = 0.0) -> np.ndarray:
    b = np.full(32, fill, dtype=np.float32)
    for i, v in values.items():
        b[i] = v
    return b


def quantize_cases(rng: np.random.Generator) -> list[tuple[str, str, np.ndarray, list[str]]]:
    """(name, what it probes, input with rows as its last dimension, types)."""
    cases = []
    all_types = ["q8_0", "q4_0", "f16", "bf16"]
    scales = 10.0 ** np.linspace(-30, 30, 16)
    normal = (rng.standard_normal((16, 32)) * scales[:, None]).astype(np.float32)
    cases.append(("normal", "normal values, one block per scale 1e-30..1e30, rows of 128", normal.reshape(4, 128), all_types))

    huge = []
    for amax in [65504 * 127, 65519 * 127, 65520 * 127, -65520 * 127, 1e7, 1e20, 3.4028234e38, -3.4028234e38]:
        b = (rng.uniform(-1, 1, 32) * abs(amax) * 0.9).astype(np.float32)
        b[int(rng.integers(32))] = amax
        huge.append(b)
    cases.append(("huge", "largest magnitudes at the f16 limit of d (65504 * 127, the 65520 tie), 1e7, 1e20, f32 max", np.stack(huge), all_types))

    tiny = []
    for amax in [1e-5, 5.9604645e-8 * 127, 2.0**-25 * 127, 2.0**-25 * 127 * 1.5, 1e-10, 1e-20, 1e-36, -1e-36]:
        b = (rng.uniform(-1, 1, 32) * abs(amax) * 0.9).astype(np.float32)
        b[int(rng.integers(32))] = amax
        tiny.append(b)
    cases.append(("tiny", "small magnitudes: f16-subnormal d, d at the f16 zero tie, down to 1e-36 (1 / d still finite)", np.stack(tiny), all_types))

    zeros = [
        block({}),
        block({}, fill=-0.0),
        np.array([0.0, -0.0] * 16, dtype=np.float32),
        block({17: -3.0}),
        block({0: 1e-3}, fill=-0.0),
    ]
    cases.append(("zeros", "all +0, all -0, alternating signed zeros, one non-zero", np.stack(zeros), all_types))

    half_ints = [127.0] + [k + 0.5 for k in range(-15, 15)] + [126.5]
    ties_q8 = [
        np.array(half_ints, dtype=np.float32),
        block({0: -127.0, 1: 0.5, 2: -0.5, 3: 1.5, 4: -1.5, 5: 2.5, 6: -2.5, 7: -126.5, 8: 126.5}),
        block({0: 127 * (1 + 2.0**-11), 1: 1.0}),  # d = 1 + 2^-11: f16 tie, rounds to 1 (even)
        block({0: 127 * (1 + 3 * 2.0**-11), 1: 1.0}),  # d = 1 + 3 * 2^-11: tie, rounds up
        block({0: 127.0, 1: float(np.nextafter(np.float32(2.5), np.float32(0))), 2: float(np.nextafter(np.float32(2.5), np.float32(9)))}),
    ]
    cases.append(("ties_q8", "Q8_0 x / d exactly k + 0.5 (rounds away from zero), f16 ties of d", np.stack(ties_q8).astype(np.float32), all_types))

    halves = [-8.0] + [k - 0.5 for k in range(-7, 8)] + [k for k in range(-7, 8)] + [7.9]
    below = np.nextafter(np.array([k - 0.5 for k in range(-7, 8)], dtype=np.float32), np.float32(-100))
    ties_q4 = [
        np.array(halves, dtype=np.float32),
        np.concatenate([[np.float32(-8.0)], below, np.zeros(16, np.float32)]).astype(np.float32),
        -np.array(halves, dtype=np.float32),  # max +8: d = -1
        block({0: -8 * (1 + 2.0**-11), 1: 1.0}),  # d = 1 + 2^-11: f16 tie
    ]
    cases.append(("ties_q4", "Q4_0 x / d + 8.5 exactly an integer and just below, d = 1 and -1, f16 tie of d", np.stack(ties_q4).astype(np.float32), all_types))

    sign = [
        block({4: -5.0, 9: 4.0, 20: -4.99}),
        block({3: 5.0, 10: -5.0, 11: 1.0}),
        block({3: -5.0, 10: 5.0, 11: 1.0}),
        (rng.uniform(-1, 1, 32) * 0.5).astype(np.float32) - np.float32(0.6),
    ]
    cases.append(("sign_of_max", "largest magnitude negative; +m and -m both present (the first wins)", np.stack(sign).astype(np.float32), all_types))

    f16_special = np.array(
        [65504, 65519.996, 65520, -65520, 65536, 2.0**-24, 2.0**-25, -(2.0**-25), 1.5 * 2.0**-25, 3 * 2.0**-25,
         2.0**-14, 2.0**-14 - 2.0**-25, 1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-11), 0.0, -0.0,
         np.inf, -np.inf, np.nan, -np.nan, 1e-45, 3.4028234e38, -3.4028234e38, 0.1, 1 / 3, -2 / 3,
         1e-7, 6e-8, 3e-8, 1e5, 5e4, 1.0, -1.0, 2.0**-26, 1e-40, 1e30],
        dtype=np.float32,
    )
    payload = f32([0x7FC01234, 0xFFC0_0001, 0x7FFF_FFFF, 0xFFE0_2000])
    f16_special = np.concatenate([f16_special, payload])
    cases.append(("float_special", "f16 limits, ties, subnormals, signed zeros, inf, quiet NaN payloads; 41 values (not whole blocks)", f16_special, ["f16", "bf16"]))

    bf16_special = f32([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F8000, 0xFF7F8000, 0x7F800001, 0xFF800001,
                        0x7FA00000, 0x7FC00000, 0x7FFFFFFF, 0x7F800000, 0xFF800000, 0x00008000, 0x00018000, 0x00000001, 0x80000000])
    cases.append(("bf16_special", "bf16 ties, overflow to inf, signalling and quiet NaNs, subnormals", bf16_special, ["bf16"]))

    bits = rng.integers(0, 2**32, 512, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[~is_snan32(bits)]
    cases.append(("random_bits", "random f32 bit patterns (no signalling NaN)", bits, ["f16", "bf16"]))
    return cases


def dequantize_cases(rng: np.random.Generator) -> list[tuple[str, str, str, np.ndarray]]:
    """(name, what, type, bytes)."""
    out = []

    def finite_f16(n: int) -> np.ndarray:
        h = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
        h[(h & 0x7C00) == 0x7C00] &= 0xBFFF  # exponent 31 -> 15: finite
        return h

    q8 = rng.integers(0, 256, (32, 34), dtype=np.uint16).astype(np.uint8)
    q8[:, :2] = finite_f16(32).view(np.uint8).reshape(32, 2)
    out.append(("random_q8_0", "random Q8_0 blocks with finite scales", "q8_0", q8.ravel()))
    q4 = rng.integers(0, 256, (32, 18), dtype=np.uint16).astype(np.uint8)
    q4[:, :2] = finite_f16(32).view(np.uint8).reshape(32, 2)
    out.append(("random_q4_0", "random Q4_0 blocks with finite scales", "q4_0", q4.ravel()))
    special = np.zeros((6, 34), dtype=np.uint8)
    for i, d in enumerate([0x7C00, 0xFC00, 0x7E00, 0x0001, 0x8000, 0x7BFF]):
        special[i, :2] = np.array([d], dtype=np.uint16).view(np.uint8)
        special[i, 2:] = rng.integers(0, 256, 32, dtype=np.uint16).astype(np.uint8)
        special[i, 2] = 0
    out.append(("special_scales_q8_0", "Q8_0 scales inf, -inf, NaN, the smallest subnormal, -0, 65504", "q8_0", special.ravel()))
    h = rng.integers(0, 2**16, 512, dtype=np.uint32).astype(np.uint16)
    snan = ((h & 0x7C00) == 0x7C00) & ((h & 0x03FF) != 0) & ((h & 0x0200) == 0)
    h = h[~snan]
    out.append(("random_f16", "random f16 bit patterns (no signalling NaN)", "f16", h.view(np.uint8)))
    b = rng.integers(0, 2**16, 512, dtype=np.uint32).astype(np.uint16)
    out.append(("random_bf16", "random bf16 bit patterns", "bf16", b.view(np.uint8)))
    return out


def write_blocks(out: Path) -> dict:
    rng = np.random.default_rng(20)
    tensors: dict[str, np.ndarray] = {}
    listing = {"quantize": [], "dequantize": [], "refused": []}
    for name, what, x, types in quantize_cases(rng):
        tensors[f"quantize/{name}/input"] = np.ascontiguousarray(x)
        for t in types:
            q = quantize(x, QTYPES[t])
            qb = np.ascontiguousarray(q).view(np.uint8).ravel()
            tensors[f"quantize/{name}/{t}"] = qb
            tensors[f"quantize/{name}/{t}.dequantized"] = np.asarray(dequantize(qb, QTYPES[t]), dtype=np.float32).ravel()
        listing["quantize"].append({"name": name, "what": what, "shape": list(x.shape), "types": types})
    for name, what, t, b in dequantize_cases(rng):
        tensors[f"dequantize/{name}/{t}"] = np.ascontiguousarray(b)
        with np.errstate(invalid="ignore", over="ignore"):
            tensors[f"dequantize/{name}/{t}.dequantized"] = np.asarray(dequantize(b, QTYPES[t]), dtype=np.float32).ravel()
        listing["dequantize"].append({"name": name, "what": what, "type": t})
    rows48 = np.ones((2, 48), dtype=np.float32)
    for t in ["q8_0", "q4_0"]:
        try:
            quantize(rows48, QTYPES[t])
            raise SystemExit(f"gguf {gguf_version()} quantized rows of 48 to {t}; the fixture expects an error")
        except gguf.quants.QuantError as e:
            listing["refused"].append({"type": t, "shape": [2, 48], "error": f"QuantError: {e}"})
    save_file(tensors, str(out / "blocks.safetensors"))
    return listing


def write_small(path: Path, alignment: int | None) -> None:
    rng = np.random.default_rng(21 if alignment is None else 22)
    w = gguf.GGUFWriter(path, arch="voxtrace-test")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_name("tiny test model")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 3.14159)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 2.718281828459045)
    w.add_bool("test.true", True)
    w.add_bool("test.false", False)
    w.add_string("test.string", "grüße, voxtrace ✓")
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.floats", [0.5, -1.25, 1e-3])
    w.add_array("test.strings", ["a", "", "ünï", "tab\there"])
    w.add_array("test.bools", [True, False, True])
    w.add_array("test.bytes", b"\x00\x01\xff")
    w.add_key_value("test.u64s", [1, 2**64 - 1], GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT64)
    w.add_key_value("test.f64s", [0.25, -1e300], GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT64)
    w.add_key_value("test.i16s", [-1, 2, -3], GGUFValueType.ARRAY, sub_type=GGUFValueType.INT16)
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_array("test.nested_strings", [["x"], ["y", "z"]])

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    w.add_tensor("f32.matrix", normal(2, 3))
    w.add_tensor("f16.vector", normal(5).astype(np.float16))
    w.add_tensor("bf16.matrix", quantize(normal(4, 8), T.BF16), raw_dtype=T.BF16)
    w.add_tensor("q8_0.matrix", quantize(normal(2, 64), T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("q4_0.matrix", quantize(normal(3, 32), T.Q4_0), raw_dtype=T.Q4_0)
    if alignment is None:
        w.add_tensor("q8_0.3d", quantize(normal(2, 2, 32), T.Q8_0), raw_dtype=T.Q8_0)
        w.add_tensor("f32.4d", normal(1, 2, 3, 4))
        w.add_tensor("i32.vector", np.array([1, -2, 2**31 - 1], dtype=np.int32))
        w.add_tensor("i8.vector", np.array([-128, 0, 1, 127, 5], dtype=np.int8))
        w.add_tensor("f64.vector", np.array([np.pi, -np.e], dtype=np.float64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


def generate(out: Path) -> None:
    if gguf_version() != GGUF_VERSION:
        raise SystemExit(f"gguf {gguf_version()} is installed; these fixtures are from gguf=={GGUF_VERSION} (reference/requirements-light.txt)")
    out.mkdir(parents=True, exist_ok=True)
    # Overflow to f16 infinity and the like are cases here, not accidents.
    with np.errstate(all="ignore"):
        listing = write_blocks(out)
    listing = {"gguf": GGUF_VERSION, "numpy": np.__version__, **listing}
    (out / "cases.json").write_text(json.dumps(listing, indent=1, ensure_ascii=False) + "\n")
    for name, alignment in [("small", None), ("small_align64", 64)]:
        write_small(out / f"{name}.gguf", alignment)
        desc = gguf_read.describe(out / f"{name}.gguf")
        (out / f"{name}.json").write_text(json.dumps(desc, separators=(",", ":")) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    generate(args.out)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
