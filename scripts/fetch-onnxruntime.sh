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

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "fetch-onnxruntime.sh: $python is needed to download the onnxruntime wheel from PyPI" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-onnxruntime.sh: downloading onnxruntime==$ORT_VERSION from PyPI" >&2
# pip picks the wheel that fits this machine's Python and platform; --no-deps because only the
# shared library inside is wanted (numpy and friends are not).
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    "onnxruntime==$ORT_VERSION" -d "$tmp" >&2

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

mkdir -p "$dest"
for lib in "$tmp/unpacked/onnxruntime/capi/"libonnxruntime.so*; do
    # Copy to a temporary name first so that a concurrent run never sees half a library.
    name="$(basename "$lib")"
    cp "$lib" "$dest/.$name.partial"
    mv "$dest/.$name.partial" "$dest/$name"
done

find_library
