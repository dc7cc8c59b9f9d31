#!/usr/bin/env bash
# glidefs-image scrub on the file:// store: a clean volume scrubs clean
# (exit 0, quick and deep); a byte flipped in the middle of a segment (a
# payload) is found by --deep only (exit 3, "damaged"); a deleted segment is
# found by the quick scrub (exit 3, "missing KEY"); bad usage exits 2, a
# volume that does not exist 1. Orphans (on a second volume): a segment
# object of an epoch the lease fenced, and junk under seg/, are there; the
# read-only scrub reports the segment only (exit 3, "orphan KEY size N"),
# --delete-orphans (it takes the write lease) deletes it and nothing else
# (exit 0), and a rescrub is clean.
set -euo pipefail
IMAGE_TOOL=$1
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-iscrub-XXXXXX")
trap 'rm -rf "$t"' EXIT
cat > "$t/g.yaml" <<YAML
cache:
  dir: $t/cache
  disk_size: 16M
storage:
  url: file://$t/store
  compression: none
servers:
  nbd:
    sync_delay_ms: 10
YAML
head -c $((4 << 20)) /dev/urandom > "$t/in.img"
"$IMAGE_TOOL" import -c "$t/g.yaml" vm1 "$t/in.img"

run() { # expected-exit args...: runs, checks the exit status, output in $t/out
    local want=$1; shift
    set +e
    "$IMAGE_TOOL" "$@" >"$t/out" 2>"$t/err"; local rc=$?
    set -e
    if [ $rc -ne "$want" ]; then
        echo "glidefs-image $*: exit $rc, want $want"; cat "$t/out" "$t/err"; exit 1
    fi
}

run 0 scrub -c "$t/g.yaml" vm1
grep -q '^scrub of vm1 (quick): .*: clean$' "$t/out"
run 0 scrub --deep -c "$t/g.yaml" vm1
grep -q '^scrub of vm1 (deep): .*: clean$' "$t/out"

# a byte in the middle of the largest segment: inside a payload
seg=$(ls -S "$t/store/nbd/vm1/seg/" | head -1)
f="$t/store/nbd/vm1/seg/$seg"
mid=$(( $(stat -c %s "$f") / 2 ))
b=$(dd if="$f" bs=1 skip=$mid count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $(( b ^ 1 )))" | dd of="$f" bs=1 seek=$mid conv=notrunc 2>/dev/null
run 0 scrub -c "$t/g.yaml" vm1
run 3 scrub -c "$t/g.yaml" vm1 --deep
grep -q "^damaged nbd/vm1/seg/$seg offset [0-9]* length [0-9]*$" "$t/out"
[ "$(grep -c '^damaged' "$t/out")" = 1 ]
grep -q ': 0 missing, 0 truncated, 0 bad headers, 1 damaged blocks$' "$t/out"

# another segment deleted: the quick scrub finds it
other=$(ls "$t/store/nbd/vm1/seg/" | grep -v "$seg" | head -1)
rm "$t/store/nbd/vm1/seg/$other"
run 3 scrub -c "$t/g.yaml" vm1
[ "$(cat "$t/out" | head -n -1)" = "missing nbd/vm1/seg/$other" ]

# orphans, on a volume of their own: --delete-orphans on a clean store
# takes the lease once (epoch 2), which fences epoch 1 at its last segment
"$IMAGE_TOOL" import -c "$t/g.yaml" vm2 "$t/in.img"
run 0 scrub --delete-orphans -c "$t/g.yaml" vm2
grep -q '^scrub of vm2 (quick): .*: clean$' "$t/out"
segs="$t/store/nbd/vm2/seg"
nseg=$(ls "$segs" | wc -l)
orphan=0000000000000001-0000000000000100
head -c 1234 /dev/urandom > "$segs/$orphan"
head -c 10 /dev/urandom > "$segs/junk"
run 3 scrub -c "$t/g.yaml" vm2
[ "$(head -n -1 "$t/out")" = "orphan nbd/vm2/seg/$orphan size 1234" ]
grep -q '^scrub of vm2 (quick): .*: 1 orphans (1234 bytes), 0 deleted$' "$t/out"
run 0 scrub -c "$t/g.yaml" vm2 --delete-orphans
[ "$(head -n -1 "$t/out")" = "orphan nbd/vm2/seg/$orphan size 1234 (deleted)" ]
[ ! -e "$segs/$orphan" ] && [ -e "$segs/junk" ]
[ "$(ls "$segs" | wc -l)" = $((nseg + 1)) ]
run 0 scrub --deep -c "$t/g.yaml" vm2
grep -q '^scrub of vm2 (deep): .*: clean$' "$t/out"

# usage and a volume that does not exist
run 2 scrub -c "$t/g.yaml" vm1 extra
grep -q usage "$t/err"
run 2 export --deep -c "$t/g.yaml" vm1 "$t/x.img"
run 2 export --delete-orphans -c "$t/g.yaml" vm1 "$t/x.img"
run 1 scrub -c "$t/g.yaml" nosuch
grep -q "cannot open volume nosuch" "$t/err"
echo ok
