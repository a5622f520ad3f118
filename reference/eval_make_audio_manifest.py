#!/usr/bin/env python3
"""Write audio_samples/manifest.tsv: the project's copy of the speech-clip manifest.

Rows: ../shared/audio/manifest.tsv, then ../shared/audio/tts/manifest.tsv with `file`
prefixed by `tts/`. Two columns are added after the six standard ones:
`debian_package` and `debian_path`, parsed from a `source` of the form
`debian:<package> <version>: <path> (...)` (alsa-utils, pocketsphinx-testdata,
asterisk-core-sounds-en-g722), so that a fetch recipe can get the clips on a machine without
../shared (`apt-get download <package>`, extract `<debian_path>`, convert as the `source`
column says). Both are empty for clips from other sources (GitHub, synthetic).

Regenerate (from the crate root):

    python3 reference/eval_make_audio_manifest.py --audio ../shared/audio \
        --out audio_samples/manifest.tsv
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile

COLUMNS = ["id", "file", "duration_s", "reference", "source", "license"]
DEBIAN = re.compile(r"^debian:(\S+) (\S+): (\S+)")


def read(path: str):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows[0] != COLUMNS:
        raise SystemExit(f"{path}: unexpected header {rows[0]}")
    return [dict(zip(COLUMNS, r)) for r in rows[1:] if r]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = read(os.path.join(args.audio, "manifest.tsv"))
    for r in read(os.path.join(args.audio, "tts", "manifest.tsv")):
        r["file"] = "tts/" + r["file"]
        rows.append(r)
    out_lines = ["\t".join(COLUMNS + ["debian_package", "debian_path"])]
    for r in rows:
        m = DEBIAN.match(r["source"])
        pkg, path = (m.group(1), "/" + m.group(3).lstrip("/")) if m else ("", "")
        fields = [r[c] for c in COLUMNS] + [pkg, path]
        assert all("\t" not in x and "\n" not in x for x in fields), fields
        out_lines.append("\t".join(fields))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(out_lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
