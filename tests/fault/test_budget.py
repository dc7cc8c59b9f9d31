#!/usr/bin/python3
"""test_budget.py - cache.disk_size is one budget for the whole node, not
one per volume (issue #21, item 11: with 16 MiB, eight exports held 57 MiB).

One glidefsd, cache.disk_size 16M, eight exports of 32 MiB each. Eight
clients at once write their whole export (32 MiB each, 256 MiB in all: 16x
the budget), read it back twice, overwrite half of it and read everything
again; meanwhile a sampler measures the cache directory's allocated blocks
(st_blocks of every file, as du does) every few milliseconds. Every sample
must stay within the bound README ("Tuning") gives: journal + clean cache
<= cache.disk_size, plus the few small files beside them (lock, epoch: at
most SLACK_PER_VOLUME each). Every byte must read back right, during the
run (evicted blocks come back from the store) and after a SIGTERM drain
from a second daemon with an empty cache (nothing was lost).

usage: test_budget.py GLIDEFSD
"""
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

MiB, KiB = fl.MiB, fl.KiB
BUDGET = 16 * MiB
NVOL = 8
SIZE = 32 * MiB
UNIT = 256 * KiB                 # every write is one whole unit
NUNITS = SIZE // UNIT
# lock (empty) and epoch (one block) per volume; the directories themselves
# are not counted (du of files, like the budget)
SLACK_PER_VOLUME = 16 * KiB
BOUND = BUDGET + NVOL * SLACK_PER_VOLUME


def content(vol, rnd, unit):
    """The bytes write round rnd put into unit of export vol (rnd 0: never written)."""
    if rnd == 0:
        return bytes(UNIT)
    return random.Random((vol << 32) | (rnd << 24) | unit).randbytes(UNIT)


def all_stopped(pid):
    """Every thread of pid is stopped (state T): nothing changes on disk."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # a thread that just exited
        if state not in ("T", "t", "Z", "X"):
            return False
    return True


class Sampler(threading.Thread):
    """Samples the cache dir's allocated bytes with glidefsd stopped
    (SIGSTOP until every thread is stopped, then SIGCONT): walking the
    files of a running daemon would add a file measured before a free to
    one measured after the next allocation, so each sample is a true
    moment of the daemon's life."""

    def __init__(self, path, pid):
        super().__init__(daemon=True)
        self.path = path
        self.pid = pid
        self.stop = threading.Event()
        self.max = 0
        self.max_detail = None
        self.samples = 0

    def detail(self):
        per = {}
        for dp, _, names in os.walk(self.path):
            for nm in names:
                try:
                    b = os.lstat(os.path.join(dp, nm)).st_blocks * 512
                except OSError:
                    continue
                rel = os.path.relpath(dp, self.path).split(os.sep)
                kind = "journal" if "journal" in rel else nm
                key = "%s/%s" % (rel[0], kind)
                per[key] = per.get(key, 0) + b
        return per

    def run(self):
        while not self.stop.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            try:
                fl.wait_for(lambda: all_stopped(self.pid), 10, "glidefsd to stop",
                            interval=0.0005)
                n = fl.dir_bytes(self.path)
                self.samples += 1
                if n > self.max:
                    self.max = n
                    if n > BOUND:
                        self.max_detail = self.detail()
            finally:
                os.kill(self.pid, signal.SIGCONT)
            time.sleep(0.01)


def client(d, vol, rounds, errors, rng):
    """Write everything, read it twice, overwrite half, read everything."""
    name = "b%d" % vol
    try:
        h = d.connect(name)

        def verify(what):
            for u in range(NUNITS):
                got = h.pread(UNIT, u * UNIT)
                if got != content(vol, rounds[u], u):
                    errors.append("%s: unit %d (offset %d) does not read back (%s)" %
                                  (name, u, u * UNIT, what))
                    return

        for u in range(NUNITS):
            h.pwrite(content(vol, 1, u), u * UNIT)
            rounds[u] = 1
            if u % 16 == 15:
                h.flush()
        h.flush()
        verify("after writing")
        verify("second read")
        for u in rng.sample(range(NUNITS), NUNITS // 2):
            h.pwrite(content(vol, 2, u), u * UNIT)
            rounds[u] = 2
        h.flush()
        verify("after overwriting")
        h.shutdown()
    except Exception as e:  # noqa: BLE001 - any failure is the test's failure
        errors.append("%s: %s" % (name, e))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    fl.need_libnbd()
    glidefsd = os.path.abspath(sys.argv[1])
    base = tempfile.mkdtemp(prefix="glidefs-budget-")
    d = fl.Glidefsd(glidefsd, base, "node1", disk_size="16M", size="32M", sync_delay_ms=20,
                    nbd_extra={"max_dirty_age_ms": 200}, s3=False)
    d2 = None
    failed = []
    t0 = time.monotonic()

    def check(cond, what):
        fl.log(("ok - " if cond else "FAIL - ") + what)
        if not cond:
            failed.append(what)
        return cond

    rounds = [[0] * NUNITS for _ in range(NVOL)]
    try:
        d.start()
        sampler = Sampler(d.cache, d.proc.pid)
        sampler.start()
        errors = []
        rng = random.Random(21)
        threads = [threading.Thread(target=client, args=(d, i, rounds[i], errors,
                                                         random.Random(rng.random())))
                   for i in range(NVOL)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        hung = [i for i, t in enumerate(threads) if t.is_alive()]
        sampler.stop.set()
        sampler.join()
        check(not hung, "every client finished (hung: %s)" % hung)
        check(not errors, "every byte read back while the budget was shared (%s)" %
              ("; ".join(errors[:4]) or "no error"))
        check(sampler.max <= BOUND,
              "cache dir at most %d bytes (%s) in %d samples; bound %d = %s budget + %d x %s%s" %
              (sampler.max, fl.human(sampler.max), sampler.samples, BOUND, fl.human(BUDGET),
               NVOL, fl.human(SLACK_PER_VOLUME),
               "" if not sampler.max_detail else "; at the worst: " + repr(sampler.max_detail)))
        check(sampler.samples >= 50, "the sampler ran (%d samples)" % sampler.samples)
        rc = d.stop()
        check(rc == 0, "SIGTERM drained every export and exited 0 (%s)" % rc)
        if not failed:
            # an empty cache: everything must come from the store
            d2 = fl.Glidefsd(glidefsd, base, "node2", store=d.store, disk_size="16M",
                             size="32M", node_id="verifier", s3=False)
            d2.start()
            bad = []
            for i in range(NVOL):
                h = d2.connect("b%d" % i)
                for u in range(NUNITS):
                    if h.pread(UNIT, u * UNIT) != content(i, rounds[i][u], u):
                        bad.append("b%d unit %d" % (i, u))
                        break
                h.shutdown()
            check(not bad, "a second node with an empty cache reads all %d MiB back (%s)" %
                  (NVOL * SIZE // MiB, ", ".join(bad) or "all equal"))
            check(d2.stop() == 0, "the second node exits 0")
        for x in (d, d2):
            if x and x.sanitizer_reports():
                failed.append("sanitizer report in %s: %s" % (x.log, x.sanitizer_reports()[0]))
    finally:
        for x in (d, d2):
            if x:
                x.close()
    fl.log("# %.1f s" % (time.monotonic() - t0))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(40)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
