"""Upstream's hook dump of a full-size Voxtral Realtime checkpoint, for `just parity-full-size DIR`.

One teacher-forced forward pass of upstream transformers 5.23 (`VoxtralRealtimeForConditionalGeneration`,
eager attention, `use_cache=False`) on a Mistral-layout folder (`consolidated.safetensors` +
`params.json` + `tekken.json`, as the release and reference/full_size_checkpoint.py lay it out):
the encoder over the whole clip, the adapter (projector) and one decoder pass over every audio
token's position, with forward hooks recording the module outputs as a trace-v1 dump whose
names are voxtrace's capture names (reference/dump_torch.py's `Recorder`, the same names as the
tiny fixture's dumps). `voxtrace trace --inputs DUMP --no-generate --names-from DUMP` traces
the same pass on the same inputs; `tests/voxtral_fullsize_parity.rs` compares the two.

    .venv-ref/bin/python reference/voxtral_fullsize_parity.py --checkpoint DIR --audio ../shared/audio/001.wav --out up.safetensors
    .venv-ref/bin/python reference/voxtral_fullsize_parity.py --check-hold --checkpoint fixtures/voxtral_tiny/mistral --audio ../shared/audio/001.wav

Inputs: the upstream processor on the clip (offline padding; features f32), `input_ids` = the
processor's prompt (BOS + [STREAMING_PAD] x 38) followed by [STREAMING_PAD] up to one id per
audio token (no generation: the ids need not come from the model, both sides get the same),
`num_delay_tokens` from the processor. The decoder pass is causal, so its first 39 rows are the
prefill step of `generate` (the last of them gives the first generated token's logits).

Memory (`--hold`): upstream in f32 needs ~17.7 GB for the 4B model. By default (`--hold bf16`)
the model is held as the checkpoint stores it (BF16, loaded on the meta device with
`assign=True` as reference/bench_realtime_torch.py does) and computes in `--compute` precision
(f32, or f64 for a floor): a forward pre-hook on every module that owns parameters swaps each
of its own parameters for an upcast copy, and a forward hook puts the stored BF16 tensor back,
so one module's weights at a time exist in the compute dtype (the largest: the 1.6 GB f32 token
table) and every activation is in the compute dtype. BF16 -> f32 (or f64) is exact, so the
module sees the very f32 weights a plain f32 model holds and runs the same kernels:
`--check-hold` proves the dump of this mode bit-identical (every tensor, `torch.equal`) to a
plain model converted to the compute dtype (`--hold compute`), for f32 and f64, on a given
checkpoint (the tiny fixture: `just parity-full-size` runs that check first).

`--compute f64` is the float64 floor (upstream's eager softmax runs in f32 even for f64 models;
reference/voxtral_tiny.py's `f64_eager_attention` swaps in the same function with an f64
softmax): tensors stored as F64.

`--perturbed-copy DST [--tensor NAME --value V]` copies the checkpoint with one BF16 weight
changed (default: element 0 of decoder layer 12's `feed_forward.w2`), to see the test fail
and name the first diverging capture.

`--floor F32_DUMP F64_DUMP --out floor.json` writes upstream's own f32 error per tensor (max
|f32 - f64|), which the test's tolerance is built from; `--tol-args floor.json` prints the same
lifted tolerances as `voxtrace compare --tol` arguments (for the HTML report).

Prints one JSON line (load_s, forward_s, peak_rss_mib = getrusage ru_maxrss, ...). Exit 0 on
success, 1 when `--check-hold` finds a difference, 2 on unusable input.
"""

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import VoxtralRealtimeFeatureExtractor, VoxtralRealtimeProcessor  # noqa: E402
from transformers.tokenization_mistral_common import MistralCommonBackend  # noqa: E402

import bench_realtime_torch as brt  # noqa: E402  (load_model: Mistral folder -> upstream model on meta + assign)
import dump_torch as dt  # noqa: E402  (Recorder, NameFilter, atomic_save: the trace-v1 names)
import voxtral_tiny as vt  # noqa: E402  (f64_eager_attention)

