#!/usr/bin/env bash
# examples/systemd/glidefsd.service and the unit `meson install` puts in
# <prefix>/lib/systemd/system pass `systemd-analyze verify` (with ExecStart
# pointed at the glidefsd just built, since verify wants it to exist), and
# keep their promises: Type=notify with NotifyAccess=all (glidefsd sends
# READY=1, and MAINPID= after a takeover), reload = `glidefsd --takeover`
# (issue 27), SIGTERM to stop, no core dumps (LimitCORE=0:
# a core holds the secrets), a stop timeout longer
# than glidefsd's own drain deadline (servers.shutdown_timeout_s), restart on
# failure, and the cache, state and socket directories writable under
# ProtectSystem=strict.
# Usage: test_systemd.sh SOURCE_UNIT BUILT_UNIT INSTALLED_GLIDEFSD_PATH GLIDEFSD CONFIG_C
set -euo pipefail
src_unit=$1 built_unit=$2 installed_path=$3 glidefsd=$(realpath "$4") config_c=$5
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed: skipped"; exit 77; }
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-unit-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM
fail=0

grep -qx "ExecStart=/usr/sbin/glidefsd -c /etc/glidefs/glidefs.yaml" "$src_unit" ||
  { echo "$src_unit: ExecStart is not /usr/sbin/glidefsd -c /etc/glidefs/glidefs.yaml"; fail=1; }
grep -q "^ExecStart=$installed_path -c " "$built_unit" ||
  { echo "built unit: ExecStart is not $installed_path"; fail=1; }

default_timeout=$(sed -n 's/.*cfg->shutdown_timeout_s = \([0-9][0-9]*\);.*/\1/p' "$config_c")
[ -n "$default_timeout" ] || { echo "cannot find the default shutdown_timeout_s"; exit 1; }

for unit in "$src_unit" "$built_unit"; do
  mkdir -p "$t/v"
  sed "s|^ExecStart=[^ ]*|ExecStart=$glidefsd|" "$unit" > "$t/v/glidefsd.service"
  rc=0
  systemd-analyze verify --man=no "$t/v/glidefsd.service" > "$t/out" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || [ -s "$t/out" ]; then
    echo "systemd-analyze verify $unit (exit $rc):"; cat "$t/out"; fail=1
  fi
  grep -q "^ExecReload=.* --takeover" "$unit" || { echo "$unit: ExecReload is not a takeover"; fail=1; }
  for line in Type=notify NotifyAccess=all KillSignal=SIGTERM Restart=on-failure ProtectSystem=strict \
              CacheDirectory=glidefs StateDirectory=glidefs RuntimeDirectory=glidefs LimitCORE=0; do
    grep -qx "$line" "$unit" || { echo "$unit: no $line"; fail=1; }
  done
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9][0-9]*\)s\{0,1\}$/\1/p' "$unit")
  if [ -z "$stop" ] || [ "$stop" -le "$default_timeout" ]; then
    echo "$unit: TimeoutStopSec='$stop' must be longer than shutdown_timeout_s ($default_timeout)"
    fail=1
  fi
done
[ $fail -eq 0 ] || exit 1
echo "glidefsd.service verified (source and installed); TimeoutStopSec $stop > $default_timeout"
