#!/bin/bash
# guest_bench.sh — a real Linux guest (QEMU TCG, the test guest of
# tests/guest/) measures its own disk: dd write throughput (conv=fsync) and
# read throughput (after drop_caches) of a SIZE_MB file on ext2, `sync`
# latency after a 4 KiB write (SYNCS times), and `sync` of 64 MiB of dirty
# page cache. The same guest runs on glidefsd (file:// store) and on
# nbdkit's file plugin, alternating, ROUNDS times each, in the same run.
# Times are taken inside the guest (/proc/timer_list, ns). TCG emulates the
# guest's CPU, so absolute numbers are far below what a KVM guest gets; the
# comparison between the two servers is the point.
#
# With node/npm (the s3 test server), glidefsd also runs on an s3:// store
# (s3rver behind the strict SigV4 proxy, tests/s3/s3env.py): the guest's
# flush should cost local-disk time there too, not S3 time.
#
# usage: bench/guest_bench.sh [BUILD_DIR]     (default: build)
# env:   BENCH_DIR  scratch directory (default /var/tmp/glidefs-guest-bench)
#        SIZE_MB    dd file size (default 32)
#        SYNCS      4 KiB write + sync rounds per boot (default 20)
#        ROUNDS     boots per server (default 3)
#        OUT        results file (default bench/results/guest_bench.md)
#        BENCH_S3   0: no s3:// column (default 1 when node and npm exist)
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(realpath "${1:-$HERE/../build}")
export GLIDEFSD=$BUILD/daemon/glidefsd
export GUEST_CACHE=$BUILD/tests/guest/cache
export BENCH_DIR=${BENCH_DIR:-/var/tmp/glidefs-guest-bench}
export SIZE_MB=${SIZE_MB:-32} SYNCS=${SYNCS:-20} ROUNDS=${ROUNDS:-3}
export OUT=${OUT:-$HERE/results/guest_bench.md}
export GUESTLIB=$HERE/../tests/guest
for t in qemu-system-x86_64 nbdkit busybox; do
    command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }
done
[ -x "$GLIDEFSD" ] || { echo "no $GLIDEFSD: build first (meson setup build && ninja -C build)" >&2; exit 1; }
if command -v node >/dev/null && command -v npm >/dev/null; then BENCH_S3=${BENCH_S3:-1}; fi
if [ "${BENCH_S3:-0}" = 1 ] && [ -z "${S3_ENDPOINT:-}" ]; then
    # again, under s3env.py: s3rver + the proxy for the s3:// column
    exec /usr/bin/python3 "$HERE/../tests/s3/s3env.py" --timeout 3600 \
        --cache "$BUILD/tests/s3" -- /bin/bash "$0" "$BUILD"
fi
exec /usr/bin/python3 - <<'EOF'
import os, platform, shutil, signal, statistics, subprocess, sys, time
sys.path.insert(0, os.environ["GUESTLIB"])
import guestlib as gl

bench = os.environ["BENCH_DIR"]
size_mb, syncs, rounds = (int(os.environ[k]) for k in ("SIZE_MB", "SYNCS", "ROUNDS"))
disk = "%dM" % (size_mb + 352)
shutil.rmtree(bench, ignore_errors=True) if not os.environ.get("KEEP") else None
os.makedirs(bench)
kernel, initrd = gl.ensure_guest(os.environ["GUEST_CACHE"])
procs = []


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


