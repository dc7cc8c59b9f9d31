#!/bin/bash
# tls.sh — the cost of NBD over TLS (issue 26): glidefsd plaintext vs
# glidefsd TLS (X.509, client certificates) vs nbdkit's file plugin in
# plaintext and with --tls=require (the same certificates), all on TCP
# loopback, in the same run, interleaved (A B C D A B C D ...).
#
#   bench/tls.sh                       full run, writes bench/results/tls.md (+ .csv)
#   SIZE_MB=16 RUNTIME=2 REPS=1 RESULTS=/tmp/tls-res bench/tls.sh   (a smoke check)
# env: BUILD (build dir, default build-bench: bench/run.sh builds it, release),
#      GLIDEFSD, BENCH_DIR (scratch, default /var/tmp/glidefs-bench),
#      SIZE_MB (data set, default 1024), RUNTIME (s per run after 1 s of ramp,
#      default 5), REPS (default 3), RESULTS (default bench/results), KEEP=1
#      keeps the scratch dir.
#
# Workloads (fio's nbd engine, one connection each): 4 KiB random read
# (cached) and random write at QD64, 1 MiB sequential read at QD8.
# Prints IOPS / MiB/s per system and the ratios glidefsd TLS / glidefsd
# plaintext and glidefsd TLS / nbdkit TLS. Goal (issue 26): TLS costs <= 15%
# of glidefsd's plaintext IOPS, and glidefsd TLS >= 1.0x nbdkit TLS.
#
# One glidefsd serves both (servers.nbd.tls: on, one TCP listener): the same
# process, cache and data, so TLS is the only difference (under require the
# per-request path is the same code). nbdkit runs twice on one image (plain,
# and --tls=require --tls-verify-peer: client certificates as glidefsd asks).
# Certificates: tests/tls/tlscerts.py (certtool; RSA keys, TLS 1.3).
# fio's nbd engine takes only a URI and libnbd refuses tls-certificates= in
# a URI unless the program allows local files (fio does not), so fio finds
# the client certificates in libnbd's default directory, $HOME/.pki/libnbd:
# a HOME in the scratch dir. libnbd reads /etc/pki/libnbd instead when run
# as root, so as root fio runs as uid/gid 65534 (setpriv).
set -euo pipefail
. "$(dirname "$0")/common.sh"
SIZE_MB=${SIZE_MB:-1024}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
need fio nbdkit nbdcopy nbdinfo certtool psktool setpriv
fio --enghelp=nbd >/dev/null 2>&1 || { echo "tls: this fio has no nbd engine" >&2; exit 1; }
[ -x "$GLIDEFSD" ] || { echo "tls: no $GLIDEFSD (build first: bench/run.sh, or set GLIDEFSD)" >&2; exit 1; }

mkdir -p "$BENCH_DIR"
D=$(mktemp -d "$BENCH_DIR/tls-XXXXXX")
chmod 755 "$D"
GPID= NPID= TPID=
cleanup() {
    for p in $GPID $NPID $TPID; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "tls: kept $D" >&2 || rm -rf "$D"
}
trap cleanup EXIT

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_uri() {  # wait_uri URI PID
    local deadline=$((SECONDS + 30))
    until nbdinfo --size "$1" >/dev/null 2>&1; do
        kill -0 "$2" 2>/dev/null || { echo "tls: server died" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "tls: timeout waiting for $1" >&2; exit 1; }
        sleep 0.1
    done
}

# --- certificates, and libnbd's default directory for fio --------------------
$PY - "$BENCH_SRC/tests/tls" "$D/certs" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import tlscerts
tlscerts.make(sys.argv[2])
EOF
CERTS=$D/certs
mkdir -p "$D/home/.pki"
cp -r "$CERTS/client" "$D/home/.pki/libnbd"
chmod -R a+rX "$D/home"
if [ "$(id -u)" = 0 ]; then
    FIO=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$D/home" fio)
else
    FIO=(env HOME="$D/home" fio)
fi

# --- servers --------------------------------------------------------------------
PG=$(free_port)
cat > "$D/glidefs.yaml" <<EOF
cache:
  dir: $D/cache
  disk_size_gb: 8
storage:
  url: file://$D/store
servers:
  shutdown_timeout_s: 600
  api:
    listen: ""
  nbd:
    unix_socket: ""
    tcp: "127.0.0.1:$PG"
    tls: "on"
    tls_certificates: $CERTS/server
    auto_create_size: ${SIZE_MB}M
EOF
mkdir -p "$D/store"
"$GLIDEFSD" -c "$D/glidefs.yaml" --log-level warn 2>>"$D/glidefsd.log" &
GPID=$!
wait_uri "nbd://127.0.0.1:$PG/bench" $GPID

