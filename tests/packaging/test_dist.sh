#!/usr/bin/env bash
# `meson dist` makes a tarball of the committed tree that configures and
# builds on its own (library, daemon and tools; its test suite is what this
# suite is part of) and carries the man pages and examples.
# Skipped when the source is not a git checkout, and in the sanitizer build
# (the same tarball; the normal build checks it).
# Usage: test_dist.sh MESON BUILD_DIR SOURCE_DIR VERSION SANITIZE(0|1)
set -euo pipefail
meson=$1 build=$2 src=$3 version=$4 sanitize=$5
[ "$sanitize" = 1 ] && { echo "sanitizer build: skipped"; exit 77; }
command -v git >/dev/null || { echo "git not installed: skipped"; exit 77; }
git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
  { echo "$src is not a git checkout: skipped"; exit 77; }
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-dist-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM

# --allow-dirty: a developer's tree has uncommitted edits; the tarball is HEAD
"$meson" dist -C "$build" --no-tests --allow-dirty --formats gztar > "$t/dist.log" 2>&1 ||
  { cat "$t/dist.log"; exit 1; }
tarball=$build/meson-dist/glidefs-$version.tar.gz
[ -f "$tarball" ] || { echo "no $tarball"; cat "$t/dist.log"; exit 1; }
tar -xzf "$tarball" -C "$t"
top=$t/glidefs-$version
[ -f "$top/meson.build" ] || { echo "tarball has no glidefs-$version/meson.build"; exit 1; }

# what the tarball must carry: everything git tracks (meson dist takes HEAD),
# and in particular these
git -C "$src" ls-tree -r --name-only HEAD | sort > "$t/tracked"
(cd "$top" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort) > "$t/packed"
if ! diff -u "$t/tracked" "$t/packed" > "$t/diff"; then
  echo "tarball differs from HEAD:"; cat "$t/diff"; exit 1
fi
# docs/design.md: the installed glidefs.h cites it as part of the source
for f in include/glidefs/glidefs.h LICENSE README.md docs/design.md; do
  [ -f "$top/$f" ] || { echo "tarball lacks $f"; exit 1; }
done
if grep -qx 'man/meson.build' "$t/tracked"; then
  for f in man/glidefsd.8 man/libglidefs.3 examples/embed/hello_glidefs.c; do
    [ -f "$top/$f" ] || { echo "tarball lacks $f"; exit 1; }
  done
fi

# it builds on its own, outside any git checkout
export GIT_CEILING_DIRECTORIES=$t
"$meson" setup "$t/b" "$top" -Dtests=false --buildtype=plain > "$t/setup.log" 2>&1 ||
  { cat "$t/setup.log"; exit 1; }
ninja -C "$t/b" > "$t/ninja.log" 2>&1 || { tail -40 "$t/ninja.log"; exit 1; }
"$t/b/tools/glidefs-image" --version | grep -qx "glidefs-image $version"
echo "meson dist: glidefs-$version.tar.gz ($(wc -l < "$t/packed") files) builds on its own"
