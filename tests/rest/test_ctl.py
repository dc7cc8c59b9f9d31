#!/usr/bin/python3
"""test_ctl.py - glidefs-ctl against a running glidefsd: every command in
human and --json form, GLIDEFS_API / GLIDEFS_TOKEN, --api unix:PATH, the
documented exit codes (0 ok, 1 API error, 2 usage, 3 unreachable, 4 token,
5 timed out, 6 no such export, 7 scrub found damage) each with a message
that says what to do, and drain progress lines while a drain waits for a
failing store.

usage: test_ctl.py GLIDEFSD GLIDEFS_CTL
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402
from resttest import GiB, MiB  # noqa: E402

resttest.need_libnbd()

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")
CTL = resttest.arg_path(2, "glidefs-ctl")


def ctl(*args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items()
         if k not in ("GLIDEFS_API", "GLIDEFS_TOKEN", "GLIDEFS_TOKEN_FILE")}
    e.update(env or {})
    r = subprocess.run([CTL, *args], capture_output=True, text=True, env=e, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r


def token_scrubbed():
    """--token TOKEN is blanked in glidefs-ctl's argv once it runs: checked
    while it waits for an API that accepts the connection and never answers."""
    import socket
    import time
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    p = subprocess.Popen([CTL, "--api", "http://127.0.0.1:%d" % port, "--token",
                          "sekrit-token-42", "list"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        srv.settimeout(30)
        conn, _ = srv.accept()  # it has parsed its arguments and is talking to us
        with open("/proc/%d/cmdline" % p.pid, "rb") as f:
            cmdline = f.read()
        t.ok(b"sekrit-token-42" not in cmdline and b"list" in cmdline,
             "--token is blanked in /proc/PID/cmdline (%r)" % cmdline.replace(b"\0", b" "))
        conn.close()
    finally:
        p.kill()
        p.wait()
        srv.close()


def flip_mid(path):
    """Flip a bit of the middle byte of a segment object: inside a payload."""
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        at = f.tell()
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 1]))


def scrub(d, env, h):
    """scrub NAME [--deep]: 0 and "clean" on a clean store; a payload byte
    flipped: the quick scrub still 0, --deep 7 naming the segment; --json
    carries the counts; --deep on another command is a usage error.
    --repair, with the block in the daemon's cache (read through h first):
    0, the block written back; after a drain a deep scrub is clean, though
    the old segment keeps its flipped byte.
    An orphan (a segment object of a fenced epoch): 7 and "orphan KEY size
    N"; --delete-orphans: 0, deleted; clean after; elsewhere a usage error."""
    r = ctl("scrub", "vm1", env=env)
    t.ok(r.returncode == 0 and r.stdout.startswith("scrub of vm1 (quick): ") and
         r.stdout.rstrip().endswith("clean"), "scrub: clean (%r)" % r.stdout)
    r = ctl("scrub", "vm1", "--deep", "--json", env=env)
    j = json.loads(r.stdout)
    t.ok(r.returncode == 0 and j["clean"] and j["deep"] and j["blocks_checked"] > 0 and
         j["findings"] == [], "scrub --deep --json: clean (%r)" % j)
    segdir = os.path.join(d.store, "nbd", "vm1", "seg")
    seg = max(os.listdir(segdir), key=lambda n: os.path.getsize(os.path.join(segdir, n)))
    flip_mid(os.path.join(segdir, seg))
    try:
        r = ctl("scrub", "vm1", env=env)
        t.eq(r.returncode, 0, "scrub (quick) does not read payloads")
        r = ctl("scrub", "vm1", "--deep", env=env)
        t.ok(r.returncode == 7 and ("damaged nbd/vm1/seg/%s offset " % seg) in r.stdout and
             "1 damaged blocks" in r.stdout, "scrub --deep: 7, the damaged block (%r)" % r.stdout)
        r = ctl("scrub", "vm1", "--deep", "--json", env=env)
        j = json.loads(r.stdout)
        t.ok(r.returncode == 7 and not j["clean"] and j["damaged_blocks"] == 1 and
             j["findings"][0]["kind"] == "damaged", "scrub --deep --json: the finding (%r)" % j)
    finally:
        flip_mid(os.path.join(segdir, seg))
    t.eq(ctl("scrub", "vm1", "--deep", env=env).returncode, 0, "scrub --deep: clean again")
    r = ctl("compact", "vm1", "--deep", env=env)
    t.ok(r.returncode == 2 and "--deep applies to scrub only" in r.stderr, "--deep elsewhere: 2")
    r = ctl("compact", "vm1", "--repair", env=env)
    t.ok(r.returncode == 2 and "--repair applies to scrub only" in r.stderr,
         "--repair elsewhere: 2")

    # promote --force fenced the epoch before this one: its late uploads are orphans
    with open(os.path.join(d.store, "nbd", "vm1", "lease")) as f:
        epoch = json.load(f)["epoch"]
    orphan = "%016x-%016x" % (epoch - 1, 0xfffff)
    with open(os.path.join(segdir, orphan), "wb") as f:
        f.write(b"o" * 1234)
    r = ctl("scrub", "vm1", env=env)
    t.ok(r.returncode == 7 and ("orphan nbd/vm1/seg/%s size 1234\n" % orphan) in r.stdout and
         "0 damaged blocks, 0 lost snapshots, 1 orphans" in r.stdout,
         "scrub: 7, the orphan (%r)" % r.stdout)
    r = ctl("scrub", "vm1", "--delete-orphans", "--json", env=env)
    j = json.loads(r.stdout)
    t.ok(r.returncode == 0 and j["orphans_deleted"] == 1 and j["orphan_bytes"] == 1234 and
         j["findings"] == [{"kind": "orphan", "key": "nbd/vm1/seg/" + orphan, "size": 1234,
                            "deleted": True}] and
         not os.path.exists(os.path.join(segdir, orphan)),
         "scrub --delete-orphans: 0, deleted (%r)" % j)
    r = ctl("scrub", "vm1", env=env)
    t.ok(r.returncode == 0 and r.stdout.rstrip().endswith("clean"), "no orphan left")
    r = ctl("compact", "vm1", "--delete-orphans", env=env)
    t.ok(r.returncode == 2 and "--delete-orphans applies to scrub only" in r.stderr,
         "--delete-orphans elsewhere: 2")

    h.pread(MiB, 0)  # the daemon's cache now holds every block of vm1's data
    flip_mid(os.path.join(segdir, seg))
    r = ctl("scrub", "vm1", "--repair", env=env)
    t.ok(r.returncode == 0 and ("damaged nbd/vm1/seg/%s offset " % seg) in r.stdout and
         "(repaired)" in r.stdout and "1 blocks written back" in r.stdout,
         "scrub --repair: 0, the block written back (%r)" % r.stdout)
    t.eq(ctl("drain", "vm1", env=env).returncode, 0, "drain the repaired block")
    r = ctl("scrub", "vm1", "--deep", "--json", env=env)
    j = json.loads(r.stdout)
    t.ok(r.returncode == 0 and j["clean"], "after repair and drain: clean (%r)" % j)
    t.eq(h.pread(MiB, 0), b"\x42" * MiB, "the data reads back")


