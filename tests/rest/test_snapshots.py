#!/usr/bin/python3
"""test_snapshots.py - snapshots and clones through the REST API and
glidefs-ctl, with real NBD clients (issue 9):

  - data written through NBD, a snapshot taken through the API, more data
    written; a clone of the snapshot and a clone of the live state, both
    read back byte-exact over NBD (the snapshot clone sees only what was
    written before the snapshot, the live clone the latest data); writes to
    a clone leave the parent (and the other clone) unchanged; a clone of a
    clone;
  - every error status: 409 snapshot exists, 409 delete while a clone uses
    the snapshot (and 200 once the clone is purged), 404 unknown export or
    snapshot, 409 child exists, 404 unknown parent or snapshot, 400 bad
    bodies and names;
  - hostile names (../, %2F, %2E%2E, too long, %00) -> 400/404/405 before
    anything is touched: the store and the cache are byte-for-byte the same
    listing afterwards;
  - a live clone re-made under the name of a purged one sees the parent's
    current data, not the state of the first clone;
  - a snapshot and a live clone of a clone that has written nothing yet
    hold the clone's data;
  - a grandchild keeps its data when the clone between it and the root is
    purged and the root compacted (read back on an empty cache);
  - "lineage"/"parent" in GET /api/exports/NAME when the daemon is built
    with the library's lineage API (GLIDEFS_HAVE_LINEAGE); set
    GLIDEFS_EXPECT_LINEAGE=1 to make their absence a failure;
  - glidefs-ctl snapshot, snapshots, snapshot-delete, clone: human output,
    --json, exit codes.

usage: test_snapshots.py GLIDEFSD GLIDEFS_CTL
"""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402
from resttest import MiB  # noqa: E402

resttest.need_libnbd()
import nbd  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")
CTL = resttest.arg_path(2, "glidefs-ctl")

SIZE = 64 * MiB
CHUNK = 4 * MiB


class Model:
    """The bytes a volume must hold."""

    def __init__(self, data=None, size=SIZE):
        self.data = bytearray(data if data is not None else size)

    def copy(self):
        return Model(self.data)

    def write(self, h, off, buf):
        h.pwrite(buf, off)
        self.data[off:off + len(buf)] = buf


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def read_all(h, size):
    return b"".join(h.pread(min(CHUNK, size - off), off) for off in range(0, size, CHUNK))


def same(h, model, what):
    size = len(model.data)
    try:
        got = read_all(h, size)
    except nbd.Error as e:
        return t.ok(False, f"{what} (NBD read failed: {e})")
    if got == bytes(model.data):
        return t.ok(True, what)
    diff = next(i for i in range(size) if got[i] != model.data[i])
    return t.ok(False, f"{what} (first difference at byte {diff}: {got[diff]:#04x}, want "
                f"{model.data[diff]:#04x})")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def store_tree(d):
    """What a snapshot or clone request could change in the store: the
    volumes, and each one's volume.json, snapshots and children markers
    (segments, manifests and leases move on their own in the background)."""
    top = os.path.join(d.store, "nbd")
    out = []
    for vol in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        v = os.path.join(top, vol)
        out.append((vol, read(os.path.join(v, "volume.json"))))
        for sub in ("snap", "children"):
            p = os.path.join(v, sub)
            for f in sorted(os.listdir(p)) if os.path.isdir(p) else []:
                out.append((vol, sub, f, read(os.path.join(p, f))))
    return out


def cache_tree(d):
    """The volumes with a cache directory on this node."""
    return sorted(os.listdir(d.cache))


def snap_names(d, name):
    r = d.req("GET", f"/api/exports/{name}/snapshots")
    return [s["name"] for s in (r.json or {}).get("snapshots", [])] if r.status == 200 else None


