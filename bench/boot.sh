#!/bin/bash
# boot.sh — issue 28's benchmark: a real Debian boot (systemd, until a
# marker service runs) under QEMU (TCG) with its root on a glidefsd export,
# the store s3rver behind tests/s3/s3proxy.py holding every request LATENCY
# ms (a remote store's first-byte latency). Per latency, in one run:
#
#   cold      a node with an empty cache, the volume never booted (no profile)
#   warm      the same node again: the cache it kept at the idle close
#   profiled  another node, empty cache: the profile the first boot stored
#   clone     another node, empty cache: a fresh clone of the profiled volume
#             (it inherits the profile at clone time)
#
# Each row: time to the marker, time to the guest's first read (the export's
# first_read_ms), object GETs and their bytes at the proxy up to the marker
# (gets_session: until the export closed, the layout's included), prefetched blocks
# and hits. The cold boot's guest stays up STAY seconds after the marker (a
# VM lives on): its access profile's recording goes quiet and the writer
# lays the profile's blocks out together (layout_blocks) before the close. Targets: profiled and clone <= 1.3x warm at 20 ms; GETs of the
# profiled boot <= 1/10 of the cold one's.
#
#   bench/boot.sh          (starts tests/s3/s3env.py itself: needs node/npm)
# env: BUILD (build-bench), LATENCIES ("20 50"), IMG_DIR (/var/tmp/glidefs-boot,
#      built once by bench/boot_image.sh: debootstrap, root), BOOT_TIMEOUT (900 s
#      per boot), STAY (40 s), OUT (a file for the result table), KEEP=1.
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build-bench}
if [ -z "${S3_ENDPOINT:-}" ]; then
    [ -x "$BUILD/daemon/glidefsd" ] || { echo "boot.sh: no $BUILD/daemon/glidefsd" >&2; exit 1; }
    IMG_DIR=${IMG_DIR:-/var/tmp/glidefs-boot}
    "$SRC/bench/boot_image.sh" "$IMG_DIR"
    export IMG_DIR BUILD
    exec /usr/bin/python3 "$SRC/tests/s3/s3env.py" --cache "$BUILD/s3cache" --timeout 14400 \
        -- "$0" "$@"
fi
exec /usr/bin/python3 - "$SRC" <<'PYEOF'
import json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request
src = sys.argv[1]
sys.path.insert(0, os.path.join(src, "tests", "guest"))
import guestlib as gl

build = os.environ["BUILD"]
img = os.environ["IMG_DIR"]
glidefsd = os.path.join(build, "daemon", "glidefsd")
lats = [int(x) for x in os.environ.get("LATENCIES", "20 50").split()]
boot_timeout = float(os.environ.get("BOOT_TIMEOUT", "900"))
STAY = int(os.environ.get("STAY", "40"))
ep = os.environ["S3_ENDPOINT"]
base = tempfile.mkdtemp(prefix="glidefs-boot-bench-", dir="/var/tmp")
rows = []


def proxy(path, **q):
    url = ep + path + "?" + "&".join("%s=%s" % kv for kv in q.items())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def counts():
    s = proxy("/__proxy__/stats")
    return s.get("object_gets", 0), s.get("object_get_bytes", 0)


def gets_by():
    return dict(proxy("/__proxy__/stats").get("object_gets_by", {}))


class Node:
    """One glidefsd: its own cache dir (a 'node'), the shared store."""
    def __init__(self, tag, prefix):
        self.d = gl.Daemon(glidefsd, base, tag, os.path.join(base, tag + "-cache"),
                           gl.Store("s3", base, prefix), size="2G", sync_delay_ms=200)
        # the profile window must cover a cold boot at 50 ms (minutes)
        with open(self.d.cfg) as f:
            y = f.read()
        y = y.replace("cache:\n", "cache:\n  profile_s: 1800\n  profile_mb: 1024\n", 1)
        y = y.replace("  disk_size_gb: 2\n", "  disk_size_gb: 8\n", 1)
        with open(self.d.cfg, "w") as f:
            f.write(y)
        self.d.start()

    def api(self, method, path, body=None, timeout=600):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.d.api_port, path),
                                     data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_closed(self, name, timeout=120):
        gl.wait_for(lambda: self.api("GET", "/api/exports/" + name)[0] == 404, timeout,
                    "export %s closed after its last client" % name, interval=0.1)

    def stop(self):
        self.d.stop()


