#!/usr/bin/env bash
# Puts ONNX Runtime's CUDA build for Linux x86_64 into a folder: `packaging/fetch-ort.sh
# linux-cuda`, which says what DEST gets (the libraries of the pinned PyPI `onnxruntime-gpu`
# wheel, with its licence and notices). Kept so that the GPU libraries have a name beside the
# deployment examples; deploy/Dockerfile.cuda runs packaging/fetch-ort.sh itself.
#
# Usage: deploy/fetch-ort-gpu.sh DEST
set -euo pipefail

dest="${1:?usage: fetch-ort-gpu.sh DEST}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$repo_root/packaging/fetch-ort.sh" linux-cuda "$dest"
