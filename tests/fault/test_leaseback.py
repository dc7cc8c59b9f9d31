#!/usr/bin/python3
"""test_leaseback.py - clients coming back to an export whose write lease
the node just handed back (the last client left with nothing dirty).

Found by the crash loop (several connections per export connecting at once)
and the cache-pressure test (a client connecting while S3 is down):

 1. several clients connect at the same moment: every one of them must get
    a writable export (no other node holds the lease). Today the first one
    re-takes the lease (glidefs_promote) outside the registry lock after
    clearing the hand-back mark, and the others do not wait for it: they
    negotiate while the volume is still read-only, are told
    NBD_FLAG_READ_ONLY, and stay read-only for their whole session
    (daemon/exports.c, gd_export_acquire_ex, the "retake" branch);
 2. (under s3env) a client that comes back while S3 is down: the re-take
    cannot reach the store, and the client silently gets a read-only disk
    for its whole session (the log says "read-only (another node writes)",
    which is not what happened). Expected: a writable export whose writes
    wait for S3 like any other (promise 6), or a refused connection with a
    clear reason - not a silently read-only disk.

usage: test_leaseback.py GLIDEFSD [--s3-cache DIR]
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("--s3-cache", default=None)
    a = ap.parse_args()
    fl.need_libnbd()
    import nbd
    if a.s3_cache:
        fl.run_under_s3env(a.s3_cache, timeout=300)
    glidefsd = os.path.abspath(a.glidefsd)
    base = tempfile.mkdtemp(prefix="glidefs-leaseback-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    d = fl.Glidefsd(glidefsd, base, "node1", size="8M", api=True)
    try:
        d.start()
        # 1. simultaneous returns
        ro_total = 0
        tries = 10
        for i in range(tries):
            name = "back%d" % i
            h = d.connect(name)
            h.pwrite(b"x" * 4096, 0)
            h.flush()
            h.shutdown()  # last client gone, nothing dirty: lease handed back
            fl.wait_for(lambda: "%s: released the write lease" % name in d.log_text(), 20,
                        "the lease hand-back of " + name)
            barrier = threading.Barrier(4)
            ro = []

            def client():
                barrier.wait()
                c = d.connect(name)
                ro.append(c.is_read_only())
                try:
                    c.pwrite(b"y" * 512, 512 * (1 + len(ro)))
                except nbd.Error:
                    pass
                c.shutdown()
            ts = [threading.Thread(target=client) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            ro_total += sum(1 for r in ro if r)
        check(ro_total == 0, "4 clients returning at once after a lease hand-back all get a "
              "writable export (%d of %d connections were read-only)" % (ro_total, 4 * tries))

        # 2. returning while S3 is down
        if fl.s3_active():
            proxy = fl.Proxy()
            h = d.connect("outage")
            h.pwrite(b"z" * 4096, 0)
            h.flush()
            h.shutdown()
            fl.wait_for(lambda: "outage: released the write lease" in d.log_text(), 30,
                        "the lease hand-back")
            proxy.faults(rate=1.0, kinds="503", seed=1)
            try:
                c = d.connect("outage")
                ro = c.is_read_only()
                check(not ro, "a client returning while S3 is down gets a writable export, "
                      "not a silently read-only one (read-only: %s; log: %s)" % (
                          ro, [ln.split(": ", 2)[-1] for ln in d.log_text().splitlines()
                               if "client back" in ln][-1:]))
                c.shutdown()
            except nbd.Error as e:
                check(True, "a client returning while S3 is down is refused: %s" % e)
                check(any("outage: client refused" in ln for ln in d.log_text().splitlines()),
                      "glidefsd logs why it refused the client")
                qio = shutil.which("qemu-io", path="/usr/bin")
                if qio:
                    import subprocess
                    r = subprocess.run([qio, "-f", "raw", "-c", "read 0 512",
                                        "nbd+unix:///outage?socket=" + d.sock],
                                       capture_output=True, text=True, timeout=60)
                    check(r.returncode != 0 and "cannot be opened here" in r.stdout + r.stderr,
                          "the client is told why (qemu-io: %s)" % (
                              (r.stdout + r.stderr).strip().splitlines()[-1:]))
            proxy.off()
        san = d.sanitizer_reports()
        if san:
            check(False, "sanitizer report: %s" % san[0])
        d.stop()
    finally:
        d.close()
    if failed:
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
