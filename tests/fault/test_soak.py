#!/usr/bin/python3
"""test_soak.py - a bounded soak: two glidefsd nodes on one store, many
exports and connections, mixed verified I/O, drains and migrations, for
GLIDEFS_SOAK_SECONDS; RSS and open file descriptors of both daemons sampled
throughout and reported, and checked for growth.

Each epoch (GLIDEFS_SOAK_EPOCH seconds, default 15): verifying writers on
every export (two connections each) on the node that holds it, REST drains
of random exports while they write, connection churn (idle NBD connections
opened and closed), then: writers stop, every export is flushed and read
back against its model, and two exports migrate to the other node (release
on the old node, attach and, if needed, promote on the new one, read back
exactly). At the end both nodes drain on SIGTERM and a third node with an
empty cache reads every export back exactly.

Growth check (after the first quarter, a warm-up): the median RSS of the
last quarter may exceed the second quarter's by at most 25% + 16 MiB, and
the open-fd count by at most 16.

usage: test_soak.py GLIDEFSD [--s3-cache DIR]   (skips, 77, unless
GLIDEFS_SOAK_SECONDS is set)
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402


class Sampler(threading.Thread):
    def __init__(self, daemons, every=2.0):
        super().__init__(daemon=True)
        self.daemons = daemons
        self.every = every
        self.stop = threading.Event()
        self.samples = {d.name: [] for d in daemons}  # (t, rss KiB, fds)

    def run(self):
        t0 = time.monotonic()
        while not self.stop.is_set():
            for d in self.daemons:
                try:
                    self.samples[d.name].append((time.monotonic() - t0, d.rss_kib(), d.nfds()))
                except OSError:
                    pass
            self.stop.wait(self.every)


def growth(samples):
    """(ok, text) for one daemon's samples."""
    n = len(samples)
    if n < 8:
        return True, "too few samples (%d) to judge" % n
    q = n // 4
    mid, last = samples[q:2 * q], samples[3 * q:]
    rss_mid = statistics.median(s[1] for s in mid)
    rss_last = statistics.median(s[1] for s in last)
    fd_mid = max(s[2] for s in mid)
    fd_last = max(s[2] for s in last)
    ok = rss_last <= rss_mid * 1.25 + 16 * 1024 and fd_last <= fd_mid + 16
    text = ("RSS %d -> %d MiB (median, 2nd vs last quarter; min %d, max %d), open fds %d -> %d "
            "(max; min %d, max %d), %d samples" % (
                rss_mid // 1024, rss_last // 1024, min(s[1] for s in samples) // 1024,
                max(s[1] for s in samples) // 1024, fd_mid, fd_last,
                min(s[2] for s in samples), max(s[2] for s in samples), n))
    return ok, text


