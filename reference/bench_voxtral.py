#!/usr/bin/env python
"""Voxtral Mini 4B Realtime at full size with random weights: voxtrace (Burn Flex, f32) vs the
upstream PyTorch modules (transformers 5.23 `voxtral_realtime`, eager, CPU, f32) with the
same weights, from one run on this machine (`just bench-voxtral`):

    .venv-ref/bin/python reference/bench_voxtral.py --voxtrace target/debug/voxtrace \
        --out reports/bench/voxtral.json

1. Memory read bandwidth (`voxtrace bench bandwidth`: sum over a 1 GiB f32 array), for the
   bandwidth floor of a decoder step (weight bytes read per token / bandwidth).
2. One encoder layer (`VoxtralRealtimeEncoderLayer`, d_model 1280) over 1 s of audio (the
   worker runs the real conv stem on 100 mel frames and reports the frame count it gives).
3. One decoder layer step (`VoxtralRealtimeTextDecoderLayer`, d_model 3072, GQA 32/8) for one
   token at positions 64 and 4096, with a KV cache of that many entries (a `DynamicCache`
   pre-filled with the same keys and values).

For 2 and 3, `voxtrace bench voxtral-*` builds the layer with random weights, times it, and
exports weights (transformers names, half-split RoPE layout), inputs and its output to
safetensors; this script loads them into the upstream module (`load_state_dict(strict=True)`),
checks the outputs agree (max |diff|) and times the upstream module the same way (`--reps`
runs after one warm-up, 2 threads). The two alternate for `--rounds` rounds and each median is
over all of its runs, so a burst of load from elsewhere falls on both.

4. Optionally (`--stream-steps N`, N > 0) the whole model (17 GB of f32 random weights) per
   80 ms streaming step (`voxtrace bench voxtral-stream`).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import numpy_bandwidth  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_worker(cmd, env):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {code}")
    res = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    res["wall_s"] = time.perf_counter() - t0
    res["peak_rss_mib"] = ru.ru_maxrss / 1024.0
    res["command"] = " ".join(cmd)
    return res


def median_time(fn, reps):
    fn()
    ts = []
    for _ in range(max(1, reps)):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], ts


def torch_encoder_layer(path):
    from transformers.models.voxtral_realtime.configuration_voxtral_realtime import VoxtralRealtimeEncoderConfig
    from transformers.models.voxtral_realtime.modeling_voxtral_realtime import (
        VoxtralRealtimeEncoderLayer,
        VoxtralRealtimeRotaryEmbedding,
    )

    t = load_file(path)
    x, want = t.pop("input"), t.pop("output")
    # Same shape as VoxtralConfig::mini_4b_realtime().encoder (rope_theta 1e6 as params.json).
    cfg = VoxtralRealtimeEncoderConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=1,
        num_attention_heads=32,
        num_key_value_heads=32,
        head_dim=64,
        rms_norm_eps=1e-5,
        sliding_window=750,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    cfg._attn_implementation = "eager"
    layer = VoxtralRealtimeEncoderLayer(cfg, 0).eval()
    layer.load_state_dict(t, strict=True)
    rope = VoxtralRealtimeRotaryEmbedding(cfg)
    s = x.shape[1]
    pos = torch.arange(s)[None]
    # Causal sliding-window mask (window 750 > s: plain causal), additive float as transformers builds it.
    i = torch.arange(s)[:, None]
    j = torch.arange(s)[None, :]
    mask = torch.zeros(s, s)
    mask[(j > i) | (j <= i - cfg.sliding_window)] = float("-inf")
    mask = mask[None, None]

    def fwd():
        with torch.no_grad():
            pe = rope(x, pos)
            return layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)

    got = fwd()
    return fwd, {"max_abs_diff": float((got - want).abs().max()), "max_abs_ref": float(want.abs().max())}


def torch_decoder_step(path, pos):
    from transformers.cache_utils import DynamicCache
    from transformers.models.voxtral_realtime.configuration_voxtral_realtime import VoxtralRealtimeTextConfig
    from transformers.models.voxtral_realtime.modeling_voxtral_realtime import (
        VoxtralRealtimeRotaryEmbedding,
        VoxtralRealtimeTextDecoderLayer,
    )

    t = load_file(path)
    x, want, t_cond = t.pop("input"), t.pop("output"), t.pop("t_cond")
    ck, cv = t.pop("cache_k"), t.pop("cache_v")
    cfg = VoxtralRealtimeTextConfig(
        hidden_size=3072,
        intermediate_size=9216,
        num_hidden_layers=1,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        rms_norm_eps=1e-5,
        sliding_window=8192,
        vocab_size=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    cfg._attn_implementation = "eager"
    layer = VoxtralRealtimeTextDecoderLayer(cfg, 0).eval()
    layer.load_state_dict(t, strict=True)
    rope = VoxtralRealtimeRotaryEmbedding(cfg)
    position_ids = torch.tensor([[pos]])

    def fwd():
        with torch.no_grad():
            cache = DynamicCache(config=cfg)
            cache.update(ck, cv, 0)
            pe = rope(x, position_ids)
            # One query at `pos` sees all pos + 1 keys (window 8192): no mask needed.
            return layer(x, attention_mask=None, position_ids=position_ids, past_key_values=cache,
                         use_cache=True, position_embeddings=pe, t_cond=t_cond)

    got = fwd()
    return fwd, {"max_abs_diff": float((got - want).abs().max()), "max_abs_ref": float(want.abs().max())}


def paired(worker_cmd, export_path, torch_setup, rounds, reps, env):
    """Alternate the two systems: `rounds` times, the voxtrace worker (`reps` timed runs after
    its warm-up) then the torch module (the same); medians over all the runs of each. A burst
    of load from elsewhere on the machine then falls on both rather than on one.
    Returns (voxtrace result of the first round with pooled times, torch result)."""
    vx, fwd, agree = None, None, None
    vx_all, th_all = [], []
    for r in range(max(1, rounds)):
        res = run_worker(worker_cmd + (["--export", export_path] if r == 0 else []), env)
        vx_all += res["all_s"]
        if r == 0:
            vx = res
            fwd, agree = torch_setup(export_path)
        _, ts = median_time(fwd, reps)
        th_all += ts
    vx["all_s"], vx["median_s"] = vx_all, sorted(vx_all)[len(vx_all) // 2]
    th = dict(agree, all_s=th_all, median_s=sorted(th_all)[len(th_all) // 2])
    return vx, th


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voxtrace", default=str(REPO / "target" / "debug" / "voxtrace"))
    ap.add_argument("--profile", default="dev", help="cargo profile of --voxtrace (recorded in the JSON)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10, help="timed runs per round and system")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of voxtrace and torch")
    ap.add_argument("--positions", default="64,4096")
    ap.add_argument("--stream-steps", type=int, default=0, help="whole-model streaming steps (0: skip; needs ~18 GB RAM)")
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "voxtral.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = dict(os.environ)
    th = str(args.threads)
    env.update(OMP_NUM_THREADS=th, RAYON_NUM_THREADS=th)
    vt = args.voxtrace
    tmp = tempfile.TemporaryDirectory()
    out = {"threads": args.threads, "voxtrace_profile": args.profile, "torch": torch.__version__,
           "rounds": args.rounds, "reps_per_round": args.reps}

    # Two measurements of read bandwidth; the floor uses the higher (the more optimistic limit).
    bw_burn = run_worker([vt, "bench", "bandwidth", "--mib", "1024", "--reps", "5"], env)
    bw_np = numpy_bandwidth(1024, 5, args.threads)
    out["bandwidth"] = {"burn_sum": bw_burn, "numpy_sum": bw_np}
    gbs = max(bw_burn["gb_per_s"], bw_np["gb_per_s"])
    out["bandwidth"]["used_gb_per_s"] = gbs
    print(f"memory read bandwidth: Burn sum {bw_burn['gb_per_s']:.1f} GB/s, numpy sum {bw_np['gb_per_s']:.1f} GB/s (1 GiB f32); using {gbs:.1f}", file=sys.stderr)

    enc_path = os.path.join(tmp.name, "enc.safetensors")
    enc, tenc = paired([vt, "bench", "voxtral-encoder-layer", "--seconds", "1", "--reps", str(args.reps)], enc_path,
                       torch_encoder_layer, args.rounds, args.reps, env)
    out["encoder_layer_1s"] = {"voxtrace": enc, "torch": tenc, "ratio_torch_over_voxtrace": tenc["median_s"] / enc["median_s"]}
    print(f"encoder layer 1 s ({enc['encoder_frames']} frames): voxtrace {enc['median_s']*1e3:.1f} ms, torch {tenc['median_s']*1e3:.1f} ms, max|diff| {tenc['max_abs_diff']:.2e}", file=sys.stderr)

    out["decoder_step"] = {}
    for pos in [int(p) for p in args.positions.split(",")]:
        path = os.path.join(tmp.name, f"dec{pos}.safetensors")
        dec, tdec = paired([vt, "bench", "voxtral-decoder-step", "--pos", str(pos), "--reps", str(args.reps)], path,
                           lambda p, pos=pos: torch_decoder_step(p, pos), args.rounds, args.reps, env)
        floor = (dec["weight_bytes"] + dec["kv_cache_bytes"]) / (gbs * 1e9)
        out["decoder_step"][str(pos)] = {"voxtrace": dec, "torch": tdec, "ratio_torch_over_voxtrace": tdec["median_s"] / dec["median_s"],
                                         "bandwidth_floor_s": floor}
        print(f"decoder step pos {pos}: voxtrace {dec['median_s']*1e3:.1f} ms, torch {tdec['median_s']*1e3:.1f} ms, floor {floor*1e3:.1f} ms, max|diff| {tdec['max_abs_diff']:.2e}", file=sys.stderr)
        os.remove(path)

    if args.stream_steps > 0:
        st = run_worker([vt, "bench", "voxtral-stream", "--steps", str(args.stream_steps)], env)
        st["bandwidth_floor_step_s"] = st["weight_bytes_per_step"] / (gbs * 1e9)
        st["bandwidth_floor_decoder_token_s"] = st["decoder_weight_bytes_per_token"] / (gbs * 1e9)
        out["stream"] = st
        print(f"streaming step: {st['step_median_s']:.2f} s, floor {st['bandwidth_floor_step_s']:.2f} s", file=sys.stderr)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nVoxtral Mini 4B Realtime, full size, random weights, {args.threads} threads (voxtrace profile {args.profile}); median of {args.rounds} alternating rounds x {args.reps} runs")
    print(f"{'job':<32}{'voxtrace ms':>12}{'torch ms':>10}{'torch/vx':>9}{'max|diff|':>11}{'floor ms':>10}")
    e = out["encoder_layer_1s"]
    print(f"{'encoder layer, 1 s (' + str(enc['encoder_frames']) + ' frames)':<32}{enc['median_s']*1e3:>12.1f}{tenc['median_s']*1e3:>10.1f}{e['ratio_torch_over_voxtrace']:>9.2f}{tenc['max_abs_diff']:>11.2e}{'':>10}")
    for pos, d in out["decoder_step"].items():
        print(f"{'decoder layer step, pos ' + pos:<32}{d['voxtrace']['median_s']*1e3:>12.1f}{d['torch']['median_s']*1e3:>10.1f}{d['ratio_torch_over_voxtrace']:>9.2f}{d['torch']['max_abs_diff']:>11.2e}{d['bandwidth_floor_s']*1e3:>10.1f}")
    if "stream" in out:
        st = out["stream"]
        print(f"{'whole model, 80 ms step':<32}{st['step_median_s']*1e3:>12.1f}{'':>10}{'':>9}{'':>11}{st['bandwidth_floor_step_s']*1e3:>10.1f}")
    print(f"bandwidth {gbs:.1f} GB/s; wrote {args.out}")


if __name__ == "__main__":
    main()
