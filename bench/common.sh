# common.sh — sourced by the bench scripts: paths, tools, helpers.
# Every script writes long-format CSV rows "scenario,metric,unit,system,value"
# (one row per measurement, repeated runs repeat rows) and hands them to
# bench/report.py, which writes bench/results/<name>.md and .csv.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$BENCH_SRC/build-bench}
RESULTS=${RESULTS:-$BENCH_SRC/bench/results}
BENCH_DIR=${BENCH_DIR:-/var/tmp/glidefs-bench}
BENCH_QUICK=${BENCH_QUICK:-0}
PY=/usr/bin/python3
GLIDEFSD=${GLIDEFSD:-$BUILD/daemon/glidefsd}
LIB_BENCH=${LIB_BENCH:-$BUILD/bench/lib_bench}
mkdir -p "$RESULTS"
# which source the numbers are of (a tree without .git may name it in .head)
BENCH_COMMIT=${BENCH_COMMIT:-$(git -C "$BENCH_SRC" describe --always --dirty 2>/dev/null ||
                               cat "$BENCH_SRC/.head" 2>/dev/null || echo unknown)}
export BENCH_COMMIT

need() {
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "bench: missing $t (scripts/deps.sh)" >&2; exit 1; }
    done
}

# Drop the page cache of the files under the given paths (posix_fadvise
# DONTNEED; dirty pages are written back first), without touching the rest
# of the machine's cache.
drop_cache() {
    $PY - "$@" <<'EOF'
import os, sys
for top in sys.argv[1:]:
    paths = [top] if os.path.isfile(top) else [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fdatasync(fd)
        except OSError:
            pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
EOF
}

# CPU ticks (user+system) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Wait until a process has used (almost) no CPU for two consecutive seconds.
wait_idle() {  # wait_idle PID [MAX_S]
    local pid=$1 max=${2:-180} quiet=0 a b deadline=$((SECONDS + ${2:-180}))
    while [ $quiet -lt 2 ] && [ $SECONDS -lt $deadline ]; do
        a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
        if [ $((b - a)) -le 2 ]; then quiet=$((quiet + 1)); else quiet=0; fi
    done
}

wait_sock() {  # wait_sock PATH PID EXPORT
    local deadline=$((SECONDS + 30))
    until [ -S "$1" ] && nbdinfo --size "nbd+unix:///$3?socket=$1" >/dev/null 2>&1; do
        kill -0 "$2" 2>/dev/null || { echo "bench: server died" >&2; return 1; }
        [ $SECONDS -lt $deadline ] || { echo "bench: timeout waiting for $1" >&2; return 1; }
        sleep 0.1
    done
}

# report NAME TITLE CSV COMMAND NOTES_FILE [more report.py args]
report() {
    local name=$1 title=$2 csvf=$3 cmd=$4 notes=$5
    shift 5
    $PY "$BENCH_SRC/bench/report.py" --name "$name" --title "$title" --csv "$csvf" \
        --cmd "$cmd" --notes "$notes" --bench-dir "$BENCH_DIR" --out "$RESULTS" "$@"
}