def api(d, method, path, timeout=120):
    st, _, body = fl.http(method, d.api_url(path), timeout=timeout)
    try:
        return st, json.loads(body or b"{}")
    except ValueError:
        return st, {"raw": body[:200]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("--s3-cache", default=None)
    ap.add_argument("--exports", type=int, default=6)
    ap.add_argument("--idle", type=int, default=24, help="idle connections churned per epoch")
    a = ap.parse_args()
    secs = float(os.environ.get("GLIDEFS_SOAK_SECONDS") or 0)
    if secs <= 0:
        print("SKIP: the soak runs only with GLIDEFS_SOAK_SECONDS set", file=sys.stderr)
        return fl.SKIP
    fl.need_libnbd()
    if a.s3_cache:
        fl.run_under_s3env(a.s3_cache, timeout=secs + 900)
    epoch_s = float(os.environ.get("GLIDEFS_SOAK_EPOCH") or 15)
    seed = int(os.environ.get("GLIDEFS_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-soak-")
    store = os.path.join(base, "store")
    common = dict(store=store, disk_size="64M", size="8M", sync_delay_ms=50, api=True,
                  nbd_extra={"max_dirty_age_ms": 1000}, prefix="soak-%d" % os.getpid(),
                  compaction={"interval_s": 5, "grace_ms": 2000})
    A = fl.Glidefsd(glidefsd, base, "node-a", node_id="soak-node-a", **common)
    B = fl.Glidefsd(glidefsd, base, "node-b", node_id="soak-node-b", **common)
    C = None
    nodes = [A, B]
    models = [fl.ExportModel("soak%d" % i, 8 * fl.MiB) for i in range(a.exports)]
    where = {m.name: A if i % 2 == 0 else B for i, m in enumerate(models)}
    stats = fl.Stats()
    failed = []
    counts = {"epochs": 0, "drains": 0, "drains_timed_out": 0, "migrations": 0, "promotes": 0,
              "idle_connections": 0}
    t0 = time.monotonic()
    fl.log("# seed %d, %d exports on 2 nodes, %d s, epochs of %.0f s, store %s" % (
        seed, a.exports, secs, epoch_s, "s3" if fl.s3_active() else "file://"))
    sampler = None
    try:
        A.start()
        B.start()
        sampler = Sampler(nodes)
        sampler.start()
        rnd = 0
        while time.monotonic() - t0 < secs and not failed:
            full = fl.disk_guard(base)
            if full:
                failed.append(full)
                break
            rnd += 1
            counts["epochs"] += 1
            stop, clocks = threading.Event(), {m.name: fl.Clock() for m in models}
            # on s3rver behind the Python proxy, uploads are slow: write less
            think = 0.02 if fl.s3_active() else 0.003
            writers = [fl.Writer(where[m.name], m, c, 2, rnd, clocks[m.name], stop, stats,
                                 seed=rng.randrange(1 << 30), max_sectors=64, think=think)
                       for m in models for c in range(2)]
            anchors = [where[m.name].connect(m.name) for m in models]
            for w in writers:
                w.start()
            end = time.monotonic() + epoch_s
            idle = []
            while time.monotonic() < end and not failed:
                # churn idle connections on both nodes
                for h in idle:
                    try:
                        h.shutdown()
                    except Exception:  # noqa: BLE001
                        pass
                idle = []
                for _ in range(a.idle // 4):
                    m = rng.choice(models)
                    idle.append(where[m.name].connect(m.name))
                    counts["idle_connections"] += 1
                # a drain while the writers write
                m = rng.choice(models)
                st, j = api(where[m.name], "POST", "/api/exports/%s/drain?timeout_s=60" % m.name)
                if st == 504:
                    # not done in 60 s while the writers keep writing: the answer
                    # says so, nothing is lost (checked below); count it
                    counts["drains_timed_out"] += 1
                elif st != 200:
                    failed.append("drain of %s on %s: %s %s" % (m.name, where[m.name].name, st, j))
                counts["drains"] += 1
                stop.wait(min(max(0.1, end - time.monotonic()), rng.uniform(1.0, 3.0)))
            for h in idle:
                try:
                    h.shutdown()
                except Exception:  # noqa: BLE001
                    pass
            stop.set()
            for w in writers:
                w.join(120)
            failed += ["%s" % w.error for w in writers if w.error]
            stats.add("ops", sum(w.ops_done for w in writers))
            if failed:
                break
            # flush, verify everything where it lives
            for m in models:
                h = where[m.name].connect(m.name)
                start = clocks[m.name].tick()
                h.flush()
                m.flushed(start)
                data = fl.read_export(h, m.size)
                h.shutdown()
                stats.add("bytes_verified", len(data))
                failed += fl.verify_export(m, data, what="epoch %d: " % rnd)
            fl.drop(anchors)
            # migrate two exports to the other node
            for m in rng.sample(models, min(2, len(models))):
                src = where[m.name]
                dst = B if src is A else A
                st, j = api(src, "POST", "/api/exports/%s/release?timeout_s=300" % m.name,
                            timeout=330)
                if st != 200:
                    failed.append("release of %s on %s: %s %s" % (m.name, src.name, st, j))
                    break
                h = dst.connect(m.name)
                st, j = api(dst, "GET", "/api/exports/%s" % m.name)
                if j.get("read_only"):
                    st, j = api(dst, "POST", "/api/exports/%s/promote" % m.name)
                    counts["promotes"] += 1
                    if st != 200:
                        failed.append("promote of %s on %s: %s %s" % (m.name, dst.name, st, j))
                        break
                data = fl.read_export(h, m.size)
                h.shutdown()
                stats.add("bytes_verified", len(data))
                failed += fl.verify_export(m, data, exact=True,
                                           what="epoch %d, after migrating to %s: "
                                           % (rnd, dst.name))
                where[m.name] = dst
                counts["migrations"] += 1
            for d in nodes:
                if not d.alive():
                    failed.append("%s died" % d.name)
            last = {d.name: sampler.samples[d.name][-1] if sampler.samples[d.name] else None
                    for d in nodes}
            if not fl.s3_active():
                sb = fl.dir_bytes(store)
                counts["store_mib_max"] = max(counts.get("store_mib_max", 0), sb >> 20)
                counts["store_mib_end"] = sb >> 20
            fl.log("# epoch %d (%.0f s): %s written, %s verified, %d migrations, store %s MiB; %s" % (
                rnd, time.monotonic() - t0, fl.human(stats.get("bytes_written")),
                fl.human(stats.get("bytes_verified")), counts["migrations"],
                counts.get("store_mib_end", "?"),
                ", ".join("%s RSS %d MiB fds %d" % (k, v[1] // 1024, v[2])
                          for k, v in last.items() if v)))
        sampler.stop.set()
        sampler.join()
        for d in nodes:
            ok, text = growth(sampler.samples[d.name])
            fl.log("%s - %s: %s" % ("ok" if ok else "FAIL", d.name, text))
            if not ok:
                failed.append("%s grows: %s" % (d.name, text))
        if not failed:
            for d in nodes:
                rc = d.stop(timeout=300)
                if rc != 0:
                    failed.append("%s: SIGTERM drain exited %s" % (d.name, rc))
            C = fl.Glidefsd(glidefsd, base, "node-c", node_id="soak-node-c",
                            **dict(common, api=False))
            C.start()
            failed += fl.verify_all(C, models, stats, exact=True, what="empty cache: ")
            C.stop()
        for d in nodes + ([C] if C else []):
            san = d.sanitizer_reports()
            if san:
                failed.append("sanitizer report in %s: %s" % (d.log, san[0]))
    finally:
        if sampler:
            sampler.stop.set()
        for d in nodes + ([C] if C else []):
            d.close()
    summary = {"test": "soak", "seed": seed, "seconds": round(time.monotonic() - t0, 1),
               "exports": a.exports, "writer_connections": 2 * a.exports,
               "bytes_written": stats.get("bytes_written"),
               "bytes_verified": stats.get("bytes_verified"), "ops": stats.get("ops"),
               "nothing_lost": not failed}
    summary.update(counts)
    if sampler:
        for d in nodes:
            s = sampler.samples[d.name]
            if s:
                summary["%s_rss_mib_first_last_max" % d.name] = [
                    s[0][1] // 1024, s[-1][1] // 1024, max(x[1] for x in s) // 1024]
                summary["%s_fds_first_last_max" % d.name] = [
                    s[0][2], s[-1][2], max(x[2] for x in s)]
    fl.log("SUMMARY " + json.dumps(summary, sort_keys=True))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        for d in nodes:
            print("--- %s log ---\n%s" % (d.name, d.log_tail(40)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
