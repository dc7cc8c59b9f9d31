#!/usr/bin/env bash
# `meson install` into a staging directory (DESTDIR) puts every file in its
# usual place; then examples/embed is built from the staged files alone the
# way an outside project would (its Makefile, pkg-config with
# PKG_CONFIG_SYSROOT_DIR) and run: it must print that it read its data back.
# It is also linked against the static libglidefs.a, and the staged tools
# must run.
# Usage: test_install.sh MESON BUILD_DIR VERSION SANITIZE(0|1) DAEMON(0|1)
set -euo pipefail
meson=$1 build=$2 version=$3 sanitize=$4 daemon=$5
for tool in make pkg-config gcc readelf python3; do
  command -v $tool >/dev/null || { echo "$tool not installed: skipped"; exit 77; }
done
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-install-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM
stage=$t/stage

"$meson" install -C "$build" --no-rebuild --quiet --destdir "$stage" > "$t/install.log" 2>&1 ||
  { cat "$t/install.log"; exit 1; }

# where meson put things, from the build's own options
opt() { "$meson" introspect "$build" --buildoptions |
          python3 -c "import json,sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name']=='$1'))"; }
prefix=$(opt prefix)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
libdir=$(abs "$(opt libdir)") incdir=$(abs "$(opt includedir)") bindir=$(abs "$(opt bindir)")
sbindir=$(abs "$(opt sbindir)") mandir=$(abs "$(opt mandir)") datadir=$(abs "$(opt datadir)")

fail=0
expect() { for f in "$@"; do [ -e "$stage$f" ] || { echo "not installed: $f"; fail=1; }; done; }
expect "$incdir/glidefs/glidefs.h" \
       "$libdir/libglidefs.so" "$libdir/libglidefs.so.0" "$libdir/libglidefs.so.$version" \
       "$libdir/libglidefs.a" "$libdir/pkgconfig/glidefs.pc" \
       "$bindir/glidefs-image" \
       "$mandir/man8/glidefsd.8" "$mandir/man1/glidefs-ctl.1" "$mandir/man1/glidefs-image.1" \
       "$mandir/man5/glidefs.yaml.5" "$mandir/man3/libglidefs.3" \
       "$datadir/doc/glidefs/examples/glidefs.yaml" \
       "$datadir/doc/glidefs/examples/embed/hello_glidefs.c" \
       "$datadir/doc/glidefs/examples/embed/Makefile" \
       "$datadir/doc/glidefs/examples/nbdkit-glidefs/glidefs_plugin.c" \
       "$datadir/doc/glidefs/examples/systemd/glidefsd.service"
# and everything the build says it installs (glidefs-ctl, when it is built)
"$meson" introspect "$build" --installed |
  python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin).values()))' > "$t/installed"
while read -r f; do expect "$f"; done < "$t/installed"
if grep -q '/glidefs-ctl$' "$t/installed"; then expect "$bindir/glidefs-ctl"; fi
if [ "$daemon" = 1 ]; then
  expect "$sbindir/glidefsd" "$prefix/lib/systemd/system/glidefsd.service"
  grep -qx "ExecStart=$sbindir/glidefsd -c .*" "$stage$prefix/lib/systemd/system/glidefsd.service" ||
    { echo "installed unit does not start $sbindir/glidefsd"; fail=1; }
fi
[ "$(readlink "$stage$libdir/libglidefs.so")" = libglidefs.so.0 ] || { echo "bad libglidefs.so link"; fail=1; }
soname=$(readelf -d "$stage$libdir/libglidefs.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libglidefs.so.0 ] || { echo "SONAME is '$soname'"; fail=1; }
readelf -d "$stage$bindir/glidefs-image" > "$t/dyn"
if grep -E 'R(UN)?PATH.*'"$build" "$t/dyn"; then
  echo "installed glidefs-image still points into the build directory"; fail=1
fi
[ $fail -eq 0 ] || exit 1

export PKG_CONFIG_PATH=$stage$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
export LD_LIBRARY_PATH=$stage$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ "$(pkg-config --modversion glidefs)" = "$version" ] || { echo "pkg-config version"; exit 1; }
san=()
[ "$sanitize" = 1 ] && san=(-fsanitize=address,undefined)

# the installed example, built as its README says: its own Makefile
cp -r "$stage$datadir/doc/glidefs/examples/embed" "$t/embed"
make -s -C "$t/embed" CC=gcc LDFLAGS="${san[*]}" CFLAGS="-O1 -g -Wall -Wextra -Werror ${san[*]}" > "$t/make.log" 2>&1 ||
  { cat "$t/make.log"; exit 1; }
"$t/embed/hello_glidefs" "$t/run1" > "$t/out" 2> "$t/err" || { cat "$t/out" "$t/err"; exit 1; }
grep -qx "hello_glidefs: libglidefs $version: read back OK" "$t/out" || { cat "$t/out" "$t/err"; exit 1; }
ldd "$t/embed/hello_glidefs" > "$t/ldd"
grep -q "libglidefs.so.0 => $stage$libdir/" "$t/ldd" ||
  { echo "hello_glidefs did not use the staged library"; cat "$t/ldd"; exit 1; }

# static: libglidefs.a, its pkg-config dependencies and Libs.private
private=$(sed -n 's/^Libs.private: //p' "$PKG_CONFIG_PATH/glidefs.pc")
gcc -std=c11 -O1 "${san[@]}" -o "$t/hello_static" "$t/embed/hello_glidefs.c" \
  $(pkg-config --cflags glidefs) "$stage$libdir/libglidefs.a" \
  $(pkg-config --libs $(pkg-config --print-requires-private glidefs)) $private
ldd "$t/hello_static" > "$t/ldd"
if grep -q libglidefs "$t/ldd"; then echo "hello_static links libglidefs.so"; exit 1; fi
"$t/hello_static" "$t/run2" > "$t/out2" 2> "$t/err2" || { cat "$t/out2" "$t/err2"; exit 1; }
grep -q "read back OK" "$t/out2" || { cat "$t/out2" "$t/err2"; exit 1; }

# the installed nbdkit plugin example builds the same way, and loads
if [ -f /usr/include/nbdkit-plugin.h ] && command -v nbdkit >/dev/null; then
  cp -r "$stage$datadir/doc/glidefs/examples/nbdkit-glidefs" "$t/plugin"
  make -s -C "$t/plugin" CC=gcc LDFLAGS="${san[*]}" CFLAGS="-O1 -g -Wall -Wextra -Werror ${san[*]}" > "$t/make.log" 2>&1 ||
    { cat "$t/make.log"; exit 1; }
  if [ "$sanitize" = 0 ]; then
    nbdkit --dump-plugin "$t/plugin/nbdkit-glidefs-plugin.so" > "$t/dump"
    grep -qx "glidefs_version=$version" "$t/dump" || { cat "$t/dump"; exit 1; }
    grep -qx "thread_model=parallel" "$t/dump" || { cat "$t/dump"; exit 1; }
  fi
fi

# the staged tools run from their installed places
"$stage$bindir/glidefs-image" --version | grep -qx "glidefs-image $version"
if [ "$daemon" = 1 ]; then
  "$stage$sbindir/glidefsd" --version | grep -q "$version"
fi
echo "installed under DESTDIR ($prefix); hello_glidefs built with pkg-config against it" \
     "(shared and static) and read its data back"
