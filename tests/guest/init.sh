#!/bin/sh
# init.sh - /init of the GlideFS test guest (busybox-static, in the initramfs
# that mkguest.py builds). It loads the virtio block modules, waits for
# /dev/vda (the glidefsd export, through QEMU's NBD client), runs the
# scenario named by `glidefs_test=` on the kernel command line and powers off.
#
# Everything the host needs goes to the console (ttyS0) as lines starting
# with GLIDEFS-:
#   GLIDEFS-READY                   modules loaded, the disk is there
#   GLIDEFS-FILE path sha256 bytes  a file written (writer) or read back (verify)
#   GLIDEFS-DURABLE path sha256 bytes  crashwriter: dd conv=fsync and sync DIR
#                                      both reported success for this file
#   GLIDEFS-TIME name ns [bytes]    an in-guest duration (from /proc/timer_list)
#   GLIDEFS-INFO text               anything worth showing
#   GLIDEFS-IOERR text              crashwriter: the disk failed (expected there)
#   GLIDEFS-FAIL reason             the scenario failed
#   GLIDEFS-DONE                    the scenario finished
#
# Parameters (kernel command line): glidefs_test=writer|verify|crashwriter|
# crashverify|bench, glidefs_mib= (writer: size of the file tree, bench: size
# of the dd file), glidefs_sync64=1 (measure `sync` of 64 MiB dirty data),
# glidefs_files=N (crashwriter: after N durable files unmount and power off
# cleanly; 0, the default: write until the disk fails).
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp

glidefs_test=none
glidefs_mib=16
glidefs_sync64=0
glidefs_syncs=20
glidefs_files=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        glidefs_test=*) glidefs_test=${arg#*=} ;;
        glidefs_mib=*) glidefs_mib=${arg#*=} ;;
        glidefs_sync64=*) glidefs_sync64=${arg#*=} ;;
        glidefs_syncs=*) glidefs_syncs=${arg#*=} ;;
        glidefs_trim=*) glidefs_trim=${arg#*=} ;;
        glidefs_files=*) glidefs_files=${arg#*=} ;;
    esac
done

say() { echo "GLIDEFS-$*"; }
off() {
    say DONE
    umount /mnt 2>/dev/null
    poweroff -f
    sleep 5
}
fail() {
    say "FAIL $*"
    dmesg | tail -n 30 | sed 's/^/GLIDEFS-INFO dmesg: /'
    poweroff -f
    sleep 5
}
# now: nanoseconds since boot, without a fork (ash's read is a builtin)
now() {
    { read -r _l; read -r _l; read -r _a _b NOW _c; } < /proc/timer_list
}
sha() {  # sha PATH -> $SHA
    SHA=$(sha256sum "$1") || return 1
    SHA=${SHA%% *}
}

for m in $(cat /etc/modules); do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
n=0
until [ -b /dev/vda ]; do
    n=$((n + 1))
    [ $n -lt 500 ] || fail "no /dev/vda after 5 s"
    usleep 10000
done
say READY

# sync64 DIR: dirty 64 MiB of random data in the page cache (writeback held
# back), then time one `sync`: what a guest flush of that much data costs.
# The file system needs well over 128 MiB free: ext4 starts writeback on its
# own when free space drops below twice the delayed-allocation dirty data.
sync64() {
    [ "$glidefs_sync64" = 1 ] || return 0
    for k in dirty_ratio:95 dirty_background_ratio:90 dirty_expire_centisecs:360000 \
             dirty_writeback_centisecs:0; do
        echo ${k#*:} > /proc/sys/vm/${k%:*}
    done
    dd if=/dev/urandom of=/tmp/rnd bs=1M count=8 2>/dev/null || fail "urandom"
    sync
    i=0
    while [ $i -lt 8 ]; do
        dd if=/tmp/rnd of=$1/sync64.tmp bs=1M seek=$((i * 8)) conv=notrunc 2>/dev/null ||
            fail "sync64 write"
        i=$((i + 1))
    done
    rm -f /tmp/rnd
    dirty=$(awk '/^Dirty:/ {print $2 * 1024}' /proc/meminfo)
    now; t0=$NOW
    sync || fail "sync64: sync reported an error"
    now; t1=$NOW
    say "TIME sync64 $((t1 - t0)) $dirty"
    rm -f $1/sync64.tmp
    sync
    echo 20 > /proc/sys/vm/dirty_ratio
    echo 10 > /proc/sys/vm/dirty_background_ratio
    echo 3000 > /proc/sys/vm/dirty_expire_centisecs
    echo 500 > /proc/sys/vm/dirty_writeback_centisecs
}

case "$glidefs_test" in
writer)
    # Life of a VM, part 1: format, write a tree of random files, record
    # their checksums on the disk, sync, power off.
    now; t0=$NOW
    mke2fs -F -q /dev/vda >/dev/null || fail "mke2fs"
    now; say "TIME mke2fs $((NOW - t0))"
    mount -t ext4 /dev/vda /mnt || fail "mount"
    sync64 /mnt
    total=0
    want=$((glidefs_mib * 1048576))
    i=0
    now; t0=$NOW
    while [ $total -lt $want ]; do
        d=/mnt/tree/d$((i % 5))/s$((i % 3))
        mkdir -p $d
        blocks=$((RANDOM % 256 + 1))
        extra=$((RANDOM % 4096))
        dd if=/dev/urandom of=$d/f$i bs=4096 count=$blocks 2>/dev/null || fail "write $d/f$i"
        # an odd tail: not every file ends on a block boundary
        head -c $extra /dev/urandom >> $d/f$i || fail "tail $d/f$i"
        total=$((total + blocks * 4096 + extra))
        i=$((i + 1))
    done
    now; say "TIME write_tree $((NOW - t0)) $total"
    cd /mnt
    find tree -type f | sort > /tmp/list
    while read -r f; do
        sha $f || fail "sha256sum $f"
        echo "$SHA  $f" >> MANIFEST
        say "FILE $f $SHA $(stat -c %s $f)"
    done < /tmp/list
    cd /
    now; t0=$NOW
    sync || fail "sync"
    now; say "TIME final_sync $((NOW - t0))"
    if [ "$glidefs_trim" = 1 ]; then
        # 16 MiB written, synced, deleted: fstrim hands them back (DISCARD)
        dd if=/dev/urandom of=/mnt/scratch bs=1M count=16 2>/dev/null || fail "scratch"
        sync || fail "sync scratch"
        rm /mnt/scratch && sync || fail "rm scratch"
        out=$(fstrim -v /mnt 2>&1) || fail "fstrim: $out"
        say "TRIM $out"
    fi
    umount /mnt || fail "umount"
    off
    ;;
verify)
    # Life of a VM, part 2: read every file back and check it against the
    # manifest on the disk (the host checks it against what the writer said).
    mount -t ext4 /dev/vda /mnt || fail "mount"
    [ -s /mnt/MANIFEST ] || fail "no MANIFEST on the disk"
    cd /mnt
    now; t0=$NOW
    bytes=0
    while read -r want f; do
        sha $f || fail "cannot read $f"
        [ "$SHA" = "$want" ] || fail "checksum of $f: $SHA, manifest says $want"
        s=$(stat -c %s $f)
        bytes=$((bytes + s))
        say "FILE $f $SHA $s"
    done < MANIFEST
    now; say "TIME verify $((NOW - t0)) $bytes"
    cd /
    sync64 /mnt
    umount /mnt || fail "umount"
    off
    ;;
