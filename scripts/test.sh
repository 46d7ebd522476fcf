#!/usr/bin/env bash
# Runs every test of Loupe: installs what the tests need (idempotent), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Reference tools (pycocotools, moto, …) come from the project's virtual environment.
export PATH="$PWD/.venv/bin:$PATH"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
unset LOUPE_TESTDATA
cargo test --all-targets "$@"
