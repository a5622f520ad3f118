#!/usr/bin/env python3
"""Check that the committed tiny Voxtral Realtime fixtures are reproducible.

Regenerates everything with `reference/voxtral_tiny.py` into a temporary folder and compares it
with the committed fixtures (default `fixtures/voxtral_tiny`):

- every `.safetensors` file: same tensor names, dtypes, shapes and values (tensor by tensor;
  exact equality expected on the same machine), the same `__metadata__`, and the same bytes
  (voxtral_tiny.py writes a canonical header, so regenerated files are byte-identical);
- every other file (json, txt, wav): byte-identical, except `summary.json`, whose timing
  fields (`t_*_s`) are ignored.

Prints the max |diff| per tensor that differs and a per-file summary. Exit code 0 when
everything matches, 1 on any difference (missing/extra file or tensor, dtype/shape/value or
metadata mismatch), 2 on a usage error.

    .venv-ref/bin/python reference/voxtral_tiny_check.py [--fixtures DIR] [--keep]   # or: just reference-check
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # do not leave reference/__pycache__ behind

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

import voxtral_tiny  # noqa: E402


def load_st(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118 (safe_open has no __iter__)


def compare_st(a: Path, b: Path, label: str) -> list[str]:
    errs: list[str] = []
    ta, ma = load_st(a)
    tb, mb = load_st(b)
    if ma != mb:
        keys = sorted(set(ma) | set(mb))
        diff = [k for k in keys if ma.get(k) != mb.get(k)]
        errs.append(f"metadata differs in keys {diff}")
    for k in sorted(set(ta) - set(tb)):
        errs.append(f"tensor {k} missing in regenerated file")
    for k in sorted(set(tb) - set(ta)):
        errs.append(f"tensor {k} extra in regenerated file")
    max_diff = 0.0
    for k in sorted(set(ta) & set(tb)):
        x, y = ta[k], tb[k]
        if x.dtype != y.dtype or x.shape != y.shape:
            errs.append(f"{k}: committed {x.dtype}{list(x.shape)} vs regenerated {y.dtype}{list(y.shape)}")
            continue
        if not torch.equal(x, y):
            if x.is_floating_point():
                d = (x.double() - y.double()).abs()
                md = float(torch.nan_to_num(d, nan=float("inf")).max())
            else:
                md = float((x.long() - y.long()).abs().max())
            max_diff = max(max_diff, md)
            errs.append(f"{k}: values differ, max |diff| = {md:.3e}")
    print(f"  {label}: {len(ta)} tensors, max |diff| = {max_diff:.3e}{'' if not errs else '  MISMATCH'}")
    return errs


def strip_timings(obj):
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if not (k.startswith("t_") and k.endswith("_s"))}
    return obj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=voxtral_tiny.DEFAULT_OUT)
    ap.add_argument("--keep", action="store_true", help="keep the regenerated folder")
    args = ap.parse_args(argv)
    committed: Path = args.fixtures
    if not committed.is_dir():
        print(f"error: fixtures folder {committed} does not exist", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="voxtral_tiny_check_"))
    try:
        rc = voxtral_tiny.main(["--out", str(tmp)])
        if rc != 0:
            print(f"error: voxtral_tiny.py failed with exit code {rc}", file=sys.stderr)
            return 1
        ignore = {"README.md"}  # hand-written documentation, not generated
        files_a = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and p.name not in ignore}
        files_b = {p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file()}
        errors: list[str] = []
        for p in sorted(files_a - files_b):
            errors.append(f"{p}: committed but not regenerated")
        for p in sorted(files_b - files_a):
            errors.append(f"{p}: regenerated but not committed")
        for rel in sorted(files_a & files_b):
            a, b = committed / rel, tmp / rel
            if rel.suffix == ".safetensors":
                st_errs = compare_st(a, b, str(rel))
                errors += [f"{rel}: {e}" for e in st_errs]
                if not st_errs and a.read_bytes() != b.read_bytes():
                    errors.append(f"{rel}: same tensors and metadata but the file bytes differ")
            elif rel.name == "summary.json":
                ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
                same = strip_timings(ja) == strip_timings(jb)
                print(f"  {rel}: {'identical (timings ignored)' if same else 'MISMATCH'}")
                if not same:
                    errors.append(f"{rel}: content differs (timings ignored)")
            else:
                same = a.read_bytes() == b.read_bytes()
                print(f"  {rel}: {'byte-identical' if same else 'MISMATCH'}")
                if not same:
                    errors.append(f"{rel}: bytes differ")
        if errors:
            print(f"FAIL: {len(errors)} difference(s):", file=sys.stderr)
            for e in errors:
                print(f"  {e}", file=sys.stderr)
            return 1
        print(f"OK: {len(files_a)} files match the regenerated fixtures exactly")
        return 0
    finally:
        if args.keep:
            print(f"regenerated fixtures kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
