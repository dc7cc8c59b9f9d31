#!/usr/bin/python3
"""test_batchdelete.py - compaction and purge delete with DeleteObjects
(up to 1,000 keys a request), and fall back to single DELETEs on a store
that answers it 501 NotImplemented. glidefsd on s3:// through
tests/s3/s3proxy.py, whose per-method request counts are the measure:
 1. 48 blocks written one segment each, then all overwritten: compaction
    deletes the 48 dead segments (and old manifests) in a few POSTs and no
    single DELETE;
 2. a purge (DELETE /api/exports/NAME?purge=true) removes every object of
    the volume with POSTs and one DELETE (volume.json, kept for last), and
    the store holds nothing of it afterwards;
 3. with DeleteObjects answered 501 (proxy config no_batch=1), a purge asks
    once, then deletes key by key, and still removes everything.
usage: test_batchdelete.py GLIDEFSD --s3-cache DIR   (skips, 77, without S3)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fault"))
import faultlib as fl  # noqa: E402

BS = 128 * 1024
NBLOCKS = 48


def store_keys(prefix):
    """Keys under prefix in the test bucket, listed with awscli through the proxy."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
    env.pop("AWS_SESSION_TOKEN", None)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(k, None)
    r = subprocess.run(["/usr/bin/aws", "--endpoint-url", os.environ["S3_ENDPOINT"], "s3api",
                        "list-objects-v2", "--bucket", os.environ["S3_BUCKET"], "--prefix",
                        prefix, "--output", "json"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("aws s3api list-objects-v2: " + r.stderr.strip())
    return [o["Key"] for o in json.loads(r.stdout or "{}").get("Contents", [])]


def main():
    a = fl.s3_only_test(timeout=300)
    if a is None:
        return fl.SKIP
    if not os.access("/usr/bin/aws", os.X_OK):
        print("SKIP: needs /usr/bin/aws", file=sys.stderr)
        return fl.SKIP
    base = tempfile.mkdtemp(prefix="glidefs-batchdel-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    proxy = fl.Proxy()

    def counts():
        bm = proxy.stats().get("by_method", {})
        return bm.get("POST", 0), bm.get("DELETE", 0)

    d = fl.Glidefsd(os.path.abspath(a.glidefsd), base, "node1", size="16M", api=True,
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
        check(d1 - d0 == 0 and 1 <= p1 - p0 <= 6,
              "... with %d DeleteObjects request(s) and %d single DELETE(s)"
              % (p1 - p0, d1 - d0))

        # 2. purge
        n_before = len([k for k in store_keys(prefix + "bd/")])
        st, _, body = fl.http("DELETE", d.api_url("/api/exports/bd?purge=true&force=true"),
                              timeout=120)
        p2, d2 = counts()
        left = store_keys(prefix + "bd/")
        check(st == 200 and not left and n_before > 2,
              "purge removed all %d objects of the volume (HTTP %d, %d left)"
              % (n_before, st, len(left)))
        check(1 <= p2 - p1 <= 2 and d2 - d1 <= 1,
              "... with %d DeleteObjects request(s) and %d single DELETE(s) (volume.json)"
              % (p2 - p1, d2 - d1))

        # 3. a store without DeleteObjects
        fill("bd2", 8, 3)
        n_before = len(store_keys(prefix + "bd2/"))
        proxy._get("/__proxy__/config", no_batch=1)
        st, _, body = fl.http("DELETE", d.api_url("/api/exports/bd2?purge=true&force=true"),
                              timeout=120)
        p3, d3 = counts()
        left = store_keys(prefix + "bd2/")
        check(st == 200 and not left,
              "without DeleteObjects the purge still removed all %d objects (HTTP %d, %d left)"
              % (n_before, st, len(left)))
        check(p3 - p2 == 1 and d3 - d2 >= n_before,
              "... asking for DeleteObjects once (%d) and then deleting one by one (%d)"
              % (p3 - p2, d3 - d2))
        check("does not implement DeleteObjects" in d.log_text(),
              "the log says the store lacks DeleteObjects")
        reports = d.sanitizer_reports()
        check(not reports, "no sanitizer reports %s" % reports[:3])
    except Exception as e:
        check(False, "unexpected: %r" % e)
    finally:
        try:
            proxy._get("/__proxy__/config", no_batch=0)
        except Exception:
            pass
        d.close()
    if failed:
        print("(kept %s)\nlog tail:\n%s" % (base, d.log_tail(30)), flush=True)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
