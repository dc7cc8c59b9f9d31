#!/usr/bin/env bash
# examples/nbdkit-glidefs: nbdkit serves a libglidefs volume; qemu-io writes
# patterns (aligned, unaligned, FUA, zero, discard) and reads them back;
# SIGTERM makes nbdkit drain and exit 0; a second nbdkit on an empty cache
# reads everything back from the store.
# Usage: test_nbdkit.sh PLUGIN.so SANITIZE(0|1)
set -euo pipefail
plugin=$(realpath "$1") sanitize=$2
for tool in nbdkit qemu-io; do
  command -v $tool >/dev/null || { echo "$tool not installed: skipped"; exit 77; }
done
srv=(nbdkit)
if [ "$sanitize" = 1 ]; then
  # the plugin and libglidefs are instrumented, nbdkit is not: load the
  # runtimes first (into nbdkit only; check.sh drops them for the clients)
  pre=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)
  srv=(env LD_PRELOAD="$pre" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" nbdkit)
fi
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-nbdkit-XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$t"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
cat > "$t/g.yaml" <<YAML
cache:
  dir: $t/cache
  disk_size: 64M
storage:
  url: file://$t/store
servers:
  shutdown_timeout_s: 60
  nbd:
    # nothing is uploaded on its own: what the store holds after SIGTERM was
    # put there by the plugin's drain at exit
    sync_delay_ms: 3600000
    max_dirty_age_ms: 86400000
YAML
sock=$t/nbd.sock
uri="nbd+unix:///?socket=$sock"

qio() {  # qemu-io on the export; fails on any failed command or pattern
  qemu-io -f raw "$1" "${@:2}" > "$t/qio.out" 2>&1 || { cat "$t/qio.out"; return 1; }
  if grep -Eiq 'fail|error|mismatch' "$t/qio.out"; then cat "$t/qio.out"; return 1; fi
}

"${srv[@]}" --unix "$sock" -f "$plugin" config="$t/g.yaml" name=vm size=64M \
  > "$t/nbdkit.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 30))
until [ -S "$sock" ]; do
  kill -0 "$pid" 2>/dev/null || { echo "nbdkit exited:"; cat "$t/nbdkit.log"; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "no socket after 30 s"; cat "$t/nbdkit.log"; exit 1; }
  sleep 0.05
done

if command -v nbdinfo >/dev/null; then
  nbdinfo "$uri" > "$t/info"
  for flag in can_flush can_fua can_multi_conn can_trim can_zero can_fast_zero can_cache; do
    grep -Eq "^[[:space:]]*$flag: true" "$t/info" || { echo "nbdinfo: $flag is not true"; cat "$t/info"; exit 1; }
  done
  grep -Eq "^[[:space:]]*export-size: 67108864" "$t/info" || { cat "$t/info"; exit 1; }
  grep -Eq "^[[:space:]]*block_size_minimum: 512" "$t/info" || { cat "$t/info"; exit 1; }
  grep -Eq "^[[:space:]]*base:allocation" "$t/info" || { echo "no block status"; cat "$t/info"; exit 1; }
fi

qio "$uri" -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 1M 64k' -c 'write -P 0x11 2097252 3' \
           -c 'write -f -P 0xee 8M 4k' -c 'write -P 0x77 4M 256k' -c 'write -z 4M 128k' \
           -c 'write -P 0x66 6M 256k' -c 'discard 6M 128k' -c 'flush'
# the reads that must match, now and from the store after a restart; and
# block status: the never-written end of the volume is a hole
cat > "$t/check.sh" <<'SH'
set -eu
unset LD_PRELOAD
out=$(dirname "$0")/check.out
qemu-io -f raw "$1" -c 'read -P 0xab 0 1M' -c 'read -P 0xcd 1M 64k' -c 'read -P 0 2M 100' \
  -c 'read -P 0x11 2097252 3' -c 'read -P 0 2097255 409' -c 'read -P 0xee 8M 4k' \
  -c 'read -P 0 4M 128k' -c 'read -P 0x77 4325376 128k' -c 'read -P 0 6M 128k' \
  -c 'read -P 0x66 6422528 128k' -c 'read -P 0 60M 4M' > "$out" 2>&1 || { cat "$out"; exit 1; }
if grep -Eiq 'fail|error|mismatch' "$out"; then cat "$out"; exit 1; fi
if command -v nbdinfo >/dev/null; then
  nbdinfo --map "$1" > "$out"
  tail -n 1 "$out" | awk '{ exit !($1 <= 62914560 && $1 + $2 == 67108864 && $3 == 3) }' ||
    { echo "block status: the end is not a hole"; cat "$out"; exit 1; }
  head -n 1 "$out" | awk '{ exit !($1 == 0 && $2 >= 1114112 && $3 == 0) }' ||
    { echo "block status: the start is not data"; cat "$out"; exit 1; }
fi
SH
bash "$t/check.sh" "$uri"
if [ -n "$(ls -A "$t/store/nbd/vm/seg/" 2>/dev/null)" ]; then
  echo "segments uploaded before the drain (sync_delay_ms is an hour)"; exit 1
fi

# SIGTERM: nbdkit's cleanup drains the volume into the store and exits 0
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ $rc -eq 0 ] || { echo "nbdkit exited $rc after SIGTERM"; cat "$t/nbdkit.log"; exit 1; }
segs=$(ls "$t/store/nbd/vm/seg/")
grep -Eq '^[0-9a-f]{16}-[0-9a-f]{16}$' <<< "$segs" ||
  { echo "no segments in the store"; exit 1; }

# an empty cache: everything comes back from the store (nbdkit --run starts
# the client once the server is ready and exits with its status)
rm -rf "$t/cache"
"${srv[@]}" -U - "$plugin" config="$t/g.yaml" name=vm drain=false \
  --run "bash $t/check.sh \"\$uri\"" > "$t/nbdkit2.log" 2>&1 ||
  { cat "$t/nbdkit2.log"; exit 1; }
echo "nbdkit-glidefs-plugin: writes read back, drained on SIGTERM, read back from the store"
