# lib.sh — shared shell helpers for glidefsd integration tests: a temporary
# directory, a config, start the daemon and poll (with a deadline) until its
# socket answers, and a trap that always stops it. Source it after setting
# GLIDEFSD=path/to/glidefsd.
set -euo pipefail
export PATH=/usr/bin:/bin:$PATH

need() {
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t not installed" >&2; exit 77; }
    done
}

T=$(mktemp -d /tmp/glidefsd-test.XXXXXX)
DAEMON_PID=
cleanup() {
    local rc=$?
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -9 "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if grep -qE "Sanitizer|runtime error:" "$T"/*.log 2>/dev/null; then
        echo "FAIL: sanitizer report in the glidefsd log" >&2
        rc=1
    fi
    if [ $rc -ne 0 ]; then
        echo "--- glidefsd log ---" >&2
        tail -n 100 "$T"/*.log >&2 2>/dev/null || true
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT

# write_config NAME CACHE_DIR [SIZE]: $T/NAME.yaml, socket $T/NAME.sock
write_config() {
    local name=$1 cache=$2 size=${3:-64M}
    mkdir -p "$T/store" "$cache"
    cat > "$T/$name.yaml" <<EOC
cache:
  dir: $cache
  disk_size_gb: 4
storage:
  url: file://$T/store
servers:
  shutdown_timeout_s: 120
  nbd:
    unix_socket: $T/$name.sock
    auto_create_size: $size
    sync_delay_ms: 20
  api:
    listen: ""
EOC
}

# start_daemon NAME: starts glidefsd on $T/NAME.yaml; waits for its socket.
start_daemon() {
    local name=$1
    "$GLIDEFSD" -c "$T/$name.yaml" --log-level info 2>>"$T/$name.log" &
    DAEMON_PID=$!
    SOCK=$T/$name.sock
    local deadline=$((SECONDS + 20))
    until [ -S "$SOCK" ] && nbdinfo --size "nbd+unix:///probe?socket=$SOCK" >/dev/null 2>&1; do
        kill -0 "$DAEMON_PID" 2>/dev/null || { echo "glidefsd exited" >&2; return 1; }
        [ $SECONDS -lt $deadline ] || { echo "glidefsd socket timeout" >&2; return 1; }
        sleep 0.05
    done
}

# stop_daemon: SIGTERM and wait; returns its exit status.
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=
    return $rc
}
