#!/usr/bin/env python3
"""Write the quantization-drift fixture under fixtures/compare/drift/ for tests/compare_drift.rs.

Two dumps written by safetensors.numpy (`ref.safetensors`, `act.safetensors`, F32) and the drift
metrics of every tensor computed here in float64 with numpy, independently of the Rust code:

  sqnr_db         10*log10(sum(r^2) / sum((a-r)^2))  (torch.ao.ns compute_sqnr: 20*log10(|r|/|a-r|))
                  +inf when sum((a-r)^2) == 0, -inf when sum(r^2) == 0 < sum((a-r)^2)
  cosine          sum(a*r) / sqrt(sum(a^2) * sum(r^2))
  (both over the positions where r and a are finite, as voxtrace's metrics)
  for logits tensors (last axis = vocabulary), per position:
  KL(P_ref||P_act) = sum_{i: p_i > 0} p_i (log p_i - log q_i), log-softmax by log-sum-exp,
                  clamped at 0 from below (llama-perplexity --kl-divergence, base = reference)
  kl_mean, kl_p99, kl_p999 (numpy.percentile, default 'linear' method, as llama.cpp's
                  percentile lambda), kl_max
  top1_agreement  mean(argmax(ref) == argmax(act)), numpy.argmax: first index of the maximum

`head_scores` is not named `...logits`: the test treats it as logits through `--logits head_*`.

Non-finite values are written as the strings "inf", "-inf", "nan" (as voxtrace's JSON).

Regenerate (from the crate root; needs numpy and safetensors):
    .venv/bin/python reference/drift_metrics_cases.py fixtures/compare/drift
"""

import json
import os
import sys

import numpy as np
import safetensors
from safetensors.numpy import save_file


def enc(v):
    v = float(v)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def sqnr_db(r, a):
    r = r.astype(np.float64).ravel()
    a = a.astype(np.float64).ravel()
    fin = np.isfinite(r) & np.isfinite(a)
    r, a = r[fin], a[fin]
    signal = np.sum(r * r)
    noise = np.sum((a - r) * (a - r))
    if noise == 0:
        return np.inf
    if signal == 0:
        return -np.inf
    return 10.0 * np.log10(signal / noise)


def cosine(r, a):
    r = r.astype(np.float64).ravel()
    a = a.astype(np.float64).ravel()
    fin = np.isfinite(r) & np.isfinite(a)
    r, a = r[fin], a[fin]
    na, nr = np.dot(a, a), np.dot(r, r)
    if na == 0 and nr == 0:
        return 1.0
    if na == 0 or nr == 0:
        return 0.0
    return float(np.clip(np.dot(a, r) / np.sqrt(na * nr), -1.0, 1.0))


def log_softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    return x - (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))


def logits_metrics(r, a):
    """Every row of these fixtures defines a distribution (finite or -inf masked entries)."""
    vocab = r.shape[-1]
    x = r.astype(np.float64).reshape(-1, vocab)
    y = a.astype(np.float64).reshape(-1, vocab)
    lp, lq = log_softmax(x), log_softmax(y)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    kl = np.maximum(terms.sum(axis=-1), 0.0)
    agree = np.argmax(x, axis=-1) == np.argmax(y, axis=-1)
    return {
        "vocab": int(vocab),
        "positions": int(x.shape[0]),
        "kl_positions": int(x.shape[0]),
        "kl_mean": enc(np.mean(kl)),
        "kl_p99": enc(np.percentile(kl, 99)),
        "kl_p999": enc(np.percentile(kl, 99.9)),
        "kl_max": enc(np.max(kl)),
        "top1_agree": int(agree.sum()),
        "top1_agreement": enc(np.mean(agree)),
    }


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261207)
    ref, act, logits = {}, {}, set()

    # Activations: the same signal with growing noise -> falling SQNR.
    for k, noise in enumerate([1e-3, 1e-2, 1e-1]):
        r = rng.standard_normal((3, 16, 24)).astype(np.float32)
        ref[f"enc.layers.{k}.out"] = r
        act[f"enc.layers.{k}.out"] = (r + noise * rng.standard_normal(r.shape)).astype(np.float32)
    r = rng.standard_normal((5, 7)).astype(np.float32)
    ref["enc.identical"], act["enc.identical"] = r, r.copy()
    ref["enc.zero_ref"] = np.zeros((4, 4), dtype=np.float32)
    act["enc.zero_ref"] = (1e-3 * rng.standard_normal((4, 4))).astype(np.float32)
    # A biased error: a constant offset on a non-zero-mean signal.
    r = (2.0 + rng.standard_normal(300)).astype(np.float32)
    ref["enc.offset"], act["enc.offset"] = r, (r + np.float32(0.05)).astype(np.float32)

    # Decoder logits [batch 2, 300 positions, vocab 97]: rows cross the comparator's 16384-value
    # blocks; token 5 masked to -inf in both; per-position noise scales spread over two decades
    # so that the KL distribution has a tail and some argmaxes flip.
    x = (3.0 * rng.standard_normal((2, 300, 97))).astype(np.float32)
    x[..., 5] = -np.inf
    scale = 10.0 ** rng.uniform(-3.0, -0.5, size=(2, 300, 1))
    y = (x + scale * rng.standard_normal(x.shape)).astype(np.float32)
    y[..., 5] = -np.inf
    ref["dec.logits"], act["dec.logits"] = x, y
    logits.add("dec.logits")

    # Identical logits: KL 0, top-1 1.0, SQNR +inf.
    x = (2.0 * rng.standard_normal((8, 50))).astype(np.float32)
    ref["dec.same.logits"], act["dec.same.logits"] = x, x.copy()
    logits.add("dec.same.logits")

    # Every row reversed: every argmax moves, top-1 0.
    x = np.tile(np.arange(10, dtype=np.float32), (6, 1)) + rng.standard_normal((6, 1)).astype(np.float32)
    ref["dec.reversed.logits"], act["dec.reversed.logits"] = x, x[:, ::-1].copy()
    logits.add("dec.reversed.logits")

    # Not named ...logits: logits only through --logits head_*.
    x = (1.5 * rng.standard_normal((40, 33))).astype(np.float32)
    ref["head_scores"] = x
    act["head_scores"] = (x + 0.2 * rng.standard_normal(x.shape)).astype(np.float32)
    logits.add("head_scores")

    save_file(ref, os.path.join(out, "ref.safetensors"))
    save_file(act, os.path.join(out, "act.safetensors"))

    expected = {}
    for name in sorted(ref):
        e = {"sqnr_db": enc(sqnr_db(ref[name], act[name])), "cosine": enc(cosine(ref[name], act[name]))}
        if name in logits:
            e.update(logits_metrics(ref[name], act[name]))
        expected[name] = e
    doc = {
        "tensors": expected,
        "logits_pattern": "head_*",
        "_generator": {
            "script": "reference/drift_metrics_cases.py",
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
        },
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixtures/compare/drift")
