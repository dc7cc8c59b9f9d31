#!/bin/bash
# nbd_fio.sh — fio's nbd engine against glidefsd, nbdkit's file plugin and
# qemu-nbd, all on the same disk in the same run, over unix sockets.
# Workloads: 4 KiB random read, random write and 70/30 mixed, queue depth 1
# and 64, one job. The data set is written first so reads hit cached data.
#
# usage: bench/nbd_fio.sh [GLIDEFSD]   (default: build/daemon/glidefsd)
# env:   BENCH_DIR   where the files live (default /var/tmp/glidefs-bench)
#        SIZE_MB     data set size (default 1024)
#        RUNTIME     seconds per workload (default 20)
#        OUT         results file (default bench/nbd_fio_results.md)
# Targets (issue 4): glidefsd >= 90% of nbdkit-file IOPS on cached data, and
# queue-depth-1 write latency within 1.2x of nbdkit-file.
set -euo pipefail
export PATH=/usr/bin:/bin:$PATH
HERE=$(cd "$(dirname "$0")" && pwd)
GLIDEFSD=$(realpath "${1:-$HERE/../build/daemon/glidefsd}")
BENCH_DIR=${BENCH_DIR:-/var/tmp/glidefs-bench}
SIZE_MB=${SIZE_MB:-1024}
RUNTIME=${RUNTIME:-20}
OUT=${OUT:-$HERE/nbd_fio_results.md}
for t in fio nbdkit qemu-nbd nbdcopy python3; do
    command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "this fio has no nbd engine" >&2; exit 1; }

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{store,cache,json}
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_sock() {  # wait_sock PATH PID
    local deadline=$((SECONDS + 30))
    until [ -S "$1" ] && nbdinfo --size "nbd+unix:///?socket=$1" >/dev/null 2>&1 ||
          nbdinfo --size "nbd+unix:///bench?socket=$1" >/dev/null 2>&1; do
        kill -0 "$2" 2>/dev/null || { echo "server died" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "timeout waiting for $1" >&2; exit 1; }
        sleep 0.1
    done
}

# --- servers ---------------------------------------------------------------
cat > "$BENCH_DIR/glidefs.yaml" <<EOF
cache:
  dir: $BENCH_DIR/cache
  disk_size_gb: $(( (SIZE_MB * 3) / 1024 + 2 ))
storage:
  url: file://$BENCH_DIR/store
servers:
  shutdown_timeout_s: 600
  nbd:
    unix_socket: $BENCH_DIR/glidefs.sock
    auto_create_size: ${SIZE_MB}M
EOF
"$GLIDEFSD" -c "$BENCH_DIR/glidefs.yaml" --log-level warn 2>"$BENCH_DIR/glidefsd.log" &
PIDS+=($!)
wait_sock "$BENCH_DIR/glidefs.sock" $!

truncate -s ${SIZE_MB}M "$BENCH_DIR/nbdkit.img"
nbdkit --foreground --unix "$BENCH_DIR/nbdkit.sock" file "$BENCH_DIR/nbdkit.img" &
PIDS+=($!)
wait_sock "$BENCH_DIR/nbdkit.sock" $!

truncate -s ${SIZE_MB}M "$BENCH_DIR/qemu.img"
qemu-nbd --format=raw --socket="$BENCH_DIR/qemu.sock" --export-name=bench --shared=8 --persistent \
    --cache=writeback --aio=threads --discard=unmap "$BENCH_DIR/qemu.img" &
PIDS+=($!)
wait_sock "$BENCH_DIR/qemu.sock" $!

declare -A URI=(
    [glidefsd]="nbd+unix:///bench?socket=$BENCH_DIR/glidefs.sock"
    [nbdkit-file]="nbd+unix:///?socket=$BENCH_DIR/nbdkit.sock"
    [qemu-nbd]="nbd+unix:///bench?socket=$BENCH_DIR/qemu.sock"
)
SERVERS=(glidefsd nbdkit-file qemu-nbd)

# --- precondition: every byte written once, so reads are of cached data ----
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$BENCH_DIR/fill.raw"
for s in "${SERVERS[@]}"; do
    nbdcopy --flush "$BENCH_DIR/fill.raw" "${URI[$s]}"
