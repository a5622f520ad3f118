#!/usr/bin/env python3
"""Check that the committed GGUF fixtures (fixtures/quant/) are what reference/gguf_cases.py makes
today with PyPI `gguf` 0.19.0.

Regenerates everything into a temporary folder and compares file by file: the same set of
files, each byte-identical (the generator is deterministic: fixed seeds, canonical safetensors
header, `GGUFWriter`'s fixed layout). For a differing `blocks.safetensors` it names the tensors
that differ. Exit code 0 when everything matches, 1 on any difference.

    .venv/bin/python reference/gguf_check.py [--fixtures DIR]      # or: just reference-check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # do not leave reference/__pycache__ behind
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

import gguf_cases  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=gguf_cases.OUT)
    args = ap.parse_args()
    errs: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        with np.errstate(all="ignore"):
            gguf_cases.generate(fresh)
        have = {p.name for p in args.fixtures.iterdir()}
        made = {p.name for p in fresh.iterdir()}
        errs += [f"{n}: committed but no longer generated" for n in sorted(have - made)]
        errs += [f"{n}: generated but not committed" for n in sorted(made - have)]
        for n in sorted(have & made):
            a, b = (args.fixtures / n).read_bytes(), (fresh / n).read_bytes()
            if a == b:
                print(f"ok   {n} ({len(a)} bytes)")
                continue
            errs.append(f"{n}: differs ({len(a)} committed bytes, {len(b)} generated)")
            if n.endswith(".safetensors"):
                ta, tb = load_file(str(args.fixtures / n)), load_file(str(fresh / n))
                for k in sorted(set(ta) | set(tb)):
                    if k not in ta or k not in tb or ta[k].tobytes() != tb[k].tobytes():
                        errs.append(f"  tensor {k} differs")
    for e in errs:
        print(f"FAIL {e}")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