def check_lineage(d, name, lineage, parent):
    """lineage/parent in the status, when the daemon reports them."""
    r = d.req("GET", f"/api/exports/{name}")
    if not t.status(r, 200, f"GET /api/exports/{name}"):
        return
    if "lineage" not in r.json:
        t.ok(not os.environ.get("GLIDEFS_EXPECT_LINEAGE"),
             f"{name}: no lineage in the status (built without GLIDEFS_HAVE_LINEAGE)")
        return
    t.eq(r.json.get("lineage"), lineage, f"{name}: lineage")
    t.eq(r.json.get("parent"), parent, f"{name}: parent")


def ctl(d, *args, timeout=120):
    e = {k: v for k, v in os.environ.items() if k not in ("GLIDEFS_API", "GLIDEFS_TOKEN")}
    e["GLIDEFS_API"] = d.url
    return subprocess.run([CTL, *args], capture_output=True, text=True, env=e, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def api_part(d):
    # -- parent with data, snapshot, more data ------------------------------------
    r = d.req("POST", "/api/exports", {"name": "base", "size": "64M"})
    t.status(r, 201, "create base")
    h = d.connect("base")
    m_base = Model()
    for i in range(16):  # 64 KiB at the start of every 4 MiB, and a tail
        m_base.write(h, i * CHUNK, pattern(100 + i, 64 * 1024))
    m_base.write(h, SIZE - 8192, pattern(99, 8192))
    h.flush()
    r = d.req("POST", "/api/exports/base/snapshots", {"name": "s1"})
    t.status(r, 201, "POST /api/exports/base/snapshots s1: 201")
    t.eq(r.headers.get("Location"), "/api/exports/base/snapshots/s1", "Location of the snapshot")
    j = r.json or {}
    t.eq((j.get("name"), j.get("export"), j.get("size_bytes")), ("s1", "base", SIZE),
         "snapshot answer: name, export, size_bytes")
    t.ok(isinstance(j.get("created_ms"), int) and j["created_ms"] > 0, "created_ms set")
    m_s1 = m_base.copy()

    for i in range(0, 16, 2):  # overwrite half, and write new places
        m_base.write(h, i * CHUNK + 4096, pattern(200 + i, 128 * 1024))
        m_base.write(h, i * CHUNK + 2 * MiB, pattern(300 + i, 4096))
    h.flush()

    r = d.req("GET", "/api/exports/base/snapshots")
    t.status(r, 200, "GET snapshots")
    snaps = (r.json or {}).get("snapshots", [])
    t.eq([s.get("name") for s in snaps], ["s1"], "one snapshot listed")
    t.eq(snaps[0].get("size_bytes") if snaps else None, SIZE, "listed size_bytes")
    t.eq(snaps[0].get("created_ms") if snaps else None, j.get("created_ms"), "listed created_ms")

    # -- clones --------------------------------------------------------------
    r = d.req("POST", "/api/exports", {"name": "c-snap", "clone_of": "base", "snapshot": "s1"})
    t.status(r, 201, "clone c-snap of base@s1: 201")
    j = r.json or {}
    t.eq((j.get("name"), j.get("size_bytes")), ("c-snap", SIZE), "clone answer: the child export")
    t.eq(j.get("parent"), {"name": "base", "snapshot": "s1"}, "clone answer: parent")
    t.eq(r.headers.get("Location"), "/api/exports/c-snap", "clone Location")
    t.ok(isinstance(j.get("clone_ms"), int), "clone answer: clone_ms")
    r = d.req("POST", "/api/exports", {"name": "c-live", "clone_of": "base"})
    t.status(r, 201, "clone c-live of base's live state: 201")
    t.eq((r.json or {}).get("parent"), {"name": "base", "snapshot": None},
         "live clone: parent snapshot null")
    m_live = m_base.copy()
    t.eq(snap_names(d, "base"), ["s1"], "the implicit snapshot of a live clone is not listed")

    hs = d.connect("c-snap")
    hl = d.connect("c-live")
    t.eq(hs.get_size(), SIZE, "NBD: clone has the parent's size")
    same(hs, m_s1, "c-snap reads exactly the data before the snapshot")
    same(hl, m_live, "c-live reads exactly the parent's latest data")

    m_cs = m_s1.copy()
    for i in range(1, 16, 3):
        m_cs.write(hs, i * CHUNK, pattern(400 + i, 256 * 1024))
    hs.flush()
    m_base.write(h, 3 * CHUNK, pattern(500, 64 * 1024))  # the parent moves on
    h.flush()
    same(hs, m_cs, "c-snap reads its own writes over the snapshot")
    same(h, m_base, "base unchanged by writes to its clone")
    same(hl, m_live, "c-live unchanged by writes to base and c-snap")
    h2 = d.connect("base")
    same(h2, m_base, "base through a new connection")
    h2.shutdown()

    check_lineage(d, "base", [], None)
    check_lineage(d, "c-snap", ["base"], {"name": "base", "snapshot": "s1"})
    check_lineage(d, "c-live", ["base"], {"name": "base", "snapshot": None})

    # a clone of a clone
    r = d.req("POST", "/api/exports/c-snap/snapshots", {"name": "t1"})
    t.status(r, 201, "snapshot of a clone")
    r = d.req("POST", "/api/exports", {"name": "gc", "clone_of": "c-snap", "snapshot": "t1"})
    t.status(r, 201, "clone of a clone")
    hg = d.connect("gc")
    same(hg, m_cs, "the grandchild reads its parent's snapshot")
    hg.shutdown()
    check_lineage(d, "gc", ["base", "c-snap"], {"name": "c-snap", "snapshot": "t1"})

    # -- snapshot errors -------------------------------------------------------
    t.status(d.req("POST", "/api/exports/base/snapshots", {"name": "s1"}), 409,
             "snapshot that exists: 409")
    t.status(d.req("POST", "/api/exports/nosuch/snapshots", {"name": "x"}), 404,
             "snapshot of an unknown export: 404")
    t.status(d.req("GET", "/api/exports/nosuch/snapshots"), 404, "list of an unknown export: 404")
    t.status(d.req("DELETE", "/api/exports/nosuch/snapshots/s1"), 404,
             "delete on an unknown export: 404")
    t.status(d.req("DELETE", "/api/exports/base/snapshots/nosuch"), 404,
             "delete of an unknown snapshot: 404")
    r = d.req("DELETE", "/api/exports/base/snapshots/s1")
    t.status(r, 409, "delete a snapshot a clone uses: 409")
    t.ok("clone" in (r.error() or ""), "the 409 says a clone uses it")
    t.eq(snap_names(d, "base"), ["s1"], "s1 still there")
    r = d.req("POST", "/api/exports/base/snapshots", {"name": "s2"})
    t.status(r, 201, "snapshot s2")
    t.eq(snap_names(d, "base"), ["s1", "s2"], "two snapshots, name order")
    r = d.req("DELETE", "/api/exports/base/snapshots/s2")
    t.status(r, 200, "delete an unused snapshot: 200")
    t.eq((r.json or {}).get("deleted"), True, "delete answer")
    t.status(d.req("DELETE", "/api/exports/base/snapshots/s2"), 404, "delete it again: 404")
    t.eq(snap_names(d, "base"), ["s1"], "s2 gone")

    # -- clone errors -----------------------------------------------------------
    markers = sorted(os.listdir(os.path.join(d.store, "nbd", "base", "children")))
    t.eq(markers, ["c-live", "c-snap"], "the parent knows its two clones")
    marker = open(os.path.join(d.store, "nbd", "base", "children", "c-snap"), "rb").read()
    before = store_tree(d)
    for body, want, what in [
            ({"name": "c-snap", "clone_of": "base", "snapshot": "s1"}, 409, "child exists"),
            ({"name": "c-live", "clone_of": "c-snap"}, 409, "child exists (live clone)"),
            ({"name": "gc", "clone_of": "base", "snapshot": "s1"}, 409, "child exists (a clone)"),
            ({"name": "x1", "clone_of": "nosuch", "snapshot": "s1"}, 404, "unknown parent"),
            ({"name": "x1", "clone_of": "nosuch"}, 404, "unknown parent (live)"),
            ({"name": "x1", "clone_of": "base", "snapshot": "nosuch"}, 404, "unknown snapshot"),
            ({"name": "x1", "clone_of": "base", "size_gb": 1}, 400, "a size with clone_of"),
            ({"name": "x1", "snapshot": "s1"}, 400, "snapshot without clone_of"),
            ({"name": "base", "clone_of": "base"}, 400, "a clone of itself"),
            ({"name": "x1", "clone_of": "../base"}, 400, "clone_of ../base"),
            ({"name": "x1", "clone_of": "base/x"}, 400, "clone_of with a slash"),
            ({"name": "x1", "clone_of": 7}, 400, "clone_of not a string"),
            ({"name": "x1", "clone_of": "base", "snapshot": "../s1"}, 400, "snapshot ../s1"),
            ({"name": "x1", "clone_of": "base", "snapshot": "s" * 129}, 400, "snapshot too long"),
            ({"name": "x1", "clone_of": "base", "snapshot": None}, 400, "snapshot null"),
            ({"name": "../x1", "clone_of": "base"}, 400, "child ../x1"),
            ({"name": "x" * 129, "clone_of": "base"}, 400, "child name too long"),
            ({"name": "x1", "clone_of": "base", "parent": "y"}, 400, "unknown field")]:
        t.status(d.req("POST", "/api/exports", body), want, f"clone, {what}: {want}")
    after = store_tree(d)
    t.eq(after, before, "refused clones wrote nothing to the store")
    t.eq(open(os.path.join(d.store, "nbd", "base", "children", "c-snap"), "rb").read(), marker,
         "the marker of c-snap is unchanged by a refused clone of the same name")

    # -- hostile names: refused before anything is touched ----------------------
    store0, cache0 = store_tree(d), cache_tree(d)
    for method, path, body, want in [
            ("DELETE", "/api/exports/base/snapshots/..%2F..%2Fc-snap", None, 400),
            ("DELETE", "/api/exports/base/snapshots/%2E%2E", None, 400),
            ("DELETE", "/api/exports/base/snapshots/..", None, 400),
            ("DELETE", "/api/exports/base/snapshots/.hidden", None, 400),
            ("DELETE", "/api/exports/base/snapshots/s1%2Fx", None, 400),
            ("DELETE", "/api/exports/base/snapshots/" + "s" * 129, None, 400),
            ("DELETE", "/api/exports/base/snapshots/" + "s" * 300, None, 400),
            ("DELETE", "/api/exports/base/snapshots/s%00", None, 400),
            ("DELETE", "/api/exports/base/snapshots/s%zz", None, 400),
            ("DELETE", "/api/exports/..%2Fbase/snapshots/s1", None, 400),
            ("DELETE", "/api/exports/%2E%2E/snapshots/s1", None, 400),
            ("DELETE", "/api/exports/base/snapshots/s1/x", None, 404),
            ("DELETE", "/api/exports/base/snapshots/s1?force=true", None, 400),
            ("GET", "/api/exports/..%2Fbase/snapshots", None, 400),
            ("GET", "/api/exports/" + "b" * 129 + "/snapshots", None, 400),
            ("POST", "/api/exports/base%2F..%2Fc-snap/snapshots", {"name": "s9"}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": "../s9"}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": "s9/x"}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": ".s9"}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": "s" * 129}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": ""}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": 5}, 400),
            ("POST", "/api/exports/base/snapshots", {}, 400),
            ("POST", "/api/exports/base/snapshots", {"name": "s9", "x": 1}, 400),
            ("POST", "/api/exports/base/snapshots", "[\"s9\"]", 400),
            ("POST", "/api/exports/base/snapshots", "{", 400),
            ("POST", "/api/exports/base/snapshots", None, 400),
            ("POST", "/api/exports/base/snapshots?timeout_s=0", {"name": "s9"}, 400),
            ("POST", "/api/exports/base/snapshots?bogus=1", {"name": "s9"}, 400),
            ("GET", "/api/exports/base/snapshots?x=1", None, 400),
            ("GET", "/api/exports/base/snapshots/s1", None, 405),
            ("PUT", "/api/exports/base/snapshots", {"name": "s9"}, 405),
            ("POST", "/api/exports/nosuch/snapshots", {"name": "s9"}, 404)]:
        r = d.req(method, path, body)
        t.status(r, want, f"{method} {path[:70]}: {want}")
        if want == 405:
            t.ok(r.headers.get("Allow") in ("DELETE", "GET, POST", "POST, GET"),
                 f"405 names the allowed methods ({r.headers.get('Allow')})")
    t.eq(store_tree(d), store0, "hostile requests left the store as it was")
    t.eq(cache_tree(d), cache0, "hostile requests left the cache directory as it was")
    t.eq(snap_names(d, "base"), ["s1"], "s1 survived the hostile deletes")
    t.ok(not os.path.exists(os.path.join(d.store, "nbd", "nosuch")), "no volume nosuch")

    # -- a snapshot becomes deletable once its clone is gone ---------------------
    t.status(d.req("POST", "/api/exports/base/snapshots", {"name": "s3"}), 201, "snapshot s3")
    r = d.req("POST", "/api/exports", {"name": "c3", "clone_of": "base", "snapshot": "s3"})
    t.status(r, 201, "clone c3 of s3")
    t.status(d.req("DELETE", "/api/exports/base/snapshots/s3"), 409, "delete s3 while c3 lives")
    t.status(d.req("DELETE", "/api/exports/c3?purge=true"), 200, "purge c3")
    t.status(d.req("DELETE", "/api/exports/base/snapshots/s3"), 200,
             "delete s3 once its only clone is purged: 200")
    t.eq(snap_names(d, "base"), ["s1"], "s3 gone")
    hs.shutdown()

    # -- a live clone under a reused name sees the current state -------------------
    hl.shutdown()
    r = d.req("DELETE", "/api/exports/c-live?purge=true")
    t.status(r, 200, "purge c-live")
    m_base.write(h, 5 * CHUNK, pattern(600, 64 * 1024))
    h.flush()
    r = d.req("POST", "/api/exports", {"name": "c-live", "clone_of": "base"})
    t.status(r, 201, "a new live clone named c-live")
    hl = d.connect("c-live")
    same(hl, m_base, "the new c-live reads the parent's current data, not the old clone's "
                     "(library bug if not: glidefs_clone reuses the implicit snapshot "
                     "@clone-c-live of the purged clone)")
    hl.shutdown()
    h.shutdown()
    return m_base


