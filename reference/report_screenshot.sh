#!/usr/bin/env bash
# Screenshot of an HTML report with Debian's headless Chromium (no network, throwaway profile).
# Usage: reference/report_screenshot.sh REPORT.html OUT.png
# Needs `apt-get install -y chromium` (part of `just setup`).
set -euo pipefail
if [ "$#" -ne 2 ]; then
    echo "usage: $0 REPORT.html OUT.png" >&2
    exit 2
fi
report=$1
out=$2
[ -f "$report" ] || { echo "$0: $report: no such file" >&2; exit 2; }
chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chrome" ]; then
    echo "$0: chromium is not installed; run \`just setup\` (apt-get install -y chromium)" >&2
    exit 3
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
abs_report=$(realpath "$report")
abs_out=$(realpath -m "$out")
rm -f "$abs_out"
"$chrome" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run \
    --user-data-dir="$profile" --hide-scrollbars \
    --screenshot="$abs_out" --window-size=1400,2000 "file://$abs_report" >/dev/null 2>"$profile/stderr.log" || {
    cat "$profile/stderr.log" >&2
    exit 1
}
if [ ! -s "$abs_out" ]; then
    cat "$profile/stderr.log" >&2
    echo "$0: chromium wrote no screenshot" >&2
    exit 1
fi
echo "$abs_out"
