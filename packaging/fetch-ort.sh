#!/usr/bin/env bash
# Puts ONNX Runtime's shared library for one platform, taken from the PyPI `onnxruntime` wheel
# (`onnxruntime-gpu` for linux-cuda) and checked against a pinned SHA-256, into a folder, with
# its licence and third-party notices.
#
# Usage: packaging/fetch-ort.sh linux|linux-cuda|windows|macos DEST
#
# The wheels are cached in packaging/build/wheels/ (ignored by git); a wheel whose checksum
# does not match is deleted and refused. The library does not depend on the Python version the
# wheel was tagged for, so one CPython tag (3.11) is pinned for all platforms.
#
# `linux-cuda` is ONNX Runtime's CUDA build for Linux x86_64, from the `onnxruntime-gpu` wheel
# (253 MB; packaging/check-cuda-fallback.sh pins the same one), used by deploy/Dockerfile.cuda
# and deploy/fetch-ort-gpu.sh. Besides the licence and notices, DEST gets:
#   libonnxruntime.so.1.24.4                ORT_DYLIB_PATH points here
#   libonnxruntime_providers_shared.so      loaded by ONNX Runtime beside itself
#   libonnxruntime_providers_cuda.so        the CUDA execution provider (367 MB); it needs
#                                           libcudart.so.12, libcublas(Lt).so.12, libcufft.so.11,
#                                           libcurand.so.10 and libcudnn.so.9 (CUDA 12, cuDNN 9)
# The TensorRT provider in the wheel is left out (it needs TensorRT, which the images lack).
set -euo pipefail

ORT_VERSION=1.24.4
usage="usage: fetch-ort.sh linux|linux-cuda|windows|macos DEST"
platform="${1:?$usage}"
dest="${2:?$usage}"

package=onnxruntime
case "$platform" in
    linux)
        tag=manylinux_2_27_x86_64
        wheel="onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
        sha256=e54ad52e61d2d4618dcff8fa1480ac66b24ee2eab73331322db1049f11ccf330
        # The providers_shared library is what GPU execution providers (CUDA) load beside it.
        libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so)
        ;;
    linux-cuda)
        package=onnxruntime-gpu
        tag=manylinux_2_28_x86_64
        wheel="onnxruntime_gpu-$ORT_VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
        sha256=c2a698659271c28220b3f56fe9b63f70eae3b3c36afa544201bf750b929a36dc
        libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so
              libonnxruntime_providers_cuda.so)
        ;;
    windows)
        tag=win_amd64
        wheel="onnxruntime-$ORT_VERSION-cp311-cp311-win_amd64.whl"
        sha256=b43b63eb24a2bc8fc77a09be67587a570967a412cccb837b6245ccb546691153
        libs=(onnxruntime.dll onnxruntime_providers_shared.dll)
        ;;
    macos)
        tag=macosx_14_0_arm64
        wheel="onnxruntime-$ORT_VERSION-cp311-cp311-macosx_14_0_arm64.whl"
        sha256=0bdfce8e9a6497cec584aab407b71bf697dac5e1b7b7974adc50bf7533bdb3a2
        libs=("libonnxruntime.$ORT_VERSION.dylib")
        ;;
    *)
        echo "fetch-ort.sh: unknown platform '$platform' (linux, linux-cuda, windows or macos)" >&2
        exit 1
        ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$repo_root/packaging/build/wheels"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    # The project's virtual environment has pip even where the system Python does not.
    if [[ -x "$repo_root/.venv/bin/python3" ]]; then python="$repo_root/.venv/bin/python3"; else python=python3; fi
fi
mkdir -p "$cache" "$dest"

if [[ ! -f "$cache/$wheel" ]]; then
    echo "fetch-ort.sh: downloading $package==$ORT_VERSION for $tag from PyPI" >&2
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        --platform "$tag" --python-version 3.11 "$package==$ORT_VERSION" -d "$cache" >&2
fi
if [[ ! -f "$cache/$wheel" ]]; then
    echo "fetch-ort.sh: pip did not produce $wheel in $cache" >&2
    exit 1
fi
actual="$(sha256sum "$cache/$wheel" | cut -d' ' -f1)"
if [[ "$actual" != "$sha256" ]]; then
    rm -f "$cache/$wheel"
    echo "fetch-ort.sh: $wheel has SHA-256 $actual, expected $sha256; deleted it" >&2
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
            sys.exit(f"fetch-ort.sh: {inner} is not inside {wheel}")
        target = os.path.join(dest, out)
        with zf.open(inner) as src, open(target + ".partial", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(target + ".partial", target)
PY
echo "$dest"
