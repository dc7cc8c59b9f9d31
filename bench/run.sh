#!/bin/bash
# run.sh — the one entry point of the GlideFS benchmarks (issue 11).
#
#   bench/run.sh                  full run (~25 min on 2 cores)
#   BENCH_QUICK=1 bench/run.sh    smoke run (a few minutes): smaller sizes, shorter phases
#   bench/run.sh nbd lib s3       only these parts (default: all three)
#
# Builds glidefs in release mode into build-bench/ (meson --buildtype=release),
# then runs every scenario against its peer in the same run on this machine:
#   nbd  bench/nbd_fio.sh   glidefsd vs nbdkit file vs qemu-nbd vs raw file (fio)
#   lib  bench/lib.sh       in-process latency/IOPS, FLUSH, memory, churn,
#                           encryption/compression, zipf cache hit rate
#   s3   bench/s3_bench.sh  drain / woken read / cold read vs aws s3 cp and a GET loop
# and writes bench/results/: <name>.md + <name>.csv per part, PNG plots
# (gnuplot), and README.md with the targets table and the machine.
# Needs (Debian 12): fio nbdkit qemu-utils libnbd-bin awscli curl gnuplot-nox
# e2fsprogs zstd, node + npm (s3rver): `scripts/deps.sh --bench` (run first) installs
# what is missing.
# Scratch space: BENCH_DIR (default /var/tmp/glidefs-bench), ~6 GiB, removed at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export BENCH_QUICK=${BENCH_QUICK:-0}
export BUILD=${BUILD:-$HERE/../build-bench}
export BENCH_DIR=${BENCH_DIR:-/var/tmp/glidefs-bench}
export RESULTS=${RESULTS:-$HERE/results}
. "$HERE/common.sh"
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(nbd lib s3)
"$HERE/../scripts/deps.sh" --bench   # installs only what is missing
need meson ninja gnuplot
start=$SECONDS

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    if [ ! -f "$BUILD/build.ninja" ]; then
        # tests off when that configures (faster); the full default otherwise
        meson setup "$BUILD" "$BENCH_SRC" --buildtype=release -Dtests=false >/dev/null ||
            meson setup --wipe "$BUILD" "$BENCH_SRC" --buildtype=release >/dev/null
    fi
    ninja -C "$BUILD" >/dev/null
fi
grep -q "buildtype=release\|'buildtype': 'release'" "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null ||
    $PY - "$BUILD" <<'EOF' || { echo "run.sh: $BUILD is not a release build" >&2; exit 1; }
import json, sys
opts = json.load(open(sys.argv[1] + "/meson-info/intro-buildoptions.json"))
sys.exit(0 if any(o["name"] == "buildtype" and o["value"] == "release" for o in opts) else 1)
EOF

mkdir -p "$BENCH_DIR" "$RESULTS"
rm -f "$RESULTS"/.*.summary.json
failed=()
for p in "${PARTS[@]}"; do
    case $p in
        nbd) script=nbd_fio.sh ;;
        lib) script=lib.sh ;;
        s3) script=s3_bench.sh ;;
        *) echo "run.sh: unknown part $p (nbd lib s3)" >&2; exit 2 ;;
    esac
    # one part failing does not stop the others; the exit status says so
    "$HERE/$script" || { echo "run.sh: part $p ($script) FAILED" >&2; failed+=("$p"); }
done
elapsed=$((SECONDS - start))
cmd="bench/run.sh"
[ "$BENCH_QUICK" = 1 ] && cmd="BENCH_QUICK=1 bench/run.sh"
[ ${#PARTS[@]} -lt 3 ] && cmd="$cmd ${PARTS[*]}"
$PY "$HERE/report.py" --readme --out "$RESULTS" --cmd "$cmd" --elapsed $elapsed \
    --bench-dir "$BENCH_DIR" >/dev/null
echo "run.sh: done in $((elapsed / 60)) min $((elapsed % 60)) s; see $RESULTS/README.md" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: FAILED parts: ${failed[*]} (scratch kept in $BENCH_DIR)" >&2
    exit 1
fi
rm -rf "$BENCH_DIR"
