#!/usr/bin/python3
"""test_identity.py - a writer is a cache dir, not a machine, across real
glidefsd processes on one host and one file:// store, with the default
configuration (no node_id: every daemon has the same one).

Checked:
 * two daemons on one cache dir: the second exits non-zero at once, naming
   the cache dir and the pid that holds it;
 * two daemons, two cache dirs: different instance ids (/healthz); the
   second attaches read-only (READ_ONLY, EPERM), promote is refused while the
   lease is live; migration A -> B is byte-exact; a forced promote on A
   fences B: B's client gets EPERM within seconds and a node with an empty
   cache reads the data without B's late writes;
 * the same with C, a copy of A's cache dir taken while A runs and holds the
   lease (so C has A's instance id): C attaches read-only once A has
   heartbeated, migration A -> C works, a forced promote on A fences C.

usage: test_identity.py GLIDEFSD
"""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import Checker, Cluster, MiB, drop, fl, pattern, write_fails  # noqa: E402

SIZE = 16 * MiB


def copied_gen(path):
    """The highest lease generation a writer record names (lib/identity.c:
    two 256-byte slots, the current slot at 48, its generation at +48)."""
    with open(path, "rb") as f:
        b = f.read()
    gens = [int.from_bytes(b[o + 96:o + 104], "little")
            for o in (0, 256) if len(b) >= o + 104 and b[o:o + 8] == b"GFSWREC1"]
    if not gens:
        raise RuntimeError("no writer record in " + path)
    return max(gens)


def main():
    fl.need_libnbd()
    import nbd
    exe = os.path.abspath(sys.argv[1])
    c = Checker()
    cl = Cluster(exe, "identity")
    api = cl.api
    model = bytearray(SIZE)

    def write(h, seed, off, n=64 * 1024):
        data = pattern(seed, n)
        h.pwrite(data, off)
        model[off:off + n] = data

    def readers_see_model(what):
        """A node with an empty cache reads exactly the model."""
        r = cl.node("reader-%d" % len(cl.nodes))
        h = r.connect("vm1")
        got = h.pread(SIZE, 0)
        c.ok(got == bytes(model), "%s: a node with an empty cache reads the model" % what)
        drop(h)
        r.kill()

    def migrate(src, dst, src_handles, what):
        """drain on src, its clients leave, promote on dst: the new client."""
        c.eq(api(src, "POST", "/api/exports/vm1/drain")[0], 200, "%s: drain on the source" % what)
        for h in src_handles:
            drop(h)
        fl.wait_for(lambda: api(dst, "POST", "/api/exports/vm1/promote")[0] == 200, 15,
                    "%s: promote on the destination" % what)
        h = dst.connect("vm1")
        c.eq(h.is_read_only(), 0, "%s: the destination is read-write" % what)
        c.ok(h.pread(SIZE, 0) == bytes(model), "%s: byte-exact after migration" % what)
        return h

    def fence(writer, hw, taker, what):
        """a forced promote on taker: writer's client is refused within seconds."""
        st, body = api(taker, "POST", "/api/exports/vm1/promote?force=true")
        c.eq(st, 200, "%s: forced promote (%s)" % (what, body.get("error", "")))
        t0 = time.monotonic()
        fl.wait_for(lambda: write_fails(hw, pattern(99, 4096), 0), 15,
                    "%s: the deposed writer's client to get EPERM" % what)
        c.ok(True, "%s: the deposed writer's writes fail after %.1f s" % (
            what, time.monotonic() - t0))

    try:
        A = cl.node("a")
        # one cache dir, one daemon
        X = cl.node("x", cache=A.cache, start=False)
        X.start(wait=False)
        try:
            rc = X.proc.wait(30)
        except Exception:  # noqa: BLE001
            rc = None
        c.ok(rc not in (None, 0), "a second glidefsd on the same cache dir exits (%s)" % rc)
        c.ok("is in use by another glidefsd (pid %d)" % A.proc.pid in X.log_text(),
             "it says the cache dir is in use, by which pid")
        c.eq(api(A, "GET", "/healthz")[0], 200, "the first one serves on")

        B = cl.node("b")
        ha_, hb_ = api(A, "GET", "/healthz")[1], api(B, "GET", "/healthz")[1]
        c.eq(ha_.get("node_id"), hb_.get("node_id"), "default config: one node id for both")
        c.ok(len(ha_.get("instance", "")) == 32 and ha_["instance"] != hb_.get("instance"),
             "two cache dirs: two instance ids")
        c.eq(ha_.get("store_conditional_writes"), "ok", "the file:// store honours conditions")

        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "A: read-write")
        for i in range(8):
            write(ha, 100 + i, i * 2 * MiB)
        ha.flush()
        hb = B.connect("vm1")
        c.eq(hb.is_read_only(), 1, "B (same node id, other cache dir): READ_ONLY")
        c.ok(write_fails(hb, b"x" * 512, 0), "B: a write is refused (EPERM)")
        st, body = api(B, "POST", "/api/exports/vm1/promote")
        c.eq(st, 409, "B: promote refused while A's lease is live")
        st, body = api(B, "GET", "/api/exports/vm1")
        c.eq(body.get("lease_instance"), ha_["instance"], "B names A's instance as the holder")

        hb = migrate(A, B, [ha], "A -> B")
        write(hb, 200, 1 * MiB)
        hb.flush()
        c.eq(api(B, "POST", "/api/exports/vm1/drain")[0], 200, "drain on B")
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 1, "A reconnects read-only")
        fence(B, hb, A, "A forces")
        readers_see_model("after the force")
        drop(ha)
        drop(hb)

        # C: a copy of A's cache dir, taken while A runs and holds the lease
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "A writes again")
        write(ha, 300, 3 * MiB)
        ha.flush()
        C = cl.node("c", copy_of=A.cache, start=False)
        # The copy may hold the intent of a lease write A had not yet sent
        # (the record goes first): C is told apart once the lease carries a
        # generation past every one the copied record names.
        copied = copied_gen(os.path.join(C.cache, "vm1", "writer"))
        fl.wait_for(lambda: cl.lease("vm1")["gen"] > copied, 10,
                    "A's heartbeat past the copied record (gen %d)" % copied)
        cl.start(C)
        hc_ = api(C, "GET", "/healthz")[1]
        c.eq(hc_.get("instance"), ha_["instance"], "C has A's instance id (a copy)")
        hc = C.connect("vm1")
        c.eq(hc.is_read_only(), 1, "C (a copy of A's cache dir): READ_ONLY")
        c.ok(write_fails(hc, b"y" * 512, 0), "C: a write is refused (EPERM)")
        c.eq(api(C, "POST", "/api/exports/vm1/promote")[0], 409,
             "C: promote refused while A's lease is live")
        write(ha, 301, 5 * MiB)
        ha.flush()
        c.eq(api(A, "GET", "/api/exports/vm1")[1].get("fenced"), False, "A is not fenced by it")
        hc = migrate(A, C, [ha], "A -> C")
        write(hc, 400, 7 * MiB)
        hc.flush()
        c.eq(api(C, "POST", "/api/exports/vm1/drain")[0], 200, "drain on C")
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 1, "A reconnects read-only")
        fence(C, hc, A, "A forces, C deposed")
        readers_see_model("after fencing the copy")
        drop(ha)
        drop(hc)
    finally:
        san = cl.close()
    for name, rep in san:
        c.ok(False, "sanitizer report in %s's log: %s" % (name, rep))
    c.done()


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
