#!/usr/bin/env bash
# The public header on its own: compiled as a C99 and C11 translation unit
# with -pedantic -Werror (and included twice: the guard works), and as C++11
# and C++17; with gcc/g++ and, when installed, clang/clang++.
# Usage: test_header.sh INCLUDE_DIR
set -euo pipefail
inc=$1
hdr=$inc/glidefs/glidefs.h
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-hdr-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM
command -v gcc >/dev/null || { echo "gcc not installed: skipped"; exit 77; }
printf '#include <glidefs/glidefs.h>\n#include <glidefs/glidefs.h>\nint main(void) { return glidefs_version() == 0; }\n' > "$t/twice.c"
cwarn=(-Wall -Wextra -Wstrict-prototypes -Wold-style-definition -Wshadow -Wundef)
n=0
for c in gcc clang; do
  command -v "$c" >/dev/null || continue
  for std in c99 c11; do
    # the header alone, as a translation unit
    "$c" -std=$std -pedantic -Werror "${cwarn[@]}" -x c -c "$hdr" -o "$t/h.o"
    "$c" -std=$std -pedantic -Werror "${cwarn[@]}" -I"$inc" -c "$t/twice.c" -o "$t/twice.o"
    n=$((n + 2))
  done
done
for cxx in g++ clang++; do
  command -v "$cxx" >/dev/null || continue
  for std in c++11 c++17; do
    "$cxx" -std=$std -pedantic -Werror -Wall -Wextra -Wundef -x c++ -c "$hdr" -o "$t/h.o"
    "$cxx" -std=$std -pedantic -Werror -Wall -Wextra -I"$inc" -x c++ -c "$t/twice.c" -o "$t/twice.o"
    n=$((n + 2))
  done
done
command -v g++ >/dev/null || { echo "g++ not installed: C++ check skipped"; exit 77; }
echo "glidefs.h compiles alone: $n compilations, no warnings"
