#!/usr/bin/python3
"""test_relief.py - a slow read does not hold up the requests behind it on
the same NBD connection (daemon/nbd_reader.c, "Transmission: the reader
role, relief and the watchdog").

glidefsd runs a connection's ordinary requests inline on its reader thread.
When one of them takes a whole watchdog tick (a cache miss waiting for S3),
the watchdog hands the reader role to a pool thread ("relief"), which goes
on reading and running the requests queued behind it. Without relief the
reader would sit in the slow read and not even read the next header.

 1. glidefsd on s3:// (s3rver behind tests/s3/s3proxy.py) writes distinct
    data to three blocks far apart, then drains on SIGTERM;
 2. a second glidefsd on the same store with an EMPTY cache and read-ahead
    off, so reading a block is a GET from the store;
 3. the proxy stalls every request (kind 'stall', rate 1.0: no answer for
    stall_ms, then a reset, so glidefsd retries and the read stays in flight
    for as long as the stalls are on);
 4. on ONE connection, pipelined: a read of an uncached block, then (once
    its GET stalls) a write of a whole other block and a flush, issued
    behind it without waiting. The write and the flush must complete
    while the read is still in flight - only then does the test turn the
    stalls off, so without relief the read never completes and neither do
    the write and the flush (the test fails at its deadline);
 5. the read then completes with the block's data, the write reads back,
    glidefs_nbd_reliefs_total (and nbd_reliefs in the JSON metrics) went up;
 6. SIGTERM drains; a third glidefsd with an empty cache reads the written
    block back from the store.

usage: test_relief.py GLIDEFSD --s3-cache DIR   (skips, 77, without node/npm)
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

BS = 128 * 1024                # servers.nbd.block_size (set below)
SIZE = 16 * fl.MiB
BLOCK_READ, BLOCK_WRITE, BLOCK_OTHER = 5, 60, 110   # far apart: no segment neighbours read
STALL_MS = 2000                # each stalled attempt, below storage.timeout_ms
STORAGE = {"timeout_ms": 6000, "max_retries": 30}
EXPORT = "relief"


def block_data(tag, block):
    """BS bytes for block, every sector tagged (see faultlib.sector_bytes)."""
    first = block * BS // fl.SECTOR
    return b"".join(fl.sector_bytes(tag, s, 0x5E11EF)
                    for s in range(first, first + BS // fl.SECTOR))


def make_daemon(glidefsd, base, name, prefix):
    d = fl.Glidefsd(glidefsd, base, name, prefix=prefix, node_id="relief-node", size="16M",
                    disk_size="64M", storage_extra=STORAGE, api=True,
                    nbd_extra={"block_size": BS}, compaction={"interval_s": 0})
    # read-ahead off: a read fetches just its block (no cache key in faultlib)
    with open(d.cfg) as f:
        text = f.read()
    anchor = "  dir: %s\n" % d.cache
    assert anchor in text
    with open(d.cfg, "w") as f:
        f.write(text.replace(anchor, anchor + "  readahead_kb: 0\n", 1))
    return d


def reliefs(d):
    """glidefs_nbd_reliefs_total of EXPORT from /metrics (None if absent)."""
    st, _, body = fl.http("GET", d.api_url("/metrics"))
    if st != 200:
        return None
    want = 'glidefs_nbd_reliefs_total{export="%s"}' % EXPORT
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def stalled_segment_gets(proxy):
    """GETs of segment objects the proxy stalled (from its log)."""
    with open(proxy.log_path, errors="replace") as f:
        return sum(1 for ln in f if ": stall on GET " in ln and "/seg/" in ln)


def json_metrics(d):
    st, _, body = fl.http("GET", d.api_url("/api/exports/%s/metrics" % EXPORT))
    return json.loads(body) if st == 200 else {}


class Pipeline:
    """Async commands on one libnbd handle; records when each completed."""

    def __init__(self, h):
        self.h = h
        self.cookies = {}   # name -> cookie, while in flight
        self.issued = {}    # name -> time issued
        self.done = {}      # name -> (seconds from issue to completion, error or None)

    def add(self, name, cookie):
        self.cookies[name] = cookie
        self.issued[name] = time.monotonic()

    def pump(self):
        """Let libnbd send and receive for up to 50 ms; note completions."""
        import nbd
        if self.cookies:
            self.h.poll(50)
        for name, ck in list(self.cookies.items()):
            try:
                finished = self.h.aio_command_completed(ck)
                err = None
            except nbd.Error as e:
                finished, err = True, e
            if finished:
                self.done[name] = (time.monotonic() - self.issued[name], err)
                del self.cookies[name]
        return self

    def finished(self, *names):
        return all(n in self.pump().done for n in names)


def main():
    a = fl.s3_only_test(timeout=120)
    if a is None:
        return fl.SKIP
    import nbd

    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-relief-")
    proxy = fl.Proxy()
    prefix = "relief-%d" % os.getpid()
    old = {b: block_data(0x1000 + b, b) for b in (BLOCK_READ, BLOCK_WRITE, BLOCK_OTHER)}
    new = block_data(0x2000, BLOCK_WRITE)
    daemons = []
    failed = []
    t0 = time.monotonic()

    def check(cond, msg):
        fl.log(("ok - " if cond else "FAIL - ") + msg)
        if not cond:
            failed.append(msg)
        return cond

    try:
        # 1: the data, in the store
        d1 = make_daemon(glidefsd, base, "writer", prefix)
        daemons.append(d1)
        d1.start()
        h = d1.connect(EXPORT)
        for b, data in old.items():
            h.pwrite(data, b * BS)
        h.flush()
        h.shutdown()
        check(d1.stop() == 0, "first daemon drained three blocks to the store (exit 0)")

        # 2: empty cache, read-ahead off, one connection
        d2 = make_daemon(glidefsd, base, "reader", prefix)
        daemons.append(d2)
        d2.start()
        h = d2.connect(EXPORT)
        check(not h.is_read_only(), "the export is writable on the second daemon")
        check(h.get_size() == SIZE, "the export has its size")
        r0 = reliefs(d2)
        check(r0 is not None, "/metrics has glidefs_nbd_reliefs_total for the export (%s)" % r0)
        m0 = json_metrics(d2)
        check("nbd_reliefs" in m0,
              "the JSON metrics have nbd_reliefs (%s)" % m0.get("nbd_reliefs"))
        gets0 = m0.get("store_gets", 0)

        # 3 + 4: every S3 request stalls; read, write, flush pipelined
        proxy.faults(rate=1.0, kinds="stall", seed=1, stall_ms=STALL_MS)
        p = Pipeline(h)
        rbuf = nbd.Buffer(BS)
        wbuf = nbd.Buffer.from_bytearray(bytearray(new))
        p.add("read", h.aio_pread(rbuf, BLOCK_READ * BS))
        # The write goes out once the read waits in its GET: sent together,
        # the write's payload in the server's receive buffer would look like
        # a queue of reads, and the read would go to the pool in a batch
        # instead of running inline (reader_loop()).
        fl.wait_for(lambda: p.pump() and stalled_segment_gets(proxy) >= 1, 20.0,
                    "the read's GET to stall in the proxy")
        p.add("write", h.aio_pwrite(wbuf, BLOCK_WRITE * BS))
        p.add("flush", h.aio_flush())
        try:
            fl.wait_for(lambda: p.finished("write", "flush"), 20.0,
                        "the write and the flush behind a stalled read")
            ok = True
        except TimeoutError as e:
            ok = False
            fl.log("# %s; completed: %s" % (e, p.done))
        if check(ok, "the write and the flush completed while the read waited for S3 "
                 "(in %s s)" % {k: round(v[0], 3) for k, v in p.done.items()}):
            check("read" not in p.done, "the read was still in flight then")
            check(p.done["write"][1] is None and p.done["flush"][1] is None,
                  "the write and the flush succeeded (%s, %s)"
                  % (p.done["write"][1], p.done["flush"][1]))
            stalls = proxy.stats().get("by_kind", {}).get("stall", 0)
            check(stalls >= 1, "the proxy stalled %d request(s) meanwhile" % stalls)
            r1 = reliefs(d2)
            check(r1 is not None and r1 >= (r0 or 0) + 1,
                  "glidefs_nbd_reliefs_total went up while the read was stuck (%s -> %s)"
                  % (r0, r1))

        # 5: S3 answers again: the read completes with the block's data
        proxy.off()
        try:
            fl.wait_for(lambda: p.finished("read"), 60.0, "the read once S3 answers")
        except TimeoutError as e:
            fl.log("# %s" % e)
        if check("read" in p.done and p.done["read"][1] is None,
                 "the read completed after the stalls stopped (%s)" % (p.done.get("read"),)):
            check(bytes(rbuf.to_bytearray()) == old[BLOCK_READ],
                  "the stalled read returned block %d's data" % BLOCK_READ)
        check(h.pread(BS, BLOCK_WRITE * BS) == new,
              "the block written during the stall reads back")
        check(h.pread(BS, BLOCK_OTHER * BS) == old[BLOCK_OTHER],
              "another uncached block reads back from the store")
        m1 = json_metrics(d2)
        check(m1.get("store_gets", 0) > gets0 and m1.get("cache_misses", 0) >= 2,
              "the reads were cache misses fetched from the store (GETs %s -> %s, misses %s)"
              % (gets0, m1.get("store_gets"), m1.get("cache_misses")))
        check(m1.get("nbd_reliefs", 0) >= (r0 or 0) + 1,
              "nbd_reliefs in the JSON metrics counts the relief (%s)" % m1.get("nbd_reliefs"))
        h.shutdown()
        check(d2.stop() == 0, "the second daemon drained the new write (exit 0)")

        # 6: the write is in the store
        d3 = make_daemon(glidefsd, base, "verifier", prefix)
        daemons.append(d3)
        d3.start()
        h = d3.connect(EXPORT)
        check(h.pread(BS, BLOCK_WRITE * BS) == new,
              "a third daemon with an empty cache reads the new block from the store")
        check(h.pread(BS, BLOCK_READ * BS) == old[BLOCK_READ], "and the old one")
        h.shutdown()
        check(d3.stop() == 0, "the third daemon exited 0")
        for d in daemons:
            if d.sanitizer_reports():
                check(False, "sanitizer report in %s: %s" % (d.log, d.sanitizer_reports()[0]))
    finally:
        try:
            proxy.off()
        except OSError:
            pass
        for d in daemons:
            d.close()
    fl.log("SUMMARY " + json.dumps({"test": "relief", "ok": not failed,
                                    "seconds": round(time.monotonic() - t0, 1)}))
    if failed:
        for d in daemons:
            print("--- %s log (%s) ---\n%s" % (d.name, d.log, d.log_tail(30)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