def main():
    # -- usage errors need no daemon --------------------------------------------
    r = ctl("--help")
    t.ok(r.returncode == 0 and "Usage:" in r.stdout, "--help: 0 and usage")
    t.eq(ctl().returncode, 2, "no command: 2")
    r = ctl("frobnicate")
    t.ok(r.returncode == 2 and "unknown command" in r.stderr, "unknown command: 2, says so")
    r = ctl("status", "../etc")
    t.ok(r.returncode == 2 and "not a valid export name" in r.stderr, "bad name: 2, says so")
    r = ctl("resize", "vm1", "lots")
    t.ok(r.returncode == 2 and "cannot parse size" in r.stderr, "bad size: 2, says so")
    r = ctl("resize", "vm1", "1000")
    t.ok(r.returncode == 2 and "multiple of 512" in r.stderr, "unaligned size: 2, says so")
    t.eq(ctl("list", "--force").returncode, 2, "--force on list: 2")
    t.eq(ctl("status").returncode, 2, "status without NAME: 2")
    t.eq(ctl("--bogus", "list").returncode, 2, "unknown option: 2")
    t.eq(ctl("--api", "ftp://x", "list").returncode, 2, "non-http --api: 2")
    port = resttest.free_tcp_port()
    r = ctl("--api", f"http://127.0.0.1:{port}", "list")
    t.ok(r.returncode == 3 and "cannot reach" in r.stderr and "GLIDEFS_API" in r.stderr,
         "API down: 3, says what to check")

    with resttest.Daemon(GLIDEFSD, sync_delay_ms=60000, api_unix=True,
                         extra_nbd={"max_dirty_age_ms": 600000}) as d:
        d.start()
        env = {"GLIDEFS_API": d.url}
        r = ctl("list", env=env)
        t.ok(r.returncode == 0 and "no exports" in r.stdout, "list (empty) via GLIDEFS_API")
        r = ctl("--api", d.url, "create", "vm1", "1G")
        t.ok(r.returncode == 0 and "created vm1" in r.stdout, "create vm1 1G")
        r = ctl("create", "vm1", "1G", env=env)
        t.ok(r.returncode == 1 and "already exists" in r.stderr, "create again: 1, says so")
        r = ctl("vhost-user", "vm1", env=env)
        t.ok(r.returncode == 1 and "vhost-user is off" in r.stderr,
             "vhost-user without servers.vhost_user.dir: 1, says so (%r)" % r.stderr)
        r = ctl("--json", "create", "vm2", "128MiB", env=env)
        t.eq(r.returncode, 0, "create --json")
        t.eq(json.loads(r.stdout).get("size_bytes"), 128 * MiB, "--json prints the API answer")

        h = d.connect("vm1")
        h.pwrite(b"\x42" * MiB, 0)
        h.flush()
        r = ctl("list", env=env)
        t.ok(r.returncode == 0 and "vm1" in r.stdout and "NAME" in r.stdout and
             "read-write" in r.stdout, "list: a table with vm1")
        r = ctl("list", "--json", env=env)
        names = [e["name"] for e in json.loads(r.stdout)["exports"]]
        t.ok("vm1" in names, "list --json")
        r = ctl("status", "vm1", env=env)
        t.ok(r.returncode == 0 and "1.0 MiB" in r.stdout and "connections:  1" in r.stdout,
             "status: dirty and connections")
        t.ok("cold start:   profile " in r.stdout, "status: the cold start line")
        r = ctl("status", "vm1", "--json", env=env)
        st = json.loads(r.stdout)
        t.eq((st["name"], st["dirty_bytes"], st["state"]), ("vm1", MiB, "read-write"),
             "status --json")
        r = ctl("status", "nosuch", env=env)
        t.ok(r.returncode == 6 and "not open" in r.stderr and "glidefs-ctl list" in r.stderr,
             "status of an unknown export: 6, with a hint")
        r = ctl("drain", "vm1", env=env)
        t.ok(r.returncode == 0 and "drained vm1: 1.0 MiB synced" in r.stdout, "drain")
        r = ctl("drain", "vm1", "--json", env=env)
        t.eq(json.loads(r.stdout).get("dirty_bytes"), 0, "drain --json")
        r = ctl("resize", "vm1", "2GiB", env=env)
        t.ok(r.returncode == 0 and "grown from 1.0 GiB to 2.0 GiB" in r.stdout, "resize")
        r = ctl("resize", "vm1", "1G", env=env)
        t.ok(r.returncode == 1 and "shrink" in r.stderr, "resize smaller: 1, says why")
        r = ctl("promote", "vm1", env=env)
        t.ok(r.returncode == 0 and "already read-write" in r.stdout, "promote (no change)")
        r = ctl("release", "vm1", env=env)
        t.ok(r.returncode == 0 and "released" in r.stdout, "release")
        r = ctl("promote", "vm1", "--force", env=env)
        t.ok(r.returncode == 0 and "is read-write" in r.stdout, "promote --force")
        r = ctl("compact", "vm1", env=env)
        t.ok(r.returncode == 0 and "compacted vm1" in r.stdout, "compact")
        r = ctl("compact", "vm1", "--json", env=env)
        t.ok("bytes_reclaimed" in json.loads(r.stdout), "compact --json")
        scrub(d, env, h)
        h.pread(4096, 0)
        r = ctl("metrics", "vm1", env=env)
        t.ok(r.returncode == 0 and "writes:" in r.stdout and "latency (us)" in r.stdout,
             "metrics: counters and latency")
        r = ctl("metrics", "vm1", "--json", env=env)
        t.ok(json.loads(r.stdout).get("writes", 0) >= 1, "metrics --json")
        r = ctl("delete", "vm1", env=env)
        t.ok(r.returncode == 1 and "connection" in r.stderr and "force" in r.stderr,
             "delete while connected: 1, mentions force")
        h.shutdown()
        r = ctl("delete", "vm1", env=env)
        t.ok(r.returncode == 0 and "the store keeps the volume" in r.stdout, "delete")
        r = ctl("delete", "vm2", "--purge", env=env)
        t.ok(r.returncode == 0 and "objects from the store" in r.stdout, "delete --purge")
        r = ctl("delete", "nosuch", env=env)
        t.eq(r.returncode, 6, "delete unknown: 6")
        r = ctl("--api", "unix:" + d.api_sock, "list")
        t.eq(r.returncode, 0, "--api unix:PATH")

        # drain progress while the store refuses uploads, then a timeout
        t.eq(ctl("create", "stuck", "1G", env=env).returncode, 0, "create stuck")
        seg = os.path.join(d.store, "nbd", "stuck", "seg")
        os.makedirs(os.path.dirname(seg), exist_ok=True)
        open(seg, "w").close()
        hs = d.connect("stuck")
        hs.pwrite(b"\x33" * MiB, 0)
        hs.flush()
        r = ctl("drain", "stuck", "--timeout", "3", env=env)
        t.eq(r.returncode, 5, "drain --timeout on a failing store: 5")
        t.ok("draining stuck: 1.0 MiB left" in r.stderr, "progress lines (not a terminal)")
        t.ok("did not finish within 3 s" in r.stderr, "the timeout is explained")
        os.unlink(seg)
        r = ctl("drain", "stuck", env=env)
        t.ok(r.returncode == 0 and "drained stuck" in r.stdout, "drain once the store works")
        hs.shutdown()
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")

    with resttest.Daemon(GLIDEFSD, token="ctl-token-123") as d:
        d.start()
        r = ctl("--api", d.url, "list")
        t.ok(r.returncode == 4 and "--token" in r.stderr and "GLIDEFS_TOKEN" in r.stderr,
             "no token: 4, says how to pass it")
        r = ctl("--api", d.url, "--token", "wrong", "list")
        t.eq(r.returncode, 4, "wrong token: 4")
        r = ctl("list", env={"GLIDEFS_API": d.url, "GLIDEFS_TOKEN": "ctl-token-123"})
        t.eq(r.returncode, 0, "GLIDEFS_TOKEN")
        r = ctl("--api", d.url, "--token", "ctl-token-123", "create", "t1", "1G")
        t.eq(r.returncode, 0, "--token")
        # the token from a file or the environment, never from argv (issue 21 item 12)
        tf = os.path.join(d.base, "token")
        with open(tf, "w") as f:
            f.write("ctl-token-123\n")
        r = ctl("--api", d.url, "--token-file", tf, "list")
        t.ok(r.returncode == 0 and "t1" in r.stdout, "--token-file FILE")
        r = ctl("list", env={"GLIDEFS_API": d.url, "GLIDEFS_TOKEN_FILE": tf,
                             "GLIDEFS_TOKEN": "wrong"})
        t.eq(r.returncode, 0, "GLIDEFS_TOKEN_FILE (before GLIDEFS_TOKEN)")
        r = ctl("--api", d.url, "--token", "wrong", "--token-file", tf, "list")
        t.eq(r.returncode, 0, "the last of --token / --token-file wins")
        with open(tf + "2", "w") as f:
            f.write("wrong\n")
        r = ctl("--api", d.url, "--token-file", tf + "2", "list")
        t.eq(r.returncode, 4, "--token-file with a wrong token: 4")
        r = ctl("--api", d.url, "--token-file", tf + "-missing", "list")
        t.ok(r.returncode == 2 and tf + "-missing" in r.stderr, "--token-file missing: 2, names it")
        open(tf + "3", "w").close()
        r = ctl("--api", d.url, "--token-file", tf + "3", "list")
        t.ok(r.returncode == 2 and "empty" in r.stderr, "empty token file: 2, says so")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
    token_scrubbed()
    rekey()
    durability()
    t.done()


