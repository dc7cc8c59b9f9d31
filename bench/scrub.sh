#!/bin/bash
# scrub.sh — what a scrub costs the store (issue 29), on s3rver behind the
# strict proxy of tests/s3/s3env.py, each side against its peer in the same
# run, interleaved (the order alternating, after an untimed pass):
#   - deep scrub of a SIZE_MB volume (glidefs-image scrub --deep: the
#     library's 4 threads, one ranged GET per segment, header and payloads,
#     up to 4 MiB, every block checked) vs a parallel GET loop over the same segment objects (curl
#     --parallel, 4 at a time like the scrub, whole objects): MiB/s.
#     Goal: >= 0.8x.
#   - quick scrub of a volume of NSEGS one-block segments: the object GETs
#     and HEADs the proxy saw (its ListObjectsV2 GETs apart), less those of
#     the same run on a one-segment volume (opening the volume: volume.json,
#     lease, manifest), per segment; and the scrub's own GET count.
#     Goal: <= 1 per segment.
#
#   bench/scrub.sh                 4 GiB, 10000 segments, 3 runs; writes bench/results/scrub.md (+ .csv)
#   SIZE_MB=32 NSEGS=200 ONCE=1 RESULTS=/tmp/scrub-res bench/scrub.sh     (a smoke check)
# env: BUILD (build dir, default build-bench: bench/run.sh builds it, release),
#      IMAGE (glidefs-image, default $BUILD/tools/glidefs-image), BENCH_DIR,
#      RESULTS, SIZE_MB (default 4096), NSEGS (default 10000), REPS (default 3;
#      ONCE=1: 1), KEEP=1 keeps the scratch dir, S3CACHE (where s3env.py
#      installs s3rver, default $BUILD/s3cache). Not part of run.sh.
set -euo pipefail
. "$(dirname "$0")/common.sh"
IMAGE=${IMAGE:-$BUILD/tools/glidefs-image}
[ -x "$IMAGE" ] || { echo "scrub: no $IMAGE (build first: bench/run.sh, or set IMAGE)" >&2; exit 1; }
if [ -z "${S3_ENDPOINT:-}" ]; then
    need node npm curl
    [ -x /usr/bin/aws ] || { echo "bench: missing /usr/bin/aws (awscli)" >&2; exit 1; }
    exec $PY "$BENCH_SRC/tests/s3/s3env.py" --cache "${S3CACHE:-$BUILD/s3cache}" --timeout 7200 \
        -- "$0" "$@"
fi
SIZE_MB=${SIZE_MB:-4096}
NSEGS=${NSEGS:-10000}
REPS=${REPS:-3}
[ "${ONCE:-0}" = 1 ] && REPS=1
mkdir -p "$BENCH_DIR"
D=$(mktemp -d "$BENCH_DIR/scrub-XXXXXX")
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "scrub: kept $D" >&2 || rm -rf "$D"; }
trap cleanup EXIT
CSV=$D/rows.csv
: > "$CSV"
cat > "$D/aws.cfg" <<EOF
[default]
region = us-east-1
s3 =
    addressing_style = path
EOF
export AWS_CONFIG_FILE=$D/aws.cfg AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN
AWS=(/usr/bin/aws --endpoint-url "$S3_ENDPOINT")
now() { date +%s.%N; }

# config NAME BLOCK_SIZE BLOCKS_PER_BATCH: a cache dir of its own, the bucket's prefix "scrub"
config() {
    cat > "$D/$1.yaml" <<EOF
cache:
  dir: $D/cache-$1
  disk_size: 8G
storage:
  url: s3://$S3_BUCKET/scrub
  endpoint: $S3_ENDPOINT
  access_key_id: S3RVER
  secret_access_key: S3RVER
  compression: none
  timeout_ms: 60000
servers:
  nbd:
    block_size: $2
    blocks_per_batch: $3
compaction:
  interval_s: 0
EOF
}
# fill NAME BYTES BLOCK_SIZE BLOCKS_PER_BATCH: a volume of random data, drained
fill() {
    config "$1" "$3" "$4"
    head -c "$2" /dev/urandom > "$D/fill.raw"
    "$IMAGE" import -c "$D/$1.yaml" "$1" "$D/fill.raw" 2>>"$D/image.log"
    rm -f "$D/fill.raw"
}
# proxy counters: object GETs+HEADs (LISTs apart) and LISTs
counts() {
    curl -sS "$S3_ENDPOINT/__proxy__/stats" | $PY -c '
import json, sys
j = json.load(sys.stdin)
m = j.get("by_method", {})
print(m.get("GET", 0) + m.get("HEAD", 0) - j.get("lists", 0), j.get("lists", 0))'
}
# scrub NAME [--deep]: runs glidefs-image scrub; writes "seconds bytes gets segments"
# into $D/s.out
scrub() {
    scrub_run "$@" > "$D/s.out"
}
scrub_run() {
    local name=$1 a b out
    shift
    rm -rf "$D/cache-$name"
    a=$(now)
    out=$("$IMAGE" scrub -c "$D/$name.yaml" "$name" "$@" 2>>"$D/image.log") ||
        { echo "scrub: glidefs-image scrub $name $*: $out" >&2; exit 1; }
    b=$(now)
    case "$out" in *": clean") ;; *) echo "scrub: $name not clean: $out" >&2; exit 1 ;; esac
    echo "$out" | $PY -c '
