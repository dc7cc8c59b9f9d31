#!/usr/bin/env bash
# glidefs-image import/export round trip on the file:// store: a 40 MiB image
# with random data, zero runs and a size that is not a multiple of 512; import,
# export (from the cache), wipe the cache, export again (from the store), and
# compare; bad usage gives exit 2 and a clear message. Everything written
# (image, store objects, cache files) is owner-only, whatever the umask.
set -euo pipefail
IMAGE_TOOL=$1
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-image-XXXXXX")
trap 'rm -rf "$t"' EXIT
cat > "$t/g.yaml" <<YAML
cache:
  dir: $t/cache
  disk_size: 16M
storage:
  url: file://$t/store
servers:
  nbd:
    sync_delay_ms: 10
YAML
# 40 MiB + 100 bytes: random, then a zero run, then random again
head -c $((16 << 20)) /dev/urandom > "$t/in.img"
head -c $((8 << 20)) /dev/zero >> "$t/in.img"
head -c $(((16 << 20) + 100)) /dev/urandom >> "$t/in.img"

# umask 0: the modes below are the code's own, not the umask's
(umask 000 && "$IMAGE_TOOL" import -c "$t/g.yaml" vm1 "$t/in.img")
# the store holds segments and a manifest, in the documented layout
ls "$t/store/nbd/vm1/seg/" | grep -Eq '^[0-9a-f]{16}-[0-9a-f]{16}$'
ls "$t/store/nbd/vm1/manifest/" | grep -Eq '^[0-9a-f]{16}-[0-9a-f]{16}$'
grep -q '"size": 41943552' "$t/store/nbd/vm1/volume.json"

(umask 000 && "$IMAGE_TOOL" export -c "$t/g.yaml" vm1 "$t/out1.img")
# a guest's disk is nobody else's business: the image, every store object and
# directory, and the cache (journal, cache.dat, lock) are owner-only
[ "$(stat -c %a "$t/out1.img")" = 600 ] || { echo "exported image has mode $(stat -c %a "$t/out1.img")"; exit 1; }
open=$(find "$t/store" "$t/cache" -perm /077 -printf '%m %p\n')
[ -z "$open" ] || { echo "readable by others:"; echo "$open"; exit 1; }
[ -n "$(find "$t/cache" -name 'cache.dat')" ] || { echo "no cache.dat to check"; exit 1; }
rm -rf "$t/cache"
"$IMAGE_TOOL" export -c "$t/g.yaml" vm1 "$t/out2.img"
# the image padded to 512 with zeroes
cp "$t/in.img" "$t/padded.img"
truncate -s 41943552 "$t/padded.img"
cmp "$t/padded.img" "$t/out1.img"
cmp "$t/padded.img" "$t/out2.img"

# usage errors
set +e
"$IMAGE_TOOL" import vm1 "$t/in.img" 2>"$t/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q usage "$t/err"
set +e
"$IMAGE_TOOL" import -c "$t/g.yaml" ../bad "$t/in.img" 2>"$t/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "invalid volume name" "$t/err"
set +e
"$IMAGE_TOOL" export -c "$t/g.yaml" nosuch "$t/x.img" 2>"$t/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "cannot open volume nosuch" "$t/err"
echo "glidefs-image round trip: ok"
