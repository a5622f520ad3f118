#!/usr/bin/env python3
"""Build a long recording by concatenating corpus clips, with its reference transcript.

Stdlib only (wave, csv), so any Python 3 runs it. Deterministic: the clips of MANIFEST in file
order, repeated in that order, each followed by GAP seconds of silence, until the recording
reaches MINUTES (the clip that crosses it is kept whole, so no word is cut). Every clip must be
16 kHz mono 16-bit PCM WAV (the corpus clips are). Writes, into OUT_DIR:

    <id>.wav            the recording
    manifest.tsv        one row, the eval manifest format: id, file, duration_s, reference
                        (the clips' references joined by one space), source, license
    <id>.parts.tsv      per clip: index, clip id, start_s, end_s (where each clip sits)
    <id>.clips.tsv      the same clips as an eval manifest, one row per occurrence (ids
                        NNN-<clip id>, files relative to the source manifest's folder: pass that
                        folder as --audio-root): their corpus WER is the per-clip WER of the
                        recording's words

    python3 reference/long_recording.py --minutes 5 --out-dir corpus-cache/long
    voxtrace eval --manifest corpus-cache/long/manifest.tsv --system whisper=whisper:models-cache/whisper-tiny.en

The audio folder is VOXTRACE_AUDIO_DIR or ../shared/audio next to the checkout, as elsewhere.
"""
import argparse
import csv
import os
import sys
import tempfile
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RATE = 16000


def read_manifest(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        sys.exit(f"{path}: no clips")
    for r in rows:
        for k in ("id", "file", "reference"):
            if not r.get(k):
                sys.exit(f"{path}: a row has no {k!r}: {r}")
    return rows


def read_pcm(path):
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getframerate(), w.getsampwidth()) != (1, RATE, 2):
                sys.exit(
                    f"{path}: {w.getnchannels()} channel(s), {w.getframerate()} Hz, "
                    f"{8 * w.getsampwidth()}-bit; need 16 kHz mono 16-bit PCM"
                )
            return w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as e:
        sys.exit(f"{path}: not a readable WAV file: {e}")


def atomic_write(path, write):
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    audio = Path(os.environ.get("VOXTRACE_AUDIO_DIR", REPO.parent / "shared" / "audio"))
    ap.add_argument("--manifest", type=Path, default=audio / "manifest.tsv")
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--gap-s", type=float, default=0.5, help="silence after each clip (default 0.5)")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--id", help="recording id (default long-<minutes>min)")
    args = ap.parse_args()
    if not args.minutes > 0 or args.minutes > 600:
        sys.exit(f"--minutes {args.minutes}: need 0 < minutes <= 600")
    if not 0 <= args.gap_s <= 10:
        sys.exit(f"--gap-s {args.gap_s}: need 0 <= gap <= 10")
    rid = args.id or f"long-{args.minutes:g}min"
    if not rid.replace("-", "").replace("_", "").replace(".", "").isalnum():
        sys.exit(f"--id {rid!r}: letters, digits, '-', '_' and '.' only")
    rows = read_manifest(args.manifest)
    root = args.manifest.parent
    clips = [(r["id"], read_pcm(root / r["file"]), r["reference"].strip()) for r in rows]
    gap = b"\0\0" * round(args.gap_s * RATE)
    target = round(args.minutes * 60 * RATE)
    pcm, refs, parts, n = bytearray(), [], [], 0
    while n < target:
        for cid, data, ref in clips:
            start = n
            pcm += data
            n += len(data) // 2
            parts.append((len(parts), cid, start / RATE, n / RATE))
            pcm += gap
            n += len(gap) // 2
            refs.append(ref)
            if n >= target:
                break
    args.out_dir.mkdir(parents=True, exist_ok=True)
    wav_path = args.out_dir / f"{rid}.wav"

    def write_wav(tmp):
        with wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(bytes(pcm))

    atomic_write(wav_path, write_wav)
    reference = " ".join(refs)
    src = f"{len(parts)} clips of {args.manifest.name} concatenated by reference/long_recording.py, {args.gap_s:g} s gaps"

    def write_manifest(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("id\tfile\tduration_s\treference\tsource\tlicense\n")
            fh.write(f"{rid}\t{wav_path.name}\t{n / RATE:.3f}\t{reference}\t{src}\tsee the clips' licenses in the source manifest\n")

    atomic_write(args.out_dir / "manifest.tsv", write_manifest)

    def write_parts(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("index\tid\tstart_s\tend_s\n")
            for i, cid, a, b in parts:
                fh.write(f"{i}\t{cid}\t{a:.4f}\t{b:.4f}\n")

    atomic_write(args.out_dir / f"{rid}.parts.tsv", write_parts)
    by_id = {r["id"]: r for r in rows}

    def write_clips(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("id\tfile\tduration_s\treference\tsource\tlicense\n")
            for i, cid, a, b in parts:
                r = by_id[cid]
                fh.write(f"{i:03d}-{cid}\t{r['file']}\t{b - a:.3f}\t{r['reference'].strip()}\t{r.get('source', '')}\t{r.get('license', '')}\n")

    atomic_write(args.out_dir / f"{rid}.clips.tsv", write_clips)
    print(f"{wav_path}\t{n / RATE:.3f} s\t{len(parts)} clips\t{len(reference.split())} reference words")


if __name__ == "__main__":
    main()
