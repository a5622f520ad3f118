#!/usr/bin/env python3
"""mistral-common's own decoding of id sequences with its shipped tekken_240718.json, for voxtrace's tokenizer tests.

Runs mistral-common 1.13.1 `Tekkenizer.from_file(.../mistral_common/data/tekken_240718.json)` and records, for a few
hundred id sequences, `decode(ids)` (SpecialTokenPolicy.IGNORE, the default) and `decode(ids, KEEP)`, plus the raw
bytes (`id_to_byte_piece`) of a sample of single ids. The sequences mix:
  * ids drawn uniformly from the whole id range (specials included);
  * encodings of multilingual text (accents, CJK, emoji) cut at random points, so multi-byte UTF-8 characters are
    split at both ends;
  * the same encodings with special ids inserted at random positions (a special inside a multi-byte character);
  * runs of single-byte ids (1000..1255), incl. lone continuation bytes and truncated lead bytes.
Writes fixtures/tokenizer/tekken_240718_cases.json. Regenerate with
`.venv/bin/python reference/tekken_decode_cases.py` from the crate root.
"""
from __future__ import annotations

import base64
import json
import os
import random
import sys
from pathlib import Path

import mistral_common
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(mistral_common.__file__).parent / "data" / "tekken_240718.json"
OUT = ROOT / "fixtures" / "tokenizer" / "tekken_240718_cases.json"

TEXTS = [
    "And so my fellow Americans, ask not what your country can do for you.",
    "Mister Quilter is the apostle of the middle classes.",
    "Ça a été un été très chaud à Zürich, n'est-ce pas? Ærøskøbing!",
    "東京は日本の首都です。今日はいい天気ですね。",
    "Привет, мир! Как дела?",
    "emoji: 🎤🔊 👩‍👩‍👧 ✅ and math ∑∫√ ≠ ≤",
    "한국어 문장도 있습니다. 그리고 العربية أيضا.",
    "  leading spaces\tand\ttabs\nnew lines\r\n",
]


def main() -> int:
    tok = Tekkenizer.from_file(SRC)
    n_words = tok.n_words
    n_special = tok.num_special_tokens
    rng = random.Random(240718)
    seqs: list[list[int]] = []
    # 1. uniform ids over the whole range, specials included
    for _ in range(120):
        seqs.append([rng.randrange(n_words) for _ in range(rng.randrange(1, 40))])
    # 2. multilingual encodings, cut at random points
    encoded = [tok.encode(t, bos=False, eos=False) for t in TEXTS]
    for ids in encoded:
        seqs.append(list(ids))
    for _ in range(100):
        ids = rng.choice(encoded)
        a = rng.randrange(len(ids))
        b = rng.randrange(a, len(ids) + 1)
        seqs.append(list(ids[a:b]))
    # 3. specials inserted at random positions
    for _ in range(60):
        ids = list(rng.choice(encoded))
        for _ in range(rng.randrange(1, 4)):
            ids.insert(rng.randrange(len(ids) + 1), rng.choice([1, 2, 0, rng.randrange(n_special)]))
        seqs.append(ids)
    # 4. raw byte ids: UTF-8 of CJK/emoji split into bytes, shuffled fragments, lone continuation bytes
    for _ in range(40):
        raw = rng.choice(TEXTS).encode("utf-8")
        a = rng.randrange(len(raw))
        frag = raw[a : a + rng.randrange(1, 12)]
        ids = [n_special + b for b in frag]
        if rng.random() < 0.3:
            ids.insert(rng.randrange(len(ids) + 1), n_special + rng.randrange(0x80, 0x100))
        if rng.random() < 0.3:
            ids.insert(rng.randrange(len(ids) + 1), rng.randrange(n_special))
        seqs.append(ids)
    seqs.append([])
    cases = [
        {
            "ids": s,
            "decoded": tok.decode(s, special_token_policy=SpecialTokenPolicy.IGNORE),
            "decoded_keep": tok.decode(s, special_token_policy=SpecialTokenPolicy.KEEP),
        }
        for s in seqs
    ]
    piece_ids = sorted({rng.randrange(n_special, n_words) for _ in range(300)} | {n_special, n_special + 255, n_words - 1})
    pieces = {str(i): base64.b64encode(tok.id_to_byte_piece(i)).decode("ascii") for i in piece_ids}
    doc = {
        "generator": "reference/tekken_decode_cases.py",
        "mistral_common": mistral_common.__version__,
        "tokenizer_file": "mistral_common/data/tekken_240718.json",
        "n_words": n_words,
        "num_special_tokens": n_special,
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "hello_world_ids": tok.encode("Hello world, this is a test.", bos=True, eos=False),
        "cases": cases,
        "byte_pieces_b64": pieces,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, OUT)
    n_repl = sum("\ufffd" in c["decoded"] for c in cases)
    print(f"wrote {len(cases)} cases ({n_repl} with U+FFFD) and {len(pieces)} byte pieces to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
