"""A random Voxtral Mini 4B Realtime checkpoint of the full size, in the release's on-disk format.

Writes into DIR (keep it out of the checkout; about 8.9 GB):

* `params.json`: the released model's params.json (values: ../shared/docs/voxtral-realtime-spec.md
  section 1), cross-checked against the one derived from the upstream transformers config;
* `consolidated.safetensors`: Mistral layout, all BF16, the 711 real tensor names and shapes.
  The names and shapes come from upstream code: transformers' `VoxtralRealtimeForConditionalGeneration`
  built from that config on the meta device (no memory), its HF state-dict keys mapped to Mistral
  names with the converter's table (`mistral_name_map` of reference/voxtral_tiny.py, the inverse
  of transformers' `convert_voxtral_realtime_weights_to_hf.py`). Weights are random (one seeded
  `torch.Generator` per tensor, drawn straight in bfloat16), written one tensor at a time, so
  the peak memory is about one tensor (the 805 MB token embedding) and not the checkpoint;
* `tekken.json`: laid out as the release's (and as mistral-common's shipped files: indent 2): the 150,000-entry vocabulary of mistral-common's
  `data/tekken_240718.json` (of which, as in the release, 131072 - 1000 = 130,072 ranks are used),
  its pattern, `default_vocab_size` 131072, `default_num_special_tokens` 1000, 1000 special
  tokens (BOS 1, EOS 2, `[AUDIO]` 24, `[BEGIN_AUDIO]` 25, `[STREAMING_PAD]` 32,
  `[STREAMING_WORD]` 33, mistral-common's other names, `<SPECIAL_n>` fillers) and the realtime
  `audio` section (16000 Hz, 12.5 Hz frames, 128 mels, hop 160, window 400, delay 480 ms,
  look-ahead 2.5 ms, look-back 52.5 ms, 32 left-pad tokens).

Init: linear and conv weights N(0,1)/sqrt(fan_in), norm weights 1, biases 0.02 N(0,1), token
embedding N(0,1)/sqrt(dim). Not a trained model: transcripts are gibberish; the point is the
format, the size and the memory and time of loading and streaming.

    .venv-ref/bin/python reference/full_size_checkpoint.py /tmp/voxtral-full      # or: just full-size-checkpoint DIR
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mistral_common  # noqa: E402
import torch  # noqa: E402
from mistral_common.tokens.tokenizers.base import SpecialTokens  # noqa: E402
from mistral_common.tokens.tokenizers.tekken import Tekkenizer  # noqa: E402
from transformers import VoxtralRealtimeConfig, VoxtralRealtimeForConditionalGeneration  # noqa: E402

import voxtral_tiny as vt  # noqa: E402  (name map and params.json writer shared with the tiny fixture)

SEED = 4_400_000_000 % (2**31)
VOCAB, NUM_SPECIAL = 131072, 1000

# The released params.json (spec section 1).
PARAMS = {
    "dim": 3072,
    "n_layers": 26,
    "head_dim": 128,
    "hidden_dim": 9216,
    "n_heads": 32,
    "n_kv_heads": 8,
    "use_biases": False,
    "causal": True,
    "rope_theta": 1000000.0,
    "norm_eps": 1e-05,
    "vocab_size": VOCAB,
    "model_parallel": 1,
    "tied_embeddings": True,
    "sliding_window": 8192,
    "model_max_length": 131072,
    "ada_rms_norm_t_cond": True,
    "ada_rms_norm_t_cond_dim": 32,
    "multimodal": {
        "whisper_model_args": {
            "encoder_args": {
                "audio_encoding_args": {
                    "sampling_rate": 16000,
                    "frame_rate": 12.5,
                    "num_mel_bins": 128,
                    "hop_length": 160,
                    "window_size": 400,
                    "chunk_length_s": None,
                    "global_log_mel_max": 1.5,
                    "transcription_format": "streaming",
                },
                "dim": 1280,
                "n_layers": 32,
                "head_dim": 64,
                "hidden_dim": 5120,
                "n_heads": 32,
                "n_kv_heads": 32,
                "vocab_size": VOCAB,
                "use_biases": True,
                "use_cache": False,
                "rope_theta": 1000000.0,
                "causal": True,
                "norm_eps": 1e-05,
                "pos_embed": "rope",
                "max_source_positions": None,
                "ffn_type": "swiglu",
                "norm_type": "rms_norm",
                "sliding_window": 750,
            },
            "downsample_args": {"downsample_factor": 4},
        }
    },
}


def hf_config(p: dict) -> VoxtralRealtimeConfig:
    """Upstream config from params.json values (what the transformers converter sets)."""
    e = p["multimodal"]["whisper_model_args"]["encoder_args"]
    cfg = VoxtralRealtimeConfig(
        audio_config=dict(
            hidden_size=e["dim"],
            intermediate_size=e["hidden_dim"],
            num_hidden_layers=e["n_layers"],
            num_attention_heads=e["n_heads"],
            head_dim=e["head_dim"],
            num_mel_bins=e["audio_encoding_args"]["num_mel_bins"],
            rms_norm_eps=e["norm_eps"],
            sliding_window=e["sliding_window"],
            max_position_embeddings=1500,
            rope_parameters={"rope_type": "default", "rope_theta": e["rope_theta"]},
            hidden_act="silu",
        ),
        text_config=dict(
            vocab_size=p["vocab_size"],
            hidden_size=p["dim"],
            intermediate_size=p["hidden_dim"],
            num_hidden_layers=p["n_layers"],
            num_attention_heads=p["n_heads"],
            num_key_value_heads=p["n_kv_heads"],
            head_dim=p["head_dim"],
            max_position_embeddings=p["model_max_length"],
            rms_norm_eps=p["norm_eps"],
            rope_parameters={"rope_type": "default", "rope_theta": p["rope_theta"]},
            sliding_window=p["sliding_window"],
            tie_word_embeddings=True,
            hidden_act="silu",
            bos_token_id=1,
            eos_token_id=2,
        ),
        downsample_factor=p["multimodal"]["whisper_model_args"]["downsample_args"]["downsample_factor"],
        audio_length_per_tok=8,
        default_num_delay_tokens=6,
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    return cfg


def tensor_specs(cfg) -> list[tuple[str, tuple[int, ...]]]:
    """(Mistral name, shape) of every tensor, from the upstream module built on the meta device."""
    with torch.device("meta"):
        model = VoxtralRealtimeForConditionalGeneration(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    names = vt.mistral_name_map(cfg)
    used = {h for h, _ in names.values()}
    extra = set(shapes) - used - {"lm_head.weight"}
    assert not extra, f"upstream parameters without a Mistral name: {sorted(extra)[:5]}"
    return [(m, shapes[h]) for m, (h, _) in names.items()]


def tekken_json() -> dict:
    src = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
    with open(src, encoding="utf-8") as f:
        shipped = json.load(f)
    vocab = shipped["vocab"]
    assert len(vocab) >= VOCAB - NUM_SPECIAL, len(vocab)
    assert [v["rank"] for v in vocab] == list(range(len(vocab)))
    names: dict[int, str] = {}
    for info in Tekkenizer.DEPRECATED_SPECIAL_TOKENS:
        ts = info["token_str"]
        names[info["rank"]] = str(ts.value if hasattr(ts, "value") else ts)
    fixed = {
        SpecialTokens.audio.value: 24,
        SpecialTokens.begin_audio.value: 25,
        SpecialTokens.streaming_pad.value: 32,
        SpecialTokens.streaming_word.value: 33,
    }
    for n, r in fixed.items():
        names[r] = n
    free = (r for r in range(NUM_SPECIAL) if r not in names)
    for st in SpecialTokens:
        if st.value not in names.values():
            names[next(free)] = st.value
    special = [{"rank": r, "token_str": names.get(r, f"<SPECIAL_{r}>"), "is_control": True} for r in range(NUM_SPECIAL)]
    return {
        "config": {
            "pattern": shipped["config"]["pattern"],
            "num_vocab_tokens": len(vocab),
            "default_vocab_size": VOCAB,
            "default_num_special_tokens": NUM_SPECIAL,
            "version": "v13",
        },
        "vocab": vocab,
        "special_tokens": special,
        "audio": {
            "sampling_rate": 16000,
            "frame_rate": 12.5,
            "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
            "transcription_format": "streaming",
            "transcription_delay_ms": 480,
            "streaming_look_ahead_ms": 2.5,
            "streaming_look_back_ms": 52.5,
            "streaming_n_left_pad_tokens": 32,
        },
    }


def draw(name: str, shape: tuple[int, ...], idx: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + idx)
    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    t = torch.randn(shape, generator=g, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return t.mul_(0.02)
    if name.endswith("tok_embeddings.weight"):
        return t.mul_(1.0 / math.sqrt(shape[1]))
    fan_in = math.prod(shape[1:])
    return t.mul_(1.0 / math.sqrt(fan_in))


def write_safetensors(path: Path, specs: list[tuple[str, tuple[int, ...]]]) -> int:
    """Header first (offsets from the shapes), then each tensor drawn and written in turn."""
    header, off = {}, 0
    for name, shape in specs:
        n = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path.with_suffix(".safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for i, (name, shape) in enumerate(specs):
            t = draw(name, shape, i).contiguous()
            f.write(t.view(torch.int16).numpy().data)
            del t
    os.replace(tmp, path)
    return off


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output folder (outside the checkout)")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    out = args.out.resolve()
    if out == repo or repo in out.parents:
        raise SystemExit(f"{out}: refusing to write an 8.9 GB checkpoint inside the checkout")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg = hf_config(PARAMS)
    derived = vt.params_json(cfg)
    assert derived == PARAMS, "params.json derived from the upstream config differs from the release's"
    specs = tensor_specs(cfg)
    assert len(specs) == 711, len(specs)
    n_params = sum(math.prod(s) for _, s in specs)
    (out / "params.json").write_text(json.dumps(PARAMS, indent=2) + "\n", encoding="utf-8")
    # Serialised as mistral-common's shipped Tekken files (indent 2, raw UTF-8): about 14.9 MB,
    # the release's tekken.json size.
    (out / "tekken.json").write_text(json.dumps(tekken_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    nbytes = write_safetensors(out / "consolidated.safetensors", specs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{out}: {len(specs)} tensors, {n_params / 1e9:.3f} B parameters, {nbytes / 1e9:.2f} GB BF16, "
        f"{time.time() - t0:.0f} s, peak RSS {rss:.0f} MiB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
