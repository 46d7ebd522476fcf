#!/usr/bin/env bash
# COCO evaluation speed: `loupe eval-files` against pycocotools on one generated case
# (default 5,000 images and 50,000 GT boxes, about 50,000 detections), in one run. Prints both
# times, the ratio, and checks that the twelve COCO numbers agree.
#
# Usage: benches/eval.sh [--images N] [--boxes N] [--seed S] [--check]
#
#   --check  exit 1 unless Loupe is at least 5x faster and every number is within 1e-4
#
# Needs python3 with pycocotools (scripts/setup.sh installs it). Uses target/release/loupe and
# builds it (cargo build --release, about 11 minutes) only when it does not exist.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --images | --boxes | --seed) args+=("$1" "$2"); shift 2 ;;
        --check) args+=("$1"); shift ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "eval.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if ! python3 -c 'import pycocotools' 2>/dev/null; then
    echo "eval.sh: python3 with pycocotools is needed (run scripts/setup.sh)" >&2
    exit 1
fi
loupe="$repo/target/release/loupe"
if [[ ! -x "$loupe" ]]; then
    echo "eval.sh: building $loupe (cargo build --release)" >&2
    cargo build --release --bin loupe
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/loupe-eval-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 benches/eval_bench.py --loupe "$loupe" --workdir "$work" "${args[@]}"