crashwriter)
    # Crash under a live guest: write files in a loop, each made durable
    # with calls that report errors; say which ones are. The host kills
    # glidefsd somewhere in here.
    mount -t ext4 /dev/vda /mnt || fail "mount"
    sync64 /mnt
    mkdir -p /mnt/c
    sync /mnt || fail "sync /mnt"
    i=0
    while :; do
        f=c/f$i
        n=$((RANDOM % 16 + 1))
        if ! dd if=/dev/urandom of=/mnt/$f bs=65536 count=$n conv=fsync 2>/tmp/err; then
            say "IOERR dd $f: $(tail -n 1 /tmp/err)"
            break
        fi
        if ! sync /mnt/c 2>/tmp/err; then
            say "IOERR sync /mnt/c: $(tail -n 1 /tmp/err)"
            break
        fi
        sha /mnt/$f || { say "IOERR sha256sum $f"; break; }
        say "DURABLE $f $SHA $((n * 65536))"
        i=$((i + 1))
        if [ "$glidefs_files" -gt 0 ] && [ $i -ge "$glidefs_files" ]; then
            umount /mnt || fail "umount"
            off
        fi
    done
    # the disk is gone: nothing more to do (no umount, no sync)
    say DONE
    poweroff -f -n
    sleep 5
    ;;
crashverify)
    # After the crash: mount (ext4 replays its journal), read every file,
    # unmount cleanly.
    mount -t ext4 /dev/vda /mnt || fail "mount"
    dmesg | grep -i "EXT4-fs" | sed 's/^/GLIDEFS-INFO dmesg: /'
    now; t0=$NOW
    bytes=0
    for p in /mnt/c/f*; do
        [ -f "$p" ] || continue
        sha $p || fail "cannot read $p"
        s=$(stat -c %s $p)
        bytes=$((bytes + s))
        say "FILE ${p#/mnt/} $SHA $s"
    done
    now; say "TIME verify $((NOW - t0)) $bytes"
    umount /mnt || fail "umount"
    off
    ;;
bench)
    # dd write (conv=fsync) and read throughput, and `sync` latency after a
    # small write, on an ext2 file system.
    mke2fs -F -q /dev/vda >/dev/null || fail "mke2fs"
    mount -t ext4 /dev/vda /mnt || fail "mount"
    sz=$glidefs_mib
    dd if=/dev/urandom of=/tmp/rnd bs=1M count=$sz 2>/dev/null || fail "urandom"
    sync
    now; t0=$NOW
    dd if=/tmp/rnd of=/mnt/b bs=1M conv=fsync 2>/dev/null || fail "dd write"
    now; say "TIME dd_write $((NOW - t0)) $((sz * 1048576))"
    rm -f /tmp/rnd
    echo 3 > /proc/sys/vm/drop_caches
    now; t0=$NOW
    dd if=/mnt/b of=/dev/null bs=1M 2>/dev/null || fail "dd read"
    now; say "TIME dd_read $((NOW - t0)) $((sz * 1048576))"
    i=0
    dd if=/dev/urandom of=/tmp/small bs=4096 count=1 2>/dev/null
    while [ $i -lt $glidefs_syncs ]; do
        dd if=/tmp/small of=/mnt/b bs=4096 seek=$((i * 7)) count=1 conv=notrunc 2>/dev/null ||
            fail "small write"
        now; t0=$NOW
        sync || fail "sync"
        now; say "TIME sync_4k $((NOW - t0))"
        i=$((i + 1))
    done
    sync64 /mnt
    umount /mnt || fail "umount"
    off
    ;;
*)
    fail "unknown glidefs_test=$glidefs_test"
    ;;
esac
fail "fell off the end"
