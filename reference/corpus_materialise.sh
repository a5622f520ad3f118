#!/usr/bin/env bash
# Materialise the audio of a corpus manifest (`just corpus`).
#
# Usage: reference/corpus_materialise.sh MANIFEST.tsv SHARED_AUDIO_DIR CACHE_DIR
#
# * If SHARED_AUDIO_DIR exists (the machine's ../shared/audio), it is the audio root: nothing is
#   copied; every manifest file is checked there.
# * Otherwise the clips whose manifest row names a Debian package (`debian_package`,
#   `debian_path` columns) are fetched with `apt-get download` + `dpkg-deb -x` into
#   CACHE_DIR/debs and CACHE_DIR/root, and decoded into CACHE_DIR/audio/<file> as the source
#   says: `.g722` (raw G.722, 16 kHz) with ffmpeg, `.raw` (16 kHz s16le mono) with sox, `.wav`
#   copied. Set VOXTRACE_CORPUS_FORCE_DEBIAN=1 to take this path even when SHARED_AUDIO_DIR exists.
#
# Either way every clip whose audio is not there is listed as MISSING (id, file, why), and the
# last line of stdout is the audio root to pass to `voxtrace eval --audio-root`.
set -euo pipefail
if [ "$#" -ne 3 ]; then
    echo "usage: $0 MANIFEST.tsv SHARED_AUDIO_DIR CACHE_DIR" >&2
    exit 2
fi
manifest=$1
shared=$2
cache=$3
[ -f "$manifest" ] || { echo "$0: $manifest: no such manifest" >&2; exit 2; }

# Column indexes from the header.
header=$(head -n1 "$manifest")
col() { echo "$header" | tr '\t' '\n' | grep -nx "$1" | cut -d: -f1; }
c_id=$(col id); c_file=$(col file); c_pkg=$(col debian_package || true); c_path=$(col debian_path || true)
[ -n "$c_id" ] && [ -n "$c_file" ] || { echo "$manifest:1: header lacks id/file" >&2; exit 2; }

missing=0
if [ -d "$shared" ] && [ "${VOXTRACE_CORPUS_FORCE_DEBIAN:-0}" != 1 ]; then
    root=$(realpath "$shared")
    echo "audio from $root (shared folder present; nothing copied)" >&2
    while IFS=$'\t' read -r -a f; do
        id=${f[$((c_id - 1))]}; file=${f[$((c_file - 1))]}
        if [ ! -f "$root/$file" ]; then
            echo "MISSING $id $file (not in $root)" >&2
            missing=$((missing + 1))
        fi
    done < <(tail -n +2 "$manifest" | grep -v '^[[:space:]]*$')
else
    root=$(realpath -m "$cache/audio")
    mkdir -p "$cache/debs" "$cache/root" "$root"
    [ -n "$c_pkg" ] && [ -n "$c_path" ] || { echo "$manifest: no debian_package/debian_path columns" >&2; exit 2; }
    pkgs=$(tail -n +2 "$manifest" | cut -f"$c_pkg" | grep -v '^$' | sort -u || true)
    for p in $pkgs; do
        if ! ls "$cache/debs/${p}"_*.deb >/dev/null 2>&1; then
            echo "fetching $p" >&2
            (cd "$cache/debs" && apt-get download "$p") >&2 || echo "cannot download $p (run apt-get update?)" >&2
        fi
        for deb in "$cache/debs/${p}"_*.deb; do
            [ -f "$deb" ] && dpkg-deb -x "$deb" "$cache/root"
        done
    done
    while IFS=$'\t' read -r -a f; do
        id=${f[$((c_id - 1))]}; file=${f[$((c_file - 1))]}
        pkg=${f[$((c_pkg - 1))]:-}; src=${f[$((c_path - 1))]:-}
        out="$root/$file"
        [ -f "$out" ] && continue
        if [ -z "$pkg" ]; then
            echo "MISSING $id $file (no Debian package named in the manifest)" >&2
            missing=$((missing + 1)); continue
        fi
        in="$cache/root$src"
        if [ ! -f "$in" ]; then
            echo "MISSING $id $file ($src not in package $pkg)" >&2
            missing=$((missing + 1)); continue
        fi
        mkdir -p "$(dirname "$out")"
        case "$src" in
            *.g722)
                command -v ffmpeg >/dev/null || { echo "MISSING $id $file (ffmpeg not installed: apt-get install -y ffmpeg)" >&2; missing=$((missing + 1)); continue; }
                ffmpeg -nostdin -loglevel error -y -f g722 -i "$in" -ac 1 -ar 16000 -c:a pcm_s16le "$out" ;;
            *.raw)
                command -v sox >/dev/null || { echo "MISSING $id $file (sox not installed: apt-get install -y sox)" >&2; missing=$((missing + 1)); continue; }
                sox -t raw -r 16000 -e signed -b 16 -c 1 -L "$in" "$out" ;;
            *.wav) cp "$in" "$out" ;;
            *) echo "MISSING $id $file (unknown source format $src)" >&2; missing=$((missing + 1)); continue ;;
        esac
    done < <(tail -n +2 "$manifest" | grep -v '^[[:space:]]*$')
fi
total=$(tail -n +2 "$manifest" | grep -vc '^[[:space:]]*$' || true)
echo "$((total - missing)) of $total clips present, $missing missing" >&2
echo "$root"
