#!/usr/bin/env python
"""Prove `reference/dump_torch.py` on two models (`just dump-torch-check`; needs `just setup-reference`).

    .venv-ref/bin/python reference/dump_torch_check.py --voxtrace target/debug/voxtrace
        [--audio-dir ../shared/audio] [--whisper models-cache/whisper-tiny.en] [--keep DIR]

1. Hook semantics on a toy module: positional / keyword inputs, tuple and `ModelOutput`
   outputs, bool tensors and non-tensors skipped, a module called twice is an error under
   `--repeats error` and recorded once (first call) under `--repeats first`.
2. Whisper tiny.en: `voxtrace trace` of goforward.wav; `dump_torch.py` of the transformers
   model (`reference/whisper_hf_folder.py`) on the same clip through `WhisperFeatureExtractor`
   with the trace's `generated_ids[:-1]` as `decoder_input_ids`; `voxtrace compare` at the
   chained Whisper tolerances of `tests/whisper_parity.rs` (atol 5e-4, rtol 1e-4, atol raised
   per name to twice transformers' own f32 error from `fixtures/whisper_tiny_en/f32_error.json`).
   Every joined name must pass; the names only one side records must be exactly the three
   explained in WHISPER_UNJOINED; at least 270 names must join.
3. Kyutai speech-to-text (tiny, random, `reference/kyutai_tiny.py`): two f32 dumps are
   bit-identical (`voxtrace compare` exit 0), and f32 vs bf16 (additive attention masks
   excluded: they hold each dtype's lowest value) gives a drift report (`--html`,
   `--json`) in which every name joins; prints the per-layer figures.

Exit 0 when every check holds, 1 otherwise.
"""
import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True

import torch  # noqa: E402
import transformers  # noqa: E402

import dump_torch  # noqa: E402

# Names one side records and the other does not, on the Whisper pair (reference = dump_torch).
WHISPER_UNJOINED = {
    # missing in voxtrace's trace:
    "decoder_input_ids": "the model input; voxtrace records the same ids as `input_ids`",
    "proj_out.out": "voxtrace records it once, as the top-level `logits` (bit-identical in transformers)",
    "encoder_last_hidden_state": "a root output field; voxtrace records it as `model.out.encoder_last_hidden_state`",
    # extra in voxtrace's trace:
    "input_ids": "voxtrace's name for the decoder input ids",
    "generated_ids": "voxtrace's greedy sequence (the dump's decoder ids are taken from it)",
}
CHAIN_ATOL, CHAIN_RTOL, F32_ERROR_FACTOR = 5e-4, 1e-4, 2.0
FAILURES = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        FAILURES.append(what)


def run(cmd, ok_codes=(0,)):
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode not in ok_codes:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"command failed with exit code {p.returncode}: {cmd[0]} {cmd[1] if len(cmd) > 1 else ''}")
    return p


def toy_checks():
    @dataclasses.dataclass
    class Out(transformers.utils.ModelOutput):
        a: torch.Tensor = None
        b: torch.Tensor = None

    class Inner(torch.nn.Module):
        def forward(self, x, mask=None, scale=1.0):
            return x * scale, None, (x + 1, "text")

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, y):
            return Out(a=self.lin(y), b=None)

    class Toy(torch.nn.Module):
        def __init__(self, twice):
            super().__init__()
            self.inner = Inner()
            self.head = Head()
            self.twice = twice

        def forward(self, x):
            y, _, _ = self.inner(x, mask=torch.ones(2, dtype=torch.bool), scale=2.0)
            if self.twice:
                self.inner(y)
            return self.head(y)

    x = torch.ones(1, 2)
    m = Toy(False)
    rec = dump_torch.Recorder(m)
    out = m(x)
    rec.close()
    want = ["inner.in.0", "inner.out.0", "inner.out.2.0", "head.in.0", "head.lin.in.0", "head.lin.out", "head.out.a"]
    check(list(rec.tensors) == want, f"toy: capture names {list(rec.tensors)} == {want}")
    check("head.out.a" in rec.tensors and torch.equal(rec.tensors["head.out.a"], out.a), "toy: recorded output equals the returned one")
    m = Toy(True)
    rec = dump_torch.Recorder(m)
    try:
        m(x)
        raised = False
    except dump_torch.RepeatedCall:
        raised = True
    finally:
        rec.close()
    check(raised, "toy: a module called twice is an error under --repeats error")
    m = Toy(True)
    rec = dump_torch.Recorder(m, repeats="first")
    m(x)
    rec.close()
    check(rec.repeated() == {"inner": 2} and torch.equal(rec.tensors["inner.in.0"], x), "toy: --repeats first keeps the first call and counts the calls")


def compare(voxtrace, ref, act, out_json, extra=()):
    p = run([voxtrace, "compare", ref, act, "--json", out_json, "-q", *extra], ok_codes=(0, 1))
    return p.returncode, json.loads(Path(out_json).read_text())


