#!/usr/bin/python3
"""test_handover.py - a lease hand-over that keeps failing (issue #20): when
the last client of an export leaves, glidefsd gives the write lease back
(daemon/exports.c). If that lease PUT is refused again and again (here: the
proxy answers every PUT of the export's lease 412 PreconditionFailed, as
Ceph RGW did for the quoted If-Match), the hand-over must be retried with
backoff and a bound - it was retried at once, forever (752 lease PUTs in
33 s) - and it must never block:
 1. the lease PUTs after the last client left: a handful, not hundreds;
 2. a new NBD client of that export completes its handshake within seconds,
    gets a writable export and its writes read back;
 3. DELETE /api/exports/NAME?purge=true&force=true answers within seconds;
 4. on another daemon, a hand-over whose lease PUT stalls (no answer, again
    and again): a client arriving meanwhile is answered (served or refused)
    within seconds, and SIGTERM makes glidefsd exit within
    servers.shutdown_timeout_s (plus a margin), its log saying what it left.
usage: test_handover.py GLIDEFSD --s3-cache DIR   (skips, 77, without S3)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

SHUTDOWN_S = 8


def lease_puts(proxy, name, since=0, kind="412"):
    """Faults of kind the proxy injected on PUTs of name's lease, after line since."""
    n = 0
    try:
        with open(proxy.log_path, errors="replace") as f:
            lines = f.readlines()[since:]
    except OSError:
        return 0
    for ln in lines:
        if re.search(r"fault #\d+ \(seed \d+\): %s on PUT \S*/nbd/%s/lease" % (kind, name), ln):
            n += 1
    return n


def log_lines(proxy):
    try:
        with open(proxy.log_path, errors="replace") as f:
            return len(f.readlines())
    except OSError:
        return 0


