#!/bin/bash
# test_nbdcopy.sh — nbdcopy a 256 MiB random image into a glidefsd export and
# back out, compared with cmp; then again after a restart on an empty cache
# directory (everything comes back from the store).
# usage: test_nbdcopy.sh GLIDEFSD
GLIDEFSD=$1
. "$(dirname "$0")/lib.sh"
need nbdcopy nbdinfo cmp

write_config d "$T/cache" 256M
start_daemon d
URI="nbd+unix:///copy?socket=$SOCK"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$T/in.raw"
nbdcopy --flush "$T/in.raw" "$URI"
nbdcopy "$URI" "$T/out.raw"
cmp "$T/in.raw" "$T/out.raw"
echo "ok - nbdcopy 256 MiB in and out"
rm -f "$T/out.raw"
stop_daemon
echo "ok - drained and exited 0"

write_config d2 "$T/cache2" 256M
start_daemon d2
nbdcopy "nbd+unix:///copy?socket=$SOCK" "$T/out2.raw"
cmp "$T/in.raw" "$T/out2.raw"
echo "ok - read back from the store on an empty cache"
stop_daemon