truncate -s ${SIZE_MB}M "$D/n.img"
# (through a link of another name: a stray `pkill nbdkit` elsewhere on this
# machine must not end our servers mid-run)
ln -s "$(command -v nbdkit)" "$D/nbdk"
PN=$(free_port)
"$D/nbdk" --foreground -i 127.0.0.1 -p "$PN" file "$D/n.img" 2>>"$D/nbdkit.log" &
NPID=$!
wait_uri "nbd://127.0.0.1:$PN/" $NPID
PT=$(free_port)
"$D/nbdk" --foreground -i 127.0.0.1 -p "$PT" --tls=require --tls-certificates="$CERTS/server" \
    --tls-verify-peer file "$D/n.img" 2>>"$D/nbdkit-tls.log" &
TPID=$!
wait_uri "nbds://127.0.0.1:$PT/?tls-certificates=$CERTS/client" $TPID

HAVE_PERF=0
perf stat -e syscalls:sys_enter_recvmsg true >/dev/null 2>&1 && HAVE_PERF=1
SYSTEMS=(glidefsd "glidefsd TLS" nbdkit-file "nbdkit TLS")
declare -A URI=(
    [glidefsd]="nbd://127.0.0.1:$PG/bench"
    [glidefsd TLS]="nbds://127.0.0.1:$PG/bench"
    [nbdkit-file]="nbd://127.0.0.1:$PN/"
    [nbdkit TLS]="nbds://127.0.0.1:$PT/"
)

echo "tls: writing the ${SIZE_MB} MiB data set (dir $D)" >&2
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$D/fill.raw"
nbdcopy --flush "$D/fill.raw" "${URI[glidefsd]}"
nbdcopy --flush "$D/fill.raw" "${URI[nbdkit-file]}"
rm -f "$D/fill.raw"
sync -f "$D"
sleep 6                      # glidefsd: the idle export drains ...
wait_idle $GPID 300          # ... and closes

CSV=$D/rows.csv
: > "$CSV"
mkdir -p "$D/json"
# fio_run SYSTEM RW BS QD SCENARIO
fio_run() {
    local s=$1 rw=$2 bs=$3 qd=$4 scen=$5
    local out="$D/json/$(echo "$s-$scen" | tr ' /()' '____').json"
    echo "== $s: $scen" >&2
    # glidefsd's side: its CPU time and (with perf) its receive system calls
    # during the run, per request
    local cpu0= perf_out="$out.perf" ppid=
    if [ "${s%% *}" = glidefsd ]; then
        cpu0=$(awk '{print $14 + $15}' /proc/$GPID/stat)
        if [ "$HAVE_PERF" = 1 ]; then
            perf stat -x, -o "$perf_out" -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmsg \
                -p $GPID 2>/dev/null &
            ppid=$!
        fi
    fi
    # fio as another user writes its JSON to our stdout (the file is ours)
    if ! "${FIO[@]}" --name=tls --ioengine=nbd --uri="${URI[$s]}" --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --size=${SIZE_MB}M --time_based --runtime="$RUNTIME" --ramp_time=1 \
        --randrepeat=0 --norandommap --output-format=json >"$out" 2>"$out.err"; then
        echo "tls: fio FAILED for $s, $scen: $(grep -m1 -h 'fio:' "$out.err" "$out" || true)" >&2
        echo "- **$s, $scen: fio failed**: $(grep -m1 -h 'fio:' "$out.err" "$out" || true)" \
            >> "$D/errors.md"
    fi
    local cpu_ticks=
    if [ -n "$cpu0" ]; then
        cpu_ticks=$(( $(awk '{print $14 + $15}' /proc/$GPID/stat) - cpu0 ))
        if [ -n "$ppid" ]; then kill -INT $ppid 2>/dev/null || true; wait $ppid 2>/dev/null || true; fi
    fi
    $PY - "$out" "$scen" "$s" "$cpu_ticks" "$perf_out" "$(getconf CLK_TCK)" "$RUNTIME" >> "$CSV" <<'EOF' || true
import csv, json, sys
scen, s = sys.argv[2], sys.argv[3]
cpu_ticks, perf_out, hz, runtime = sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
w = csv.writer(sys.stdout)
try:
    txt = open(sys.argv[1]).read()
    j = json.loads(txt[txt.index("{"):])["jobs"][0]   # fio may print notes first
except (OSError, ValueError, KeyError, IndexError):
    w.writerow([scen, "fio error: no output", "count", s, 1])
    sys.exit(0)
if j.get("error"):
    w.writerow([scen, "fio error (errno %d)" % j["error"], "errno", s, j["error"]])
w.writerow([scen, "IOPS", "IOPS", s, "%.1f" % (j["read"]["iops"] + j["write"]["iops"])])
w.writerow([scen, "throughput", "MiB/s", s,
            "%.1f" % ((j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 1048576)])
# the server's counters cover the ramp second too: requests ~ IOPS x (runtime + 1)
reqs = (j["read"]["iops"] + j["write"]["iops"]) * (runtime + 1)
if cpu_ticks and reqs:
    w.writerow([scen, "server CPU per request", "us", s, "%.2f" % (int(cpu_ticks) / hz / reqs * 1e6)])
try:
    n = sum(int(l.split(",")[0]) for l in open(perf_out) if "sys_enter_recv" in l)
    if reqs:
        w.writerow([scen, "server recv syscalls per request", "count", s, "%.3f" % (n / reqs)])
except (OSError, ValueError):
    pass
EOF
    if [ "$rw" != randread ] && [ "$rw" != read ]; then
        if [ "${s%% *}" = glidefsd ]; then
            sleep 6              # idle linger, then the export drains: wait for it
            wait_idle $GPID 300
        fi
        sync -f "$D"             # the peers' dirty pages: not in the next run
    fi
}

for spec in "randread 4k 64 randread 4 KiB QD64 (cached)" \
            "randwrite 4k 64 randwrite 4 KiB QD64" \
            "read 1m 8 sequential read 1 MiB QD8"; do
    read -r rw bs qd scen <<<"$spec"
    for ((rep = 0; rep < REPS; rep++)); do
        for s in "${SYSTEMS[@]}"; do
            fio_run "$s" "$rw" "$bs" "$qd" "$scen"
        done
    done
done

# --- summary: medians and ratios ---------------------------------------------
$PY - "$CSV" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) == 5]
scens = list(dict.fromkeys(r[0] for r in rows))
def med(sc, metric, s):
    v = [float(r[4]) for r in rows if r[0] == sc and r[1] == metric and r[3] == s]
    return statistics.median(v) if v else None
