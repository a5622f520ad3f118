"""Real time at the real size, end to end: one clip through the full-size Voxtral checkpoint per
storage type, whole process timed (`just bench-realtime DIR`).

For each type (bf16: the checkpoint folder as stored, memory-mapped; q8_0 / q4_0: GGUF files
written once by `voxtrace quantize` next to the checkpoint), two runs of
`voxtrace transcribe --json` on the clip, each a fresh process with RAYON_NUM_THREADS threads:

* cold: the model file's pages dropped from the page cache first (posix_fadvise DONTNEED on
  every file of the model; no root needed), so the load reads from disk;
* warm: straight after, the file in the page cache.

Per run: whole-process wall (s), peak RSS (MiB, from wait4), and what the process reports on
its JSON line: load_s, encoder_s (log-mel + encoder + adapter), prefill_s, decoder step p50 /
p95 (ms), RTF, decoder weight bytes per step. The decoder-step bound is those bytes divided by
the memory read bandwidth measured in the same command (the higher of `voxtrace bench
bandwidth`, a sum over 1 GiB of f32, and a numpy sum split over the same threads).

    just bench-realtime /tmp/voxtral-full               # after: just full-size-checkpoint /tmp/voxtral-full
    python reference/bench_realtime.py --voxtrace target/release/voxtrace --checkpoint DIR --audio CLIP --out reports/bench/realtime.json
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import numpy_bandwidth  # noqa: E402


def run(cmd, env):
    """Run `cmd`; returns (stdout, wall seconds, peak RSS MiB). Exits on a non-zero status."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {code}")
    return out, wall, ru.ru_maxrss / 1024.0


def drop_cache(paths):
    """Evict the files' clean pages from the page cache (the next read comes from disk)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


CHECKPOINT_FILES = ("consolidated.safetensors", "params.json", "tekken.json", "model.safetensors", "config.json")


def model_files(model):
    """The files a model load reads: a GGUF file, or a checkpoint folder's known files."""
    model = Path(model)
    return [model] if model.is_file() else [model / n for n in CHECKPOINT_FILES if (model / n).is_file()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voxtrace", required=True, help="the voxtrace binary (release build)")
    ap.add_argument("--checkpoint", required=True, help="full-size Mistral-layout folder (BF16)")
    ap.add_argument("--audio", required=True, help="the clip (e.g. jfk.wav, 11.0 s)")
    ap.add_argument("--types", default="bf16,bf16c,q8_0,q4_0",
                    help="bf16: BF16 as stored, f32 compute; bf16c: BF16 as stored, `--compute bf16` "
                         "(AMX tiles where present; any TYPE-noamx: the same with VOXTRACE_AMX=0) "
                         "(activations rounded to bf16); q8_0, q4_0: GGUF")
    ap.add_argument("--gguf-dir", help="where the q8_0 / q4_0 GGUF files live or are written (default: the checkpoint folder)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    vt = str(Path(args.voxtrace).resolve())
    ckpt = Path(args.checkpoint)
    gdir = Path(args.gguf_dir) if args.gguf_dir else ckpt
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = {"threads": args.threads, "audio": str(args.audio), "checkpoint": str(ckpt), "voxtrace": vt,
           "cpu": cpu_name(), "runs": {}}

    bw_out, _, _ = run([vt, "bench", "bandwidth", "--mib", "1024", "--reps", "5"], env)
    bw_burn = json.loads([ln for ln in bw_out.splitlines() if ln.startswith("{")][-1])
    bw_np = numpy_bandwidth(1024, 5, args.threads)
    gbs = max(bw_burn["gb_per_s"], bw_np["gb_per_s"])
    out["bandwidth"] = {"burn_sum": bw_burn, "numpy_sum": bw_np, "used_gb_per_s": gbs}
    print(f"memory read bandwidth: Burn sum {bw_burn['gb_per_s']:.1f} GB/s, numpy sum {bw_np['gb_per_s']:.1f} GB/s; using {gbs:.1f}",
          file=sys.stderr)

    for ty in [t for t in args.types.split(",") if t]:
        # TYPE-noamx: the same run with the AMX tiles off (VOXTRACE_AMX=0: AVX-512 BF16 / VNNI
        # only), so the command shows what the tiles give.
        base = ty[: -len("-noamx")] if ty.endswith("-noamx") else ty
        run_env = dict(env, VOXTRACE_AMX="0") if base != ty else env
        extra = ["--compute", "bf16"] if base == "bf16c" else []
        if base in ("bf16", "bf16c"):
            model = ckpt
        else:
            model = gdir / f"voxtral-{base}.gguf"
            if not model.exists():
                t0 = time.perf_counter()
                run([vt, "quantize", "--model", str(ckpt), "--type", base, "--out", str(model)], env)
                out.setdefault("quantize_s", {})[base] = time.perf_counter() - t0
        res = {"model": str(model), "model_bytes": sum(p.stat().st_size for p in model_files(model))}
        for phase in (["warm"] if args.no_cold else ["cold", "warm"]):
            if phase == "cold":
                drop_cache(model_files(model))
            text, wall, rss = run([vt, "transcribe", "--model", str(model), "--json", *extra, str(args.audio)], run_env)
            line = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
            for k in ("ids", "tokens", "text"):
                line.pop(k, None)
            line["process_wall_s"] = wall
            line["peak_rss_mib"] = rss
            line["step_bound_ms"] = line["decoder_step_weight_bytes"] / (gbs * 1e9) * 1e3
            line["step_p50_over_bound"] = line["step_ms_p50"] / line["step_bound_ms"]
            res[phase] = line
            print(f"{ty} {phase}: wall {wall:.1f} s, load {line['load_s']:.2f} s, encoder {line['encoder_s']:.1f} s, "
                  f"prefill {line['prefill_s']:.2f} s, step p50 {line['step_ms_p50']:.0f} ms p95 {line['step_ms_p95']:.0f} ms "
                  f"(bound {line['step_bound_ms']:.0f} ms, {line['step_p50_over_bound']:.2f}x), RTF {line['rtf']:.2f}, "
                  f"peak RSS {rss / 1024:.2f} GiB", file=sys.stderr)
        out["runs"][ty] = res

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print_table(out)


def cpu_name():
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def print_table(out):
    print(f"| type | phase | process wall s | load s | encoder s | prefill s | step p50 / p95 ms | step bound ms | p50 / bound | RTF | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for ty, res in out["runs"].items():
        for phase in ("cold", "warm"):
            r = res.get(phase)
            if not r:
                continue
            print(f"| {ty} | {phase} | {r['process_wall_s']:.1f} | {r['load_s']:.2f} | {r['encoder_s']:.1f} | {r['prefill_s']:.2f} | "
                  f"{r['step_ms_p50']:.0f} / {r['step_ms_p95']:.0f} | {r['step_bound_ms']:.0f} | {r['step_p50_over_bound']:.2f} | "
                  f"{r['rtf']:.2f} | {r['peak_rss_mib'] / 1024:.2f} |")


if __name__ == "__main__":
    main()