def fresh_clone_part(d):
    """A snapshot or a live clone of a clone that has written nothing yet."""
    size = 8 * MiB
    t.status(d.req("POST", "/api/exports", {"name": "r3", "size": "8M"}), 201, "create r3")
    h = d.connect("r3")
    m = Model(size=size)
    m.write(h, 0, pattern(700, size))
    h.flush()
    h.shutdown()
    t.status(d.req("POST", "/api/exports/r3/snapshots", {"name": "r"}), 201, "snapshot r3@r")
    t.status(d.req("POST", "/api/exports", {"name": "fresh", "clone_of": "r3", "snapshot": "r"}),
             201, "clone fresh of r3@r")
    t.status(d.req("POST", "/api/exports/fresh/snapshots", {"name": "f0"}), 201,
             "snapshot of fresh before it wrote anything")
    t.status(d.req("POST", "/api/exports", {"name": "fresh-gc", "clone_of": "fresh",
                                            "snapshot": "f0"}), 201, "clone of that snapshot")
    t.status(d.req("POST", "/api/exports", {"name": "fresh-live", "clone_of": "fresh"}), 201,
             "live clone of fresh before it wrote anything")
    for name in ("fresh", "fresh-gc", "fresh-live"):
        h = d.connect(name)
        same(h, m, f"{name} reads r3's data (library bug if zeroes: a snapshot of a clone "
                   f"without a manifest of its own records \"manifest\": null)"
             if name != "fresh" else f"{name} reads r3's data")
        h.shutdown()


