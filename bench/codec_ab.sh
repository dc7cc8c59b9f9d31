#!/bin/bash
# codec_ab.sh — lib_bench codec (encrypted vs plain drain and cold read) of
# two builds, interleaved in one session: A/B of a change to the codec path.
#   OLD=<old checkout>/build-bench/bench/lib_bench NEW=build-bench/bench/lib_bench \
#   IMG=<ext4 image, see bench/lib.sh codec> [MB=1024] [REPS=4] bench/codec_ab.sh
set -e
OLD=${OLD:?lib_bench of the old build}
NEW=${NEW:-build-bench/bench/lib_bench}
IMG=${IMG:?an image file}
MB=${MB:-1024}
REPS=${REPS:-4}
D=${BENCH_DIR:-/var/tmp/glidefs-bench}/codec_ab
for rep in $(seq 1 "$REPS"); do
  for b in old new; do
    BIN=$OLD; [ $b = new ] && BIN=$NEW
    rm -rf "$D"
    echo "== $b run $rep"
    "$BIN" codec "$D" "$MB" "$IMG"
  done
done
rm -rf "$D"
