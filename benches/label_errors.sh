#!/usr/bin/env bash
# Label-error ranking against cleanlab's ObjectLab on planted errors in a real dataset: COCO
# val2014 ground truth of 100 images (tests/data/third_party/review_object_detection_metrics)
# with the real detections cocoapi ships for them (tests/data/third_party/cocoapi). A seeded
# fraction of images gets one error each (a box dropped, a class swapped, a box shifted by half
# its size); `loupe triage --json` and cleanlab's `object_detection.rank.get_label_quality_scores`
# / `filter.find_label_issues` rank the same noisy labels with the same detections. Prints
# precision and recall at K for both, per seed and averaged. See benches/label_errors_bench.py.
#
# Usage: benches/label_errors.sh [--seeds 1,2,3,4,5] [--fraction 0.2] [--json FILE] [--bin PATH]
#
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
        --seeds | --fraction | --json) args+=("$1" "$2"); shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
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
work="$(mktemp -d "${TMPDIR:-/tmp}/loupe-label-errors.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "loupe: $bin; cleanlab $("$venv/bin/python" -c 'import cleanlab; print(cleanlab.__version__)')"
python3 benches/label_errors_bench.py --loupe "$bin" --cleanlab-python "$venv/bin/python" \
    --gt "$testdata/review_object_detection_metrics/tests/test_coco_eval/gts/sampled_gts_bbox_area.json" \
    --results "$testdata/cocoapi/results/instances_val2014_fakebbox100_results.json" \
    --workdir "$work" "${args[@]}"
