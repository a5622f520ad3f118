#!/usr/bin/env python3
"""Build a tiny but valid Tekken tokenizer file for voxtrace's tokenizer tests, and check it with mistral-common.

Recipe (docs/pytorch-reference.md section 7): 2048 total ids = 1000 special + 1048 vocab entries. The vocab is
the first 1048 entries of mistral-common's shipped `tekken_240718.json` (ranks 0..255 are the single bytes). The
1000 special tokens carry every name of mistral-common's `SpecialTokens` enum (the instruct tokenizer looks each
one up at load time) at these ranks:
  0..19  the Tekkenizer.DEPRECATED_SPECIAL_TOKENS order (<unk>, <s>, </s>, [INST], ...);
  24 [AUDIO], 25 [BEGIN_AUDIO], 32 [STREAMING_PAD], 33 [STREAMING_WORD] (the Voxtral Realtime ids,
  voxtral-realtime-spec.md section 7.1);
  the remaining enum names at the first free ranks from 20 (placeholders: the real tekken.json's ranks for
  [ARGS], [CALL_ID], [TRANSCRIBE], ... are not known here);
  every other rank is <SPECIAL_n>.
An `audio` section with the Voxtral Realtime values (spec section 8) is added.

Writes fixtures/tokenizer/tekken_tiny.json and fixtures/tokenizer/tekken_tiny_cases.json (mistral-common's own
decode of a few id sequences with this file, and the ids it reports for the special tokens and audio padding).
Regenerate with `.venv/bin/python reference/make_tiny_tekken.py` from the crate root.
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import mistral_common
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy, SpecialTokens
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
OUT = ROOT / "fixtures" / "tokenizer" / "tekken_tiny.json"
CASES = ROOT / "fixtures" / "tokenizer" / "tekken_tiny_cases.json"
TOTAL = 2048
N_SPECIAL = 1000
FIXED = {24: "[AUDIO]", 25: "[BEGIN_AUDIO]", 32: "[STREAMING_PAD]", 33: "[STREAMING_WORD]"}


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build() -> dict:
    src = json.loads(SRC.read_text(encoding="utf-8"))
    n_vocab = TOTAL - N_SPECIAL
    names: dict[int, str] = {}
    for info in Tekkenizer.DEPRECATED_SPECIAL_TOKENS:
        names[info["rank"]] = str(info["token_str"].value if hasattr(info["token_str"], "value") else info["token_str"])
    names.update(FIXED)
    free = (r for r in range(20, N_SPECIAL) if r not in names)
    for tok in SpecialTokens:
        if tok.value not in names.values():
            names[next(free)] = tok.value
    specials = [
        {"rank": r, "token_str": names.get(r, f"<SPECIAL_{r}>"), "is_control": True} for r in range(N_SPECIAL)
    ]
    return {
        "config": {
            "pattern": src["config"]["pattern"],
            "num_vocab_tokens": n_vocab,
            "default_vocab_size": TOTAL,
            "default_num_special_tokens": N_SPECIAL,
            "version": "v13",
        },
        "vocab": src["vocab"][:n_vocab],
        "special_tokens": specials,
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


def main() -> int:
    doc = build()
    atomic_write(OUT, json.dumps(doc, ensure_ascii=False) + "\n")

    # Check that mistral-common accepts the file, through the public entry point.
    mt = MistralTokenizer.from_file(str(OUT))
    tok = mt.instruct_tokenizer.tokenizer
    assert isinstance(tok, Tekkenizer)
    assert tok.n_words == TOTAL and tok.num_special_tokens == N_SPECIAL
    assert tok.bos_id == 1 and tok.eos_id == 2
    ids = {name: tok.get_special_token(name) for name in ["<s>", "</s>", "[STREAMING_PAD]", "[STREAMING_WORD]", "[AUDIO]", "[BEGIN_AUDIO]"]}
    assert ids["[STREAMING_PAD]"] == 32 and ids["[STREAMING_WORD]"] == 33, ids
    audio_enc = mt.instruct_tokenizer.audio_encoder
    assert audio_enc is not None
    cfg = audio_enc.audio_config
    left, right = audio_enc._get_streaming_pad(56032)

    rng = random.Random(20261122)
    seqs = [
        [1, 32, 33, 2],
        list(range(1000, 1060)),
        [33] + list(range(1256, 1300)) + [2],
    ]
    for _ in range(40):
        seqs.append([rng.randrange(TOTAL) for _ in range(rng.randrange(1, 24))])
    cases = [
        {
            "ids": s,
            "decoded": tok.decode(s, special_token_policy=SpecialTokenPolicy.IGNORE),
            "decoded_keep": tok.decode(s, special_token_policy=SpecialTokenPolicy.KEEP),
        }
        for s in seqs
    ]
    out = {
        "generator": "reference/make_tiny_tekken.py",
        "mistral_common": mistral_common.__version__,
        "n_words": tok.n_words,
        "num_special_tokens": tok.num_special_tokens,
        "special_ids": ids,
        "audio": {
            "raw_audio_length_per_tok": cfg.raw_audio_length_per_tok,
            "audio_length_per_tok": cfg.audio_length_per_tok,
            "n_delay_tokens": cfg.get_num_delay_tokens(),
            "n_left_pad_tokens": cfg.n_left_pad_tokens,
            "n_right_pad_tokens": cfg.n_right_pad_tokens(),
            "streaming_pad_56032": [left, right],
            "streaming_prefix": audio_enc.encode_streaming_tokens(),
        },
        "cases": cases,
    }
    atomic_write(CASES, json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) and {CASES}; special ids {ids}; pads {left},{right}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
