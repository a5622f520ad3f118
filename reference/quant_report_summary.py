#!/usr/bin/env python3
"""Summarise a `just quant-report` folder: per clip two `voxtrace compare --json` reports of the
f32 trace against the packed model's, `CLIP.acc.compare.json` (the packed model as it runs:
accumulated drift) and `CLIP.local.compare.json` (`trace --feed`: each block on the f32 block
inputs, its own drift), into `summary.json` and a Markdown table `summary.md` in the same
folder, also printed.

Per clip: the logits' SQNR (dB), KL divergence of the token distributions (mean, p99.9) and
top-1 agreement (accumulated run); per tensor, the median SQNR over clips, local beside
accumulated, worst accumulated first.

    .venv/bin/python reference/quant_report_summary.py reports/quant/whisper-tiny.en-q8_0
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    folder = Path(sys.argv[1])
    clips = {}
    layers: dict[str, dict[str, list[float]]] = {}
    for f in sorted(folder.glob("*.acc.compare.json")):
        clip = f.name[: -len(".acc.compare.json")]
        row = None
        for kind in ("acc", "local"):
            path = folder / f"{clip}.{kind}.compare.json"
            if not path.exists():
                continue
            rep = json.loads(path.read_text())
            for t in rep.get("tensors", []):
                m = t.get("metrics") or {}
                s = m.get("sqnr_db")
                # Token ids (`generated_ids`, `*.input_ids`) are not signals.
                if isinstance(s, (int, float)) and s == s and not t["name"].endswith("ids"):
                    layers.setdefault(t["name"], {"acc": [], "local": []})[kind].append(float(s))
                if kind == "acc" and "kl_mean" in m and row is None:
                    row = {
                        "tensor": t["name"],
                        "sqnr_db": s,
                        "cosine": m.get("cosine"),
                        "kl_mean": m["kl_mean"],
                        "kl_p999": m.get("kl_p999"),
                        "top1_agreement": m.get("top1_agreement"),
                        "positions": m.get("positions"),
                    }
        clips[clip] = row
    if not clips:
        raise SystemExit(f"{folder}: no *.acc.compare.json reports")
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    worst = sorted((med(v["acc"]), med(v["local"]), k) for k, v in layers.items())
    rows = [r for r in clips.values() if r]
    total = {
        "clips": len(clips),
        "logits_sqnr_db_median": statistics.median(r["sqnr_db"] for r in rows) if rows else None,
        "kl_mean_mean": statistics.fmean(r["kl_mean"] for r in rows) if rows else None,
        "kl_p999_max": max(r["kl_p999"] for r in rows) if rows else None,
        "top1_agreement_mean": statistics.fmean(r["top1_agreement"] for r in rows) if rows else None,
    }
    out = {"folder": str(folder), "total": total, "clips": clips,
           "layers_worst_first": [{"tensor": k, "median_sqnr_db_accumulated": a, "median_sqnr_db_local": l}
                                  for a, l, k in worst]}
    (folder / "summary.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [f"# Quantization drift: {folder.name}", "",
          "| clip | logits SQNR dB | KL mean | KL p99.9 | top-1 agreement |", "|---|---|---|---|---|"]
    for c, r in clips.items():
        if r:
            md.append(f"| {c} | {r['sqnr_db']:.1f} | {r['kl_mean']:.2e} | {r['kl_p999']:.2e} | {100 * r['top1_agreement']:.1f}% |")
        else:
            md.append(f"| {c} | (no logits) | | | |")
    md += ["", f"Median logits SQNR {total['logits_sqnr_db_median']:.1f} dB, mean KL {total['kl_mean_mean']:.2e}, "
           f"max KL p99.9 {total['kl_p999_max']:.2e}, mean top-1 agreement {100 * total['top1_agreement_mean']:.1f}% "
           f"over {len(rows)} clips.", "", "Tensors by median accumulated SQNR over clips, worst 20, with the "
           "block's own (local, `--feed`) SQNR beside it:", "",
           "| tensor | accumulated SQNR dB | local SQNR dB |", "|---|---|---|"]
    md += [f"| {k} | {a:.1f} | {l:.1f} |" for a, l, k in worst[:20]]
    (folder / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