import re, sys
a, b = float(sys.argv[1]), float(sys.argv[2])
m = re.search(r": (\d+) segments, \d+ blocks, (\d+) bytes read in (\d+) GETs", sys.stdin.read())
print(b - a, m.group(2), m.group(3), m.group(1))' "$a" "$b"
}

# --- deep scrub vs a parallel GET loop -------------------------------------------
echo "scrub: writing the ${SIZE_MB} MiB volume (dir $D)" >&2
fill big $((SIZE_MB * 1048576)) 131072 25
"${AWS[@]}" s3api list-objects-v2 --bucket "$S3_BUCKET" --prefix "scrub/nbd/big/seg/" \
    --query 'Contents[].[Key,Size]' --output text | sort > "$D/keys.txt"
: > "$D/curl.cfg"
total=0 nkeys=0
while read -r key size; do
    printf 'url = "%s/%s/%s"\noutput = "/dev/null"\n' "$S3_ENDPOINT" "$S3_BUCKET" "$key" >> "$D/curl.cfg"
    total=$((total + size)) nkeys=$((nkeys + 1))
done < "$D/keys.txt"
DEEP="deep scrub"
deep_scrub() {
    echo "scrub: rep $rep: glidefs-image scrub --deep ($nkeys segments)" >&2
    scrub big --deep
    read -r secs bytes gets segs < "$D/s.out"
    $PY - "$secs" "$bytes" "$gets" "$segs" "$DEEP" >> "$CSV" <<'EOF'
import sys
s, b, g, n, sc = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print('"%s",throughput,MiB/s,glidefs,%.2f' % (sc, b / 2**20 / s))
print('"%s",time,s,glidefs,%.2f' % (sc, s))
print('"%s",GETs,count,glidefs,%d' % (sc, g))
print('"%s",segments,count,glidefs,%d' % (sc, n))
EOF
}
get_loop() {
    a=$(now)
    curl -sS --fail --parallel --parallel-max 4 --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --config "$D/curl.cfg"
    b=$(now)
}
# one untimed pass first, so both sides read s3rver's files from the page
# cache (the import wrote them; the kernel may have dropped some since), and
# the order alternates: the side that ran second used to find the objects
# the first had just read
get_loop
for ((rep = 0; rep < REPS; rep++)); do
    for side in $( ((rep % 2)) && echo "loop scrub" || echo "scrub loop"); do
        if [ "$side" = scrub ]; then
            deep_scrub
            continue
        fi
        echo "scrub: rep $rep: curl GET loop, 4 in parallel, over the same $nkeys objects" >&2
        get_loop
        $PY - "$a" "$b" "$total" "$nkeys" "$DEEP" >> "$CSV" <<'EOF'
import sys
a, b, t, n, sc = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print('"%s",throughput,MiB/s,GET loop,%.2f' % (sc, t / 2**20 / (b - a)))
print('"%s",time,s,GET loop,%.2f' % (sc, b - a))
print('"%s",GETs,count,GET loop,%d' % (sc, n))
EOF
    done
done

