#!/usr/bin/env bash
# A local moto S3 server for sync benchmarks and manual tests, on 127.0.0.1 only.
# Installs moto with pip if it is missing (idempotent). The integration tests start their own.
#
# Usage: scripts/moto.sh start [PORT]    start (or reuse) a server; prints its endpoint
#        scripts/moto.sh stop [PORT]     stop the server started by `start`
#        scripts/moto.sh status [PORT]
# Environment: MOTO_PORT (default 5055), MOTO_BUCKET (created on start; default loupe-bench).
# Clients use AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1.
set -euo pipefail
cmd=${1:-start}
PORT=${2:-${MOTO_PORT:-5055}}
BUCKET=${MOTO_BUCKET:-loupe-bench}
STATE=${TMPDIR:-/tmp}/loupe-moto-$PORT
PIDFILE=$STATE.pid
LOG=$STATE.log
ENDPOINT=http://127.0.0.1:$PORT

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

http() { # METHOD URL -> HTTP status (000 when nothing answers)
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(urllib.request.Request(sys.argv[2], method=sys.argv[1]), timeout=2)
    print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}

case "$cmd" in
start)
    python3 -c 'import moto.server' 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check 'moto[server]' >&2
    if ! running; then
        nohup python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
        echo $! >"$PIDFILE"
        for _ in $(seq 1 100); do
            [ "$(http GET "$ENDPOINT/")" != "000" ] && break
            sleep 0.1
        done
        running || { echo "moto did not start; see $LOG" >&2; exit 1; }
    fi
    status=$(http PUT "$ENDPOINT/$BUCKET")
    case "$status" in
    200 | 409) ;;
    *) echo "cannot create bucket $BUCKET (HTTP $status); see $LOG" >&2; exit 1 ;;
    esac
    echo "$ENDPOINT"
    ;;
stop)
    if running; then
        kill "$(cat "$PIDFILE")"
    fi
    rm -f "$PIDFILE"
    ;;
status)
    if running; then echo "running at $ENDPOINT (pid $(cat "$PIDFILE"))"; else echo "not running"; exit 1; fi
    ;;
*)
    echo "usage: $0 start|stop|status [PORT]" >&2
    exit 2
    ;;
esac
