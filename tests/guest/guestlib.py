"""guestlib.py - helpers for the guest tests: a QEMU guest whose virtio disk
is an NBD export, a glidefsd with its own config (file:// or s3:// store,
REST API when the daemon serves one), glidefs-image and e2fsck.

Nothing here sleeps for a fixed time: every wait polls a condition (a console
line, a socket, a process exit) with a deadline, and every process started
here is killed by close() / the context managers, on failure too.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
PATH = "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")
QEMU = os.environ.get("GLIDEFS_GUEST_QEMU", "qemu-system-x86_64")  # tests of the skip path
# Children die with us, even when we are killed with SIGKILL (a test runner's
# timeout): setpriv (util-linux) sets the parent-death signal, then execs.
DEATHSIG = (["setpriv", "--pdeathsig", "KILL", "--"]
            if shutil.which("setpriv", path=PATH) else [])
LINE_RE = re.compile(r"GLIDEFS-([A-Z]+)(?: (.*))?$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def which(tool):
    return shutil.which(tool, path=PATH)


def skip(msg):
    print("SKIP: " + msg, flush=True)
    sys.exit(SKIP)


def need_qemu():
    if not which(QEMU):
        skip("%s not found: the guest suite needs Debian's qemu-system-x86 "
             "(apt-get install qemu-system-x86 busybox-static)" % QEMU)
    if not which("busybox"):
        skip("busybox not found (apt-get install busybox-static)")


def wait_for(cond, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_guest(cache):
    """(kernel, initrd), built once into cache by mkguest.py."""
    sys.path.insert(0, HERE)
    import mkguest
    try:
        return mkguest.ensure(cache)
    except mkguest.Skip as e:
        skip(str(e))


class Checker:
    def __init__(self):
        self.passed = self.failed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
            print("ok - %s" % what, flush=True)
        else:
            self.failed += 1
            print("FAIL - %s" % what, flush=True)
        return cond

    def eq(self, got, want, what):
        return self.ok(got == want, what if got == want else
                       "%s (got %r, want %r)" % (what, got, want))

    def done(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(1 if self.failed else 0)


# -- the guest --------------------------------------------------------------

class Guest:
    """One QEMU run: TCG, the test kernel and initramfs, the export as a
    virtio disk through QEMU's NBD client; the console is read line by line
    (each line stamped with the host's monotonic clock) into self.lines and
    a log file. disk is a URI, or (QEMU -object arguments, -drive options)
    for what a URI cannot say (TLS credentials: Daemon.disk), or (arguments,
    None) for a disk that is no -drive (vhost-user-blk: vhost_disk)."""

    def __init__(self, kernel, initrd, disk, mode, log_path, params=None, mem=256):
        objects, drive = (disk if isinstance(disk, tuple)
                          else ([], "file=%s,format=raw" % disk))
        self.uri = drive
        self.mode = mode
        self.log_path = log_path
        args = ["console=ttyS0", "quiet", "panic=-1", "glidefs_test=" + mode]
        args += ["glidefs_%s=%s" % kv for kv in (params or {}).items()]
        self.argv = [which(QEMU), "-accel", "tcg", "-m", str(mem), "-nographic", "-no-reboot",
                     "-nic", "none", "-kernel", kernel, "-initrd", initrd,
                     "-append", " ".join(args)] + objects + (
                     ["-drive", "%s,if=virtio,cache=none" % drive] if drive else [])
        self.lines = []          # (t, text)
        self.events = []         # (t, kind, rest)
        self.cv = threading.Condition()
        self.proc = None
        self.t0 = None
        self.eof = False

    def start(self):
        self.logf = open(self.log_path, "a", errors="replace")
        self.logf.write("# %s\n" % " ".join(self.argv))
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(DEATHSIG + self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            t = time.monotonic()
            text = raw.decode("utf-8", "replace").replace("\r", "").rstrip("\n")
            text = re.sub(r"\x1b(\[[0-9;?]*[a-zA-Z]|c)", "", text)
            self.logf.write("%8.3f %s\n" % (t - self.t0, text))
            self.logf.flush()
            m = LINE_RE.search(text)
            with self.cv:
                self.lines.append((t, text))
                if m:
                    self.events.append((t, m.group(1), m.group(2) or ""))
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def wait_event(self, pred, timeout, what):
        """Wait for a console event (t, kind, rest) with pred(event) true."""
        deadline = time.monotonic() + timeout
        with self.cv:
            seen = 0
            while True:
                for ev in self.events[seen:]:
                    if pred(ev):
                        return ev
                seen = len(self.events)
                if self.eof:
                    raise RuntimeError("guest %s ended before %s" % (self.mode, what))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("guest %s: no %s within %.0f s" % (self.mode, what,
                                                                          timeout))
                self.cv.wait(min(left, 0.5))

    def count(self, kind):
        with self.cv:
            return sum(1 for e in self.events if e[1] == kind)

    def wait_exit(self, timeout):
        """Wait for QEMU to exit (the guest powers off); kill it on timeout."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError("guest %s did not power off within %.0f s (killed)"
                               % (self.mode, timeout))
        self.reader.join(10)
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self.reader.join(10)
        if getattr(self, "logf", None) and not self.logf.closed:
            self.logf.close()

    def run(self, timeout):
        """Start, wait for power-off; return self. Raises on FAIL or timeout."""
        self.start()
        try:
            self.wait_exit(timeout)
        finally:
            self.kill()
        fails = self.of("FAIL")
        if fails:
            raise RuntimeError("guest %s: FAIL %s\n%s" % (self.mode, fails[0], self.tail()))
        if not self.of("DONE"):
            raise RuntimeError("guest %s powered off without GLIDEFS-DONE\n%s"
                               % (self.mode, self.tail()))
        return self

    # -- results -------------------------------------------------------------

    def of(self, kind):
        with self.cv:
            return [rest for _, k, rest in self.events if k == kind]

    def boot_s(self):
        for t, k, _ in self.events:
            if k == "READY":
                return t - self.t0
        return None

    def times(self):
        """{name: (seconds, bytes or None)} from GLIDEFS-TIME lines (last wins)."""
        out = {}
        for rest in self.of("TIME"):
            f = rest.split()
            if len(f) >= 2 and f[1].isdigit():
                out[f[0]] = (int(f[1]) / 1e9, int(f[2]) if len(f) > 2 and f[2].isdigit()
                             else None)
        return out

    def time_list(self, name):
        return [int(r.split()[1]) / 1e9 for r in self.of("TIME")
                if r.split()[0] == name and r.split()[1].isdigit()]

    def files(self, kind="FILE"):
        """{path: (sha, size)} from well-formed FILE (or DURABLE) lines."""
        out = {}
        for rest in self.of(kind):
            f = rest.split()
            if len(f) == 3 and SHA_RE.match(f[1]) and f[2].isdigit():
                out[f[0]] = (f[1], int(f[2]))
        return out

    def tail(self, n=40):
        with self.cv:
            return "\n".join("  | " + t for _, t in self.lines[-n:])