def boot(node, name, label, lat, stay=0):
    proxy("/__proxy__/config", latency_ms=lat)
    g0, b0 = counts()
    k0 = gets_by()
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1", "-nographic",
           "-no-reboot", "-nic", "none", "-kernel", os.path.join(img, "vmlinuz"),
           "-initrd", os.path.join(img, "initrd.img"),
           "-append", "root=/dev/vda rw console=ttyS0 quiet glidefs.stay=%d" % stay,
           "-drive", "file=%s,format=raw,if=virtio,cache=none" % node.d.uri(name)]
    log = open(os.path.join(base, "%s-%d.console" % (label, lat)), "wb")
    t0 = time.monotonic()
    q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    booted = None
    st = {}
    try:
        for line in q.stdout:
            log.write(line)
            if b"GLIDEFS-BOOTED" in line and booted is None:
                booted = time.monotonic() - t0
                gm, bm = counts()  # what the boot itself fetched
                km = gets_by()
                code, st = node.api("GET", "/api/exports/" + name)
            if time.monotonic() - t0 > boot_timeout:
                break
        q.wait(timeout=max(1.0, boot_timeout - (time.monotonic() - t0)))
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
        log.close()
    if booted is None:
        sys.exit("%s boot at %d ms: no marker (console: %s)" % (label, lat, log.name))
    g1, b1 = counts()
    cold = st  # the export's status: the cold-start figures are top-level fields
    row = {"latency_ms": lat, "boot": label, "marker_s": booted,
           "first_read_ms": cold.get("first_read_ms"), "gets": gm - g0,
           "get_mib": (bm - b0) / 2**20, "gets_session": g1 - g0,
           "gets_by": {k: km[k] - k0.get(k, 0) for k in km if km[k] != k0.get(k, 0)},
           "prefetched": cold.get("prefetched_blocks"),
           "prefetch_hits": cold.get("prefetch_hits"),
           "wasted_mib": (cold.get("prefetch_wasted_bytes") or 0) / 2**20}
    if stay:
        # the guest stayed up: what the layout copied once the recording went quiet
        code, st2 = node.api("GET", "/api/exports/" + name)
        row["layout_blocks"] = st2.get("layout_blocks") if code == 200 else None
    print("boot: %s" % json.dumps(row), file=sys.stderr, flush=True)
    rows.append(row)
    proxy("/__proxy__/config", latency_ms=0)
    node.wait_closed(name)  # the profile and the kept cache are stored at the close


try:
    for lat in lats:
        prefix = "boot%d" % lat
        w = Node("w%d" % lat, prefix)
        # the image: written through glidefsd, drained, the writer gone
        subprocess.run(["nbdcopy", "--flush", os.path.join(img, "root.img"),
                        w.d.uri("golden")], check=True)
        code, _ = w.api("POST", "/api/exports/golden/drain?timeout_s=600")
        assert code == 200, code
        w.wait_closed("golden")
        w.stop()

        b = Node("b%d" % lat, prefix)
        boot(b, "golden", "cold", lat)
        boot(b, "golden", "warm", lat, stay=STAY)
        b.stop()
        c = Node("c%d" % lat, prefix)
        boot(c, "golden", "profiled", lat)
        code, r = c.api("POST", "/api/exports/golden/snapshots", {"name": "s1"})
        assert code == 201, (code, r)
        code, r = c.api("POST", "/api/exports",
                        {"name": "clone1", "clone_of": "golden", "snapshot": "s1"})
        assert code == 201, (code, r)
        c.wait_closed("clone1")
        c.wait_closed("golden")
        c.stop()
        d = Node("d%d" % lat, prefix)
        boot(d, "clone1", "clone", lat)
        d.stop()
finally:
    proxy("/__proxy__/config", latency_ms=0)
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(base, ignore_errors=True)

out = ["| latency | boot | to marker s | x warm | first read ms | GETs | GET MiB | prefetched "
       "| prefetch hits | wasted MiB | laid out |", "|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    warm = [x for x in rows if x["latency_ms"] == r["latency_ms"] and x["boot"] == "warm"]
    ratio = r["marker_s"] / warm[0]["marker_s"] if warm else float("nan")
    out.append("| %d ms | %s | %.1f | %.2f | %s | %d | %.1f | %s | %s | %.1f | %s |" % (
        r["latency_ms"], r["boot"], r["marker_s"], ratio, r["first_read_ms"], r["gets"],
        r["get_mib"], r["prefetched"], r["prefetch_hits"], r["wasted_mib"],
        r.get("layout_blocks", "")))
for lat in lats:
    by = {r["boot"]: r for r in rows if r["latency_ms"] == lat}
    if {"cold", "warm", "profiled", "clone"} <= set(by):
        out.append("")
        out.append("- %d ms: profiled %.2fx warm, clone %.2fx warm (target <= 1.3x at 20 ms); "
                   "GETs profiled/cold %d/%d = %.3f (target <= 0.1)" % (
                       lat, by["profiled"]["marker_s"] / by["warm"]["marker_s"],
                       by["clone"]["marker_s"] / by["warm"]["marker_s"], by["profiled"]["gets"],
                       by["cold"]["gets"], by["profiled"]["gets"] / max(1, by["cold"]["gets"])))
text = "\n".join(out) + "\n"
print(text)
if os.environ.get("OUT"):
    with open(os.environ["OUT"], "w") as f:
        f.write(text)
PYEOF