def in_thread(fn, timeout):
    """(done, result or exception) of fn() run in a daemon thread for at most timeout s."""
    out = {}

    def run():
        try:
            out["v"] = fn()
        except Exception as e:  # reported by the caller
            out["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return False, None
    return True, out.get("e", out.get("v"))


def main():
    a = fl.s3_only_test(timeout=300)
    if a is None:
        return fl.SKIP
    import nbd
    base = tempfile.mkdtemp(prefix="glidefs-handover-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    proxy = fl.Proxy()
    d = fl.Glidefsd(os.path.abspath(a.glidefsd), base, "node1", size="8M", api=True,
                    shutdown_timeout_s=SHUTDOWN_S)
    try:
        d.start()
        # what the start-up probe found (Ceph RGW: honoured, with a bare If-Match)
        st, _, body = fl.http("GET", d.api_url("/healthz"))
        hz = json.loads(body) if st == 200 else {}
        rgw = os.environ.get("S3_STORE") == "rgw"
        notes = " ".join(hz.get("store_notes", []))
        check(hz.get("store_conditional_writes") == "ok" and
              (("without its quotes" in notes) if rgw else not notes),
              "/healthz: conditional writes %r, notes %r" % (
                  hz.get("store_conditional_writes"), hz.get("store_notes")))

        def client_cycle(name):
            h = d.connect(name)
            h.pwrite(b"a" * 4096, 0)
            h.flush()
            h.shutdown()

        # a first hand-over that works, then a client takes the lease back
        client_cycle("ho")
        fl.wait_for(lambda: "ho: released the write lease" in d.log_text(), 30,
                    "the first hand-over")
        h = d.connect("ho")
        h.pwrite(b"b" * 4096, 4096)
        h.flush()
        fl.wait_for(lambda: d.log_text().count("ho: holding the write lease") >= 2, 30,
                    "the lease taken back")
        # from now on every PUT of the lease is refused
        proxy._get("/__proxy__/faults", rate=1.0, kinds="412", seed=3, match="/nbd/ho/lease",
                   method="PUT")
        mark = log_lines(proxy)
        h.shutdown()  # the last client leaves: the hand-over starts failing
        fl.wait_for(lambda: lease_puts(proxy, "ho", mark) >= 1, 30, "a refused hand-over")
        t0 = time.monotonic()
        time.sleep(4)  # the count over a fixed window is the measurement
        n = lease_puts(proxy, "ho", mark)
        check(n <= 20, "a failing hand-over backs off: %d lease PUTs in the %.0f s after the "
              "last client left (was hundreds)" % (n, time.monotonic() - t0 + 0.0))

        # 2. a new client is not held up by it
        def new_client():
            c = d.connect("ho")
            ro = c.is_read_only()
            c.pwrite(b"c" * 4096, 8192)
            c.flush()
            back = c.pread(4096, 8192)
            c.shutdown()
            return ro, back
        t1 = time.monotonic()
        done, res = in_thread(new_client, 15)
        dt = time.monotonic() - t1
        ok = done and not isinstance(res, Exception) and res[0] is False and \
            res[1] == b"c" * 4096
        check(ok, "a new client of the export connects (%.1f s), writes and reads back%s"
              % (dt, "" if ok else ": %r" % (
                  (res if isinstance(res, Exception) else (res[0], bytes(res[1][:8])))
                  if done else "still in the handshake after 15 s")))

        # 3. delete --purge answers
        t2 = time.monotonic()
        done, res = in_thread(lambda: fl.http("DELETE", d.api_url(
            "/api/exports/ho?purge=true&force=true&timeout_s=5"), timeout=60), 30)
        dt = time.monotonic() - t2
        check(done and not isinstance(res, Exception) and res[0] in (200, 409, 502, 504),
              "DELETE ?purge=true&force=true answers within %.1f s: %s" % (
                  dt, ("HTTP %d %s" % (res[0], res[2][:200])) if done and
                  not isinstance(res, Exception) else res if done else "no answer after 30 s"))

        reports = d.sanitizer_reports()
        check(not reports, "no sanitizer reports %s" % reports[:3])
        t4 = time.monotonic()
        try:
            rc = d.stop(timeout=SHUTDOWN_S + 20)
        except TimeoutError:
            rc = None
        check(rc is not None, "SIGTERM after all that: glidefsd exits in %.1f s with status %s"
              % (time.monotonic() - t4, rc))
        d.close()

        # 4. a hand-over stuck on a store that does not answer, a client
        # arriving meanwhile, SIGTERM (a daemon of its own: in the old code
        # the first failing export kept the housekeeper for itself)
        d = fl.Glidefsd(os.path.abspath(a.glidefsd), base, "node2", size="8M", api=False,
                        shutdown_timeout_s=SHUTDOWN_S, prefix="handover2-%d" % os.getpid())
        d.start()
        client_cycle("ho2")
        fl.wait_for(lambda: "ho2: released the write lease" in d.log_text(), 30,
                    "ho2's first hand-over")
        h = d.connect("ho2")
        h.pwrite(b"d" * 4096, 0)
        h.flush()
        fl.wait_for(lambda: d.log_text().count("ho2: holding the write lease") >= 2, 30,
                    "ho2's lease taken back")
        proxy._get("/__proxy__/faults", rate=1.0, kinds="stall", seed=4, stall_ms=30000,
                   match="/nbd/ho2/lease", method="PUT")
        mark = log_lines(proxy)
        h.shutdown()
        fl.wait_for(lambda: lease_puts(proxy, "ho2", mark, kind="stall") >= 1, 30,
                    "ho2's hand-over stalled")
        t5 = time.monotonic()
        done, res = in_thread(lambda: d.connect("ho2"), 20)
        dt = time.monotonic() - t5
        check(done and dt <= 9, "a client arriving during a stalled hand-over is answered in "
              "%.1f s: %s" % (dt, ("connected" if not isinstance(res, Exception) else
                                    "refused (%s)" % res) if done else "no answer in 20 s"))
        t3 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(SHUTDOWN_S + 20)
        except subprocess.TimeoutExpired:
            rc = None
        dt = time.monotonic() - t3
        check(rc is not None and dt <= SHUTDOWN_S + 5,
              "SIGTERM: glidefsd exits in %.1f s (servers.shutdown_timeout_s %d) with status %s"
              % (dt, SHUTDOWN_S, rc))
        text = d.log_text()
        check("shutdown complete" in text or "left as it is" in text,
              "its log says how the shutdown ended: %r" % [
                  ln.split(": ", 2)[-1] for ln in text.splitlines()[-4:]])
        reports = d.sanitizer_reports()
        check(not reports, "no sanitizer reports %s" % reports[:3])
    except Exception as e:
        check(False, "unexpected: %r" % e)
    finally:
        try:
            proxy._get("/__proxy__/faults", rate=0, match="")
        except Exception:
            pass
        d.close()
    if failed:
        print("(kept %s)" % base, flush=True)
        print("log tail:\n" + d.log_tail(40), flush=True)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
