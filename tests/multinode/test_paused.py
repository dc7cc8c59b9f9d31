#!/usr/bin/python3
"""test_paused.py - a frozen writer stays fenced.

Node A writes with a client connected and is then frozen (SIGSTOP: a VM
pause, a long stall) past its lease; node B promotes without force once
the lease has expired, writes and drains; A thaws and its client goes on
writing and flushing. Checked: A's writes fail (EPERM) within seconds of
the thaw, A reports itself fenced, and a node with an empty cache reads
B's data and A's data from before the freeze, and none of what A accepted
after it thawed.

Runs on the file:// store, or on s3:// under tests/s3/s3env.py.

usage: test_paused.py GLIDEFSD
"""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import Checker, Cluster, MiB, drop, fl, pattern, write_fails  # noqa: E402

SIZE = 16 * MiB
LEASE_MS = 2000


def main():
    fl.need_libnbd()
    exe = os.path.abspath(sys.argv[1])
    c = Checker()
    cl = Cluster(exe, "paused")
    api = cl.api
    model = bytearray(SIZE)
    try:
        A = cl.node("a", lease_ms=LEASE_MS)
        B = cl.node("b", lease_ms=LEASE_MS)
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "A: read-write")
        for i in range(4):
            data = pattern(i, 256 * 1024)
            ha.pwrite(data, i * MiB)
            model[i * MiB:i * MiB + len(data)] = data
        ha.flush()
        c.eq(api(A, "POST", "/api/exports/vm1/drain")[0], 200, "A drains")
        hb = B.connect("vm1")
        c.eq(hb.is_read_only(), 1, "B attaches read-only")

        A.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        st = [0, {}]

        def promoted():
            st[:] = api(B, "POST", "/api/exports/vm1/promote")
            return st[0] == 200
        fl.wait_for(promoted, 30, "B's promote (without force) once A's lease expired",
                    interval=0.1)
        waited = time.monotonic() - t0
        c.ok(waited * 1000 >= LEASE_MS * 0.9,
             "B promotes without force only once the lease expired (%.1f s)" % waited)
        drop(hb)
        hb = B.connect("vm1")
        c.eq(hb.is_read_only(), 0, "B: read-write")
        for i in range(4):
            data = pattern(100 + i, 128 * 1024)
            off = i * MiB + 128 * 1024  # over half of each of A's writes
            hb.pwrite(data, off)
            model[off:off + len(data)] = data
        hb.flush()
        c.eq(api(B, "POST", "/api/exports/vm1/drain")[0], 200, "B drains")

        A.proc.send_signal(signal.SIGCONT)
        t1 = time.monotonic()
        late = [0]

        def refused():
            off = (8 + late[0] % 8) * MiB
            if write_fails(ha, pattern(900 + late[0], 64 * 1024), off):
                return True
            late[0] += 1
            # and it tries to upload what it took (a deposed writer's late segment)
            st = api(A, "POST", "/api/exports/vm1/drain", timeout=10)[0]
            c.ok(st in (200, 409, 502, 504), "A's drain answers after the thaw (%d)" % st)
            return False
        fl.wait_for(refused, 10, "A's client to get EPERM after the thaw", interval=0.05)
        c.ok(True, "A's writes fail %.2f s after the thaw (%d accepted before)" % (
            time.monotonic() - t1, late[0]))
        st, body = api(A, "GET", "/api/exports/vm1")
        c.ok(st == 200 and body.get("fenced") is True and body.get("state") == "fenced",
             "A reports itself fenced (%s)" % body.get("state"))

        D = cl.node("d")
        hd = D.connect("vm1")
        c.ok(hd.pread(SIZE, 0) == bytes(model),
             "a node with an empty cache reads B's data, none of A's late writes")
        drop(hd)
        drop(hb)
        drop(ha)
    finally:
        san = cl.close()
    for name, rep in san:
        c.ok(False, "sanitizer report in %s's log: %s" % (name, rep))
    c.done()


if __name__ == "__main__":
    main()
