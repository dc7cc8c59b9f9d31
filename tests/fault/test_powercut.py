#!/usr/bin/python3
"""test_powercut.py - power cuts under glidefsd: what was not fsync'ed is
gone, and every FLUSH-ed (or FUA) write still reads back (promise 2).

glidefsd runs with powercut.so preloaded (see powercut.c): every regular file
under its cache dir gets a shadow holding only what the file held at its last
fsync/fdatasync. At each "power cut" the test SIGKILLs the daemon and rolls
every file back (faultlib.power_cut):
  lose - to exactly its last synced state (the page cache is lost);
  mix  - every 4 KiB page written since the last sync independently old or
         new, the size old or new (write-back had started, in any order).
Then glidefsd restarts on what is left and the verifying model of
test_crashloop.py checks every sector of every export.

First a control shows the cut is real: a write that was never flushed is
gone after a cut (it survives a plain kill -9), while a flushed one stays.

Besides, a file created since the last cut keeps its name only if an fsync
of its directory listed it (lose: dropped; mix: dropped or kept).

What this models and what it does not:
  + lost page cache for file data, partial and reordered write-back of
    unsynced pages, file sizes (fallocate/truncate) not yet synced, names
    of new files not yet made durable by a directory fsync;
  - unlink, rename over an existing name and mkdir count as durable at once
    (a resurrected deleted file, or a new directory vanishing, is not
    modelled);
  - torn writes inside a 4 KiB page or sector, disks that ignore FLUSH,
    I/O outside libc (io_uring, mmap) - glidefsd uses none of these;
  - the store (file:// here) is not cut: it stands for S3, durable by contract.

usage: test_powercut.py GLIDEFSD POWERCUT_SO [--stress]
  GLIDEFS_POWERCUT_ROUNDS=N  cuts in the normal run (default 12)
  GLIDEFS_STRESS_SECONDS=S   with --stress: run for S seconds (else skip, 77)
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


def shim_env(shim, root, shadow):
    asan = os.environ.get("ASAN_OPTIONS", "")
    asan = (asan + ":" if asan else "") + "verify_asan_link_order=0"
    return {"LD_PRELOAD": shim, "GLIDEFS_PC_ROOT": root, "GLIDEFS_PC_SHADOW": shadow,
            "ASAN_OPTIONS": asan}


def control(glidefsd, shim, base, failed):
    """A flushed write survives a cut, an unflushed one does not (it does
    survive a plain kill -9). No uploads: sync delay of an hour."""
    shadow = os.path.join(base, "control-shadow")
    cache = os.path.join(base, "control-cache")
    os.makedirs(shadow)
    os.makedirs(cache)
    d = fl.Glidefsd(glidefsd, base, "control", cache=cache, store=os.path.join(base, "cstore"),
                    size="4M", sync_delay_ms=3600000,
                    nbd_extra={"max_dirty_age_ms": 86400000},
                    env=shim_env(shim, cache, shadow))
    salt = 12345
    a = b"".join(fl.sector_bytes(0xA000 + s, s, salt) for s in range(8))
    b = b"".join(fl.sector_bytes(0xB000 + s, s, salt) for s in range(8, 16))
    try:
        for cut in (False, True):
            name = "ctl%d" % cut  # a fresh export: nothing recovered for the syncer to upload
            d.start()
            # held until the kill: the last client leaving would drain (upload)
            # and hand the lease back, and the unflushed write would be in the store
            anchor = d.connect(name)
            h = d.connect(name)
            h.pwrite(a, 0)
            h.flush()
            h.pwrite(b, 8 * fl.SECTOR)
            h.shutdown()
            d.kill()
            fl.drop([anchor])
            if cut:
                fl.power_cut(cache, shadow, random.Random(1), "lose")
            d.start()
            anchor = d.connect(name)
            h = d.connect(name)
            got_a, got_b = h.pread(len(a), 0), h.pread(len(b), 8 * fl.SECTOR)
            h.shutdown()
            if got_a != a:
                failed.append("control: the flushed write is gone after %s" %
                              ("a power cut" if cut else "kill -9"))
            if not cut and got_b != b:
                failed.append("control: an unflushed write did not survive kill -9 (page cache)")
            if cut and got_b != bytes(len(b)):
                failed.append("control: an unflushed write survived the power cut: the shim "
                              "does not work, the test would prove nothing")
            d.kill()
            fl.drop([anchor])
            fl.power_cut(cache, shadow, random.Random(1), "lose")
        san = d.sanitizer_reports()
        if san:
            failed.append("sanitizer report: %s" % san[0])
    finally:
        d.close()
    if not failed:
        fl.log("ok - control: after a power cut the flushed write is there, the unflushed one "
               "is gone (after a plain kill -9 both are there)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("shim")
    ap.add_argument("--stress", action="store_true")
    ap.add_argument("--exports", type=int, default=3)
    ap.add_argument("--conns", type=int, default=2)
    a = ap.parse_args()
    stress_s = float(os.environ.get("GLIDEFS_STRESS_SECONDS") or 0)
    if a.stress and stress_s <= 0:
        print("SKIP: stress mode runs only with GLIDEFS_STRESS_SECONDS set", file=sys.stderr)
        return fl.SKIP
    fl.need_libnbd()
    glidefsd, shim = os.path.abspath(a.glidefsd), os.path.abspath(a.shim)
    rounds_wanted = int(os.environ.get("GLIDEFS_POWERCUT_ROUNDS") or 12)
    seed = int(os.environ.get("GLIDEFS_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    base = tempfile.mkdtemp(prefix="glidefs-powercut-")
    fl.log("# seed %d, %s" % (seed, "stress for %.0f s" % stress_s if stress_s
                              else "%d power cuts" % rounds_wanted))
    failed = []
    control(glidefsd, shim, base, failed)

    cache = os.path.join(base, "node1-cache")
    shadow = os.path.join(base, "shadow")
    os.makedirs(cache)
    os.makedirs(shadow)
    size = 8 * fl.MiB
    stats = fl.Stats()
    models = [fl.ExportModel("pc%d" % i, size) for i in range(a.exports)]
    d = fl.Glidefsd(glidefsd, base, "node1", cache=cache, disk_size="32M", size="8M",
                    sync_delay_ms=10, nbd_extra={"max_dirty_age_ms": 300, "blocks_per_batch": 4},
                    compaction=fl.FAST_COMPACTION, api=True,
                    env=shim_env(shim, cache, shadow))
    d2 = None
    t0 = time.monotonic()
    cuts = {"lose": 0, "mix": 0}
    files = reverted = kept = names = rounds = 0
    try:
        if not failed:
            d.start()
            anchors = fl.anchor(d, models)
            failed += fl.verify_all(d, models, stats, exact=True, what="fresh: ")
        while not failed:
            if stress_s:
                if time.monotonic() - t0 >= stress_s:
                    break
            elif rounds >= rounds_wanted:
                break
            full = fl.disk_guard(cache)
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
            stop.wait(rng.uniform(0.2, 1.2))  # the moment of the cut
            errs = [w.error for w in writers if w.error]
            dying.set()
            d.kill()
            fl.drop(anchors)
            stop.set()
            for w in writers:
                w.join(60)
            errs += [w.error for w in writers if w.error]
            if errs:
                failed += ["round %d: I/O failed while the daemon ran: %s" % (rounds, e)
                           for e in errs]
                break
            stats.add("ops", sum(w.ops_done for w in writers))
            mode = "lose" if rounds % 2 else "mix"
            f, r, k, n = fl.power_cut(cache, shadow, rng, mode)
            cuts[mode] += 1
            files, reverted, kept, names = files + f, reverted + r, kept + k, names + n
            d.start()
            anchors = fl.anchor(d, models)
            bad = fl.verify_all(d, models, stats, what="round %d (%s): " % (rounds, mode))
            if bad:
                failed += bad
                break
            if rounds % 10 == 0:
                fl.compact_all(d, models)  # or a long run fills the disk (see test_crashloop)
            if stress_s and rounds % 10 == 0:
                fl.log("# round %d: %d cuts survived, %s verified, %.0f s" % (
                    rounds, rounds, fl.human(stats.get("bytes_verified")),
                    time.monotonic() - t0))
        if not failed:
            fl.drop(anchors)
            rc = d.stop()
            if rc != 0:
                failed.append("SIGTERM drain exited with %s" % rc)
            else:
                d2 = fl.Glidefsd(glidefsd, base, "node2", store=d.store, disk_size="32M",
                                 size="8M", node_id="verifier-node")
                d2.start()
                failed += fl.verify_all(d2, models, stats, exact=True, what="empty cache: ")
                if d2.stop() != 0:
                    failed.append("second daemon did not exit 0")
        for x in (d, d2):
            if x and x.sanitizer_reports():
                failed.append("sanitizer report in %s: %s" % (x.log, x.sanitizer_reports()[0]))
        if "powercut:" in d.log_text():
            failed.append("the shim reported a problem: see %s" % d.log)
    finally:
        for x in (d, d2):
            if x:
                x.close()
    el = time.monotonic() - t0
    summary = {"test": "powercut", "seed": seed, "rounds": rounds,
               "cuts_survived": None if failed else rounds, "cuts_lose": cuts["lose"],
               "cuts_mix": cuts["mix"], "files_rolled_back": files,
               "pages_reverted": reverted, "unsynced_pages_kept": kept,
               "unsynced_new_files_dropped": names,
               "ops": stats.get("ops"), "flushes": stats.get("flushes"),
               "fua_writes": stats.get("write_fua"),
               "bytes_written": stats.get("bytes_written"),
               "bytes_verified": stats.get("bytes_verified"), "seconds": round(el, 1)}
    fl.log("SUMMARY " + fl.json.dumps(summary, sort_keys=True))
    fl.log("power cuts survived: %d (%d lose-all, %d mixed), %d files rolled back, %d pages "
           "reverted, %s verified" % (rounds, cuts["lose"], cuts["mix"], files, reverted,
                                      fl.human(stats.get("bytes_verified"))))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(80)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    print("ok - every flushed write survived every power cut")
    return 0


if __name__ == "__main__":
    sys.exit(main())
