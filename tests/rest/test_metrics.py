#!/usr/bin/python3
"""test_metrics.py - GET /metrics: Prometheus text that `promtool check
metrics` accepts without a complaint, HELP and TYPE for every family, the
export label on every per-export sample, units in the names, counters that
move with real NBD I/O (reads, writes, flushes, trims, cache, store PUTs),
latency histograms per operation with cumulative buckets, and the figures
of two exports kept apart.

usage: test_metrics.py GLIDEFSD
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402
from resttest import MiB  # noqa: E402

resttest.need("promtool")
resttest.need_libnbd()

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels): value} and {family: type}."""
    samples, types, helps = {}, {}, set()
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ", 3)
            types[name] = typ
        elif ln.startswith("# HELP "):
            helps.add(ln.split(" ", 3)[2])
        elif ln and not ln.startswith("#"):
            m = SAMPLE.match(ln)
            if m:
                samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types, helps


def value(samples, name, export, extra=""):
    return samples.get((name, f'{{export="{export}"{extra}}}'))


def main():
    with resttest.Daemon(GLIDEFSD, sync_delay_ms=60000,
                         extra_nbd={"max_dirty_age_ms": 600000}) as d:
        d.start()
        r = d.req("GET", "/metrics")
        t.status(r, 200, "GET /metrics with no exports")
        t.ok(r.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
             "Prometheus content type")
        p = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=r.body,
                           capture_output=True, text=True)
        t.eq((p.returncode, p.stdout + p.stderr), (0, ""), "promtool: no exports")

        a = d.connect("alpha")
        a.pwrite(b"\x11" * MiB, 0)
        a.flush()
        for _ in range(5):
            a.pread(65536, 0)
        a.trim(MiB // 2, 0)
        b = d.connect("beta")
        b.pwrite(b"\x22" * 4096, 0)
        t.status(d.req("POST", "/api/exports/alpha/drain"), 200, "drain alpha")

        r = d.req("GET", "/metrics")
        t.status(r, 200, "GET /metrics")
        p = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=r.body,
                           capture_output=True, text=True)
        t.eq(p.returncode, 0, "promtool check metrics passes")
        t.eq(p.stdout + p.stderr, "", "promtool has no lint complaint")
        samples, types, helps = parse(r.body)
        t.eq(set(types), helps, "every family has HELP and TYPE")
        for name in [n for (n, _) in samples]:
            fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            if fam not in types:
                t.ok(False, f"sample {name} has no TYPE")
                break
        else:
            t.ok(True, "every sample belongs to a typed family")
        for fam, typ in types.items():
            t.ok(fam.startswith("glidefs_"), f"{fam}: glidefs_ prefix")
            if typ == "counter":
                t.ok(fam.endswith("_total"), f"{fam}: counter ends in _total")
        per_export = [k for k in samples if k[0] not in ("glidefs_build_info", "glidefs_exports",
                                                         "glidefs_store_conditional_writes")]
        t.ok(all('export="' in lbl for (_, lbl) in per_export), "every per-export sample has export=")

        want = {
            "glidefs_reads_total": "counter", "glidefs_read_bytes_total": "counter",
            "glidefs_writes_total": "counter", "glidefs_write_bytes_total": "counter",
            "glidefs_flushes_total": "counter", "glidefs_trims_total": "counter",
            "glidefs_journal_syncs_total": "counter",
            "glidefs_trim_bytes_total": "counter", "glidefs_cache_hits_total": "counter",
            "glidefs_cache_misses_total": "counter", "glidefs_cache_hit_ratio": "gauge",
            "glidefs_cached_bytes": "gauge", "glidefs_dirty_bytes": "gauge",
            "glidefs_store_requests_total": "counter",
            "glidefs_store_transfer_bytes_total": "counter",
            "glidefs_store_errors_total": "counter", "glidefs_store_retries_total": "counter",
            "glidefs_oldest_dirty_age_seconds": "gauge",
            "glidefs_last_sync_timestamp_seconds": "gauge",
            "glidefs_stored_bytes": "gauge", "glidefs_live_bytes": "gauge",
            "glidefs_store_overhead_ratio": "gauge",
            "glidefs_estimated_monthly_cost_usd": "gauge",
            "glidefs_request_duration_seconds": "histogram", "glidefs_connections": "gauge",
            "glidefs_nbd_reliefs_total": "counter",
            "glidefs_store_conditional_writes": "gauge", "glidefs_store_lax": "gauge",
        }
        for fam, typ in want.items():
            t.eq(types.get(fam), typ, f"{fam} is a {typ}")

        t.ok(value(samples, "glidefs_writes_total", "alpha") >= 1, "alpha: writes counted")
        t.ok(value(samples, "glidefs_write_bytes_total", "alpha") >= MiB, "alpha: bytes written")
        t.ok(value(samples, "glidefs_reads_total", "alpha") >= 5, "alpha: reads counted")
        t.ok(value(samples, "glidefs_flushes_total", "alpha") >= 1, "alpha: flushes counted")
        t.ok(value(samples, "glidefs_journal_syncs_total", "alpha") >= 1,
             "alpha: journal syncs counted")
        t.ok(value(samples, "glidefs_trims_total", "alpha") >= 1, "alpha: trims counted")
        t.ok(value(samples, "glidefs_cache_hits_total", "alpha") >= 1, "alpha: cache hits")
        t.ok(0 < value(samples, "glidefs_cache_hit_ratio", "alpha") <= 1, "alpha: hit ratio")
        t.ok(value(samples, "glidefs_store_requests_total", "alpha", ',op="put"') >= 1,
             "alpha: store PUTs")
        t.ok(value(samples, "glidefs_store_transfer_bytes_total", "alpha", ',op="put"') >=
             MiB // 2, "alpha: bytes uploaded")
        t.eq(value(samples, "glidefs_dirty_bytes", "alpha"), 0.0, "alpha: drained, nothing dirty")
        t.ok(value(samples, "glidefs_last_sync_timestamp_seconds", "alpha") > 1e9,
             "alpha: last sync time in seconds since the epoch")
        t.eq(value(samples, "glidefs_dirty_bytes", "beta"), 4096.0, "beta: 4 KiB dirty")
        # the start-up probe of the file:// store: it honours conditional writes
        t.eq(samples.get(("glidefs_store_conditional_writes", '{result="ok"}')), 1.0,
             "the store's conditional writes: probed ok at start-up")
        t.eq(value(samples, "glidefs_store_lax", "alpha"), 0.0, "alpha: the store is not lax")
        t.ok(value(samples, "glidefs_oldest_dirty_age_seconds", "beta") >= 0,
             "beta: oldest dirty age")
        t.eq(value(samples, "glidefs_writes_total", "beta"), 1.0, "beta: its own writes only")
        t.eq(value(samples, "glidefs_connections", "alpha"), 1.0, "alpha: one connection")
        t.eq(samples.get(("glidefs_exports", "")), 2.0, "two exports open")

        # histograms: cumulative, +Inf equals _count, per op
        for op in ("read", "write", "flush", "trim"):
            lbl = f'{{export="alpha",op="{op}"'
            buckets = sorted((float(re.search(r'le="([^"]+)"', k[1]).group(1)), v)
                             for k, v in samples.items()
                             if k[0] == "glidefs_request_duration_seconds_bucket" and
                             k[1].startswith(lbl))
            counts = [v for _, v in buckets]
            total = samples.get(("glidefs_request_duration_seconds_count", lbl + "}"))
            t.ok(len(buckets) > 10 and counts == sorted(counts), f"{op}: cumulative buckets")
            t.ok(buckets and buckets[-1][0] == float("inf") and counts[-1] == total,
                 f"{op}: +Inf bucket equals _count")
            t.ok(total >= 1, f"{op}: requests measured ({total})")
        a.shutdown()
        b.shutdown()
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
    t.done()


if __name__ == "__main__":
    main()
