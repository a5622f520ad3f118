"""The PyTorch peer of `just bench-realtime`: upstream transformers, eager mode, BF16 on CPU,
transcribing one clip with a Voxtral Realtime checkpoint folder in the Mistral layout
(`consolidated.safetensors` + `params.json` + `tekken.json`, as the release and
reference/full_size_checkpoint.py lay it out). `just bench-realtime-torch DIR`.

What runs (all upstream code: transformers `VoxtralRealtimeForConditionalGeneration`,
`VoxtralRealtimeProcessor`, mistral-common's Tekkenizer):

* load: the HF config from params.json (reference/full_size_checkpoint.py `hf_config`, the
  values the transformers converter sets; checked by mapping it back to params.json), the
  model built on the meta device, every tensor read from the file straight into a BF16 tensor
  (plain reads, no memory map, no f32 copy), renamed with the converter's table and q/k rows
  permuted for HF's split-halves RoPE (reference/voxtral_tiny.py `mistral_name_map`,
  `permute_for_rope`), loaded with `load_state_dict(assign=True, strict=True)`, the tied head
  shared with the token embedding; then the non-persistent RoPE / time-embedding buffers are
  materialised and filled by the model's own `_init_weights`, as `from_pretrained` does;
* features: the processor on the clip (offline padding, prompt BOS + 38 x [STREAMING_PAD]),
  features cast to the model dtype (the model card's `inputs.to(model.device, dtype=model.dtype)`);
* `generate`: greedy, the processor's delay tokens, upstream's default length (one position
  per audio token: N - 39 generated ids for the 39-token prompt).

Inside `generate` upstream runs the encoder incrementally: the conv stem once over the whole
clip, then per forward the encoder layers (with their KV cache) and the projector over the
new positions' frames. Forward hooks on the conv stem, the audio tower and the projector sum
that time: `encoder_s` (the conv stem, encoder and adapter over every audio token, as
voxtrace's `encoder_s` less its log-mel, which is `features_s` here). A LogitsProcessor stamps
the wall clock at every generated token; `prefill_s` is the first forward (the 39-token
prompt) less its encoder time, `step_ms_*` each later token's interval less the encoder time
inside it (the decoder step with generate's own overhead, as voxtrace's steps); the
`step_total_ms_*` figures keep the encoder chunk in. Percentiles are nearest-rank (as
voxtrace's `step_ms_quantile`). `--whole-encoder` adds one timed audio tower + projector pass
over the whole clip at once (`encoder_whole_clip_s`; not part of `generate`).

Prints one JSON object on stdout (and writes it to --out): load_s, features_s, encoder_s,
prefill_s, step_ms_p50, step_ms_p95, steps, generate_s, wall_s (the whole process from the
script's first line, imports included), peak_rss_mib (getrusage ru_maxrss), torch_version,
threads, dtype, n_generated, ids (prompt + generated) and more.

    .venv-ref/bin/python reference/bench_realtime_torch.py --checkpoint fixtures/voxtral_tiny/mistral --audio ../shared/audio/jfk.wav
    just bench-realtime-torch /tmp/voxtral-full       # after: just full-size-checkpoint /tmp/voxtral-full

`--dtype f32 --attn eager` is the fixtures' setting (reference/voxtral_tiny.py): on the tiny
checkpoint it gives exactly the ids of fixtures/voxtral_tiny/dumps.
"""

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    LogitsProcessor,
    LogitsProcessorList,
    VoxtralRealtimeFeatureExtractor,
    VoxtralRealtimeForConditionalGeneration,
    VoxtralRealtimeProcessor,
)
from transformers.tokenization_mistral_common import MistralCommonBackend  # noqa: E402

import full_size_checkpoint as fsc  # noqa: E402  (hf_config: params.json -> upstream config)
import voxtral_tiny as vt  # noqa: E402  (converter name map, permute_for_rope, params_json)

# voxtral_tiny pins one thread and deterministic algorithms at import; this script sets its own.
torch.use_deterministic_algorithms(False)
transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message="Using the model-agnostic default `max_length`")

DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32}
ST_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
BOS, EOS = 1, 2


class BenchError(Exception):
    """A checkpoint or clip this script cannot use (message names the file and the cause)."""


