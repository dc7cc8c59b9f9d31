#!/bin/bash
# qd1_ab.sh — a quick interleaved A/B of NBD latency: glidefsd (one or two
# builds) against nbdkit's file plugin, on the same disk, in the same run.
#
# Scenarios (fio nbd engine over unix sockets, 4 KiB, one connection):
# randwrite and randread (cached) at QD1 and QD64. Each scenario runs REPS
# times with the servers interleaved (A B [C] A B [C] ...); the script prints
# the median latency mean/p50/p99 (µs) both as fio's total "lat" and as its
# "clat" (bench/nbd_fio.sh's metric: with fio's nbd engine clat starts only
# once the request is on the socket, so server work that overlaps fio's own
# submission path is not in it), IOPS, the server's context switches per
# request (all its threads, from /proc), and the ratio of each glidefsd to
# nbdkit. Setup as bench/nbd_fio.sh: a file:// store and the cache dir on the
# same disk as nbdkit's image, the data set written first and drained.
#
#   bench/qd1_ab.sh                    (glidefsd of $BUILD, default build-bench)
#   GLIDEFSD_B=/path/to/other/glidefsd bench/qd1_ab.sh   (before/after)
# env: BUILD, GLIDEFSD, GLIDEFSD_B, REPS (5), RUNTIME (QD1 s, 10),
#      RUNTIME64 (QD64 s, 5; both >= 3), SIZE_MB (256), SCEN ("randwrite:1 randread:1
#      randwrite:64 randread:64"), KEEP=1 keeps the scratch dir,
#      PIN="S F" pins the servers to CPU list S and fio to F (taskset), e.g.
#      PIN="0 0" (same CPU: the CPU cost of the path) or PIN="0 1" (each
#      request crosses CPUs twice); unset: the scheduler decides.
# Every server gets its own socket in a fresh mktemp directory (so they never
# collide with another run), the REST API is off, and every server started is
# stopped on exit.
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build-bench}
GLIDEFSD=${GLIDEFSD:-$BUILD/daemon/glidefsd}
GLIDEFSD_B=${GLIDEFSD_B:-}
REPS=${REPS:-5}
RUNTIME=${RUNTIME:-10}
RUNTIME64=${RUNTIME64:-5}
SIZE_MB=${SIZE_MB:-256}
SCEN=${SCEN:-"randwrite:1 randread:1 randwrite:64 randread:64"}
[ "$RUNTIME" -ge 3 ] && [ "$RUNTIME64" -ge 3 ] ||
    { echo "qd1_ab: RUNTIME and RUNTIME64 must be >= 3 (s)" >&2; exit 1; }
PY=/usr/bin/python3
SPIN=() FPIN=()
if [ -n "${PIN:-}" ]; then
    read -r ps pf <<<"$PIN"
    SPIN=(taskset -c "$ps") FPIN=(--cpus_allowed="$pf")
fi
for t in fio nbdkit nbdcopy nbdinfo; do
    command -v $t >/dev/null || { echo "qd1_ab: missing $t" >&2; exit 1; }
done
for g in "$GLIDEFSD" ${GLIDEFSD_B:+"$GLIDEFSD_B"}; do
    [ -x "$g" ] || { echo "qd1_ab: no $g (build first, or set GLIDEFSD)" >&2; exit 1; }
done

D=$(mktemp -d /var/tmp/qd1ab-XXXXXX)
declare -A GPID=() URI=() BIN=()
NPID=
cleanup() {
    for s in "${!GPID[@]}"; do
        [ -n "${GPID[$s]}" ] && kill -TERM "${GPID[$s]}" 2>/dev/null || true
    done
    [ -n "$NPID" ] && kill "$NPID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "qd1_ab: kept $D" >&2 || rm -rf "$D"
}
trap cleanup EXIT