COMPUTE = {"f32": torch.float32, "f64": torch.float64}

# What the full-size dump records (voxtrace's --filter syntax) unless --filter / --all: the
# inputs and logits, the conv stem, every encoder and decoder layer's output and its blocks'
# outputs (norms, attention, MLP, the decoder's ada-norm scale), the encoder's final norm, the
# adapter's every step, the time embedding, the token embedding and the decoder's final norm
# (~350 MB for 001.wav). Left out: module inputs (each is an output already recorded) and the
# projections inside attention / MLP (their block outputs are recorded; the tiny fixture's
# parity test checks every one of them).
FULLSIZE_FILTER = [
    r"re:^(input_features|input_ids|logits)$",
    r"re:^model\.(audio_tower|language_model)\.layers\.\d+\.(out|self_attn\.out\.0|mlp\.out|self_attn_layer_norm\.out"
    r"|final_layer_norm\.out|input_layernorm\.out|post_attention_layernorm\.out|ada_rms_norm\.out)$",
    r"re:^model\.audio_tower\.(embedder(\.conv[12])?\.out|norm\.out|out\.last_hidden_state)$",
    r"re:^model\.multi_modal_projector\.(linear_1\.out|act\.out|linear_2\.out|out)$",
    r"re:^model\.(out\.audio_hidden_states|time_embedding\.out|language_model\.(embed_tokens\.out|norm\.out|out\.last_hidden_state))$",
]


