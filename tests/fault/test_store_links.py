#!/usr/bin/python3
"""test_store_links.py - symbolic links planted in a file:// store lead
glidefsd nowhere (issue 21 item 2), and what it writes is owner-only (item 3).

glidefsd runs as root on most nodes; a link nbd/victim -> /elsewhere used to
make it write volume.json, the lease, seg/ and manifest/ there on the first
connect, and DELETE ?purge=true deleted every regular file under the target.
Here, with links to directories full of canary files:
  - nbd/victim -> outside-a: an NBD connect, a REST create and a purge of
    'victim' are refused; nothing under outside-a is created, changed or
    deleted;
  - nbd/vol/seg -> outside-b under a live volume: its drain fails (the data
    stays in the journal) and no segment lands in outside-b;
  - the daemon keeps serving another export throughout;
  - with umask 0, every object and directory it made in the store and in its
    cache is 0600 / 0700.

usage: test_store_links.py GLIDEFSD
"""
import json
import os
import shutil
import stat
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

FAILED = []


def fail(msg):
    FAILED.append(msg)
    print("FAIL - " + msg, flush=True)


def tree(d):
    """{relative path: bytes or 'dir'} of everything under d (links as links)."""
    out = {}
    for dp, dirs, files in os.walk(d):
        for n in dirs:
            out[os.path.relpath(os.path.join(dp, n), d)] = "dir"
        for n in files:
            p = os.path.join(dp, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = f.read()
    return out


def canaries(d):
    os.makedirs(os.path.join(d, "sub", "deeper"))
    for rel in ["precious", "sub/also", "sub/deeper/too"]:
        with open(os.path.join(d, rel), "w") as f:
            f.write("canary " + rel)
    return tree(d)


def api(d, method, path, body=None):
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    try:
        st, _, out = fl.http(method, d.api_url(path), data, hdr, timeout=60)
        return st, out
    except OSError as e:
        return None, str(e).encode()


def main():
    glidefsd = os.path.abspath(sys.argv[1])
    fl.need_libnbd()
    import nbd
    base = tempfile.mkdtemp(prefix="glidefs-links-")
    t0 = time.monotonic()
    store = os.path.join(base, "store")
    out_a, out_b = os.path.join(base, "outside-a"), os.path.join(base, "outside-b")
    want_a, want_b = canaries(out_a), canaries(out_b)
    os.makedirs(os.path.join(store, "nbd"))
    for p in (store, os.path.join(store, "nbd")):
        os.chmod(p, 0o700)  # the test made these: not the daemon's modes
    os.symlink(out_a, os.path.join(store, "nbd", "victim"))
    old_umask = os.umask(0)  # the daemon's modes must not rely on a umask
    d = fl.Glidefsd(glidefsd, base, "node", store=store, size="4M", api=True,
                    shutdown_timeout_s=5)
    try:
        d.start()
        os.umask(old_umask)
        # a well-behaved export first
        good = d.connect("good")
        good.pwrite(b"\x5a" * 65536, 0)
        good.flush()

        # 1. first connect to the linked name
        try:
            h = d.connect("victim")
            h.pwrite(b"\xee" * 4096, 0)
            h.flush()
            h.shutdown()
            fail("NBD: export 'victim' (a link out of the store) was served")
        except nbd.Error as e:
            print("# NBD connect to victim refused: %s" % e, flush=True)
        # 2. REST create of the linked name
        st, body = api(d, "POST", "/api/exports", {"name": "victim", "size_gb": 1})
        print("# REST create victim: %s %s" % (st, body[:160]), flush=True)
        if st is None or 200 <= st < 300:
            fail("REST: creating 'victim' answered %s" % st)
        if tree(out_a) != want_a:
            fail("outside-a changed after connect/create: %s" % sorted(tree(out_a)))

        # 3. purge of the linked name, forced
        st, body = api(d, "DELETE", "/api/exports/victim?purge=true&force=true")
        print("# REST purge victim: %s %s" % (st, body[:160]), flush=True)
        if st is not None and 200 <= st < 300:
            fail("REST: purging 'victim' answered %s" % st)
        if tree(out_a) != want_a:
            fail("outside-a changed after the purge: %s" % sorted(tree(out_a)))

        # 4. a link inside a live volume: seg/ -> outside-b
        h = d.connect("vol")
        h.pwrite(b"\x11" * (1 << 20), 0)
        h.flush()
        st, body = api(d, "POST", "/api/exports/vol/drain?timeout_s=30")
        if st != 200:
            fail("first drain of vol: %s %s" % (st, body[:200]))
        seg = os.path.join(store, "nbd", "vol", "seg")
        os.rename(seg, seg + "-aside")
        os.symlink(out_b, seg)
        h.pwrite(b"\x22" * (1 << 20), 1 << 20)
        h.flush()
        st, body = api(d, "POST", "/api/exports/vol/drain?timeout_s=2")
        print("# drain of vol with seg/ a link: %s %s" % (st, body[:160]), flush=True)
        if st == 200:
            fail("drain of vol succeeded with seg/ a link out of the store")
        if tree(out_b) != want_b:
            fail("outside-b changed: %s" % sorted(set(tree(out_b)) - set(want_b)))
        if h.pread(1 << 20, 1 << 20) != b"\x22" * (1 << 20):
            fail("vol: the undrained write does not read back")
        h.shutdown()
        if any("a directory on the key's path is a symbolic link" in ln
               for ln in d.log_text().splitlines()) is False:
            fail("no log line names the link")

        # 5. the other export is still served
        if not d.alive():
            fail("glidefsd died: %s" % d.proc.returncode)
        else:
            good.pwrite(b"\x5b" * 4096, 8192)
            good.flush()
            if good.pread(4096, 8192) != b"\x5b" * 4096:
                fail("the well-behaved export read back other bytes")
            st, body = api(d, "POST", "/api/exports/good/drain?timeout_s=30")
            if st != 200:
                fail("drain of good: %s %s" % (st, body[:200]))

        # 6. modes: what the daemon made in the store and the cache
        loose = []
        for top in (store, d.cache):
            for dp, dirs, files in os.walk(top):
                for n in dirs + files:
                    p = os.path.join(dp, n)
                    sb = os.lstat(p)
                    if stat.S_ISLNK(sb.st_mode):
                        continue  # the test's own links
                    if stat.S_IMODE(sb.st_mode) & 0o077:
                        loose.append("%o %s" % (stat.S_IMODE(sb.st_mode), p))
        if loose:
            fail("readable by others (umask 0): %s" % loose[:10])
        san = d.sanitizer_reports()
        if san:
            fail("sanitizer report: %s" % san[0])
    finally:
        os.umask(old_umask)
        d.close()
    print("SUMMARY " + json.dumps({"test": "store_links", "failures": len(FAILED),
                                   "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    if FAILED:
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(40)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
