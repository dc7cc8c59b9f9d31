#!/usr/bin/python3
"""test_takeover.py - `glidefsd --takeover` (issue 27): a new process takes
the listeners and every live NBD connection from the running one, which
exits 0. Clients on two exports (unix socket and TCP, structured replies
with base:allocation and simple replies) keep writing, flushing and reading
back with several requests in flight per connection while the daemon is
replaced TAKEOVERS times: no request fails, no connection is re-made (the
same libnbd handles throughout), every byte reads back as written, and the
new processes log the connection ids they took over, each opens the volumes
by adopting the dirty index the old one's close left (no journal replay),
and each tells systemd
(a fake NOTIFY_SOCKET here) it is the main process. Then successors that
fail after the old process has parked and closed its volumes (a config
naming another unix socket, and GLIDEFSD_TAKEOVER_FAULT killing it after it
opened the volumes or after it adopted the sockets): the old process opens
its volumes again and serves on, nothing lost, and the next takeover works.
Last, with servers.nbd.tls: on, a TLS connection is closed (logged: a
GnuTLS session cannot move) while a plaintext one on the same export moves,
and the new process serves TLS clients (skipped without gnutls-bin).
A durability set through the REST API (PATCH) survives two takeovers, for
an export in use and for one nobody uses at the takeover.

usage: test_takeover.py GLIDEFSD
"""
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need_libnbd()
import nbd  # noqa: E402

t = nbdtest.Checker()
KiB = 1024
MiB = 1024 * KiB
TAKEOVERS = int(os.environ.get("TAKEOVERS", "10"))
BLOCK = 64 * KiB
REGION = 1 * MiB            # each writer thread owns one
THREADS = 3                 # writer threads per connection: requests in flight


