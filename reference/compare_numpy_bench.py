#!/usr/bin/env python3
"""numpy baseline for `voxtrace compare`: the same per-tensor metrics, computed with numpy.

Usage:
    # make a pair of synthetic ~200 MB safetensors dumps (not committed)
    .venv/bin/python reference/compare_numpy_bench.py --generate /tmp/vt_bench
    # time the numpy metrics over them
    .venv/bin/python reference/compare_numpy_bench.py /tmp/vt_bench/ref.safetensors \
        /tmp/vt_bench/act.safetensors [--atol 1e-5 --rtol 1e-4] [--json metrics.json]

Metrics (identical definitions to src/compare/metrics.rs, computed in float64 over positions
where both values are finite): max_abs_err, mean_abs_err, max_rel_err (reference != 0),
rel_l2, nmse, cosine, out_of_tol (allclose rule |a-r| > atol + rtol*|r|, plus non-finite
mismatches, with NaN != NaN and inf == inf), min_atol, NaN/Inf counts.

Timing covers reading both files (safetensors.safe_open, one tensor at a time) and computing
the metrics; MB/s is (bytes of tensor data in both files) / seconds / 1e6.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def metrics(r, a, atol, rtol):
    r = r.astype(np.float64, copy=False).ravel()
    a = a.astype(np.float64, copy=False).ravel()
    rf, af = np.isfinite(r), np.isfinite(a)
    fin = rf & af
    all_finite = bool(fin.all())
    if not all_finite:
        rr, aa = r[fin], a[fin]
    else:
        rr, aa = r, a
    d = aa - rr
    ad = np.abs(d)
    ar = np.abs(rr)
    n_f = rr.size
    max_abs = float(ad.max()) if n_f else 0.0
    mean_abs = float(ad.mean()) if n_f else 0.0
    nz = ar > 0
    max_rel = float((ad[nz] / ar[nz]).max()) if nz.any() else 0.0
    sd2 = float(np.dot(d, d))
    sr2 = float(np.dot(rr, rr))
    sa2 = float(np.dot(aa, aa))
    sar = float(np.dot(aa, rr))

    def ratio(num, den):
        return num / den if den > 0 else (0.0 if num == 0 else float("inf"))

    if sa2 == 0 and sr2 == 0:
        cos = 1.0
    elif sa2 == 0 or sr2 == 0:
        cos = 0.0
    else:
        cos = max(-1.0, min(1.0, sar / np.sqrt(sa2 * sr2)))
    need = ad - rtol * ar
    fail = int(np.count_nonzero(ad > atol + rtol * ar))
    min_atol = max(0.0, float(need.max())) if n_f else 0.0
    if not all_finite:
        nf = ~fin
        rn, an = r[nf], a[nf]
        matched = np.isinf(rn) & (rn == an)
        mism = int(np.count_nonzero(~matched))
        fail += mism
        if mism:
            min_atol = float("inf")
    else:
        mism = 0
    return {
        "numel": int(r.size),
        "max_abs_err": max_abs,
        "mean_abs_err": mean_abs,
        "max_rel_err": max_rel,
        "rel_l2": ratio(np.sqrt(sd2), np.sqrt(sr2)),
        "nmse": ratio(sd2, sr2),
        "cosine": float(cos),
        "out_of_tol": fail,
        "min_atol": min_atol,
        "ref_nan": int(np.isnan(r).sum()),
        "ref_inf": int(np.isinf(r).sum()),
        "act_nan": int(np.isnan(a).sum()),
        "act_inf": int(np.isinf(a).sum()),
        "nonfinite_mismatch": mism,
    }


def compare(ref_path, act_path, atol, rtol):
    out = {}
    nbytes = 0
    with safe_open(ref_path, framework="np") as fr, safe_open(act_path, framework="np") as fa:
        act_keys = set(fa.keys())
        for k in fr.keys():
            r = fr.get_tensor(k)
            nbytes += r.nbytes
            if k not in act_keys:
                continue
            a = fa.get_tensor(k)
            nbytes += a.nbytes
            if a.shape != r.shape:
                continue
            out[k] = metrics(r, a, atol, rtol)
    return out, nbytes


def generate(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    ref, act, order = {}, {}, []
    # 40 x [256, 4096] f32 (4 MiB each) + one [10_000_000] f32 (40 MB) ~= 208 MB per file.
    for i in range(40):
        name = f"model.layers.{i}.out"
        r = rng.standard_normal((256, 4096), dtype=np.float32)
        ref[name] = r
        act[name] = r + (rng.standard_normal(r.shape, dtype=np.float32) * 1e-6 * (i + 1)).astype(np.float32)
        order.append(name)
    r = rng.standard_normal(10_000_000, dtype=np.float32)
    ref["logits"] = r
    act["logits"] = r + np.float32(1e-7)
    order.append("logits")
    meta = {"voxtrace.format": "trace-v1", "voxtrace.order": json.dumps(order)}
    save_file(ref, os.path.join(d, "ref.safetensors"), metadata={**meta, "voxtrace.source": "bench ref"})
    save_file(act, os.path.join(d, "act.safetensors"), metadata={**meta, "voxtrace.source": "bench act"})
    for f in ("ref.safetensors", "act.safetensors"):
        p = os.path.join(d, f)
        print(f"wrote {p} ({os.path.getsize(p) / 1e6:.1f} MB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", nargs="?")
    ap.add_argument("actual", nargs="?")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--json", help="write per-tensor metrics here")
    ap.add_argument("--generate", metavar="DIR", help="write ref/act ~200 MB synthetic dumps to DIR and exit")
    args = ap.parse_args()
    if args.generate:
        generate(args.generate)
        return 0
    if not (args.reference and args.actual):
        ap.error("REFERENCE and ACTUAL are required")
    t0 = time.perf_counter()
    out, nbytes = compare(args.reference, args.actual, args.atol, args.rtol)
    dt = time.perf_counter() - t0
    failed = sum(1 for m in out.values() if m["out_of_tol"] > 0)
    print(f"numpy {np.__version__}: {len(out)} tensors compared, {failed} failed")
    print(f"seconds: {dt:.3f}")
    print(f"MB/s: {nbytes / dt / 1e6:.1f} ({nbytes / 1e6:.1f} MB of tensor data)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
