#!/usr/bin/env python3
"""Generate fixtures/eval/normalizer_cases.json from the REAL Whisper text normalisers.

Runs openai-whisper's `whisper/normalizers/english.py` (EnglishTextNormalizer) and
`whisper/normalizers/basic.py` (BasicTextNormalizer) over a list of tricky inputs plus every
reference transcript of ../shared/audio/manifest.tsv and ../shared/audio/tts/manifest.tsv, and
writes the outputs, so that the Rust port (src/eval/normalize.rs) can be tested for equality.

Upstream source (MIT, Copyright (c) 2022 OpenAI): PyPI `openai-whisper==20250625`. Only the
`normalizers` sub-package is imported (the top-level `whisper` package would pull in torch and
tiktoken). It needs `regex` and `more-itertools` in the interpreter.

Regenerate (from the crate root):

    .venv-ref/bin/python -m pip download --no-deps --dest /tmp openai-whisper==20250625 \
        && tar xzf /tmp/openai_whisper-20250625.tar.gz -C /tmp
    .venv-ref/bin/python -m pip install more-itertools   # needed by whisper/normalizers/english.py
    .venv-ref/bin/python reference/eval_normalizer_cases.py \
        --whisper-src /tmp/openai_whisper-20250625/whisper \
        --audio ../shared/audio --out fixtures/eval/normalizer_cases.json

The script also runs transformers' copy (`transformers/models/whisper/english_normalizer.py`)
when it is importable and records whether it agrees on every case (informational only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import unicodedata

CASES = [
    # --- spelled-out numbers -------------------------------------------------------------
    "twenty five",
    "twenty-five",
    "one hundred and twenty three",
    "one thousand two hundred and thirty four",
    "two thousand and nineteen",
    "nineteen ninety nine",
    "nineteen eighties",
    "the nineteen sixties",
    "one oh one",
    "zero zero seven",
    "double oh seven",
    "triple five",
    "double trouble",
    "one two three four",
    "seven eight nine ten",
    "a hundred",
    "hundreds of people",
    "three hundred thousand",
    "two million three hundred thousand",
    "five billion",
    "one decillion",
    "nine hundred ninety nine decillion",
    "twenty first",
    "twenty-first century",
    "the first time",
    "second place",
    "third",
    "fifth avenue",
    "ninth",
    "ninth and tenth",
    "twelfth night",
    "thirteenth floor",
    "twentieth",
    "ninetieth birthday",
    "hundredth",
    "one hundredth",
    "two thousandth",
    "millionth",
    "one",
    "ones",
    "one of the ones",
    "the ones and twos",
    "sixes and sevens",
    "fifties",
    "the roaring twenties",
    "two and a half",
    "three and a half million",
    "and a half",
    "a cat and a half",
    "one and a half hours",
    "point five",
    "zero point five",
    "three point one four one five nine",
    "point blank",
    "minus five",
    "negative twenty degrees",
    "plus three",
    "minus sign",
    "positive thinking",
    "five dollars",
    "twenty dollars and fifty cents",
    "one dollar and one cent",
    "ten pounds",
    "a pound of flour",
    "three euros",
    "fifty cents",
    "ninety-nine percent",
    "ninety nine per cent",
    "fifty percent of the time",
    "percent",
    "per person",
    "one per cent",
    "twenty five percent",
    "eleven",
    "eleven hundred",
    "twelve thirty",
    "seven fifteen",
    "zero",
    "oh my",
    "o",
    "and",
    "one and two",
    "hundred and one",
    "thousand and one nights",
    "twenty twenty",
    "two point oh",
    "one point two point three",
    "double",
    "triple zero",
    "ten ten",
    # --- arabic numbers ----------------------------------------------------------------
    "$1.5 million",
    "$20 million",
    "$20",
    "$0.50",
    "$0.05",
    "$2 and 7 cents",
    "£5 and 50 cents",
    "€3.99",
    "1st",
    "2nd place",
    "3rd",
    "4th of july",
    "274th",
    "1960s",
    "the 1990's",
    "10,000",
    "1,234,567 people",
    "3.14",
    "1.0",
    "007",
    "1 2 3",
    "10 million",
    "1.5 billion dollars",
    "100%",
    "50 percent",
    "0.5 million",
    "192.168.0.1",
    "version 2.0.1",
    "it costs 5 dollars",
    "5 pounds of sugar",
    "room 101",
    "1",
    "1s and 0s",
    "2 and a half",
    "abc123def",
    "covid19",
    "3d",
    "mp3 player",
    # --- honorifics / standardisation ---------------------------------------------------
    "Mr. Smith",
    "mister smith",
    "Mrs. Jones and Dr. Who",
    "St. Louis",
    "Prof. X met Capt. Kirk",
    "Gen. Lee, Sen. Byrd, Rep. Doe, Pres. Lincoln",
    "Rev. King and Hon. Judge",
    "Lt. Col. Sanders Jr. Sr. Esq.",
    "Gov. and Ald. and Asst. and Assoc.",
    "MISTER QUILTER",
    # --- contractions ---------------------------------------------------------------------
    "I won't go",
    "we can't stop",
    "let's go",
    "ain't nobody",
    "y'all",
    "I wanna go, I gotta go, I'm gonna go",
    "i'ma do it",
    "imma do it",
    "woulda coulda shoulda",
    "yes ma'am",
    "he'd been there",
    "she's been there",
    "he'd gone home",
    "it's gone",
    "they'd done it",
    "he's got it",
    "don't you're they'll we've I'm it's he'd",
    "can 't",
    "rock 'n' roll",
    "the dog's bone",
    "'tis the season",
    "isn't it",
    # --- fillers, brackets, punctuation ------------------------------------------------------
    "um I think uh we should hmm go",
    "mm mhm mmm",
    "umbrella and hummus",
    "hello [laughter] world",
    "hello <unk> world",
    "hello (inaudible) world",
    "[noise]",
    "Hello, world!",
    "What?! No... way.",
    "e.g. this i.e. that",
    "end.",
    "U.S.A.",
    "\"quoted\" text",
    "semi;colon: dash - and — em",
    "tab\there",
    "new\nline",
    "  leading and trailing  ",
    "under_score",
    "hash#tag @mention",
    "50% off",
    "100 % sure",
    "a+b=c",
    "x^2",
    "$ alone",
    "dollars",
    "cents",
    "%",
    "",
    "   ",
    # --- spelling (British -> American) --------------------------------------------------------
    "colour",
    "The colour of the neighbour's favourite honour",
    "organise the organisation",
    "theatre centre metre",
    "aeroplane",
    "analyse paralyse",
    "travelled travelling",
    "grey",
    "programme",
    "defence licence",
    "catalogue",
    "behaviour",
    # --- diacritics and unicode ---------------------------------------------------------------------
    "café naïve résumé",
    "Crème Brûlée",
    "Œuvre and æsthetic",
    "straße",
    "Øresund",
    "Łódź",
    "þorn and ðe",
    "Ångström",
    "ﬁnance",
    "½ cup",
    "x² y³",
    "①②③",
    "Ⅻ",
    "naïve",
    "ΣΟΦΟΣ",
    "İstanbul",
    "nbsp\u00a0space",
    "zero\u200bwidth",
    "um\u0301",
    "hello\u3000world",
]


FUZZ_TOKENS = [
    "one", "two", "three", "five", "nine", "ten", "eleven", "twelve", "nineteen", "twenty",
    "fifty", "ninety", "hundred", "thousand", "million", "billion", "first", "second", "third",
    "fifth", "ninth", "twelfth", "twentieth", "hundredth", "thousands", "millions", "sixes",
    "fifties", "oh", "o", "zero", "and", "a", "half", "point", "double", "triple", "minus",
    "plus", "negative", "dollar", "dollars", "cent", "cents", "pound", "euros", "percent", "per",
    "cent", "$", "£", "€", "%", ".", ",", "-", "'s", "n't", "mr", "mr.", "st.", "dr", "um", "uh",
    "1", "2", "0", "05", "10", "1.5", "3.", ".5", "1,000", "$3", "£20", "€0.07", "$0.5",
    "1st", "2nd", "3rd", "4th", "1s", "90s", "colour", "theatre", "the", "of", "cat",
    "[x]", "(y)", "<z>", "ninety-nine", "café", "Ångström", "won't", "can't", "it's",
]


def fuzz_cases(n: int, seed: int = 1122):
    """Random token soups over number words, symbols and contractions (seeded)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        toks = [rng.choice(FUZZ_TOKENS) for _ in range(rng.randint(1, 9))]
        seps = [rng.choice([" ", " ", " ", "", "  "]) for _ in toks]
        out.append("".join(t + s for t, s in zip(toks, seps)).strip())
    return out


