#!/usr/bin/python3
"""test_migration.py — one writer per volume across real glidefsd processes.

Several glidefsd processes on one machine (separate node ids, cache dirs and
API ports) share one store (file://, or s3:// when run under
tests/s3/s3env.py, or azure:// under tests/azure/azenv.py). Checked: a
second node attaches read-only (READ_ONLY
flag, writes get EPERM) and follows the writer's data; promote is refused
while the lease is live; the live-migration sequence (drain on A, A's client
leaves, promote on B, B's first write) is byte-exact, and its downtime is
measured; a forced promote fences the old writer, whose late writes nobody
ever reads; a killed owner's lease expires, the other node promotes, and the
old owner comes back fenced with its unsynced data kept aside; scale to zero
(drain + DELETE leaves no file of the export in the cache) and wake on the
other node.

usage: test_migration.py GLIDEFSD [--runs N]   (N migrations timed, default 5)
"""
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nbd"))
import nbdtest  # noqa: E402
from nbdtest import Checker, Daemon, wait_for  # noqa: E402

MiB = 1 << 20
SIZE = 16 * MiB


class Node(Daemon):
    """A glidefsd with its REST API on a free loopback port."""

    def __init__(self, base, store_lines, node_id, lease_ms=15000, sync_delay_ms=20):
        super().__init__(base=base, node_id=node_id, size="16M", sync_delay_ms=sync_delay_ms,
                         shutdown_timeout_s=60)
        self.port = nbdtest.free_tcp_port()
        with open(self.cfg) as f:
            text = f.read()
        text = text.replace('    listen: ""', f"    listen: 127.0.0.1:{self.port}")
        text = text.replace("  shutdown_timeout_s:", f"  lease_timeout_ms: {lease_ms}\n  shutdown_timeout_s:")
        if store_lines:
            # the s3 store instead of the file:// default
            out = []
            skip = False
            for ln in text.splitlines():
                if ln.startswith("storage:"):
                    out.append("storage:")
                    out += ["  " + s for s in store_lines]
                    skip = True
                    continue
                if skip and ln.startswith("  "):
                    continue
                skip = False
                out.append(ln)
            text = "\n".join(out) + "\n"
        with open(self.cfg, "w") as f:
            f.write(text)

    def api(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def api_ready(self):
        try:
            return self.api("GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False


def drop(h):
    """Disconnect a client cleanly (NBD_CMD_DISC) and let libnbd free it."""
    try:
        h.shutdown()
    except Exception:
        pass


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def main():
    nbdtest.need_libnbd()
    import nbd
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    c = Checker()
    root = tempfile.mkdtemp(prefix="glidefs-migrate-")
    store = os.path.join(root, "store")
    store_lines = None
    if os.environ.get("AZURE_TEST_ENDPOINT"):  # under tests/azure/azenv.py
        store_lines = [f"url: azure://{os.environ['AZURE_TEST_ACCOUNT']}/"
                       f"{os.environ['AZURE_TEST_CONTAINER']}/migrate-{os.getpid()}",
                       f"endpoint: {os.environ['AZURE_TEST_ENDPOINT']}",
                       f"azure_account_key: {os.environ['AZURE_TEST_KEY']}"]
    elif os.environ.get("S3_ENDPOINT"):
        store_lines = [f"url: s3://{os.environ['S3_BUCKET']}/migrate-{os.getpid()}",
                       f"endpoint: {os.environ['S3_ENDPOINT']}",
                       "access_key_id: S3RVER", "secret_access_key: S3RVER"]
    nodes = []

    def node(name, **kw):
        n = Node(os.path.join(root, name), store_lines, name, **kw)
        n.store = store
        if not store_lines:  # all nodes on the same file:// store
            with open(n.cfg) as f:
                t = f.read()
            t = t.replace(f"file://{os.path.join(root, name, 'store')}", f"file://{store}")
            with open(n.cfg, "w") as f:
                f.write(t)
        nodes.append(n)
        n.start()
        wait_for(n.api_ready, 20, f"{name}'s API")
        return n

    model = bytearray(SIZE)
    try:
        A, B = node("node-a"), node("node-b")
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "first attacher is read-write")
        for i in range(16):
            off = random.Random(i).randrange(0, SIZE // 4096) * 4096
            data = pattern(1000 + i, 64 * 1024 if off + 64 * 1024 <= SIZE else 4096)
            ha.pwrite(data, off)
            model[off:off + len(data)] = data
        ha.flush()
        hb = B.connect("vm1")
        c.eq(hb.is_read_only(), 1, "second attacher gets READ_ONLY")
        c.raises_errno(lambda: hb.pwrite(b"x" * 512, 0), 1, "write on the read-only node: EPERM")
        st, body = B.api("POST", "/api/exports/vm1/promote")
        c.eq(st, 409, f"promote refused while the lease is live ({body})")
        # B follows the store: after A drains, B reads A's data
        c.eq(A.api("POST", "/api/exports/vm1/drain")[0], 200, "drain on A")
        wait_for(lambda: hb.pread(SIZE, 0) == bytes(model), 10, "B to read A's data")
        c.ok(True, "B reads A's drained data through its own cache")

        # the migration sequence, timed
        downtimes = []
        src, dst, hsrc, hdst = A, B, ha, hb
        for run in range(runs):
            c.eq(src.api("POST", "/api/exports/vm1/drain")[0], 200, f"run {run}: drain on source")
            t0 = time.monotonic()
            drop(hsrc)
            # promote as soon as the source has handed the lease back
            wait_for(lambda: dst.api("POST", "/api/exports/vm1/promote")[0] == 200, 10,
                     "promote on the destination", interval=0.002)
            # the VM's new connection (read-write now); the read-only one goes after,
            # so the export never loses its last client and hands the lease back
            hnew = dst.connect("vm1")
            drop(hdst)
            hdst = hnew
            data = pattern(5000 + run, 4096)
            hdst.pwrite(data, 4096 * run)
            downtimes.append((time.monotonic() - t0) * 1000)
            model[4096 * run:4096 * run + 4096] = data
            c.eq(hdst.is_read_only(), 0, f"run {run}: destination is read-write")
            c.ok(hdst.pread(SIZE, 0) == bytes(model), f"run {run}: byte-exact after migration")
            hsrc = src.connect("vm1")
            c.eq(hsrc.is_read_only(), 1, f"run {run}: the old node reconnects read-only")
            src, dst, hsrc, hdst = dst, src, hdst, hsrc
        downtimes.sort()
        print(f"migration downtime over {runs} runs: p50 {downtimes[len(downtimes) // 2]:.1f} ms, "
              f"max {downtimes[-1]:.1f} ms")
        writer, hw, reader, hr = src, hsrc, dst, hdst

        # forced promote: a third node takes the lease from a live writer
        C = node("node-c")
        hc = C.connect("vm1")
        hw.flush()
        c.eq(writer.api("POST", "/api/exports/vm1/drain")[0], 200, "writer drains before the force")
        st, body = C.api("POST", "/api/exports/vm1/promote?force=true")
        c.eq(st, 200, f"forced promote ({body})")
        late = pattern(9999, 4096)
        try:  # the old writer may still accept this before it learns of the fence
            hw.pwrite(late, 0)
            hw.flush()
        except nbd.Error:
            pass
        def fenced():
            try:
                hw.pwrite(late, 0)
                return False
            except nbd.Error:
                return True
        wait_for(fenced, 30, "the old writer to be fenced")
        c.ok(True, "the old writer's writes fail once it sees the new epoch")
        writer.api("POST", "/api/exports/vm1/drain", timeout=10)  # it may try to upload: fenced
        D = node("node-d")
        hd = D.connect("vm1")
        c.ok(hd.pread(SIZE, 0) == bytes(model), "a fresh reader never sees the fenced writer's data")
        drop(hd)
        drop(hc)
        hc = C.connect("vm1")
        c.eq(hc.is_read_only(), 0, "the new writer reconnects read-write")
        c.ok(hc.pread(SIZE, 0) == bytes(model), "the new writer's view excludes the late write")

        # a killed owner: its lease expires, the other node promotes, it comes back fenced
        for h in (hw, hr):
            drop(h)
        unsynced = pattern(4242, 4096)
        C2_base = os.path.join(root, "node-c")
        drop(hc)
        C.stop()
        C = Node(C2_base, store_lines, "node-c", sync_delay_ms=600000)
        if not store_lines:
            with open(C.cfg) as f:
                t = f.read()
            t = t.replace(f"file://{os.path.join(C2_base, 'store')}", f"file://{store}")
            with open(C.cfg, "w") as f:
                f.write(t)
        nodes.append(C)
        C.start()
        wait_for(C.api_ready, 20, "node-c's API")
        hc = C.connect("vm1")
        c.eq(hc.is_read_only(), 0, "node-c writes again after its restart")
        hc.pwrite(unsynced, 8 * MiB)
        hc.flush()
        C.kill()
        E = node("node-e", lease_ms=2000)  # judges C's heartbeat expired after 2 s
        he = E.connect("vm1")
        c.eq(E.api("POST", "/api/exports/vm1/promote")[0], 409, "promote refused before expiry")
        wait_for(lambda: E.api("POST", "/api/exports/vm1/promote")[0] == 200, 15,
                 "the killed owner's lease to expire", interval=0.1)
        drop(he)
        he = E.connect("vm1")
        c.ok(he.pread(SIZE, 0) == bytes(model), "after expiry: the store's data, not the unsynced write")
        C.start()
        wait_for(C.api_ready, 20, "node-c's API after the crash")
        hc = C.connect("vm1")
        c.eq(hc.is_read_only(), 1, "the old owner comes back read-only")
        st, body = C.api("GET", "/api/exports/vm1")
        c.ok(st == 200 and body.get("fenced_bytes", 0) > 0,
             f"its unsynced data is kept aside and reported ({body.get('fenced_bytes')})")
        c.ok(hc.pread(4096, 8 * MiB) != unsynced, "and never merged into the volume")
        drop(hc)

        # scale to zero on E, wake on A
        data = pattern(777, 4096)
        he.pwrite(data, 12 * MiB)
        model[12 * MiB:12 * MiB + 4096] = data
        he.flush()
        drop(he)
        c.eq(E.api("POST", "/api/exports/vm1/drain")[0], 200, "drain before scale to zero")
        st, body = E.api("DELETE", "/api/exports/vm1?force=true")
        c.ok(st in (200, 204), f"DELETE the export ({st} {body})")
        left = [p for p in os.listdir(E.cache) if p == "vm1"]
        c.eq(left, [], "no file of the export left in the cache dir")
        for h in (ha, hb):
            drop(h)
        ha2 = A.connect("vm1")
        c.ok(ha2.pread(SIZE, 0) == bytes(model), "wake on another node: every byte back")
        drop(ha2)
    finally:
        for n in nodes:
            n.kill()
    if os.environ.get("GLIDEFS_TEST_KEEP"):
        print("kept", root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    c.done()


if __name__ == "__main__":
    main()
