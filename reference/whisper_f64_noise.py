#!/usr/bin/env python
"""f32 noise floor of a Whisper tiny.en forward pass, measured against float64 (a diagnostic;
writes no fixture).

Run (from the repo root, after `just setup-reference` and `just models`):

    target/debug/voxtrace trace --model models-cache/whisper-tiny.en \
        --inputs fixtures/whisper_tiny_en/dumps/goforward.safetensors --out /tmp/flex.safetensors
    .venv-ref/bin/python reference/whisper_f64_noise.py \
        --inputs fixtures/whisper_tiny_en/dumps/goforward.safetensors flex=/tmp/flex.safetensors

What it does (transformers 5.23.0 `WhisperForConditionalGeneration`, eager attention, CPU):
1. Builds the model from the CTranslate2 `model.bin` with `reference/whisper_reference.py`'s
   `build_model` (the same f16-exact weights) and runs it in float32, then in float64.
2. Runs both on the `input_features` / `input_ids` of `--inputs` (a trace-v1 dump), with a
   forward hook on every module recording `<module path>.out`.
3. For torch float32 and for every `label=dump` given (voxtrace trace-v1 dumps of the same
   inputs, unsliced), prints per tensor the 99th percentile and the maximum of |x - x_f64|, and
   per run the smallest atol at which every common tensor would pass at `--rtol`
   (`|x - x_f64| <= atol + rtol |x_f64|`), and the same between every pair of runs.

The f64 pass is the reference for "how far is f32 from the exact result here": a tensor whose
torch f32 error is already large is ill-conditioned, and two f32 implementations can differ
there by about twice that much without either being wrong.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whisper_reference as wr  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_torch(model, feats, ids):
    """Every module output of one teacher-forced forward pass of `model` (in its own dtype),
    as float64 numpy arrays."""
    dtype = next(model.parameters()).dtype
    rec = {}

    def hook(name):
        def f(_mod, _inp, out):
            o = out[0] if isinstance(out, tuple) else out
            if torch.is_tensor(o):
                rec[name + ".out"] = o.detach().double().numpy()

        return f

    handles = [mod.register_forward_hook(hook(n)) for n, mod in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(input_features=feats.to(dtype), decoder_input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(REPO / "models-cache" / "whisper-tiny.en"))
    ap.add_argument("--inputs", required=True, help="trace-v1 dump holding input_features and input_ids")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the per-tensor figures here")
    ap.add_argument("runs", nargs="*", metavar="LABEL=DUMP", help="voxtrace dumps of the same inputs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = wr.load_model(args.cache)
    dump = load_file(args.inputs)
    feats = torch.from_numpy(dump["input_features"])
    ids = torch.from_numpy(dump["input_ids"]).long()

    runs = {"torch f32": run_torch(model, feats, ids)}
    r64 = run_torch(model.to(torch.float64), feats, ids)
    for spec_ in args.runs:
        label, _, path = spec_.partition("=")
        if not path:
            raise SystemExit(f"{spec_}: expected LABEL=DUMP")
        runs[label] = {k: v.astype(np.float64) for k, v in load_file(path).items()}
    names = [n for n in r64 if all(n in r and r[n].shape == r64[n].shape for r in runs.values())]
    if not names:
        raise SystemExit("no tensor common to every run with the upstream shape (sliced dump?)")
    print(f"{len(names)} tensors common to every run; |x - x_f64| as p99/max per run")
    print(f"{'tensor':<52}{'max|x|':>9}  " + "  ".join(f"{k:>19}" for k in runs))
    table = {}
    for n in names:
        row = {}
        for k, r in runs.items():
            d = np.abs(r[n] - r64[n]).ravel()
            row[k] = {"p99": float(np.quantile(d, 0.99)), "max": float(d.max())}
        table[n] = row
        cells = "  ".join(f"{row[k]['p99']:.1e}/{row[k]['max']:.1e}".rjust(19) for k in runs)
        print(f"{n:<52}{np.abs(r64[n]).max():>9.1f}  {cells}")

    def need(a, ref):
        return max(float((np.abs(a[n] - ref[n]) - args.rtol * np.abs(ref[n])).max()) for n in names)

    print(f"\nsmallest passing atol at rtol {args.rtol}")
    for k, r in runs.items():
        print(f"  {k} vs torch f64: {need(r, r64):.3e}")
    labels = list(runs)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            print(f"  {a} vs {b}: {need(runs[b], runs[a]):.3e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"inputs": args.inputs, "rtol": args.rtol, "tensors": table}, indent=1))


if __name__ == "__main__":
    main()