try:
    # glidefsd with its default sync delay, file:// store (and s3://)
    daemons = {}
    stores = [("glidefsd", "file")]
    if os.environ.get("S3_ENDPOINT"):
        stores.append(("glidefsd-s3", "s3"))
    for name, kind in stores:
        store = gl.Store(kind, bench, "guest-bench-%d" % os.getpid())
        d = gl.Daemon(os.environ["GLIDEFSD"], bench, name, os.path.join(bench, "cache-" + name),
                      store, size=disk, sync_delay_ms=8000)
        d.start()
        procs.append(d.proc)
        daemons[name] = d
    # nbdkit's file plugin on a sparse file of the same size
    img = os.path.join(bench, "nbdkit.img")
    subprocess.run(["truncate", "-s", disk, img], check=True)
    nsock = os.path.join(bench, "nbdkit.sock")
    nk = subprocess.Popen(["nbdkit", "-f", "-U", nsock, "file", img],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(bench, "nbdkit.log"), "w"))
    procs.append(nk)
    gl.wait_for(lambda: os.path.exists(nsock) or nk.poll() is not None, 20, "nbdkit socket")
    if nk.poll() is not None:
        sys.exit("nbdkit exited: %s" % open(os.path.join(bench, "nbdkit.log")).read())
    targets = {name: (lambda i, d=d: d.uri("bench%d" % i)) for name, d in daemons.items()}
    targets["nbdkit-file"] = lambda i: "nbd+unix:///?socket=%s" % nsock
    res = {k: {"boot": [], "dd_write": [], "dd_read": [], "sync_4k": [], "sync64": []}
           for k in targets}
    for i in range(rounds):
        for name, uri in targets.items():
            g = gl.Guest(kernel, initrd, uri(i), "bench",
                         os.path.join(bench, "%s-%d.console" % (name, i)),
                         params={"mib": size_mb, "syncs": syncs, "sync64": 1})
            g.run(600)
            tm = g.times()
            r = res[name]
            r["boot"].append(g.boot_s())
            r["dd_write"].append(tm["dd_write"][1] / 1048576 / tm["dd_write"][0])
            r["dd_read"].append(tm["dd_read"][1] / 1048576 / tm["dd_read"][0])
            r["sync_4k"] += [s * 1000 for s in g.time_list("sync_4k")]
            r["sync64"].append(tm["sync64"][0] * 1000)
            print("%-12s round %d: write %.1f MiB/s, read %.1f MiB/s, sync after 4 KiB "
                  "median %.1f ms, sync of 64 MiB %.0f ms, boot %.2f s"
                  % (name, i + 1, r["dd_write"][-1], r["dd_read"][-1],
                     statistics.median(g.time_list("sync_4k")) * 1000, r["sync64"][-1],
                     r["boot"][-1]), flush=True)
    for d in daemons.values():
        rc = d.stop(600)
        if rc != 0:
            sys.exit("%s exited %s at the end:\n%s" % (d.name, rc, d.log_tail()))
finally:
    cleanup()


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]


rows = [("dd write, conv=fsync (MiB/s, median)", "dd_write", statistics.median, "%.1f"),
        ("dd read after drop_caches (MiB/s, median)", "dd_read", statistics.median, "%.1f"),
        ("sync after a 4 KiB write (ms, median)", "sync_4k", statistics.median, "%.2f"),
        ("sync after a 4 KiB write (ms, p90)", "sync_4k", lambda v: q(v, 0.9), "%.2f"),
        ("sync of 64 MiB dirty (ms, median)", "sync64", statistics.median, "%.0f"),
        ("boot to prompt (s, median)", "boot", statistics.median, "%.2f")]
lines = ["# Guest benchmark: glidefsd vs nbdkit file plugin", "",
         "`bench/guest_bench.sh` on %s, %s, %d CPUs; %s; guest: QEMU TCG (no KVM), 256 MiB, "
         "Debian cloud kernel, ext2, virtio-blk through QEMU's NBD client (cache=none); "
         "SIZE_MB=%d, SYNCS=%d, ROUNDS=%d (servers alternate). glidefsd: file:// store "
         "(glidefsd-s3: s3rver behind tests/s3/s3proxy.py on loopback), sync_delay_ms 8000; "
         "a fresh export per boot. nbdkit: file plugin, default options, one file reused. "
         "Times are measured inside the guest."
         % (time.strftime("%Y-%m-%d"), platform.node() or "?", os.cpu_count(),
            subprocess.run(["qemu-system-x86_64", "--version"], stdout=subprocess.PIPE,
                           text=True).stdout.splitlines()[0], size_mb, syncs, rounds), "",
         "| metric | " + " | ".join(res) + " | " +
         " | ".join("%s / nbdkit" % n for n in daemons) + " |",
         "|---|" + "---:|" * (len(res) + len(daemons))]
for label, key, fn, fmt in rows:
    v = {n: fn(res[n][key]) for n in res}
    b = v["nbdkit-file"]
    lines.append("| %s | %s | %s |" % (label, " | ".join(fmt % v[n] for n in res),
                                       " | ".join("%.2f" % (v[n] / b if b else 0)
                                                  for n in daemons)))
lines += ["", "Raw samples:", ""]
for name in res:
    for key in ("dd_write", "dd_read", "sync64", "boot"):
        lines.append("- %s %s: %s" % (name, key, ", ".join("%.2f" % v for v in res[name][key])))
text = "\n".join(lines) + "\n"
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
with open(os.environ["OUT"], "w") as f:
    f.write(text)
print(text)
shutil.rmtree(bench, ignore_errors=True) if not os.environ.get("KEEP") else None
EOF
