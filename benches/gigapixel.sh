#!/usr/bin/env bash
# Gigapixel images: a 30,000 x 30,000 RGB image as a pyramidal tiled TIFF written by
# `vips tiffsave --tile --pyramid` (the layout slide scanners use), and the same pixels as one
# JPEG (which goes through Loupe's pyramid cache, built on first open). For each: the app's
# time to the first complete view, frame time while panning at full resolution and peak
# resident memory (benches/gigapixel.rs, headless, each in its own process); and opening the
# same file with the `image` crate, for comparison.
#
# Usage: benches/gigapixel.sh [--size N] [--keep DIR]
#
#   --size N    side of the square test image (default 30000)
#   --keep DIR  make (or reuse) the images in DIR instead of a temporary folder
#
# Installs libvips-tools with apt-get if `vips` is missing (idempotent). Builds the benchmark
# with `cargo bench --no-run` (release profile; the first build takes a while).
# Targets (issue 15): first view < 2 s for the pyramidal TIFF, < 16 ms per frame while panning,
# peak memory < 1 GiB.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
size=30000
keep=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --size) size="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gigapixel.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if ! command -v vips >/dev/null; then
    echo "gigapixel.sh: installing libvips-tools" >&2
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y libvips-tools >&2; else sudo apt-get install -y libvips-tools >&2; fi
fi
if [[ -n "$keep" ]]; then
    work="$keep"
    mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/loupe-giga.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
fi
tif="$work/giga_${size}_pyramid.tif"
jpg="$work/giga_${size}.jpg"
if [[ ! -f "$tif" || ! -f "$jpg" ]]; then
    echo "gigapixel.sh: making a ${size} x ${size} RGB image with vips" >&2
    # Three different patterns as R, G, B: fine detail everywhere, so every tile differs.
    vips sines "$work/r.v" "$size" "$size" --hfreq 397 --vfreq 211 --uchar
    vips zone "$work/g.v" "$size" "$size" --uchar
    vips sines "$work/b.v" "$size" "$size" --hfreq 53 --vfreq 701 --uchar
    vips bandjoin "$work/r.v $work/g.v $work/b.v" "$work/rgb.v"
    rm -f "$work/r.v" "$work/g.v" "$work/b.v"
    vips tiffsave "$work/rgb.v" "$tif" --tile --pyramid --tile-width 256 --tile-height 256 \
        --compression jpeg --Q 85 --bigtiff
    vips jpegsave "$work/rgb.v" "$jpg" --Q 85
    rm -f "$work/rgb.v"
fi
ls -l "$tif" "$jpg"
echo "gigapixel.sh: building the benchmark (release)" >&2
cargo bench --bench gigapixel --no-run >&2
for file in "$tif" "$jpg"; do
    echo
    echo "== $(basename "$file") ($(du -h "$file" | cut -f1))"
    echo "-- Loupe (the app, headless)"
    XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" cargo bench --bench gigapixel -- app "$file" 2>/dev/null
    echo "-- the image crate (image::open)"
    cargo bench --bench gigapixel -- image-crate "$file" 2>/dev/null
done
