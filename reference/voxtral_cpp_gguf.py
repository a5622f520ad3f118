#!/usr/bin/env python3
"""Write a Voxtral Realtime checkpoint (Mistral layout) as a GGUF in voxtral.cpp's naming, with
PyPI `gguf` 0.19.0 (`gguf.GGUFWriter`, `gguf.quants.quantize`): the reference `voxtrace quantize`
is checked against (tests/voxtral_gguf.rs), and a file of the kind voxtral.cpp users hold.

voxtral.cpp (github MrShitFox/voxtral.cpp) defines the format: `tools/convert_voxtral_to_gguf.py`
names the tensors (`enc.blk.N.attn_q.weight`, `dec.blk.N.ffn_w1.weight`, `adapter.0.weight`, ...),
writes 1-D tensors F32 and the others F16 (or all F32), adds the Slaney mel filter bank as
`audio.mel_filters` and the metadata keys `voxtral.*` (hyper-parameters, tokenizer, the
flattened params.json as `voxtral.params.*`); its `voxtral-quantize` then packs the tensors
matching its quantizable patterns (token embedding, adapter, attention and FFN matrices, ADA
norm matrices, output) whose rows are whole blocks. This script is written from that
description; it shares no code with voxtrace or voxtral.cpp. Unlike voxtral.cpp (which
quantizes its F16 file), Q8_0 / Q4_0 blocks are quantized from the f32 values, as
`gguf.quants.quantize` does on the checkpoint's own values.

    .venv/bin/python reference/voxtral_cpp_gguf.py --model fixtures/voxtral_tiny/mistral \
        --type q8_0 --out /tmp/tiny-q8_0.gguf
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
from pathlib import Path

sys.dont_write_bytecode = True

import gguf  # noqa: E402
import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFValueType as V  # noqa: E402
from gguf.quants import quantize  # noqa: E402

E = "mm_streams_embeddings.embedding_module."
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors as f32 (F32, F16 and BF16 stored)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a : base + b]
        dt = info["dtype"]
        if dt == "F32":
            x = np.frombuffer(buf, dtype="<f4")
        elif dt == "F16":
            x = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            x = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: {name}: dtype {dt}")
        out[name] = x.reshape(info["shape"]).astype(np.float32)
    return out


def compact_names(params: dict) -> dict[str, str]:
    """Mistral name -> voxtral.cpp name, for every tensor a realtime checkpoint may hold."""
    m = {
        f"{E}tok_embeddings.weight": "tok_embeddings.weight",
        "norm.weight": "norm.weight",
        "output.weight": "output.weight",
        f"{E}whisper_encoder.transformer.norm.weight": "enc.norm.weight",
        f"{E}audio_language_projection.0.weight": "adapter.0.weight",
        f"{E}audio_language_projection.2.weight": "adapter.2.weight",
    }
    for c in (0, 1):
        for p in ("weight", "bias"):
            m[f"{E}whisper_encoder.conv_layers.{c}.conv.{p}"] = f"enc.conv{c}.{p}"
    n_enc = params["multimodal"]["whisper_model_args"]["encoder_args"]["n_layers"]
    for i in range(n_enc):
        s, d = f"{E}whisper_encoder.transformer.layers.{i}", f"enc.blk.{i}"
        m[f"{s}.attention_norm.weight"] = f"{d}.attn_norm.weight"
        m[f"{s}.ffn_norm.weight"] = f"{d}.ffn_norm.weight"
        for w in "qkvo":
            for p in ("weight", "bias"):
                m[f"{s}.attention.w{w}.{p}"] = f"{d}.attn_{w}.{p}"
        for w in "123":
            for p in ("weight", "bias"):
                m[f"{s}.feed_forward.w{w}.{p}"] = f"{d}.ffn_w{w}.{p}"
    for i in range(params["n_layers"]):
        s, d = f"layers.{i}", f"dec.blk.{i}"
        m[f"{s}.attention_norm.weight"] = f"{d}.attn_norm.weight"
        m[f"{s}.ffn_norm.weight"] = f"{d}.ffn_norm.weight"
        for w in "qkvo":
            m[f"{s}.attention.w{w}.weight"] = f"{d}.attn_{w}.weight"
        for w in "123":
            m[f"{s}.feed_forward.w{w}.weight"] = f"{d}.ffn_w{w}.weight"
        m[f"{s}.ada_rms_norm_t_cond.0.weight"] = f"{d}.ada0.weight"
        m[f"{s}.ada_rms_norm_t_cond.2.weight"] = f"{d}.ada2.weight"
    return m


def quantizable(compact: str) -> bool:
    if compact in ("tok_embeddings.weight", "adapter.0.weight", "adapter.2.weight", "output.weight"):
        return True
    parts = compact.split(".")  # enc|dec, blk, N, kind, weight
    if len(parts) == 5 and parts[0] in ("enc", "dec") and parts[1] == "blk" and parts[4] == "weight":
        kind = parts[3]
        if kind in ("attn_q", "attn_k", "attn_v", "attn_o", "ffn_w1", "ffn_w2", "ffn_w3"):
            return True
        if parts[0] == "dec" and kind in ("ada0", "ada2"):
            return True
    return False


def tensor_type(out_type: str, compact: str, shape: tuple[int, ...]) -> T:
    if out_type == "f32":
        return T.F32
    if len(shape) < 2:
        return T.F32
    if out_type in ("q8_0", "q4_0") and len(shape) == 2 and quantizable(compact) and shape[1] % 32 == 0:
        return T.Q8_0 if out_type == "q8_0" else T.Q4_0
    return T.F16


def mel_filters(sr: int, window: int, n_mels: int) -> np.ndarray:
    """Slaney mel filter bank [n_fft/2 + 1, n_mels] (transformers / mistral-common), f64 -> f32."""

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        mel = 3.0 * f / 200.0
        log = f >= 1000.0
        return np.where(log, 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) * (27.0 / np.log(6.4)), mel)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        f = 200.0 * m / 3.0
        return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), f)

    n_freq = 1 + window // 2
    fft = np.linspace(0.0, sr // 2, n_freq)
    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), n_mels + 2)
    ff = mel_to_hz(mels)
    diff = np.diff(ff)
    slopes = ff[None, :] - fft[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    fb *= (2.0 / (ff[2 : n_mels + 2] - ff[:n_mels]))[None, :]
    return fb.astype(np.float32)


def flatten(prefix: str, obj, out: list):
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten(f"{prefix}.{k}", v, out)
    elif isinstance(obj, bool):
        out.append((prefix, V.BOOL, obj))
    elif isinstance(obj, int):
        out.append((prefix, V.INT64, obj))
    elif isinstance(obj, float):
        out.append((prefix, V.FLOAT64, obj))
    elif isinstance(obj, str):
        out.append((prefix, V.STRING, obj))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="Mistral-layout checkpoint folder")
    ap.add_argument("--type", choices=sorted(FILE_TYPE), required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    params = json.loads((a.model / "params.json").read_text())
    tekken = json.loads((a.model / "tekken.json").read_text())
    tensors = read_safetensors(a.model / "consolidated.safetensors")
    names = compact_names(params)
    missing = sorted(set(tensors) - set(names))
    if missing:
        raise SystemExit(f"no voxtral.cpp name for {missing}")

    enc = params["multimodal"]["whisper_model_args"]["encoder_args"]
    aud_p = enc["audio_encoding_args"]
    audio = tekken.get("audio", {})
    sr = int(audio.get("sampling_rate", aud_p["sampling_rate"]))
    frame_rate = float(audio.get("frame_rate", aud_p["frame_rate"]))
    hop = int(aud_p["hop_length"])
    per_tok = int(sr // frame_rate) // hop
    delay_samples = int(float(audio.get("transcription_delay_ms", 480.0)) / 1000.0 * sr)
    if delay_samples % hop:
        audio_tokens = math.ceil(delay_samples / hop - 1)
    else:
        audio_tokens = delay_samples // hop
    n_delay = int(math.ceil(audio_tokens / per_tok))
    n_left = int(audio.get("streaming_n_left_pad_tokens", 32))
    n_special = int(tekken["config"].get("default_num_special_tokens", 1000))
    specials = [t for t in tekken.get("special_tokens", []) if "rank" in t]
    lookup = {t["token_str"]: int(t["rank"]) for t in specials}
    vocab_limit = max(0, min(int(params["vocab_size"]) - n_special, len(tekken["vocab"])))
    mel = mel_filters(sr, int(aud_p["window_size"]), int(aud_p["num_mel_bins"]))

    def sha(x: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()

    checks = [
        f"{E}tok_embeddings.weight",
        "layers.0.attention.wq.weight",
        f"layers.{params['n_layers'] - 1}.feed_forward.w2.weight",
        f"{E}whisper_encoder.conv_layers.0.conv.weight",
        f"{E}whisper_encoder.transformer.norm.weight",
    ]
    order = sorted(tensors)

    w = gguf.GGUFWriter(str(a.out), arch="voxtral_realtime")
    w.add_string("general.name", "Voxtral-Mini-4B-Realtime-2602")
    w.add_uint32("general.file_type", FILE_TYPE[a.type])
    if a.type in ("q8_0", "q4_0"):
        w.add_uint32("general.quantization_version", 2)
    i32 = w.add_int32
    f32 = w.add_float32
    i32("voxtral.format_version", 1)
    w.add_bool("voxtral.decode.offline", False)
    for k, v in (("dim", "dim"), ("n_layers", "n_layers"), ("n_heads", "n_heads"), ("head_dim", "head_dim"),
                 ("hidden_dim", "hidden_dim"), ("n_kv_heads", "n_kv_heads")):
        i32(f"voxtral.decoder.{k}", int(params[v]))
    f32("voxtral.decoder.norm_eps", float(params["norm_eps"]))
    f32("voxtral.decoder.rope_theta", float(params["rope_theta"]))
    i32("voxtral.decoder.sliding_window", int(params.get("sliding_window") or 0))
    for k in ("dim", "n_layers", "n_heads", "head_dim", "hidden_dim"):
        i32(f"voxtral.encoder.{k}", int(enc[k]))
    i32("voxtral.encoder.n_kv_heads", int(enc.get("n_kv_heads", enc["n_heads"])))
    f32("voxtral.encoder.norm_eps", float(enc.get("norm_eps", 1e-5)))
    f32("voxtral.encoder.rope_theta", float(enc.get("rope_theta", 1e6)))
    i32("voxtral.encoder.sliding_window", int(enc.get("sliding_window", 0)))
    w.add_bool("voxtral.encoder.causal", bool(enc.get("causal", True)))
    w.add_string("voxtral.encoder.norm_type", "rmsnorm")
    w.add_string("voxtral.encoder.ffn_type", "swiglu")
    w.add_bool("voxtral.ada_rms_norm_t_cond", bool(params.get("ada_rms_norm_t_cond", True)))
    i32("voxtral.ada_rms_norm_t_cond_dim", int(params.get("ada_rms_norm_t_cond_dim", 32)))
    i32("voxtral.vocab_size", int(params["vocab_size"]))
    i32("voxtral.audio.sample_rate", sr)
    f32("voxtral.audio.frame_rate", frame_rate)
    i32("voxtral.audio.num_mel_bins", int(aud_p["num_mel_bins"]))
    i32("voxtral.audio.hop_length", hop)
    i32("voxtral.audio.window_size", int(aud_p["window_size"]))
    f32("voxtral.audio.global_log_mel_max", float(aud_p.get("global_log_mel_max", 1.5)))
    w.add_string("voxtral.audio.mel_filters_tensor", "audio.mel_filters")
    w.add_string("voxtral.audio.mel_filters_sha256", sha(mel))
    i32("voxtral.audio.downsample_factor", int(params["multimodal"]["whisper_model_args"]["downsample_args"]["downsample_factor"]))
    i32("voxtral.audio.n_delay_tokens", n_delay)
    i32("voxtral.audio.n_left_pad_tokens", n_left)
    i32("voxtral.audio.n_right_pad_tokens", n_delay + 1 + 10)
    i32("voxtral.token.bos", lookup.get("<s>", 1))
    i32("voxtral.token.eos", lookup.get("</s>", 2))
    i32("voxtral.token.streaming_pad", lookup.get("[STREAMING_PAD]", 32))
    i32("voxtral.token.begin_audio", lookup.get("[BEGIN_AUDIO]", 25))
    i32("voxtral.token.audio", lookup.get("[AUDIO]", 24))
    w.add_string("voxtral.tokenizer.pattern", tekken["config"].get("pattern", ""))
    i32("voxtral.tokenizer.num_special_tokens", n_special)
    w.add_array("voxtral.tokenizer.vocab_token_bytes_b64", [v["token_bytes"] for v in tekken["vocab"][:vocab_limit]])
    w.add_key_value("voxtral.tokenizer.special_token_ranks", [int(t["rank"]) for t in specials], V.ARRAY, V.INT32)
    w.add_array("voxtral.tokenizer.special_token_strings", [str(t.get("token_str", "")) for t in specials])
    w.add_array("voxtral.verify.checksum.names", checks)
    w.add_array("voxtral.verify.checksum.sha256", [sha(tensors[n]) for n in checks])
    w.add_array("voxtral.tensor_name.src", order)
    w.add_array("voxtral.tensor_name.dst", [names[n] for n in order])
    flat: list = []
    flatten("voxtral.params", params, flat)
    for k, vt, v in sorted(flat, key=lambda t: t[0]):
        w.add_key_value(k, v, vt)

    for n in order:
        x = tensors[n]
        c = names[n]
        t = tensor_type(a.type, c, x.shape)
        if t == T.F32:
            w.add_tensor(c, x.astype(np.float32))
        elif t == T.F16:
            w.add_tensor(c, x.astype(np.float16))
        else:
            q = quantize(x, t)
            w.add_tensor(c, q, raw_shape=q.shape, raw_dtype=t)
    w.add_tensor("audio.mel_filters", mel)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.out}: {len(order) + 1} tensors, {a.type}")


if __name__ == "__main__":
    main()
