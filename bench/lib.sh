#!/bin/bash
# lib.sh — the in-process benchmarks (bench/lib_bench.c), each against its
# peer in the same run, into bench/results/<name>.md/.csv:
#   lib_latency  4 KiB pwrite/pread p50/p99/p99.9 and IOPS vs plain pwrite/pread
#   flush        FLUSH latency with 0, 256 MiB and 1 GiB dirty vs fdatasync
#   memory       RSS per export, per GiB written, block map bytes per block
#   churn        issue 8: stored/live and PUTs per GiB under random overwrites
#   codec        issue 7: encryption on/off throughput, zstd on/off stored bytes
#   zipf         cache hit rate, fio zipf:1.2 reads over a volume 8x the cache
#   aead         issue 25: AES-256-GCM seal/open MiB/s per core vs mbedTLS and openssl speed
#
#   bench/lib.sh [SCENARIO...]     (default: all of them, in that order)
# env: BUILD, BENCH_DIR, RESULTS, BENCH_QUICK=1, REPS (runs of lib_latency and flush, default 2; of codec, 3)
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ -x "$LIB_BENCH" ] || { echo "no $LIB_BENCH (build first: bench/run.sh)" >&2; exit 1; }
Q=$BENCH_QUICK
SCEN=("$@")
[ ${#SCEN[@]} -gt 0 ] || SCEN=(lib_latency flush memory churn codec zipf aead)
D=$BENCH_DIR/lib
mkdir -p "$D"

lib_latency() {
    local secs=3 reps=${REPS:-2} csv=$D/lib_latency.csv
    [ "$Q" = 1 ] && { secs=1; reps=${REPS:-1}; }
    : > "$csv"
    for ((i = 0; i < reps; i++)); do
        rm -rf "$D/lat"
        "$LIB_BENCH" latency "$D/lat" $secs 2 >> "$csv"
    done
    rm -rf "$D/lat"
    cat > "$D/notes.md" <<EOF
A 1 GiB volume on a file:// store and a plain file, both in $BENCH_DIR (same disk); 256 MiB
area written first. Latency: one thread, 4 KiB at random offsets in the area, every op timed,
$secs s per phase. IOPS: 2 threads (the machine's cores), $secs s. "journal": reads of data
still dirty in the journal; "clean cache": after glidefs_drain, reads from the clean cache.
The volume's sync delay is set longer than the run so that the syncer does not take one of
the two cores in the middle of a phase (uploads are measured in s3.md and codec.md).
$reps run(s); the spread is across runs.
EOF
    report lib_latency "In-process library latency and IOPS vs plain pwrite/pread (issue 2)" \
        "$csv" "BENCH_QUICK=$Q bench/lib.sh lib_latency  # $LIB_BENCH latency DIR $secs 2, x$reps" \
        "$D/notes.md"
}

flush() {
    local secs=5 levels="0 256 1024" csv=$D/flush.csv reps=${REPS:-2}
    [ "$Q" = 1 ] && { secs=2; levels="0 64 256"; reps=1; }
    : > "$csv"
    for ((i = 0; i < reps; i++)); do
        rm -rf "$D/flush"
        "$LIB_BENCH" flush "$D/flush" $secs $levels >> "$csv"
    done
    rm -rf "$D/flush"
    cat > "$D/notes.md" <<EOF
For each level, that many MiB are written to a fresh volume (1 MiB writes; default sync
settings, so they stay dirty: the loop ends before sync_delay_ms = 8 s) and flushed once
("first flush after fill", the cost of making the fill itself durable); then for $secs s a
loop of (4 KiB random write; FLUSH), each FLUSH timed. Peer: the same on a plain file with
fdatasync. The goal is that FLUSH does not grow with the amount of dirty (not yet uploaded)
data: p99 <= 10 ms at every level. "segments uploaded" and "CPU of background threads"
show that the syncer stayed idle during the loop (a FLUSH is one fdatasync of the journal
file being written, whatever the amount of dirty data). LIB_BENCH_TRACE=1 prints every
FLUSH over 5 ms with its time in the loop. $reps run(s).
EOF
    report flush "FLUSH latency with dirty data outstanding" "$csv" \
        "BENCH_QUICK=$Q bench/lib.sh flush  # $LIB_BENCH flush DIR $secs $levels" "$D/notes.md"
}

memory() {
    local nvol=16 wmb=1024 blocks=131072 csv=$D/memory.csv
    [ "$Q" = 1 ] && { nvol=8; wmb=256; blocks=16384; }
    rm -rf "$D/mem"
    "$LIB_BENCH" mem "$D/mem" $nvol $wmb $blocks > "$csv"
    rm -rf "$D/mem"
    cat > "$D/notes.md" <<EOF
VmRSS of the process. Per export: $nvol empty volumes opened (after one, so one-off costs
are not counted), default cache budget. Per GiB written: $wmb MiB in two halves, each
written (1 MiB writes), flushed and drained; the table gives the growth while the data is
dirty and the slope of the second half after its drain. Block map: a volume with $blocks
written 128 KiB blocks (4 KiB written into each, zstd, drained) is woken with an empty cache
in a fresh process; its RSS minus that of a control volume with N/512 blocks written and
woken the same way, divided by the difference in blocks: the slope, the cost of one more
written block. The control runs the same code (manifest and segment decoding, zstd), so the
shared-library pages that code faults in once (about 300 KiB of RssFile) cancel; the row
"vs an empty volume" keeps them, spread over the N blocks. A block map entry is stored packed in 12 bytes (lib/blockmap.c: segment
index, then offset, length, flags and write_seq relative to a per-segment base in 64 bits;
no CRC: each payload in a segment carries its own CRC-32C trailer) in 48 KiB pages
allocated on first write; the segment table (40 bytes per segment, 25 blocks per segment
here) comes on top, so this row is entries + segments + malloc.
EOF
    report memory "Memory: RSS per export, per GiB written, block map per block" "$csv" \
        "BENCH_QUICK=$Q bench/lib.sh memory  # $LIB_BENCH mem DIR $nvol $wmb $blocks" \
        "$D/notes.md"
}

churn() {
    local live=256 factor=10 csv=$D/churn.csv rates="6 24"
    [ "$Q" = 1 ] && { live=64; rates="1.5 6"; }
    : > "$csv"
    # two runs, every setting at its default: a steady overwrite rate (the
    # volume's data turns over every ~40 s) and a very fast one (~10 s)
    local rate scen tsv
    for rate in $rates; do
        scen=churn
        [ "$rate" = "${rates##* }" ] && scen=churn-fast
        tsv=$RESULTS/$scen.tsv
        rm -rf "$D/churn"
        "$LIB_BENCH" churn "$D/churn" $live $factor $rate default 8 "$tsv" |
            sed "s/^churn,/$scen,/" >> "$csv"
        $PY - "$tsv" "$scen" >> "$csv" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
# the write phase: rows before the writes reached their total (then the drain runs)
total = max(float(r[2]) for r in rows)
run = [r for r in rows if r[1] == "run" and float(r[2]) < total and float(r[4]) > 0]
if run:
    w_end = float(run[-1][2])
    last = [r for r in run if float(r[2]) >= w_end * 2 / 3]
    ratios = [float(r[3]) / float(r[4]) for r in last]
    print("%s,stored/live steady state (last third),x,glidefs,%.4f" % (sys.argv[2], sum(ratios) / len(ratios)))
    print("%s,stored/live max in the last third,x,glidefs,%.4f" % (sys.argv[2], max(ratios)))
    print("%s,stored/live max during the run,x,glidefs,%.4f"
          % (sys.argv[2], max(float(r[3]) / float(r[4]) for r in run)))
    a, b = last[0], last[-1]
    segs = int(b[6]) - int(a[6])
    blocks = int(b[7]) - int(a[7])
    puts = int(b[5]) - int(a[5])
    if segs:
        # a block is 128 KiB: the unique dirty data a segment PUT carries
        print("%s,unique dirty data per segment PUT (last third),KiB,glidefs,%.1f"
              % (sys.argv[2], blocks * 128.0 / segs))
    if puts:
        print("%s,unique dirty data per PUT of any object (last third),KiB,glidefs,%.1f"
              % (sys.argv[2], blocks * 128.0 / puts))
        print("%s,segment PUTs / all PUTs (last third),%%,glidefs,%.1f"
              % (sys.argv[2], 100.0 * segs / puts))
EOF
    done
    rm -rf "$D/churn"
    local r1=${rates%% *} r2=${rates##* }
    cat > "$D/notes.md" <<EOF
A ${live} MiB volume (file:// store) is filled, then overwritten at random with seeded
(seed 8) writes of 4 KiB..1 MiB (powers of two, uniformly chosen), ${factor}x its live data
in total, with a FLUSH every 8 MiB, every setting at its default (sync_delay_ms 8000,
max_dirty_age_ms 60000, blocks_per_batch 25, compaction.max_stored_pct 110, grace_ms 0,
rate_mb_s 32, interval_s 300, min_live_pct 75), in two runs:

- **churn**: ${r1} MiB/s, so the live data is overwritten every $(awk "BEGIN{printf \"%d\", $live/$r1}") s on average
  (a busy VM disk: most turn over their data in hours or days, not seconds);
- **churn-fast**: ${r2} MiB/s, overwritten every $(awk "BEGIN{printf \"%d\", $live/$r2}") s: a stress case.

Compaction starts as soon as the segments holding live data store more than max_stored_pct
of it, rewrites the emptiest segments first (at most rate_mb_s, one manifest a second)
until about halfway back to all-live, and deletes the emptied segments in the same step
(grace_ms 0: a reader still looking for one finds where its block moved). Uniform random
overwrites are the hard case for a log-structured store: no segment empties by itself, so
keeping stored/live near 1.1 means copying segments that are still ~75% live; those copies
are most of the "all PUTs" rows. glidefs_stats is sampled every second (bench/results/churn.tsv,
churn-fast.tsv); after the writes: drain and two on-demand compactions.

PUTs: a block is 128 KiB, so "unique dirty data" = blocks uploaded x 128 KiB (a 4 KiB
write dirties its block once however often it is rewritten before the upload). A segment
holds the default batch of 25 blocks = 3200 KiB, which is the issue's "3.2 MiB" (25 x 128
KiB); the goal "<= 1 PUT per 3.2 MiB of unique dirty data" is met when every data PUT
carries a full batch. Compaction copies and manifests are PUTs too: they are reported
(all PUTs, and the segment share of them) as the price of the stored/live bound, not of
batching; max_stored_pct trades one for the other.
EOF
    report churn "Random overwrites: stored/live and PUTs (issue 8)" "$csv" \
        "BENCH_QUICK=$Q bench/lib.sh churn  # $LIB_BENCH churn DIR $live $factor {$r1,$r2} default 8 TSV" \
        "$D/notes.md" --tsv "$RESULTS/churn.tsv,$RESULTS/churn-fast.tsv"
}

codec() {
    local mb=512 csv=$D/codec.csv img=$D/doc.img reps=${REPS:-3}
    [ "$Q" = 1 ] && { mb=128; reps=${REPS:-1}; }
    need mke2fs zstd
    rm -rf "$D/codec" "$img"
    local docmb
    docmb=$(du -sm /usr/share/doc | cut -f1)
    # an ext4 image holding /usr/share/doc, no loop device (mke2fs -d)
    mke2fs -q -t ext4 -d /usr/share/doc -L docs "$img" $((docmb * 3 / 2 + 64))M
    # the drain writes segment files to the disk, whose speed swings run to
    # run by more than the codec costs: repeat, the report takes the medians
    : > "$csv"
    for ((i = 0; i < reps; i++)); do
        rm -rf "$D/codec"
        CODEC_ENCRYPTED_FIRST=$((i % 2)) "$LIB_BENCH" codec "$D/codec" $mb "$img" >> "$csv"
    done
    local isz zsz
    isz=$(du -B1 --apparent-size "$img" | cut -f1)
    zsz=$(zstd -3 -c -q "$img" | wc -c)
    local scen
    scen=$(awk -F, '/stored bytes/ {print $1; exit}' "$csv" | tr -d '"')
    echo "\"$scen\",stored bytes,MiB,zstd -3 of the whole image file,$($PY -c "print($zsz/2**20)")" >> "$csv"
    echo "\"$scen\",allocated (non-hole) bytes of the image,MiB,image file,$(du -B1 "$img" | awk '{print $1/2^20}')" >> "$csv"
    rm -rf "$D/codec" "$img"
    cat > "$D/notes.md" <<EOF
file:// store on the same disk (the store's page cache stays warm for both settings), so the
numbers show the CPU cost of the codec rather than the network. Encryption: ${mb} MiB of
incompressible data written (1 MiB writes) and flushed, then glidefs_drain timed (sync
throughput); then the volume is woken with an empty cache and read sequentially with 1 MiB
reads (cold read throughput). storage.encryption_password set vs unset; compression none.
Compression: an ext4 image of /usr/share/doc ($docmb MiB of files; \`mke2fs -t ext4 -d
/usr/share/doc\`, image $(($isz / 1048576)) MiB) copied into a volume (all-zero MiB skipped,
as a sparse copy does) and drained with storage.compression none vs zstd (level 3); stored
bytes from glidefs_stats. \`zstd -3\` of the whole image file is given for reference.
$reps run(s) of the whole scenario, plain first in even runs and encrypted first in odd ones, each
timed phase after a sync(2); the spread is across runs.
EOF
    report codec "Encryption and compression (issue 7)" "$csv" \
        "BENCH_QUICK=$Q bench/lib.sh codec  # $LIB_BENCH codec DIR $mb IMAGE" "$D/notes.md"
}

aead() {
    local secs=2 csv=$D/aead.csv
    [ "$Q" = 1 ] && secs=1
    need openssl
    "$BUILD/bench/aead_bench" $secs > "$csv"
    # the ceiling: OpenSSL's own loop over the same cipher, no glidefs code
    local bps sz
    for sz in 4096 131072; do
        bps=$(openssl speed -mr -seconds $secs -bytes $sz -evp aes-256-gcm 2>/dev/null |
              awk -F: '/^\+F:/ {print $4}')
        echo "\"$((sz / 1024)) KiB messages, one core\",seal,MiB/s,openssl speed -evp,$($PY -c "print($bps/2**20)")" >> "$csv"
    done
    cat > "$D/notes.md" <<EOF
One thread, one message size at a time, $secs s per row: the library's gfs_aes256gcm_seal/open
(lib/aead.c: OpenSSL EVP, a context per call as the codec uses it), mbedTLS 2.28's GCM
(Debian 12's; what lib/codec.c used before, built per call the same way), and \`openssl speed
-evp aes-256-gcm -bytes N\` (OpenSSL's own loop, one context for the whole run: the ceiling).
48 bytes of additional data per message, as the codec's.
EOF
    report aead "AES-256-GCM per core: libcrypto EVP vs mbedTLS (issue 25)" "$csv" \
        "BENCH_QUICK=$Q bench/lib.sh aead  # $BUILD/bench/aead_bench $secs" "$D/notes.md"
}

zipf() {
    local vol=2048 cache=256 ios=300000 csv=$D/zipf.csv trace=$D/zipf.iolog
    [ "$Q" = 1 ] && { vol=512; cache=64; ios=60000; }
    need fio
    rm -rf "$D/zipf" "$trace"
    # the access stream of fio's zipf:1.2 (null engine: no I/O, just the offsets)
    fio --name=zipf --ioengine=null --size=${vol}M --rw=randread --bs=4k \
        --random_distribution=zipf:1.2 --number_ios=$ios --randseed=12 \
        --write_iolog="$trace" >/dev/null
    "$LIB_BENCH" replay "$D/zipf" "$trace" $vol $cache > "$csv"
    # reference: an LRU cache of 128 KiB blocks with the same capacity (the
    # budget less the journal's first file, 1/16 of it), on the same stream
    local scen
    scen=$(awk -F, '/cache hit rate/ {print $1; exit}' "$csv" | tr -d '"')
    $PY - "$trace" $cache "$scen" >> "$csv" <<'EOF'
import collections, csv, sys
cap = int(sys.argv[2]) * 2**20 * 15 // 16 // (128 * 1024)
lru, hits, n = collections.OrderedDict(), 0, 0
for line in open(sys.argv[1]):
    p = line.split()
    if "read" not in p:
        continue
    b = int(p[p.index("read") + 1]) // (128 * 1024)
    n += 1
    if b in lru:
        hits += 1
        lru.move_to_end(b)
    else:
        lru[b] = 1
        if len(lru) > cap:
            lru.popitem(last=False)
csv.writer(sys.stdout).writerow([sys.argv[3], "cache hit rate", "%", "LRU (simulated)",
                                 "%.3f" % (100.0 * hits / n)])
EOF
    rm -rf "$D/zipf" "$trace"
    cat > "$D/notes.md" <<EOF
The read stream of \`fio --rw=randread --bs=4k --random_distribution=zipf:1.2 --size=${vol}M
--number_ios=$ios --randseed=12\` (recorded with fio's null engine and --write_iolog) is
replayed in-process against a ${vol} MiB volume (file:// store, filled and drained) woken with
an empty cache of ${cache} MiB (cache.disk_size; the clean cache gets the budget less the
journal). Hit rate = cache_hits / (hits + misses) of glidefs_stats (per 128 KiB block read).
Reference: an LRU cache of the same number of 128 KiB blocks on the same stream (simulated).
EOF
    report zipf "Cache hit rate on a skewed (zipf:1.2) read workload 8x larger than the cache" \
        "$csv" "BENCH_QUICK=$Q bench/lib.sh zipf  # $LIB_BENCH replay DIR TRACE $vol $cache" \
        "$D/notes.md"
}

for s in "${SCEN[@]}"; do
    echo "=== lib.sh: $s" >&2
    "$s"
done
