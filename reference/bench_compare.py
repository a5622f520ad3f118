#!/usr/bin/env python3
"""Comparator throughput (`just bench-compare`): `voxtrace compare` vs numpy computing the same
per-tensor metrics (reference/compare_numpy_bench.py) over the same pair of ~200 MB synthetic
dumps, each as a subprocess, alternating `--rounds` times; wall time and peak RSS (os.wait4)
per run, medians reported.

    .venv/bin/python reference/bench_compare.py --voxtrace target/debug/voxtrace \
        --out reports/bench/compare.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(cmd, ok_codes=(0,)):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        raise SystemExit(f"{' '.join(cmd)}: exit {code}")
    return time.perf_counter() - t0, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voxtrace", default=str(REPO / "target" / "debug" / "voxtrace"))
    ap.add_argument("--profile", default="dev")
    ap.add_argument("--data", default="/tmp/voxtrace-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "compare.json"))
    args = ap.parse_args()
    numpy_script = str(REPO / "reference" / "compare_numpy_bench.py")
    ref, act = f"{args.data}/ref.safetensors", f"{args.data}/act.safetensors"
    if not (Path(ref).is_file() and Path(act).is_file()):
        subprocess.run([sys.executable, numpy_script, "--generate", args.data], check=True)
    nbytes = Path(ref).stat().st_size + Path(act).stat().st_size
    cmds = {
        # exit 1 = some tensors out of tolerance, which the synthetic pair is made to have.
        "voxtrace": ([args.voxtrace, "compare", ref, act, "--json", f"{args.data}/voxtrace-metrics.json"], (0, 1)),
        "numpy": ([sys.executable, numpy_script, ref, act], (0, 1)),
    }
    res = {k: {"wall_s": [], "peak_rss_mib": []} for k in cmds}
    for _ in range(max(1, args.rounds)):
        for k, (cmd, ok) in cmds.items():
            w, r = run(cmd, ok)
            res[k]["wall_s"].append(w)
            res[k]["peak_rss_mib"].append(r)
    for k, v in res.items():
        v["median_wall_s"] = statistics.median(v["wall_s"])
        v["max_peak_rss_mib"] = max(v["peak_rss_mib"])
        v["mb_per_s"] = nbytes / v["median_wall_s"] / 1e6
        v["command"] = " ".join(cmds[k][0])
    out = {"profile": args.profile, "file_bytes": nbytes, "systems": res,
           "speedup_voxtrace_over_numpy": res["numpy"]["median_wall_s"] / res["voxtrace"]["median_wall_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nComparator over {nbytes / 1e6:.0f} MB (two dumps), median of {args.rounds} (voxtrace profile {args.profile})")
    print(f"{'system':<12}{'wall s':>9}{'MB/s':>9}{'peak RSS MiB':>14}")
    for k, v in res.items():
        print(f"{k:<12}{v['median_wall_s']:>9.2f}{v['mb_per_s']:>9.0f}{v['max_peak_rss_mib']:>14.0f}")
    print(f"voxtrace is {out['speedup_voxtrace_over_numpy']:.2f}x numpy's speed; wrote {args.out}")


if __name__ == "__main__":
    main()
