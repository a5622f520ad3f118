#!/usr/bin/env python3
"""Tiny random Voxtral Mini 4B Realtime reference fixtures for voxtrace.

Builds a tiny random `VoxtralRealtimeForConditionalGeneration` with the upstream transformers
classes (transformers 5.23.0, `transformers/models/voxtral_realtime/modeling_voxtral_realtime.py`),
saves it in HF layout (f32) and in Mistral layout (BF16 `consolidated.safetensors` + `params.json`
+ a tiny `tekken.json`), runs the upstream processor (offline padding, prompt), upstream greedy
`generate()`, and one teacher-forced eager forward pass with forward hooks on every module.
Each clip gives a "voxtrace trace v1" safetensors dump (format: the module docs of
src/trace/mod.rs, "The `trace-v1` file format").

Regenerate (from the crate root, after `just setup-reference`; `just reference` runs it too):
    .venv-ref/bin/python reference/voxtral_tiny.py            # writes fixtures/voxtral_tiny
    .venv-ref/bin/python reference/voxtral_tiny.py --out DIR

Everything is deterministic (fixed seeds, CPU, single thread, eager attention for the hooked pass).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

# Determinism first: single-threaded CPU kernels.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save  # noqa: E402

import mistral_common  # noqa: E402
import transformers  # noqa: E402
from mistral_common.tokens.tokenizers.base import SpecialTokens  # noqa: E402
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer  # noqa: E402
from transformers import (  # noqa: E402
    VoxtralRealtimeConfig,
    VoxtralRealtimeFeatureExtractor,
    VoxtralRealtimeForConditionalGeneration,
    VoxtralRealtimeProcessor,
)
from transformers.models.voxtral_realtime import modeling_voxtral_realtime as mvr  # noqa: E402
from transformers.tokenization_mistral_common import MistralCommonBackend  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()
# generate() warns that it uses the model-agnostic default max_length: that IS the upstream
# Voxtral Realtime behaviour (max_length = number of audio tokens), so silence it.
warnings.filterwarnings("ignore", message="Using the model-agnostic default `max_length`")

REPO_ROOT = Path(__file__).resolve().parent.parent
AUDIO_DIR = (REPO_ROOT / ".." / "shared" / "audio").resolve()
DEFAULT_OUT = REPO_ROOT / "fixtures" / "voxtral_tiny"

# Seed 286 was picked from a scan of seeds 100, 102, .., 398 (same init scales as below) as the
# one that meets: >= 10 distinct greedy ids and longest run <= 8 on every clip, min top-1/top-2
# logit margin >= 0.01 over all greedy steps, with the lowest f32-vs-f64 ratio (see README.md,
# "Numerical floor"), so that a port with ~1e-5 logit error reproduces the ids exactly.
SEED = 286
SYNTH_SEED = 8  # numpy seed of the synthetic clip's noise (independent of the weight seed)
NUM_DELAY_TOKENS = 6
TOTAL_IDS = 2048  # tekken ids: 1000 special + 1048 BPE ranks
NUM_SPECIAL = 1000
BOS, EOS, STREAMING_PAD, STREAMING_WORD = 1, 2, 32, 33

# ---------------------------------------------------------------------------------------------
# Init tuning (see README.md). A naive N(0,1)/sqrt(fan_in) init makes greedy decoding repeat a
# single token; large gains (the previous version: linear_2 x64, decoder q/k x8) fix that but make
# the model numerically ill-conditioned (residual RMS ~33, hard-max attention), so that f32 and
# f64 differ by more than the atol 1e-5 / rtol 1e-4 parity tolerance. These moderate scales keep
# every activation at RMS <= ~2.6 and attention score std <= ~2.5 while greedy decoding still
# yields many distinct ids. They are applied BEFORE the bf16 rounding.
#   EMB_SCALE        : std of the token embedding (= tied lm_head)
#   AUDIO_OUT_SCALE  : extra gain on multi_modal_projector.linear_2 (audio embedding size
#                      relative to the token embedding at the decoder input)
#   CONV_GAIN        : extra gain on the conv stem weights (log-mel features are ~[-0.6, 1.5])
# ---------------------------------------------------------------------------------------------
EMB_SCALE = 0.25
AUDIO_OUT_SCALE = 2.0
CONV_GAIN = 2.0
ENC_O_GAIN = 0.5  # extra gain on the encoder self_attn.o_proj weights (context sensitivity)
DEC_QK_GAIN = 1.5  # extra gain on decoder q_proj/k_proj weights (position-dependent attention)
DEC_O_GAIN = 1.0  # extra gain on decoder self_attn.o_proj weights
DEC_FINAL_NORM_GAIN = 1.0  # gain on the decoder final norm weight (logit scale)
DEC_FINAL_NORM_RANDOM_SIGN = True  # random +-1 per channel of the decoder final norm weight
# (removes the tied-embedding self-bias e_x . (w * e_x) > 0 that makes greedy decoding repeat the fed id)
DEC_DOWN_GAIN = 1.0  # extra gain on decoder mlp.down_proj weights
EMB_ROW_LOG_SIGMA = 0.5  # per-row log-normal scale of the token embedding, exp(sigma * z)
EMB_ROW_CLAMP = 2.0  # z = N(0,1) clamped to [-2, 2]: row scales in [e^-1, e^1] (bounds the largest logits)

# Clips: (clip_id, source). "synthetic" is generated and written as 16-bit PCM.
CLIPS = [
    ("cards-001", "001.wav"),
    ("goforward", "goforward.wav"),
    ("LJ002-0020", "LJ002-0020.wav"),
    ("1272-128104-0000", "1272-128104-0000.wav"),
    ("synthetic", None),
]
STREAM_CLIP = "LJ002-0020"
# Clips that get a full per-module trace (all others: an "e2e" dump with generated_ids,
# input_features, input_ids and logits only). One full trace of the smallest real clip is
# about 8.5 MB; two would exceed the 15 MB fixture budget.
FULL_TRACE_CLIPS = ("cards-001",)
# Clips whose dump holds only generated_ids and input_ids (the longest clip; its input_features
# and logits would push the fixtures over 15 MB). The Rust side computes the mel from the wav.
IDS_ONLY_CLIPS = ("1272-128104-0000",)

SOURCE = (
    f"pytorch {torch.__version__} transformers {transformers.__version__} "
    f"mistral-common {mistral_common.__version__} eager f32 cpu"
)


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
ENC = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    head_dim=16,
    num_mel_bins=128,
    rms_norm_eps=1e-5,
    sliding_window=96,  # encoder frames; every clip has > 96 encoder frames
    max_position_embeddings=1500,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6},  # HF encoder default is 1e4!
    hidden_act="silu",
    activation_function="gelu",
)
TXT = dict(
    vocab_size=TOTAL_IDS,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    sliding_window=48,  # tokens; every clip has > 48 tokens
    tie_word_embeddings=True,
    hidden_act="silu",
    bos_token_id=BOS,
    eos_token_id=EOS,
)
# Hard-coded in upstream VoxtralRealtimeTextAdaRmsNorm (nn.Linear(hidden, 32)); there is no
# config field for it, so the tiny model necessarily uses 32.
ADA_T_COND_DIM = 32


def build_config() -> VoxtralRealtimeConfig:
    cfg = VoxtralRealtimeConfig(
        audio_config=dict(ENC),
        text_config=dict(TXT),
        downsample_factor=4,
        audio_length_per_tok=8,
        default_num_delay_tokens=NUM_DELAY_TOKENS,
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    cfg.bos_token_id = BOS
    cfg.eos_token_id = EOS
    return cfg


# ---------------------------------------------------------------------------------------------
# Model + init
# ---------------------------------------------------------------------------------------------
def init_weights(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Deterministic init over named_parameters() (sorted order = definition order)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "lm_head.weight":
                continue  # tied to embed_tokens
            if name.endswith("embed_tokens.weight"):
                w = torch.randn(p.shape, generator=gen) * EMB_SCALE
                if EMB_ROW_LOG_SIGMA:
                    # Own generator, so that the draws of all other parameters are unchanged.
                    rg = torch.Generator().manual_seed(SEED + 2)
                    z = torch.randn(p.shape[0], 1, generator=rg).clamp(-EMB_ROW_CLAMP, EMB_ROW_CLAMP)
                    w = w * torch.exp(EMB_ROW_LOG_SIGMA * z)
                p.copy_(w)
            elif name.endswith(("norm.weight", "layernorm.weight", "layer_norm.weight")):
                w = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
                if name == "model.language_model.norm.weight":
                    w = w * DEC_FINAL_NORM_GAIN
                    if DEC_FINAL_NORM_RANDOM_SIGN:
                        # Own generator, so that the draws of all other parameters are unchanged.
                        sg = torch.Generator().manual_seed(SEED + 1)
                        w = w * torch.where(torch.randn(p.shape, generator=sg) >= 0, 1.0, -1.0)
                p.copy_(w)
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".weight"):
                fan_in = int(np.prod(p.shape[1:]))
                w = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
                if "embedder.conv" in name:
                    w = w * CONV_GAIN
                if name.endswith("multi_modal_projector.linear_2.weight"):
                    w = w * AUDIO_OUT_SCALE
                if name.startswith("model.audio_tower.") and name.endswith("self_attn.o_proj.weight"):
                    w = w * ENC_O_GAIN
                if name.startswith("model.language_model.") and name.endswith(
                    ("self_attn.q_proj.weight", "self_attn.k_proj.weight")
                ):
                    w = w * DEC_QK_GAIN
                if name.startswith("model.language_model.") and name.endswith("self_attn.o_proj.weight"):
                    w = w * DEC_O_GAIN
                if name.startswith("model.language_model.") and name.endswith("mlp.down_proj.weight"):
                    w = w * DEC_DOWN_GAIN
                p.copy_(w)
            else:
                raise RuntimeError(f"unhandled parameter {name}")
        # Round every parameter to bf16-representable values so that the BF16 Mistral checkpoint
        # is value-identical to the f32 HF one.
        for _, p in model.named_parameters():
            p.data = p.data.bfloat16().float()
    model.tie_weights()


def build_model() -> VoxtralRealtimeForConditionalGeneration:
    torch.manual_seed(SEED)
    cfg = build_config()
    cfg._attn_implementation = "eager"
    model = VoxtralRealtimeForConditionalGeneration(cfg)
    gen = torch.Generator().manual_seed(SEED)
    init_weights(model, gen)
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    return model


# ---------------------------------------------------------------------------------------------
# Mistral layout
# ---------------------------------------------------------------------------------------------
WE = "mm_streams_embeddings.embedding_module.whisper_encoder."
ALP = "mm_streams_embeddings.embedding_module.audio_language_projection."
TOK = "mm_streams_embeddings.embedding_module.tok_embeddings.weight"


def permute_for_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """transformers converter `permute_for_rope`: interleaved pairs -> split halves (per head)."""
    if w.dim() == 1:
        d = w.shape[0]
        return w.view(n_heads, d // n_heads // 2, 2).transpose(1, 2).reshape(d)
    d_out, d_in = w.shape
    return w.view(n_heads, d_out // n_heads // 2, 2, d_in).transpose(1, 2).reshape(d_out, d_in)


def unpermute_for_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of permute_for_rope: split halves (HF) -> interleaved pairs (Mistral)."""
    if w.dim() == 1:
        d = w.shape[0]
        return w.view(n_heads, 2, d // n_heads // 2).transpose(1, 2).reshape(d)
    d_out, d_in = w.shape
    return w.view(n_heads, 2, d_out // n_heads // 2, d_in).transpose(1, 2).reshape(d_out, d_in)


def mistral_name_map(cfg: VoxtralRealtimeConfig) -> dict[str, tuple[str, int | None]]:
    """Mistral name -> (HF name, n_heads for the RoPE permutation or None)."""
    m: dict[str, tuple[str, int | None]] = {}
    a, t = cfg.audio_config, cfg.text_config
    m[TOK] = ("model.language_model.embed_tokens.weight", None)
    m["norm.weight"] = ("model.language_model.norm.weight", None)
    for i in range(t.num_hidden_layers):
        hp, mp = f"model.language_model.layers.{i}.", f"layers.{i}."
        m[mp + "attention_norm.weight"] = (hp + "input_layernorm.weight", None)
        m[mp + "ffn_norm.weight"] = (hp + "post_attention_layernorm.weight", None)
        m[mp + "attention.wq.weight"] = (hp + "self_attn.q_proj.weight", t.num_attention_heads)
        m[mp + "attention.wk.weight"] = (hp + "self_attn.k_proj.weight", t.num_key_value_heads)
        m[mp + "attention.wv.weight"] = (hp + "self_attn.v_proj.weight", None)
        m[mp + "attention.wo.weight"] = (hp + "self_attn.o_proj.weight", None)
        m[mp + "feed_forward.w1.weight"] = (hp + "mlp.gate_proj.weight", None)
        m[mp + "feed_forward.w2.weight"] = (hp + "mlp.down_proj.weight", None)
        m[mp + "feed_forward.w3.weight"] = (hp + "mlp.up_proj.weight", None)
        m[mp + "ada_rms_norm_t_cond.0.weight"] = (hp + "ada_rms_norm.linear1.weight", None)
        m[mp + "ada_rms_norm_t_cond.2.weight"] = (hp + "ada_rms_norm.linear2.weight", None)
    ha = "model.audio_tower."
    for k, hk in ((0, "conv1"), (1, "conv2")):
        for s in ("weight", "bias"):
            m[f"{WE}conv_layers.{k}.conv.{s}"] = (f"{ha}embedder.{hk}.{s}", None)
    for i in range(a.num_hidden_layers):
        hp, mp = f"{ha}layers.{i}.", f"{WE}transformer.layers.{i}."
        m[mp + "attention_norm.weight"] = (hp + "self_attn_layer_norm.weight", None)
        m[mp + "ffn_norm.weight"] = (hp + "final_layer_norm.weight", None)
        m[mp + "attention.wq.weight"] = (hp + "self_attn.q_proj.weight", a.num_attention_heads)
        m[mp + "attention.wq.bias"] = (hp + "self_attn.q_proj.bias", a.num_attention_heads)
        m[mp + "attention.wk.weight"] = (hp + "self_attn.k_proj.weight", a.num_attention_heads)
        m[mp + "attention.wv.weight"] = (hp + "self_attn.v_proj.weight", None)
        m[mp + "attention.wv.bias"] = (hp + "self_attn.v_proj.bias", None)
        m[mp + "attention.wo.weight"] = (hp + "self_attn.o_proj.weight", None)
        m[mp + "attention.wo.bias"] = (hp + "self_attn.o_proj.bias", None)
        m[mp + "feed_forward.w1.weight"] = (hp + "mlp.gate_proj.weight", None)
        m[mp + "feed_forward.w2.weight"] = (hp + "mlp.down_proj.weight", None)
        m[mp + "feed_forward.w2.bias"] = (hp + "mlp.down_proj.bias", None)
        m[mp + "feed_forward.w3.weight"] = (hp + "mlp.up_proj.weight", None)
    m[f"{WE}transformer.norm.weight"] = (f"{ha}norm.weight", None)
    m[ALP + "0.weight"] = ("model.multi_modal_projector.linear_1.weight", None)
    m[ALP + "2.weight"] = ("model.multi_modal_projector.linear_2.weight", None)
    return m


def hf_to_mistral(sd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    out = {}
    for mname, (hname, nh) in mistral_name_map(cfg).items():
        w = sd[hname].detach().clone()
        if nh is not None:
            w = unpermute_for_rope(w, nh)
        out[mname] = w.to(torch.bfloat16).contiguous()
    return out


def mistral_to_hf(msd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """What the upstream converter does (renames + permute_for_rope, cast to f32, tied head)."""
    out = {}
    for mname, (hname, nh) in mistral_name_map(cfg).items():
        w = msd[mname].float()
        if nh is not None:
            w = permute_for_rope(w, nh)
        out[hname] = w.contiguous()
    out["lm_head.weight"] = out["model.language_model.embed_tokens.weight"].clone()
    return out


def params_json(cfg) -> dict:
    a, t = cfg.audio_config, cfg.text_config
    return {
        "dim": t.hidden_size,
        "n_layers": t.num_hidden_layers,
        "head_dim": t.head_dim,
        "hidden_dim": t.intermediate_size,
        "n_heads": t.num_attention_heads,
        "n_kv_heads": t.num_key_value_heads,
        "use_biases": False,
        "causal": True,
        "rope_theta": t.rope_parameters["rope_theta"],
        "norm_eps": t.rms_norm_eps,
        "vocab_size": t.vocab_size,
        "model_parallel": 1,
        "tied_embeddings": True,
        "sliding_window": t.sliding_window,
        "model_max_length": t.max_position_embeddings,
        "ada_rms_norm_t_cond": True,
        "ada_rms_norm_t_cond_dim": ADA_T_COND_DIM,
        "multimodal": {
            "whisper_model_args": {
                "encoder_args": {
                    "audio_encoding_args": {
                        "sampling_rate": 16000,
                        "frame_rate": 12.5,
                        "num_mel_bins": a.num_mel_bins,
                        "hop_length": 160,
                        "window_size": 400,
                        "chunk_length_s": None,
                        "global_log_mel_max": 1.5,
                        "transcription_format": "streaming",
                    },
                    "dim": a.hidden_size,
                    "n_layers": a.num_hidden_layers,
                    "head_dim": a.head_dim,
                    "hidden_dim": a.intermediate_size,
                    "n_heads": a.num_attention_heads,
                    "n_kv_heads": a.num_attention_heads,
                    "vocab_size": t.vocab_size,
                    "use_biases": True,
                    "use_cache": False,
                    "rope_theta": a.rope_parameters["rope_theta"],
                    "causal": True,
                    "norm_eps": a.rms_norm_eps,
                    "pos_embed": "rope",
                    "max_source_positions": None,
                    "ffn_type": "swiglu",
                    "norm_type": "rms_norm",
                    "sliding_window": a.sliding_window,
                },
                "downsample_args": {"downsample_factor": cfg.downsample_factor},
            }
        },
    }


# ---------------------------------------------------------------------------------------------
# Tekken
# ---------------------------------------------------------------------------------------------
def build_tekken() -> dict:
    src = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
    with open(src, encoding="utf-8") as f:
        shipped = json.load(f)
    n_vocab = TOTAL_IDS - NUM_SPECIAL
    vocab = shipped["vocab"][:n_vocab]
    assert [v["rank"] for v in vocab] == list(range(n_vocab))
    # Special ranks: the 20 classic ones at their mistral-common DEPRECATED_SPECIAL_TOKENS ranks,
    # [AUDIO]=24, [BEGIN_AUDIO]=25, [STREAMING_PAD]=32, [STREAMING_WORD]=33 (the realtime ids);
    # the remaining SpecialTokens names get free ranks from 20 up; the rest are <SPECIAL_n>.
    fixed = {
        SpecialTokens.audio.value: 24,
        SpecialTokens.begin_audio.value: 25,
        SpecialTokens.streaming_pad.value: STREAMING_PAD,
        SpecialTokens.streaming_word.value: STREAMING_WORD,
    }
    names: dict[int, str] = {}
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    for info in Tekkenizer.DEPRECATED_SPECIAL_TOKENS:
        names[info["rank"]] = str(info["token_str"].value if hasattr(info["token_str"], "value") else info["token_str"])
    for n, r in fixed.items():
        names[r] = n
    free = (r for r in range(NUM_SPECIAL) if r not in names)
    for st in SpecialTokens:
        if st.value not in names.values():
            names[next(free)] = st.value
    special = [
        {"rank": r, "token_str": names.get(r, f"<SPECIAL_{r}>"), "is_control": True} for r in range(NUM_SPECIAL)
    ]
    return {
        "config": {
            "pattern": shipped["config"]["pattern"],
            "num_vocab_tokens": n_vocab,
            "default_vocab_size": TOTAL_IDS,
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


# ---------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------
def synth_signal(path: Path) -> None:
    """1.5 s linear chirp 200 -> 3000 Hz (amplitude 0.4) + Gaussian noise (std 0.02, numpy seed SYNTH_SEED).

    Quantised to 16-bit PCM (round(x * 32768), clipped) and written as WAV; the model input is
    the file read back as float32, i.e. exactly int16 / 32768.
    """
    sr = 16000
    n = int(1.5 * sr)
    t = np.arange(n, dtype=np.float64) / sr
    f0, f1, dur = 200.0, 3000.0, 1.5
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / dur * t * t)
    rng = np.random.default_rng(SYNTH_SEED)
    x = 0.4 * np.sin(phase) + 0.02 * rng.standard_normal(n)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    tmp = path.with_suffix(".wav.tmp")
    sf.write(tmp, pcm, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def read_wav(path: Path) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=False)
    if sr != 16000 or x.ndim != 1:
        raise ValueError(f"{path}: expected mono 16 kHz, got sr={sr} shape={x.shape}")
    return x


# ---------------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------------
SKIP_OUTPUT_SUFFIXES = ("self_attn.out.1",)  # attention probabilities, too large
SKIP_KWARGS = ("attention_mask",)  # (1,1,T,T) additive mask: large, derivable from the config


class Recorder:
    def __init__(self, keep_dtype: bool = False):
        self.tensors: dict[str, torch.Tensor] = {}
        self.order: list[str] = []
        self.skipped: set[str] = set()
        self.keep_dtype = keep_dtype  # True for the float64 floor run (else floats are stored as f32)

    def put(self, name: str, t: torch.Tensor) -> None:
        if any(name.endswith(s) for s in SKIP_OUTPUT_SUFFIXES):
            self.skipped.add(name)
            return
        if name in self.tensors:
            raise RuntimeError(f"module called twice: {name}")
        t = t.detach().clone().contiguous()
        if t.is_floating_point() and not self.keep_dtype:
            t = t.float()
        self.tensors[name] = t
        self.order.append(name)

    def put_value(self, name: str, v) -> None:
        if isinstance(v, torch.Tensor):
            self.put(name, v)
        elif isinstance(v, (tuple, list)):
            for i, e in enumerate(v):
                self.put_value(f"{name}.{i}", e)
        elif hasattr(v, "keys") and hasattr(v, "to_tuple"):  # ModelOutput
            for k in v.keys():
                self.put_value(f"{name}.{k}", v[k])
        else:
            pass  # non-tensor values (None, caches, ints) are skipped

    def hook(self, mname: str):
        def pre(module, args, kwargs):
            for i, a in enumerate(args):
                self.put_value(f"{mname}.in.{i}", a)
            for k, v in kwargs.items():
                if k in SKIP_KWARGS:
                    if isinstance(v, torch.Tensor):
                        self.skipped.add(f"{mname}.in.{k}")
                    continue
                self.put_value(f"{mname}.in.{k}", v)

        def post(module, args, kwargs, output):
            if isinstance(output, torch.Tensor):
                self.put(f"{mname}.out", output)
            else:
                self.put_value(f"{mname}.out", output)

        return pre, post


def hooked_forward(model, input_features, input_ids, keep_dtype: bool = False):
    rec = Recorder(keep_dtype=keep_dtype)
    handles = []
    for mname, mod in model.named_modules():
        if mname == "":
            continue
        pre, post = rec.hook(mname)
        handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(mod.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            out = model(
                input_features=input_features,
                input_ids=input_ids,
                num_delay_tokens=NUM_DELAY_TOKENS,
                use_cache=False,
            )
    finally:
        for h in handles:
            h.remove()
    return rec, out


# ---------------------------------------------------------------------------------------------
# Float64 floor: how far the f32 fixture is from the same model run in float64
# ---------------------------------------------------------------------------------------------
FLOOR_ATOL, FLOOR_RTOL = 1e-5, 1e-4  # the per-layer parity tolerance the fixtures must prove
FLOOR_MAX_RATIO = 1.0  # hard limit on max |f32 - f64| / (atol + rtol |f64|) over every hooked tensor
FLOOR_MAX_LOGIT_DIFF = 2e-5  # hard limit on max |f32 - f64| of the logits


@contextlib.contextmanager
def f64_eager_attention(score_std: dict[str, float], names: dict[int, str]):
    """Swap upstream `eager_attention_forward` for a copy whose softmax runs in the query dtype.

    Upstream computes the softmax in float32 even for a float64 model
    (`softmax(..., dtype=torch.float32).to(query.dtype)`), which would put f32 rounding into the
    float64 reference. Everything else is the upstream function line for line. Also records the
    std of the scaled scores q.k * scale over the unmasked (query, key) pairs of every call.
    """
    orig = mvr.eager_attention_forward

    def eager_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key_states = mvr.repeat_kv(key, module.num_key_value_groups)
        value_states = mvr.repeat_kv(value, module.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if attention_mask is not None:
            valid = (attention_mask == 0).expand_as(attn_weights)
            score_std[names[id(module)]] = float(attn_weights[valid].std())
            attn_weights = attn_weights + attention_mask
        else:
            score_std[names[id(module)]] = float(attn_weights.std())
        attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        return attn_output, attn_weights

    mvr.eager_attention_forward = eager_f64
    try:
        yield
    finally:
        mvr.eager_attention_forward = orig


def build_model_f64() -> VoxtralRealtimeForConditionalGeneration:
    """The same model (same init, same bf16-rounded weights) converted with `model.double()`."""
    return build_model().double()


def f64_forward(model64, input_features, input_ids, hooked: bool):
    """Teacher-forced float64 pass (f64 softmax, see `f64_eager_attention`).

    Returns (Recorder or None, logits f64 [1, N, vocab], attention score std per attention module).
    RoPE cos/sin are still computed in f32 by upstream (`VoxtralRealtimeRotaryEmbedding.forward`
    casts positions and inv_freq to float) and then cast to f64, so both runs use the same tables.
    """
    names = {id(m): n for n, m in model64.named_modules()}
    score_std: dict[str, float] = {}
    with f64_eager_attention(score_std, names), torch.no_grad():
        if hooked:
            rec, out = hooked_forward(model64, input_features.double(), input_ids, keep_dtype=True)
        else:
            rec = None
            out = model64(input_features=input_features.double(), input_ids=input_ids,
                          num_delay_tokens=NUM_DELAY_TOKENS, use_cache=False)
    return rec, out.logits.detach(), score_std


def floor_ratio(a32: torch.Tensor, r64: torch.Tensor) -> tuple[float, float]:
    """(max |a - r|, max |a - r| / (atol + rtol |r|)) elementwise, in f64."""
    d = (a32.double() - r64.double()).abs()
    return float(d.max()), float((d / (FLOOR_ATOL + FLOOR_RTOL * r64.double().abs())).max())


def sig(x: float) -> float:
    return float(f"{x:.4g}")


def floor_report(rec32: Recorder, rec64: Recorder, score_std: dict[str, float]) -> dict:
    """Per-tensor f32-vs-f64 table of a full trace, conditioning stats (score std, residual RMS)."""
    per = {}
    for k in rec32.order:
        a = rec32.tensors[k]
        if not a.is_floating_point():
            continue
        md, ratio = floor_ratio(a, rec64.tensors[k])
        per[k] = {"max_abs_diff": sig(md), "ratio": sig(ratio), "rms": sig(float(rec64.tensors[k].pow(2).mean().sqrt()))}
    worst = max(per, key=lambda k: per[k]["ratio"])
    resid_names = [k for k in rec64.order if k.endswith(
        ("in.inputs_embeds", "embedder.out", "post_attention_layernorm.in.0", "final_layer_norm.in.0")
    ) or (".layers." in k and k.endswith(".out") and k.count(".") == 4)]
    resid = {k: sig(float(rec64.tensors[k].pow(2).mean().sqrt())) for k in resid_names}
    return {
        "worst_tensor": worst,
        "worst_ratio": per[worst]["ratio"],
        "attention_score_std": {k: sig(v) for k, v in score_std.items()},
        "residual_stream_rms": resid,
        "per_tensor": per,
    }


def check_interleaved_rope(rec: Recorder, msd: dict[str, torch.Tensor], cfg) -> float:
    """Independent check that the Mistral layout needs interleaved-pair RoPE.

    For layer 0 of the encoder and of the decoder: q/k computed from the Mistral-layout BF16
    weights with interleaved RoPE (pairs (2i, 2i+1), angle pos * theta^(-2i/head_dim)) must equal
    the HF hook q/k after HF's split-half RoPE, with split index i / i + head_dim/2 mapped to
    interleaved 2i / 2i + 1. Returns the max |diff|.
    """
    worst = 0.0
    for hp, mp, sub in (
        ("model.audio_tower.layers.0.self_attn.", f"{WE}transformer.layers.0.attention.", cfg.audio_config),
        ("model.language_model.layers.0.self_attn.", "layers.0.attention.", cfg.text_config),
    ):
        hd = sub.head_dim
        theta = sub.rope_parameters["rope_theta"]
        pos_key = "model.audio_tower.rotary_emb.in.position_ids" if "audio" in hp else "model.language_model.rotary_emb.in.position_ids"
        rot = pos_key.replace(".in.position_ids", ".out")
        pos = rec.tensors[pos_key][0].double()
        cos, sin = rec.tensors[rot + ".0"][0].double(), rec.tensors[rot + ".1"][0].double()
        inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = pos[:, None] * inv[None, :]  # [T, hd/2]
        for proj, w in (("q_proj", "wq"), ("k_proj", "wk")):
            x = rec.tensors[hp + proj + ".in.0"][0].double()
            wm = msd[mp + w + ".weight"].double()
            y = x @ wm.T
            if (mp + w + ".bias") in msd:
                y = y + msd[mp + w + ".bias"].double()
            y = y.view(y.shape[0], -1, hd // 2, 2)
            c, s_ = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
            ym = torch.stack((y[..., 0] * c - y[..., 1] * s_, y[..., 0] * s_ + y[..., 1] * c), dim=-1).reshape(
                y.shape[0], -1, hd
            )
            h = rec.tensors[hp + proj + ".out"][0].double().view(y.shape[0], -1, hd)
            h = h * cos[:, None, :] + torch.cat((-h[..., hd // 2 :], h[..., : hd // 2]), -1) * sin[:, None, :]
            h_inter = torch.stack((h[..., : hd // 2], h[..., hd // 2 :]), dim=-1).reshape(h.shape)
            worst = max(worst, float((ym - h_inter).abs().max()))
    return worst


# ---------------------------------------------------------------------------------------------
# Streaming (upstream generator-of-chunks path)
# ---------------------------------------------------------------------------------------------
def stream_generate(model, processor, audio: np.ndarray) -> tuple[list[int], dict]:
    """Streaming generation as in the transformers docs for Voxtral Realtime.

    The clip is first right-padded like the offline path (align to 1280 samples, then
    n_right_pad_tokens x 1280 zeros). A chunk is fed only when all its samples exist, so the
    last audio token (whose STFT look-ahead would need 200 samples past the end) is never fed
    and the stream yields exactly N ids like offline generate(). The first chunk is
    `num_samples_first_audio_chunk` (= 9000) samples, for which the processor prepends the
    40,960-sample left pad and builds BOS + 38 x [STREAMING_PAD]; later chunks are
    `num_samples_per_audio_chunk` (= 1680) samples (center=False, 8 mel frames each), hop 1280.
    `generate()` consumes one chunk per step through the conv padding cache and the encoder KV
    cache and stops when the generator is exhausted.
    """
    tok = processor.raw_audio_length_per_tok
    align = (-len(audio)) % tok
    right = align + processor.num_right_pad_tokens * tok
    audio_p = np.concatenate([audio, np.zeros(right, dtype=np.float32)])
    first = processor(audio_p[: processor.num_samples_first_audio_chunk], is_streaming=True,
                      is_first_audio_chunk=True, return_tensors="pt")
    hop = processor.feature_extractor.hop_length
    n_fft = processor.feature_extractor.n_fft
    info = {"first_chunk_samples": int(processor.num_samples_first_audio_chunk),
            "first_chunk_mel_frames": int(first["input_features"].shape[-1]),
            "chunk_samples": int(processor.num_samples_per_audio_chunk), "later_chunks": 0,
            "right_pad_samples": int(right)}

    def feats_gen():
        yield first["input_features"]
        mel_idx = processor.num_mel_frames_first_audio_chunk
        start = mel_idx * hop - n_fft // 2
        while (end := start + processor.num_samples_per_audio_chunk) <= audio_p.shape[0]:
            chunk = processor(audio_p[start:end], is_streaming=True, is_first_audio_chunk=False, return_tensors="pt")
            info["later_chunks"] += 1
            yield chunk["input_features"]
            mel_idx += processor.audio_length_per_tok
            start = mel_idx * hop - n_fft // 2

    with torch.no_grad():
        out = model.generate(input_ids=first["input_ids"], attention_mask=first["attention_mask"],
                             input_features=feats_gen(), num_delay_tokens=NUM_DELAY_TOKENS, do_sample=False)
    return out[0].tolist(), info


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def save_st(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save, then re-serialise the JSON header with sorted keys.

    The safetensors writer stores `__metadata__` in a hash map, so its key order (and the file
    bytes) changes from run to run. Rewriting the header canonically (sorted keys, compact,
    space-padded to 8 bytes as the format requires) makes the files byte-reproducible; data
    offsets are relative to the end of the header and are unchanged. Written atomically.
    """
    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    hb = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    data = len(hb).to_bytes(8, "little") + hb + raw[8 + n :]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_lengths(ids: list[int]) -> int:
    best = cur = 1
    for a, b in zip(ids, ids[1:]):
        cur = cur + 1 if a == b else 1
        best = max(best, cur)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-stream", action="store_true", help="skip the streaming dump")
    ap.add_argument("--clips", default=None, help="comma-separated subset of clip ids")
    args = ap.parse_args(argv)
    t_start = time.time()
    out: Path = args.out
    (out / "hf").mkdir(parents=True, exist_ok=True)
    (out / "mistral").mkdir(parents=True, exist_ok=True)
    (out / "dumps").mkdir(parents=True, exist_ok=True)

    # --- tokenizer
    tek = build_tekken()
    tek_path = out / "mistral" / "tekken.json"
    write_text(tek_path, json.dumps(tek, ensure_ascii=False, indent=None))
    mt = MistralTokenizer.from_file(str(tek_path))
    it = mt.instruct_tokenizer
    assert it.tokenizer.n_words == TOTAL_IDS
    assert it.tokenizer.bos_id == BOS and it.tokenizer.eos_id == EOS
    assert it.tokenizer.get_special_token("[STREAMING_PAD]") == STREAMING_PAD
    assert it.tokenizer.get_special_token("[STREAMING_WORD]") == STREAMING_WORD
    assert it.audio_encoder.audio_config.get_num_delay_tokens() == NUM_DELAY_TOKENS

    # --- model
    model = build_model()
    cfg = model.config
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for k, v in sd.items():
        assert torch.equal(v, v.bfloat16().float()), f"{k} not bf16-representable"
    # HF layout (save_file directly: lm_head is tied, stored once via save_pretrained semantics)
    hf_sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    save_st(hf_sd, out / "hf" / "model.safetensors", metadata={"format": "pt"})
    cfg_dict = cfg.to_dict()
    cfg_dict["architectures"] = ["VoxtralRealtimeForConditionalGeneration"]
    cfg_dict.pop("_attn_implementation_autoset", None)
    write_text(out / "hf" / "config.json", json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n")
    write_text(
        out / "hf" / "weights.txt",
        "".join(f"{k}\t{list(v.shape)}\t{str(v.dtype).replace('torch.', '')}\n" for k, v in hf_sd.items())
        + "# lm_head.weight is tied to model.language_model.embed_tokens.weight (not stored)\n",
    )
    # Reload check: from_pretrained-style load of the saved HF dir gives identical tensors.
    reloaded = load_file(str(out / "hf" / "model.safetensors"))
    for k, v in hf_sd.items():
        assert torch.equal(reloaded[k], v), k

    # Mistral layout
    msd = hf_to_mistral(sd, cfg)
    save_st(msd, out / "mistral" / "consolidated.safetensors")
    write_text(out / "mistral" / "params.json", json.dumps(params_json(cfg), indent=2) + "\n")
    write_text(
        out / "mistral" / "weights.txt",
        "".join(f"{k}\t{list(v.shape)}\tbfloat16\n" for k, v in msd.items()),
    )
    back = mistral_to_hf(load_file(str(out / "mistral" / "consolidated.safetensors")), cfg)
    assert set(back) == set(sd), (set(back) ^ set(sd))
    for k in sd:
        assert torch.equal(back[k], sd[k]), f"Mistral->HF roundtrip differs for {k}"
    print(f"[ok] Mistral layout roundtrip: {len(msd)} tensors, bit-exact", file=sys.stderr)

    # --- processor
    fe = VoxtralRealtimeFeatureExtractor()
    tok = MistralCommonBackend(str(tek_path))
    processor = VoxtralRealtimeProcessor(feature_extractor=fe, tokenizer=tok)

    synth_path = out / "synthetic.wav"
    synth_signal(synth_path)

    clips = CLIPS
    if args.clips:
        want = set(args.clips.split(","))
        clips = [c for c in clips if c[0] in want]

    summary = {}
    offline_ids: dict[str, list[int]] = {}
    model64 = build_model_f64()
    floor_full: dict | None = None
    floor_clips: dict[str, dict] = {}
    for clip_id, fname in clips:
        wav_path = synth_path if fname is None else AUDIO_DIR / fname
        audio = read_wav(wav_path)
        full = clip_id in FULL_TRACE_CLIPS
        t0 = time.time()
        inputs = processor(audio, return_tensors="pt")
        feats = inputs["input_features"]
        prompt = inputs["input_ids"]
        L = prompt.shape[1]
        n_frames = feats.shape[-1]
        N = math.ceil(n_frames / cfg.audio_length_per_tok)
        assert prompt.tolist() == [[BOS] + [STREAMING_PAD] * (32 + NUM_DELAY_TOKENS)], prompt
        assert int(inputs["num_delay_tokens"]) == NUM_DELAY_TOKENS
        with torch.no_grad():
            gen = model.generate(
                input_ids=prompt,
                attention_mask=inputs["attention_mask"],
                input_features=feats,
                num_delay_tokens=NUM_DELAY_TOKENS,
                do_sample=False,
                return_dict_in_generate=True,
                output_logits=True,
            )
        t_gen = time.time() - t0
        step_logits = torch.stack(gen.logits, dim=1)  # [1, generated, vocab], one per decode step
        gen = gen.sequences
        gen_ids = gen[0].tolist()
        offline_ids[clip_id] = gen_ids
        new = gen_ids[L:]
        # Teacher-forced ids: the generate() output (prompt + generated); if it stopped early on EOS
        # it is padded with [STREAMING_PAD] up to N (does not happen for the committed fixtures).
        fed = gen_ids[:N] + [STREAMING_PAD] * max(0, N - len(gen_ids))
        fed_t = torch.tensor([fed], dtype=torch.long)
        t1 = time.time()
        if full:
            rec, fout = hooked_forward(model, feats, fed_t)
            t_fwd = time.time() - t1
            rope_diff = check_interleaved_rope(rec, msd, cfg)
            assert rope_diff < 1e-4, rope_diff
            print(f"[ok] Mistral q/k + interleaved RoPE == HF q/k + split RoPE: max |diff| {rope_diff:.2e}", file=sys.stderr)
            # The saved HF folder loads with from_pretrained and gives bit-identical logits.
            reloaded_model = VoxtralRealtimeForConditionalGeneration.from_pretrained(
                str(out / "hf"), attn_implementation="eager"
            ).eval()
            with torch.no_grad():
                lo = reloaded_model(input_features=feats, input_ids=fed_t, num_delay_tokens=NUM_DELAY_TOKENS,
                                    use_cache=False).logits
            assert torch.equal(lo, fout.logits), "from_pretrained(hf/) logits differ"
        else:
            rec = Recorder()
            with torch.no_grad():
                fout = model(input_features=feats, input_ids=fed_t, num_delay_tokens=NUM_DELAY_TOKENS, use_cache=False)
            t_fwd = time.time() - t1
        logits = fout.logits
        # Float64 floor: the same teacher-forced pass in float64 (same weights, inputs, fed ids).
        rec64, logits64, score_std = f64_forward(model64, feats, fed_t, hooked=full)
        f64_logit_diff, f64_logit_ratio = floor_ratio(logits, logits64)
        if full:
            floor = floor_report(rec, rec64, score_std)
            floor["clip"] = clip_id
            floor_full = floor
            del rec64
        floor_clips[clip_id] = {"logits_max_abs_diff": sig(f64_logit_diff), "logits_ratio": sig(f64_logit_ratio),
                                "max_attention_score_std": sig(max(score_std.values()))}
        # consistency: teacher-forced argmax at position p-1 reproduces generate()'s token p
        tf_argmax = logits[0].argmax(-1).tolist()
        tf_match = sum(int(tf_argmax[p - 1] == gen_ids[p]) for p in range(L, len(gen_ids)))
        # generate() (encoder + decoder KV caches, chunked) vs the single full forward pass
        gen_vs_fwd = float((step_logits[0] - logits[0, L - 1 : len(gen_ids) - 1]).abs().max())
        top2 = step_logits[0].topk(2, dim=-1).values
        min_margin = float((top2[:, 0] - top2[:, 1]).min())
        tensors = {"generated_ids": gen.clone().to(torch.int64)}
        order = ["generated_ids"]
        ids_only = clip_id in IDS_ONLY_CLIPS
        if not ids_only:
            tensors["input_features"] = feats.float().contiguous()
            order.append("input_features")
        tensors["input_ids"] = fed_t.clone()
        order.append("input_ids")
        for k in rec.order:
            tensors[k] = rec.tensors[k]
            order.append(k)
        if not ids_only:
            tensors["logits"] = logits.detach().float().clone().contiguous()
            order.append("logits")
        kind = "full" if full else ("ids" if ids_only else "e2e")
        distinct = sorted(set(new))
        meta = {
            "voxtrace.format": "trace-v1",
            "voxtrace.order": json.dumps(order),
            "voxtrace.source": SOURCE,
            "voxtrace.kind": kind,
            "voxtrace.clip": clip_id,
            "voxtrace.wav": str(wav_path.name),
            "voxtrace.num_samples": str(len(audio)),
            "voxtrace.mel_frames": str(n_frames),
            "voxtrace.num_audio_tokens": str(N),
            "voxtrace.prompt_len": str(L),
            "voxtrace.num_delay_tokens": str(NUM_DELAY_TOKENS),
            "voxtrace.generated_len": str(len(gen_ids)),
            "voxtrace.generated_new_tokens": str(len(new)),
            "voxtrace.generated_distinct_ids": str(len(distinct)),
            "voxtrace.generated_longest_run": str(run_lengths(new)),
            "voxtrace.teacher_forced_argmax_matches": f"{tf_match}/{len(gen_ids) - L}",
            "voxtrace.generate_vs_forward_max_abs_logit_diff": f"{gen_vs_fwd:.3e}",
            "voxtrace.min_top1_top2_logit_margin": f"{min_margin:.4f}",
            "voxtrace.input_ids_rule": "input_ids = generated_ids[:N] (prompt + generated), padded with 32 to N if shorter",
            "voxtrace.skipped": json.dumps(sorted(rec.skipped)),
        }
        stem = clip_id if full else f"{clip_id}.{kind}"
        save_st(tensors, out / "dumps" / f"{stem}.safetensors", metadata=meta)
        write_text(
            out / "dumps" / f"{stem}.names.txt",
            "".join(
                f"{k}\t{list(tensors[k].shape)}\t{str(tensors[k].dtype).replace('torch.', '')}\n" for k in order
            ),
        )
        summary[clip_id] = dict(
            kind=kind, samples=len(audio), mel_frames=n_frames, N=N,
            generated_len=len(gen_ids), new_tokens=len(new), distinct_ids=len(distinct),
            longest_run=run_lengths(new), teacher_forced_match=f"{tf_match}/{len(gen_ids) - L}",
            generate_vs_forward_max_abs_logit_diff=f"{gen_vs_fwd:.3e}", min_top1_top2_logit_margin=round(min_margin, 4),
            f64_logits_max_abs_diff=floor_clips[clip_id]["logits_max_abs_diff"],
            f64_logits_ratio=floor_clips[clip_id]["logits_ratio"],
            n_tensors=len(order), new_ids=new,
        )
        print(
            f"[{clip_id}] { {k: v for k, v in summary[clip_id].items() if k != 'new_ids'} } "
            f"generate {t_gen:.3f} s, forward {t_fwd:.3f} s\n  new ids: {new}",
            file=sys.stderr,
        )

    if not args.no_stream and STREAM_CLIP in offline_ids:
        fname = dict(CLIPS)[STREAM_CLIP]
        audio = read_wav(synth_path if fname is None else AUDIO_DIR / fname)
        t0 = time.time()
        sids, info = stream_generate(model, processor, audio)
        t_stream = time.time() - t0
        off = offline_ids[STREAM_CLIP]
        common = min(len(off), len(sids))
        equal_prefix = off[:common] == sids[:common]
        meta = {
            "voxtrace.format": "trace-v1",
            "voxtrace.order": json.dumps(["generated_ids"]),
            "voxtrace.source": SOURCE + " streaming (generator of input_features chunks)",
            "voxtrace.kind": "stream",
            "voxtrace.clip": STREAM_CLIP,
            "voxtrace.stream_len": str(len(sids)),
            "voxtrace.offline_len": str(len(off)),
            "voxtrace.equal_to_offline_on_common_prefix": str(equal_prefix).lower(),
            "voxtrace.equal_to_offline": str(off == sids).lower(),
            "voxtrace.stream_chunks": json.dumps(info),
        }
        save_st({"generated_ids": torch.tensor([sids], dtype=torch.int64)},
                out / "dumps" / f"{STREAM_CLIP}.stream.safetensors", metadata=meta)
        summary[f"{STREAM_CLIP}.stream"] = dict(
            stream_len=len(sids), offline_len=len(off), equal_on_common_prefix=equal_prefix,
            equal=off == sids, chunks=info,
        )
        print(
            f"[stream {STREAM_CLIP}] len {len(sids)} vs offline {len(off)}; equal {off == sids}; {t_stream:.3f} s",
            file=sys.stderr,
        )

    if floor_full is not None:
        summary["float64_floor"] = {
            "what": "f32 fixture run vs the same model in float64 (model.double(), input_features.double(), "
                    "same fed input_ids, float64 softmax); ratio = max |f32 - f64| / (atol + rtol |f64|)",
            "atol": FLOOR_ATOL, "rtol": FLOOR_RTOL,
            "worst_tensor": floor_full["worst_tensor"], "worst_ratio": floor_full["worst_ratio"],
            "full_trace_clip": floor_full["clip"],
            "logits": floor_clips,
            "attention_score_std": floor_full["attention_score_std"],
            "residual_stream_rms": floor_full["residual_stream_rms"],
            "per_tensor": floor_full["per_tensor"],
        }
        print(f"[float64 floor] worst {floor_full['worst_tensor']} ratio {floor_full['worst_ratio']}; "
              f"logits {floor_clips}", file=sys.stderr)
        assert floor_full["worst_ratio"] <= FLOOR_MAX_RATIO, floor_full["worst_tensor"]
    for c, f in floor_clips.items():
        assert f["logits_max_abs_diff"] <= FLOOR_MAX_LOGIT_DIFF, (c, f)
        assert f["logits_ratio"] <= FLOOR_MAX_RATIO, (c, f)
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"total {time.time() - t_start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