def objects(d, name, kind):
    p = os.path.join(d.store, "nbd", name, kind)
    return len([x for x in os.listdir(p) if not x.startswith(".")]) if os.path.isdir(p) else 0


def durability():
    """set NAME --durability store (PATCH /api/exports/NAME): with the syncer's
    delays an hour away, a FLUSH then leaves a segment and a manifest in the
    store and nothing dirty; local again: a FLUSH leaves it dirty; status and
    metrics show the mode and the bounds; the setting outlives the export
    closing and opening again on this node; POST /api/exports takes it at
    creation; bad values are usage errors (2) or 400."""
    with resttest.Daemon(GLIDEFSD, sync_delay_ms=3600000,
                         extra_nbd={"max_dirty_age_ms": 3600000}) as d:
        d.start()
        env = {"GLIDEFS_API": d.url}
        t.eq(ctl("create", "dur", "1G", env=env).returncode, 0, "create dur")
        r = ctl("set", "dur", "--durability", "store", "--max-unsynced-s", "30",
                "--max-unsynced-bytes", "64M", env=env)
        t.ok(r.returncode == 0 and "durability store" in r.stdout and "30 s" in r.stdout,
             "set --durability store: 0 (%r %r)" % (r.stdout, r.stderr))
        h = d.connect("dur")
        segs0 = objects(d, "dur", "seg")
        h.pwrite(b"\x42" * MiB, 0)
        h.flush()
        st = json.loads(ctl("--json", "status", "dur", env=env).stdout)
        t.ok(objects(d, "dur", "seg") > segs0 and objects(d, "dur", "manifest") > 0 and
             st.get("dirty_bytes") == 0 and st["sync"].get("store_flushes", 0) >= 1,
             "store: after FLUSH a segment and a manifest, nothing dirty (%r)" % st.get("sync"))
        t.ok(st.get("durability") == "store" and st.get("max_unsynced_s") == 30 and
             st.get("max_unsynced_bytes") == 64 * MiB, "status --json: mode and bounds")
        r = ctl("status", "dur", env=env)
        t.ok("durability:   store (a flush is durable in the store)" in r.stdout,
             "status shows the mode (%r)" % r.stdout)
        m = d.req("GET", "/metrics").body
        t.ok('glidefs_durability_store{export="dur"} 1' in m and
             'glidefs_unsynced_bytes{export="dur"} 0' in m and
             'glidefs_store_flushes_total{export="dur"}' in m, "metrics: mode and exposure")
        t.eq(ctl("set", "dur", "--durability", "local", env=env).returncode, 0, "set local")
        h.pwrite(b"\x43" * MiB, MiB)
        h.flush()
        st = json.loads(ctl("--json", "status", "dur", env=env).stdout)
        t.ok(st.get("dirty_bytes", 0) > 0 and st.get("durability") == "local",
             "local: a FLUSH leaves it dirty (%r)" % st.get("dirty_bytes"))
        t.eq(ctl("set", "dur", "--durability", "store", env=env).returncode, 0, "store again")
        h.shutdown()
        # the last client gone, the export closes; it opens again in store mode
        # (the list takes no reference: a status call would keep it open)
        resttest.wait_for(lambda: all(x["name"] != "dur" for x in
                                      d.req("GET", "/api/exports").json["exports"]), 60,
                          "the export to close")
        h = d.connect("dur")
        h.pwrite(b"\x44" * 4096, 2 * MiB)
        h.flush()
        st = json.loads(ctl("--json", "status", "dur", env=env).stdout)
        t.ok(st.get("durability") == "store" and st.get("dirty_bytes") == 0,
             "reopened: still store mode (%r)" % st.get("durability"))
        h.shutdown()
        r = d.req("POST", "/api/exports", {"name": "dur2", "size_gb": 1, "durability": "store",
                                          "max_unsynced_bytes": 1048576})
        t.ok(r.status == 201 and r.json.get("durability") == "store" and
             r.json.get("max_unsynced_bytes") == 1048576, "POST with durability: 201 (%r)" % r)
        for body in ({"durability": "fast"}, {"max_unsynced_s": -1}, {"max_unsynced_s": "5"},
                     {"max_unsynced_bytes": 1.5}, {}, {"size_gb": 2}):
            r = d.req("PATCH", "/api/exports/dur2", body)
            t.ok(r.status == 400 and r.error(), "PATCH %r: 400 (%r)" % (body, r))
        t.eq(d.req("PATCH", "/api/exports/nosuch", {"durability": "store"}).status, 404,
             "PATCH of an unknown export: 404")
        t.eq(ctl("set", "dur2", env=env).returncode, 2, "set without a setting: 2")
        t.eq(ctl("set", "dur2", "--durability", "fast", env=env).returncode, 2,
             "--durability fast: 2")
        t.eq(ctl("set", "dur2", "--max-unsynced-s", "x", env=env).returncode, 2,
             "--max-unsynced-s x: 2")
        r = ctl("list", "--durability", "store", env=env)
        t.ok(r.returncode == 2 and "set only" in r.stderr, "--durability elsewhere: 2")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")


