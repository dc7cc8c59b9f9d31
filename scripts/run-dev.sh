#!/usr/bin/env bash
# Install what is missing, build, and run glidefsd on the embedded file://
# store under ./dev/ (no S3 needed). Prints how to connect. Ctrl-C (SIGINT)
# drains and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -d build ] || meson setup build
ninja -C build
dev=$PWD/dev
mkdir -p "$dev/cache" "$dev/store"
cfg=$dev/glidefs.yaml
if [ ! -f "$cfg" ]; then
  cat > "$cfg" <<YAML
cache:
  dir: $dev/cache
  disk_size_gb: 4
storage:
  url: file://$dev/store
servers:
  nbd:
    unix_socket: $dev/glidefs.sock
    auto_create_size_gb: 10
    sync_delay_ms: 2000
  api:
    listen: 127.0.0.1:8080
YAML
fi
cat <<MSG
glidefsd: config $cfg, store $dev/store, cache $dev/cache
connect with, for example:
  nbdinfo 'nbd+unix:///my-vm?socket=$dev/glidefs.sock'
  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' 'nbd+unix:///my-vm?socket=$dev/glidefs.sock'
  qemu-img convert -p -O raw disk.img 'nbd+unix:///my-vm?socket=$dev/glidefs.sock'
(the export 'my-vm' is created on first connect; Ctrl-C drains to the store and stops)
MSG
exec build/daemon/glidefsd -c "$cfg"
