#!/usr/bin/python3
"""test_warm.py - an export wakes warm on the node it last ran on
(cache.keep_on_close, lib/cache_park.c), end to end through glidefsd:

 1. 4 MiB written over NBD and uploaded; the client leaves and the idle
    export closes (it leaves /api/exports); a new client reads it all back
    byte-exact, and the export's metrics show the kept cache restored (32
    blocks) and no block fetched from the store;
 2. SIGTERM, a new glidefsd on the same cache dir: the same;
 3. kill -9 while the export is open, a new glidefsd: the index was taken
    at open, so nothing is restored (cold: misses, or the access profile's
    prefetch) and every byte is still right.

usage: test_warm.py GLIDEFSD [GLIDEFS_CTL]
"""
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402
from resttest import MiB  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")
SIZE = 4 * MiB
BLOCKS = SIZE // (128 * 1024)


def open_exports(d):
    r = d.req("GET", "/api/exports")
    return [e.get("name") for e in (r.json or {}).get("exports", [])] if r.status == 200 else []


def read_back(d, data, what):
    """Read the whole export with a new client; returns its metrics JSON."""
    h = d.connect("vm")
    got = bytearray()
    for off in range(0, SIZE, MiB):
        got += h.pread(MiB, off)
    m = d.req("GET", "/api/exports/vm/metrics").json or {}
    h.shutdown()
    t.ok(bytes(got) == data, f"{what}: every byte read back")
    return m


def main():
    resttest.need_libnbd()
    data = random.Random(7).randbytes(SIZE)
    base = tempfile.mkdtemp(prefix="glidefsd-warm-")
    with resttest.Daemon(GLIDEFSD, base=base, size="4M") as d:
        d.start()
        h = d.connect("vm")
        for off in range(0, SIZE, MiB):
            h.pwrite(data[off:off + MiB], off)
        h.flush()
        h.shutdown()
        # the log line comes after the close has returned (the listing drops
        # an export as its close begins)
        resttest.wait_for(lambda: "export vm: idle, drained and closed" in d.log_text(), 30,
                          "the idle export to close")
        t.ok("vm" not in open_exports(d), "the idle export closed")
        t.ok(os.path.exists(os.path.join(d.cache, "vm", "cache.idx")),
             "the closed export kept its cache (cache.idx)")
        m = read_back(d, data, "after the idle close")
        t.ok(m.get("cache_restored_blocks") == BLOCKS and m.get("cache_misses") == 0 and
             m.get("prefetched_blocks") == 0,
             "the reopen restored the kept cache: no miss (%r restored, %r misses)"
             % (m.get("cache_restored_blocks"), m.get("cache_misses")))
        t.eq(d.stop(), 0, "SIGTERM: clean exit")
    with resttest.Daemon(GLIDEFSD, base=base, size="4M") as d2:
        d2.start()
        m = read_back(d2, data, "after a restart")
        t.ok(m.get("cache_restored_blocks") == BLOCKS and m.get("cache_misses") == 0 and
             m.get("prefetched_blocks") == 0,
             "a new glidefsd restored it too (%r restored, %r misses)"
             % (m.get("cache_restored_blocks"), m.get("cache_misses")))
        h = d2.connect("vm")  # open while killed
        t.ok(not os.path.exists(os.path.join(d2.cache, "vm", "cache.idx")),
             "an open export has no index")
        d2.kill()
    with resttest.Daemon(GLIDEFSD, base=base, size="4M") as d3:
        d3.start()
        m = read_back(d3, data, "after kill -9")
        # cold: every block came from the store (random data: stored whole),
        # as a miss, by read-ahead or by the access profile's prefetch
        t.ok(m.get("cache_restored_blocks") == 0 and m.get("store_get_bytes", 0) >= SIZE,
             "after kill -9 nothing is trusted: cold (%r restored, %r bytes fetched, %r "
             "misses, %r prefetched)" % (m.get("cache_restored_blocks"),
                                         m.get("store_get_bytes"), m.get("cache_misses"),
                                         m.get("prefetched_blocks")))
        t.eq(d3.stop(), 0, "SIGTERM: clean exit")
    if not os.environ.get("GLIDEFS_TEST_KEEP"):
        shutil.rmtree(base, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
