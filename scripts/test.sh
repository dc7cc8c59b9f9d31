#!/usr/bin/env bash
# Install what is missing, build, and run the whole test suite twice: a normal
# build with warnings as errors, and an AddressSanitizer + UBSan build.
# Usage: scripts/test.sh [--no-asan] [extra meson test args]
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1
if [ "${1:-}" = "--no-asan" ]; then asan=0; shift; fi
scripts/deps.sh
export PATH=/usr/bin:$PATH   # Debian's python3 (libnbd bindings) and awscli first
run() {
  local dir=$1; shift
  if [ ! -d "$dir" ]; then
    meson setup "$dir" --werror "$@"
  else
    meson configure "$dir" --werror "$@" >/dev/null
  fi
  ninja -C "$dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2
}
# deps.sh installed Ceph and node/npm: the rgw and Azurite suites must run, not skip
run build -Drgw_tests=enabled -Dazure_tests=enabled
if [ "$asan" = 1 ]; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run build-asan -Dsanitizers=true -Db_lundef=false -Drgw_tests=enabled -Dazure_tests=enabled
fi
echo "all test suites passed"
