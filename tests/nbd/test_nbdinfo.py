#!/usr/bin/python3
"""test_nbdinfo.py - glidefsd seen by nbdinfo and nbdsh, plus the daemon's
command line and listeners: --list, size, flags, block sizes, --map for
base:allocation; --version/--help; a bad config exits non-zero with one line;
a stale socket is replaced, the socket is mode 0660, a live one is not
stolen; the optional TCP listener (loopback when no address is given).

usage: test_nbdinfo.py GLIDEFSD
"""
import json
import os
import signal
import socket
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need("nbdinfo", "nbdsh")
t = nbdtest.Checker()
MiB = 1024 * 1024


def nbdinfo(*args):
    return nbdtest.run(["nbdinfo", *args])


def main():
    exe = nbdtest.glidefsd_path()
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    t.ok(r.returncode == 0 and r.stdout.startswith("glidefsd "), "--version")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    t.ok(r.returncode == 0 and "-c" in r.stdout and "--log-level" in r.stdout, "--help")
    r = subprocess.run([exe], capture_output=True, text=True)
    t.ok(r.returncode != 0 and "-c" in r.stderr, "no -c: usage error")

    with nbdtest.Daemon() as d:
        # A bad config: non-zero exit and one clear line.
        bad = os.path.join(d.base, "bad.yaml")
        with open(bad, "w") as f:
            f.write("cache:\n  dir: /tmp/x\n  disk_size_gb: lots\n")
        r = subprocess.run([exe, "-c", bad], capture_output=True, text=True, timeout=30)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        t.ok(r.returncode != 0, "bad config exits non-zero")
        t.ok(len(lines) == 1 and "error" in lines[0] and "disk_size_gb" in lines[0],
             f"bad config: one line naming the key ({lines})")
        r = subprocess.run([exe, "-c", os.path.join(d.base, "missing.yaml")],
                           capture_output=True, text=True, timeout=30)
        t.ok(r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1,
             "missing config: one line, non-zero")

        # A store that cannot be used: non-zero exit, one line, before listening.
        badstore = os.path.join(d.base, "badstore.yaml")
        with open(d.cfg) as f:
            cfg = f.read().replace(f"file://{d.store}", "file:///dev/null/store")
        with open(badstore, "w") as f:
            f.write(cfg)
        r = subprocess.run([exe, "-c", badstore], capture_output=True, text=True, timeout=60)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        t.ok(r.returncode != 0 and len(lines) == 1 and "error" in lines[0],
             f"unusable store: one line, non-zero ({lines})")
        t.ok(not os.path.exists(d.sock), "unusable store: never listened")

        # A stale socket (nobody listening) is replaced.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.sock)
        s.close()
        d.start()
        mode = stat.S_IMODE(os.stat(d.sock).st_mode)
        t.eq(oct(mode), oct(0o660), "unix socket mode 0660")
        t.ok("removed stale socket" in d.log_text(), "stale socket replaced")

        # A second daemon on the same socket refuses to start.
        d2 = nbdtest.Daemon(base=None)
        with open(d2.cfg) as f:
            cfg = f.read().replace(d2.sock, d.sock)
        with open(d2.cfg, "w") as f:
            f.write(cfg)
        r = subprocess.run([exe, "-c", d2.cfg], capture_output=True, text=True, timeout=30)
        t.ok(r.returncode != 0 and "in use" in r.stderr, "live socket is not stolen")
        d2.__exit__(None, None, None)

        # nbdinfo on a new export: created at auto_create size, all hole.
        info = json.loads(nbdinfo("--json", d.uri("info-vm")).stdout)
        e = info["exports"][0]
        t.eq(e["export-size"], 64 * MiB, "nbdinfo size (auto_create_size)")
        t.eq(e["block_size_minimum"], 512, "nbdinfo block_size_minimum")
        t.eq(e["block_size_preferred"], 4096, "nbdinfo block_size_preferred")
        t.eq(e["block_size_maximum"], 32 * MiB, "nbdinfo block_size_maximum")
        for k, want in (("is_read_only", False), ("is_rotational", False), ("can_flush", True),
                        ("can_fua", True), ("can_trim", True), ("can_zero", True),
                        ("can_fast_zero", True), ("can_cache", True), ("can_df", True),
                        ("can_multi_conn", True)):
            t.eq(e.get(k), want, f"nbdinfo {k}")
        t.ok("base:allocation" in e.get("contexts", []), "nbdinfo lists base:allocation")
        t.eq(info.get("protocol"), "newstyle-fixed", "fixed newstyle")
        t.ok(info.get("TLS") is False, "no TLS")

        # Write with nbdsh, then map: data, hole, data.
        script = ("h.pwrite(b'\\xaa' * 1048576, 0)\n"
                  "h.pwrite(b'\\xbb' * 1048576, 4194304)\n"
                  "h.trim(1048576, 4194304)\n"
                  "h.pwrite(b'\\xcc' * 131072, 8388608)\n"
                  "h.flush()\n")
        nbdtest.run(["nbdsh", "-u", d.uri("info-vm"), "-c", script])
        m = json.loads(nbdinfo("--map", "--json", d.uri("info-vm")).stdout)
        got = [(x["offset"], x["length"], x["type"]) for x in m]
        want = [(0, MiB, 0), (MiB, 7 * MiB, 3), (8 * MiB, 128 * 1024, 0),
                (8 * MiB + 128 * 1024, 56 * MiB - 128 * 1024, 3)]
        t.eq(got, want, "nbdinfo --map base:allocation (trimmed range is a hole)")
        r = nbdinfo("--map=base:allocation", "--totals", d.uri("info-vm"))
        t.ok(r.returncode == 0 and "hole" in r.stdout, "nbdinfo --map --totals")

        # nbdsh reads back what it wrote and sees the flags.
        r = nbdtest.run(["nbdsh", "-u", d.uri("info-vm"), "-c",
                         "assert h.pread(512, 0) == b'\\xaa' * 512\n"
                         "assert h.pread(512, 4194304) == bytes(512)\n"
                         "assert h.can_multi_conn() and h.can_cache() and not h.is_read_only()\n"
                         "print('nbdsh-ok')"])
        t.ok("nbdsh-ok" in r.stdout, "nbdsh read back and flags")

        # --list shows the open exports.
        lst = json.loads(nbdinfo("--list", "--json", f"nbd+unix:///?socket={d.sock}").stdout)
        names = [x["export-name"] for x in lst["exports"]]
        t.ok("info-vm" in names, f"nbdinfo --list shows the export ({names})")
        r = nbdinfo("--list", f"nbd+unix:///?socket={d.sock}")
        t.ok("GlideFS volume" in r.stdout, "--list shows a description")

        # An empty name without default_export is refused.
        r = nbdtest.run(["nbdinfo", f"nbd+unix:///?socket={d.sock}"], check=False)
        t.ok(r.returncode != 0, "empty export name refused without default_export")
        r = nbdtest.run(["nbdinfo", d.uri("bad..name/x")], check=False)
        t.ok(r.returncode != 0, "invalid export name refused")
        t.eq(d.stop(), 0, "SIGTERM: exit 0")
        t.ok("drained" in d.log_text(), "drain logged")
        t.ok(not os.path.exists(d.sock), "socket removed at exit")

    # TCP listener, given as a bare port: loopback.
    port = nbdtest.free_tcp_port()
    with nbdtest.Daemon(tcp=f":{port}") as d:
        d.start()
        nbdtest.wait_for(lambda: f"tcp 127.0.0.1 port {port}" in d.log_text(), 10,
                         "tcp listener")
        info = json.loads(nbdinfo("--json", f"nbd://127.0.0.1:{port}/tcp-vm").stdout)
        t.eq(info["exports"][0]["export-size"], 64 * MiB, "export over TCP (loopback)")
        d.signal(signal.SIGINT)
        t.eq(d.wait(60), 0, "SIGINT: drains and exits 0")
    t.done()


if __name__ == "__main__":
    main()
