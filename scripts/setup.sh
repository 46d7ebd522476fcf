#!/usr/bin/env bash
# Installs what Loupe's demo and tests need beyond cargo, idempotently:
# Debian packages (software Vulkan for wgpu tests, Xvfb for screenshots, poppler and the Debian
# reference card for demo images, nasm for libjpeg-turbo's SIMD code: without it the JPEG
# decoder builds as plain C, same pixels, about twice as slow), Python packages for reference
# checks (pycocotools, moto), and the ONNX Runtime shared library (from the onnxruntime wheel on
# PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libegl-mesa0 libxkbcommon-x11-0
              xvfb imagemagick poppler-utils debian-refcard nasm)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY_NEED=()
python3 -c 'import pycocotools' 2>/dev/null || PY_NEED+=(pycocotools)
python3 -c 'import moto.server' 2>/dev/null || PY_NEED+=('moto[server]')
if ((${#PY_NEED[@]})); then
    echo "setup: pip install ${PY_NEED[*]}" >&2
    python3 -m pip install -q --disable-pip-version-check "${PY_NEED[@]}" >&2
fi

scripts/fetch-onnxruntime.sh >/dev/null
