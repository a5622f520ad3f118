#!/usr/bin/env python
"""Tracing overhead (`just bench-trace`), from one run on this machine.

    python3 reference/bench_trace.py --voxtrace target/debug/voxtrace \
        --no-record target/debug/voxtrace-no-record --out reports/bench/trace.json

1. Capture-all overhead: `voxtrace bench trace` (a random Voxtral, d_model 512, 2+2 layers,
   4 s of features / 50 tokens) times the same forward pass with capture off, with every
   capture point recorded in memory, and streamed to a trace-v1 file; modes interleaved,
   medians; ratios against capture off.
2. Capture off vs a build without capture: the same binary built with and without the
   `record` cargo feature, run alternately `--rounds` times in `--modes off`; the figure is the
   ratio of the medians, the noise is the spread of the per-round medians of each binary.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(cmd, env):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voxtrace", default=str(REPO / "target" / "debug" / "voxtrace"))
    ap.add_argument("--no-record", default=str(REPO / "target" / "debug" / "voxtrace-no-record"))
    ap.add_argument("--profile", default="dev")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "trace.json"))
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))

    cap = run([args.voxtrace, "bench", "trace", "--modes", "off,memory,file", "--reps", str(args.reps)], env)
    r = cap["results"]
    off = r["off"]["median_s"]
    overhead = {m: r[m]["median_s"] / off for m in ("memory", "file")}
    print(
        f"capture off {off*1e3:.1f} ms; all in memory {r['memory']['median_s']*1e3:.1f} ms ({overhead['memory']:.2f}x), "
        f"all to file {r['file']['median_s']*1e3:.1f} ms ({overhead['file']:.2f}x); {r['memory']['tensors']} tensors",
        file=sys.stderr,
    )

    with_rec, without = [], []
    for _ in range(max(1, args.rounds)):
        with_rec.append(run([args.voxtrace, "bench", "trace", "--modes", "off", "--reps", str(args.reps)], env)["results"]["off"]["median_s"])
        without.append(run([args.no_record, "bench", "trace", "--modes", "off", "--reps", str(args.reps)], env)["results"]["off"]["median_s"])
    m_with, m_without = statistics.median(with_rec), statistics.median(without)
    noise = max((max(v) - min(v)) / statistics.median(v) for v in (with_rec, without))
    ratio = m_with / m_without
    print(
        f"capture off, record build {m_with*1e3:.1f} ms vs no-record build {m_without*1e3:.1f} ms: {ratio:.3f}x "
        f"(per-round spread {noise*100:.1f}%)",
        file=sys.stderr,
    )
    out = {
        "profile": args.profile,
        "threads": args.threads,
        "capture": cap,
        "overhead_vs_off": overhead,
        "off_record_vs_no_record": {
            "record_build_round_medians_s": with_rec,
            "no_record_build_round_medians_s": without,
            "ratio": ratio,
            "noise_spread": noise,
            "within_noise": abs(ratio - 1) <= noise,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nTracing overhead ({cap['model']}; profile {args.profile}, {args.threads} threads)")
    print(f"{'mode':<36}{'ms':>9}{'ratio':>9}")
    print(f"{'capture off':<36}{off*1e3:>9.1f}{1.0:>9.2f}")
    print(f"{'every capture point, in memory':<36}{r['memory']['median_s']*1e3:>9.1f}{overhead['memory']:>9.2f}")
    print(f"{'every capture point, to file':<36}{r['file']['median_s']*1e3:>9.1f}{overhead['file']:>9.2f}")
    print(f"{'off, build without record feature':<36}{m_without*1e3:>9.1f}{m_with/m_without:>9.3f}  (off/no-record; spread {noise*100:.1f}%)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
