#!/usr/bin/python3
"""test_sigterm.py - glidefsd's shutdown: SIGTERM with requests in flight
finishes them (later ones get ESHUTDOWN), drains every export with progress
in the log and exits 0; a new daemon on an empty cache directory reads it all
back from the store. With the store unavailable the drain cannot finish: the
daemon exits non-zero after servers.shutdown_timeout_s saying so, or at once
on a second signal; either way the flushed data comes back on the next start.

usage: test_sigterm.py GLIDEFSD
"""
import glob
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need_libnbd()
import nbd  # noqa: E402

t = nbdtest.Checker()
KiB = 1024
MiB = 1024 * KiB
ESHUTDOWN = 108


def pattern(n, seed):
    return bytes((i * 13 + seed) & 0xFF for i in range(256)) * (n // 256)


def test_drain_and_wake(base):
    store = os.path.join(base, "store")
    # A long sync delay: everything is still dirty when SIGTERM arrives.
    d = nbdtest.Daemon(base=os.path.join(base, "a"), store=store, sync_delay_ms=600000)
    with d:
        d.start()
        h = d.connect("vm")
        for i in range(16):
            h.pwrite(pattern(256 * KiB, i), i * MiB)
        h.flush()
        h.shutdown()
        # Requests in flight when the signal arrives: all of them are sent
        # before the signal, and every one gets a reply, OK or ESHUTDOWN.
        s, size, _ = nbdtest.raw_go(d.sock, "vm")
        n = 256
        bufs = [pattern(64 * KiB, 100 + i) for i in range(n)]
        stream = b"".join(nbdtest.raw_request(1, 32 * MiB + i * 64 * KiB, 64 * KiB, i,
                                               payload=bufs[i]) for i in range(n))
        s.sendall(stream)
        d.signal(signal.SIGTERM)
        replies = {}
        try:
            while len(replies) < n:
                err, cookie, _ = nbdtest.raw_simple_reply(s)
                replies[cookie] = err
        except (EOFError, OSError) as e:
            print(f"connection ended: {e}")
        s.close()
        done_ok = [i for i, e in replies.items() if e == 0]
        bad = [e for e in replies.values() if e not in (0, ESHUTDOWN)]
        t.ok(len(replies) == n and not bad,
             f"every in-flight write got a reply: {len(done_ok)} ok, "
             f"{len(replies) - len(done_ok) - len(bad)} ESHUTDOWN, {len(bad)} other, "
             f"{n - len(replies)} missing")
        t.eq(d.wait(120), 0, "SIGTERM: exit status 0")
        log = d.log_text()
        t.ok("draining 1 export" in log and "export vm: drained" in log, "drain progress logged")
        t.ok("shutdown complete" in log, "shutdown complete logged")

    # A new daemon, empty cache, same store.
    d2 = nbdtest.Daemon(base=os.path.join(base, "b"), store=store)
    with d2:
        d2.start()
        h = d2.connect("vm")
        t.ok(all(h.pread(256 * KiB, i * MiB) == pattern(256 * KiB, i) for i in range(16)),
             "flushed data reads back on an empty cache")
        t.ok(all(h.pread(64 * KiB, 32 * MiB + i * 64 * KiB) == bufs[i] for i in done_ok),
             "every acknowledged in-flight write reads back")
        h.shutdown()
        t.eq(d2.stop(), 0, "second daemon exits 0")


def test_store_down(base, second_signal):
    store = os.path.join(base, "store")
    cache = os.path.join(base, "cache")
    d = nbdtest.Daemon(base=os.path.join(base, "a"), store=store, cache=cache,
                       sync_delay_ms=600000, shutdown_timeout_s=3 if not second_signal else 600)
    vol = os.path.join(store, "nbd", "vm")
    blocked = []

    def block_store():
        # Files where the volume's object directories belong: every upload
        # fails (and is retried) while reads of the journal keep working.
        # The daemon may be making such a directory right then (an upload
        # of its own): move that aside too and try again, a bounded number
        # of times.
        for sub in ("seg", "manifest"):
            p = os.path.join(vol, sub)
            for attempt in range(100):
                try:
                    if os.path.isdir(p):
                        os.rename(p, "%s.away%d" % (p, attempt))
                    with open(p, "x") as f:
                        f.write("blocked by the test\n")
                    break
                except OSError as e:  # a directory or file there again
                    last = e
            else:
                raise RuntimeError("cannot block %s: %s" % (p, last))
            blocked.append(p)

    def unblock_store():
        for p in blocked:
            os.unlink(p)
            aside = sorted(glob.glob(glob.escape(p) + ".away*"), key=lambda a: (len(a), a))
            if aside:
                os.rename(aside[0], p)
                for a in aside[1:]:  # objects in a directory made again meanwhile
                    for n in os.listdir(a):
                        os.rename(os.path.join(a, n), os.path.join(p, n))
                    os.rmdir(a)

    try:
        with d:
            d.start()
            h = d.connect("vm")
            h.pwrite(pattern(MiB, 7), 0)
            h.flush()
            h.shutdown()
            block_store()
            start = time.monotonic()
            d.signal(signal.SIGTERM)
            if second_signal:
                nbdtest.wait_for(lambda: "draining" in d.log_text(), 20, "drain to start")
                d.signal(signal.SIGTERM)
                rc = d.wait(20)
                t.ok(rc != 0, f"second signal: exits at once, non-zero ({rc})")
                t.ok(time.monotonic() - start < 15, "second signal: did not wait for the drain")
            else:
                rc = d.wait(60)
                t.ok(rc != 0, f"drain timeout: non-zero exit ({rc})")
                t.ok("drain did not finish" in d.log_text(), "drain timeout: said so")
    finally:
        unblock_store()
    # Same cache (the journal), store back: the data is there.
    d2 = nbdtest.Daemon(base=os.path.join(base, "b"), store=store, cache=cache)
    with d2:
        d2.start()
        h = d2.connect("vm")
        t.eq(h.pread(MiB, 0) == pattern(MiB, 7), True,
             "flushed data survives the interrupted drain")
        h.shutdown()
        t.eq(d2.stop(), 0, "restarted daemon drains and exits 0")


def main():
    import tempfile
    base = tempfile.mkdtemp(prefix="glidefsd-sigterm-")
    try:
        test_drain_and_wake(os.path.join(base, "1"))
        test_store_down(os.path.join(base, "2"), second_signal=False)
        test_store_down(os.path.join(base, "3"), second_signal=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
