#!/usr/bin/env bash
# Install (only) the Debian 12 packages GlideFS needs to build and test that
# are missing. Needs root or sudo. Safe to run again.
#   scripts/deps.sh           build and test dependencies
#   scripts/deps.sh --bench   those plus what bench/run.sh needs (plots, zstd CLI)
set -euo pipefail
pkgs=(
  meson ninja-build pkg-config gcc g++ clang
  libcurl4-openssl-dev libxml2-dev libmbedtls-dev libssl-dev libyaml-dev libcmocka-dev
  libmicrohttpd-dev libjansson-dev libzstd-dev libgnutls28-dev
  gnutls-bin                  # certtool/psktool: the tls suite makes its certificates
  libnbd-bin python3-libnbd qemu-utils nbdkit fio awscli curl
  prometheus mandoc nbdkit-plugin-dev make openssl
  qemu-system-x86 busybox-static e2fsprogs
  ceph-mon ceph-osd radosgw   # the rgw suite's single-node Ceph RGW (tests/rgw/)
)
[ "${1:-}" = "--bench" ] && pkgs+=(gnuplot-nox zstd)
# node + npm for the S3 test server (s3rver); nodesource's nodejs ships npm itself
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
