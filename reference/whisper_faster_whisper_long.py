#!/usr/bin/env python
"""faster-whisper long-form transcription of the files of an eval manifest (e.g. the
recordings of reference/long_recording.py), for comparison with `voxtrace transcribe`.

Needs a Python with `faster-whisper` (PyPI 1.2.1, no torch; `just setup-bench` installs it in
.venv-ref). Settings as voxtrace's long-form defaults: compute_type float32, CPU, 2 threads,
beam_size 1, temperature 0.0 only (no fallback), language en, with timestamps,
condition_on_previous_text as --condition (default on, upstream's default), no VAD; the
no-speech and log-prob thresholds at upstream's defaults (0.6, -1.0). The Whisper tiny.en
CTranslate2 folder is models-cache/whisper-tiny.en (a vocabulary.json is built beside a
symlinked copy, as reference/whisper_faster_whisper.py does).

Writes a `transcripts:` file for `voxtrace eval` ({"source", "clips": [{"id", "text",
"segments", "wall_s"}]}) and prints per file: id, audio seconds, wall seconds (model loaded
once, outside the timing), segments.

    .venv-ref/bin/python reference/whisper_faster_whisper_long.py \
        --manifest corpus-cache/long/5min/manifest.tsv --out corpus-cache/long/5min/faster_whisper.json
"""
import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import ctranslate2
import faster_whisper
from faster_whisper import WhisperModel

REPO = Path(__file__).resolve().parent.parent


def load_model(cache):
    tmpdir = tempfile.TemporaryDirectory()
    mdir = Path(tmpdir.name)
    for f in ("model.bin", "config.json", "tokenizer.json"):
        os.symlink((cache / f).resolve(), mdir / f)
    tj = json.loads((cache / "tokenizer.json").read_text())
    id_to_tok = {i: t for t, i in tj["model"]["vocab"].items()}
    id_to_tok.update({a["id"]: a["content"] for a in tj["added_tokens"]})
    n = len(id_to_tok)
    assert sorted(id_to_tok) == list(range(n)), "tokenizer ids are not contiguous"
    tokens = [id_to_tok[i] for i in range(n)] + ["<|%.2f|>" % (i * 0.02) for i in range(51864 - n)]
    (mdir / "vocabulary.json").write_text(json.dumps(tokens, ensure_ascii=False))
    model = WhisperModel(str(mdir), device="cpu", compute_type="float32", cpu_threads=2, num_workers=1)
    return model, tmpdir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=REPO / "models-cache" / "whisper-tiny.en")
    ap.add_argument("--condition", choices=["on", "off"], default="on")
    args = ap.parse_args()
    model, _keep = load_model(args.cache)
    with open(args.manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    clips = []
    for r in rows:
        path = args.manifest.parent / r["file"]
        t0 = time.perf_counter()
        segments, info = model.transcribe(
            str(path),
            language="en",
            task="transcribe",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            without_timestamps=False,
            condition_on_previous_text=args.condition == "on",
            vad_filter=False,
            word_timestamps=False,
        )
        segments = list(segments)
        wall = time.perf_counter() - t0
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        clips.append(
            {
                "id": r["id"],
                "text": text,
                "wall_s": wall,
                "audio_s": info.duration,
                "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in segments],
            }
        )
        print(f"{r['id']}\t{info.duration:.1f} s audio\t{wall:.2f} s wall\t{len(segments)} segments")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "source": f"faster-whisper {faster_whisper.__version__} (ctranslate2 {ctranslate2.__version__}) "
                "transcribe: float32 CPU 2 threads, beam_size 1, temperature 0.0, language en, timestamps, "
                f"condition_on_previous_text {args.condition == 'on'}, no VAD",
                "clips": clips,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
