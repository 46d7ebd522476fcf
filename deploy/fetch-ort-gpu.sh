#!/usr/bin/env bash
# Puts ONNX Runtime's CUDA build for Linux x86_64 into a folder: the libraries of the PyPI
# `onnxruntime-gpu` wheel, checked against a pinned SHA-256, with its licence and notices.
# The GPU counterpart of packaging/fetch-ort.sh (same version, same way of fetching), used by
# deploy/Dockerfile.cuda.
#
# Usage: deploy/fetch-ort-gpu.sh DEST
#
# The wheel (253 MB) is cached in packaging/build/wheels/ (ignored by git), the cache and pin
# packaging/check-cuda-fallback.sh uses. What DEST gets:
#   libonnxruntime.so.1.24.4                ORT_DYLIB_PATH points here
#   libonnxruntime_providers_shared.so      loaded by ONNX Runtime beside itself
#   libonnxruntime_providers_cuda.so        the CUDA execution provider (367 MB); it needs
#                                           libcudart.so.12, libcublas(Lt).so.12, libcufft.so.11,
#                                           libcurand.so.10 and libcudnn.so.9 (CUDA 12, cuDNN 9)
#   onnxruntime-LICENSE.txt, onnxruntime-ThirdPartyNotices.txt
# The TensorRT provider in the wheel is left out (it needs TensorRT, which the images lack).
set -euo pipefail

ORT_VERSION=1.24.4
dest="${1:?usage: fetch-ort-gpu.sh DEST}"
wheel="onnxruntime_gpu-$ORT_VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
sha256=c2a698659271c28220b3f56fe9b63f70eae3b3c36afa544201bf750b929a36dc
libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so
      libonnxruntime_providers_cuda.so)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$repo_root/packaging/build/wheels"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo_root/.venv/bin/python3" ]]; then python="$repo_root/.venv/bin/python3"; else python=python3; fi
fi
mkdir -p "$cache" "$dest"

if [[ ! -f "$cache/$wheel" ]]; then
    echo "fetch-ort-gpu.sh: downloading onnxruntime-gpu==$ORT_VERSION from PyPI" >&2
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        --platform manylinux_2_28_x86_64 --python-version 3.11 \
        "onnxruntime-gpu==$ORT_VERSION" -d "$cache" >&2
fi
if [[ ! -f "$cache/$wheel" ]]; then
    echo "fetch-ort-gpu.sh: pip did not produce $wheel in $cache" >&2
    exit 1
fi
actual="$(sha256sum "$cache/$wheel" | cut -d' ' -f1)"
if [[ "$actual" != "$sha256" ]]; then
    rm -f "$cache/$wheel"
    echo "fetch-ort-gpu.sh: $wheel has SHA-256 $actual, expected $sha256; deleted it" >&2
    exit 1
fi

# A wheel is a zip file; Python's zipfile is used so that `unzip` need not be installed. Copied in
# blocks: the CUDA provider is 367 MB.
"$python" - "$cache/$wheel" "$dest" "${libs[@]}" <<'PY'
import os
import shutil
import sys
import zipfile

wheel, dest, libs = sys.argv[1], sys.argv[2], sys.argv[3:]
wanted = {f"onnxruntime/capi/{lib}": lib for lib in libs}
wanted["onnxruntime/LICENSE"] = "onnxruntime-LICENSE.txt"
wanted["onnxruntime/ThirdPartyNotices.txt"] = "onnxruntime-ThirdPartyNotices.txt"
with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    for inner, out in wanted.items():
        if inner not in names:
            sys.exit(f"fetch-ort-gpu.sh: {inner} is not inside {wheel}")
        target = os.path.join(dest, out)
        with zf.open(inner) as src, open(target + ".partial", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(target + ".partial", target)
PY
echo "$dest"
