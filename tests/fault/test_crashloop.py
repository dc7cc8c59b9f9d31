#!/usr/bin/python3
"""test_crashloop.py - glidefsd under verifying NBD writers, killed with
SIGKILL at random moments, over and over (docs/design.md promises 2.2 and
2.3).

Several exports at once, two connections each (each connection owns a slice
of its export), random writes (some FUA), trims, write-zeroes and flushes.
The daemon is SIGKILLed at a random moment - mostly under load, sometimes
while it is still recovering from the previous kill - restarted on the same
cache, and every sector of every export is read back: it must hold the value
it had at the last FLUSH that covered it (or its FUA write), or a value
written after that; never anything torn or foreign. What it holds becomes
the reference for the next round, so a sector that later changes without a
write is caught. The cache budget is small (cache.disk_size 32M) and the
sync delay short, so uploads, eviction and back-pressure all happen during
the loop. Under s3env the store is s3rver behind tests/s3/s3proxy.py with a
seeded schedule of 500/503/SlowDown/reset/truncate faults.

At the end: SIGTERM (drain everything, exit 0), then a second daemon with an
empty cache on the same store reads every export back exactly.

usage: test_crashloop.py GLIDEFSD [--s3-cache DIR] [--stress]
  GLIDEFS_FAULT_KILLS=N     kills in the normal run (default 20)
  GLIDEFS_STRESS_SECONDS=S  with --stress: run for S seconds (else skip, 77)
  GLIDEFS_FAULT_SEED=N      seed (default: random, printed)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("--s3-cache", default=None)
    ap.add_argument("--stress", action="store_true")
    ap.add_argument("--exports", type=int, default=3)
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("--size", default="8M")
    a = ap.parse_args()

    stress_s = float(os.environ.get("GLIDEFS_STRESS_SECONDS") or 0)
    if a.stress and stress_s <= 0:
        print("SKIP: stress mode runs only with GLIDEFS_STRESS_SECONDS set", file=sys.stderr)
        return fl.SKIP
    fl.need_libnbd()
    if a.s3_cache:
        fl.run_under_s3env(a.s3_cache, timeout=(stress_s or 0) + 900)

    kills_wanted = int(os.environ.get("GLIDEFS_FAULT_KILLS") or 20)
    seed = int(os.environ.get("GLIDEFS_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    size = int(a.size.rstrip("M")) * fl.MiB
    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-crashloop-")
    proxy = fl.Proxy() if fl.s3_active() else None
    fl.log("# seed %d, store %s, %d exports x %d connections of %s, %s" % (
        seed, "s3 (s3rver behind s3proxy.py)" if proxy else "file://", a.exports, a.conns,
        a.size, "stress for %.0f s" % stress_s if stress_s else "%d kills" % kills_wanted))
    if proxy:
        proxy.faults(rate=0.05, kinds="500,503,slowdown,reset,truncate", seed=seed)

    stats = fl.Stats()
    models = [fl.ExportModel("crash%d" % i, size) for i in range(a.exports)]
    d = fl.Glidefsd(glidefsd, base, "node1", disk_size="32M", size=a.size, sync_delay_ms=100,
                    nbd_extra={"max_dirty_age_ms": 300, "blocks_per_batch": 4},
                    compaction=fl.FAST_COMPACTION, api=True)
    d2 = None
    failed = []
    t0 = time.monotonic()
    kills = recovery_kills = rounds = 0
    try:
        d.start()
        anchors = fl.anchor(d, models)
        bad = fl.verify_all(d, models, stats, exact=True, what="fresh: ")
        if bad:
            failed += bad
        while not failed:
            if stress_s:
                if time.monotonic() - t0 >= stress_s:
                    break
            elif kills >= kills_wanted:
                break
            full = fl.disk_guard(d.cache)
            if full:
                failed.append(full)
                break
            rounds += 1
            stop, dying, clock = threading.Event(), threading.Event(), fl.Clock()
            writers = [fl.Writer(d, m, c, a.conns, rounds, clock, stop, stats,
                                 seed=rng.randrange(1 << 30), expect_death=dying)
                       for m in models for c in range(a.conns)]
            for w in writers:
                w.start()
            # the kill moment: random, while the writers run
            stop.wait(rng.uniform(0.15, 1.2))
            errs = [w.error for w in writers if w.error]
            dying.set()
            d.kill()
            fl.drop(anchors)
            kills += 1
            stop.set()
            for w in writers:
                w.join(60)
                if w.is_alive():
                    failed.append("round %d: a writer did not notice the kill" % rounds)
            errs += [w.error for w in writers if w.error]
            if errs:
                failed += ["round %d: I/O failed while the daemon ran: %s" % (rounds, e)
                           for e in errs]
                break
            stats.add("ops", sum(w.ops_done for w in writers))
            # sometimes kill it again while it recovers
            if rng.random() < 0.2:
                d.start(wait=False)
                time.sleep(rng.uniform(0.0, 0.3))  # the moment of the second kill
                if d.kill():
                    kills += 1
                    recovery_kills += 1
            t1 = time.monotonic()
            d.start()
            anchors = fl.anchor(d, models)
            t2 = time.monotonic()
            bad = fl.verify_all(d, models, stats, what="round %d: " % rounds)
            stats.add("t_restart", t2 - t1)
            stats.add("t_verify", time.monotonic() - t2)
            if bad:
                failed += bad
                break
            if rounds % 10 == 0:
                # a daemon killed every second never gets to compact: let it,
                # now and then, or a long run fills the disk with dead segments
                t1 = time.monotonic()
                stats.add("bytes_compacted_away", fl.compact_all(d, models))
                stats.add("t_compact", time.monotonic() - t1)
            if rounds % 10 == 0 or stress_s:
                fl.log("# round %d: %d kills survived, %s verified, %.0f s" % (
                    rounds, kills, fl.human(stats.get("bytes_verified")),
                    time.monotonic() - t0))

        if not failed:
            # drain everything and read it back from an empty cache elsewhere
            if not proxy:
                stats.add("store_bytes_end", fl.dir_bytes(d.store))
            t1 = time.monotonic()
            fl.drop(anchors)
            rc = d.stop()
            stats.add("t_drain", time.monotonic() - t1)
            if rc != 0:
                failed.append("SIGTERM drain exited with %s" % rc)
            else:
                if proxy:
                    proxy.off()
                d2 = fl.Glidefsd(glidefsd, base, "node2", store=d.store, prefix=d.prefix,
                                 disk_size="32M", size=a.size, node_id="verifier-node")
                d2.start()
                failed += fl.verify_all(d2, models, stats, exact=True, what="empty cache: ")
                rc2 = d2.stop()
                if rc2 != 0:
                    failed.append("second daemon exited with %s" % rc2)
        for x in (d, d2):
            if x:
                san = x.sanitizer_reports()
                if san:
                    failed.append("sanitizer report in %s: %s" % (x.log, san[0]))
    finally:
        for x in (d, d2):
            if x:
                x.close()

    el = time.monotonic() - t0
    summary = {
        "test": "crashloop", "seed": seed, "store": "s3" if proxy else "file",
        "exports": a.exports, "connections": a.exports * a.conns, "rounds": rounds,
        "kills_survived": kills if not failed else None, "kills": kills,
        "kills_during_recovery": recovery_kills,
        "ops": stats.get("ops"), "flushes": stats.get("flushes"),
        "writes": stats.get("write") + stats.get("write_fua"),
        "fua_writes": stats.get("write_fua"),
        "trims": stats.get("trim") + stats.get("trim_fua"),
        "zeroes": stats.get("zero") + stats.get("zero_fua"),
        "bytes_written": stats.get("bytes_written"),
        "bytes_verified": stats.get("bytes_verified"), "seconds": round(el, 1),
        "seconds_restart": round(stats.get("t_restart"), 1),
        "seconds_verify": round(stats.get("t_verify"), 1),
        "seconds_drain": round(stats.get("t_drain"), 1),
        "store_mib_before_drain": stats.get("store_bytes_end") >> 20,
        "seconds_compact": round(stats.get("t_compact"), 1),
        "compactions_asked": sum(1 for ln in d.log_text().splitlines() if "compacted:" in ln),
    }
    if proxy:
        st = proxy.stats()
        summary["s3_requests"] = st.get("requests")
        summary["faults_injected"] = {k: v for k, v in st.get("by_kind", {}).items() if v}
    fl.log("SUMMARY " + fl.json.dumps(summary, sort_keys=True))
    fl.log("kills survived: %d (%d during recovery) in %d rounds, %s written, %s verified, "
           "%.0f s" % (kills, recovery_kills, rounds, fl.human(stats.get("bytes_written")),
                       fl.human(stats.get("bytes_verified")), el))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(80)))
        if d2:
            print("--- second glidefsd log ---\n%s" % d2.log_tail(40))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    print("ok - nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
