#!/usr/bin/python3
"""test_scrubber.py - glidefsd's background scrub (daemon/scrubber.c,
scrub.* keys), over three runs of one daemon on one cache dir and store:

 1. scrub.interval_s 1: an export written in several segments, then a
    payload byte flipped in the store: the scrubber's passes find it —
    /metrics (glidefs_scrub_problems, _passes_total, _bytes_read_total,
    _last_success_timestamp_seconds), the status JSON's "scrub" object,
    glidefs-ctl status and a log line per pass all show it; the state
    file <cache.dir>/scrub.state records the export's pass;
 2. after a restart with interval_s 3600, the state file keeps the
    scrubbed export from being scrubbed again: two exports opened later
    (never scrubbed) get their passes, one after the other, while the
    first gets none (no log line, no pass counted, its state unchanged);
    then POST .../scrub?deep=true counts as its pass in metrics, status
    and the state file;
 3. interval_s 1 and max_gets_per_s 1 (a pass of many seconds): SIGTERM
    while a pass runs stops it at once (the log says so, and the pass
    never completes) and the daemon exits 0.

usage: test_scrubber.py GLIDEFSD [GLIDEFS_CTL]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402

resttest.need_libnbd()

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")
CTL = sys.argv[2] if len(sys.argv) > 2 else None


def daemon(base, **scrub):
    """A daemon on base (kept across runs) with these scrub.* keys."""
    d = resttest.Daemon(GLIDEFSD, base=base, sync_delay_ms=20)
    with open(d.cfg, "a") as f:
        f.write("scrub:\n" + "".join("  %s: %s\n" % kv for kv in scrub.items()))
    return d


def metric(d, name, export):
    r = d.req("GET", "/metrics")
    m = re.search(r'^%s\{export="%s"\} (\S+)$' % (name, re.escape(export)), r.body, re.M)
    return float(m.group(1)) if m else None


def scrub_status(d, name):
    r = d.req("GET", "/api/exports/" + name)
    return json.loads(r.body).get("scrub") if r.status == 200 else None


def state(d):
    try:
        with open(os.path.join(d.cache, "scrub.state")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pass_lines(text, name):
    return [ln for ln in text.splitlines()
            if "scrub: export %s: background deep pass in" % name in ln]


def run1(base):
    d = daemon(base, interval_s=1)
    with d:
        d.start()
        h = d.connect("vm1")
        for i in range(6):  # six segments: a drain each
            h.pwrite(bytes([65 + i]) * (256 * 1024), i * 256 * 1024)
            h.flush()
            t.status(d.req("POST", "/api/exports/vm1/drain"), 200, "drain %d" % i)
        segdir = os.path.join(d.store, "nbd", "vm1", "seg")
        seg = max(os.listdir(segdir), key=lambda n: os.path.getsize(os.path.join(segdir, n)))
        path = os.path.join(segdir, seg)
        with open(path, "r+b") as f:  # a payload byte, as test_ctl.py's flip_mid
            f.seek(os.path.getsize(path) // 2)
            at = f.tell()
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 1]))
        resttest.wait_for(lambda: (metric(d, "glidefs_scrub_problems", "vm1") or 0) >= 1, 30,
                          "a background pass to find the flipped byte")
        t.ok(metric(d, "glidefs_scrub_passes_total", "vm1") >= 1, "passes counted in /metrics")
        t.ok(metric(d, "glidefs_scrub_bytes_read_total", "vm1") >= 6 * 256 * 1024 - 4096,
             "the bytes a deep pass read are counted")
        t.ok(metric(d, "glidefs_scrub_last_success_timestamp_seconds", "vm1") > 1.6e9,
             "the last pass's time")
        t.ok(metric(d, "glidefs_scrub_estimated_monthly_cost_usd", "vm1") > 0,
             "the scrub's monthly cost estimate")
        s = scrub_status(d, "vm1")
        t.ok(s and s["problems"] >= 1 and s["last_time"] and s["deep"] and s["passes"] >= 1 and
             s["interval_s"] == 1 and s["est_monthly_gets"] > 0,
             "status shows the pass (%r)" % s)
        if CTL:
            r = subprocess.run([CTL, "--api", d.url, "status", "vm1"], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL, timeout=60)
            t.ok(r.returncode == 0 and re.search(r"last scrub: .*deep.* [1-9][0-9]* problems",
                                                 r.stdout) and "next scrub:" in r.stdout,
                 "glidefs-ctl status shows the last scrub (%r)" % r.stdout)
        lines = pass_lines(d.log_text(), "vm1")
        t.ok(any(re.search(r" [1-9][0-9]* problems", ln) for ln in lines),
             "a log line per pass, with the problems (%r)" % lines[-3:])
        st = state(d)
        t.ok(st and st["version"] == 1 and st["exports"]["vm1"]["last_ms"] > 0 and
             st["exports"]["vm1"]["problems"] >= 1, "the state file records vm1 (%r)" % st)
        h.shutdown()
        t.eq(d.stop(), 0, "run 1 stops cleanly")


def run2(base):
    d = daemon(base, interval_s=3600)
    with d:
        before = state(d)
        d.start()
        h1 = d.connect("vm1")  # open: the scrubber sees it, and its state
        h2 = d.connect("vm2")
        resttest.wait_for(lambda: pass_lines(d.log_text(), "vm2"), 30, "vm2's first pass")
        # vm3 opens only now: were vm1 not in the state, its pass would have
        # come before vm3's (passes run one after another, vm1 due at once)
        h3 = d.connect("vm3")
        resttest.wait_for(lambda: pass_lines(d.log_text(), "vm3"), 30, "vm3's first pass")
        t.eq(pass_lines(d.log_text(), "vm1"), [], "no pass over vm1 after the restart")
        t.eq(metric(d, "glidefs_scrub_passes_total", "vm1"), 0.0, "vm1: no pass counted")
        after = state(d)
        t.eq(after["exports"]["vm1"], before["exports"]["vm1"], "vm1's state unchanged")
        t.ok("vm2" in after["exports"] and "vm3" in after["exports"],
             "the new passes are recorded")
        s = scrub_status(d, "vm1")
        t.ok(s and s["last_time_ms"] == before["exports"]["vm1"]["last_ms"] and
             s["next_time_ms"] == s["last_time_ms"] + 3600 * 1000 and s["problems"] >= 1,
             "vm1's status: the pass of the last run, the next an interval later (%r)" % s)
        # a scrub through the API is a pass like the scrubber's
        r = d.req("POST", "/api/exports/vm1/scrub?deep=true")
        t.ok(r.status == 200 and not json.loads(r.body)["clean"], "POST scrub finds the damage")
        t.eq(metric(d, "glidefs_scrub_passes_total", "vm1"), 1.0, "and is counted")
        s = scrub_status(d, "vm1")
        t.ok(s["passes"] == 1 and s["problems"] >= 1 and
             s["last_time_ms"] > before["exports"]["vm1"]["last_ms"] and
             state(d)["exports"]["vm1"]["last_ms"] == s["last_time_ms"],
             "status and the state file show it (%r)" % s)
        for h in (h1, h2, h3):
            h.shutdown()
        t.eq(d.stop(), 0, "run 2 stops cleanly")


def run3(base):
    d = daemon(base, interval_s=1, max_gets_per_s=1)
    with d:
        d.start()
        h = d.connect("vm1")
        resttest.wait_for(lambda: "scrub: export vm1: background deep pass starts" in
                          d.log_text(), 30, "a pass over vm1 to start")
        h.shutdown()
        t.eq(d.stop(), 0, "SIGTERM during a pass: exits 0")
        log = d.log_text()
        t.ok("scrub: export vm1: background pass stopped" in log,
             "the pass is stopped, and says so")
        t.eq(pass_lines(log, "vm1"), [], "the pass never completed")


def main():
    base = tempfile.mkdtemp(prefix="glidefsd-scrubber-")
    try:
        run1(base)
        open(os.path.join(base, "glidefsd.log"), "w").close()  # each run's log on its own
        run2(base)
        open(os.path.join(base, "glidefsd.log"), "w").close()
        run3(base)
    finally:
        if not t.failed and not os.environ.get("GLIDEFS_TEST_KEEP"):
            shutil.rmtree(base, ignore_errors=True)
        else:
            sys.stderr.write("kept %s\n" % base)
    t.done()


main()
