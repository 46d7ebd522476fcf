#!/usr/bin/env bash
# Puts the ONNX Runtime shared library that Loupe's pre-labelling needs into .tools/onnxruntime/.
#
# Loupe links ONNX Runtime at run time (ort's `load-dynamic`), so nothing is downloaded at build
# time. The library comes from the CPU wheel of the PyPI package `onnxruntime`, which needs only
# libc, libstdc++ and libgcc_s. Running the script again when the library is there does nothing.
#
# Usage: scripts/fetch-onnxruntime.sh            (prints the library's path on stdout)
#        ORT_VERSION=1.32.0 scripts/fetch-onnxruntime.sh
#
# Afterwards Loupe finds the library by itself in a development checkout; elsewhere copy it next
# to the `loupe` executable or point ORT_DYLIB_PATH at it.
set -euo pipefail

# 1.24.4 is what the rapid_layout reference outputs and the benchmark were made with; ort
# 2.0.0-rc.15 needs at least 1.17 (it asks for API version 17).
ORT_VERSION="${ORT_VERSION:-1.24.4}"
# The default is pinned: one wheel, named by platform and Python version so that the pin does not
# depend on the host's Python (the library inside is the same in every cp3xx wheel), and the
# sha256 of the wheel and of the library. A version set by hand is fetched unpinned.
PINNED_VERSION=1.24.4
PINNED_WHEEL=onnxruntime-1.24.4-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
PINNED_WHEEL_SHA256=0d640eb9f3782689b55cfa715094474cd5662f2f137be6a6f847a594b6e9705c
PINNED_LIB_SHA256=2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/.tools/onnxruntime"

find_library() {
    # The newest matching file, should several versions have been fetched by hand.
    [[ -d "$dest" ]] || return 0
    find "$dest" -maxdepth 1 -name 'libonnxruntime.so*' -type f | sort -V | tail -n 1
}

existing="$(find_library)"
if [[ -n "$existing" ]]; then
    echo "$existing"
    exit 0
fi

case "$(uname -s)" in
    Linux) ;;
    *)
        echo "fetch-onnxruntime.sh: only Linux is handled; on $(uname -s) install ONNX Runtime" \
            ">= 1.17 yourself and set ORT_DYLIB_PATH to its shared library" >&2
        exit 1
        ;;
esac

# The project's virtual environment has pip (scripts/setup.sh makes it); the system Python on
# Debian and Ubuntu may have none.
python="${PYTHON:-python3}"
[[ -z "${PYTHON:-}" && -x "$repo_root/.venv/bin/python3" ]] && python="$repo_root/.venv/bin/python3"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "fetch-onnxruntime.sh: $python is needed to download the onnxruntime wheel from PyPI" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-onnxruntime.sh: downloading onnxruntime==$ORT_VERSION from PyPI" >&2
# --no-deps because only the shared library inside is wanted (numpy and friends are not).
pinned=""
if [[ "$ORT_VERSION" == "$PINNED_VERSION" && "$(uname -m)" == x86_64 ]]; then
    pinned=1
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        --platform manylinux_2_28_x86_64 --python-version 3.12 --implementation cp --abi cp312 \
        "onnxruntime==$ORT_VERSION" -d "$tmp" >&2
    got="$(sha256sum "$tmp/$PINNED_WHEEL" | cut -d' ' -f1)"
    if [[ "$got" != "$PINNED_WHEEL_SHA256" ]]; then
        echo "fetch-onnxruntime.sh: $PINNED_WHEEL has sha256 $got, pinned $PINNED_WHEEL_SHA256" >&2
        exit 1
    fi
else
    # pip picks the wheel that fits this machine's Python and platform.
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        "onnxruntime==$ORT_VERSION" -d "$tmp" >&2
fi

wheel="$(find "$tmp" -maxdepth 1 -name 'onnxruntime-*.whl' | head -n 1)"
if [[ -z "$wheel" ]]; then
    echo "fetch-onnxruntime.sh: pip did not produce an onnxruntime wheel in $tmp" >&2
    exit 1
fi

mkdir -p "$tmp/unpacked"
# A wheel is a zip file; Python's zipfile is used so that `unzip` need not be installed.
"$python" - "$wheel" "$tmp/unpacked" <<'EOF'
import sys
import zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")]
    if not names:
        sys.exit(f"no onnxruntime/capi/libonnxruntime.so* inside {wheel}")
    for name in names:
        zf.extract(name, out)
EOF

if [[ -n "$pinned" ]]; then
    got="$(sha256sum "$tmp/unpacked/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" | cut -d' ' -f1)"
    if [[ "$got" != "$PINNED_LIB_SHA256" ]]; then
        echo "fetch-onnxruntime.sh: libonnxruntime.so.$ORT_VERSION has sha256 $got, pinned $PINNED_LIB_SHA256" >&2
        exit 1
    fi
fi

mkdir -p "$dest"
for lib in "$tmp/unpacked/onnxruntime/capi/"libonnxruntime.so*; do
    # Copy to a temporary name first so that a concurrent run never sees half a library.
    name="$(basename "$lib")"
    cp "$lib" "$dest/.$name.partial"
    mv "$dest/.$name.partial" "$dest/$name"
done

find_library
