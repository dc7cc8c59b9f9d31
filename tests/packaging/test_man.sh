#!/usr/bin/env bash
# The manual pages: `mandoc -T lint -W warning` finds nothing; each page's
# name matches its file; glidefs.yaml(5) describes exactly the keys of
# lib/config.c's key table; libglidefs(3) lists exactly the functions of the
# public header; cross references to our own pages resolve.
# Usage: test_man.sh MAN_DIR CONFIG_C GLIDEFS_H
set -euo pipefail
mandir=$1 config_c=$2 hdr=$3
command -v mandoc >/dev/null || { echo "mandoc not installed: skipped"; exit 77; }
t=$(mktemp -d "${TMPDIR:-/tmp}/glidefs-man-XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 1' INT TERM
fail=0
pages=(glidefsd.8 glidefs-ctl.1 glidefs-image.1 glidefs.yaml.5 libglidefs.3)
for p in "${pages[@]}"; do
  f=$mandir/$p
  [ -f "$f" ] || { echo "missing: $f"; fail=1; continue; }
  rc=0
  mandoc -T lint -W warning "$f" > "$t/lint" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || [ -s "$t/lint" ]; then
    echo "mandoc lint of $p (exit $rc):"; cat "$t/lint"; fail=1
  fi
  name=${p%.*} sec=${p##*.}
  upper=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
  grep -qx ".Dt $upper $sec" "$f" || { echo "$p: .Dt is not '$upper $sec'"; fail=1; }
  grep -qx ".Nm $name" "$f" || { echo "$p: .Nm is not '$name'"; fail=1; }
  # .Xr to one of our pages must name one that exists
  { grep -o '^\.Xr \(glidefs[^ ]*\|libglidefs\) [0-9]' "$f" || true; } | while read -r _ xn xs; do
    [ -f "$mandir/$xn.$xs" ] || { echo "$p: .Xr $xn $xs: no such page"; exit 1; }
  done || fail=1
done

# glidefs.yaml(5): ".Ss SECTION" then ".It Cm KEY" → SECTION.KEY
awk '/keys\[\] = \{/ { on = 1; next } on && /^\};/ { on = 0 }
     on { if (match($0, /^[ \t]*(K_[A-Z]+\(|\{)"[a-z0-9_.]+"/)) {
            s = substr($0, RSTART, RLENGTH); sub(/^[^"]*"/, "", s); sub(/"$/, "", s); print s } }' \
  "$config_c" | sort -u > "$t/keys"
[ "$(wc -l < "$t/keys")" -ge 30 ] || { echo "could not read the key table of $config_c"; exit 1; }
awk '/^\.Ss / { sec = $2; next } /^\.Sh / { sec = "" }
     sec != "" && /^\.It Cm / { k = $3; print (k == sec ? k : sec "." k) }' \
  "$mandir/glidefs.yaml.5" | sort -u > "$t/documented"
if ! diff -u "$t/keys" "$t/documented" > "$t/diff"; then
  echo "glidefs.yaml(5): keys in lib/config.c (-) vs documented (+):"; cat "$t/diff"; fail=1
fi

# libglidefs(3): .Fn in the SYNOPSIS for every function of the header, and
# no .Fn glidefs_* anywhere that the header does not declare
grep -o '^GLIDEFS_API[^(]*(' "$hdr" | sed -nE 's/.*[^A-Za-z0-9_](glidefs_[A-Za-z0-9_]*) *\($/\1/p' | sort -u > "$t/api"
awk '/^\.Sh SYNOPSIS/ { on = 1; next } /^\.Sh / { on = 0 } on && /^\.Fn / { print $2 }' \
  "$mandir/libglidefs.3" | sort -u > "$t/synopsis"
if ! diff -u "$t/api" "$t/synopsis" > "$t/diff"; then
  echo "libglidefs(3) SYNOPSIS: header (-) vs page (+):"; cat "$t/diff"; fail=1
fi
{ grep -o '\.Fn glidefs_[A-Za-z0-9_]*' "$mandir/libglidefs.3" "$mandir/glidefs.yaml.5" || true; } |
  sed 's/.*\.Fn //' | sort -u | comm -23 - "$t/api" > "$t/unknown"
if [ -s "$t/unknown" ]; then
  echo "pages name functions the header does not declare:"; cat "$t/unknown"; fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "${#pages[@]} man pages lint clean; $(wc -l < "$t/keys") config keys and" \
     "$(wc -l < "$t/api") API functions documented"