def purged_middle_part(d):
    """root2 <- mid2 <- gc2: purge mid2, compact root2; gc2 must keep its data."""
    size = 8 * MiB
    t.status(d.req("POST", "/api/exports", {"name": "root2", "size": "8M"}), 201, "create root2")
    h = d.connect("root2")
    m = Model(size=size)
    m.write(h, 0, pattern(800, size))
    h.flush()
    t.status(d.req("POST", "/api/exports/root2/snapshots", {"name": "r1"}), 201, "root2@r1")
    t.status(d.req("POST", "/api/exports", {"name": "mid2", "clone_of": "root2",
                                            "snapshot": "r1"}), 201, "clone mid2")
    hm = d.connect("mid2")
    m.write(hm, size - 4096, pattern(801, 4096))
    hm.flush()
    t.status(d.req("POST", "/api/exports/mid2/snapshots", {"name": "m1"}), 201, "mid2@m1")
    t.status(d.req("POST", "/api/exports", {"name": "gc2", "clone_of": "mid2",
                                            "snapshot": "m1"}), 201, "clone gc2 of mid2@m1")
    hm.shutdown()
    t.status(d.req("DELETE", "/api/exports/mid2?purge=true"), 200,
             "purge mid2 while its clone gc2 lives")
    r = d.req("DELETE", "/api/exports/root2/snapshots/r1")
    t.ok(r.status in (200, 409), f"delete root2@r1 (gc2 reads it through mid2): {r.status}")
    h.pwrite(pattern(802, size), 0)  # every block of r1 is dead for root2 now
    h.flush()
    h.shutdown()
    t.status(d.req("POST", "/api/exports/root2/compact"), 200, "compact root2")
    # gc2 with an empty cache: drop its local cache, then read from the store
    t.status(d.req("DELETE", "/api/exports/gc2"), 200, "close gc2, dropping its cache")
    hg = d.connect("gc2")
    same(hg, m, "gc2 reads its data from the store after mid2's purge and root2's compaction "
                "(library bug if not: root2@r1 is unpinned once mid2 is a tombstone)")
    hg.shutdown()