def pattern(n, seed):
    return bytes(((i * 31) ^ seed) & 0xFF for i in range(256)) * (n // 256)


class Writers:
    """Threads on shared handles: write a block, read it back, FLUSH now
    and then; every error and every mismatch is kept."""

    def __init__(self, handles):
        self.handles = handles          # [(name, handle)]
        self.expect = {}                # (handle index, offset) -> seed
        self.errors = []
        self.ops = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def worker(self, hi, ti):
        name, h = self.handles[hi]
        base = ((hi % 2) * THREADS + ti) * REGION  # two handles share one export
        i = 0
        while not self.stop.is_set():
            off = base + (i % (REGION // BLOCK)) * BLOCK
            seed = (hi * 7 + ti * 3 + i) & 0xFF
            try:
                h.pwrite(pattern(BLOCK, seed), off)
                if i % 5 == 4:
                    h.flush()
                got = h.pread(BLOCK, off)
            except nbd.Error as e:
                with self.lock:
                    self.errors.append(f"{name} thread {ti}: {e}")
                return
            with self.lock:
                self.expect[(hi, off)] = seed
                self.ops += 1
                if got != pattern(BLOCK, seed):
                    self.errors.append(f"{name} thread {ti}: block at {off} read back wrong")
            i += 1

    def start(self):
        for hi in range(len(self.handles)):
            for ti in range(THREADS):
                th = threading.Thread(target=self.worker, args=(hi, ti), daemon=True)
                th.start()
                self.threads.append(th)

    def wait_progress(self, n, what, timeout=30.0):
        """n more completed operations (fails the test when I/O stalls)."""
        start = self.ops
        nbdtest.wait_for(lambda: self.ops >= start + n or self.errors, timeout, what)

    def finish(self):
        self.stop.set()
        for th in self.threads:
            th.join(60)
        return not any(th.is_alive() for th in self.threads)

    def verify_all(self):
        bad = 0
        for (hi, off), seed in sorted(self.expect.items()):
            if self.handles[hi][1].pread(BLOCK, off) != pattern(BLOCK, seed):
                bad += 1
        return bad


def successor(d, env=None, cfg=None):
    """Start glidefsd --takeover on d's config (or cfg), logging into d's log."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen(
        [nbdtest.glidefsd_path(), "-c", cfg or d.cfg, "--takeover", "--log-level", "debug"],
        stdin=subprocess.DEVNULL, stdout=d.logf, stderr=d.logf, env=e)


def takeover(d):
    """Replace d's process; True when the old one exited 0 and the new runs."""
    old = d.proc
    new = successor(d)
    try:
        rc = old.wait(30)
    except subprocess.TimeoutExpired:
        new.kill()
        new.wait()
        return False, "old process did not exit"
    if new.poll() is not None:
        return False, f"new process exited with {new.returncode}"
    d.proc = new
    return rc == 0, f"old process exited with {rc}"


def test_takeovers(base):
    port = nbdtest.free_tcp_port()
    d = nbdtest.Daemon(base=os.path.join(base, "a"), tcp=f'"127.0.0.1:{port}"', size="32M")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(d.base, "notify"))
    os.environ["NOTIFY_SOCKET"] = os.path.join(d.base, "notify")
    with d:
        d.start()
        hs = []
        for name, structured, tcp in (("vm1", True, False), ("vm1", False, True),
                                      ("vm2", True, True), ("vm2", False, False)):
            h = d.connect(name, structured=structured, meta=structured) if not tcp else None
            if tcp:
                h = nbd.NBD()
                if structured:
                    h.add_meta_context("base:allocation")
                else:
                    h.set_request_structured_replies(False)
                h.set_export_name(name)
                h.connect_tcp("127.0.0.1", str(port))
            hs.append((f"{name}/{'tcp' if tcp else 'unix'}/{'sr' if structured else 'simple'}",
                       h))
        def conn_ids():
            return set(int(x) for x in re.findall(r"connection (\d+): export vm", d.log_text()))
        nbdtest.wait_for(lambda: len(conn_ids()) >= 4, 10, "four connections logged")
        ids = conn_ids()
        t.eq(len(ids), 4, "four connections in transmission")
        with open("/proc/net/unix") as f:
            abstract = [ln.split()[-1] for ln in f if "@glidefsd-takeover-" in ln]
        t.ok(abstract and not any(stat.S_ISSOCK(os.lstat(os.path.join(d.cache, n)).st_mode)
                                  for n in os.listdir(d.cache)),
             f"the control socket is abstract ({abstract[:1]}), none in the cache dir")
        # A raw client (simple replies) that has sent part of a request
        # header when the first takeover comes: the old process has read
        # those bytes ahead, so they must travel with the connection.
        raw, _, _ = nbdtest.raw_go(d.sock, "vm1")
        raw.sendall(nbdtest.raw_request(1, 16 * MiB, BLOCK, 77, payload=pattern(BLOCK, 99)))
        t.eq(nbdtest.raw_simple_reply(raw)[:2], (0, 77), "raw client: a write before the takeover")
        split = nbdtest.raw_request(0, 16 * MiB, BLOCK, 78)
        raw.sendall(split[:10])
        w = Writers(hs)
        w.start()
        w.wait_progress(40, "I/O before the first takeover")
        pids = [d.proc.pid]
        for n in range(TAKEOVERS):
            t0 = time.monotonic()
            ok, why = takeover(d)
            if not ok:
                t.ok(False, f"takeover {n + 1}: {why}")
                break
            if n == 0:
                raw.sendall(split[10:])
                try:
                    err, cookie, data = nbdtest.raw_simple_reply(raw, BLOCK)
                except (OSError, EOFError, AssertionError) as e:
                    err, cookie, data = repr(e), None, b""
                t.ok(err == 0 and cookie == 78 and data == pattern(BLOCK, 99),
                     f"raw client: the request whose first 10 bytes the old process had read "
                     f"is answered by the new one ({err}, {cookie})")
                raw.close()
            pids.append(d.proc.pid)
            w.wait_progress(20, f"I/O after takeover {n + 1}")
            print(f"# takeover {n + 1}: {time.monotonic() - t0:.3f} s, {w.ops} operations")
        t.ok(len(pids) == TAKEOVERS + 1, f"{TAKEOVERS} takeovers, each old process exited 0")
        t.ok(w.finish(), "the writer threads finished")
        t.eq(w.errors, [], "no request failed while the daemon was replaced")
        t.ok(w.ops > 0 and len(w.expect) > 0, f"{w.ops} write+read cycles verified as they ran")
        t.eq(w.verify_all(), 0, "every block reads back as last written, on the same handles")
        log = d.log_text()
        carried = set(int(x) for x in re.findall(
            r"connection (\d+): export vm\S+ \([^)]*\), taken over from the previous process",
            log))
        t.ok(ids <= carried, f"the new processes serve the original connection ids {sorted(ids)}"
             f" (taken over: {sorted(carried)})")
        t.eq(log.count("this process exits"), TAKEOVERS, "every old process handed over")
        # the short pause: each successor's open adopts the dirty index the
        # old process's close left (docs/design.md 6.7), no journal replay
        # (a volume whose journal the syncer emptied has nothing to hand over)
        adopted = re.findall(r"vm[12]: dirty state taken over from the last close", log)
        replayed = re.findall(r"vm[12]: recovered \d+ dirty blocks from the journal", log)
        refused = re.findall(r"dirty index.*not used.*", log)
        t.ok(adopted and not replayed and not refused,
             f"the successors' opens adopted the dirty index ({len(adopted)} of "
             f"{2 * TAKEOVERS}), none replayed dirty blocks ({replayed[:1]}) or refused an "
             f"index ({refused[:1]})")
        notes = []
        notify.setblocking(False)
        try:
            while True:
                notes.append(notify.recv(4096).decode())
        except BlockingIOError:
            pass
        del os.environ["NOTIFY_SOCKET"]
        t.eq(notes, ["READY=1"] + [f"MAINPID={p}\nREADY=1" for p in pids[1:]],
             "systemd hears READY=1, then MAINPID= from each successor")
        # the listeners were handed over too: new clients on both
        h = d.connect("vm1")
        t.eq(h.pread(BLOCK, 0), hs[0][1].pread(BLOCK, 0), "a new unix-socket client sees the data")
        h.shutdown()
        h = nbd.NBD()
        h.set_export_name("vm2")
        h.connect_tcp("127.0.0.1", str(port))
        t.eq(h.get_size(), 32 * MiB, "a new TCP client connects")
        h.shutdown()
        for _, h in hs:
            h.shutdown()
        t.eq(d.stop(), 0, "the last process stops on SIGTERM with status 0")
        t.ok(not os.path.exists(d.sock), "its unix socket is removed at the end")


def test_failed_successors(base):
    d = nbdtest.Daemon(base=os.path.join(base, "b"), size="32M")
    with d:
        d.start()
        hs = [("vm1", d.connect("vm1")), ("vm2", d.connect("vm2", structured=False))]
        w = Writers(hs)
        w.start()
        w.wait_progress(20, "I/O before the failing takeovers")
        old = d.proc
        # 1. a config the successor cannot serve: another unix socket path.
        bad_cfg = os.path.join(d.base, "other.yaml")
        with open(d.cfg) as f, open(bad_cfg, "w") as g:
            g.write(f.read().replace(d.sock, d.sock + ".other"))
        cases = [("another unix socket in its config", {}, bad_cfg, "needs a restart"),
                 ("killed after opening the volumes",
                  {"GLIDEFSD_TAKEOVER_FAULT": "opened"}, None, "FAULT=opened"),
                 ("killed after adopting the sockets",
                  {"GLIDEFSD_TAKEOVER_FAULT": "adopted"}, None, "FAULT=adopted")]
        for what, env, cfg, mark in cases:
            before = d.log_text().count("this process serves on")
            p = successor(d, env=env, cfg=cfg)
            rc = p.wait(60)
            t.ok(rc != 0, f"successor {what}: exits non-zero ({rc})")
            nbdtest.wait_for(lambda: d.log_text().count("this process serves on") > before,
                             30, "the old process to take its connections back")
            t.ok(mark in d.log_text(), f"successor {what}: its reason is logged")
            t.ok(old.poll() is None, f"successor {what}: the old process still runs")
            w.wait_progress(20, f"I/O after a successor {what}")
        t.eq(w.errors, [], "no request failed through three failed takeovers")
        ok, why = takeover(d)
        t.ok(ok, f"a takeover after the failed ones works: {why}")
        w.wait_progress(20, "I/O after the takeover")
        t.ok(w.finish(), "the writer threads finished")
        t.eq(w.errors, [], "no request failed")
        t.eq(w.verify_all(), 0, "every block reads back as last written")
        for _, h in hs:
            h.shutdown()
        t.eq(d.stop(), 0, "stops on SIGTERM with status 0")


def api(port, method, path, body=None):
    import json
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {"raw": e.read().decode(errors="replace")}
    except OSError:
        return None, {}


def find_key(j, key):
    """The first value of key anywhere in a JSON document."""
    if isinstance(j, dict):
        if key in j:
            return j[key]
        j = list(j.values())
    if isinstance(j, list):
        for v in j:
            got = find_key(v, key)
            if got is not None:
                return got
    return None


def test_api_durability(base):
    """A durability set through the REST API (PATCH) lives in the daemon's
    memory only: the successor must get it with the sockets and apply it to
    the volume it opens, for the open export and for one nobody uses now."""
    port = nbdtest.free_tcp_port()
    d = nbdtest.Daemon(base=os.path.join(base, "d"), size="32M")
    with open(d.cfg) as f:
        cfg = f.read()
    with open(d.cfg, "w") as f:
        f.write(cfg.replace('listen: ""', f"listen: 127.0.0.1:{port}"))
    with d:
        d.start()
        nbdtest.wait_for(lambda: api(port, "GET", "/api/exports")[0] == 200, 20, "the REST API")
        h = d.connect("vm")
        idle = d.connect("idle")
        idle.shutdown()  # the export exists; nobody uses it at the takeover
        st, _ = api(port, "PATCH", "/api/exports/vm",
                    {"durability": "store", "max_unsynced_s": 7})
        t.eq(st, 200, "PATCH /api/exports/vm: durability store")
        st, _ = api(port, "PATCH", "/api/exports/idle", {"max_unsynced_bytes": 1 << 20})
        t.eq(st, 200, "PATCH /api/exports/idle: max_unsynced_bytes 1 MiB")
        for n in range(2):
            ok, why = takeover(d)
            t.ok(ok, f"takeover {n + 1} with durability set through the API: {why}")
            nbdtest.wait_for(lambda: api(port, "GET", "/api/exports/vm")[0] == 200, 20,
                             "the successor's REST API")
            st, j = api(port, "GET", "/api/exports/vm")
            t.ok(find_key(j, "durability") == "store" and find_key(j, "max_unsynced_s") == 7,
                 f"after takeover {n + 1} export vm is still durability store, max_unsynced_s "
                 f"7 (got {find_key(j, 'durability')}, {find_key(j, 'max_unsynced_s')})")
            ih = d.connect("idle")  # (opens it again, if the takeover closed it)
            st, j = api(port, "GET", "/api/exports/idle")
            t.ok(find_key(j, "max_unsynced_bytes") == 1 << 20,
                 f"after takeover {n + 1} export idle keeps max_unsynced_bytes 1 MiB "
                 f"(got {st}, {find_key(j, 'max_unsynced_bytes')})")
            ih.shutdown()
        h.pwrite(pattern(BLOCK, 3), 0)
        h.flush()
        t.eq(h.pread(BLOCK, 0), pattern(BLOCK, 3), "the client wrote and flushed through both")
        h.shutdown()
        t.eq(d.stop(), 0, "stops on SIGTERM with status 0")


def tls_handle(port, psk):
    h = nbd.NBD()
    h.set_export_name("vm")
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_psk_file(psk)
    h.set_tls_username("alice")
    h.connect_tcp("127.0.0.1", str(port))
    return h


def test_tls(base):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tls"))
    import tlscerts
    if not tlscerts.have_tools():
        print("# TLS part skipped: certtool/psktool (gnutls-bin) not installed")
        return
    certs = os.path.join(base, "certs")
    os.makedirs(certs, exist_ok=True)
    tlscerts.make(certs)
    psk = os.path.join(certs, "keys.psk")
    port = nbdtest.free_tcp_port()
    d = nbdtest.Daemon(base=os.path.join(base, "c"), tcp=f'"127.0.0.1:{port}"',
                       nbd_extra={"tls": "on", "tls_psk_file": psk})
    with d:
        d.start()
        th = tls_handle(port, psk)
        th.pwrite(pattern(BLOCK, 5), 0)
        th.flush()
        ph = d.connect("vm")
        ok, why = takeover(d)
        t.ok(ok, f"takeover with a TLS client connected: {why}")
        t.ok("TLS session cannot be handed" in d.log_text(), "the TLS connection's close is logged")
        try:
            th.pread(BLOCK, 0)
            t.ok(False, "the TLS connection was closed")
        except nbd.Error:
            t.ok(True, "the TLS connection was closed (its client must reconnect)")
        t.eq(ph.pread(BLOCK, 0), pattern(BLOCK, 5),
             "the plaintext connection moved and reads what the TLS client flushed")
        th = tls_handle(port, psk)
        t.eq(th.pread(BLOCK, 0), pattern(BLOCK, 5), "the new process serves a new TLS client")
        th.shutdown()
        ph.shutdown()
        t.eq(d.stop(), 0, "stops on SIGTERM with status 0")


def main():
    base = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"glidefsd-takeover-{os.getpid()}")
    os.makedirs(base, exist_ok=True)
    t0 = time.monotonic()
    test_takeovers(base)
    test_failed_successors(base)
    test_api_durability(base)
    test_tls(base)
    print(f"# {time.monotonic() - t0:.1f} s")
    if not t.failed:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
