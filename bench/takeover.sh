#!/bin/bash
# takeover.sh — the I/O stall of `glidefsd --takeover` (issue 27's
# benchmark): clients keep QD requests in flight (4 KiB random writes with a
# FLUSH every 16th, python3-libnbd, one connection per export, QD threads per
# connection) while glidefsd is replaced N times; per takeover, the longest
# gap between two completions (over all clients) from the moment the new
# process starts until the old one has exited. Prints p50 and max of those
# gaps, and the number of failed requests (must be 0).
#
#   bench/takeover.sh                          (glidefsd of $BUILD, default build-bench)
# env: BUILD, GLIDEFSD, N (20 takeovers), QD (1; try 16), EXPORTS (4),
#      SIZE_MB (256), KEEP=1 keeps the scratch dir.
# A file:// store and the cache dir in a fresh mktemp directory, the REST
# API off; every glidefsd started is stopped by its PID on exit.
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build-bench}
GLIDEFSD=${GLIDEFSD:-$BUILD/daemon/glidefsd}
[ -x "$GLIDEFSD" ] || { echo "takeover.sh: no $GLIDEFSD (build it first)" >&2; exit 1; }
exec /usr/bin/python3 - "$GLIDEFSD" <<'PYEOF'
import os, random, shutil, signal, statistics, subprocess, sys, tempfile, threading, time
import nbd

glidefsd = sys.argv[1]
N = int(os.environ.get("N", "20"))
QD = int(os.environ.get("QD", "1"))
EXPORTS = int(os.environ.get("EXPORTS", "4"))
SIZE_MB = int(os.environ.get("SIZE_MB", "256"))
base = tempfile.mkdtemp(prefix="glidefs-takeover-bench-")
sock = os.path.join(base, "nbd.sock")
cfg = os.path.join(base, "glidefs.yaml")
os.makedirs(os.path.join(base, "store"))
with open(cfg, "w") as f:
    f.write(f"""cache:
  dir: {base}/cache
storage:
  url: file://{base}/store
servers:
  nbd:
    unix_socket: {sock}
    auto_create_size: {SIZE_MB}M
  api:
    listen: ""
""")
log = open(os.path.join(base, "glidefsd.log"), "ab")
procs = []


def start(*extra):
    p = subprocess.Popen([glidefsd, "-c", cfg, *extra], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log)
    procs.append(p)
    return p


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(base, ignore_errors=True)


cur = start()
deadline = time.monotonic() + 30
while not os.path.exists(sock):
    if time.monotonic() > deadline or cur.poll() is not None:
        cleanup()
        sys.exit("glidefsd did not start")
    time.sleep(0.01)
done = []          # completion times (monotonic), appended under the GIL
errors = []
stop = threading.Event()
lock = threading.Lock()


def worker(h, seed):
    rnd = random.Random(seed)
    buf = bytes(4096)
    i = 0
    while not stop.is_set():
        try:
            h.pwrite(buf, rnd.randrange(SIZE_MB * 256) * 4096)
            if i % 16 == 15:
                h.flush()
        except nbd.Error as e:
            errors.append(str(e))
            return
        t = time.monotonic()
        with lock:
            done.append(t)
        i += 1


handles, threads = [], []
for e in range(EXPORTS):
    # the socket's file exists from bind(), before listen(): retry a refusal
    while True:
        h = nbd.NBD()
        h.set_export_name(f"bench{e}")
        try:
            h.connect_unix(sock)
            break
        except nbd.Error:
            if time.monotonic() > deadline or cur.poll() is not None:
                raise
            time.sleep(0.01)
    handles.append(h)
    for q in range(QD):
        th = threading.Thread(target=worker, args=(h, e * 100 + q), daemon=True)
        th.start()
        threads.append(th)
time.sleep(1)
gaps = []
try:
    for n in range(N):
        t0 = time.monotonic()
        new = start("--takeover")
        rc = cur.wait(60)
        t1 = time.monotonic()
        if rc != 0 or new.poll() is not None:
            print(f"takeover {n + 1} failed (old exit {rc}, new {new.poll()})", file=sys.stderr)
            break
        cur = new
        time.sleep(0.5)  # completions after the old one exited close the window
        with lock:
            # the last completion before the new process started, then all
            # until half a second after the old one exited
            before = [t for t in done if t <= t0][-1:]
            ts = before + [t for t in done if t0 < t <= t1 + 0.5]
        gap = max((b - a for a, b in zip(ts, ts[1:])), default=float("inf"))
        gaps.append(gap * 1000)
        print(f"takeover {n + 1}: {(t1 - t0) * 1000:.0f} ms until the old exited, "
              f"max gap {gap * 1000:.1f} ms", flush=True)
finally:
    stop.set()
    for th in threads:
        th.join(30)
    cleanup()
if gaps:
    print(f"QD{QD} x {EXPORTS} exports, {len(gaps)} takeovers: stall p50 "
          f"{statistics.median(gaps):.1f} ms, max {max(gaps):.1f} ms, "
          f"{len(errors)} failed requests")
sys.exit(1 if errors or len(gaps) < N else 0)
PYEOF
