#!/usr/bin/python3
"""test_pressure.py - back-pressure, not failure (promise 6): dirty data
larger than the cache budget while S3 is down, then slow.

cache.disk_size is 32M (the journal may hold half of it); a writer streams
40 MiB of tagged 1 MiB writes while the proxy answers every S3 request with
500/503/SlowDown. The writes must wait - not fail - once the dirty budget is
full; reads of data held locally keep working; status and metrics show why
(dirty bytes at the budget, the sync error, writes that waited). S3 then
turns slow (every request stalls past storage.timeout_ms): still waiting,
still readable. When S3 comes back the writes complete, everything reads
back, drains, and a second daemon with an empty cache sees all of it.

usage: test_pressure.py GLIDEFSD --s3-cache DIR   (skips, 77, without node/npm)
"""
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
from test_s3faults import metrics_of  # noqa: E402

MiB = fl.MiB
NAME = "pressure"


def chunk(model, tag, off, n):
    s0 = off // fl.SECTOR
    return b"".join(fl.sector_bytes(tag, s, model.salt) for s in range(s0, s0 + n // fl.SECTOR))


class Streamer(threading.Thread):
    """Sequential 1 MiB writes, recorded in the model; counts what completed."""

    def __init__(self, d, model, start, count, tag):
        super().__init__(daemon=True)
        self.d, self.m, self.start_off, self.count, self.tag = d, model, start, count, tag
        self.done = 0
        self.error = None
        self.finished = False
        self.last_progress = time.monotonic()
        self.clock = fl.Clock()

    def run(self):
        import nbd
        try:
            h = self.d.connect(self.m.name)
            for i in range(self.count):
                off = self.start_off + i * MiB
                i_op = self.m.begin(off // fl.SECTOR, MiB // fl.SECTOR, self.tag)
                h.pwrite(chunk(self.m, self.tag, off, MiB), off)
                self.m.complete(i_op, self.clock.tick())
                self.done += 1
                self.last_progress = time.monotonic()
            h.shutdown()
        except nbd.Error as e:
            self.error = str(e)
        self.finished = True


def status(d):
    st, _, body = fl.http("GET", d.api_url("/api/exports/" + NAME))
    return json.loads(body) if st == 200 else {"http_status": st}


def timed_read(d, off, n, timeout):
    """Read n bytes at off on a new connection; None if it takes > timeout."""
    out = {}

    def rd():
        try:
            h = d.connect(NAME)
            out["data"] = h.pread(n, off)
            h.shutdown()
        except Exception as e:  # noqa: BLE001
            out["error"] = str(e)
    t = threading.Thread(target=rd, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["data"]


def main():
    a = fl.s3_only_test(timeout=600)
    if a is None:
        return fl.SKIP

    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-pressure-")
    proxy = fl.Proxy()
    stats = fl.Stats()
    model = fl.ExportModel(NAME, 64 * MiB)
    storage = {"timeout_ms": 1500, "max_retries": 3}
    d = fl.Glidefsd(glidefsd, base, "node1", disk_size="32M", size="64M", sync_delay_ms=10,
                    nbd_extra={"max_dirty_age_ms": 200}, storage_extra=storage, api=True)
    d2 = None
    failed = []
    report = {}
    t0 = time.monotonic()

    def check(cond, what):
        fl.log(("ok - " if cond else "FAIL - ") + what)
        if not cond:
            failed.append(what)
        return cond

    try:
        d.start()
        if not fl.api_available(d):
            print("SKIP: glidefsd has no REST API (servers.api.listen) yet", file=sys.stderr)
            return fl.SKIP
        # phase 1: 4 MiB, flushed and uploaded while S3 is well. The connection
        # stays open throughout, as a VM's would: the node keeps the lease.
        h = d.connect(NAME)
        for i in range(4):
            h.pwrite(chunk(model, 1, i * MiB, MiB), i * MiB)
            model.base[i * 2048:(i + 1) * 2048] = [1] * 2048
        h.flush()
        fl.wait_for(lambda: status(d).get("dirty_bytes") == 0, 60, "phase 1 to upload")

        # phase 2: S3 down; stream 40 MiB (> the whole 32 MiB budget)
        proxy.faults(rate=1.0, kinds="500,503,slowdown", seed=7)
        w = Streamer(d, model, 4 * MiB, 40, 2)
        w.start()

        def stalled():
            if w.finished:
                return True
            return w.done >= 1 and time.monotonic() - w.last_progress > 3.0
        fl.wait_for(stalled, 120, "the writer to wait (back-pressure)")
        check(not w.finished and w.error is None,
              "S3 down: writes wait once the dirty budget is full, none fails "
              "(%d of 40 MiB acknowledged; %s)" % (w.done, w.error or "no error"))
        acked = w.done
        st = status(d)
        mt = metrics_of(d)
        report["status_while_waiting"] = {k: st.get(k) for k in (
            "state", "dirty_bytes", "journal_bytes", "cached_bytes", "last_error",
            "oldest_dirty_age_ms", "store_errors", "store_retries")}
        report["metrics_while_waiting"] = {k: mt.get(k) for k in (
            "glidefs_dirty_bytes", "glidefs_journal_bytes", "glidefs_sync_error",
            "glidefs_writes_waited_total", "glidefs_store_errors_total",
            "glidefs_store_retries_total")}
        fl.log("# status while waiting: " + json.dumps(report["status_while_waiting"]))
        fl.log("# metrics while waiting: " + json.dumps(report["metrics_while_waiting"]))
        check((st.get("dirty_bytes") or 0) >= 8 * MiB,
              "status: dirty_bytes %s is at the budget" % st.get("dirty_bytes"))
        check(bool(st.get("last_error")),
              "status: last_error says why (%r)" % st.get("last_error"))
        check((mt.get("glidefs_writes_waited_total") or 0) >= 1,
              "metrics: glidefs_writes_waited_total %s counts the waiting writes"
              % mt.get("glidefs_writes_waited_total"))
        check(mt.get("glidefs_sync_error") == 1, "metrics: glidefs_sync_error is 1")
        if "writes_waited" not in st and "waiting_writes" not in st:
            fl.log("# note: GET /api/exports/NAME has no field saying writes are waiting "
                   "(only /metrics has glidefs_writes_waited_total)")
        # reads of local data keep working: the journal's and the clean cache's
        t1 = time.monotonic()
        data = timed_read(d, 4 * MiB, acked * MiB, 10)
        check(data is not None and data == chunk(model, 2, 4 * MiB, acked * MiB),
              "S3 down: the %d MiB waiting in the journal read back (%.2f s)"
              % (acked, time.monotonic() - t1))
        t1 = time.monotonic()
        data = timed_read(d, 0, 4 * MiB, 10)
        check(data is not None and data == chunk(model, 1, 0, 4 * MiB),
              "S3 down: the 4 MiB uploaded before read back from the cache (%.2f s)"
              % (time.monotonic() - t1))

        # phase 3: S3 slow - every request stalls past the client timeout
        proxy.faults(rate=1.0, kinds="stall", seed=8, stall_ms=2500)
        before = w.done
        t1 = time.monotonic()
        data = timed_read(d, 4 * MiB, MiB, 10)
        check(data is not None and data == chunk(model, 2, 4 * MiB, MiB),
              "S3 slow: local data still reads back (%.2f s)" % (time.monotonic() - t1))
        # a full stall cycle (timeout + backoff) must not make the writer fail
        fl.wait_for(lambda: time.monotonic() - t1 > 4.0 or w.finished, 10, "a stall cycle")
        check(not w.finished and w.error is None and w.done - before <= 1,
              "S3 slow: writes still wait, none fails")

        # phase 4: S3 back; the writes complete
        proxy.off()
        t1 = time.monotonic()
        fl.wait_for(lambda: w.finished, 180, "the writer to finish after S3 came back")
        check(w.error is None and w.done == 40,
              "S3 back: the waiting writes completed (%.1f s), %s" %
              (time.monotonic() - t1, w.error or "no error"))
        report["seconds_to_complete_after_s3_back"] = round(time.monotonic() - t1, 1)
        h.flush()
        data = fl.read_export(h, model.size)
        h.shutdown()
        stats.add("bytes_verified", len(data))
        failed += fl.verify_export(model, data, what="after S3 came back: ")
        st, _, body = fl.http("POST", d.api_url("/api/exports/%s/drain" % NAME), timeout=300)
        check(st == 200, "drain after the outage: HTTP %d %s" % (st, body[:200]))
        mt = metrics_of(d)
        report["writes_waited_total"] = mt.get("glidefs_writes_waited_total")
        rc = d.stop()
        check(rc == 0, "SIGTERM exit status %s" % rc)
        if not failed:
            d2 = fl.Glidefsd(glidefsd, base, "node2", prefix=d.prefix, disk_size="32M",
                             size="64M", node_id="verifier-node")
            d2.start()
            failed += fl.verify_all(d2, [model], stats, exact=True, what="empty cache: ")
            check(not failed, "empty cache: all 44 MiB read back exactly")
            d2.stop()
        for x in (d, d2):
            if x and x.sanitizer_reports():
                failed.append("sanitizer report in %s: %s" % (x.log, x.sanitizer_reports()[0]))
    finally:
        proxy.off()
        for x in (d, d2):
            if x:
                x.close()
    st = proxy.stats()
    summary = {"test": "cache_pressure", "dirty_written_during_outage": 40 * MiB,
               "cache_budget": 32 * MiB, "faults_injected":
               {k: v for k, v in st.get("by_kind", {}).items() if v},
               "bytes_verified": stats.get("bytes_verified"), "nothing_lost": not failed,
               "seconds": round(time.monotonic() - t0, 1)}
    summary.update(report)
    fl.log("SUMMARY " + json.dumps(summary, sort_keys=True))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(60)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
