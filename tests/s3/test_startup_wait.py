#!/usr/bin/python3
"""test_startup_wait.py - glidefsd's start-up store check against a store that
does not answer yet (storage.startup_wait_s, daemon/main.c wait_for_store).

 1. the proxy fails the first 8 requests (503): with max_retries: 2 each
    check tries a request three times, so the first two checks fail; glidefsd says it is waiting,
    checks again, starts, and a write reads back through NBD (before, the
    first failed check ended it: the azure_faults flake);
 2. a store that never answers (a closed port) and startup_wait_s: 1:
    glidefsd exits 1 after waiting, with a line that says it waited;
 3. the same with startup_wait_s: 600 and SIGTERM during the wait: it exits
    1 at once, saying why;
 4. refused credentials with startup_wait_s: 600: exits 1 without waiting
    (no retry mends a wrong key).
usage: test_startup_wait.py GLIDEFSD --s3-cache DIR   (skips, 77, without S3)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fault"))
import faultlib as fl  # noqa: E402

WAITING = "does not answer yet"


def main():
    a = fl.s3_only_test(timeout=240)
    if a is None:
        return fl.SKIP
    base = tempfile.mkdtemp(prefix="glidefs-startwait-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    prefix = "startwait-%d" % os.getpid()
    daemons = []

    def daemon(name, storage):
        d = fl.Glidefsd(os.path.abspath(a.glidefsd), base, name, prefix=prefix, size="8M",
                        storage_extra=dict(storage))
        daemons.append(d)
        return d

    def exit_status(d, hang_guard):
        try:
            return d.proc.wait(timeout=hang_guard)
        except subprocess.TimeoutExpired:
            return None

    proxy = fl.Proxy()
    try:
        # 1. a store that fails its first answers
        proxy._get("/__proxy__/faults", next=",".join(["503"] * 8))
        d = daemon("late", {"startup_wait_s": 120, "max_retries": 2})
        d.start(wait=False)
        try:
            d.wait_ready(timeout=120)
            ready = True
        except Exception as e:  # exited: the old behaviour
            print("  " + str(e)[:600], flush=True)
            ready = False
        check(ready, "a store that answers after 8 failures: glidefsd starts")
        waits = d.log_text().count(WAITING)
        check(waits >= 2, "it said it was waiting, once per failed check (%d lines)" % waits)
        if waits < 2:
            print(d.log_tail(), flush=True)
        if ready:
            h = d.connect("vm")
            h.pwrite(b"\x5a" * 65536, 0)
            h.flush()
            check(h.pread(65536, 0) == b"\x5a" * 65536, "and serves: a write reads back")
            h.shutdown()
            check(d.stop() == 0, "drains and exits 0")
        proxy.off()

        # 2. never answers, a short wait
        closed = "http://127.0.0.1:%d" % fl.free_port()
        d = daemon("never", {"endpoint": closed, "startup_wait_s": 1, "max_retries": 0})
        d.start(wait=False)
        rc = exit_status(d, 60)
        text = d.log_text()
        check(rc == 1, "a store that never answers: exits 1 after startup_wait_s (status %s)"
              % rc)
        said = WAITING in text and "Couldn't connect" in text
        check(said, "its log says it waited and what failed")
        if not said:
            print(text[-3000:], flush=True)

        # 3. SIGTERM while waiting
        d = daemon("term", {"endpoint": closed, "startup_wait_s": 600, "max_retries": 0})
        d.start(wait=False)
        fl.wait_for(lambda: WAITING in d.log_text() or d.proc.poll() is not None, 60,
                    "glidefsd to wait for the store")
        d.proc.send_signal(signal.SIGTERM)
        rc = exit_status(d, 30)
        check(rc == 1, "SIGTERM during the wait: exits 1 at once (status %s)" % rc)
        check("received while waiting for the store" in d.log_text(), "and says why")

        # 4. refused credentials: no wait
        d = daemon("badkey", {"access_key_id": "NOSUCHKEY", "startup_wait_s": 600})
        d.start(wait=False)
        rc = exit_status(d, 60)
        text = d.log_text()
        check(rc == 1, "refused credentials: exits 1 (status %s)" % rc)
        check(WAITING not in text, "without waiting: no retry mends a wrong key")
    finally:
        proxy.off()
        for d in daemons:
            d.kill()
            d.close()
        shutil.rmtree(base, ignore_errors=True)
    print("%d failed" % len(failed) if failed else "all passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
