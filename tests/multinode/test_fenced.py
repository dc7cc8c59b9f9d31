#!/usr/bin/python3
"""test_fenced.py — getting back what a fenced node had, across real glidefsd
processes on one file:// store.

Node A writes (some of it drained to the store, some flushed but never
uploaded) and is killed -9; node B takes the lease once A's expires, and
writes over some of A's blocks. Checked: `glidefs-image export-fenced` on A's
config (A stopped, its journal of the ended epoch still in place) and, once A
runs again, `POST /api/exports/{name}/fenced/export` and `glidefs-ctl
fenced-export` each write an image equal byte for byte to A's model (A's
writes on top of the data A saw, not B's), and leave every object of the
store as it was; status and /metrics report the fenced bytes; REST errors
(404 unknown export, 409 nothing kept aside or the file exists, 400 bad
bodies and paths); `glidefs-ctl fenced-discard` clears it (0 fenced bytes,
409 for a second discard) and A serves B's data read-only.

usage: test_fenced.py GLIDEFSD GLIDEFS_IMAGE GLIDEFS_CTL
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nbd"))
sys.path.insert(0, HERE)
import nbdtest  # noqa: E402
from nbdtest import Checker, wait_for  # noqa: E402
from test_migration import Node, drop  # noqa: E402

MiB = 1 << 20
SIZE = 16 * MiB


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def store_listing(store):
    """Every object of the file:// store: key -> (size, mtime_ns, bytes); the
    lease is left out: its holder (B) heartbeats it (through a ".tmp.*" file
    renamed over it: an upload in flight, not an object)."""
    out = {}
    for d, _, files in os.walk(store):
        for f in files:
            p = os.path.join(d, f)
            if f == "lease" or f.startswith(".tmp."):
                continue
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, store)] = (st.st_size, st.st_mtime_ns, fh.read())
    return out


def raw_post(node, path, data, ctype="application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{node.port}{path}", data=data, method="POST",
                                 headers={"Content-Type": ctype})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def read_file(p):
    with open(p, "rb") as f:
        return f.read()


def main():
    nbdtest.need_libnbd()
    glidefsd, image, ctl = (os.path.abspath(a) for a in sys.argv[1:4])
    os.environ.setdefault("GLIDEFSD", glidefsd)
    c = Checker()
    root = tempfile.mkdtemp(prefix="glidefs-fenced-")
    store = os.path.join(root, "store")
    out = os.path.join(root, "out")
    os.makedirs(out)
    nodes = []

    def node(name, yaml="", export_dir=True, **kw):
        n = Node(os.path.join(root, name), None, name, **kw)
        with open(n.cfg) as f:
            t = f.read()
        t = t.replace(f"file://{os.path.join(root, name, 'store')}", f"file://{store}") + yaml
        # the one directory the API may write images into
        if export_dir:
            t = t.replace(f"    listen: 127.0.0.1:{n.port}\n",
                          f"    listen: 127.0.0.1:{n.port}\n    export_dir: {out}\n")
        with open(n.cfg, "w") as f:
            f.write(t)
        nodes.append(n)
        n.start()
        wait_for(n.api_ready, 20, f"{name}'s API")
        return n

    def ctl_run(n, *args):
        return subprocess.run([ctl, "--api", f"http://127.0.0.1:{n.port}", *args],
                              capture_output=True, text=True, timeout=120)

    model_a = bytearray(SIZE)
    try:
        # A writes: drained, then flushed but never uploaded (sync delay 10 min)
        A = node("node-a", lease_ms=2000, sync_delay_ms=600000)
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "A attaches read-write")
        for i, (off, n) in enumerate([(0, 1 * MiB), (3 * MiB + 4096, 64 * 1024),
                                      (9 * MiB, 256 * 1024)]):
            d = pattern(100 + i, n)
            ha.pwrite(d, off)
            model_a[off:off + n] = d
        ha.flush()
        c.eq(A.api("POST", "/api/exports/vm1/drain")[0], 200, "A drains its first writes")
        model_b = bytearray(model_a)  # what the store holds: B starts from it
        for i, (off, n) in enumerate([(4096, 8192), (3 * MiB, 128 * 1024 + 512),
                                      (12 * MiB + 512, 1024), (9 * MiB + 4096, 4096)]):
            d = pattern(200 + i, n)
            ha.pwrite(d, off)
            model_a[off:off + n] = d
        ha.zero(64 * 1024, 512 * 1024)  # a zeroed range over stored data
        model_a[512 * 1024:512 * 1024 + 64 * 1024] = bytes(64 * 1024)
        ha.flush()
        st, body = A.api("GET", "/api/exports/vm1")
        c.ok(st == 200 and body.get("dirty_bytes", 0) > 0,
             f"A holds flushed, not uploaded data ({body.get('dirty_bytes')} bytes)")
        A.kill()

        # B takes over once A's lease expires, and writes over some of A's blocks
        # compaction on demand only: the store must not change under the
        # exports by itself (checked below); compacted later on purpose, with
        # no hold on A's epoch (fenced_hold_s 0; the hold itself is tested in
        # test_lease_fenced) so that the compaction can take A's view away
        B = node("node-b", export_dir=False, lease_ms=2000, yaml="compaction:\n  interval_s: 0\n  grace_ms: 0\n"
                                               "  keep_manifests: 1\n  fenced_hold_s: 0\n")
        hb = B.connect("vm1")
        wait_for(lambda: B.api("POST", "/api/exports/vm1/promote")[0] == 200, 15,
                 "A's lease to expire and B to promote", interval=0.1)
        drop(hb)
        hb = B.connect("vm1")
        c.eq(hb.is_read_only(), 0, "B writes after the promote")
        for i, (off, n) in enumerate([(0, 128 * 1024), (3 * MiB, 4096), (9 * MiB, 512 * 1024)]):
            d = pattern(300 + i, n)
            hb.pwrite(d, off)
            model_b[off:off + n] = d
        hb.flush()
        c.eq(B.api("POST", "/api/exports/vm1/drain")[0], 200, "B drains")
        c.ok(hb.pread(SIZE, 0) == bytes(model_b), "B reads its own view")
        st, body = raw_post(B, "/api/exports/vm1/fenced/discard", b"")
        c.eq(st, 409, f"B has nothing fenced: discard is 409 ({body.get('error')})")
        st, body = B.api("POST", "/api/exports/vm1/fenced/export", {"path": "b.raw"})
        c.ok(st == 403 and "export_dir" in body.get("error", "") and
             not os.path.exists(os.path.join(out, "b.raw")),
             f"without servers.api.export_dir the API writes no file: 403 ({body.get('error')})")

        # the tool, with A stopped: its ended epoch's journal is still in place
        before = store_listing(store)
        tool_img = os.path.join(out, "tool.raw")
        r = subprocess.run([image, "export-fenced", "-c", A.cfg, "vm1", tool_img],
                           capture_output=True, text=True, timeout=120)
        c.eq(r.returncode, 0, f"glidefs-image export-fenced exits 0 ({r.stderr.strip()})")
        c.ok(os.path.exists(tool_img) and read_file(tool_img) == bytes(model_a),
             "glidefs-image export-fenced: A's view byte for byte")
        c.ok(os.stat(tool_img).st_blocks * 512 < SIZE // 2, "the image is sparse")
        r = subprocess.run([image, "export-fenced", "-c", A.cfg, "no-such-vm",
                            os.path.join(out, "none.raw")],
                           capture_output=True, text=True, timeout=120)
        c.ok(r.returncode == 1 and not os.path.exists(os.path.join(out, "none.raw")),
             f"export-fenced of an unknown volume fails and leaves no file ({r.stderr.strip()})")
        now = store_listing(store)
        c.ok(now == before, "the tool changed nothing in the store "
             f"({sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))})")

        # A restarts: the API opens the export, finds its journal of epoch 1 aside
        A.start()
        wait_for(A.api_ready, 20, "A's API after the crash")
        api_img = os.path.join(out, "api.raw")
        st, body = A.api("POST", "/api/exports/vm1/fenced/export", {"path": api_img})
        c.eq(st, 200, f"POST fenced/export ({body.get('error', '')})")
        fe = body.get("fenced_export", {})
        c.ok(fe.get("path") == api_img and fe.get("epoch") == 1 and fe.get("size_bytes") == SIZE,
             f"it names the file, A's epoch and the size ({fe})")
        c.ok(os.path.exists(api_img) and read_file(api_img) == bytes(model_a),
             "REST fenced/export: A's view byte for byte")
        c.eq(oct(os.stat(api_img).st_mode & 0o777), "0o600", "the image is created mode 0600")
        st, body = A.api("GET", "/api/exports/vm1")
        c.ok(st == 200 and body.get("fenced_bytes", 0) > 0 and body.get("read_only") is True
             and body.get("state") == "fenced",
             f"status: read-only, state fenced, fenced bytes reported ({body.get('state')}, "
             f"{body.get('fenced_bytes')})")
        fenced_bytes = body.get("fenced_bytes", 0)
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{A.port}/metrics", timeout=30) as resp:
            metrics = resp.read().decode()
        c.ok(f'glidefs_fenced_bytes{{export="vm1"}} {fenced_bytes}' in metrics,
             "/metrics reports the same fenced bytes")

        # REST errors, none of which writes anything
        st, body = A.api("POST", "/api/exports/vm1/fenced/export", {"path": api_img})
        c.eq(st, 409, f"an existing file is never overwritten ({body.get('error')})")
        c.ok(read_file(api_img) == bytes(model_a), "and it is left as it was")
        cases = [
            (b"", "no body"),
            (b"{", "malformed JSON"),
            (b"[]", "not an object"),
            (b'{"path": 5}', "path not a string"),
            (json.dumps({"path": "sub/rel.raw"}).encode(), "a relative path with a directory"),
            (json.dumps({"path": out + "/../x.raw"}).encode(), "a .. component"),
            (json.dumps({"path": out + "/"}).encode(), "a directory path"),
            (json.dumps({"path": ".."}).encode(), "the name .."),
            (json.dumps({"path": os.path.join(A.cache, "x.raw")}).encode(), "inside the cache dir"),
            (json.dumps({"path": "/etc/cron.d/x.raw"}).encode(), "outside export_dir"),
            (json.dumps({"path": os.path.join(out, "nodir", "x.raw")}).encode(),
             "a missing directory"),
            (json.dumps({"path": os.path.join(out, "x.raw"), "force": True}).encode(),
             "an unknown field"),
        ]
        for data, what in cases:
            st, body = raw_post(A, "/api/exports/vm1/fenced/export", data)
            c.ok(st == 400 and "error" in body, f"fenced/export with {what}: 400 ({body.get('error')})")
        c.eq(sorted(os.listdir(out)), ["api.raw", "tool.raw"], "no stray file was created")
        st, body = A.api("POST", "/api/exports/nosuchvm/fenced/export",
                         {"path": os.path.join(out, "n.raw")})
        c.eq(st, 404, f"unknown export: 404 ({body.get('error')})")
        st, body = raw_post(A, "/api/exports/vm1/fenced/discard", b'{"x": 1}')
        c.eq(st, 400, f"discard with a body field: 400 ({body.get('error')})")
        st, body = A.api("GET", "/api/exports/vm1/fenced/discard")
        c.eq(st, 405, "GET on fenced/discard: 405")

        # glidefs-ctl, relative PATH taken from its working directory
        r = subprocess.run([ctl, "--api", f"http://127.0.0.1:{A.port}", "fenced-export", "vm1",
                            "ctl.raw"], capture_output=True, text=True, timeout=120, cwd=out)
        c.eq(r.returncode, 0, f"glidefs-ctl fenced-export ({r.stdout.strip()} {r.stderr.strip()})")
        c.ok(read_file(os.path.join(out, "ctl.raw")) == bytes(model_a),
             "glidefs-ctl fenced-export: A's view byte for byte")
        r = ctl_run(A, "fenced-export", "vm1", os.path.join(out, "ctl.raw"))
        c.eq(r.returncode, 1, f"glidefs-ctl fenced-export onto an existing file: exit 1 "
                              f"({r.stderr.strip()})")
        r = ctl_run(A, "fenced-export", "vm1")
        c.eq(r.returncode, 2, "glidefs-ctl fenced-export without PATH: usage, exit 2")
        r = ctl_run(A, "status", "vm1")
        c.ok(r.returncode == 0 and "fenced data:" in r.stdout, "glidefs-ctl status shows it")
        now = store_listing(store)
        c.ok(now == before, "the store is exactly as before every export "
             f"({sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))})")

        # B compacts: A's segment (mostly overwritten by B) is rewritten and
        # deleted, A's manifest pruned; A's view cannot be rebuilt any more
        st, body = B.api("POST", "/api/exports/vm1/compact")
        c.ok(st == 200 and body.get("segments_deleted", 0) > 0,
             f"B compacts A's epoch away ({body})")
        st, body = A.api("POST", "/api/exports/vm1/fenced/export",
                         {"path": os.path.join(out, "gone.raw")})
        c.ok(st == 410 and not os.path.exists(os.path.join(out, "gone.raw")),
             f"then the export refuses (410) and leaves no file ({body.get('error')})")
        st, body = A.api("GET", "/api/exports/vm1")
        c.eq(body.get("fenced_bytes"), fenced_bytes, "the fenced data is still kept aside")
        before = store_listing(store)

        # discard: gone; A serves B's data, read-only
        r = ctl_run(A, "fenced-discard", "vm1")
        c.eq(r.returncode, 0, f"glidefs-ctl fenced-discard ({r.stdout.strip()} {r.stderr.strip()})")
        st, body = A.api("GET", "/api/exports/vm1")
        c.ok(st == 200 and body.get("fenced_bytes") == 0 and body.get("state") != "fenced",
             f"status: 0 fenced bytes after discard, no longer fenced ({body.get('state')})")
        r = ctl_run(A, "fenced-discard", "vm1")
        c.eq(r.returncode, 1, f"a second discard is refused ({r.stderr.strip()})")
        st, body = A.api("POST", "/api/exports/vm1/fenced/export",
                         {"path": os.path.join(out, "late.raw")})
        c.ok(st == 409 and not os.path.exists(os.path.join(out, "late.raw")),
             f"nothing left to export: 409 ({body.get('error')})")
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 1, "A attaches read-only")
        c.ok(ha.pread(SIZE, 0) == bytes(model_b), "A serves B's data, none of its own")
        c.raises_errno(lambda: ha.pwrite(b"x" * 512, 0), 1, "and refuses writes (EPERM)")
        drop(ha)
        drop(hb)
        c.ok(store_listing(store).keys() >= before.keys(), "nothing of the store was deleted")
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
