#!/bin/bash
# boot_image.sh — the Debian root filesystem bench/boot.sh boots (issue 28):
# debootstrap (Debian 12, minbase + systemd + the cloud kernel) into a
# folder, a marker service that prints GLIDEFS-BOOTED on the serial console
# once multi-user.target is reached and powers off, then an ext4 image of it
# (mkfs.ext4 -d) and the kernel and initramfs the rootfs installed.
#
#   bench/boot_image.sh OUT_DIR     → OUT_DIR/{root.img,vmlinuz,initrd.img}
#
# Built once: a stamp (this script's hash) decides whether to rebuild. Needs
# root (debootstrap, chroot), debootstrap and apt's access to Debian's
# archive (the mirror of /etc/apt/sources.list.d). About 300 MiB of packages.
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
OUT=${1:?usage: boot_image.sh OUT_DIR}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
stamp=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ] && [ -f "$OUT/root.img" ]; then
    exit 0
fi
command -v debootstrap >/dev/null || { echo "boot_image.sh: apt-get install debootstrap" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "boot_image.sh: needs root (debootstrap)" >&2; exit 1; }
root=$OUT/rootfs
rm -rf "$root" "$OUT/stamp"
echo "boot_image.sh: debootstrap $SUITE into $root" >&2
debootstrap --variant=minbase \
    --include=systemd-sysv,udev,linux-image-cloud-amd64,initramfs-tools,e2fsprogs \
    "$SUITE" "$root" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 ||
    { tail -20 "$OUT/debootstrap.log" >&2; exit 1; }

# the marker: after multi-user.target, say so on the console, stay up
# glidefs.stay=S seconds (kernel command line; 0 by default: a VM that lives
# on lets its access profile's recording end), and power off
cat > "$root/usr/local/bin/glidefs-marker" <<'SCRIPT'
#!/bin/sh
echo GLIDEFS-BOOTED > /dev/ttyS0
stay=$(sed -n 's/.*glidefs\.stay=\([0-9]*\).*/\1/p' /proc/cmdline)
sleep "${stay:-0}"
systemctl --no-block poweroff
SCRIPT
chmod 755 "$root/usr/local/bin/glidefs-marker"
cat > "$root/etc/systemd/system/glidefs-marker.service" <<'UNIT'
[Unit]
Description=glidefs boot benchmark marker
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/glidefs-marker

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/glidefs-marker.service \
    "$root/etc/systemd/system/multi-user.target.wants/glidefs-marker.service"
# no login prompt on the console, no fsck of the root (the image is clean)
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
echo "/dev/vda / ext4 defaults 0 0" > "$root/etc/fstab"
echo bootbench > "$root/etc/hostname"
# the initramfs carries the virtio modules (the cloud kernel has them as modules)
printf 'virtio_pci\nvirtio_blk\next4\n' >> "$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all > "$OUT/initramfs.log" 2>&1 ||
    { tail -20 "$OUT/initramfs.log" >&2; exit 1; }
cp "$(ls "$root"/boot/vmlinuz-* | head -1)" "$OUT/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | head -1)" "$OUT/initrd.img"
rm -rf "$root/var/cache/apt/archives/"*.deb
rm -f "$OUT/root.img"
mkfs.ext4 -q -L root -d "$root" "$OUT/root.img" 1G
rm -rf "$root"
echo "$stamp" > "$OUT/stamp"
echo "boot_image.sh: $OUT/root.img ($(du -h --apparent-size "$OUT/root.img" | cut -f1), $(du -h "$OUT/root.img" | cut -f1) used)" >&2
