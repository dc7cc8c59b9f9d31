#!/usr/bin/python3
"""test_api.py - every REST endpoint against a running glidefsd, with real
NBD clients: create (201/409/400), list, status, drain (200, and 504 while
the store refuses uploads), metrics JSON, resize (grow, shrink refused, a
reconnecting nbdinfo sees the new size), promote/release, compact, delete
(409 while connected, ?force=true disconnects, data comes back from the
store on reconnect, ?purge=true removes the objects), and a clean SIGTERM.

usage: test_api.py GLIDEFSD
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402
from resttest import GiB, MiB  # noqa: E402

resttest.need("nbdinfo")
resttest.need_libnbd()
import nbd  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")


def nbdinfo_size(d, name):
    r = subprocess.run(["/usr/bin/nbdinfo", "--size", d.uri(name)], capture_output=True,
                       text=True, timeout=60)
    return int(r.stdout.strip()) if r.returncode == 0 else None


def main():
    # A long sync delay keeps written data dirty until we drain it.
    with resttest.Daemon(GLIDEFSD, sync_delay_ms=60000,
                         extra_nbd={"max_dirty_age_ms": 600000}) as d:
        d.start()
        r = d.req("GET", "/healthz")
        t.status(r, 200, "GET /healthz")
        t.eq(r.json.get("status"), "ok", "healthz says ok")
        r = d.req("GET", "/api/exports")
        t.status(r, 200, "GET /api/exports")
        t.eq(r.json, {"exports": []}, "no exports at start")

        # -- create -------------------------------------------------------
        r = d.req("POST", "/api/exports", {"name": "vm1", "size_gb": 1})
        t.status(r, 201, "POST /api/exports creates vm1")
        t.eq(r.headers.get("Location"), "/api/exports/vm1", "Location header")
        for k in ("name", "size_bytes", "read_only", "connections", "dirty_bytes", "state",
                  "lease_epoch", "lease_owner", "stored_bytes", "live_bytes", "last_error",
                  "est_monthly_cost_usd", "overhead_ratio", "store_puts", "store_gets"):
            t.ok(k in (r.json or {}), f"export JSON has {k}")
        t.eq(r.json.get("size_bytes"), GiB, "created at 1 GiB")
        t.eq(r.json.get("state"), "read-write", "state read-write")
        t.eq(r.json.get("read_only"), False, "read_only false")
        t.status(d.req("POST", "/api/exports", {"name": "vm1", "size_gb": 1}), 409,
                 "POST an existing export: 409")
        t.status(d.req("POST", "/api/exports", {"name": "vm9", "size_bytes": 1000}), 400,
                 "size not a multiple of 512: 400")
        t.status(d.req("POST", "/api/exports", {"size_gb": 1}), 400, "missing name: 400")
        t.status(d.req("POST", "/api/exports", {"name": "../x", "size_gb": 1}), 400,
                 "bad name in body: 400")
        t.status(d.req("POST", "/api/exports", {"name": "vm9", "size_gb": 1, "x": 1}), 400,
                 "unknown field: 400")
        t.status(d.req("POST", "/api/exports", {"name": "vm9", "size_gb": 1, "size": "1G"}),
                 400, "two sizes: 400")
        t.status(d.req("POST", "/api/exports", {"name": "vm9", "size_gb": 1.5}), 400,
                 "fractional size_gb: 400")
        t.status(d.req("POST", "/api/exports", {"name": "vm9", "size": "lots"}), 400,
                 "unparsable size: 400")
        r = d.req("POST", "/api/exports", {"name": "vm2", "size": "128MiB"})
        t.status(r, 201, "POST with size \"128MiB\"")
        t.eq(r.json.get("size_bytes"), 128 * MiB, "size string parsed")
        # No client: the registry hands the write lease back ("idle"); a
        # resize takes it again like a connecting client would.
        resttest.wait_for(lambda: d.req("GET", "/api/exports/vm2").json.get("state") == "idle",
                          20, "vm2 idle")
        t.ok(True, "an export without clients is idle (lease handed back)")
        r = d.req("PUT", "/api/exports/vm2", {"size": "256M"})
        t.status(r, 200, "resize an idle export")
        t.eq(r.json.get("size_bytes"), 256 * MiB, "idle export grown")
        # Looking is not using: an idle export polled for its status and
        # metrics still closes after the linger (5 s), as if nobody looked.
        polls = []

        def closed():
            path = "/api/exports/vm2" + ("/metrics" if len(polls) % 2 else "")
            polls.append(d.req("GET", path).status)
            return polls[-1] == 404
        resttest.wait_for(closed, 30, "vm2 closed while its status is polled")
        t.ok(polls.count(200) >= 2, "an idle export polled (status, metrics) closes after the "
             "linger: %d polls answered before it closed" % polls.count(200))

        # -- I/O through NBD, status, drain ----------------------------------
        h = d.connect("vm1")
        t.eq(h.get_size(), GiB, "NBD client sees the created size")
        data = bytes(range(256)) * (MiB // 256)
        h.pwrite(data, 0)
        h.flush()
        h.pread(4096, 0)
        r = d.req("GET", "/api/exports/vm1")
        t.status(r, 200, "GET /api/exports/vm1")
        t.eq(r.json.get("connections"), 1, "one connection")
        t.eq(r.json.get("dirty_bytes"), MiB, "1 MiB dirty before the drain")
        t.ok(isinstance(r.json.get("sync"), dict), "status has sync progress")
        r = d.req("GET", "/api/exports")
        names = [e["name"] for e in r.json["exports"]]
        t.ok("vm1" in names, "list shows vm1")
        r = d.req("POST", "/api/exports/vm1/drain?timeout_s=60")
        t.status(r, 200, "POST drain")
        t.eq(r.json.get("bytes_synced"), MiB, "drain reports the bytes synced")
        t.eq(r.json.get("dirty_bytes"), 0, "nothing dirty after the drain")
        r = d.req("GET", "/api/exports/vm1")
        t.eq(r.json.get("dirty_bytes"), 0, "status: dirty 0")
        t.ok(r.json.get("last_sync_time") is not None, "status: last_sync_time set")
        t.ok(r.json.get("stored_bytes", 0) >= MiB, "status: stored_bytes counts the upload")

        r = d.req("GET", "/api/exports/vm1/metrics")
        t.status(r, 200, "GET metrics JSON")
        m = r.json or {}
        t.ok(m.get("writes", 0) >= 1 and m.get("write_bytes", 0) >= MiB, "metrics: writes")
        t.ok(m.get("reads", 0) >= 1 and m.get("flushes", 0) >= 1, "metrics: reads, flushes")
        t.ok(m.get("store_puts", 0) >= 1, "metrics: store PUTs")
        for k in ("cache_hits", "cache_misses", "cache_hit_ratio", "store_errors",
                  "store_retries", "oldest_dirty_age_ms", "store_get_bytes", "store_deletes",
                  "prefetched_blocks", "prefetch_hits", "prefetch_wasted_bytes",
                  "cache_restored_blocks"):
            t.ok(k in m, f"metrics has {k}")
        # the client's reads since open make the access profile (cold start)
        t.ok(m.get("profile_blocks_recorded", 0) >= 1 and m.get("first_read_ms", 0) > 0,
             "metrics: access profile recorded, time to first read (%r, %r)"
             % (m.get("profile_blocks_recorded"), m.get("first_read_ms")))
        r = d.req("GET", "/api/exports/vm1")
        t.ok(r.json.get("profile_blocks_recorded", 0) >= 1, "status: profile_blocks_recorded")
        lat = m.get("latency", {})
        t.ok(lat.get("write", {}).get("count", 0) >= 1, "metrics: write latency measured")
        t.ok(lat.get("read", {}).get("p99_us", 0) > 0, "metrics: read latency p99")

        # -- resize -----------------------------------------------------------
        r = d.req("PUT", "/api/exports/vm1", {"size_gb": 2})
        t.status(r, 200, "PUT grows vm1")
        t.eq(r.json.get("size_bytes"), 2 * GiB, "new size in the answer")
        t.eq(r.json.get("previous_size_bytes"), GiB, "previous size in the answer")
        r = d.req("PUT", "/api/exports/vm1", {"size_gb": 1})
        t.status(r, 400, "PUT shrink: 400")
        t.ok("shrink" in (r.error() or ""), "shrink refusal says so")
        t.status(d.req("PUT", "/api/exports/vm1", {"size_gb": 2}), 200, "PUT same size: 200")
        t.status(d.req("PUT", "/api/exports/vm1", {}), 400, "PUT without a size: 400")
        t.status(d.req("PUT", "/api/exports/nosuch", {"size_gb": 2}), 404, "PUT unknown: 404")
        t.eq(nbdinfo_size(d, "vm1"), 2 * GiB, "a reconnecting nbdinfo sees the new size")

        # -- promote, release, compact ---------------------------------------------
        r = d.req("POST", "/api/exports/vm1/promote")
        t.status(r, 200, "promote a read-write export: 200")
        t.eq(r.json.get("promoted"), False, "promote changed nothing")
        r = d.req("POST", "/api/exports/vm1/compact")
        t.status(r, 200, "POST compact")
        for k in ("segments_rewritten", "bytes_rewritten", "segments_deleted",
                  "bytes_reclaimed", "stored_bytes", "live_bytes"):
            t.ok(k in (r.json or {}), f"compact answers {k}")
        r = d.req("POST", "/api/exports/vm1/release")
        t.status(r, 200, "POST release")
        t.eq(r.json.get("state"), "read-only", "released: read-only")
        t.eq(r.json.get("lease_owner"), False, "released: no lease")
        t.status(d.req("POST", "/api/exports/vm1/compact"), 409, "compact when read-only: 409")
        r = d.req("PUT", "/api/exports/vm1", {"size_gb": 3})
        t.status(r, 409, "resize when read-only: 409")
        r = d.req("POST", "/api/exports/vm1/promote")
        t.status(r, 200, "promote after release")
        t.eq(r.json.get("promoted"), True, "promote changed it")
        t.eq(r.json.get("state"), "read-write", "read-write again")
        t.status(d.req("POST", "/api/exports/vm1/promote?force=true"), 200, "promote ?force")

        # -- delete ----------------------------------------------------------
        r = d.req("DELETE", "/api/exports/vm1")
        t.status(r, 409, "DELETE while a client is connected: 409")
        t.eq(h.pread(4096, 0), data[:4096], "the client still works after the refused delete")
        h.shutdown()
        r = d.req("DELETE", "/api/exports/vm1")
        t.status(r, 200, "DELETE after the client left")
        t.eq(r.json.get("deleted"), True, "deleted")
        t.ok(not os.path.exists(os.path.join(d.cache, "vm1")), "local cache of vm1 removed")
        t.ok(os.path.exists(os.path.join(d.store, "nbd", "vm1", "volume.json")),
             "the store keeps vm1")
        t.status(d.req("GET", "/api/exports/vm1"), 404, "GET a deleted export: 404")
        h = d.connect("vm1")
        t.eq(h.get_size(), 2 * GiB, "reconnect: size from the store")
        t.eq(h.pread(len(data), 0), data, "reconnect: data comes back from the store")

        # forced delete disconnects the client
        h.pwrite(b"\x5a" * 65536, 0)
        h.flush()
        r = d.req("DELETE", "/api/exports/vm1?force=true")
        t.status(r, 200, "DELETE ?force=true with a client connected")
        t.eq(r.json.get("connections_closed"), 1, "one connection closed")
        try:
            h.pread(4096, 0)
            t.ok(False, "the forced-out client is disconnected")
        except nbd.Error:
            t.ok(True, "the forced-out client is disconnected")
        del h
        h = d.connect("vm1")
        t.eq(h.pread(65536, 0), b"\x5a" * 65536, "forced delete drained first: data kept")
        h.shutdown()

        # purge
        r = d.req("DELETE", "/api/exports/vm2?purge=true")
        t.status(r, 200, "DELETE ?purge=true")
        t.eq(r.json.get("purged"), True, "purged")
        t.ok(not os.path.exists(os.path.join(d.store, "nbd", "vm2", "volume.json")),
             "purge removed the volume from the store")
        t.eq(nbdinfo_size(d, "vm2"), 64 * MiB, "purged name connects as a new volume")
        t.status(d.req("DELETE", "/api/exports/nosuch"), 404, "DELETE unknown: 404")
        t.status(d.req("POST", "/api/exports/nosuch/drain"), 404, "drain unknown: 404")
        t.status(d.req("POST", "/api/exports/nosuch/promote"), 404, "promote unknown: 404")
        t.status(d.req("GET", "/api/exports/nosuch/metrics"), 404, "metrics unknown: 404")
        t.status(d.req("POST", "/api/exports/nosuch/release"), 404, "release unknown: 404")

        # -- drain against a store that refuses uploads ---------------------------
        t.status(d.req("POST", "/api/exports", {"name": "stuck", "size_gb": 1}), 201,
                 "create stuck")
        seg = os.path.join(d.store, "nbd", "stuck", "seg")
        os.makedirs(os.path.dirname(seg), exist_ok=True)
        open(seg, "w").close()  # a file where the segment directory goes: PUTs fail
        hs = d.connect("stuck")
        hs.pwrite(b"\x77" * MiB, 0)
        hs.flush()
        r = d.req("POST", "/api/exports/stuck/drain?timeout_s=1")
        t.status(r, 504, "drain ?timeout_s=1 with the store failing: 504")
        t.eq((r.json or {}).get("dirty_bytes"), MiB, "504 says what is left")
        r = d.req("GET", "/api/exports/stuck")
        t.ok(r.json.get("last_error") is not None, "status shows the syncer's last error")
        t.ok(r.json.get("store_errors", 0) >= 1, "status counts store errors")
        t.status(d.req("DELETE", "/api/exports/stuck?force=true&timeout_s=1"), 504,
                 "delete cannot drain: 504, nothing deleted")
        t.ok(os.path.exists(os.path.join(d.cache, "stuck")), "stuck still on this node")
        hs = d.connect("stuck")  # the forced delete disconnected the first client
        os.unlink(seg)
        r = d.req("POST", "/api/exports/stuck/drain?timeout_s=60")
        t.status(r, 200, "drain once the store works again")
        t.eq(r.json.get("dirty_bytes"), 0, "everything uploaded")
        hs.shutdown()

        r = d.req("GET", "/metrics")
        t.status(r, 200, "GET /metrics")
        t.ok("glidefs_prefetched_blocks_total{" in r.body and
             "glidefs_profile_blocks_recorded{" in r.body, "metrics: cold start families")
        rc = d.stop()
        t.eq(rc, 0, "SIGTERM: glidefsd drains and exits 0")
        t.ok("Sanitizer" not in d.log_text(), "no sanitizer report")

    # Two nodes, one store: promote is refused while the other node's client
    # holds the lease, ?force=true takes it over and fences that node.
    base = tempfile.mkdtemp(prefix="glidefsd-rest-2n-")
    store = os.path.join(base, "store")
    with resttest.Daemon(GLIDEFSD, base=os.path.join(base, "a"), store=store,
                         node_id="node-a") as a, \
            resttest.Daemon(GLIDEFSD, base=os.path.join(base, "b"), store=store,
                            node_id="node-b") as b:
        a.start()
        b.start()
        ha = a.connect("shared")
        ha.pwrite(b"\x61" * 65536, 0)
        ha.flush()
        hb = b.connect("shared")
        r = b.req("GET", "/api/exports/shared")
        t.eq((r.json.get("state"), r.json.get("read_only")), ("read-only", True),
             "second node: read-only")
        r = b.req("POST", "/api/exports/shared/promote")
        t.status(r, 409, "promote while a live node holds the lease: 409")
        t.ok("force" in (r.error() or ""), "the 409 says how to force it")
        r = b.req("POST", "/api/exports/shared/compact")
        t.status(r, 409, "compact on the read-only node: 409")
        r = b.req("DELETE", "/api/exports/shared?purge=true")
        t.status(r, 409, "purge from the node without the lease: 409")
        r = b.req("POST", "/api/exports/shared/promote?force=true")
        t.status(r, 200, "promote ?force=true takes the lease over")
        t.eq((r.json.get("state"), r.json.get("promoted")), ("read-write", True),
             "second node: read-write")
        def a_fenced():
            if a.req("GET", "/api/exports/shared").json.get("state") == "fenced":
                return True
            try:  # node A notices on its next upload or heartbeat
                ha.pwrite(b"\x62" * 4096, 0)
                ha.flush()
            except nbd.Error:
                pass
            return False

        resttest.wait_for(a_fenced, 30, "node A fenced")
        t.ok(True, "first node: state fenced")
        del ha, hb
    shutil.rmtree(base, ignore_errors=True)

    # SIGTERM while an API drain waits for a store that refuses uploads: the
    # API answers 503 at once, the daemon's own drain runs out of time and it
    # exits non-zero, keeping the data in the journal.
    with resttest.Daemon(GLIDEFSD, sync_delay_ms=60000, shutdown_timeout_s=2) as d:
        d.start()
        t.status(d.req("POST", "/api/exports", {"name": "hung", "size_gb": 1}), 201,
                 "create hung")
        seg = os.path.join(d.store, "nbd", "hung", "seg")
        os.makedirs(os.path.dirname(seg), exist_ok=True)
        open(seg, "w").close()
        hh = d.connect("hung")
        hh.pwrite(b"\x44" * MiB, 0)
        hh.flush()
        out = {}

        def drain():
            out["r"] = d.req("POST", "/api/exports/hung/drain")

        th = threading.Thread(target=drain)
        th.start()
        resttest.wait_for(lambda: d.req("GET", "/api/exports/hung").json.get("state") ==
                          "draining", 20, "state draining")
        t.ok(True, "a running drain shows state \"draining\"")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        th.join(30)
        t.ok(not th.is_alive() and out["r"].status == 503,
             f"the API drain answers 503 on SIGTERM ({out.get('r')!r})")
        rc = d.proc.wait(60)
        took = time.monotonic() - t0
        t.ok(rc != 0, f"exit status non-zero when the drain cannot finish ({rc})")
        t.ok(took < 20, f"SIGTERM is not held up by the API ({took:.1f} s)")
        t.ok("stays in the journal" in d.log_text() or "stay in the journal" in d.log_text(),
             "the log says the data stays in the journal")
        del hh
    t.done()


if __name__ == "__main__":
    main()
