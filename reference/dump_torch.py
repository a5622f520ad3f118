#!/usr/bin/env python
"""Record every module's inputs and outputs of any transformers model as a trace-v1 dump.

    .venv-ref/bin/python reference/dump_torch.py --model ID_OR_DIR [--audio FILE]
        [--ids NAME=SPEC ...] [--inputs FILE.safetensors] [--kwarg NAME=JSON ...]
        [--dtype f32|bf16|f16] [--filter PATTERN ...] [--exclude PATTERN ...] [--repeats error|first]
        --out OUT.safetensors
    (or: just dump-torch MODEL INPUT OUT [args])

One forward pass `model(**inputs)` (no_grad, eval, eager attention unless `--attn`) with a
forward pre-hook and a forward hook on every entry of `model.named_modules()` except the root.
The result is a `trace-v1` safetensors file (README, "The trace-v1 dump format") that
`voxtrace compare` reads and that joins name by name with `voxtrace trace` and with the other
reference dumps (`reference/whisper_reference.py`, `reference/voxtral_tiny.py`).

Capture names (voxtrace's convention, `src/trace/mod.rs`):
- `<module path>.in.<i>` for the i-th positional argument, `<module path>.in.<kwarg>` for a
  keyword argument, `<module path>.out` for a tensor output, `<module path>.out.<i>` for the
  i-th element of a tuple/list output and `<module path>.out.<field>` for a `ModelOutput`
  field (nested tuples go one level deeper: `.out.hidden_states.3`, `.in.position_embeddings.0`);
- the model inputs under their keyword names (`input_features`, `input_ids`, ...) and the root
  module's outputs under their field names (`logits`, ...; a bare tensor as `output`).
Only tensors are recorded: `None`, caches, Python numbers and bool tensors (attention masks)
are skipped. Floating tensors keep the model's dtype (F32, BF16, F16 in the file), integer
tensors are stored as I64.

Repeated calls: voxtrace's tracer refuses a capture name recorded twice (`TraceError::Duplicate`:
each module runs once in the one teacher-forced pass it traces), and it has no per-call index
suffix. This script mirrors that: by default (`--repeats error`) a module called a second time
is an error naming the module; `--repeats first` keeps the first call's tensors, skips later
calls and lists the per-module call counts in the `voxtrace.repeated_calls` metadata entry.

Inputs (combined; later options override earlier ones for the same name):
- `--audio FILE`: read with soundfile, mixed to mono, run through the model's feature extractor
  (`AutoFeatureExtractor.from_pretrained(MODEL)`), whose outputs (`input_features`,
  `input_values`, `padding_mask`, ...) become model inputs. The file's sample rate must equal
  the feature extractor's `sampling_rate` (no resampling here).
- `--ids NAME=SPEC`: an int64 tensor. SPEC is a comma-separated list (`50257,50362,1514`, shape
  [1, n]) or `DUMP:TENSOR[a:b]` (a tensor of a safetensors file, optionally sliced on its last
  axis, e.g. `run.safetensors:generated_ids[:-1]`).
- `--inputs FILE`: every tensor of a safetensors file becomes a model input of the same name
  (`--inputs-only a,b` to take some).
- `--kwarg NAME=JSON`: a non-tensor keyword argument (`use_cache=false`, `logits_to_keep=1`).
Floating inputs are cast to the model's `--dtype`.

`--filter` keeps only matching names (voxtrace's `--filter` syntax: glob, or `re:REGEX`);
`--exclude` drops matching names, e.g. `'*.attention_mask'`: additive float masks hold the
dtype's lowest value, so an f32 vs bf16 comparison would show them as ~1e36 "errors".

Every recorded tensor is held in memory (on the CPU) until the file is written: for a large
model, narrow the dump with `--filter` / `--exclude`.

Exit codes: 0 written, 1 the forward pass or the hooks failed (repeated module, model error),
2 bad arguments or unreadable inputs. The output is written atomically (temporary file in the
destination folder, then rename).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


class UsageError(Exception):
    """Bad argument or unreadable input (exit code 2)."""


class RepeatedCall(Exception):
    """A module ran twice under `--repeats error` (exit code 1)."""


class NameFilter:
    """voxtrace's `--filter` rule (`src/trace/filter.rs`): no pattern = everything; otherwise a
    name is kept when any pattern matches (glob `*`/`?`/`[...]`, or `re:REGEX`, searched).
    Names matching an `exclude` pattern (same syntax) are dropped first."""

    def __init__(self, patterns, exclude=()):
        self.exclude = NameFilter(exclude) if exclude else None
        self.globs, self.regexes = [], []
        for p in patterns or []:
            if p.startswith("re:"):
                try:
                    self.regexes.append(re.compile(p[3:]))
                except re.error as e:
                    raise UsageError(f"--filter {p!r}: invalid regex: {e}") from e
            else:
                self.globs.append(p)

    def __call__(self, name):
        if self.exclude is not None and self.exclude(name):
            return False
        if not self.globs and not self.regexes:
            return True
        return any(fnmatch.fnmatchcase(name, g) for g in self.globs) or any(r.search(name) for r in self.regexes)


class Recorder:
    """Forward (pre-)hooks on every named module (root excluded); see the module docs for the
    names. Tensors are detached, made contiguous and cloned (safetensors refuses shared storage)."""

    def __init__(self, model, keep=lambda name: True, repeats="error"):
        self.tensors: dict[str, torch.Tensor] = {}
        self.keep = keep
        self.repeats = repeats
        self.calls: dict[str, int] = {}
        self.handles = []
        for name, mod in model.named_modules():
            if name == "":
                continue
            self.handles.append(mod.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self.handles.append(mod.register_forward_hook(self._post(name)))

    def put(self, key, value):
        """Record `value` under `key` when it is a (non-bool) tensor; tuples, lists and
        `ModelOutput`s recurse with `.i` / `.field` suffixes; anything else is skipped."""
        if isinstance(value, torch.Tensor):
            if value.dtype == torch.bool or not self.keep(key):
                return
            if key in self.tensors:
                raise RepeatedCall(f"capture name {key} recorded twice")
            t = value.detach()
            if not t.is_floating_point():
                t = t.to(torch.int64)
            self.tensors[key] = t.to("cpu").contiguous().clone()
        elif isinstance(value, transformers.utils.ModelOutput):
            for k, v in value.items():
                self.put(f"{key}.{k}", v)
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                self.put(f"{key}.{i}", v)

    def _first_call(self, name):
        n = self.calls.get(name, 0) + 1
        self.calls[name] = n
        if n == 1:
            return True
        if self.repeats == "error":
            raise RepeatedCall(
                f"module {name!r} ran a second time in one forward pass; voxtrace's capture names have "
                f"no per-call index, so this dump would need two tensors of one name (use --repeats first "
                f"to keep the first call)"
            )
        return False

    def _pre(self, name):
        def hook(mod, args, kwargs):
            if not self._first_call(name):
                return
            for i, a in enumerate(args):
                self.put(f"{name}.in.{i}", a)
            for k, a in kwargs.items():
                self.put(f"{name}.in.{k}", a)

        return hook

    def _post(self, name):
        def hook(mod, args, out):
            if self.calls.get(name, 0) == 1:
                self.put(f"{name}.out", out)

        return hook

    def repeated(self):
        return {k: v for k, v in self.calls.items() if v > 1}

    def close(self):
        for h in self.handles:
            h.remove()


def parse_ids(spec: str) -> tuple[str, torch.Tensor]:
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise UsageError(f"--ids {spec!r}: expected NAME=SPEC")
    if re.fullmatch(r"\s*-?\d+(\s*,\s*-?\d+)*\s*", value):
        return name, torch.tensor([[int(x) for x in value.split(",")]], dtype=torch.int64)
    m = re.fullmatch(r"(.+):([^:\[\]]+)(?:\[(-?\d*):(-?\d*)\])?", value)
    if not m:
        raise UsageError(f"--ids {spec!r}: SPEC is `1,2,3` or `DUMP.safetensors:TENSOR[a:b]`")
    path, tensor, a, b = m.groups()
    t = read_safetensors(Path(path), [tensor])[tensor]
    if t.is_floating_point() or t.dtype == torch.bool:
        raise UsageError(f"{path}: tensor {tensor} is {t.dtype}, expected an integer tensor")
    if a is not None or b is not None:
        t = t[..., slice(int(a) if a else None, int(b) if b else None)]
    return name, t.to(torch.int64).contiguous()


def read_safetensors(path: Path, names=None) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            want = keys if names is None else names
            missing = [n for n in want if n not in keys]
            if missing:
                raise UsageError(f"{path}: no tensor {', '.join(missing)} (has {len(keys)} tensors)")
            return {n: f.get_tensor(n) for n in want}
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader error is a usage error naming the file
        raise UsageError(f"{path}: not a readable safetensors file: {e}") from e


def audio_inputs(model_ref: str, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    import soundfile as sf

    try:
        fe = transformers.AutoFeatureExtractor.from_pretrained(model_ref)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{model_ref}: no feature extractor for --audio: {e}") from e
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{path}: cannot read audio: {e}") from e
    want = getattr(fe, "sampling_rate", None)
    if want is not None and sr != want:
        raise UsageError(f"{path}: sample rate {sr} Hz, the feature extractor of {model_ref} expects {want} Hz (resample first)")
    feats = fe(x.mean(axis=1), sampling_rate=sr, return_tensors="pt")
    out = {k: v for k, v in feats.items() if isinstance(v, torch.Tensor)}
    return out, f"{path.name} through {type(fe).__name__}"


def load_model(ref: str, cls_name: str | None, dtype: torch.dtype, attn: str):
    try:
        config = transformers.AutoConfig.from_pretrained(ref)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{ref}: not a transformers model (no readable config.json): {e}") from e
    name = cls_name or ((config.architectures or [None])[0])
    cls = getattr(transformers, name, None) if name else transformers.AutoModel
    if cls is None:
        raise UsageError(f"{ref}: transformers {transformers.__version__} has no class {name}")
    try:
        model = cls.from_pretrained(ref, dtype=dtype, attn_implementation=attn)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{ref}: cannot load {cls.__name__}: {e}") from e
    return model.eval(), cls.__name__


def atomic_save(tensors, path: Path, metadata):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dump-torch-", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="hub id or local transformers folder")
    ap.add_argument("--class", dest="cls", help="transformers class (default: config.architectures[0])")
    ap.add_argument("--audio", type=Path, help="audio file for the model's feature extractor")
    ap.add_argument("--ids", action="append", default=[], help="NAME=1,2,3 or NAME=DUMP:TENSOR[a:b] (int64 input)")
    ap.add_argument("--inputs", type=Path, help="safetensors file whose tensors are model inputs")
    ap.add_argument("--inputs-only", help="comma-separated names to take from --inputs")
    ap.add_argument("--kwarg", action="append", default=[], help="NAME=JSON non-tensor keyword argument")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--attn", default="eager", help="attn_implementation (default eager)")
    ap.add_argument("--filter", action="append", default=[], help="record only matching names (glob or re:REGEX); repeatable")
    ap.add_argument("--exclude", action="append", default=[], help="drop matching names (glob or re:REGEX), e.g. '*.attention_mask'; repeatable")
    ap.add_argument("--repeats", choices=["error", "first"], default="error")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        torch.manual_seed(args.seed)
        torch.set_num_threads(max(1, args.threads))
        keep = NameFilter(args.filter, args.exclude)
        dtype = DTYPES[args.dtype]
        inputs: dict[str, torch.Tensor] = {}
        described = []
        if args.audio is not None:
            a, d = audio_inputs(args.model, args.audio)
            inputs.update(a)
            described.append(d)
        if args.inputs is not None:
            only = [n for n in args.inputs_only.split(",") if n] if args.inputs_only else None
            inputs.update(read_safetensors(args.inputs, only))
            described.append(f"tensors of {args.inputs.name}")
        for spec in args.ids:
            n, t = parse_ids(spec)
            inputs[n] = t
            described.append(f"{n} from {spec.partition('=')[2]}")
        kwargs = {}
        for kv in args.kwarg:
            k, sep, v = kv.partition("=")
            if not sep or not k:
                raise UsageError(f"--kwarg {kv!r}: expected NAME=JSON")
            try:
                kwargs[k] = json.loads(v)
            except json.JSONDecodeError as e:
                raise UsageError(f"--kwarg {kv!r}: value is not JSON: {e}") from e
        if not inputs:
            raise UsageError("no model inputs: give --audio, --ids or --inputs")
        inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
        model, cls_name = load_model(args.model, args.cls, dtype, args.attn)
    except UsageError as e:
        print(f"dump_torch: {e}", file=sys.stderr)
        return 2

    rec = Recorder(model, keep=keep, repeats=args.repeats)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in inputs.items():
        if keep(k) and v.dtype != torch.bool:
            tensors[k] = v.contiguous().clone()
    try:
        with torch.no_grad():
            out = model(**inputs, **kwargs)
    except RepeatedCall as e:
        print(f"dump_torch: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the model's own error, reported with the inputs given
        shapes = {k: list(v.shape) for k, v in inputs.items()}
        print(f"dump_torch: {cls_name} forward failed on inputs {shapes}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        rec.close()
    for k, v in rec.tensors.items():
        if k in tensors:
            print(f"dump_torch: module capture {k} has the name of a model input; module paths and input names clash", file=sys.stderr)
            return 1
        tensors[k] = v
    top = Recorder.__new__(Recorder)
    top.tensors, top.keep = {}, keep
    if isinstance(out, torch.Tensor):
        top.put("output", out)
    elif isinstance(out, transformers.utils.ModelOutput):
        for k, v in out.items():
            top.put(k, v)
    else:
        for i, v in enumerate(out if isinstance(out, (tuple, list)) else []):
            top.put(f"output.{i}", v)
    for k, v in top.tensors.items():
        if k in tensors:
            print(f"dump_torch: root output {k} clashes with another capture name", file=sys.stderr)
            return 1
        tensors[k] = v
    if not tensors:
        print("dump_torch: nothing recorded (filter matched no tensor?)", file=sys.stderr)
        return 1
    meta = {
        "voxtrace.format": "trace-v1",
        "voxtrace.order": json.dumps(list(tensors)),
        "voxtrace.source": f"pytorch {torch.__version__} transformers {transformers.__version__} {cls_name} {args.attn} {args.dtype}",
        "voxtrace.model": str(args.model),
        "voxtrace.input": "; ".join(described),
        "voxtrace.command": "reference/dump_torch.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    repeated = rec.repeated()
    if repeated:
        meta["voxtrace.repeated_calls"] = json.dumps(repeated)
        print(f"dump_torch: kept the first call of {len(repeated)} modules called more than once: {repeated}", file=sys.stderr)
    atomic_save(tensors, args.out, meta)
    n_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"dump_torch: {len(tensors)} tensors ({n_bytes / 1e6:.1f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