def whisper(args, tmp):
    clip = args.audio_dir / "goforward.wav"
    hf = tmp / "whisper-hf"
    run([sys.executable, HERE / "whisper_hf_folder.py", hf, "--cache", args.whisper])
    vox = tmp / "whisper_voxtrace.safetensors"
    run([args.voxtrace, "trace", "--model", args.whisper, clip, "--out", vox])
    ref = tmp / "whisper_torch.safetensors"
    run([sys.executable, HERE / "dump_torch.py", "--model", hf, "--audio", clip, "--ids", f"decoder_input_ids={vox}:generated_ids[:-1]", "--kwarg", "use_cache=false", "--out", ref])
    errs = json.loads((REPO / "fixtures" / "whisper_tiny_en" / "f32_error.json").read_text())["clips"]["goforward"]
    tols = [f"--tol={n}={F32_ERROR_FACTOR * e['max_err']:.6g},{CHAIN_RTOL}" for n, e in errs.items() if F32_ERROR_FACTOR * e["max_err"] > CHAIN_ATOL]
    _, rep = compare(args.voxtrace, ref, vox, tmp / "whisper_compare.json", ["--atol", CHAIN_ATOL, "--rtol", CHAIN_RTOL, *tols])
    joined = [t for t in rep["tensors"] if t["status"] not in ("missing",)]
    bad = [t["name"] for t in joined if t["status"] != "pass"]
    missing = {t["name"] for t in rep["tensors"] if t["status"] == "missing"}
    extra = {e["name"] if isinstance(e, dict) else e for e in rep["extra"]}
    worst = max(joined, key=lambda t: t["metrics"]["max_abs_err"] if t.get("metrics") else 0)
    logits = next(t for t in joined if t["name"] == "logits")["metrics"]
    print(
        f"whisper tiny.en goforward: {rep['summary']['total']} names in the torch dump, {rep['actual']['tensors']} in voxtrace's, "
        f"{len(joined)} joined, {len(joined) - len(bad)} pass at atol {CHAIN_ATOL} rtol {CHAIN_RTOL} ({len(tols)} names raised to 2x f32 error); "
        f"largest max |diff| {worst['metrics']['max_abs_err']:.3e} at {worst['name']}; logits max |diff| {logits['max_abs_err']:.3e}, "
        f"top-1 {logits['top1_agree']}/{logits['positions']}"
    )
    check(not bad, f"whisper: every joined name passes (failing: {bad[:5]})")
    check(len(joined) >= 270, f"whisper: {len(joined)} >= 270 names join")
    check(missing | extra == set(WHISPER_UNJOINED), f"whisper: unjoined names {sorted(missing | extra)} are exactly the explained ones")


def kyutai(args, tmp):
    model = tmp / "kyutai-tiny"
    run([sys.executable, HERE / "kyutai_tiny.py", model, "--audio", args.audio_dir / "goforward.wav"])
    dumps = {}
    for name, dtype in (("f32", "f32"), ("f32_again", "f32"), ("bf16", "bf16")):
        dumps[name] = tmp / f"kyutai_{name}.safetensors"
        run([sys.executable, HERE / "dump_torch.py", "--model", model, "--inputs", model / "inputs.safetensors", "--dtype", dtype, "--exclude", "*.attention_mask", "--out", dumps[name]])
    code, rep = compare(args.voxtrace, dumps["f32"], dumps["f32_again"], tmp / "kyutai_f32_f32.json", ["--atol", 0, "--rtol", 0])
    check(code == 0 and rep["summary"]["all_passed"], f"kyutai: two f32 dumps are bit-identical ({rep['summary']['compared']} names)")
    html = tmp / "kyutai_f32_vs_bf16.html"
    code, rep = compare(args.voxtrace, dumps["f32"], dumps["bf16"], tmp / "kyutai_f32_bf16.json", ["--html", html])
    s = rep["summary"]
    check(s["missing"] == 0 and s["extra"] == 0 and s["compared"] == s["total"] > 80, f"kyutai: f32 vs bf16, all {s['total']} names join")
    check(html.is_file() and html.stat().st_size > 10_000, f"kyutai: drift report written ({html})")
    print("kyutai tiny f32 vs bf16, per tensor: max |diff|, cosine, SQNR dB")
    for t in rep["tensors"]:
        m = t.get("metrics") or {}
        if re.fullmatch(r"model\.(embed_tokens|layers\.\d+|norm)\.out|logits", t["name"]):
            print(f"  {t['name']:<40} {m.get('max_abs_err', 0):.3e}  {m.get('cosine', 1):.7f}  {m.get('sqnr_db', float('inf')):6.2f}")
    lg = next(t for t in rep["tensors"] if t["name"] == "logits")["metrics"]
    print(f"  logits KL mean {lg['kl_mean']:.3e} max {lg['kl_max']:.3e} nats, top-1 {lg['top1_agree']}/{lg['positions']}")
    check(code == 1 and s["failed"] > 0, "kyutai: bf16 drifts beyond the f32 default tolerance (the report is not vacuous)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--voxtrace", type=Path, required=True, help="the voxtrace binary")
    ap.add_argument("--audio-dir", type=Path, default=REPO.parent / "shared" / "audio")
    ap.add_argument("--whisper", type=Path, default=REPO / "models-cache" / "whisper-tiny.en")
    ap.add_argument("--keep", type=Path, help="write everything here (kept) instead of a temporary folder")
    args = ap.parse_args()
    toy_checks()
    with tempfile.TemporaryDirectory(prefix="dump-torch-check-") as t:
        tmp = args.keep or Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        whisper(args, tmp)
        kyutai(args, tmp)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all dump_torch checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
