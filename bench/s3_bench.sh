#!/bin/bash
# s3_bench.sh — glidefs against plain S3 clients on the same S3 server
# (s3rver behind the strict SigV4 proxy of tests/s3/s3env.py), same run:
#   - drain of N MiB of dirty data vs `aws s3 cp` of the same bytes (issue 3)
#   - sequential 1 MiB reads of the woken volume on an empty cache vs a plain
#     GET loop (curl, one connection) over the same volume's segment objects
#   - cold 4 KiB random reads of the drained volume: reads/GETs per second,
#     p50/p99 latency (issue 3)
#
#   bench/s3_bench.sh     starts s3env.py itself (needs node/npm for s3rver)
# env: BUILD, BENCH_DIR, RESULTS, BENCH_QUICK=1, S3_MB (drained, default 1024;
#      quick 256), SEQ_MB (read back sequentially, default 256; quick 64),
#      DRAIN_REPS (default 1), READ_REPS (default 2; quick 1)
set -euo pipefail
. "$(dirname "$0")/common.sh"
if [ -z "${S3_ENDPOINT:-}" ]; then
    need node npm curl
    [ -x /usr/bin/aws ] || { echo "bench: missing /usr/bin/aws (awscli)" >&2; exit 1; }
    exec $PY "$BENCH_SRC/tests/s3/s3env.py" --cache "$BUILD/s3cache" --timeout 1800 -- "$0" "$@"
fi
if [ "$BENCH_QUICK" = 1 ]; then
    S3_MB=${S3_MB:-256}; DRAIN_REPS=${DRAIN_REPS:-1}; SEQ_MB=${SEQ_MB:-64}; READ_REPS=${READ_REPS:-1}; RAND_S=5
else
    S3_MB=${S3_MB:-1024}; DRAIN_REPS=${DRAIN_REPS:-1}; SEQ_MB=${SEQ_MB:-256}; READ_REPS=${READ_REPS:-2}; RAND_S=10
fi
D=$BENCH_DIR/s3
rm -rf "$D"
mkdir -p "$D"
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

head -c $((S3_MB * 1048576)) /dev/urandom > "$D/data.bin"
DRAIN="drain vs upload of the same bytes"
SEQ="sequential 1 MiB read (woken volume, empty cache)"
now() { date +%s.%N; }
for ((rep = 0; rep < DRAIN_REPS; rep++)); do
    echo "s3: drain rep $rep: aws s3 cp of $S3_MB MiB" >&2
    drop_cache "$D/data.bin"
    a=$(now)
    "${AWS[@]}" s3 cp --only-show-errors "$D/data.bin" "s3://$S3_BUCKET/peer/data$rep.bin"
    b=$(now)
    echo "\"$DRAIN\",throughput,MiB/s,aws s3 cp,$($PY -c "print($S3_MB/($b-$a))")" >> "$CSV"
    echo "\"$DRAIN\",time,s,aws s3 cp,$($PY -c "print($b-$a)")" >> "$CSV"
    echo "\"$DRAIN\",PUTs,count,aws s3 cp,$(( (S3_MB + 7) / 8 + 2 ))" >> "$CSV"

    echo "s3: drain rep $rep: glidefs write + drain of $S3_MB MiB" >&2
    drop_cache "$D/data.bin"
    "$LIB_BENCH" s3fill "$D/fill" "vol$rep" "$D/data.bin" > "$D/fill.csv"
    sed "s/^drain [0-9]* MiB dirty to s3rver,/\"$DRAIN\",/" "$D/fill.csv" |
        grep -E ',(throughput|time|PUTs),' >> "$CSV"
    grep -vE ',(throughput|time|PUTs),' "$D/fill.csv" >> "$CSV" || true
    rm -rf "$D/fill"
done
rm -f "$D/data.bin"

# the segments holding the first SEQ_MB of vol0, in key (= upload) order
"${AWS[@]}" s3api list-objects-v2 --bucket "$S3_BUCKET" --prefix "bench/nbd/vol0/seg/" \
    --query 'Contents[].[Key,Size]' --output text | sort > "$D/keys.txt"
: > "$D/curl.cfg"
total=0 nkeys=0
while read -r key size; do
    [ $total -lt $((SEQ_MB * 1048576)) ] || break
    printf 'url = "%s/%s/%s"\noutput = "/dev/null"\n' "$S3_ENDPOINT" "$S3_BUCKET" "$key" >> "$D/curl.cfg"
    total=$((total + size)) nkeys=$((nkeys + 1))
done < "$D/keys.txt"
for ((rep = 0; rep < READ_REPS; rep++)); do
    echo "s3: read rep $rep: GET loop over the first $SEQ_MB MiB of segments" >&2
    a=$(now)
    curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --config "$D/curl.cfg"
    b=$(now)
    echo "\"$SEQ\",throughput,MiB/s,GET loop,$($PY -c "print($total/2**20/($b-$a))")" >> "$CSV"
    echo "\"$SEQ\",GETs,count,GET loop,$nkeys" >> "$CSV"
    echo "\"$SEQ\",GET bytes,MiB,GET loop,$($PY -c "print($total/2**20)")" >> "$CSV"

    echo "s3: read rep $rep: glidefs sequential read of the first $SEQ_MB MiB, empty cache" >&2
    "$LIB_BENCH" s3seq "$D/lib" vol0 $SEQ_MB |
        sed "s/^sequential 1 MiB read of [0-9]* MiB (woken; empty cache),/\"$SEQ\",/" >> "$CSV"
    rm -rf "$D/lib"

    echo "s3: read rep $rep: glidefs cold random reads" >&2
    "$LIB_BENCH" s3rand "$D/lib" vol0 $RAND_S >> "$CSV"
    rm -rf "$D/lib"
done

cat > "$D/notes.md" <<EOF
One s3rver (npm, 3.7.1) behind tests/s3/s3proxy.py (the strict SigV4 proxy the tests use; it
is a Python process and every request of both sides goes through it), on 127.0.0.1, data on
the same disk; started by tests/s3/s3env.py. ${S3_MB} MiB of random data; drain ${DRAIN_REPS}
run(s), reads ${READ_REPS} run(s), the two sides interleaved.
Drain: the bytes are written into a new volume (1 MiB pwrites, flushed; default settings:
blocks_per_batch 25, upload_parallel 4, storage.max_connections 8: a drain keeps up to
storage.max_connections segments of 3.2 MiB in flight and assembles the next while they
upload), then glidefs_drain is timed. Peer: \`aws s3 cp FILE s3://...\` of the same file (awscli defaults: 8 MiB multipart
chunks, 10 concurrent requests), timed whole. The aws PUT count is the multipart estimate.
Sequential read: the volume is woken with an empty cache and its first ${SEQ_MB} MiB read with
1 MiB preads, timed. Peer: curl (one process, one kept-alive connection, SigV4) GETting the
volume's segment objects in key order until ${SEQ_MB} MiB, i.e. (nearly) the same bytes as
whole objects.
Cold random read: the drained volume woken with an empty cache, 4 KiB preads at random
offsets for ${RAND_S} s from one thread, each timed.
EOF
report s3 "S3: drain, woken sequential read and cold random read vs plain S3 clients" "$CSV" \
    "BENCH_QUICK=$BENCH_QUICK S3_MB=$S3_MB SEQ_MB=$SEQ_MB bench/s3_bench.sh" "$D/notes.md"