def rekey():
    """rekey NAME --data-key: rotation through the API on an encrypted export
    (the password stays in glidefsd's config), the status line, compaction
    retiring the old generation, the data unchanged; refused without
    --data-key, on an unencrypted export and read-only."""
    t.eq(ctl("rekey", "vm1").returncode, 2, "rekey without --data-key: 2")
    r = ctl("list", "--data-key")
    t.ok(r.returncode == 2 and "rekey only" in r.stderr, "--data-key elsewhere: 2, says so")
    with resttest.Daemon(GLIDEFSD, extra_storage={"encryption_password": "\"rotate me\""},
                         extra_nbd={"block_size": 65536}) as d:
        d.start()
        env = {"GLIDEFS_API": d.url}
        h = d.connect("enc")
        data = bytes(range(256)) * (4 * MiB // 256)
        h.pwrite(data, 0)
        h.flush()
        t.eq(ctl("drain", "enc", env=env).returncode, 0, "drain enc")
        r = ctl("rekey", "enc", "--data-key", env=env)
        t.ok(r.returncode == 0 and "generation 2" in r.stdout, "rekey --data-key: 0, generation 2")
        r = ctl("status", "enc", env=env)
        t.ok("data key:     generation 2 (2 held;" in r.stdout, "status shows both generations")
        st = json.loads(ctl("--json", "status", "enc", env=env).stdout)
        t.ok(st.get("key_generation") == 2 and st.get("segments_old_key", 0) > 0,
             "status --json: key_generation 2, segments under the old key (%r)"
             % st.get("segments_old_key"))
        h.pwrite(b"\x5a" * 65536, 8 * MiB)
        h.flush()
        t.eq(ctl("drain", "enc", env=env).returncode, 0, "drain after rotation")
        t.eq(ctl("compact", "enc", env=env).returncode, 0, "compact")
        st = json.loads(ctl("--json", "status", "enc", env=env).stdout)
        t.ok(st.get("key_generation") == 2 and st.get("key_generations") == 1 and
             st.get("segments_old_key") == 0,
             "after compaction: generation 1 retired, nothing under it (%r)" % st)
        m = d.req("GET", "/metrics").body
        t.ok('glidefs_key_generation{export="enc"} 2' in m, "metric glidefs_key_generation")
        t.ok(h.pread(4 * MiB, 0) == data and h.pread(65536, 8 * MiB) == b"\x5a" * 65536,
             "the data reads back")
        h.shutdown()
        with open(os.path.join(d.store, "nbd", "enc", "volume.json")) as f:
            enc = json.load(f)["encryption"]
        t.ok(enc.get("gen") == 2 and enc.get("keys") == [], "volume.json holds generation 2 only")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
    with resttest.Daemon(GLIDEFSD) as d:
        d.start()
        env = {"GLIDEFS_API": d.url}
        t.eq(ctl("create", "plain", "1G", env=env).returncode, 0, "create an unencrypted export")
        r = ctl("rekey", "plain", "--data-key", env=env)
        t.ok(r.returncode == 1 and "not encrypted" in r.stderr, "unencrypted export: 1, says so")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")


if __name__ == "__main__":
    main()
