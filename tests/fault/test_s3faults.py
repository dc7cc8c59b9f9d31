#!/usr/bin/python3
"""test_s3faults.py - glidefsd on s3:// with the S3 answering badly: the
strict proxy tests/s3/s3proxy.py (between glidefsd and s3rver, on loopback)
injects, by a seeded schedule, 500, 503 ServiceUnavailable, 503 SlowDown,
stalls past storage.timeout_ms, connection resets mid-body and truncated
bodies, and logs each one. Nothing may be lost or read back wrong
(promises 3, 4, 6):

 1. verifying writers on three exports (writes, FUA, trims, flushes) while
    the syncer uploads through the faults;
 2. kill -9 in the middle of it, restart (recovery lists and reads the store
    through the faults), verify every sector;
 3. more writes, then SIGTERM: the drain must finish through the faults and
    exit 0;
 4. a second daemon with an empty cache reads every export back - every
    block a GET through the faults (truncated and reset bodies included) -
    and must see exactly the data;
 5. the proxy's log and counters must show every fault kind injected.

usage: test_s3faults.py GLIDEFSD --s3-cache DIR   (skips, 77, without node/npm)
"""
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

KINDS = "500,503,slowdown,stall,reset,truncate"


def metrics_of(d):
    """{name: value} of glidefsd's /metrics (summed over label sets), or {}."""
    if not fl.api_available(d):
        return {}
    st, _, body = fl.http("GET", d.api_url("/metrics"))
    out = {}
    if st != 200:
        return out
    for line in body.decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            pass
    return out


def run_writers(d, models, rnd, stats, rng, seconds, dying=None):
    stop, clock = threading.Event(), fl.Clock()
    ws = [fl.Writer(d, m, 0, 1, rnd, clock, stop, stats, seed=rng.randrange(1 << 30),
                    max_sectors=128, expect_death=dying, think=0.002) for m in models]
    for w in ws:
        w.start()
    stop.wait(seconds)
    return stop, ws


def main():
    a = fl.s3_only_test(timeout=600)
    if a is None:
        return fl.SKIP

    seed = int(os.environ.get("GLIDEFS_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    rate = float(os.environ.get("GLIDEFS_FAULT_RATE") or 0.25)
    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-s3faults-")
    proxy = fl.Proxy()
    stats = fl.Stats()
    size = 2 * fl.MiB
    models = [fl.ExportModel("flaky%d" % i, size) for i in range(3)]
    storage = {"timeout_ms": 1500, "max_retries": 12}
    d = fl.Glidefsd(glidefsd, base, "node1", disk_size="32M", size="2M", sync_delay_ms=20,
                    nbd_extra={"max_dirty_age_ms": 200, "blocks_per_batch": 4},
                    storage_extra=storage, api=True, log_level="info")
    d2 = None
    failed = []
    t0 = time.monotonic()
    fl.log("# seed %d, fault rate %.2f, kinds %s, stalls of 2.5 s against a 1.5 s timeout"
           % (seed, rate, KINDS))
    m1 = {}
    try:
        d.start()  # the store check and first opens run fault-free
        anchors = fl.anchor(d, models)
        failed += fl.verify_all(d, models, stats, exact=True, what="fresh: ")
        proxy.faults(rate=rate, kinds=KINDS, seed=seed, stall_ms=2500)

        # 1 + 2: write through the faults, kill -9 mid-upload, recover, verify
        dying = threading.Event()
        stop, ws = run_writers(d, models, 1, stats, rng, 4.0, dying)
        errs = [w.error for w in ws if w.error]
        dying.set()
        d.kill()
        fl.drop(anchors)
        stop.set()
        for w in ws:
            w.join(60)
        errs += [w.error for w in ws if w.error]
        failed += ["I/O failed under S3 faults: %s" % e for e in errs]
        if not failed:
            d.start(timeout=120)
            anchors = fl.anchor(d, models)
            failed += fl.verify_all(d, models, stats, what="after kill -9: ")
            fl.log("ok - kill -9 during faulty uploads: every flushed write read back (%.0f s)"
                   % (time.monotonic() - t0))

        # 3: write more, then drain through the faults
        if not failed:
            stop, ws = run_writers(d, models, 2, stats, rng, 3.0)
            stop.set()
            for w in ws:
                w.join(60)
            failed += ["I/O failed under S3 faults: %s" % w.error for w in ws if w.error]
            hs = [d.connect(m.name) for m in models]
            for h in hs:
                h.flush()
            # everything written is now durable: what the model must see is
            # exactly "the durable value or later", and after the drain exactly it
            for m, h in zip(models, hs):
                failed += fl.verify_export(m, fl.read_export(h, m.size), what="before drain: ")
                stats.add("bytes_verified", m.size)
                h.shutdown()
            m1 = metrics_of(d)
            fl.drop(anchors)
            rc = d.stop(timeout=300)
            if rc != 0:
                failed.append("SIGTERM drain through the faults exited with %s" % rc)
            else:
                fl.log("ok - SIGTERM drained every export through the faults, exit 0 (%.0f s)"
                       % (time.monotonic() - t0))

        # 4: empty cache, reads through the faults
        if not failed:
            d2 = fl.Glidefsd(glidefsd, base, "node2", prefix=d.prefix, disk_size="32M",
                             size="2M", storage_extra=storage, node_id="verifier-node",
                             log_level="info")
            d2.start(timeout=120)
            failed += fl.verify_all(d2, models, stats, exact=True, what="empty cache: ")
            if not failed:
                fl.log("ok - a second daemon with an empty cache read every export back "
                       "exactly, every block a GET through the faults (%.0f s)"
                       % (time.monotonic() - t0))
            if d2.stop(timeout=300) != 0:
                failed.append("second daemon did not exit 0")
        proxy.off()

        # 5: the proxy says what it did
        st = proxy.stats()
        by_kind = st.get("by_kind", {})
        logged = proxy.logged_faults()
        for k in KINDS.split(","):
            if by_kind.get(k, 0) < 1:
                failed.append("the proxy never injected %s (raise the rate or the run)" % k)
            if logged.get(k, 0) != by_kind.get(k, 0):
                failed.append("the proxy log shows %d %s faults, its counters %d" % (
                    logged.get(k, 0), k, by_kind.get(k, 0)))
        for x in (d, d2):
            if x and x.sanitizer_reports():
                failed.append("sanitizer report in %s: %s" % (x.log, x.sanitizer_reports()[0]))
    finally:
        for x in (d, d2):
            if x:
                x.close()
    el = time.monotonic() - t0
    st = proxy.stats()
    summary = {"test": "s3_faults", "seed": seed, "rate": rate,
               "s3_requests": st.get("requests"),
               "faults_injected": {k: v for k, v in st.get("by_kind", {}).items() if v},
               "kills": 1, "nothing_lost": not failed,
               "bytes_written": stats.get("bytes_written"),
               "bytes_verified": stats.get("bytes_verified"),
               "glidefsd_store_errors": m1.get("glidefs_store_errors_total"),
               "glidefsd_store_retries": m1.get("glidefs_store_retries_total"),
               "seconds": round(el, 1)}
    fl.log("SUMMARY " + fl.json.dumps(summary, sort_keys=True))
    fl.log("faults injected: " + ", ".join("%s %d" % kv for kv in
                                             sorted(summary["faults_injected"].items())) +
           " of %s requests" % st.get("requests"))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(60)))
        if d2:
            print("--- second glidefsd log ---\n%s" % d2.log_tail(40))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    print("ok - nothing lost through %d injected faults" % sum(summary["faults_injected"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
