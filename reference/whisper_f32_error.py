#!/usr/bin/env python
"""Upstream's own float32 error, per traced tensor, for the Whisper tiny.en dump clips: the
per-tensor scale of the condition-aware tolerance of voxtrace's pairwise f32 checks.

Run (from the repo root, after `just setup-reference` and `just models`):

    .venv-ref/bin/python reference/whisper_f32_error.py

What it does (transformers 5.23.0 `WhisperForConditionalGeneration`, eager attention, CPU):
1. Builds the model from the CTranslate2 `model.bin` with `reference/whisper_reference.py`'s
   `build_model` (the same f16-exact weights as the dumps).
2. For each dump clip, reads `input_features` and `input_ids` from the committed
   `fixtures/whisper_tiny_en/dumps/<clip>.safetensors` and runs one teacher-forced forward pass
   in float32 and one in float64, recording every module's inputs and outputs under the dump's
   capture names (`whisper_reference.Recorder`), over all 1500 encoder frames (no gathering).
3. Checks that the float32 pass is the dump: every stored tensor equal to the recorded one at
   the dump's gathered frames (max |diff| printed; it must be 0).
4. Writes `fixtures/whisper_tiny_en/f32_error.json`: per clip and capture name, `max_err` =
   max |x_f32 - x_f64| over the whole tensor, `max_abs` = max |x_f64|, and `numel`.

With `--pairs CLIP LABEL=DUMP...` (full voxtrace trace dumps of CLIP's dump inputs, e.g.
`voxtrace trace --inputs fixtures/whisper_tiny_en/dumps/goforward.safetensors --out X`, or
`reference/onnx_run.py` outputs) it writes nothing and prints, for every pair of torch float32
and the given runs, the smallest flat atol at rtol 1e-4 over all common tensors and the factor
of upstream's float32 error the pair needs where the atol must exceed 5e-4: the measurement
behind `F32_ERROR_FACTOR` in tests/common/mod.rs.

Why: two float32 implementations of the same maths differ only by rounding, and how much
rounding shows depends on each tensor's conditioning (`fc1` of encoder layer 3, 384 products of
inputs up to ~90 summed into outputs up to ~560, loses far more than a LayerNorm output). The float64 pass is the
exact result to within ~1e-13 here; upstream's float32 distance from it measures, tensor by
tensor, how much an f32 implementation can legitimately differ. The Rust tests
(`tests/whisper_common/f32_error.rs`) bound the difference of two f32 runs by a multiple of it.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whisper_reference as wr  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def record(model, feats, ids, dtype):
    """Every capture (dump names) of one teacher-forced forward pass of `model` in `dtype`."""
    model = model.to(dtype)
    rec = wr.Recorder(model, float_dtype=dtype)
    try:
        with torch.no_grad():
            out = model(input_features=feats.to(dtype), decoder_input_ids=ids, use_cache=False, return_dict=True)
    finally:
        rec.close()
    tensors = {k: v for k, v in rec.tensors.items() if k not in wr.DUPLICATES}
    tensors["input_features"] = feats.to(dtype)
    tensors["logits"] = out.logits.to(dtype)
    return tensors


def pairs(model, clip, specs, floor=5e-4, rtol=1e-4):
    """Print, per pair of runs of `clip`, the smallest flat atol and the factor of upstream's
    float32 error (`f32_error.json`) needed above `floor`."""
    import itertools

    from safetensors.numpy import load_file

    err = json.loads((wr.FIX / "f32_error.json").read_text())["clips"][clip]
    dump = load_file(str(wr.FIX / "dumps" / f"{clip}.safetensors"))
    feats, ids = torch.from_numpy(dump["input_features"]), torch.from_numpy(dump["input_ids"])
    runs = {"torch f32": {k: v.numpy() for k, v in record(model, feats, ids, torch.float32).items()}}
    for spec_ in specs:
        label, _, path = spec_.partition("=")
        if not path:
            raise SystemExit(f"{spec_}: expected LABEL=DUMP")
        runs[label] = load_file(path)
    for a, b in itertools.combinations(runs, 2):
        flat, need, at, n = 0.0, 0.0, "", 0
        for k, st in err.items():
            x, y = runs[a].get(k), runs[b].get(k)
            if x is None or y is None or x.shape != y.shape:
                continue
            n += 1
            x, y = x.astype(np.float64), y.astype(np.float64)
            keep = np.abs(y) < 1e38  # masks
            excess = float((np.abs(x - y) - rtol * np.abs(y))[keep].max(initial=0.0))
            flat = max(flat, excess)
            if excess > floor and excess / st["max_err"] > need:
                need, at = excess / st["max_err"], f" at {k} (atol {excess:.2e}, upstream f32 error {st['max_err']:.2e})"
        print(f"{clip}: {a} vs {b}: {n} tensors; smallest flat atol {flat:.2e}; factor needed above {floor}: {need:.2f}{at}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(REPO / "models-cache" / "whisper-tiny.en"))
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2, as the dumps)")
    ap.add_argument("--out", default=str(wr.FIX / "f32_error.json"))
    ap.add_argument("--pairs", nargs="+", metavar=("CLIP", "LABEL=DUMP"), help="check runs instead of writing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = wr.load_model(args.cache)
    if args.pairs:
        pairs(model, args.pairs[0], args.pairs[1:])
        return

    clips = {}
    for clip in wr.DUMP_CLIPS:
        dump_path = wr.FIX / "dumps" / f"{clip}.safetensors"
        with safe_open(str(dump_path), "pt") as f:
            dump = {k: f.get_tensor(k) for k in f.keys()}
            sliced = json.loads(f.metadata()["voxtrace.sliced"])
        feats, ids = dump["input_features"], dump["input_ids"]
        r32 = record(model, feats, ids, torch.float32)
        r64 = record(model, feats, ids, torch.float64)
        assert set(r32) == set(r64), set(r32) ^ set(r64)

        # The float32 pass must be the dump (same weights, inputs, threads, kernels).
        worst = 0.0
        for k, want in dump.items():
            if k in ("input_ids", "generated_ids"):
                continue
            got = r32[k]
            for g in sliced.get(k, {}).get("gathers", []):
                got = torch.index_select(got, g["axis"], torch.tensor(g["indices"]))
            assert got.shape == want.shape, (clip, k, got.shape, want.shape)
            worst = max(worst, float((got - want).abs().max()))
        print(f"{clip}: float32 pass vs committed dump, max |diff| {worst:.3e}")
        assert worst == 0.0, f"{clip}: the float32 pass is not the committed dump; regenerate the dumps first"

        per = {}
        for k, x64 in r64.items():
            if not x64.is_floating_point():
                continue
            x32 = r32[k].double()
            # Attention masks hold each dtype's lowest value (transformers' `finfo(dtype).min`):
            # the same "masked" in both passes, not a rounding difference.
            masked = (x64 == torch.finfo(torch.float64).min) & (x32 == torch.finfo(torch.float32).min)
            x64 = torch.where(masked, x32, x64)
            d = (x32 - x64).abs()
            per[k] = {"max_err": float(d.max()), "max_abs": float(x64.abs().max()), "numel": x64.numel()}
        clips[clip] = per
        big = sorted(per.items(), key=lambda kv: -kv[1]["max_err"])[:5]
        print(f"{clip}: {len(per)} tensors; largest float32 errors: " + ", ".join(f"{k} {v['max_err']:.2e}" for k, v in big))

    wr.atomic_json(
        {
            "what": "per capture name: max |x_f32 - x_f64| over the whole tensor (max_err), max |x_f64| (max_abs), "
            "numel; transformers float32 and float64 teacher-forced forward passes on the dump's inputs",
            "source": f"pytorch {torch.__version__} transformers {transformers.__version__} eager, {args.threads} threads, "
            "CT2 float16 weights upcast exactly",
            "command": ".venv-ref/bin/python reference/whisper_f32_error.py",
            "clips": clips,
        },
        Path(args.out),
    )
    print(f"wrote {Path(args.out).relative_to(REPO) if Path(args.out).is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
