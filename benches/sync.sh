#!/usr/bin/env bash
# Sync throughput: one client pushes N revisions (default 100 000) and a second client pulls them,
# through the folder store and through a local moto S3 server. Prints the times (target: under
# 5 s each). Packs hold up to 10 000 revisions, so 100k revisions make about 10 objects.
# Usage: benches/sync.sh [N]      (LOUPE_BIN=path/to/loupe to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
if [ -z "${LOUPE_BIN:-}" ]; then
    cargo build --release --quiet --bin loupe
    LOUPE=$PWD/${CARGO_TARGET_DIR:-target}/release/loupe
else
    LOUPE=$(realpath "$LOUPE_BIN")
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loupe-bench-sync.XXXXXX")
PORT=${MOTO_PORT:-5056}
cleanup() {
    MOTO_BUCKET=loupe-bench scripts/moto.sh stop "$PORT" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

# Two clients with their own keys; the owner adds the second to the roster.
setup() { # REMOTE_URL [remote add options...]
    local url=$1
    shift
    rm -rf "$WORK/a" "$WORK/b"
    mkdir -p "$WORK/a" "$WORK/b"
    for c in a b; do
        (cd "$WORK/$c" && LOUPE_CONFIG_DIR=$WORK/cfg-$c "$LOUPE" init "$c.loupe" >/dev/null &&
            LOUPE_CONFIG_DIR=$WORK/cfg-$c "$LOUPE" -p "$c.loupe" remote add origin "$url" "$@" >/dev/null)
    done
    local key_b
    key_b=$(LOUPE_CONFIG_DIR=$WORK/cfg-b "$LOUPE" team key)
    (cd "$WORK/a" && LOUPE_CONFIG_DIR=$WORK/cfg-a "$LOUPE" -p a.loupe team init >/dev/null &&
        LOUPE_CONFIG_DIR=$WORK/cfg-a "$LOUPE" -p a.loupe team add bob --role annotator --key "$key_b" >/dev/null)
    (cd "$WORK/a" && "$LOUPE" -p a.loupe debug-gen-revisions "$N" >/dev/null)
}

run() { # LABEL
    local t0 t1 t2 pushed pulled
    t0=$(now)
    pushed=$(cd "$WORK/a" && LOUPE_CONFIG_DIR=$WORK/cfg-a "$LOUPE" -p a.loupe sync 2>/dev/null)
    t1=$(now)
    pulled=$(cd "$WORK/b" && LOUPE_CONFIG_DIR=$WORK/cfg-b "$LOUPE" -p b.loupe sync 2>/dev/null)
    t2=$(now)
    echo "$1 push: $(secs "$t0" "$t1") s   ($(echo "$pushed" | head -1 | sed 's/.*: //'))"
    echo "$1 pull: $(secs "$t1" "$t2") s   ($(echo "$pulled" | head -1 | sed 's/.*: //'))"
    local ha hb
    ha=$(echo "$pushed" | grep '^state' || true)
    hb=$(echo "$pulled" | grep '^state' || true)
    [ "$ha" = "$hb" ] || echo "$1: state hashes differ after push ($ha) and pull ($hb); client a has not pulled b's view yet" >&2
}

echo "sync benchmark: $N revisions ($LOUPE)"
setup "$WORK/store"
run "folder"
echo "  objects in the folder store: $(find "$WORK/store/log" -type f | wc -l)"

ENDPOINT=$(MOTO_BUCKET=loupe-bench scripts/moto.sh start "$PORT")
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
setup "s3://loupe-bench/run-$$-$RANDOM" --endpoint "$ENDPOINT" --allow-http
run "moto S3"