# --- quick scrub: requests per segment --------------------------------------------
echo "scrub: writing a volume of $NSEGS one-block segments, and one of one segment" >&2
fill many $((NSEGS * 4096)) 4096 1
fill one 4096 4096 1
QUICK="quick scrub"
for ((rep = 0; rep < REPS; rep++)); do
    counts > "$D/c.out"; read -r g0 l0 < "$D/c.out"
    scrub one
    read -r secs1 bytes1 gets1 segs1 < "$D/s.out"
    counts > "$D/c.out"; read -r g1 l1 < "$D/c.out"
    echo "scrub: rep $rep: glidefs-image scrub (quick) of many" >&2
    scrub many
    read -r secs bytes gets segs < "$D/s.out"
    counts > "$D/c.out"; read -r g2 l2 < "$D/c.out"
    $PY - "$((g1 - g0))" "$segs1" "$((g2 - g1))" "$((l2 - l1))" "$secs" "$gets" "$segs" \
        "$QUICK" >> "$CSV" <<'EOF'
import sys
o, n1, m, lists, s, g, n, sc = [float(x) for x in sys.argv[1:8]] + [sys.argv[8]]
fixed = o - n1                      # the one-segment run's requests but its header GETs
print('"%s",GETs+HEADs per segment,count,glidefs,%.4f' % (sc, (m - fixed) / n))
print('"%s",GETs+HEADs (whole run),count,glidefs,%d' % (sc, m))
print('"%s",of which opening the volume,count,glidefs,%d' % (sc, fixed))
print('"%s",LISTs (whole run),count,glidefs,%d' % (sc, lists))
print('"%s",scrub GETs per segment (its own count),count,glidefs,%.4f' % (sc, g / n))
print('"%s",segments,count,glidefs,%d' % (sc, n))
print('"%s",time,s,glidefs,%.2f' % (sc, s))
EOF
done

# --- summary -------------------------------------------------------------------
$PY - "$CSV" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) == 5]
def med(sc, metric, s):
    v = [float(r[4]) for r in rows if r[0] == sc and r[1] == metric and r[3] == s]
    return statistics.median(v) if v else None
g, p = med("deep scrub", "throughput", "glidefs"), med("deep scrub", "throughput", "GET loop")
print("\nmedians")
print("  deep scrub:  glidefs %.1f MiB/s, GET loop (4 parallel) %.1f MiB/s: %.2fx (goal >= 0.8x) %s"
      % (g, p, g / p, "MET" if g / p >= 0.8 else "MISSED"))
q = med("quick scrub", "GETs+HEADs per segment", "glidefs")
o = med("quick scrub", "scrub GETs per segment (its own count)", "glidefs")
n = med("quick scrub", "segments", "glidefs")
print("  quick scrub: %.4f GETs+HEADs per segment at the proxy (the scrub's own count %.4f), "
      "%d segments (goal <= 1) %s" % (q, o, n, "MET" if q <= 1.0 else "MISSED"))
EOF

cat > "$D/notes.md" <<EOF
One s3rver (npm, 3.7.1) behind tests/s3/s3proxy.py (the strict SigV4 proxy the tests use: a
Python process every request of both sides goes through), on 127.0.0.1, data on the same
disk; started by tests/s3/s3env.py. ${REPS} run(s) of each side, interleaved, the order alternating (scrub first in even runs), after one untimed pass of the GET loop (both sides then read the objects from the page cache).
Deep scrub: a ${SIZE_MB} MiB volume of random data (no compression, 128 KiB blocks, 25 per
segment: ${nkeys} segment objects) imported with glidefs-image, then \`glidefs-image scrub --deep\`
timed whole (open read-only on an empty cache dir, LISTs, one ranged GET per segment of its
header and payloads together (up to 4 MiB) on the library's 4 threads, every block's CRC
checked, close); throughput = bytes the scrub fetched / time. Peer: curl (one process,
\`--parallel --parallel-max 4\`, SigV4) GETting the same segment objects whole; throughput =
their bytes / time.
Quick scrub: a volume of ${NSEGS} segments of one 4 KiB block each, \`glidefs-image scrub\`
(quick: existence and size from the LISTs, one ranged GET of each header). The proxy's
counters (/__proxy__/stats: GET and HEAD, ListObjectsV2 apart) before and after; the same run on
a one-segment volume just before gives what opening a volume costs (volume.json, lease,
manifest, ...), taken off. The scrub's own count of its GETs (glidefs_scrub_result.gets) is
shown too.
EOF
report scrub "Scrub: deep scrub throughput vs a parallel GET loop; quick scrub requests per segment" \
    "$CSV" "SIZE_MB=$SIZE_MB NSEGS=$NSEGS REPS=$REPS bench/scrub.sh" "$D/notes.md"
