#!/bin/bash
# test_qemu.sh — qemu-io write/read with patterns (-P) against glidefsd, and
# qemu-img convert of a raw image into an export and back out again.
# usage: test_qemu.sh GLIDEFSD
GLIDEFSD=$1
. "$(dirname "$0")/lib.sh"
need qemu-io qemu-img nbdinfo cmp

write_config d "$T/cache" 64M
start_daemon d
URI="nbd+unix:///qvm?socket=$SOCK"

# Patterns at the start, in the middle, the last sector; a hole; zero-write.
qemu-io -f raw "$URI" \
    -c "write -P 0x5a 0 1M" \
    -c "write -f -P 0xa5 8M 64k" \
    -c "write -P 0x11 67108352 512" \
    -c "write -z -u 128k 128k" -c "write -z 256k 128k" \
    -c "discard 8M 64k" \
    -c "flush" > "$T/qio.out"
qemu-io -f raw -r "$URI" \
    -c "read -P 0x5a 0 128k" \
    -c "read -P 0 128k 256k" \
    -c "read -P 0x5a 384k 640k" \
    -c "read -P 0 8M 64k" \
    -c "read -P 0x11 67108352 512" \
    -c "read -P 0 32M 1M" > "$T/qio2.out"
if grep -qi "failed" "$T/qio.out" "$T/qio2.out"; then
    cat "$T/qio.out" "$T/qio2.out"; echo "FAIL: qemu-io pattern"; exit 1
fi
echo "ok - qemu-io patterns"
# Out of range is an error, not a crash.
if qemu-io -f raw "$URI" -c "read 67108864 512" 2>&1 | grep -q "^read 512/512"; then
    echo "FAIL: read past the end succeeded"; exit 1
fi
echo "ok - qemu-io read past the end fails"

# qemu-img convert in and out: a 48 MiB raw image with data and holes.
IMG=$T/in.raw
truncate -s 48M "$IMG"
dd if=/dev/urandom of="$IMG" bs=1M count=5 conv=notrunc status=none
dd if=/dev/urandom of="$IMG" bs=1M seek=20 count=3 conv=notrunc status=none
dd if=/dev/urandom of="$IMG" bs=512 seek=$((48 * 2048 - 1)) count=1 conv=notrunc status=none
qemu-img convert -n -f raw -O raw "$IMG" "nbd+unix:///img?socket=$SOCK" 2>&1 || {
    # -n needs the target to exist at least as large: it is (64 MiB, created on connect)
    echo "FAIL: qemu-img convert in"; exit 1; }
qemu-img convert -f raw -O raw "nbd+unix:///img?socket=$SOCK" "$T/out.raw"
truncate -s 48M "$T/out.raw"
cmp "$IMG" "$T/out.raw"
echo "ok - qemu-img convert in and out"
qemu-img compare -f raw -F raw "$IMG" "$T/out.raw" >/dev/null
echo "ok - qemu-img compare"
stop_daemon
echo "ok - daemon exited 0"
