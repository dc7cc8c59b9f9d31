#!/bin/bash
# nbd_flush.sh — FLUSH after every write over NBD (issue 24): glidefsd (one
# or two builds) against nbdkit's file plugin, on the same disk, in the same
# run, the servers interleaved (A [B] nbdkit A [B] nbdkit ...).
#
# Scenarios (fio nbd engine over unix sockets, 4 KiB randwrite, QD1,
# fsync=1: a FLUSH after every write, which is what a database in the guest
# does on commit): one job, and JOBS_MANY jobs (default 16), each job its own
# NBD connection. Per run: write IOPS, FLUSH latency (fio's "sync" latency)
# mean/p50/p99, and per write+flush pair: the server's CPU time (utime+stime
# of all its threads, /proc/PID/stat), its context switches (all threads),
# and the disk's write requests (/proc/diskstats of the disk under the
# scratch dir: the whole machine's, so other load shows up in it). The
# counters are sampled inside the run, from 2 s to RUNTIME s. Prints the
# medians and each glidefsd's ratios to nbdkit.
#
#   bench/nbd_flush.sh                    (glidefsd of $BUILD, default build-bench)
#   GLIDEFSD_B=/path/to/other/glidefsd bench/nbd_flush.sh   (before/after)
# env: BUILD, GLIDEFSD, GLIDEFSD_B, REPS (3), RUNTIME (s, 10, >= 4),
#      SIZE_MB (256), JOBS ("1 16": the numjobs values), KEEP=1 keeps the
#      scratch dir.
# Setup as bench/qd1_ab.sh: a file:// store and the cache dir on the same
# disk as nbdkit's image, the data set written to every server first
# (nbdcopy, so nbdkit overwrites allocated blocks) and drained. Every server
# gets its own socket in a fresh mktemp directory, the REST API is off, and
# every server started is stopped by its PID on exit.
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build-bench}
GLIDEFSD=${GLIDEFSD:-$BUILD/daemon/glidefsd}
GLIDEFSD_B=${GLIDEFSD_B:-}
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
SIZE_MB=${SIZE_MB:-256}
JOBS=${JOBS:-"1 16"}
[ "$RUNTIME" -ge 4 ] || { echo "nbd_flush: RUNTIME must be >= 4 (s)" >&2; exit 1; }
PY=/usr/bin/python3
for t in fio nbdkit nbdcopy nbdinfo; do
    command -v $t >/dev/null || { echo "nbd_flush: missing $t" >&2; exit 1; }
done
for g in "$GLIDEFSD" ${GLIDEFSD_B:+"$GLIDEFSD_B"}; do
    [ -x "$g" ] || { echo "nbd_flush: no $g (build first, or set GLIDEFSD)" >&2; exit 1; }
done

D=$(mktemp -d /var/tmp/nbdflush-XXXXXX)
declare -A GPID=() URI=()
NPID=
cleanup() {
    for s in "${!GPID[@]}"; do
        [ -n "${GPID[$s]}" ] && kill -TERM "${GPID[$s]}" 2>/dev/null || true
    done
    [ -n "$NPID" ] && kill "$NPID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "nbd_flush: kept $D" >&2 || rm -rf "$D"
}
trap cleanup EXIT

