#!/bin/bash
# codec_nbd.sh — issue 25's "NBD 4 KiB random read on a cached encrypted
# volume unchanged": two glidefsd processes, one with
# storage.encryption_password and one without (each its own cache and
# file:// store, otherwise the same defaults), and nbdkit's file plugin as the
# peer, all over unix sockets in the same run. The data set is written and
# drained first, so the reads come from each daemon's clean cache, which
# holds plaintext: encryption should cost nothing on this path.
#
#   bench/codec_nbd.sh
# env: BUILD, GLIDEFSD, BENCH_DIR, RESULTS, SIZE_MB (1024), RUNTIME (s, 5),
#      REPS (3). Systems interleaved within each repetition.
set -euo pipefail
. "$(dirname "$0")/common.sh"
SIZE_MB=${SIZE_MB:-1024}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
need fio nbdkit nbdcopy nbdinfo
fio --enghelp=nbd >/dev/null 2>&1 || { echo "codec_nbd: this fio has no nbd engine" >&2; exit 1; }
[ -x "$GLIDEFSD" ] || { echo "codec_nbd: no $GLIDEFSD (build first: bench/run.sh)" >&2; exit 1; }

mkdir -p "$BENCH_DIR"
D=$(mktemp -d "$BENCH_DIR/codec_nbd-XXXXXX")
PIDS=()
declare -A GPID=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT

start_glidefsd() {  # start_glidefsd NAME [YAML LINE under storage:]
    local n=$1 extra=${2:-}
    mkdir -p "$D/$n/store"
    cat > "$D/$n/glidefs.yaml" <<EOF
cache:
  dir: $D/$n/cache
  disk_size_gb: 8
storage:
  url: file://$D/$n/store
$extra
servers:
  shutdown_timeout_s: 600
  api:
    listen: ""
  nbd:
    unix_socket: $D/$n/sock
    auto_create_size: ${SIZE_MB}M
EOF
    "$GLIDEFSD" -c "$D/$n/glidefs.yaml" --log-level warn 2>>"$D/$n/glidefsd.log" &
    GPID[$n]=$!
    PIDS+=($!)
    wait_sock "$D/$n/sock" $! bench
}
start_glidefsd plain
start_glidefsd enc "  encryption_password: codec-nbd-bench"
truncate -s ${SIZE_MB}M "$D/n.img"
nbdkit --foreground --unix "$D/nbdkit.sock" file "$D/n.img" &
PIDS+=($!)
wait_sock "$D/nbdkit.sock" $! ""

SYSTEMS=(glidefsd "glidefsd encrypted" nbdkit-file)
declare -A URI=(
    [glidefsd]="nbd+unix:///bench?socket=$D/plain/sock"
    [glidefsd encrypted]="nbd+unix:///bench?socket=$D/enc/sock"
    [nbdkit-file]="nbd+unix:///?socket=$D/nbdkit.sock"
)

echo "codec_nbd: writing the ${SIZE_MB} MiB data set (dir $D)" >&2
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$D/fill.raw"
for s in "${SYSTEMS[@]}"; do
    nbdcopy --flush "$D/fill.raw" "${URI[$s]}"
done
rm -f "$D/fill.raw"
sync -f "$D"
sleep 6                      # each idle export drains ...
wait_idle ${GPID[plain]} 300 # ... and closes
wait_idle ${GPID[enc]} 300

CSV=$D/rows.csv
: > "$CSV"
scen="randread 4 KiB QD64 (cached)"
for ((rep = 0; rep < REPS; rep++)); do
    for s in "${SYSTEMS[@]}"; do
        echo "== $s: $scen" >&2
        out=$D/fio.json
        fio --name=codec --ioengine=nbd --uri="${URI[$s]}" --rw=randread --bs=4k --iodepth=64 \
            --size=${SIZE_MB}M --time_based --runtime="$RUNTIME" --ramp_time=1 --randrepeat=0 \
            --norandommap --output-format=json > "$out"
        $PY - "$out" "$scen" "$s" >> "$CSV" <<'EOF'
import csv, json, sys
txt = open(sys.argv[1]).read()
j = json.loads(txt[txt.index("{"):])["jobs"][0]
if j.get("error"):
    sys.exit("fio error %d" % j["error"])
csv.writer(sys.stdout).writerow([sys.argv[2], "IOPS", "IOPS", sys.argv[3],
                                 "%.1f" % j["read"]["iops"]])
EOF
    done
done

cat > "$D/notes.md" <<EOF
Setup: two glidefsd processes with default settings, one with \`storage.encryption_password\`
(AES-256-GCM at rest), one without, each with its own cache dir and file:// store on the same disk;
nbdkit's file plugin as the peer. ${SIZE_MB} MiB written to each (nbdcopy), the glidefsd exports
drained and closed, then fio's nbd engine (libnbd, unix socket, one connection) reads 4 KiB at
random at QD64 for ${RUNTIME} s (1 s ramp), ${REPS} run(s), the three systems interleaved. The reads
come from each daemon's clean cache, which holds plaintext.
EOF
report codec_nbd "NBD random read of a cached volume, encrypted vs plain (issue 25)" "$CSV" \
    "SIZE_MB=$SIZE_MB RUNTIME=$RUNTIME REPS=$REPS bench/codec_nbd.sh" "$D/notes.md"