# -- glidefsd -----------------------------------------------------------------

class Store:
    """Where volumes live: file://DIR, or s3:// on the s3env.py server."""

    def __init__(self, kind, base, prefix):
        self.kind = kind
        if kind == "file":
            self.dir = os.path.join(base, "store")
            os.makedirs(self.dir, exist_ok=True)
            self.lines = ["  url: file://%s" % self.dir]
        elif kind == "s3":
            ep, bucket = os.environ.get("S3_ENDPOINT"), os.environ.get("S3_BUCKET")
            if not ep or not bucket:
                raise RuntimeError("s3 store: run me under tests/s3/s3env.py "
                                   "(S3_ENDPOINT, S3_BUCKET)")
            self.lines = ["  url: s3://%s/%s" % (bucket, prefix),
                          "  endpoint: %s" % ep,
                          "  region: us-east-1",
                          "  access_key_id: S3RVER",
                          "  secret_access_key: S3RVER"]
        else:
            raise ValueError(kind)


def vhost_disk(socket_path, mem=256, reconnect=False):
    """Guest disk arguments for a vhost-user-blk socket: the guest's RAM in
    a shared memfd (the backend maps it), the socket, the device. reconnect:
    QEMU's chardev retries the socket every second after the backend went
    away (and keeps the inflight region for the next backend)."""
    return (["-object", "memory-backend-memfd,id=mem,size=%dM,share=on" % mem,
             "-numa", "node,memdev=mem",
             "-chardev", "socket,id=vu0,path=%s%s" % (socket_path,
                                                      ",reconnect=1" if reconnect else ""),
             "-device", "vhost-user-blk-pci,chardev=vu0"], None)


