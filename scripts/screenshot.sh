#!/usr/bin/env bash
# Takes a screenshot of the real app under a virtual X server.
#
#   scripts/screenshot.sh PROJECT.loupe [OUT.png] [IMAGE]
#
# Starts `loupe open PROJECT` (the newest of target/{release,debug}/loupe) on Xvfb, waits for it to
# draw, saves the screen to OUT.png (default docs/screenshot.png) and stops the app. IMAGE (a
# path inside the project, e.g. `bus.jpg`) is the image to show; default: the first one.
# Installs xvfb, mesa-vulkan-drivers (lavapipe) and imagemagick with apt-get if missing.
set -euo pipefail

project=${1:?usage: scripts/screenshot.sh PROJECT.loupe [OUT.png] [IMAGE]}
out=${2:-docs/screenshot.png}
image=${3:-}
wait_s=${LOUPE_SCREENSHOT_WAIT:-6}
display_num=${LOUPE_SCREENSHOT_DISPLAY:-:99}
root=$(cd "$(dirname "$0")/.." && pwd)

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
[ -x /usr/bin/import ] || need+=(imagemagick)
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The newest of the release and debug binaries (LOUPE_BIN overrides).
bin=${LOUPE_BIN:-}
if [ -z "$bin" ]; then
    bin=$(ls -t "$root/target/release/loupe" "$root/target/debug/loupe" 2>/dev/null | head -n 1 || true)
fi
if [ -z "$bin" ]; then
    echo "no loupe binary: run cargo build (--release) first" >&2
    exit 1
fi

mkdir -p "$(dirname "$out")"
runtime=$(mktemp -d)
chmod 700 "$runtime"
config=$(mktemp -d)
if [ -n "$image" ]; then
    # The app reopens a project at the image it last showed: seed that in the fresh config.
    mkdir -p "$config/loupe"
    printf '[last_images]\n"%s" = "%s"\n' "$(realpath "$project")" "$image" >"$config/loupe/settings.toml"
fi

Xvfb "$display_num" -screen 0 1440x900x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
app_pid=""
cleanup() {
    [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
    kill "$xvfb_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$runtime" "$config"
}
trap cleanup EXIT
sleep 1

# A fresh config folder: the screenshot does not depend on (or change) the user's settings.
DISPLAY=$display_num XDG_RUNTIME_DIR=$runtime XDG_CONFIG_HOME=$config \
    "$bin" open "$project" &
app_pid=$!
sleep "$wait_s"
if ! kill -0 "$app_pid" 2>/dev/null; then
    echo "loupe exited before the screenshot" >&2
    exit 1
fi
DISPLAY=$display_num /usr/bin/import -window root "$out"
echo "wrote $out"
