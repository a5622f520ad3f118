#!/usr/bin/env python3
"""Run `voxtrace eval` over a Ray cluster: one Ray task per shard (`voxtrace eval --shard K/N`),
then `voxtrace eval-merge` on the driver, and optionally check that the merged run equals a
single run over the whole corpus.

Each task asks Ray for one CPU and `--task-memory-mb` of memory (`@ray.remote(num_cpus=1,
memory=...)`), and runs the voxtrace binary in the checkout folder (the workers share its file
system, as the nodes of a cluster share a network file system). A shard that fails is retried
(Ray's `max_retries` covers a lost worker; a non-zero exit of voxtrace is not retried: it is
reported with its stderr). `just eval-ray` starts a local cluster (a head with no CPUs and two
one-CPU workers), runs this, and stops it.

Usage:
    python reference/ray_eval.py --address 127.0.0.1:6379 --voxtrace target/debug/voxtrace \
        --shards 4 --out reports/ray --run-id ray-merged [--compare-with reports/ray/single] \
        -- --manifest audio_samples/manifest.tsv --audio-root DIR --system NAME=SPEC ...

Everything after `--` goes to `voxtrace eval` unchanged (no `--run-id`, `--out`, `--shard`).
Exit 0 when every shard ran and the merge succeeded (and, with --compare-with, the merged
totals equal the single run's), 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import ray


def run_shard(voxtrace, cwd, k, n, out, run_id, eval_args):
    """Run shard k/n; return (k, exit code, run folder, stderr tail, node)."""
    cmd = [voxtrace, "eval", "--shard", f"{k}/{n}", "--out", out,
           "--run-id", run_id, "--quiet", *eval_args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return {
        "shard": k,
        "code": p.returncode,
        "run_dir": os.path.join(out, run_id),
        "stderr": p.stderr[-4000:],
        "node": ray.get_runtime_context().get_node_id(),
    }


def deterministic_latency(o):
    """Streaming figures (`latency`, `stream`) reduced to what two runs share: step audio
    positions and texts, emitted words and their steps, counts, delay and basis (as
    tests/eval_shards.rs `deterministic_latency`)."""
    t = o.get("stream")
    if t is not None:
        o["stream"] = {
            "step_s": t["step_s"], "delay_ms": t["delay_ms"], "audio_s": t["audio_s"],
            "steps": [[s["audio_s"], s.get("text")] for s in t["steps"]],
        }
    lat = o.get("latency")
    if lat is not None:
        n = lambda s: None if s is None else s.get("n")
        if "words" in lat:
            o["latency"] = {
                "words": [[w["word"], w["step"], w["audio_s"]] for w in lat["words"]],
                "first_token": lat["first_token_ms"] is not None,
                "steps": n(lat["step_ms"]), "basis": lat["word_delay_basis"],
            }
        else:
            o["latency"] = {
                "n_clips": lat["n_clips"], "delay_ms": lat["delay_ms"],
                "basis": lat["word_delay_basis"],
                "n": [n(lat[k]) for k in ("first_token_ms", "finalization_ms", "step_ms", "word_delay_ms")],
            }


def comparable(path):
    """results.json without what differs between two runs of one corpus: run id, time,
    command line, wall-clock seconds, measured streaming times and the merge's shard list."""
    with open(path) as f:
        r = json.load(f)
    for k in ("run_id", "time", "merged_from"):
        r.pop(k, None)
    r["provenance"].pop("command", None)
    for s in r["systems"]:
        for k in ("processing_s", "rtf", "rtfx"):
            s["totals"].pop(k, None)
        deterministic_latency(s["totals"])
        for u in s["utterances"]:
            for k in ("seconds", "rtf", "rtfx"):
                u.pop(k, None)
            deterministic_latency(u)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", default="auto", help="Ray cluster address (ray.init)")
    ap.add_argument("--voxtrace", required=True, help="voxtrace binary (path from the checkout)")
    ap.add_argument("--shards", type=int, default=4, help="N")
    ap.add_argument("--out", default="reports/ray", help="reports folder for shards and merge")
    ap.add_argument("--run-id", required=True, help="merged run id; shards are RUN_ID-shard-K-of-N")
    ap.add_argument("--task-memory-mb", type=int, default=1024, help="Ray memory per task, MB")
    ap.add_argument("--compare-with", help="a single run's folder: merged results must equal it")
    ap.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then voxtrace eval arguments")
    a = ap.parse_args()
    eval_args = a.eval_args[1:] if a.eval_args[:1] == ["--"] else a.eval_args
    for bad in ("--run-id", "--out", "--shard"):
        if bad in eval_args:
            sys.exit(f"ray_eval.py: {bad} is set by this script; remove it from the eval arguments")
    if a.shards < 1:
        sys.exit("ray_eval.py: --shards must be >= 1")
    cwd = os.getcwd()
    voxtrace = os.path.abspath(a.voxtrace)

    ray.init(address=a.address, log_to_driver=False)
    task = ray.remote(num_cpus=1, memory=a.task_memory_mb * 1024 * 1024, max_retries=2)(run_shard)
    n = a.shards
    t0 = time.time()
    refs = [task.remote(voxtrace, cwd, k, n, a.out, f"{a.run_id}-shard-{k}-of-{n}", eval_args)
            for k in range(1, n + 1)]
    done = ray.get(refs)
    wall = time.time() - t0
    nodes = sorted({d["node"] for d in done})
    failed = False
    for d in done:
        # 0: fine; 1: it ran but scored nothing for a system (the merge says so again).
        ok = d["code"] in (0, 1)
        print(f"shard {d['shard']}/{n}: exit {d['code']} on node {d['node'][:12]} -> {d['run_dir']}")
        if not ok:
            failed = True
            print(d["stderr"], file=sys.stderr)
    print(f"{n} shards on {len(nodes)} Ray node(s) in {wall:.1f} s")
    ray.shutdown()
    if failed:
        return 1
    merge = [voxtrace, "eval-merge", *[d["run_dir"] for d in done],
             "--out", a.out, "--run-id", a.run_id]
    p = subprocess.run(merge, cwd=cwd)
    if p.returncode not in (0, 1):
        print(f"eval-merge failed (exit {p.returncode})", file=sys.stderr)
        return 1
    if a.compare_with:
        merged = comparable(os.path.join(a.out, a.run_id, "results.json"))
        single = comparable(os.path.join(a.compare_with, "results.json"))
        if merged != single:
            for s, m in zip(single["systems"], merged["systems"]):
                if s != m:
                    print(f"system {s['name']}: merged totals {m['totals']} != single {s['totals']}",
                          file=sys.stderr)
            print("merged run differs from the single run", file=sys.stderr)
            return 1
        for s in merged["systems"]:
            t = s["totals"]
            print(f"  {s['name']}: WER {100 * t['wer']:.2f}%  S/D/I "
                  f"{t['counts']['substitutions']}/{t['counts']['deletions']}/"
                  f"{t['counts']['insertions']}  scored {t['n_scored']}/{t['n_clips']}")
        print(f"merged run {a.run_id} equals the single run {a.compare_with} "
              "(results.json minus run id, times, command, wall-clock figures)")
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
