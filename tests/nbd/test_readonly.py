#!/usr/bin/python3
"""test_readonly.py - a read-only export: two glidefsd nodes share one store;
the first holds the write lease of "shared", so the second serves it
read-only. There: READ_ONLY is advertised (and TRIM/WRITE_ZEROES are not),
writes, trims and zeroes fail with EPERM and change nothing, reads, FLUSH and
CACHE work. Once both nodes' clients leave, the idle exports are drained and
closed (releasing the lease), and the second node then gets it read-write.

usage: test_readonly.py GLIDEFSD
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need_libnbd()
import nbd  # noqa: E402

EPERM = 1
MiB = 1024 * 1024
t = nbdtest.Checker()


def main():
    base = tempfile.mkdtemp(prefix="glidefsd-ro-")
    store = os.path.join(base, "store")
    try:
        with nbdtest.Daemon(base=os.path.join(base, "a"), store=store, node_id="node-a") as a, \
                nbdtest.Daemon(base=os.path.join(base, "b"), store=store,
                               node_id="node-b") as b:
            a.start()
            b.start()
            ha = a.connect("shared")
            data = bytes(range(256)) * (MiB // 256)
            ha.pwrite(data, 0)
            ha.flush()
            # The write lease stays with node A while its client is connected.
            hb = b.connect("shared")
            if not hb.is_read_only():
                print("SKIP: the library let a second node write (no write lease yet)")
                hb.shutdown()
                ha.shutdown()
                sys.exit(nbdtest.SKIP)
            t.ok(hb.is_read_only(), "second node: READ_ONLY advertised")
            t.ok(not hb.can_trim() and not hb.can_zero() and not hb.can_fast_zero(),
                 "second node: no TRIM/WRITE_ZEROES advertised")
            t.ok(hb.can_flush() and hb.can_multi_conn() and hb.can_cache(),
                 "second node: FLUSH, CACHE, MULTI_CONN advertised")
            before = hb.pread(MiB, 0)
            t.raises_errno(lambda: hb.pwrite(b"\xff" * 4096, 0), EPERM, "write: EPERM")
            t.raises_errno(lambda: hb.pwrite(b"\xff" * 4096, 0, nbd.CMD_FLAG_FUA), EPERM,
                           "write FUA: EPERM")
            t.raises_errno(lambda: hb.trim(4096, 0), EPERM, "trim: EPERM")
            t.raises_errno(lambda: hb.zero(4096, 0), EPERM, "zero: EPERM")
            t.raises_errno(lambda: hb.zero(4096, 0, nbd.CMD_FLAG_NO_HOLE), EPERM,
                           "zero NO_HOLE: EPERM")
            hb.flush()
            hb.cache(MiB, 0)
            t.ok(True, "FLUSH and CACHE work on a read-only export")
            t.eq(hb.pread(MiB, 0), before, "refused writes changed nothing")
            t.eq(ha.pread(MiB, 0), data, "the writer still has its data")
            hb.shutdown()
            ha.shutdown()
            # Lease hand-off: idle exports are drained and closed, which
            # releases the lease; the other node then gets it read-write.
            for d in (a, b):
                nbdtest.wait_for(lambda: "export shared: idle, drained and closed" in d.log_text(),
                                 30, "idle export to be closed")
            t.ok(True, "idle exports drained and closed on both nodes")
            hb = b.connect("shared")
            t.ok(not hb.is_read_only(), "after the hand-off the second node writes")
            t.eq(hb.pread(MiB, 0), data, "and reads what the first node wrote")
            hb.pwrite(b"\x5a" * 4096, 0, nbd.CMD_FLAG_FUA)
            hb.shutdown()
            t.eq(b.stop(), 0, "reader node exits 0")
            t.eq(a.stop(), 0, "writer node exits 0")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
