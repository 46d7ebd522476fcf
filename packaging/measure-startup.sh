#!/usr/bin/env bash
# Measures the time from launching loupe to its first drawn frame on a project, under Xvfb when
# there is no display: RUNS launches (default 9), each time and the median.
#
# Usage: packaging/measure-startup.sh PROJECT_FOLDER [LOUPE]
#        PROJECT_FOLDER holds demo.loupe (the `demo/` folder scripts/demo.sh makes); it is
#        copied first, because opening a project records who opened it.
#        LOUPE defaults to target/release/loupe.
#
# `LOUPE_EXIT_AFTER_FIRST_FRAME=1` makes loupe draw one frame, print the moment it was presented
# (`first frame drawn: epoch_ms=…`, src/ui/startup_probe.rs) and exit; the time is that moment
# minus the moment this script launched the process, so loading the executable counts. Each run
# has a fresh HOME (no recent projects, default settings) and the same project copy.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${1:?usage: measure-startup.sh PROJECT_FOLDER [LOUPE]}"
loupe="$(realpath "${2:-${CARGO_TARGET_DIR:-$repo/target}/release/loupe}")"
runs="${RUNS:-9}"
[[ -f "$src/demo.loupe" ]] || { echo "measure-startup.sh: no $src/demo.loupe" >&2; exit 1; }

tmp="$(mktemp -d)"
cleanup() {
    [[ -n "${xvfb_pid:-}" ]] && kill "$xvfb_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
if [[ -z "${DISPLAY:-}" ]]; then
    export DISPLAY=:96
    Xvfb "$DISPLAY" -screen 0 1440x900x24 >/dev/null 2>&1 &
    xvfb_pid=$!
    sleep 1
fi
cp -a "$src" "$tmp/project"
mkdir -p -m 700 "$tmp/xdg"
cd "$tmp/project"

times=()
for ((i = 1; i <= runs; i++)); do
    rm -rf "$tmp/home"
    mkdir -p "$tmp/home"
    t0="$(date +%s%3N)"
    line="$(env HOME="$tmp/home" XDG_RUNTIME_DIR="$tmp/xdg" LOUPE_EXIT_AFTER_FIRST_FRAME=1 \
        "$loupe" demo.loupe 2>/dev/null | grep '^first frame drawn')" ||
        { echo "measure-startup.sh: run $i drew no frame" >&2; exit 1; }
    t1="$(sed -n 's/.*epoch_ms=\([0-9]*\).*/\1/p' <<<"$line")"
    times+=("$((t1 - t0))")
    echo "run $i: $((t1 - t0)) ms (${line#first frame drawn: })"
done
sorted="$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')"
echo "launch to first frame, $runs runs: median $(printf '%s\n' "${times[@]}" | sort -n |
    sed -n "$(((runs + 1) / 2))p") ms (sorted: $sorted)"
