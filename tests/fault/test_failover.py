#!/usr/bin/python3
"""test_failover.py - storage.durability: store survives losing the node
(issue 23). A crash loop where every kill -9 also deletes the node's cache
dir, and the next incarnation is another node: a fresh cache dir, so a new
writer identity, that takes every export over with a forced promote (the
dead node's lease is still live). Verifying NBD writers (random writes, some
FUA, trims, write-zeroes, flushes) run between kills; after each kill every
sector must hold the value of the last FLUSH (or FUA) that covered it, or a
value written after that (faultlib's model): nothing acknowledged and
flushed is lost with the node. The syncer's own delay is an hour, so only
the flushes (and back-pressure) put data in the store. Under s3env the store
is s3rver behind tests/s3/s3proxy.py with a seeded schedule of
500/503/SlowDown/reset faults.

The control run (--local, not in the suite) does the same in local mode and
is expected to lose flushed data: it shows the test can fail.

usage: test_failover.py GLIDEFSD [--s3-cache DIR] [--local]
  GLIDEFS_FAULT_KILLS=N  kills (default 8)
  GLIDEFS_FAULT_SEED=N   seed (default: random, printed)
"""
import argparse
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


def take_over(d, models):
    """Attach to every export (read-only: the dead node's lease is live),
    then promote with force. Returns the anchor connections."""
    anchors = fl.anchor(d, models)
    for m in models:
        r = fl.http("POST", d.api_url("/api/exports/%s/promote?force=true" % m.name))
        if r[0] != 200:
            raise RuntimeError("forced promote of %s: %s %s" % (m.name, r[0], r[2][:300]))
    return anchors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("--s3-cache", default=None)
    ap.add_argument("--local", action="store_true", help="the control: local mode")
    ap.add_argument("--exports", type=int, default=2)
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("--size", default="8M")
    a = ap.parse_args()

    fl.need_libnbd()
    if a.s3_cache:
        fl.run_under_s3env(a.s3_cache, timeout=900)
    kills_wanted = int(os.environ.get("GLIDEFS_FAULT_KILLS") or 8)
    seed = int(os.environ.get("GLIDEFS_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    size = int(a.size.rstrip("M")) * fl.MiB
    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-failover-")
    proxy = fl.Proxy() if fl.s3_active() else None
    mode = "local" if a.local else "store"
    fl.log("# seed %d, store %s, durability %s, %d exports x %d connections of %s, %d kills" % (
        seed, "s3 (s3rver behind s3proxy.py)" if proxy else "file://", mode, a.exports,
        a.conns, a.size, kills_wanted))
    if proxy:
        proxy.faults(rate=0.05, kinds="500,503,slowdown,reset", seed=seed)

    stats = fl.Stats()
    models = [fl.ExportModel("fo%d" % i, size) for i in range(a.exports)]
    store = os.path.join(base, "store")
    prefix = "failover-%d" % os.getpid()

    def node(i):
        return fl.Glidefsd(glidefsd, base, "node%d" % i, store=store, prefix=prefix,
                           disk_size="32M", size=a.size, sync_delay_ms=3600000,
                           node_id="node%d" % i, api=True,
                           nbd_extra={"max_dirty_age_ms": 3600000},
                           storage_extra={"durability": mode})

    failed = []
    daemons = []
    t0 = time.monotonic()
    kills = 0
    try:
        d = node(0)
        daemons.append(d)
        d.start()
        anchors = fl.anchor(d, models)  # creates the exports, this node the writer
        failed += fl.verify_all(d, models, stats, exact=True, what="fresh: ")
        while not failed and kills < kills_wanted:
            stop, dying, clock = threading.Event(), threading.Event(), fl.Clock()
            writers = [fl.Writer(d, m, c, a.conns, kills + 1, clock, stop, stats,
                                 seed=rng.randrange(1 << 30), expect_death=dying)
                       for m in models for c in range(a.conns)]
            for w in writers:
                w.start()
            stop.wait(rng.uniform(0.3, 1.5))  # the kill moment, under load
            errs = [w.error for w in writers if w.error]
            dying.set()
            d.kill()
            kills += 1
            fl.drop(anchors)
            stop.set()
            for w in writers:
                w.join(60)
                if w.is_alive():
                    failed.append("round %d: a writer did not notice the kill" % kills)
            errs += [w.error for w in writers if w.error]
            if errs:
                failed += ["round %d: I/O failed while the node ran: %s" % (kills, e)
                           for e in errs]
                break
            stats.add("ops", sum(w.ops_done for w in writers))
            # the node is lost with its disk
            shutil.rmtree(d.cache, ignore_errors=True)
            d = node(kills)
            daemons.append(d)
            t1 = time.monotonic()
            d.start()
            anchors = take_over(d, models)
            stats.add("t_takeover", time.monotonic() - t1)
            bad = fl.verify_all(d, models, stats, what="after kill %d on a new node: " % kills)
            if bad:
                failed += bad
                break
        if not failed:
            fl.drop(anchors)
            rc = d.stop()
            if rc != 0:
                failed.append("SIGTERM drain exited with %s" % rc)
        for x in daemons:
            san = x.sanitizer_reports()
            if san:
                failed.append("sanitizer report in %s: %s" % (x.log, san[0]))
    finally:
        for x in daemons:
            x.close()

    el = time.monotonic() - t0
    summary = {"test": "failover", "seed": seed, "store": "s3" if proxy else "file",
               "durability": mode, "kills": kills, "ops": stats.get("ops"),
               "flushes": stats.get("flushes"),
               "fua_writes": stats.get("write_fua"),
               "bytes_written": stats.get("bytes_written"),
               "bytes_verified": stats.get("bytes_verified"), "seconds": round(el, 1),
               "seconds_takeover": round(stats.get("t_takeover"), 1)}
    if proxy:
        st = proxy.stats()
        summary["s3_requests"] = st.get("requests")
        summary["faults_injected"] = {k: v for k, v in st.get("by_kind", {}).items() if v}
    fl.log("SUMMARY " + fl.json.dumps(summary, sort_keys=True))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        print("--- last glidefsd log (%s) ---\n%s" % (daemons[-1].log, daemons[-1].log_tail(60)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    print("ok - %d nodes lost with their disks, nothing flushed lost (%s verified)" % (
        kills, fl.human(stats.get("bytes_verified"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