def write_config(path, cache, store, sock=None, size="256M", sync_delay_ms=200,
                 api_port=None, shutdown_timeout_s=120, tcp_port=None, tls_certificates=None,
                 vhost_dir=None):
    os.makedirs(cache, exist_ok=True)
    lines = ["cache:", "  dir: %s" % cache, "  disk_size_gb: 2", "storage:"]
    lines += store.lines
    lines += ["servers:", "  shutdown_timeout_s: %d" % shutdown_timeout_s, "  nbd:",
              "    unix_socket: %s" % (sock or os.path.join(os.path.dirname(path), "unused.sock")),
              "    auto_create_size: %s" % size,
              "    sync_delay_ms: %d" % sync_delay_ms]
    if tcp_port:
        lines += ['    tcp: "127.0.0.1:%d"' % tcp_port]
    if tls_certificates:
        # every listener (the unix socket too) refuses all but STARTTLS
        lines += ["    tls: require", "    tls_certificates: %s" % tls_certificates]
    if vhost_dir:
        lines += ["  vhost_user:", "    dir: %s" % vhost_dir]
    if api_port:
        lines += ["  api:", "    listen: 127.0.0.1:%d" % api_port]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Daemon:
    """glidefsd in base/NAME.*: config, socket, log. The REST API is asked
    for (servers.api.listen); self.api says whether the daemon serves it.
    tls=DIR: NBD on a loopback TCP port too, servers.nbd.tls: require with
    the certificates in DIR (server-cert.pem, server-key.pem, ca-cert.pem:
    client certificates required)."""

    def __init__(self, glidefsd, base, name, cache, store, tls=None, **cfg):
        self.glidefsd = glidefsd
        self.name = name
        self.cache = cache
        self.sock = os.path.join(base, name + ".sock")
        self.cfg = os.path.join(base, name + ".yaml")
        self.log = os.path.join(base, name + ".log")
        self.api_port = free_port()
        self.api = False
        self.proc = None
        self.tls = tls
        self.tcp_port = free_port() if tls else None
        write_config(self.cfg, cache, store, sock=self.sock, api_port=self.api_port,
                     tcp_port=self.tcp_port, tls_certificates=tls, **cfg)

    def uri(self, export):
        return "nbd+unix:///%s?socket=%s" % (export, self.sock)

    def disk(self, export, client_certs=None):
        """What Guest takes as its disk: the unix socket's URI, or with TLS
        the TCP port through QEMU's tls-creds-x509 (client_certs: ca-cert.pem,
        client-cert.pem, client-key.pem)."""
        if not self.tls:
            return self.uri(export)
        return (["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=client" % client_certs],
                "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=%d,"
                "export=%s,tls-creds=tls0" % (self.tcp_port, export))

    def tls_sessions(self):
        """The TLS handshakes glidefsd completed: its info lines
        'connection N from PEER: TLS (TLS1.3)-(...)' (daemon/tls.c)."""
        return re.findall(r"connection \d+ from 127\.0\.0\.1:\d+: TLS (\S+)",
                          self.log_text())

    def _tcp_up(self):
        if not self.tcp_port:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.tcp_port), 1).close()
            return True
        except OSError:
            return False

    def start(self, timeout=30, env=None):
        """env: extra environment variables (test hooks) for this process."""
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(DEATHSIG + [self.glidefsd, "-c", self.cfg,
                                                 "--log-level", "info"],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf,
                                     env=dict(os.environ, **env) if env else None)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("glidefsd %s exited with %s:\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            if not os.path.exists(self.sock) or not self._tcp_up():
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_for(ready, timeout, "glidefsd %s's socket" % self.name)
        # The REST API: up at the same time as the NBD socket, or not served
        # by this glidefsd at all.
        try:
            wait_for(lambda: self._api_up(), 2, "the REST API")
            self.api = True
        except TimeoutError:
            self.api = False
        return self

    def _api_up(self):
        try:
            st, _ = self.http("GET", "/api/exports", timeout=1)
            return st == 200
        except OSError:
            return False

    def http(self, method, path, timeout=60):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.api_port, path),
                                     method=method, data=b"" if method == "POST" else None)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as r:
                body = r.read()
                st = r.status
        except urllib.error.HTTPError as e:
            body, st = e.read(), e.code
        try:
            return st, json.loads(body or b"{}")
        except ValueError:
            return st, {"raw": body.decode(errors="replace")}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=120):
        """SIGTERM (drains every export) and wait; the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError("glidefsd %s did not exit within %d s of SIGTERM"
                                   % (self.name, timeout))
        return self.proc.returncode if self.proc else None

    def takeover(self, timeout=60):
        """Replace the running process with `glidefsd --takeover` (issue 27),
        logging into the same file; waits for the old one's exit. Returns
        (True, pid of the new one) or (False, why); the running one stays
        self.proc until the new one has taken over."""
        old = self.proc
        new = subprocess.Popen(DEATHSIG + [self.glidefsd, "-c", self.cfg, "--takeover",
                                           "--log-level", "info"],
                               stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        try:
            rc = old.wait(timeout)
        except subprocess.TimeoutExpired:
            new.kill()
            new.wait()
            return False, "the old process did not exit within %d s" % timeout
        if new.poll() is not None:
            return False, "the new process exited with %s" % new.returncode
        self.proc = new
        if rc != 0:
            return False, "the old process exited with %s" % rc
        return True, new.pid

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        if getattr(self, "logf", None):
            self.logf.close()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join("  | " + ln for ln in self.log_text().splitlines()[-n:])


def image(tool, op, cfg, name, path):
    r = subprocess.run([tool, op, "-c", cfg, name, path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    return r.returncode, r.stdout


def e2fsck(path):
    r = subprocess.run([which("e2fsck"), "-fn", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    return r.returncode, r.stdout


def files_under(d, needle):
    """Paths under d whose path (relative to d) mentions needle."""
    out = []
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            rel = os.path.relpath(os.path.join(root, n), d)
            if needle in rel:
                out.append(rel)
    return out
