#!/usr/bin/env bash
# Next-image latency and frame times of the real app, on the demo project, under Xvfb, driven
# the way an annotator drives it: one key per image at human speed.
#
# Usage: benches/app_latency.sh [--bin PATH] [--project FILE] [--keys N] [--pause SECONDS]
#
#   --bin      the loupe executable (default: target/release/loupe if built, else
#              target/debug/loupe; say which in the figures: a debug build is slower)
#   --project  the project to open (default demo/demo.loupe, made by
#              `LOUPE_DEMO_NO_GUI=1 scripts/demo.sh` when missing)
#   --keys     key presses per direction (default 30: forward with D, then back with A)
#   --pause    seconds between presses (default 0.3, a fast annotator's pace)
#
# How: the app runs with LOUPE_FRAME_LOG (src/ui/frame_log.rs), which logs for every frame when
# it began, how long the app took to build it, and whether the current image was decoded and
# drawn. The script logs when it sent each key (xdotool, same clock). The latency of a key is
# from sending it to the end of the first frame that draws the next image decoded; the GPU's
# part of that frame and the presentation come after and are not in it. Frame times are the
# app's CPU time per frame over the whole run.
#
# Needs: Xvfb, xdotool (apt: xvfb xdotool), python3.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin=""
project="$repo/demo/demo.loupe"
keys=30
pause=0.3
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --project) project="$2"; shift 2 ;;
        --keys) keys="$2"; shift 2 ;;
        --pause) pause="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    if [ -x "$repo/target/release/loupe" ]; then bin="$repo/target/release/loupe"; else bin="$repo/target/debug/loupe"; fi
fi
[ -x "$bin" ] || { echo "no loupe executable at $bin: cargo build --release first" >&2; exit 1; }
for tool in Xvfb xdotool python3; do
    command -v "$tool" >/dev/null || { echo "app_latency: $tool is missing (apt install xvfb xdotool python3)" >&2; exit 1; }
done
if [ ! -f "$project" ]; then
    LOUPE_DEMO_NO_GUI=1 "$repo/scripts/demo.sh"
fi

work="$(mktemp -d)"
display=":$(( 90 + RANDOM % 9 ))"
cleanup() {
    [ -n "${app:-}" ] && kill "$app" 2>/dev/null || true
    [ -n "${xvfb:-}" ] && kill "$xvfb" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
sleep 1
mkdir -p "$work/xdg" "$work/config"
# A settings folder of its own: the run starts from the defaults, not the user's keys.
DISPLAY="$display" XDG_RUNTIME_DIR="$work/xdg" XDG_CONFIG_HOME="$work/config" \
    XDG_DATA_HOME="$work/data" LOUPE_FRAME_LOG="$work/frames.tsv" \
    "$bin" open "$project" >"$work/app.log" 2>&1 &
app=$!
# Wait for the first image to be drawn.
for _ in $(seq 1 300); do
    if [ -s "$work/frames.tsv" ] && awk -F'\t' '$3 == 1 { found = 1 } END { exit !found }' "$work/frames.tsv"; then
        break
    fi
    sleep 0.1
done
sleep 1
export DISPLAY="$display"
window="$(xdotool search --name Loupe | head -1)"
xdotool windowfocus --sync "$window"
# The pointer rests on the canvas, as an annotator's does.
xdotool mousemove 640 400
sleep 0.5
send() {
    date +%s%6N >>"$work/keys.txt"
    xdotool key "$1"
    sleep "$pause"
}
for _ in $(seq 1 "$keys"); do send d; done
for _ in $(seq 1 "$keys"); do send a; done
sleep 1
kill "$app" 2>/dev/null || true
wait "$app" 2>/dev/null || true
app=""

python3 - "$work/frames.tsv" "$work/keys.txt" "$bin" "$project" "$pause" <<'PY'
import statistics, sys

frames_path, keys_path, binary, project, pause = sys.argv[1:]
frames = []
for line in open(frames_path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 4:
        frames.append((int(parts[0]), int(parts[1]), parts[2] == "1", parts[3]))
keys = [int(l) for l in open(keys_path) if l.strip()]

def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

latencies, unchanged = [], 0
for k in keys:
    # The image shown before the key.
    before = [f for f in frames if f[0] < k]
    if not before:
        continue
    was = before[-1][3]
    after = [f for f in frames if f[0] >= k and f[3] != was and f[2]]
    if not after:
        unchanged += 1  # the first or last image of the list: nothing to move to
        continue
    f = after[0]
    latencies.append((f[0] + f[1] - k) / 1000.0)

ui_ms = [f[1] / 1000.0 for f in frames]
print(f"binary   {binary}")
print(f"project  {project}")
print(f"keys     {len(keys)} at one per {pause} s; {len(latencies)} moved to another image, {unchanged} did not (ends of the list)")
if latencies:
    print(
        "next-image latency (key sent -> first frame drawing the decoded image), ms: "
        f"median {statistics.median(latencies):.1f}  p95 {pct(latencies, 0.95):.1f}  max {max(latencies):.1f}"
    )
print(
    f"frame build time (app CPU per frame, {len(ui_ms)} frames), ms: "
    f"median {statistics.median(ui_ms):.2f}  p95 {pct(ui_ms, 0.95):.2f}  p99 {pct(ui_ms, 0.99):.2f}  max {max(ui_ms):.2f}"
)
if not latencies:
    print("no key moved to another image: was the window focused?", file=sys.stderr)
    sys.exit(1)
PY
