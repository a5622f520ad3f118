#!/usr/bin/env python3
"""voxtrace's packed Q4_0 / Q8_0 matmul kernels against candle-core's (`just bench-candle`).

For each kind (q4_0, q8_0) and shape `(m, n_out, n_in)` (default: the decoder-step products of
full-size Voxtral, m=1 at 9216x3072 and 3072x3072, and a batched m=256 at 3072x3072):
`voxtrace bench qmatmul --dump DIR` times voxtrace's kernels on random packed blocks and writes
the weight bytes, x and its output y; `peers/candle-qmatmul` multiplies the same bytes with
candle's `QMatMul` and checks its output against y (bound in its module doc; a failed check
fails this script). The two alternate for `--rounds` rounds so that load from elsewhere falls on
both; each side's figure is the median of its pooled timed runs (after one warm-up per process).
Both run with RAYON_NUM_THREADS=`--threads`. Prints a table with the ratio voxtrace / candle
(median time, and of the fastest runs; below 1: voxtrace faster) and writes JSON.

    .venv/bin/python reference/bench_candle.py --voxtrace target/release/voxtrace \
        --candle target/candle-qmatmul/release/candle-qmatmul --out reports/bench/candle.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = [(1, 9216, 3072), (1, 3072, 3072), (256, 3072, 3072)]


def run_json(cmd: list[str], env: dict) -> dict:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stderr}{p.stdout}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voxtrace", required=True, type=Path)
    ap.add_argument("--candle", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20, help="timed runs per process for m=1 (m>1: a quarter, at least 3)")
    ap.add_argument("--kinds", default="q4_0,q8_0")
    a = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in a.kinds.split(","):
            for m, n_out, n_in in SHAPES:
                reps = a.reps if m == 1 else max(3, a.reps // 4)
                dump = Path(tmp) / f"{kind}-{m}-{n_out}-{n_in}"
                shape = ["--m", str(m), "--n-out", str(n_out), "--n-in", str(n_in)]
                vox_all, can_all, vox_runs, can_runs = [], [], [], []
                for _ in range(a.rounds):
                    v = run_json(
                        [str(a.voxtrace), "bench", "qmatmul", "--kind", kind, *shape, "--reps", str(reps), "--dump", str(dump)],
                        env,
                    )
                    k = v["kernels"][v["detected_kernel"]]
                    vox_all += k["all_s"]
                    vox_runs.append(v)
                    c = run_json([str(a.candle), "--kind", kind, *shape, "--reps", str(reps), "--dump", str(dump)], env)
                    can_all += c["all_s"]
                    can_runs.append(c)
                vm, cm = statistics.median(vox_all), statistics.median(can_all)
                wb = vox_runs[0]["weight_bytes"]
                worst = max(c["check"]["max_err_over_bound"] for c in can_runs)
                rows.append(
                    {
                        "kind": kind,
                        "m": m,
                        "n_out": n_out,
                        "n_in": n_in,
                        "weight_bytes": wb,
                        "voxtrace_kernel": vox_runs[0]["detected_kernel"],
                        "voxtrace_median_s": vm,
                        "candle_median_s": cm,
                        "ratio_voxtrace_over_candle": vm / cm,
                        "voxtrace_min_s": min(vox_all),
                        "candle_min_s": min(can_all),
                        "ratio_min_voxtrace_over_candle": min(vox_all) / min(can_all),
                        "voxtrace_weight_gb_per_s": wb / vm / 1e9,
                        "candle_weight_gb_per_s": wb / cm / 1e9,
                        "voxtrace_all_s": vox_all,
                        "candle_all_s": can_all,
                        "candle_first_call_s": [c["first_call_s"] for c in can_runs],
                        "check_max_abs_diff": max(c["check"]["max_abs_diff"] for c in can_runs),
                        "check_max_err_over_bound": worst,
                        "check_bound": can_runs[0]["check"]["bound"],
                        "check_pass": all(c["check"]["pass"] for c in can_runs),
                    }
                )
                print(
                    f"{kind} m={m:<3} {n_out}x{n_in}: voxtrace {vm * 1e3:8.3f} ms ({rows[-1]['voxtrace_kernel']}), "
                    f"candle {cm * 1e3:8.3f} ms, ratio {vm / cm:.2f}; check max err/bound {worst:.3f}",
                    file=sys.stderr,
                )
    result = {
        "bench": "candle",
        "what": "median time of one packed-weight product y = x W^T, same weight bytes and x; ratio = voxtrace / candle (below 1: voxtrace faster)",
        "voxtrace": str(a.voxtrace),
        "candle": "candle-core 0.11 quantized::QMatMul (peers/candle-qmatmul, release)",
        "threads": a.threads,
        "rounds": a.rounds,
        "cpu": cpu_model(),
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = a.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(a.out)
    print(f"{'kind':5} {'m':>4} {'n_out x n_in':>12} {'voxtrace ms':>12} {'candle ms':>10} {'vox/candle':>10} {'(min)':>6} {'vox GB/s':>9} {'candle GB/s':>11} {'check':>6}")
    for r in rows:
        print(
            f"{r['kind']:5} {r['m']:>4} {str(r['n_out']) + 'x' + str(r['n_in']):>12} {r['voxtrace_median_s'] * 1e3:>12.3f} "
            f"{r['candle_median_s'] * 1e3:>10.3f} {r['ratio_voxtrace_over_candle']:>10.2f} {r['ratio_min_voxtrace_over_candle']:>6.2f} {r['voxtrace_weight_gb_per_s']:>9.1f} "
            f"{r['candle_weight_gb_per_s']:>11.1f} {'pass' if r['check_pass'] else 'FAIL':>6}"
        )
    print(f"wrote {a.out}")
    if not all(r["check_pass"] for r in rows):
        sys.exit("candle's output is outside the bound of voxtrace's for some shape")


if __name__ == "__main__":
    main()
