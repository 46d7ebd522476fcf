#!/usr/bin/env bash
# Type-checks Loupe for macOS (aarch64-apple-darwin) on Linux: what can be checked of the Mac
# build without a Mac. Linking needs Apple's SDK, so nothing here makes a runnable binary.
#
# Usage: packaging/macos/check-on-linux.sh
#
# Needs `rustup target add aarch64-apple-darwin` and zig as the C compiler for the crates that
# build C (SQLite, libjpeg-turbo, blake3…): `pip install ziglang` into a virtual environment
# and set ZIG_PYTHON to its python (default: python3 -m ziglang). cc-rs adds
# `--target=arm64-apple-macosx…` and `-mmacosx-version-min=…`, which zig rejects: the wrapper
# drops them and passes `-target aarch64-macos` instead.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${ZIG_PYTHON:-python3}"
"$python" -m ziglang version >/dev/null 2>&1 ||
    { echo "check-on-linux.sh: no zig (pip install ziglang; ZIG_PYTHON=that venv's python)" >&2; exit 1; }
rustup target list --installed | grep -qx aarch64-apple-darwin ||
    { echo "check-on-linux.sh: rustup target add aarch64-apple-darwin" >&2; exit 1; }

wrap="$(mktemp -d)"
trap 'rm -rf "$wrap"' EXIT
for tool in cc c++; do
    cat >"$wrap/zig-$tool" <<EOF
#!/usr/bin/env bash
args=()
for a in "\$@"; do
    case "\$a" in
        --target=*|-mmacosx-version-min=*) ;;
        *) args+=("\$a") ;;
    esac
done
exec "$python" -m ziglang $tool -target aarch64-macos "\${args[@]}"
EOF
done
printf '#!/usr/bin/env bash\nexec "%s" -m ziglang ar "$@"\n' "$python" >"$wrap/zig-ar"
chmod +x "$wrap"/zig-*

cd "$repo"
CC_aarch64_apple_darwin="$wrap/zig-cc" CXX_aarch64_apple_darwin="$wrap/zig-c++" \
    AR_aarch64_apple_darwin="$wrap/zig-ar" \
    cargo check --locked --target aarch64-apple-darwin --all-targets