def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "n/a"
print("\nmedians; TLS/plain = glidefsd TLS / glidefsd plaintext (goal >= 0.85),"
      "\nvs nbdkit TLS = glidefsd TLS / nbdkit TLS (goal >= 1.0)")
for sc in scens:
    metric, unit = ("throughput", "MiB/s") if "1 MiB" in sc else ("IOPS", "IOPS")
    vals = {s: med(sc, metric, s) for s in ("glidefsd", "glidefsd TLS", "nbdkit-file",
                                             "nbdkit TLS")}
    print("\n## %s" % sc)
    for s, v in vals.items():
        print("  %-13s %10s %s" % (s, "%.1f" % v if v is not None else "-", unit))
    print("  TLS/plain (glidefsd) %s   glidefsd TLS / nbdkit TLS %s   nbdkit TLS/plain %s"
          % (ratio(vals["glidefsd TLS"], vals["glidefsd"]),
             ratio(vals["glidefsd TLS"], vals["nbdkit TLS"]),
             ratio(vals["nbdkit TLS"], vals["nbdkit-file"])))
    for m, u in (("server CPU per request", "us"), ("server recv syscalls per request", "")):
        a, b = med(sc, m, "glidefsd"), med(sc, m, "glidefsd TLS")
        if a is not None or b is not None:
            print("  %s: plaintext %s, TLS %s %s" % (m, a, b, u))
EOF

cat > "$D/notes.md" <<EOF
Setup: ${SIZE_MB} MiB data set written first (nbdcopy) to glidefsd and to nbdkit's image, ${RUNTIME} s
per run (1 s ramp), ${REPS} run(s) of each, systems interleaved; fio's nbd engine (libnbd), one
connection, TCP loopback. glidefsd: default settings, servers.nbd.tls: on (plaintext and TLS on
one listener: the same process, cache and data), X.509 with client certificates; reads come
from its clean cache (the data set was drained first). nbdkit: \`nbdkit file\` on one image,
plaintext and \`--tls=require --tls-verify-peer\` (two processes). Certificates from
tests/tls/tlscerts.py (certtool: RSA, the handshake negotiates TLS 1.3 AES-256-GCM). fio reads the
client certificates from libnbd's default directory (\$HOME/.pki/libnbd; fio runs as uid 65534
when the script runs as root, since libnbd reads /etc/pki/libnbd for root). The ratio column is
glidefsd / nbdkit-file (both plaintext); the TLS ratios are in the targets.
EOF
if [ -s "$D/errors.md" ]; then
    { echo; echo "**Errors in this run:**"; echo; cat "$D/errors.md"; } >> "$D/notes.md"
fi
report tls "NBD over TLS: glidefsd plaintext vs TLS vs nbdkit file (plaintext, --tls=require)" \
    "$CSV" "SIZE_MB=$SIZE_MB RUNTIME=$RUNTIME REPS=$REPS bench/tls.sh" "$D/notes.md"