def load_normalizers(whisper_src: str):
    """Import whisper/normalizers as a stand-alone package (no torch needed)."""
    sys.path.insert(0, whisper_src)
    import normalizers  # type: ignore  # noqa: E402

    return normalizers.EnglishTextNormalizer, normalizers.BasicTextNormalizer


def manifest_refs(audio_dir: str) -> list[str]:
    refs = []
    for rel in ("manifest.tsv", os.path.join("tts", "manifest.tsv")):
        path = os.path.join(audio_dir, rel)
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                refs.append(row["reference"])
    return refs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--whisper-src", required=True, help="path to the unpacked `whisper` package")
    ap.add_argument("--audio", required=True, help="folder holding manifest.tsv and tts/")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    English, Basic = load_normalizers(args.whisper_src)
    english = English()
    basic = Basic()
    basic_diacritics = Basic(remove_diacritics=True)

    inputs = list(CASES)
    refs = manifest_refs(args.audio)
    inputs += refs
    # upper-cased and punctuation-free variants of the transcripts
    inputs += [r.upper() for r in refs]
    # random combinations (seeded) to exercise rule interactions
    inputs += fuzz_cases(400)

    try:
        from transformers.models.whisper.english_normalizer import (  # type: ignore
            EnglishTextNormalizer as HfEnglish,
        )
        import json as _json

        spelling_path = os.path.join(args.whisper_src, "normalizers", "english.json")
        hf = HfEnglish(_json.load(open(spelling_path, encoding="utf-8")))
    except Exception as e:  # pragma: no cover - informational only
        print(f"transformers copy not available: {e}", file=sys.stderr)
        hf = None

    cases = []
    hf_disagree = []
    for s in inputs:
        out = english(s)
        cases.append(
            {
                "input": s,
                "english": out,
                "basic": basic(s),
                "basic_remove_diacritics": basic_diacritics(s),
            }
        )
        if hf is not None and hf(s) != out:
            hf_disagree.append(s)

    doc = {
        "generator": "reference/eval_normalizer_cases.py",
        "upstream": "openai-whisper 20250625 whisper/normalizers/{english,basic}.py",
        "python": sys.version.split()[0],
        "unicodedata_version": unicodedata.unidata_version,
        "transformers_copy_disagreements": hf_disagree if hf is not None else None,
        "cases": cases,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"wrote {len(cases)} cases to {args.out}; transformers copy disagrees on {len(hf_disagree)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
