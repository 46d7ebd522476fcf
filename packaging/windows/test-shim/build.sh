#!/usr/bin/env bash
# Builds the test-only bcryptprimitives.dll (see processprng.c) into packaging/build/test-shim/.
# Never put it into an installer: real Windows has its own.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../../build/test-shim"
mkdir -p "$out"
x86_64-w64-mingw32-gcc -O2 -shared -o "$out/bcryptprimitives.dll" \
    "$here/processprng.c" "$here/processprng.def" -lbcrypt
echo "$out/bcryptprimitives.dll"