wait_sock() {  # wait_sock URI PID
    local deadline=$((SECONDS + 30))
    until nbdinfo --size "$1" >/dev/null 2>&1; do
        kill -0 "$2" 2>/dev/null || { echo "qd1_ab: server died" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "qd1_ab: timeout waiting for $1" >&2; exit 1; }
        sleep 0.1
    done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
wait_idle() {  # until PID used (almost) no CPU for 2 s in a row
    local pid=$1 quiet=0 a b deadline=$((SECONDS + 300))
    while [ $quiet -lt 2 ] && [ $SECONDS -lt $deadline ]; do
        a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
        if [ $((b - a)) -le 2 ]; then quiet=$((quiet + 1)); else quiet=0; fi
    done
}
ctxsw() {  # context switches of all threads of PID
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}

start_glidefsd() {  # start_glidefsd NAME BINARY
    local n=$1 dir=$D/$1
    mkdir -p "$dir/store"
    cat > "$dir/glidefs.yaml" <<EOF
cache:
  dir: $dir/cache
  disk_size_gb: 8
storage:
  url: file://$dir/store
servers:
  shutdown_timeout_s: 600
  api:
    listen: ""
  nbd:
    unix_socket: $dir/sock
    auto_create_size: ${SIZE_MB}M
EOF
    "${SPIN[@]}" "$2" -c "$dir/glidefs.yaml" --log-level warn 2>>"$dir/log" &
    GPID[$n]=$!
    BIN[$n]=$2
    URI[$n]="nbd+unix:///bench?socket=$dir/sock"
    wait_sock "${URI[$n]}" "${GPID[$n]}"
}

SYSTEMS=(glidefsd)
start_glidefsd glidefsd "$GLIDEFSD"
if [ -n "$GLIDEFSD_B" ]; then
    start_glidefsd glidefsd-B "$GLIDEFSD_B"
    SYSTEMS+=(glidefsd-B)
fi
truncate -s ${SIZE_MB}M "$D/n.img"
# (through a link of another name: a stray `pkill nbdkit` from other work on
# this machine must not end our server mid-run)
ln -s "$(command -v nbdkit)" "$D/nbdk"
"${SPIN[@]}" "$D/nbdk" --foreground --unix "$D/n.sock" file "$D/n.img" &
NPID=$!
URI[nbdkit]="nbd+unix:///?socket=$D/n.sock"
wait_sock "${URI[nbdkit]}" $NPID
SYSTEMS+=(nbdkit)
pid_of() { if [ "$1" = nbdkit ]; then echo $NPID; else echo "${GPID[$1]}"; fi; }

echo "qd1_ab: writing ${SIZE_MB} MiB to each server (dir $D)" >&2
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$D/fill.raw"
for s in "${SYSTEMS[@]}"; do nbdcopy --flush "$D/fill.raw" "${URI[$s]}"; done
rm -f "$D/fill.raw"
sleep 6
for s in "${SYSTEMS[@]}"; do [ "$s" = nbdkit ] || wait_idle "${GPID[$s]}"; done

CSV=$D/rows.csv
: > "$CSV"
mkdir -p "$D/json"
for spec in $SCEN; do
    rw=${spec%%:*} qd=${spec##*:}
    rt=$RUNTIME
    [ "$qd" -gt 1 ] && rt=$RUNTIME64
    for ((rep = 0; rep < REPS; rep++)); do
        for s in "${SYSTEMS[@]}"; do
            out=$D/json/$s-$rw-$qd-$rep.json
            pid=$(pid_of "$s")
            fio --name=ab --ioengine=nbd --uri="${URI[$s]}" "${FPIN[@]}" --rw="$rw" --bs=4k \
                --iodepth="$qd" --size=${SIZE_MB}M --time_based --runtime="$rt" --ramp_time=1 \
                --randrepeat=0 --norandommap --lat_percentiles=1 --clat_percentiles=1 \
                --output-format=json --output="$out" \
                >"$out.err" 2>&1 &
            fpid=$!
            # context switches sampled inside the run: the connection's
            # threads exit with it (and their counts with them)
            sleep 2
            c0=$(ctxsw "$pid")
            sleep $((rt - 2))
            c1=$(ctxsw "$pid")
            wait $fpid || { echo "qd1_ab: fio failed: $s $rw QD$qd" >&2; cat "$out.err" >&2; }
            $PY - "$out" "$s" "$rw QD$qd" $((c1 - c0)) "$rt" >> "$CSV" <<'EOF' || true
import json, sys
out, s, scen, cs, rt = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
j = json.load(open(out))["jobs"][0]
d = "write" if "write" in scen else "read"
c = j[d]["clat_ns"]; pc = c.get("percentile", {})
t = j[d]["lat_ns"]; pt = t.get("percentile", {})
# the ctx-switch count covers rt - 2 s of the run (from 2 s to rt s)
reqs = j[d]["iops"] * (rt - 2)
us = lambda ns: "%.2f" % (ns / 1e3)
print(",".join([scen, s, "%.0f" % j[d]["iops"], us(t["mean"]), us(pt.get("50.000000", 0)),
                us(pt.get("99.000000", 0)), us(c["mean"]), us(pc.get("50.000000", 0)),
                us(pc.get("99.000000", 0)), "%.3f" % (cs / reqs if reqs else 0)]))
EOF
            echo "  $(tail -1 "$CSV")" >&2
            if [ "$s" != nbdkit ] && [ "$rw" != randread ]; then
                sleep 6               # the idle export drains: not into the next run
                wait_idle "$pid"
            fi
        done
    done
done

$PY - "$CSV" <<'EOF'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
cols = ["IOPS", "lat", "lat50", "lat99", "clat", "clat50", "clat99", "ctxsw/req"]
scens = list(dict.fromkeys(r[0] for r in rows))
print("\nmedians over the runs, us; lat = fio's total latency (submit to completion),"
      "\nclat = fio's completion latency (what bench/nbd_fio.sh reports; for the nbd engine"
      "\nit starts only after the request was sent); ratio = glidefsd / nbdkit")
for sc in scens:
    print("\n## %s (%d runs each)" % (sc, sum(1 for r in rows if r[0] == sc and r[1] == "nbdkit")))
    sysnames = list(dict.fromkeys(r[1] for r in rows if r[0] == sc))
    med = {}
    for s in sysnames:
        vals = [[float(x) for x in r[2:]] for r in rows if r[0] == sc and r[1] == s]
        med[s] = [statistics.median(v[i] for v in vals) for i in range(len(cols))]
        print("%-11s " % s + " ".join("%s %.1f" % (n, x) for n, x in zip(cols, med[s]))
              + "  (lat mean %.1f..%.1f)" % (min(v[1] for v in vals), max(v[1] for v in vals)))
    for s in sysnames:
        if s != "nbdkit" and "nbdkit" in med:
            m, n = med[s], med["nbdkit"]
            print("ratio %-11s lat mean %.2fx p50 %.2fx p99 %.2fx | clat mean %.2fx p50 %.2fx "
                  "p99 %.2fx | time/request (1/IOPS) %.2fx" % (
                      s, m[1] / n[1], m[2] / n[2], m[3] / n[3], m[4] / n[4], m[5] / n[5],
                      m[6] / n[6], n[0] / m[0]))
EOF
