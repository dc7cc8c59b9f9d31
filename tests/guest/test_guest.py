#!/usr/bin/python3
"""test_guest.py - a real Linux guest (QEMU, TCG) on a glidefsd export.

  test_guest.py life  --store file|s3 [--tls] GLIDEFSD GLIDEFS_IMAGE CACHE_DIR
  test_guest.py crash --store file|s3 GLIDEFSD GLIDEFS_IMAGE CACHE_DIR
  test_guest.py vhost --store file GLIDEFSD GLIDEFS_IMAGE CACHE_DIR
  test_guest.py vhostcrash --store file GLIDEFSD GLIDEFS_IMAGE CACHE_DIR

CACHE_DIR holds the kernel and initramfs (mkguest.py builds them once).

life  - scenario 1, life of a VM: guest A formats the export (busybox mke2fs),
        writes a tree of random files, records their checksums on the disk,
        syncs, powers off. The export is drained (REST API, else SIGTERM) and
        the daemon stopped; a daemon on an empty cache dir with the same
        store serves guest B, which verifies every checksum. The volume is
        exported with glidefs-image and the host's `e2fsck -fn` must find it
        clean. With --tls, guest A's disk goes over NBD with TLS (issue 26): glidefsd
        with servers.nbd.tls: require on a loopback TCP port, certificates
        from tests/tls/tlscerts.py, QEMU with tls-creds-x509 (a client
        certificate: mutual TLS); glidefsd's log must show the completed
        handshake. Every other guest (all of them without --tls) uses the
        unix socket in plaintext.
        Then scenario 3, scale to zero and wake: the export is deleted (REST
        DELETE, else SIGTERM and removing the export's cache), no file of it
        may be left in that cache dir, and guest C on a third daemon (a third
        cache dir) reads everything back; e2fsck again.
vhost - vhost-user-blk (issue 30): glidefsd with servers.vhost_user.dir,
        POST /api/exports/vm1/vhost-user; guest A (RAM in a shared memfd,
        -device vhost-user-blk-pci) formats, writes the tree, syncs, and
        fstrims 16 MiB it deleted (the volume must count the trimmed bytes
        and the flushes); guest B on the same socket verifies every file;
        drain, SIGTERM (the socket goes), e2fsck of the exported image.
vhostcrash - backend restart under a live guest (issue 30, reconnect): an
        imported ext4 image on vhost-user-blk, QEMU's chardev with
        reconnect=1, the crashwriter writing 16 files (dd conv=fsync, sync
        DIR). glidefsd dies three times mid-writes and is restarted with the
        same config: at its GLIDEFSD_VHOST_FAULT hook right after a request
        is marked in flight (the restarted one must log that it resubmitted
        1 request), right after a request's used entry is out but before
        its mark is cleared (it must say that head was completed and not
        run again, and resubmit nothing), and by SIGKILL at a random moment.
        Each time the socket file stays, the new process serves it again by
        itself and QEMU reconnects. The guest must write all its files
        without an I/O error (dd, sync, console) and unmount; a second guest
        reads every durable file back; drain, SIGTERM, e2fsck -fn clean.
crash - scenario 2, crash under a live guest: the host makes an ext4 image
        (with a journal) and imports it with glidefs-image; the guest writes
        files in a loop, each made durable with dd conv=fsync and sync DIR,
        and reports each durable one. First glidefsd is replaced 5 times
        with `glidefsd --takeover` (issue 27), each after one more durable
        file: no I/O error in the guest (console and dd/sync), QEMU's one
        NBD connection id taken over by each new process. Then glidefsd
        gets SIGKILL mid-run; a daemon
        restarted on the same cache dir serves a new guest, which mounts (the
        journal replays), must find every reported file intact, and unmounts
        cleanly; e2fsck -fn of the exported image is clean.

Each scenario prints what it measured: boot-to-prompt time, in-guest `sync`
time for 64 MiB of dirty data, bytes verified. Exit 77 (skip) without
qemu-system-x86_64 or busybox-static.
"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tls"))
import guestlib as gl  # noqa: E402
import tlscerts  # noqa: E402

GUEST_TIMEOUT = 150      # one guest run, generous for TCG on a loaded machine
TAKEOVERS = 5            # crash: glidefsd replaced under the live guest first (issue 27)
VHOST_FILES = 16         # vhostcrash: durable files the guest writes, then powers off
t = gl.Checker()


def mib(n):
    return "%.1f MiB" % (n / 1048576)


class Run:
    def __init__(self, a):
        self.a = a
        self.base = tempfile.mkdtemp(prefix="glidefs-guest-%s-" % a.scenario)
        self.kernel, self.initrd = gl.ensure_guest(a.cache)
        self.store = gl.Store(a.store, self.base,
                              "guest-%s-%d-%d" % (a.scenario, os.getpid(), int(time.time())))
        self.daemons = []
        self.guests = []
        self.measured = []
        self.keep = False
        self.certs = None

    def tls_certs(self):
        """The tls suite's certificates (made once per run), or None without
        certtool/psktool (then the TLS guest runs in plaintext, said loudly)."""
        if self.certs is None and tlscerts.have_tools():
            self.certs = tlscerts.make(os.path.join(self.base, "tls"))
        return self.certs

    def daemon(self, name, cache, **cfg):
        d = gl.Daemon(os.path.abspath(self.a.glidefsd), self.base, name,
                      os.path.join(self.base, cache), self.store, **cfg)
        self.daemons.append(d)
        d.start()
        print("# glidefsd %s up (cache %s, REST API %s)" % (name, cache,
                                                            "yes" if d.api else "not served"),
              flush=True)
        return d

    def guest(self, d, export, mode, disk=None, **params):
        if disk is None:
            disk = d.disk(export, os.path.join(self.certs, "client") if d.tls else None)
        g = gl.Guest(self.kernel, self.initrd, disk, mode,
                     os.path.join(self.base, "guest-%s-%d.log" % (mode, len(self.guests))),
                     params=params)
        self.guests.append(g)
        return g

    def run_guest(self, d, export, mode, disk=None, **params):
        g = self.guest(d, export, mode, disk=disk, **params)
        t0 = time.monotonic()
        try:
            g.run(GUEST_TIMEOUT)
        except Exception as e:
            t.ok(False, "guest %s on %s: %s" % (mode, d.name, e))
            raise
        t.ok(True, "guest %s on %s: ran and powered off (%.1f s, boot-to-prompt %.2f s)"
             % (mode, d.name, time.monotonic() - t0, g.boot_s() or -1))
        return g

    def measure(self, what, g, verified=None):
        tm = g.times()
        if verified is not None and "verify" in tm:
            tm["verify"] = (tm["verify"][0], verified)
        boot = g.boot_s()
        line = "MEASURED %s: boot-to-prompt %.2f s" % (what, boot if boot else -1)
        if "sync64" in tm:
            s, dirty = tm["sync64"]
            line += ", sync of %s dirty: %.0f ms" % (mib(dirty or 0), s * 1000)
            t.ok((dirty or 0) >= 56 << 20, "%s: the sync64 measurement had %s dirty (>= 56 MiB)"
                 % (what, mib(dirty or 0)))
        if "verify" in tm:
            s, n = tm["verify"]
            line += ", verified %d bytes (%s) in %.1f s" % (n or 0, mib(n or 0), s)
        self.measured.append(line)
        print(line, flush=True)

    def image_export(self, export, what):
        """glidefs-image export on a fresh cache dir, then e2fsck -fn."""
        cfg = os.path.join(self.base, "export-%s.yaml" % what)
        gl.write_config(cfg, os.path.join(self.base, "cache-export-%s" % what), self.store)
        img = os.path.join(self.base, "%s-%s.img" % (export, what))
        rc, out = gl.image(self.a.image, "export", cfg, export, img)
        if not t.eq(rc, 0, "glidefs-image export %s (%s)" % (export, what)):
            print(out)
            return
        rc, out = gl.e2fsck(img)
        if not t.eq(rc, 0, "host e2fsck -fn of the exported image is clean (%s)" % what):
            print(out)
        os.unlink(img)

    def drain_and_stop(self, d, export):
        if d.api:
            st, body = d.http("POST", "/api/exports/%s/drain" % export, timeout=120)
            t.eq(st, 200, "REST drain of %s on %s: %s" % (export, d.name, body))
            st, body = d.http("GET", "/api/exports/%s" % export)
            if st == 200:
                t.eq(body.get("dirty_bytes"), 0, "after drain: dirty_bytes 0")
        else:
            print("# no REST API: SIGTERM drains every export", flush=True)
        t.eq(d.stop(), 0, "glidefsd %s: SIGTERM, drained, exit 0" % d.name)

    def close(self, failed):
        for g in self.guests:
            g.kill()
        for d in self.daemons:
            d.close()
        if failed:
            for d in self.daemons:
                sys.stderr.write("--- glidefsd %s log ---\n%s\n" % (d.name, d.log_tail()))
            for g in self.guests:
                sys.stderr.write("--- guest %s console (%s) ---\n%s\n"
                                 % (g.mode, g.log_path, g.tail(60)))
        san = [ln for d in self.daemons for ln in d.log_text().splitlines()
               if "Sanitizer" in ln or "runtime error:" in ln]
        t.ok(not san, "no sanitizer report in the glidefsd logs" +
             (": " + san[0] if san else ""))
        if os.environ.get("GLIDEFS_TEST_KEEP"):
            print("# kept %s" % self.base)
        else:
            shutil.rmtree(self.base, ignore_errors=True)


def life(r):
    export = "vm1"
    # -- scenario 1: life of a VM ----------------------------------------------
    # guest A over TLS (guest_life): the one boot of the suite that does (CI time)
    certs = r.tls_certs() if r.a.tls else None
    if certs:
        d1 = r.daemon("d1", "cache1", tls=os.path.join(certs, "server"))
    else:
        if r.a.tls:
            print("# SKIP TLS: certtool/psktool not found (apt-get install gnutls-bin): "
                  "guest A runs over the unix socket in plaintext", flush=True)
        d1 = r.daemon("d1", "cache1")
    a = r.run_guest(d1, export, "writer", mib=16, sync64=1)
    if d1.tls:
        sessions = d1.tls_sessions()
        t.ok(sessions, "guest A's disk was served over TLS (glidefsd log: %s)"
             % (sessions[:1] or "no completed TLS handshake"))
        t.ok("TLS is required" not in d1.log_text(),
             "no plaintext NBD option reached glidefsd d1 (servers.nbd.tls: require)")
    written = a.files()
    total = sum(s for _, s in written.values())
    t.ok(len(written) >= 10 and total >= 16 << 20,
         "guest A wrote %d files, %s, and their checksums" % (len(written), mib(total)))
    r.measure("scenario 1, guest A (writer)", a)
    r.drain_and_stop(d1, export)

    d2 = r.daemon("d2", "cache2")   # empty cache, same store
    b = r.run_guest(d2, export, "verify", sync64=1)
    t.ok(b.files() == written, "guest B (empty cache, same store) read back every file "
         "with the checksum guest A wrote (%d files)" % len(written))
    r.measure("scenario 1, guest B (verify)", b)

    # -- scenario 3: scale to zero (on d2), wake on d3 --------------------------
    cache2 = d2.cache
    if d2.api:
        # QEMU has exited; wait until glidefsd has seen the connection go
        def idle():
            st, body = d2.http("GET", "/api/exports/%s" % export)
            return st == 404 or (st == 200 and body.get("connections") == 0)
        gl.wait_for(idle, 30, "export %s to have no connections" % export)
        st, body = d2.http("DELETE", "/api/exports/%s" % export, timeout=120)
        t.ok(st in (200, 204), "REST DELETE /api/exports/%s: %s %s" % (export, st, body))
        t.eq(d2.stop(), 0, "glidefsd d2 exits 0")
    else:
        print("# no REST API: scale to zero = SIGTERM (drain) + remove the export's cache",
              flush=True)
        t.eq(d2.stop(), 0, "glidefsd d2: SIGTERM, drained, exit 0")
        shutil.rmtree(os.path.join(cache2, export), ignore_errors=True)
    left = gl.files_under(cache2, export)
    t.ok(not left, "no file of %s left in d2's cache dir%s" % (export, ": %s" % left
                                                                if left else ""))
    r.image_export(export, "after-scenario-1")

    d3 = r.daemon("d3", "cache3")
    c = r.run_guest(d3, export, "verify", sync64=1)
    t.ok(c.files() == written, "guest C (scaled to zero, woken on a new cache dir) read back "
         "every file (%d)" % len(written))
    r.measure("scenario 3, guest C (wake)", c)
    t.eq(d3.stop(), 0, "glidefsd d3 exits 0")
    r.image_export(export, "after-scenario-3")


def import_ext4(r, export):
    """A host-made ext4 image (with a journal) imported as export."""
    img = os.path.join(r.base, "ext4.img")
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    rr = subprocess.run([gl.which("mkfs.ext4"), "-q", "-F", "-L", "crash", img],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t.eq(rr.returncode, 0, "host mkfs.ext4 (with a journal) " + rr.stdout.strip())
    cfg = os.path.join(r.base, "import.yaml")
    gl.write_config(cfg, os.path.join(r.base, "cache-import"), r.store)
    rc, out = gl.image(r.a.image, "import", cfg, export, img)
    if not t.eq(rc, 0, "glidefs-image import of the ext4 image"):
        print(out)
        return False
    os.unlink(img)
    return True


def crash(r):
    export = "crash1"
    if not import_ext4(r, export):
        return

    # A longer sync delay: at the kill, the newest files are only in the
    # journal and older ones already in the store.
    d1 = r.daemon("d1", "cache1", sync_delay_ms=1500)
    g = r.guest(d1, export, "crashwriter", sync64=1)
    g.start()
    # Issue 27 first: TAKEOVERS replacements of glidefsd under the live
    # guest, each after one more durable file (so between two rounds of
    # write, fsync, sync): the guest must notice nothing, and its one NBD
    # connection moves from process to process (every file the guest made
    # durable is checked after the crash below).
    pids = [d1.proc.pid]
    for k in range(TAKEOVERS):
        n0 = g.count("DURABLE")
        g.wait_event(lambda e: e[1] in ("FAIL", "IOERR") or
                     (e[1] == "DURABLE" and g.count("DURABLE") > n0),
                     GUEST_TIMEOUT, "a durable file before takeover %d" % (k + 1))
        if g.of("FAIL") or g.of("IOERR"):
            break
        ok, why = d1.takeover()
        if not t.ok(ok, "takeover %d under the live guest (after %d durable files)%s"
                    % (k + 1, g.count("DURABLE"), "" if ok else ": %s" % why)):
            break
        pids.append(why)
    n0 = g.count("DURABLE")
    g.wait_event(lambda e: e[1] in ("FAIL", "IOERR") or
                 (e[1] == "DURABLE" and g.count("DURABLE") > n0),
                 GUEST_TIMEOUT, "a durable file after the last takeover")
    t.ok(not g.of("FAIL") and not g.of("IOERR"),
         "the guest saw no I/O error through %d takeovers%s" % (len(pids) - 1,
         ": %s" % (g.of("FAIL") + g.of("IOERR"))[:1] if g.of("FAIL") or g.of("IOERR") else ""))
    log = d1.log_text()
    first = re.findall(r"glidefsd\[%d\]: info: connection (\d+): export %s \(" % (pids[0], export),
                       log)
    moved = [re.findall(r"glidefsd\[%d\]: info: connection (\d+): export %s \([^)]*\), "
                        r"taken over" % (p, export), log) for p in pids[1:]]
    t.ok(len(first) == 1 and len(pids) == TAKEOVERS + 1 and all(m == first for m in moved),
         "QEMU's NBD connection %s was taken over by each of the %d new processes, never "
         "made again (%s)" % (first, len(pids) - 1, moved))
    errs = [ln for _, ln in g.lines if "I/O error" in ln or "EXT4-fs error" in ln]
    t.ok(not errs, "no I/O error on the guest's console through the takeovers%s"
         % (": %s" % errs[:2] if errs else ""))
    want = max(12, g.count("DURABLE") + 2)
    g.wait_event(lambda e: e[1] == "FAIL" or (e[1] == "DURABLE" and g.count("DURABLE") >= want),
                 GUEST_TIMEOUT, "%d durable files" % want)
    if g.of("FAIL"):
        t.ok(False, "crashwriter: %s" % g.of("FAIL"))
        return
    # Kill in the middle of a write: a random moment after the 12th file.
    time.sleep(random.uniform(0, 0.3))  # jitter, not a wait for a condition
    n_at_kill = g.count("DURABLE")
    d1.signal(signal.SIGKILL)
    d1.proc.wait()
    t_kill = time.monotonic()
    print("# glidefsd d1 killed (SIGKILL) after %d durable files" % n_at_kill, flush=True)
    try:
        g.wait_event(lambda e: e[1] in ("IOERR", "DONE", "FAIL"), 60, "the guest to notice")
        t.ok(True, "the guest saw its disk fail: %s" % g.of("IOERR")[:1])
    except (TimeoutError, RuntimeError) as e:
        t.ok(False, "the guest noticed the dead disk: %s" % e)
    g.kill()
    durable = g.files("DURABLE")
    late = [rest for tt, k, rest in g.events if k == "DURABLE" and tt > t_kill + 5.0]
    t.ok(not late, "no file reported durable well after glidefsd died%s"
         % (": %s" % late if late else ""))
    r.measure("scenario 2, crashwriter", g)
    seq = sorted(int(p.split("/f")[1]) for p in durable)
    t.ok(seq == list(range(len(seq))), "durable reports are complete (f0..f%d)" % (len(seq) - 1))

    d2 = r.daemon("d2", "cache1")   # same cache dir: the journal
    v = r.run_guest(d2, export, "crashverify")
    got = v.files()
    bad = [p for p, (sha, size) in durable.items() if got.get(p) != (sha, size)]
    total = sum(s for _, s in durable.values())
    t.ok(not bad, "every file reported durable (%d, %s) reads back intact after the crash%s"
         % (len(durable), mib(total), ": bad %s" % bad[:5] if bad else ""))
    for info in v.of("INFO"):
        print("# guest: " + info)
    r.measure("scenario 2, guest after the crash (verify)", v, verified=total)
    t.eq(d2.stop(), 0, "glidefsd d2: SIGTERM, drained, exit 0")
    r.image_export(export, "after-crash")


def vhost(r):
    export = "vm1"
    vdir = os.path.join(r.base, "vu")
    os.makedirs(vdir)
    d1 = r.daemon("d1", "cache1", vhost_dir=vdir)
    if not t.ok(d1.api, "glidefsd d1 serves the REST API"):
        return
    st, body = d1.http("POST", "/api/exports/%s/vhost-user" % export)
    if not t.eq(st, 200, "POST /api/exports/%s/vhost-user: %s" % (export, body)):
        return
    disk = gl.vhost_disk(body["socket"])
    a = r.run_guest(d1, export, "writer", disk=disk, mib=16, trim=1)
    written = a.files()
    total = sum(s for _, s in written.values())
    t.ok(len(written) >= 10 and total >= 16 << 20,
         "guest A wrote %d files, %s, over vhost-user-blk" % (len(written), mib(total)))
    log = d1.log_text()
    t.ok("frontend connected" in log and "disconnecting" not in log,
         "glidefsd served guest A as a vhost-user frontend, no protocol error")
    t.ok("event index on" in log, "the guest's rings use EVENT_IDX")
    trim = a.of("TRIM")
    trimmed = int(trim[0].split()[1]) if trim and trim[0].split()[1:2] and \
        trim[0].split()[1].isdigit() else 0
    st, m = d1.http("GET", "/api/exports/%s/metrics" % export)
    t.ok(trimmed >= 16 << 20 and st == 200 and m.get("trim_bytes", 0) >= 16 << 20,
         "fstrim in the guest: %s; the volume counted %s trimmed bytes"
         % (trim[:1], m.get("trim_bytes") if st == 200 else m))
    t.ok(st == 200 and m.get("flushes", 0) > 0, "the guest's syncs reached the volume as "
         "FLUSH (%s flushes)" % (m.get("flushes") if st == 200 else "?"))
    r.measure("vhost-user-blk, guest A (writer)", a)
    b = r.run_guest(d1, export, "verify", disk=disk)
    t.ok(b.files() == written, "guest B over vhost-user-blk read back every file with the "
         "checksum guest A wrote (%d files)" % len(written))
    r.measure("vhost-user-blk, guest B (verify)", b)
    r.drain_and_stop(d1, export)
    t.ok(not os.path.exists(body["socket"]), "the vhost-user socket is gone after SIGTERM")
    r.image_export(export, "after-vhost")


def vhostcrash(r):
    export = "vcrash"
    if not import_ext4(r, export):
        return
    vdir = os.path.join(r.base, "vu")
    os.makedirs(vdir)
    arm = os.path.join(r.base, "fault-arm")
    # Each kill, its way: glidefsd's test hook (GLIDEFSD_VHOST_FAULT, armed
    # by a file) dies right after marking a request in flight (it must be
    # resubmitted), then right after publishing one on the used ring (it
    # must not run again); the last is a plain SIGKILL at a random moment.
    kills = [("mark", "GLIDEFSD_VHOST_FAULT", "mark:" + arm),
             ("used", "GLIDEFSD_VHOST_FAULT", "used:" + arm),
             ("sigkill", None, None)]
    d1 = r.daemon("d1", "cache1", vhost_dir=vdir, sync_delay_ms=1500)
    if not t.ok(d1.api, "glidefsd d1 serves the REST API"):
        return
    st, body = d1.http("POST", "/api/exports/%s/vhost-user" % export)
    if not t.eq(st, 200, "POST /api/exports/%s/vhost-user: %s" % (export, body)):
        return
    sock = body["socket"]
    d1.kill()   # the first incarnation with the first hook: the socket is served again
    pos = len(d1.log_text())
    d1.start(env={kills[0][1]: kills[0][2]})
    gl.wait_for(lambda: "%s: serving its socket again" % export in d1.log_text()[pos:], 30,
                "the socket served again at start")
    g = r.guest(d1, export, "crashwriter", disk=gl.vhost_disk(sock, reconnect=True),
                files=VHOST_FILES)
    g.start()
    # SeaBIOS drives the disk first (without EVENT_IDX), then Linux
    ring = r"queue 0 started \(\d+ entries, event index on, inflight tracking on\)"
    gl.wait_for(lambda: re.search(ring, d1.log_text()), GUEST_TIMEOUT,
                "the Linux guest's ring with EVENT_IDX and inflight tracking")
    t.ok(True, "QEMU and the guest negotiated EVENT_IDX and inflight tracking")
    for k, (how, _, _) in enumerate(kills):
        n0 = g.count("DURABLE")
        g.wait_event(lambda e: e[1] in ("FAIL", "IOERR", "DONE") or
                     (e[1] == "DURABLE" and g.count("DURABLE") > n0),
                     GUEST_TIMEOUT, "a durable file before kill %d" % (k + 1))
        if g.of("FAIL") or g.of("IOERR") or g.count("DONE") or \
                g.count("DURABLE") > VHOST_FILES - 3:
            t.ok(False, "kill %d (%s): the guest ran out of files first (%d)"
                 % (k + 1, how, g.count("DURABLE")))
            break
        if how == "sigkill":
            time.sleep(random.uniform(0, 0.3))  # jitter, not a wait for a condition
            d1.signal(signal.SIGKILL)
        else:
            open(arm, "w").close()   # the next request dies at the hook
        try:
            d1.proc.wait(60)
        except subprocess.TimeoutExpired:
            t.ok(False, "kill %d (%s): glidefsd did not die" % (k + 1, how))
            return
        if how != "sigkill":
            os.unlink(arm)
            t.ok("GLIDEFSD_VHOST_FAULT=%s: exiting here" % how in d1.log_text(),
                 "kill %d: glidefsd died at its '%s' point after %d durable files"
                 % (k + 1, how, g.count("DURABLE")))
        t.ok(os.path.exists(sock), "kill %d (%s): the socket file stays" % (k + 1, how))
        pos = len(d1.log_text())
        nxt = kills[k + 1] if k + 1 < len(kills) else (None, None, None)
        d1.start(env={nxt[1]: nxt[2]} if nxt[1] else None)  # same config and cache: replay
        try:
            gl.wait_for(lambda: "frontend connected" in d1.log_text()[pos:], 60,
                        "QEMU to reconnect after kill %d" % (k + 1))
        except TimeoutError as e:
            t.ok(False, str(e))
            return
        if how == "mark":
            gl.wait_for(lambda: "resubmitting" in d1.log_text()[pos:], 30,
                        "the resubmission after kill 1")
            t.ok("resubmitting 1 in-flight request(s)" in d1.log_text()[pos:],
                 "kill 1: QEMU reconnected, the request marked in flight was resubmitted")
        elif how == "used":
            try:
                gl.wait_for(lambda: "still marked in flight" in d1.log_text()[pos:] or
                            "resubmitting" in d1.log_text()[pos:], 30, "the ring's restart")
            except TimeoutError:
                pass
            later = d1.log_text()[pos:]
            t.ok("still marked in flight" in later and "resubmitting" not in later,
                 "kill 2: QEMU reconnected, the request already on the used ring was not "
                 "run again")
        else:
            t.ok(True, "kill 3: QEMU reconnected")
    g.wait_exit(GUEST_TIMEOUT)
    t.ok(not g.of("FAIL") and not g.of("IOERR") and g.count("DONE") > 0 and
         g.count("DURABLE") == VHOST_FILES,
         "the guest wrote %d durable files through %d kills of glidefsd, no I/O error, "
         "unmounted and powered off%s" % (g.count("DURABLE"), len(kills),
                                          ": %s" % (g.of("FAIL") + g.of("IOERR"))[:1]
                                          if g.of("FAIL") or g.of("IOERR") else ""))
    errs = [ln for _, ln in g.lines if "I/O error" in ln or "EXT4-fs error" in ln or
            "Buffer I/O" in ln]
    t.ok(not errs, "no I/O error on the guest's console%s" % (": %s" % errs[:2] if errs else ""))
    t.ok("disconnecting" not in d1.log_text(), "no vhost-user protocol error in glidefsd's log")
    r.measure("vhost-user-blk crash/reconnect, crashwriter", g)
    durable = g.files("DURABLE")
    v = r.run_guest(d1, export, "crashverify", disk=gl.vhost_disk(sock))
    got = v.files()
    bad = [p for p, (sha, size) in durable.items() if got.get(p) != (sha, size)]
    total = sum(s for _, s in durable.values())
    # QEMU's stderr shares the console pipe: its reconnect messages may cut
    # a DURABLE line (then that file's checksum is unknown, not wrong)
    t.ok(not bad and len(got) == VHOST_FILES and len(durable) >= VHOST_FILES - 3,
         "every durable file (%d of %d with a whole report line, %s) reads back intact "
         "after the kills, %d files found%s"
         % (len(durable), VHOST_FILES, mib(total), len(got),
            ": bad %s" % bad[:5] if bad else ""))
    r.drain_and_stop(d1, export)
    r.image_export(export, "after-vhost-crash")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=("life", "crash", "vhost", "vhostcrash"))
    ap.add_argument("--store", choices=("file", "s3"), default="file")
    ap.add_argument("--tls", action="store_true", help="life: guest A's disk over NBD with TLS")
    ap.add_argument("--deadline", type=int, default=340, help="seconds for the whole scenario")
    ap.add_argument("glidefsd")
    ap.add_argument("image")
    ap.add_argument("cache")
    a = ap.parse_args()
    gl.need_qemu()
    for tool in ("e2fsck", "mkfs.ext4"):
        if not gl.which(tool):
            gl.skip("%s not found (apt-get install e2fsprogs)" % tool)
    # A deadline for the whole scenario, below the runner's timeout, and
    # SIGTERM from the runner: both end in the finally below, which kills
    # every guest and daemon (setpriv's parent-death signal covers SIGKILL).
    def expire(signum, frame):
        raise TimeoutError("signal %d: scenario deadline (%d s) or runner timeout"
                           % (signum, a.deadline))
    signal.signal(signal.SIGALRM, expire)
    signal.signal(signal.SIGTERM, expire)
    signal.alarm(a.deadline)
    r = Run(a)
    failed = True
    try:
        {"life": life, "crash": crash, "vhost": vhost,
         "vhostcrash": vhostcrash}[a.scenario](r)
        failed = t.failed > 0
    except Exception as e:
        t.ok(False, "scenario %s: %s: %s" % (a.scenario, type(e).__name__, e))
    finally:
        r.close(failed)
        print("# summary (%s store):" % a.store)
        for line in r.measured:
            print("#   " + line)
    t.done()


if __name__ == "__main__":
    main()