def read_safetensors(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, read with plain reads into tensors of the stored
    dtype (then cast to `dtype` if different). No memory map: the peak RSS is the tensors."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise BenchError(f"{path}: shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise BenchError(f"{path}: header length {n} exceeds the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BenchError(f"{path}: header is not JSON: {e}") from e
        header.pop("__metadata__", None)
        base = 8 + n
        out = {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            st = ST_DTYPES.get(info.get("dtype"))
            if st is None:
                raise BenchError(f"{path}: tensor {name}: dtype {info.get('dtype')} not supported")
            shape = [int(s) for s in info["shape"]]
            a, b = (int(x) for x in info["data_offsets"])
            nbytes = math.prod(shape) * torch.finfo(st).bits // 8
            if b - a != nbytes or base + b > size:
                raise BenchError(f"{path}: tensor {name}: offsets {a}..{b} do not fit shape {shape} / the file")
            t = torch.empty(shape, dtype=st)
            f.seek(base + a)
            buf = memoryview(t.view(torch.uint8).numpy()).cast("B") if t.numel() else memoryview(b"")
            if t.numel() and f.readinto(buf) != nbytes:
                raise BenchError(f"{path}: tensor {name}: file ends inside its data")
            out[name] = t if st == dtype else t.to(dtype)
    return out


def load_model(ckpt: Path, dtype: torch.dtype, attn: str):
    """Upstream model from a Mistral-layout folder; returns (model, config)."""
    params_path = ckpt / "params.json"
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"{params_path}: {e}") from e
    if params.get("ada_rms_norm_t_cond_dim", 32) != 32:
        raise BenchError(f"{params_path}: ada_rms_norm_t_cond_dim {params['ada_rms_norm_t_cond_dim']} "
                         "(upstream hard-codes 32)")
    try:
        cfg = fsc.hf_config(params)
    except (KeyError, TypeError) as e:
        raise BenchError(f"{params_path}: missing or malformed field {e}") from e
    # The converter's config must map back to the same params.json (the tiny fixture's encoder
    # max positions are not in params.json: both sides use 1500).
    back = vt.params_json(cfg)
    if back != params:
        diff = sorted(k for k in set(back) | set(params) if back.get(k) != params.get(k))
        raise BenchError(f"{params_path}: not representable by the upstream config (fields {diff})")
    cfg.bos_token_id, cfg.eos_token_id = BOS, EOS  # as the tiny fixture's config (generate stops on EOS)
    cfg._attn_implementation = attn
    with torch.device("meta"):
        model = VoxtralRealtimeForConditionalGeneration(cfg)
    msd = read_safetensors(ckpt / "consolidated.safetensors", dtype)
    names = vt.mistral_name_map(cfg)
    missing = sorted(set(names) - set(msd))
    extra = sorted(set(msd) - set(names))
    if missing or extra:
        raise BenchError(f"{ckpt / 'consolidated.safetensors'}: missing tensors {missing[:5]}, "
                         f"unknown tensors {extra[:5]} (of {len(missing)} / {len(extra)})")
    sd = {}
    for mname, (hname, n_heads) in names.items():
        w = msd.pop(mname)
        sd[hname] = vt.permute_for_rope(w, n_heads).contiguous() if n_heads is not None else w
    sd["lm_head.weight"] = sd["model.language_model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True, assign=True)
    del sd
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    # Non-persistent buffers (RoPE and time-embedding frequencies) are still on meta: give them
    # CPU storage and let the model's own init fill them, as from_pretrained does.
    owners = set()
    for key, buf in list(model.named_non_persistent_buffers()):
        parent, leaf = key.rsplit(".", 1) if "." in key else ("", key)
        mod = model.get_submodule(parent)
        setattr(mod, leaf, torch.empty_like(buf, device="cpu"))
        owners.add(parent)
    for parent in sorted(owners):
        model._init_weights(model.get_submodule(parent))
    on_meta = [k for k, v in list(model.named_parameters()) + list(model.named_buffers()) if v.is_meta]
    assert not on_meta, f"left on the meta device: {on_meta[:5]}"
    model.eval()
    return model, cfg


def nearest_rank(v: list[float], q: float):
    """`q`-quantile by nearest rank (voxtrace's StreamTimings::step_ms_quantile); None if empty."""
    if not v:
        return None
    s = sorted(v)
    return s[min(max(math.ceil(q * len(s)), 1), len(s)) - 1]


class Clock:
    """Wall-clock bookkeeping inside generate: encoder time (conv stem, audio tower, projector;
    outermost calls only), the first forward's start, one stamp per generated token."""

    def __init__(self, model):
        self.enc_s = 0.0
        self.depth = 0
        self.t_enc0 = 0.0
        self.fwd0 = None  # (t, enc_s) at the first forward's start
        self.stamps = []  # (t, enc_s) at every generated token's logits
        m = model.model
        for mod in (m.audio_tower.embedder, m.audio_tower, m.multi_modal_projector):
            mod.register_forward_pre_hook(self._enc_in)
            mod.register_forward_hook(self._enc_out)
        model.register_forward_pre_hook(self._fwd_in)

    def _enc_in(self, *_):
        if self.depth == 0:
            self.t_enc0 = time.perf_counter()
        self.depth += 1

    def _enc_out(self, *_):
        self.depth -= 1
        if self.depth == 0:
            self.enc_s += time.perf_counter() - self.t_enc0

    def _fwd_in(self, *_):
        if self.fwd0 is None:
            self.fwd0 = (time.perf_counter(), self.enc_s)

    def processor(self):
        clock = self

        class Stamp(LogitsProcessor):
            def __call__(self, input_ids, scores):
                clock.stamps.append((time.perf_counter(), clock.enc_s))
                return scores

        return Stamp()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path, help="Mistral-layout Voxtral Realtime folder")
    ap.add_argument("--audio", required=True, type=Path, help="16 kHz mono clip (e.g. jfk.wav, 11.0 s)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="weights and activations (default bf16)")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="attention implementation (default sdpa)")
    ap.add_argument("--whole-encoder", action="store_true",
                    help="also time one audio tower + projector pass over the whole clip (outside generate)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--expect", type=Path,
                    help="a trace-v1 dump (fixtures/voxtral_tiny/dumps/*.safetensors): exit 1 unless the ids equal its generated_ids")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    ckpt = args.checkpoint

    try:
        x, sr = sf.read(args.audio, dtype="float32", always_2d=False)
    except (OSError, RuntimeError) as e:
        raise BenchError(f"{args.audio}: {e}") from e
    if sr != 16000 or x.ndim != 1:
        raise BenchError(f"{args.audio}: not mono 16 kHz (sr={sr}, shape={x.shape})")
    x = np.ascontiguousarray(x)

    with torch.inference_mode():
        t0 = time.perf_counter()
        model, cfg = load_model(ckpt, dtype, args.attn)
        tek = ckpt / "tekken.json"
        processor = VoxtralRealtimeProcessor(
            feature_extractor=VoxtralRealtimeFeatureExtractor(), tokenizer=MistralCommonBackend(str(tek))
        )
        load_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        inputs = processor(x, return_tensors="pt").to(dtype=dtype)
        features_s = time.perf_counter() - t0
        feats = inputs["input_features"]
        prompt_len = inputs["input_ids"].shape[1]
        n_audio_tokens = math.ceil(feats.shape[-1] / cfg.audio_length_per_tok)
        n_delay = int(inputs["num_delay_tokens"])

        whole = None
        if args.whole_encoder:
            t0 = time.perf_counter()
            model.get_audio_features(input_features=feats, use_cache=False)
            whole = time.perf_counter() - t0

        clock = Clock(model)
        t0 = time.perf_counter()
        seq = model.generate(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            input_features=feats,
            num_delay_tokens=n_delay,
            do_sample=False,
            num_beams=1,
            logits_processor=LogitsProcessorList([clock.processor()]),
        )
        generate_s = time.perf_counter() - t0
        ids = seq[0].tolist()
        text = processor.batch_decode(seq[:, prompt_len:], skip_special_tokens=True)[0]

    st = clock.stamps
    prefill_s = None
    if clock.fwd0 is not None and st:
        prefill_s = (st[0][0] - clock.fwd0[0]) - (st[0][1] - clock.fwd0[1])
    steps_ms = [((b[0] - a[0]) - (b[1] - a[1])) * 1e3 for a, b in zip(st, st[1:])]
    total_ms = [(b[0] - a[0]) * 1e3 for a, b in zip(st, st[1:])]
    audio_s = len(x) / 16000.0
    out = {
        "load_s": load_s,
        "features_s": features_s,
        "encoder_s": clock.enc_s,
        "encoder_whole_clip_s": whole,
        "prefill_s": prefill_s,
        "step_ms_p50": nearest_rank(steps_ms, 0.5),
        "step_ms_p95": nearest_rank(steps_ms, 0.95),
        "step_total_ms_p50": nearest_rank(total_ms, 0.5),
        "step_total_ms_p95": nearest_rank(total_ms, 0.95),
        "steps": len(steps_ms),
        "generate_s": generate_s,
        "audio_s": audio_s,
        "rtf": generate_s / audio_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "threads": args.threads,
        "dtype": args.dtype,
        "attn": model.config._attn_implementation,
        "checkpoint": str(ckpt),
        "audio": str(args.audio),
        "prompt_len": prompt_len,
        "num_audio_tokens": n_audio_tokens,
        "num_delay_tokens": n_delay,
        "n_generated": len(ids) - prompt_len,
        "ids": ids,
        "text": text,
    }
    out["wall_s"] = time.perf_counter() - T_START
    line = json.dumps(out, ensure_ascii=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n", encoding="utf-8")
    print(line)
    if args.expect:
        return check_ids(ids, args.expect)
    return 0


def check_ids(ids: list[int], dump: Path) -> int:
    """0 if `ids` equal the dump's `generated_ids` (prompt + generated), else 1 with the first
    difference on stderr."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        ref = load_file(str(dump))["generated_ids"][0].tolist()
    except (OSError, KeyError, SafetensorError) as e:
        raise BenchError(f"{dump}: no readable generated_ids ({e})") from e
    if ids == ref:
        print(f"ids equal {dump}'s generated_ids ({len(ids)} ids)", file=sys.stderr)
        return 0
    first = next((i for i in range(min(len(ids), len(ref))) if ids[i] != ref[i]), min(len(ids), len(ref)))
    print(f"ids differ from {dump}'s generated_ids: {len(ids)} vs {len(ref)} ids, first difference at "
          f"position {first} ({ids[first:first + 1]} vs {ref[first:first + 1]})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
