#!/usr/bin/env python3
"""Write Whisper (a CTranslate2 folder: model.bin, config.json, tokenizer.json) as a
self-contained GGUF with PyPI `gguf` 0.19.0 (`gguf.GGUFWriter`, `gguf.quants.quantize`): the
reference `voxtrace quantize` is checked against (tests/whisper_gguf.rs).

The format is voxtrace's (src/models/whisper/gguf.rs has the tables): tensors under the
transformers `WhisperForConditionalGeneration` state-dict names (as candle-transformers'
quantized Whisper reads them; the tied `proj_out.weight` left out), the linear layers' weights
(`{self_attn,encoder_attn}.{q,k,v,out}_proj`, `fc1`, `fc2`) in the requested type and every
other tensor F32; metadata `general.*`, `whisper.<transformers config field>` (u32),
`whisper.generation.*` (greedy settings: English-only prompt, EOS, max_length, the
suppression lists of CTranslate2's config.json) and `tokenizer.huggingface.json` (the
tokenizer.json text). This script shares no code with voxtrace: the CTranslate2 reader is
reference/ct2_reader.py, the name mapping is written here from CTranslate2's WhisperSpec, and
every block is `gguf.quants.quantize` of the checkpoint's values widened to f32.

    .venv/bin/python reference/whisper_gguf.py --model models-cache/whisper-tiny.en \
        --type q8_0 --out /tmp/whisper-q8_0.gguf
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gguf  # noqa: E402
import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFValueType as V  # noqa: E402
from gguf.quants import quantize  # noqa: E402

from ct2_reader import read_ct2  # noqa: E402

FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362
LINEAR = re.compile(
    r"^model\.(encoder|decoder)\.layers\.\d+\.((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)\.weight$"
)


def state_dict(variables: dict, aliases: dict) -> dict[str, np.ndarray]:
    """CTranslate2 WhisperSpec variables -> transformers names, f32 (fused q|k|v and k|v split;
    the k bias must be zero: transformers' k_proj has none)."""
    sd: dict[str, np.ndarray] = {}

    def take(n: str) -> np.ndarray:
        return np.asarray(variables[aliases.get(n, n)], dtype=np.float32)

    def ln(dst: str, src: str) -> None:
        sd[dst + ".weight"] = take(src + "/gamma")
        sd[dst + ".bias"] = take(src + "/beta")

    def lin(dst: str, src: str) -> None:
        sd[dst + ".weight"] = take(src + "/weight")
        sd[dst + ".bias"] = take(src + "/bias")

    def split(dst: str, src: str, parts: list[str]) -> None:
        w, b = take(src + "/weight"), take(src + "/bias")
        d = w.shape[1]
        for i, p in enumerate(parts):
            sd[f"{dst}.{p}.weight"] = w[i * d : (i + 1) * d]
            bb = b[i * d : (i + 1) * d]
            if p == "k_proj":
                assert not bb.any(), f"{src}/bias: k part is not zero"
            else:
                sd[f"{dst}.{p}.bias"] = bb

    def layers(side: str) -> int:
        return sum(1 for k in variables if k.startswith(f"{side}/layer_") and k.endswith("ffn/linear_0/weight"))

    e = "model.encoder"
    lin(f"{e}.conv1", "encoder/conv1")
    lin(f"{e}.conv2", "encoder/conv2")
    sd[f"{e}.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    for i in range(layers("encoder")):
        s, d = f"encoder/layer_{i}", f"{e}.layers.{i}"
        split(f"{d}.self_attn", f"{s}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
        lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{d}.fc1", f"{s}/ffn/linear_0")
        lin(f"{d}.fc2", f"{s}/ffn/linear_1")
        ln(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    ln(f"{e}.layer_norm", "encoder/layer_norm")
    dd = "model.decoder"
    sd[f"{dd}.embed_tokens.weight"] = take("decoder/embeddings/weight")
    sd[f"{dd}.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(layers("decoder")):
        s, d = f"decoder/layer_{i}", f"{dd}.layers.{i}"
        split(f"{d}.self_attn", f"{s}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
        lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{d}.encoder_attn.q_proj", f"{s}/attention/linear_0")
        split(f"{d}.encoder_attn", f"{s}/attention/linear_1", ["k_proj", "v_proj"])
        lin(f"{d}.encoder_attn.out_proj", f"{s}/attention/linear_2")
        ln(f"{d}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
        lin(f"{d}.fc1", f"{s}/ffn/linear_0")
        lin(f"{d}.fc2", f"{s}/ffn/linear_1")
        ln(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    ln(f"{dd}.layer_norm", "decoder/layer_norm")
    return sd


def tensor_type(out_type: str, name: str, shape: tuple[int, ...]) -> T:
    if len(shape) != 2 or not LINEAR.match(name):
        return T.F32
    if out_type in ("q8_0", "q4_0") and shape[1] % 32:
        return T.F32
    return {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0}[out_type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="CTranslate2 Whisper folder")
    ap.add_argument("--type", choices=sorted(FILE_TYPE), required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    _version, _spec, _rev, variables, aliases = read_ct2(a.model / "model.bin")
    ct2_cfg = json.loads((a.model / "config.json").read_text())
    tokenizer = (a.model / "tokenizer.json").read_text()
    sd = state_dict(variables, aliases)
    d_model, n_mels, _ = sd["model.encoder.conv1.weight"].shape
    n_enc = sum(1 for k in sd if k.startswith("model.encoder.layers.") and k.endswith(".fc1.weight"))
    n_dec = sum(1 for k in sd if k.startswith("model.decoder.layers.") and k.endswith(".fc1.weight"))
    cfg = {
        "num_mel_bins": n_mels,
        "d_model": d_model,
        "encoder_layers": n_enc,
        "decoder_layers": n_dec,
        "encoder_attention_heads": int(np.asarray(variables["encoder/num_heads"]).item()),
        "decoder_attention_heads": int(np.asarray(variables["decoder/num_heads"]).item()),
        "encoder_ffn_dim": sd["model.encoder.layers.0.fc1.weight"].shape[0],
        "decoder_ffn_dim": sd["model.decoder.layers.0.fc1.weight"].shape[0],
        "vocab_size": sd["model.decoder.embed_tokens.weight"].shape[0],
        "max_source_positions": sd["model.encoder.embed_positions.weight"].shape[0],
        "max_target_positions": sd["model.decoder.embed_positions.weight"].shape[0],
    }

    w = gguf.GGUFWriter(str(a.out), arch="whisper")
    w.add_string("general.name", a.model.resolve().name)
    w.add_uint32("general.file_type", FILE_TYPE[a.type])
    if a.type in ("q8_0", "q4_0"):
        w.add_uint32("general.quantization_version", 2)
    for k, v in cfg.items():
        w.add_uint32(f"whisper.{k}", int(v))
    u32s = lambda key, xs: w.add_key_value(key, [int(x) for x in xs], V.ARRAY, V.UINT32)  # noqa: E731
    u32s("whisper.generation.prompt", [SOT, NO_TIMESTAMPS])
    w.add_uint32("whisper.generation.eos_token_id", EOT)
    w.add_uint32("whisper.generation.max_length", cfg["max_target_positions"])
    u32s("whisper.generation.suppress_tokens", ct2_cfg["suppress_ids"])
    u32s("whisper.generation.begin_suppress_tokens", ct2_cfg["suppress_ids_begin"])
    w.add_string("tokenizer.huggingface.json", tokenizer)

    for name, x in sd.items():
        t = tensor_type(a.type, name, x.shape)
        if t == T.F32:
            w.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))
        else:
            q = quantize(np.ascontiguousarray(x, dtype=np.float32), t)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.out}: {len(sd)} tensors, {a.type}")


if __name__ == "__main__":
    main()
