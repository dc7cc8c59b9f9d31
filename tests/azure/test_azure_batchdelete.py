#!/usr/bin/python3
"""test_azure_batchdelete.py - on azure://, compaction and purge delete with
Blob Batch (up to 256 Delete Blob subrequests a request) and fall back to
single Delete Blob requests on a store that refuses Blob Batch. glidefsd
on Azurite through tests/azure/azproxy.py (run by tests/azure/azenv.py),
whose per-method request counts are the measure:
 1. 48 blocks written one segment each, then all overwritten: compaction
    deletes the 48 dead segments (and old manifests) in a few requests,
    Blob Batch POSTs (a lone key goes as one Delete Blob);
 2. a purge (DELETE /api/exports/NAME?purge=true) removes every blob of the
    volume with POSTs and at most one DELETE (volume.json, kept for last),
    and the container holds nothing of it afterwards (listed by azsign.py's
    client, straight from Azurite);
 3. with Blob Batch answered 400 FeatureNotSupported (proxy config
    no_batch=1), a purge asks once, then deletes blob by blob, and still
    removes everything.
usage: under azenv.py: test_azure_batchdelete.py GLIDEFSD   (77 elsewhere)
"""
import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fault"))
sys.path.insert(0, HERE)
import azsign  # noqa: E402
import faultlib as fl  # noqa: E402

BS = 128 * 1024
NBLOCKS = 48


def store_keys(prefix):
    """Blob names under prefix, listed from Azurite itself."""
    c = azsign.Client(os.environ["AZURE_TEST_DIRECT"], os.environ["AZURE_TEST_ACCOUNT"],
                      os.environ["AZURE_TEST_KEY"])
    return sorted(c.list_blobs(os.environ["AZURE_TEST_CONTAINER"], prefix))


def main():
    if len(sys.argv) != 2 or not fl.azure_active():
        print("SKIP: run under tests/azure/azenv.py with GLIDEFSD", file=sys.stderr)
        return fl.SKIP
    fl.need_libnbd()
    base = tempfile.mkdtemp(prefix="glidefs-azbatch-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    proxy = fl.Proxy()

    def counts():
        bm = proxy.stats().get("by_method", {})
        return bm.get("POST", 0), bm.get("DELETE", 0)

    d = fl.Glidefsd(os.path.abspath(sys.argv[1]), base, "node1", size="16M", api=True,
                    nbd_extra={"blocks_per_batch": 1},
                    compaction={"interval_s": 3600, "grace_ms": 0, "keep_manifests": 1})
    prefix = "%s/nbd/" % d.prefix
    try:
        d.start()

        def fill(name, n, tag):
            h = d.connect(name)
            for b in range(n):
                h.pwrite(bytes([tag, b]) * (BS // 2), b * BS)
                h.flush()
            h.shutdown()
            st, _, body = fl.http("POST", d.api_url("/api/exports/%s/drain" % name), timeout=120)
            if st != 200:
                raise RuntimeError("drain %s: HTTP %d %s" % (name, st, body[:200]))

        # 1. compaction (on demand here; it may start by itself as well)
        fill("bd", NBLOCKS, 1)
        p0, d0 = counts()
        fill("bd", NBLOCKS, 2)  # every segment of the first pass is dead now
        for _ in range(10):
            st, _, body = fl.http("POST", d.api_url("/api/exports/bd/compact"), timeout=120)
            if st != 200:
                raise RuntimeError("compact: HTTP %d %s" % (st, body[:200]))
            j = json.loads(body)
            if not j.get("segments_deleted") and not j.get("segments_rewritten"):
                break
        st, _, body = fl.http("GET", d.api_url("/api/exports/bd/metrics"))
        deleted = json.loads(body).get("segments_deleted", 0) if st == 200 else -1
        p1, d1 = counts()
        check(deleted >= NBLOCKS, "compaction deleted %d dead segments" % deleted)
        # (a lone key, an old manifest, goes as one Delete Blob: the same one request)
        check(p1 - p0 >= 1 and (p1 - p0) + (d1 - d0) <= 6,
              "... with %d Blob Batch request(s) and %d single DELETE(s)" % (p1 - p0, d1 - d0))

        # 2. purge
        n_before = len(store_keys(prefix + "bd/"))
        st, _, body = fl.http("DELETE", d.api_url("/api/exports/bd?purge=true&force=true"),
                              timeout=120)
        p2, d2 = counts()
        left = store_keys(prefix + "bd/")
        check(st == 200 and not left and n_before > 2,
              "purge removed all %d blobs of the volume (HTTP %d, %d left)"
              % (n_before, st, len(left)))
        check(1 <= p2 - p1 <= 2 and d2 - d1 <= 1,
              "... with %d Blob Batch request(s) and %d single DELETE(s) (volume.json)"
              % (p2 - p1, d2 - d1))

        # 3. a store without Blob Batch
        fill("bd2", 8, 3)
        n_before = len(store_keys(prefix + "bd2/"))
        proxy._get("/__proxy__/config", no_batch=1)
        st, _, body = fl.http("DELETE", d.api_url("/api/exports/bd2?purge=true&force=true"),
                              timeout=120)
        p3, d3 = counts()
        left = store_keys(prefix + "bd2/")
        check(st == 200 and not left,
              "without Blob Batch the purge still removed all %d blobs (HTTP %d, %d left)"
              % (n_before, st, len(left)))
        check(p3 - p2 == 1 and d3 - d2 >= n_before,
              "... asking for Blob Batch once (%d) and then deleting one by one (%d)"
              % (p3 - p2, d3 - d2))
        check("refuses Blob Batch" in d.log_text(), "the log says the store refuses Blob Batch")
        reports = d.sanitizer_reports()
        check(not reports, "no sanitizer reports %s" % reports[:3])
    except Exception as e:  # noqa: BLE001
        check(False, "unexpected: %r" % e)
    finally:
        try:
            proxy._get("/__proxy__/config", no_batch=0)
        except Exception:  # noqa: BLE001
            pass
        d.close()
    if failed:
        print("(kept %s)\nlog tail:\n%s" % (base, d.log_tail(30)), flush=True)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
