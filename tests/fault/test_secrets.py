#!/usr/bin/python3
"""test_secrets.py - glidefsd keeps its secrets out of cores, other
processes and its own error messages (issue 21 item 12).

  - Not dumpable: a process that is not dumpable has the files in its
    /proc/PID owned by root (the kernel's observable sign of
    PR_SET_DUMPABLE 0; the directory itself may keep its cached owner), and its soft
    core size limit is 0 (/proc/PID/limits). glidefsd runs as an unprivileged
    user here (uid 65534 through setpriv when the test runs as root), so
    that owner tells dumpable (65534) from not (0). servers.allow_core_dumps:
    true is the control: dumpable again, the core limit as started.
  - A credential pasted into storage.url (s3://KEY:SECRET@bucket) stops
    glidefsd with a clear line that does not contain it.

usage: test_secrets.py GLIDEFSD
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

FAILED = []
NOBODY = 65534


def fail(msg):
    FAILED.append(msg)
    print("FAIL - " + msg, flush=True)


def core_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4]  # the soft limit
    return None


def daemon(glidefsd, base, name, extra):
    """A glidefsd whose process runs as NOBODY (when we are root) with a core
    limit of 'unlimited' as started."""
    # ASan sets its own soft core limit of 0 unless told not to
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":disable_coredump=0").lstrip(":")
    d = fl.Glidefsd(glidefsd, os.path.join(base, name), name, size="4M", extra=extra,
                    env={"ASAN_OPTIONS": asan})
    run_as = os.getuid() == 0
    wrapper = os.path.join(d.base, "run.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nulimit -c unlimited 2>/dev/null || ulimit -c $(ulimit -Hc)\n")
        if run_as:
            f.write("exec setpriv --reuid=%d --regid=%d --clear-groups %s \"$@\"\n" %
                    (NOBODY, NOBODY, glidefsd))
        else:
            f.write("exec %s \"$@\"\n" % glidefsd)
    os.chmod(wrapper, 0o755)
    d.exe = wrapper
    if run_as:
        os.chmod(base, 0o755)
        for dp, dirs, files in os.walk(d.base):
            for n in [dp] + [os.path.join(dp, x) for x in dirs + files]:
                os.chown(n, NOBODY, NOBODY)
    return d, (NOBODY if run_as else os.getuid())


def check_dumpable(glidefsd, base, allow):
    name = "allowed" if allow else "default"
    # the config's "servers:" block is written by faultlib: add the key to it
    d, uid = daemon(glidefsd, base, name, [])
    if allow:
        with open(d.cfg) as f:
            text = f.read()
        with open(d.cfg, "w") as f:
            f.write(text.replace("servers:\n", "servers:\n  allow_core_dumps: true\n", 1))
    try:
        d.start()
        h = d.connect("vm")
        h.pwrite(b"\x5a" * 4096, 0)
        h.flush()
        if h.pread(4096, 0) != b"\x5a" * 4096:
            fail("%s: the export read back other bytes" % name)
        owner = os.stat("/proc/%d/status" % d.proc.pid).st_uid
        limit = core_limit(d.proc.pid)
        want_owner = uid if allow else 0
        want_limit = "unlimited" if allow else "0"
        print("# %s: glidefsd runs as uid %d; /proc/%d/status owned by %d, core limit %s" % (
            name, uid, d.proc.pid, owner, limit), flush=True)
        if uid == 0:
            print("# (running as root without setpriv: the owner tells nothing)")
        elif owner != want_owner:
            fail("%s: /proc/PID/status is owned by %d, want %d (%s)" % (
                name, owner, want_owner, "dumpable" if owner == uid else "not dumpable"))
        if limit != want_limit:
            fail("%s: soft core limit %s, want %s" % (name, limit, want_limit))
        if allow and "allow_core_dumps" not in d.log_text():
            fail("allowed: no warning in the log")
        h.shutdown()
        if d.stop() != 0:
            fail("%s: glidefsd did not exit 0 on SIGTERM" % name)
    finally:
        d.close()


def check_url_secret(glidefsd, base):
    d = fl.Glidefsd(glidefsd, os.path.join(base, "url"), "url", s3=False)
    with open(d.cfg) as f:
        text = f.read()
    bad = "s3://AKIAEXAMPLEKEY42:wJalrXUtnSECRETfromPASTE@my-bucket/vms"
    with open(d.cfg, "w") as f:
        f.write(text.replace("url: file://%s" % d.store, "url: %s" % bad))
    r = subprocess.run([glidefsd, "-c", d.cfg], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    print("# glidefsd with a credential in storage.url: exit %d: %s" % (
        r.returncode, out.strip()[-200:]), flush=True)
    if r.returncode == 0 or "storage.url" not in out:
        fail("a credential in storage.url: exit %d, %r" % (r.returncode, out[-300:]))
    if "AKIAEXAMPLEKEY42" in out or "SECRETfromPASTE" in out:
        fail("glidefsd echoed the credential from storage.url: %r" % out[-300:])


def main():
    glidefsd = os.path.abspath(sys.argv[1])
    fl.need_libnbd()
    if os.getuid() == 0 and not shutil.which("setpriv"):
        print("# setpriv (util-linux) missing: cannot run glidefsd as another user")
        return fl.SKIP
    base = tempfile.mkdtemp(prefix="glidefs-secrets-")
    t0 = time.monotonic()
    check_dumpable(glidefsd, base, False)
    check_dumpable(glidefsd, base, True)
    check_url_secret(glidefsd, base)
    print("SUMMARY " + json.dumps({"test": "secrets", "failures": len(FAILED),
                                   "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    if FAILED:
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
