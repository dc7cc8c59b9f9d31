#!/usr/bin/python3
"""test_diskfull.py - the cache disk fills up: a clear error, no corruption,
and recovery when space returns (promises 6 and 7).

The cache dir is a 12 MiB tmpfs, half taken by a filler file; the syncer is
held back (sync delay of an hour) so the journal only grows. Journal files
are preallocated (posix_fallocate), so the disk runs full at a file
rotation: the write that needs the new file must fail with NBD_ENOSPC
(EIO at worst) while everything acknowledged before it reads back intact,
FLUSH still works, and a second export on the same daemon is still served.
kill -9 while the disk is full and restart: recovery copes and the data is
there. Then space returns (the filler goes): the failed write succeeds on
retry, more writes follow, and the drain + a read-back from an empty cache
show nothing was lost.

Needs to mount a tmpfs (root); skips (77) when it cannot.

usage: test_diskfull.py GLIDEFSD
"""
import argparse
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

MiB = fl.MiB
W = 256 * 1024  # write size: 2 MiB journal files hold 7 of them


def chunk(model, tag, off, n):
    s0 = off // fl.SECTOR
    return b"".join(fl.sector_bytes(tag, s, model.salt) for s in range(s0, s0 + n // fl.SECTOR))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    a = ap.parse_args()
    fl.need_libnbd()
    import nbd
    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-diskfull-")
    cache = os.path.join(base, "cache")
    os.makedirs(cache)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12M,mode=0700", "tmpfs", cache],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        print("SKIP: cannot mount a tmpfs for the cache (%s)" % r.stdout.strip(),
              file=sys.stderr)
        return fl.SKIP
    failed = []
    d = d2 = None
    stats = fl.Stats()
    t0 = time.monotonic()
    report = {}

    def check(cond, what):
        fl.log(("ok - " if cond else "FAIL - ") + what)
        if not cond:
            failed.append(what)
        return cond

    try:
        filler = os.path.join(cache, "filler")
        with open(filler, "wb") as f:
            f.write(b"\xff" * (6 * MiB))
        model = fl.ExportModel("full", 64 * MiB)
        clock = fl.Clock()
        d = fl.Glidefsd(glidefsd, base, "node1", cache=cache, disk_size="32M", size="64M",
                        sync_delay_ms=3600000, nbd_extra={"max_dirty_age_ms": 86400000},
                        api=True)
        d.start()
        h = d.connect("full")
        acked = 0
        err = None
        tag = 1
        for i in range(160):
            off = i * W
            op = model.begin(off // fl.SECTOR, W // fl.SECTOR, tag)
            try:
                h.pwrite(chunk(model, tag, off, W), off)
            except nbd.Error as e:
                err = e
                break
            model.complete(op, clock.tick())
            acked += 1
        report["acked_before_full"] = acked * W
        check(err is not None, "the disk ran full after %d KiB of writes" % (acked * W // 1024))
        if err is None:
            return 1
        got = fl.nbd_errno(err)
        report["error_seen"] = errno.errorcode.get(got, str(got))
        check(got == errno.ENOSPC,
              "the write that found the disk full failed with %s (%s)" % (
                  errno.errorcode.get(got, got), err))
        if got == errno.EIO:
            fl.log("# (EIO, not ENOSPC: the client cannot tell a full disk from a broken one)")
        logged = [ln for ln in d.log_text().splitlines()
                  if "No space" in ln or "ENOSPC" in ln or "space" in ln.lower()]
        report["daemon_log"] = logged[:2]
        fl.log("# glidefsd logged: %s" % (logged[:2] or "nothing about it"))
        check(any("the cache disk is full" in ln for ln in logged),
              "glidefsd logs which disk is full, once (%d line(s))" % len(logged))
        if fl.api_available(d):
            st, _, body = fl.http("GET", d.api_url("/api/exports/full"))
            try:
                j = fl.json.loads(body)
                report["status_when_full"] = {k: j.get(k) for k in (
                    "state", "last_error", "dirty_bytes", "journal_bytes")}
            except ValueError:
                report["status_when_full"] = body[:200].decode(errors="replace")
            fl.log("# GET /api/exports/full: %s" % report["status_when_full"])
        # the failed op never happened as far as the model knows: if it did
        # land, a later read would show a value the model allows anyway
        start = clock.tick()
        try:
            h.flush()
            model.flushed(start)
            check(True, "FLUSH still works on the full disk")
        except nbd.Error as e:
            check(False, "FLUSH on the full disk failed: %s" % e)
        try:
            data = fl.read_export(h, model.size)
            stats.add("bytes_verified", len(data))
            bad = fl.verify_export(model, data, what="disk full: ")
            check(not bad, "every acknowledged write reads back intact on the full disk %s"
                  % (bad[:3] or ""))
        except nbd.Error as e:
            check(False, "reading on the full disk failed: %s" % e)
        try:
            h2 = d.connect("other")
            z = h2.pread(MiB, 0)
            h2.shutdown()
            check(z == bytes(MiB), "a second export on the same daemon is still served")
        except nbd.Error as e:
            check(False, "a second export could not be served on the full disk: %s" % e)
        h.shutdown()

        # kill -9 while full, restart on the full disk
        d.kill()
        d.start()
        bad = fl.verify_all(d, [model], stats, what="restart on the full disk: ")
        check(not bad, "kill -9 and restart while the disk is full: the data is intact %s"
              % (bad[:3] or ""))

        # space returns
        os.unlink(filler)
        h = d.connect("full")
        for i in range(acked, acked + 12):
            off = i * W
            op = model.begin(off // fl.SECTOR, W // fl.SECTOR, 2)
            try:
                h.pwrite(chunk(model, 2, off, W), off)
            except nbd.Error as e:
                check(False, "space is back but the write at %d KiB failed: %s" % (off // 1024, e))
                break
            model.complete(op, clock.tick())
        else:
            check(True, "space is back: the failed write succeeds on retry, and 11 more")
        start = clock.tick()
        h.flush()
        model.flushed(start)
        h.shutdown()
        d.kill()
        d.start()
        bad = fl.verify_all(d, [model], stats, what="after space returned: ")
        check(not bad, "kill -9 after the episode: every flushed write is back %s"
              % (bad[:3] or ""))
        rc = d.stop()
        check(rc == 0, "SIGTERM drained and exited %s" % rc)
        if not failed:
            d2 = fl.Glidefsd(glidefsd, base, "node2", store=d.store, disk_size="32M",
                             size="64M", node_id="verifier-node")
            d2.start()
            bad = fl.verify_all(d2, [model], stats, exact=True, what="empty cache: ")
            check(not bad, "empty cache on another disk: all of it reads back exactly %s"
                  % (bad[:3] or ""))
            d2.stop()
        for x in (d, d2):
            if x and x.sanitizer_reports():
                failed.append("sanitizer report in %s: %s" % (x.log, x.sanitizer_reports()[0]))
    finally:
        for x in (d, d2):
            if x:
                x.close()
        subprocess.run(["umount", cache])
        if os.path.ismount(cache):
            subprocess.run(["umount", "-l", cache])
    summary = {"test": "disk_full", "bytes_verified": stats.get("bytes_verified"),
               "nothing_lost": not failed, "seconds": round(time.monotonic() - t0, 1)}
    summary.update(report)
    fl.log("SUMMARY " + fl.json.dumps(summary, sort_keys=True))
    if failed:
        for f in failed[:30]:
            print("FAIL - " + f)
        if d:
            print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(60)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