# the block device under the scratch dir, for its write counter
DEV=$(basename "$(df --output=source "$D" | tail -1)")
grep -q " $DEV " /proc/diskstats || DEV=
wait_sock() {  # wait_sock URI PID
    local deadline=$((SECONDS + 30))
    until nbdinfo --size "$1" >/dev/null 2>&1; do
        kill -0 "$2" 2>/dev/null || { echo "nbd_flush: server died" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "nbd_flush: timeout waiting for $1" >&2; exit 1; }
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
disk_writes() { [ -n "$DEV" ] && awk -v d="$DEV" '$3 == d {print $8}' /proc/diskstats || echo 0; }

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
    "$2" -c "$dir/glidefs.yaml" --log-level warn 2>>"$dir/log" &
    GPID[$n]=$!
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
"$D/nbdk" --foreground --unix "$D/n.sock" file "$D/n.img" &
NPID=$!
URI[nbdkit]="nbd+unix:///?socket=$D/n.sock"
wait_sock "${URI[nbdkit]}" $NPID
SYSTEMS+=(nbdkit)
pid_of() { if [ "$1" = nbdkit ]; then echo $NPID; else echo "${GPID[$1]}"; fi; }

echo "nbd_flush: writing ${SIZE_MB} MiB to each server (dir $D)" >&2
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$D/fill.raw"
for s in "${SYSTEMS[@]}"; do nbdcopy --flush "$D/fill.raw" "${URI[$s]}"; done
rm -f "$D/fill.raw"
sync -f "$D"
sleep 6
for s in "${SYSTEMS[@]}"; do [ "$s" = nbdkit ] || wait_idle "${GPID[$s]}"; done

CSV=$D/rows.csv
: > "$CSV"
mkdir -p "$D/json"
for jobs in $JOBS; do
    for ((rep = 0; rep < REPS; rep++)); do
        for s in "${SYSTEMS[@]}"; do
            out=$D/json/$s-$jobs-$rep.json
            pid=$(pid_of "$s")
            fio --name=flush --ioengine=nbd --uri="${URI[$s]}" --rw=randwrite --bs=4k \
                --iodepth=1 --numjobs="$jobs" --fsync=1 --group_reporting \
                --size=${SIZE_MB}M --time_based --runtime="$RUNTIME" --ramp_time=1 \
                --randrepeat=0 --norandommap --output-format=json --output="$out" \
                >"$out.err" 2>&1 &
            fpid=$!
            # sampled inside the run: a connection's threads exit with it
            sleep 2
            c0=$(ctxsw "$pid") t0=$(cpu_ticks "$pid") w0=$(disk_writes)
            sleep $((RUNTIME - 2))
            c1=$(ctxsw "$pid") t1=$(cpu_ticks "$pid") w1=$(disk_writes)
            wait $fpid || { echo "nbd_flush: fio failed: $s jobs=$jobs" >&2; cat "$out.err" >&2; }
            $PY - "$out" "$s" "$jobs" $((c1 - c0)) $((t1 - t0)) $((w1 - w0)) "$RUNTIME" \
                "$(getconf CLK_TCK)" >> "$CSV" <<'EOF' || true
import json, sys
out, s, jobs = sys.argv[1], sys.argv[2], sys.argv[3]
cs, ticks, dw, rt, hz = (float(x) for x in sys.argv[4:9])
j = json.load(open(out))["jobs"][0]
iops = j["write"]["iops"]
sl = j["sync"]["lat_ns"]; p = sl.get("percentile", {})
pairs = iops * (rt - 2)   # write+flush pairs in the sampled window
us = lambda ns: "%.1f" % (ns / 1e3)
print(",".join([jobs, s, "%.0f" % iops, us(sl["mean"]), us(p.get("50.000000", 0)),
                us(p.get("99.000000", 0)), "%.1f" % (ticks / hz * 1e6 / pairs if pairs else 0),
                "%.2f" % (cs / pairs if pairs else 0), "%.2f" % (dw / pairs if pairs else 0)]))
EOF
            echo "  $(tail -1 "$CSV")" >&2
            sync -f "$D"   # one run's dirty pages are not written back in the next
            if [ "$s" != nbdkit ]; then
                sleep 6    # the idle export drains: not into the next run
                wait_idle "$pid"
            fi
        done
    done
done

$PY - "$CSV" "$REPS" "$RUNTIME" "$SIZE_MB" <<'EOF'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
cols = ["IOPS", "flush mean", "flush p50", "flush p99", "CPU us/op", "ctxsw/op", "disk writes/op"]
print("\n4 KiB randwrite, QD1 per job, FLUSH after every write (fio fsync=1), %s s runs, "
      "%s MiB; medians of %s runs; flush latencies in us; /op = per write+flush pair"
      % (sys.argv[3], sys.argv[4], sys.argv[2]))
for jobs in dict.fromkeys(r[0] for r in rows):
    print("\n## %s job%s (each its own connection)" % (jobs, "" if jobs == "1" else "s"))
    print("| system | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    med = {}
    for s in dict.fromkeys(r[1] for r in rows if r[0] == jobs):
        vals = [[float(x) for x in r[2:]] for r in rows if r[0] == jobs and r[1] == s]
        med[s] = [statistics.median(v[i] for v in vals) for i in range(len(cols))]
        print("| %s | " % s + " | ".join("%.1f" % x if i else "%.0f" % x
                                         for i, x in enumerate(med[s])) + " |")
    n = med.get("nbdkit")
    for s, m in med.items():
        if s != "nbdkit" and n:
            print("\nratio %s/nbdkit: IOPS %.2fx, flush mean %.2fx, p99 %.2fx, CPU/op %.2fx"
                  % (s, m[0] / n[0], m[1] / n[1], m[3] / n[3], m[4] / n[4] if n[4] else 0))
EOF
