#!/usr/bin/python3
"""test_laxstore.py - a store that ignores conditional writes.

s3rver behind tests/s3/s3proxy.py, the proxy told to ignore If-None-Match
and If-Match on PUT (as older Ceph RGW and MinIO releases, s3rver itself and
several gateways do). Checked: glidefsd's start-up probe reports it (log,
/healthz with a warning, the export's JSON, /metrics); one node alone still
creates and writes a volume and resumes its own lease after a restart; a
second node attaches read-only and its promote and forced promote are
refused (409) naming the reason, also once the first node handed the lease
back; a node with storage.unsafe_accept_split_brain_on_lax_store takes it;
the probe's scratch object is gone. The same daemons on the honest proxy
report "ok".

usage: test_laxstore.py GLIDEFSD [--s3-cache DIR]  (skips without node/npm)
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import Checker, Cluster, MiB, drop, fl, pattern  # noqa: E402

SIZE = 16 * MiB
LAX_MSG = "does not honour conditional writes"


def s3_keys(prefix):
    """Keys under prefix in the test bucket, listed by awscli through the
    proxy; None without awscli."""
    aws = "/usr/bin/aws"
    if not os.access(aws, os.X_OK):
        return None
    env = dict(os.environ, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
    env.pop("AWS_SESSION_TOKEN", None)
    r = subprocess.run([aws, "--endpoint-url", os.environ["S3_ENDPOINT"], "s3api",
                        "list-objects-v2", "--bucket", os.environ["S3_BUCKET"], "--prefix",
                        prefix, "--output", "json"], env=env, capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("aws s3api list-objects-v2: " + r.stderr.strip())
    return [o["Key"] for o in json.loads(r.stdout or "{}").get("Contents", [])]


def main():
    a = fl.s3_only_test(timeout=300)
    if a is None:
        return fl.SKIP
    exe = os.path.abspath(a.glidefsd)
    c = Checker()
    proxy = fl.Proxy()
    cl = Cluster(exe, "laxstore")
    api = cl.api
    try:
        honest = cl.node("honest")
        c.eq(api(honest, "GET", "/healthz")[1].get("store_conditional_writes"), "ok",
             "the strict proxy: conditional writes honoured")
        honest.kill()

        c.ok(proxy._get("/__proxy__/config", ignore_conditions=1).get("ok"),
             "the proxy ignores conditional PUTs from now on")
        A = cl.node("a")
        hz = api(A, "GET", "/healthz")[1]
        c.eq(hz.get("status"), "ok", "healthz: still live")
        c.eq(hz.get("store_conditional_writes"), "ignored", "healthz: conditional writes ignored")
        c.ok(any("refused" in w for w in hz.get("warnings", [])),
             "healthz: a warning says takeovers are refused (%s)" % hz.get("warnings"))
        c.ok("ignores conditional writes" in A.log_text(), "the log says so at start-up")

        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "one node alone: read-write on a new volume")
        data = pattern(1, 1 * MiB)
        ha.pwrite(data, 0)
        ha.flush()
        c.eq(api(A, "POST", "/api/exports/vm1/drain")[0], 200, "A drains")
        st, ex = api(A, "GET", "/api/exports/vm1")
        c.eq(ex.get("store_conditional_writes"), "ignored", "the export reports it")
        st, _, body = fl.http("GET", A.api_url("/metrics"))
        text = body.decode()
        c.ok('glidefs_store_conditional_writes{result="ignored"} 1' in text,
             "/metrics: glidefs_store_conditional_writes{result=\"ignored\"} 1")
        c.ok('glidefs_store_lax{export="vm1"} 1' in text, "/metrics: glidefs_store_lax 1")

        # A restarts on its own cache dir: its own lease, resumed
        drop(ha)
        c.eq(A.stop(), 0, "A stops (drains, hands the lease back)")
        cl.start(A)
        ha = A.connect("vm1")
        c.eq(ha.is_read_only(), 0, "A after a restart: read-write again (its own lease)")
        c.ok(ha.pread(len(data), 0) == data, "A reads its data")

        B = cl.node("b")
        hb = B.connect("vm1")
        c.eq(hb.is_read_only(), 1, "B attaches read-only")
        st, body = api(B, "POST", "/api/exports/vm1/promote?force=true")
        c.ok(st == 409 and LAX_MSG in body.get("error", ""),
             "B: forced promote refused, naming the store (%d %s)" % (st, body.get("error")))
        c.eq(api(A, "GET", "/api/exports/vm1")[1].get("lease_owner"), True, "A still writes")
        c.ok(B.log_text().count("refusing to take the write lease") >= 1, "B's log says why")
        # A hands the lease back: taking it is still a takeover from another node
        c.eq(api(A, "POST", "/api/exports/vm1/drain")[0], 200, "A drains")
        drop(ha)
        fl.wait_for(lambda: cl.api(A, "GET", "/api/exports/vm1")[1].get("state") == "idle", 20,
                    "A to hand the lease back")
        st, body = api(B, "POST", "/api/exports/vm1/promote")
        c.ok(st == 409 and LAX_MSG in body.get("error", ""),
             "B: promote of a handed-back lease refused too (%d %s)" % (st, body.get("error")))
        c.eq(hb.is_read_only(), 1, "B stays read-only")

        # an operator who accepts the risk
        C = cl.node("c", storage_extra={"unsafe_accept_split_brain_on_lax_store": "true"})
        hz = api(C, "GET", "/healthz")[1]
        c.eq(hz.get("unsafe_accept_split_brain_on_lax_store"), True, "C: the option is set")
        c.ok(any("allowed" in w for w in hz.get("warnings", [])), "C: healthz warns it is allowed")
        hc = C.connect("vm1")
        c.eq(hc.is_read_only(), 0, "C takes the handed-back lease on the lax store")
        c.ok(hc.pread(len(data), 0) == data, "C reads A's data")
        c.ok("as storage.unsafe_accept_split_brain_on_lax_store allows" in C.log_text(),
             "C's log says it took the risk")
        drop(hc)
        drop(hb)
        # the probes cleaned up after themselves
        left = s3_keys(cl.prefix + "/probe/")
        if left is not None:
            c.ok(len(s3_keys(cl.prefix + "/nbd/vm1/")) > 2, "awscli lists the volume's objects")
            c.eq(left, [], "no probe object left in the store (aws s3api list-objects-v2)")
    finally:
        try:
            proxy._get("/__proxy__/config", ignore_conditions=0)
        except OSError:
            pass
        san = cl.close()
    for name, rep in san:
        c.ok(False, "sanitizer report in %s's log: %s" % (name, rep))
    c.done()


if __name__ == "__main__":
    sys.exit(main() or 0)
