#!/usr/bin/python3
"""test_handback.py — the lease hand-back race: after the last client of an
export leaves (the node gives the write lease back), several clients
connecting at once must all get a read-write export — none may see the lease
half taken back. Repeated, with a probe connection before each burst (what
fio and qemu do: open, read the size, close, then open the real ones).

usage: test_handback.py GLIDEFSD
"""
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nbd"))
import nbdtest  # noqa: E402
from nbdtest import Checker, Daemon  # noqa: E402


def main():
    nbdtest.need_libnbd()
    c = Checker()
    with Daemon(size="16M") as d:
        d.start()
        for rnd in range(15):
            probe = d.connect("vm")
            probe.shutdown()
            ro = []
            handles = []

            def attach():
                h = d.connect("vm")
                handles.append(h)
                ro.append(h.is_read_only())
                h.pwrite(b"\x5a" * 4096, 4096 * len(ro)) if not h.is_read_only() else None

            ts = [threading.Thread(target=attach) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            c.eq(sorted(ro), [False] * 4, f"burst {rnd}: every client read-write")
            for h in handles:
                h.shutdown()
    c.done()


if __name__ == "__main__":
    main()
