#!/usr/bin/env bash
# libglidefs.so exports exactly the functions declared GLIDEFS_API in the
# public header, all named glidefs_*, each with its default version in the
# version node of lib/libglidefs.map that names it last (one node per
# release, libnbd's scheme), and nothing else; a call listed in more than
# one node keeps its earlier forms as compat versions (name@NODE). Its
# SONAME is libglidefs.so.<major>. Every global symbol in the static library
# is glidefs_* (public) or gfs_* (internal), so static linking never clashes
# with a program's own names.
# Usage: test_exports.sh LIBGLIDEFS.so LIBGLIDEFS.a GLIDEFS.H LIBGLIDEFS.MAP
set -euo pipefail
so=$1 a=$2 hdr=$3 map=$4
command -v nm >/dev/null && command -v readelf >/dev/null || { echo "binutils missing: skipped"; exit 77; }
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-nm-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM
fail=0

# the map: "node symbol" per listed symbol, nodes in file order (comments out)
sed 's|/\*.*\*/||g' "$map" | awk '
  /^[A-Za-z0-9_.]+ *\{/ { node = $1; sub(/ *\{.*/, "", node); print node > "'"$t/mapnodes"'"; next }
  /local:/ { node = "" }
  node != "" && /^ *glidefs_[A-Za-z0-9_]* *;/ { s = $1; sub(/;.*/, "", s); print node, s }' > "$t/map"
# what each symbol's default version must be: the last node naming it
awk '{ last[$2] = $1 } END { for (s in last) print s "@@" last[s] }' "$t/map" | sort > "$t/want_default"
# and every earlier node naming it: a compat version
awk '{ n[$2]++; if (n[$2] > 1) print prev[$2]; prev[$2] = $2 "@" $1 }' "$t/map" | sort > "$t/want_compat"

# dynamic symbols defined by the library; "A" entries are version nodes
nm -D --defined-only "$so" > "$t/nm"
awk '$2 == "A" { print $3 }' "$t/nm" | sed 's/@.*//' > "$t/nodes"
awk '$2 != "A" { print $3 }' "$t/nm" > "$t/syms"
if ! diff -u "$t/mapnodes" "$t/nodes"; then
  echo "^^^ version nodes of the library (+) vs $map (-)"; fail=1
fi
if grep -v '^glidefs_' "$t/syms"; then
  echo "^^^ exported symbols outside glidefs_*"; fail=1
fi
if grep -v '@' "$t/syms"; then
  echo "^^^ exported symbols without a version"; fail=1
fi
grep '@@' "$t/syms" | sort > "$t/default"
if ! diff -u "$t/want_default" "$t/default"; then
  echo "^^^ default versions: as $map says (-) vs exported (+)"; fail=1
fi
grep -v '@@' "$t/syms" | sort > "$t/compat" || true
if ! diff -u "$t/want_compat" "$t/compat"; then
  echo "^^^ compat versions: as $map says (-) vs exported (+)"; fail=1
fi
sed 's/@.*//' "$t/default" | sort -u > "$t/exported"
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
echo "$(wc -l < "$t/exported") symbols exported, all glidefs_* and declared in glidefs.h," \
     "in nodes $(tr '\n' ' ' < "$t/nodes")as $map says ($(wc -l < "$t/compat") compat)"\
     "; SONAME $soname; static library: glidefs_*/gfs_* only"