def ctl_part(d, m_base):
    r = ctl(d, "snapshot", "base")
    t.ok(r.returncode == 2 and "missing the snapshot SNAP" in r.stderr, "snapshot without SNAP: 2")
    r = ctl(d, "snapshot", "base", "../x")
    t.ok(r.returncode == 2 and "not a valid snapshot name" in r.stderr, "bad SNAP: 2")
    t.eq(ctl(d, "clone", "base").returncode, 2, "clone without CHILD: 2")
    t.eq(ctl(d, "clone", "base", "base").returncode, 2, "clone into itself: 2")
    t.eq(ctl(d, "clone", "base", "x", "--snapshot", "a/b").returncode, 2, "bad --snapshot: 2")
    t.eq(ctl(d, "list", "--snapshot", "s1").returncode, 2, "--snapshot on list: 2")
    t.eq(ctl(d, "snapshots", "base", "extra").returncode, 2, "snapshots with an extra arg: 2")
    t.eq(ctl(d, "snapshot-delete", "base").returncode, 2, "snapshot-delete without SNAP: 2")

    r = ctl(d, "snapshot", "base", "k1")
    t.ok(r.returncode == 0 and "snapshot k1 of base taken (64.0 MiB" in r.stdout,
         f"ctl snapshot: {r.stdout.strip()}")
    r = ctl(d, "--json", "snapshot", "base", "k2", "--timeout", "60")
    t.eq(r.returncode, 0, "ctl snapshot --json --timeout")
    t.eq(json.loads(r.stdout or "{}").get("name"), "k2", "--json prints the API's answer")
    r = ctl(d, "snapshot", "base", "k1")
    t.ok(r.returncode == 1 and "already has a snapshot k1" in r.stderr, "snapshot again: 1")
    r = ctl(d, "snapshot", "nosuch", "k1")
    t.eq(r.returncode, 6, "snapshot of an unknown export: 6")
    r = ctl(d, "snapshots", "base")
    lines = r.stdout.splitlines()
    t.ok(r.returncode == 0 and lines and lines[0].split() == ["NAME", "CREATED", "SIZE"] and
         [ln.split()[0] for ln in lines[1:]] == ["k1", "k2", "s1"], "ctl snapshots: a table")
    r = ctl(d, "snapshots", "base", "--json")
    t.eq([s["name"] for s in json.loads(r.stdout or "{}").get("snapshots", [])],
         ["k1", "k2", "s1"], "ctl snapshots --json")
    t.eq(ctl(d, "snapshots", "nosuch").returncode, 6, "snapshots of an unknown export: 6")

    r = ctl(d, "clone", "base", "cc1", "--snapshot", "k1")
    t.ok(r.returncode == 0 and "cloned base (snapshot k1) into cc1: 64.0 MiB" in r.stdout,
         f"ctl clone --snapshot: {r.stdout.strip()}")
    r = ctl(d, "--json", "clone", "base", "cc2")
    t.eq(r.returncode, 0, "ctl clone (live) --json")
    j = json.loads(r.stdout or "{}")
    t.eq((j.get("name"), j.get("parent")), ("cc2", {"name": "base", "snapshot": None}),
         "clone --json: the child export")
    r = ctl(d, "clone", "base", "cc1")
    t.ok(r.returncode == 1 and "already exists" in r.stderr, "clone into an existing name: 1")
    t.eq(ctl(d, "clone", "nosuch", "cc3").returncode, 6, "clone of an unknown parent: 6")
    r = ctl(d, "clone", "base", "cc3", "--snapshot", "nosuch")
    t.ok(r.returncode == 6 and "snapshots base" in r.stderr,
         "clone of an unknown snapshot: 6, with a hint")
    r = ctl(d, "snapshot-delete", "base", "k1")
    t.ok(r.returncode == 1 and "in use by a clone" in r.stderr, "snapshot-delete in use: 1")
    r = ctl(d, "snapshot-delete", "base", "k2")
    t.ok(r.returncode == 0 and "deleted snapshot k2 of base" in r.stdout, "snapshot-delete")
    r = ctl(d, "delete-snapshot", "base", "k2")
    t.eq(r.returncode, 6, "delete-snapshot (the alias) of a deleted one: 6")
    r = ctl(d, "--json", "snapshots", "base")
    t.eq([s["name"] for s in json.loads(r.stdout or "{}").get("snapshots", [])], ["k1", "s1"],
         "k2 gone")
    r = ctl(d, "status", "cc1")
    t.eq(r.returncode, 0, "status of a clone")
    if "lineage:" in r.stdout:
        t.ok("clone of:     base, snapshot k1" in r.stdout and "base -> cc1" in r.stdout,
             "status shows the lineage")
    h = d.connect("cc1")
    same(h, m_base, "the ctl clone reads the parent's data")
    h.shutdown()


def main():
    with resttest.Daemon(GLIDEFSD, size="64M") as d:
        # compaction only when asked (POST .../compact), deleting at once
        with open(d.cfg, "a") as f:
            f.write("compaction:\n  interval_s: 0\n  grace_ms: 0\n  min_live_pct: 90\n")
        d.start()
        m_base = api_part(d)
        ctl_part(d, m_base)
        fresh_clone_part(d)
        purged_middle_part(d)
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
    t.done()


if __name__ == "__main__":
    main()