class UpcastHooks:
    """Hold the weights in their stored dtype, compute in `dtype` (see the module docs).

    For every module that owns parameters (`parameters(recurse=False)`): the pre-hook replaces
    each such parameter's `.data` with `data.to(dtype)` and keeps the stored tensor; the post-hook
    puts the stored tensor back (no re-rounding: the very tensor, so nothing can drift). A tied
    parameter (`lm_head.weight` is `embed_tokens.weight`) is upcast by whichever module runs."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        self.dtype = dtype
        self.stash: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}
        self.handles = []
        self.calls = 0
        for _, mod in model.named_modules():
            if any(True for _ in mod.parameters(recurse=False)):
                self.handles.append(mod.register_forward_pre_hook(self._pre))
                self.handles.append(mod.register_forward_hook(self._post))

    def _pre(self, mod, args):
        self.calls += 1
        for p in mod.parameters(recurse=False):
            if p.dtype != self.dtype and id(p) not in self.stash:
                self.stash[id(p)] = (p, p.data)
                p.data = p.data.to(self.dtype)

    def _post(self, mod, args, out):
        for p in mod.parameters(recurse=False):
            held = self.stash.pop(id(p), None)
            if held is not None:
                p.data = held[1]

    def close(self):
        for h in self.handles:
            h.remove()
        assert not self.stash, f"{len(self.stash)} parameters left upcast"


def load(ckpt: Path, hold: str, compute: torch.dtype):
    """(model, config): held in BF16 with upcast hooks, or a plain model in `compute`."""
    if hold == "bf16":
        model, cfg = brt.load_model(ckpt, torch.bfloat16, "eager")
        bad = sorted({str(p.dtype) for p in model.parameters()} - {"torch.bfloat16"})
        if bad:
            raise brt.BenchError(f"{ckpt}: parameters of dtype {bad} in a BF16-held model")
        return model, cfg
    model, cfg = brt.load_model(ckpt, torch.float32, "eager")
    return (model.double() if compute == torch.float64 else model), cfg


def inputs(ckpt: Path, audio: Path, cfg):
    """(input_features f32 [1, 128, frames], input_ids [1, N], num_delay_tokens, wav samples)."""
    try:
        x, sr = sf.read(audio, dtype="float32", always_2d=False)
    except (OSError, RuntimeError) as e:
        raise brt.BenchError(f"{audio}: {e}") from e
    if sr != 16000 or x.ndim != 1:
        raise brt.BenchError(f"{audio}: not mono 16 kHz (sr={sr}, shape={x.shape})")
    processor = VoxtralRealtimeProcessor(
        feature_extractor=VoxtralRealtimeFeatureExtractor(), tokenizer=MistralCommonBackend(str(ckpt / "tekken.json"))
    )
    enc = processor(np.ascontiguousarray(x), return_tensors="pt")
    feats = enc["input_features"].float().contiguous()
    prompt = enc["input_ids"][0].tolist()
    pad = prompt[-1]
    if prompt[0] != brt.BOS or any(t != pad for t in prompt[1:]):
        raise brt.BenchError(f"{ckpt / 'tekken.json'}: unexpected prompt {prompt[:4]}... (want BOS then [STREAMING_PAD])")
    n = math.ceil(feats.shape[-1] / cfg.audio_length_per_tok)
    if n < len(prompt):
        raise brt.BenchError(f"{audio}: {n} audio tokens, fewer than the {len(prompt)}-token prompt")
    ids = torch.tensor([prompt + [pad] * (n - len(prompt))], dtype=torch.int64)
    return feats, ids, int(enc["num_delay_tokens"]), len(x), len(prompt)


def dump(model, feats, ids, n_delay, compute, hold, keep):
    """One hooked teacher-forced pass; returns (tensors by name in call order, logits)."""
    up = UpcastHooks(model, compute) if hold == "bf16" else None
    rec = dt.Recorder(model, keep=keep, repeats="error")
    score_std: dict[str, float] = {}
    names = {id(m): n for n, m in model.named_modules()}
    floor = vt.f64_eager_attention(score_std, names) if compute == torch.float64 else contextlib.nullcontext()
    try:
        with floor, torch.no_grad():
            out = model(input_features=feats.to(compute), input_ids=ids, num_delay_tokens=n_delay, use_cache=False)
    finally:
        rec.close()
        if up is not None:
            up.close()
    tensors = {}
    for k, v in (("input_features", feats.to(compute)), ("input_ids", ids)):
        if keep(k):
            tensors[k] = v.contiguous().clone()
    for k, v in rec.tensors.items():
        if k in tensors:
            raise brt.BenchError(f"capture {k} clashes with a model input name")
        tensors[k] = v
    logits = out.logits.detach().contiguous().clone()
    if keep("logits"):
        tensors["logits"] = logits
    return tensors, logits, (up.calls if up else 0)


def check_hold(args) -> int:
    """The BF16-held dump equals the plain model's, bit for bit, in f32 and in f64."""
    failures = []
    for cname in ("f32", "f64"):
        compute = COMPUTE[cname]
        runs = {}
        for hold in ("compute", "bf16"):
            model, cfg = load(args.checkpoint, hold, compute)
            feats, ids, n_delay, _, _ = inputs(args.checkpoint, args.audio, cfg)
            runs[hold], _, calls = dump(model, feats, ids, n_delay, compute, hold, dt.NameFilter([]))
            if hold == "bf16":
                held = {str(p.dtype) for p in model.parameters()}
                if held != {"torch.bfloat16"} or calls == 0:
                    failures.append(f"{cname}: after the pass the parameters are {held}, {calls} upcast calls")
            del model
        a, b = runs["compute"], runs["bf16"]
        if list(a) != list(b):
            failures.append(f"{cname}: capture names differ: {sorted(set(a) ^ set(b))[:5]}")
        diff = [k for k in a if k in b and (a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]))]
        for k in diff[:10]:
            d = float((a[k].double() - b[k].double()).abs().max()) if a[k].shape == b[k].shape else float("nan")
            failures.append(f"{cname}: {k} differs ({a[k].dtype} vs {b[k].dtype}, max |diff| {d:e})")
        print(
            f"check-hold {cname}: {len(a)} tensors of the plain {cname} model vs {len(b)} of the BF16-held "
            f"model computing in {cname}: {len(a) - len(diff)} bit-identical, {len(diff)} differ",
            file=sys.stderr,
        )
    for f in failures:
        print(f"check-hold: FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


BASE_ATOL, BASE_RTOL, F32_ERROR_FACTOR = 1e-5, 1e-4, 2.0  # as tests/voxtral_fullsize_parity.rs


def floor(f32_dump: Path, f64_dump: Path, out: Path) -> int:
    """Upstream's own f32 error per tensor: max |f32 - f64| of the two dumps (same weights and
    inputs), with max |f64| and the f64 RMS for scale; JSON {"tensors": {name: {...}}}."""
    a = dt.read_safetensors(f32_dump)
    b = dt.read_safetensors(f64_dump)
    per = {}
    for k, x in a.items():
        if not x.is_floating_point():
            continue
        if k not in b or b[k].shape != x.shape:
            raise brt.BenchError(f"{f64_dump}: no tensor {k} of shape {list(x.shape)}")
        y = b[k].double()
        d = (x.double() - y).abs()
        per[k] = {"max_err": float(d.max()), "max_abs": float(y.abs().max()), "rms": float(y.pow(2).mean().sqrt())}
    doc = {"f32": str(f32_dump), "f64": str(f64_dump),
           "note": "max_err = max |upstream f32 - upstream f64| (f64 softmax), max_abs / rms of the f64 tensor",
           "tensors": per}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    worst = max(per, key=lambda k: per[k]["max_err"])
    print(f"floor: {len(per)} tensors, largest f32 error {per[worst]['max_err']:.3e} at {worst} -> {out}", file=sys.stderr)
    return 0


def tol_args(floor_json: Path) -> int:
    """One `--tol=NAME=ATOL,RTOL` line per tensor whose atol the test lifts (for voxtrace compare)."""
    per = json.loads(floor_json.read_text(encoding="utf-8"))["tensors"]
    for k, st in per.items():
        if F32_ERROR_FACTOR * st["max_err"] > BASE_ATOL:
            if any(c in k for c in "*?[]{}"):
                raise brt.BenchError(f"{floor_json}: glob character in capture name {k}")
            print(f"--tol={k}={F32_ERROR_FACTOR * st['max_err']:.6g},{BASE_RTOL}")
    return 0


def perturbed_copy(src: Path, dst: Path, tensor: str, value: float) -> int:
    """A copy of checkpoint `src` in `dst` whose `tensor` has element 0 set to `value` (BF16),
    params.json and tekken.json copied: the parity test run on it must fail at the first
    capture downstream of that weight. `dst` must not be inside `src`."""
    import shutil
    import struct

    src, dst = src.resolve(), dst.resolve()
    if dst == src or src in dst.parents:
        raise brt.BenchError(f"{dst}: the perturbed copy must not be written inside {src}")
    f = src / "consolidated.safetensors"
    with open(f, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    info = header.get(tensor)
    if info is None or info.get("dtype") != "BF16":
        raise brt.BenchError(f"{f}: no BF16 tensor {tensor}")
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("params.json", "tekken.json"):
        shutil.copyfile(src / name, dst / name)
    out = dst / "consolidated.safetensors"
    shutil.copyfile(f, out)
    old = torch.empty(1, dtype=torch.bfloat16)
    new = torch.tensor([value], dtype=torch.bfloat16)
    with open(out, "r+b") as fh:
        fh.seek(8 + n + int(info["data_offsets"][0]))
        fh.readinto(memoryview(old.view(torch.uint8).numpy()).cast("B"))
        fh.seek(8 + n + int(info["data_offsets"][0]))
        fh.write(new.view(torch.uint8).numpy().tobytes())
    print(f"{out}: {tensor}[0] {float(old[0])} -> {float(new[0])}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="Mistral-layout Voxtral Realtime folder")
    ap.add_argument("--audio", type=Path, help="16 kHz mono clip (default clip of the recipe: 001.wav, 1.1 s)")
    ap.add_argument("--out", type=Path, help="trace-v1 dump to write (atomic)")
    ap.add_argument("--compute", choices=sorted(COMPUTE), default="f32", help="activation / weight precision of every product")
    ap.add_argument("--hold", choices=["bf16", "compute"], default="bf16",
                    help="bf16: weights held as stored, upcast per module (default); compute: a plain model in --compute")
    ap.add_argument("--filter", action="append", default=[],
                    help="record only matching names (voxtrace's --filter syntax; default: FULLSIZE_FILTER); repeatable")
    ap.add_argument("--all", action="store_true", help="record every module's inputs and outputs (no FULLSIZE_FILTER)")
    ap.add_argument("--exclude", action="append", default=[], help="drop matching names; repeatable")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-hold", action="store_true", help="prove --hold bf16 bit-identical to --hold compute on --checkpoint")
    ap.add_argument("--floor", nargs=2, type=Path, metavar=("F32_DUMP", "F64_DUMP"),
                    help="write upstream's f32 error per tensor (JSON) to --out instead of running the model")
    ap.add_argument("--tol-args", type=Path, metavar="FLOOR_JSON",
                    help="print the lifted per-tensor tolerances as voxtrace compare --tol arguments")
    ap.add_argument("--perturbed-copy", type=Path, metavar="DST",
                    help="copy --checkpoint to DST with element 0 of --tensor set to --value (a failing run for the test)")
    ap.add_argument("--tensor", default="layers.12.feed_forward.w2.weight", help="Mistral tensor name for --perturbed-copy")
    ap.add_argument("--value", type=float, default=1.0, help="new value of its element 0 (BF16-rounded)")
    args = ap.parse_args(argv)
    if args.perturbed_copy:
        if args.checkpoint is None:
            ap.error("--perturbed-copy needs --checkpoint")
        return perturbed_copy(args.checkpoint, args.perturbed_copy, args.tensor, args.value)
    if args.tol_args:
        return tol_args(args.tol_args)
    if args.floor:
        if args.out is None:
            ap.error("--floor needs --out")
        return floor(*args.floor, args.out)
    if args.checkpoint is None or args.audio is None:
        ap.error("--checkpoint and --audio are required")
    torch.set_num_threads(max(1, args.threads))
    torch.use_deterministic_algorithms(False)
    transformers.logging.set_verbosity_error()
    if args.check_hold:
        return check_hold(args)
    if args.out is None:
        ap.error("--out is required (or --check-hold)")
    compute = COMPUTE[args.compute]
    keep = dt.NameFilter(args.filter or ([] if args.all else FULLSIZE_FILTER), args.exclude)
    t0 = time.perf_counter()
    model, cfg = load(args.checkpoint, args.hold, compute)
    load_s = time.perf_counter() - t0
    feats, ids, n_delay, n_samples, prompt_len = inputs(args.checkpoint, args.audio, cfg)
    t0 = time.perf_counter()
    tensors, logits, calls = dump(model, feats, ids, n_delay, compute, args.hold, keep)
    forward_s = time.perf_counter() - t0
    meta = {
        "voxtrace.format": "trace-v1",
        "voxtrace.order": json.dumps(list(tensors)),
        "voxtrace.source": f"pytorch {torch.__version__} transformers {transformers.__version__} "
                           f"VoxtralRealtimeForConditionalGeneration eager {args.compute} (weights held {args.hold})",
        "voxtrace.model": str(args.checkpoint),
        "voxtrace.input": f"{args.audio.name}: processor features, prompt + [STREAMING_PAD] to {ids.shape[1]} ids",
        "voxtrace.num_delay_tokens": str(n_delay),
        "voxtrace.prompt_len": str(prompt_len),
        "voxtrace.command": "reference/voxtral_fullsize_parity.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    dt.atomic_save(tensors, args.out, meta)
    summary = {
        "out": str(args.out),
        "tensors": len(tensors),
        "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        "compute": args.compute,
        "hold": args.hold,
        "upcast_calls": calls,
        "audio": str(args.audio),
        "audio_s": n_samples / 16000.0,
        "mel_frames": int(feats.shape[-1]),
        "positions": int(ids.shape[1]),
        "prompt_len": prompt_len,
        "top1_first_step": int(logits[0, prompt_len - 1].argmax()),
        "load_s": round(load_s, 2),
        "forward_s": round(forward_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
        "wall_s": round(time.perf_counter() - T_START, 2),
        "threads": args.threads,
        "torch_version": torch.__version__,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except brt.BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