done
rm -f "$BENCH_DIR/fill.raw"
# glidefsd uploads written data in the background (sync_delay_ms later);
# each run starts once that is done, so no run pays for the previous one's
# uploads: wait until the store holds at least the data set and has stopped
# changing.
quiesce() {
    # Unchanged for longer than the default sync delay (8 s).
    local prev= cur same=0 deadline=$((SECONDS + 300))
    while [ $same -lt 5 ]; do
        # (files may vanish mid-listing: uploads rename their temporaries)
        cur=$({ find "$BENCH_DIR/store" -type f -printf '%p %s %T@\n' 2>/dev/null || true; } |
              sort | md5sum)
        if [ "$cur" = "$prev" ] &&
           [ "$(du -sb "$BENCH_DIR/store" | cut -f1)" -ge $((SIZE_MB * 1024 * 1024)) ]; then
            same=$((same + 1))
        else
            same=0
        fi
        [ $SECONDS -lt $deadline ] || { echo "glidefsd still uploading; going on" >&2; return; }
        prev=$cur
        sleep 2
    done
}
quiesce

# --- runs ------------------------------------------------------------------
WORKLOADS=("randread" "randwrite" "randrw")
for qd in 1 64; do
    for w in "${WORKLOADS[@]}"; do
        for s in "${SERVERS[@]}"; do
            extra=()
            [ "$w" = randrw ] && extra=(--rwmixread=70)
            quiesce
            echo "== $s $w qd=$qd" >&2
            fio --name=bench --ioengine=nbd --uri="${URI[$s]}" --rw=$w "${extra[@]}" \
                --bs=4k --iodepth=$qd --numjobs=1 --size=${SIZE_MB}M --time_based \
                --runtime=$RUNTIME --ramp_time=2 --randrepeat=0 --norandommap \
                --output-format=json --output="$BENCH_DIR/json/$s-$w-$qd.json" >/dev/null
        done
    done
done

# --- report ----------------------------------------------------------------
python3 - "$BENCH_DIR/json" "$OUT" "$SIZE_MB" "$RUNTIME" <<'EOF'
import json, os, platform, subprocess, sys, time
jdir, out, size_mb, runtime = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
servers = ["glidefsd", "nbdkit-file", "qemu-nbd"]
rows, res = [], {}
for qd in (1, 64):
    for w in ("randread", "randwrite", "randrw"):
        for s in servers:
            with open(os.path.join(jdir, f"{s}-{w}-{qd}.json")) as f:
                j = json.load(f)["jobs"][0]
            iops = j["read"]["iops"] + j["write"]["iops"]
            lat = {}
            for d in ("read", "write"):
                if j[d]["io_bytes"]:
                    lat[d] = (j[d]["clat_ns"]["mean"] / 1000,
                              j[d]["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000)
            res[(s, w, qd)] = (iops, lat)
lines = [f"# NBD fio benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
         f"4 KiB, one job, unix sockets, {size_mb} MiB data set written before the runs "
         f"(cached data), {runtime} s per run; host: {platform.node()}, "
         f"{os.cpu_count()} CPUs, kernel {platform.release()}.", "",
         "| workload | QD | server | IOPS | vs nbdkit-file | mean clat µs (r / w) | p99 µs (r / w) |",
         "|---|---|---|---|---|---|---|"]
for qd in (1, 64):
    for w in ("randread", "randwrite", "randrw"):
        base = res[("nbdkit-file", w, qd)][0]
        for s in servers:
            iops, lat = res[(s, w, qd)]
            m = " / ".join(f"{lat[d][0]:.1f}" if d in lat else "-" for d in ("read", "write"))
            p = " / ".join(f"{lat[d][1]:.0f}" if d in lat else "-" for d in ("read", "write"))
            name = {"randrw": "70/30 randrw"}.get(w, w)
            lines.append(f"| {name} | {qd} | {s} | {iops:.0f} | {100 * iops / base:.0f}% | {m} | {p} |")
lines.append("")
checks = []
for qd in (1, 64):
    for w in ("randread", "randwrite", "randrw"):
        g, n = res[("glidefsd", w, qd)][0], res[("nbdkit-file", w, qd)][0]
        checks.append((f"{w} QD{qd} IOPS >= 90% of nbdkit-file", g >= 0.9 * n, f"{100 * g / n:.0f}%"))
gw = res[("glidefsd", "randwrite", 1)][1]["write"][0]
nw = res[("nbdkit-file", "randwrite", 1)][1]["write"][0]
checks.append(("QD1 write latency within 1.2x of nbdkit-file", gw <= 1.2 * nw, f"{gw / nw:.2f}x"))
lines += ["## Targets", ""] + [f"- {'PASS' if ok else 'MISS'}: {what} ({v})" for what, ok, v in checks]
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
