#!/usr/bin/env bash
# libglidefs.so exports exactly the functions declared GLIDEFS_API in the
# public header, all named glidefs_* and versioned GLIDEFS_0, and nothing
# else; its SONAME is libglidefs.so.<major>. Every global symbol in the static
# library is glidefs_* (public) or gfs_* (internal), so static linking never
# clashes with a program's own names.
# Usage: test_exports.sh LIBGLIDEFS.so LIBGLIDEFS.a GLIDEFS.H
set -euo pipefail
so=$1 a=$2 hdr=$3
command -v nm >/dev/null && command -v readelf >/dev/null || { echo "binutils missing: skipped"; exit 77; }
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-nm-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM
fail=0

# dynamic symbols defined by the library; "A" entries are version nodes
nm -D --defined-only "$so" > "$t/nm"
awk '$2 == "A" { print $3 }' "$t/nm" | sed 's/@.*//' | sort -u > "$t/nodes"
awk '$2 != "A" { print $3 }' "$t/nm" > "$t/syms"
if [ "$(cat "$t/nodes")" != "GLIDEFS_0" ]; then
  echo "unexpected version nodes:"; cat "$t/nodes"; fail=1
fi
if grep -v '^glidefs_' "$t/syms"; then
  echo "^^^ exported symbols outside glidefs_*"; fail=1
fi
if grep -v '@@GLIDEFS_0$' "$t/syms"; then
  echo "^^^ exported symbols without the GLIDEFS_0 version"; fail=1
fi
sed 's/@.*//' "$t/syms" | sort -u > "$t/exported"
grep -o '^GLIDEFS_API[^(]*(' "$hdr" | sed -nE 's/.*[^A-Za-z0-9_](glidefs_[A-Za-z0-9_]*) *\($/\1/p' | sort -u > "$t/declared"
if ! diff -u "$t/declared" "$t/exported" > "$t/diff"; then
  echo "declared in the header (-) vs exported (+):"; cat "$t/diff"; fail=1
fi

soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
case "$soname" in
  libglidefs.so.[0-9]*) ;;
  *) echo "SONAME is '$soname', expected libglidefs.so.<major>"; fail=1 ;;
esac

nm -g --defined-only "$a" | awk 'NF == 3 { print $3 }' > "$t/static"
if grep -Ev '^(glidefs_|gfs_)' "$t/static"; then
  echo "^^^ global symbols of the static library outside glidefs_* and gfs_*"; fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "$(wc -l < "$t/exported") symbols exported, all glidefs_*@@GLIDEFS_0 and declared" \
     "in glidefs.h; SONAME $soname; static library: glidefs_*/gfs_* only"
