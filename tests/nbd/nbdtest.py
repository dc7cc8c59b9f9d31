"""nbdtest.py - shared helpers for glidefsd's integration tests.

Daemon starts its own glidefsd with a temporary config (file:// store, cache
and unix socket in a temporary directory, tiny sync delay), waits for the
socket by polling with a deadline, and is always stopped: use it as a context
manager. Tests exit 77 (meson's "skipped") when a client tool is missing.
"""
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


def glidefsd_path():
    p = os.environ.get("GLIDEFSD") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not p or not os.access(p, os.X_OK):
        print("glidefsd not given (argv[1] or $GLIDEFSD)", file=sys.stderr)
        sys.exit(1)
    return os.path.abspath(p)


def need(*tools):
    for t in tools:
        if shutil.which(t, path="/usr/bin:/bin:" + os.environ.get("PATH", "")) is None:
            print(f"SKIP: {t} not installed", file=sys.stderr)
            sys.exit(SKIP)


def need_libnbd():
    try:
        import nbd  # noqa: F401
    except ImportError:
        print("SKIP: python3-libnbd not available", file=sys.stderr)
        sys.exit(SKIP)


def wait_for(cond, timeout=20.0, what="condition", interval=0.01):
    """Poll cond() until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A glidefsd instance in its own temp directory.

    base: directory holding store/, cache/, the socket and the log; when
    given (to share a store between daemons) it is not deleted by us.
    """

    def __init__(self, base=None, store=None, cache=None, size="64M", extra=None,
                 nbd_extra=None, log_level="debug", node_id=None, tcp=None,
                 shutdown_timeout_s=60, sync_delay_ms=20):
        self.own_base = base is None
        self.base = base or tempfile.mkdtemp(prefix="glidefsd-test-")
        os.makedirs(self.base, exist_ok=True)
        self.store = store or os.path.join(self.base, "store")
        self.cache = cache or os.path.join(self.base, "cache")
        os.makedirs(self.store, exist_ok=True)
        os.makedirs(self.cache, exist_ok=True)
        self.sock = os.path.join(self.base, "nbd.sock")
        self.tcp = tcp
        self.cfg = os.path.join(self.base, "glidefs.yaml")
        self.log = os.path.join(self.base, "glidefsd.log")
        self.log_level = log_level
        self.proc = None
        nbd = {
            "unix_socket": self.sock,
            "auto_create_size": size,
            "sync_delay_ms": sync_delay_ms,
            "workers": 8,
        }
        if tcp:
            nbd["tcp"] = tcp
        nbd.update(nbd_extra or {})
        lines = [
            "cache:",
            f"  dir: {self.cache}",
            "  disk_size_gb: 2",
            "storage:",
            f"  url: file://{self.store}",
            "servers:",
            f"  shutdown_timeout_s: {shutdown_timeout_s}",
            "  nbd:",
        ]
        lines += [f"    {k}: {v}" for k, v in nbd.items()]
        # No REST API: parallel tests would fight over its default port.
        lines += ["  api:", '    listen: ""']
        if node_id:
            lines.insert(0, f"node_id: {node_id}")
        for line in extra or []:
            lines.append(line)
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- lifecycle ---------------------------------------------------------

    def start(self, wait=True):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [glidefsd_path(), "-c", self.cfg, "--log-level", self.log_level],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        if wait:
            self.wait_ready()
        return self

    def _connectable(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"glidefsd exited with {self.proc.returncode}:\n{self.log_text()}")
        if not os.path.exists(self.sock):
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def wait_ready(self, timeout=20.0):
        wait_for(self._connectable, timeout, "glidefsd socket")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=60.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"glidefsd did not exit:\n{self.log_text()}")

    def stop(self, timeout=60.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.wait(timeout)
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        san = [ln for ln in self.log_text().splitlines()
               if "Sanitizer" in ln or "runtime error:" in ln]
        if san and exc[0] is None:
            sys.stderr.write(f"--- glidefsd log ({self.log}) ---\n{self.log_text()[-20000:]}\n")
            raise AssertionError(f"sanitizer report in the glidefsd log: {san[0]}")
        if exc[0] is not None:
            sys.stderr.write(f"--- glidefsd log ({self.log}) ---\n{self.log_text()[-20000:]}\n")
        if getattr(self, "logf", None):
            self.logf.close()
        if self.own_base and exc[0] is None:
            shutil.rmtree(self.base, ignore_errors=True)
        return False

    # -- helpers -----------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def uri(self, name="vm"):
        return f"nbd+unix:///{name}?socket={self.sock}"

    def connect(self, name="vm", structured=True, meta=True, strict=False, opt_mode=False):
        import nbd
        h = nbd.NBD()
        if not structured:
            h.set_request_structured_replies(False)
        if meta and structured:
            h.add_meta_context("base:allocation")
        if not strict:
            h.set_strict_mode(0)  # let us send what a hostile client would
        if opt_mode:
            h.set_opt_mode(True)
        h.set_export_name(name)
        h.connect_unix(self.sock)
        return h


def run(cmd, check=True, **kw):
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


class Checker:
    """Counts checks; prints a summary; exits non-zero on any failure."""

    def __init__(self):
        self.failed = 0
        self.passed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
            print(f"ok - {what}")
        else:
            self.failed += 1
            print(f"FAIL - {what}")

    def eq(self, got, want, what):
        self.ok(got == want, f"{what} (got {got!r}, want {want!r})" if got != want else what)

    def raises_errno(self, fn, errno_, what):
        import nbd
        try:
            fn()
        except nbd.Error as e:
            got = e.errno
            if isinstance(got, str):  # some python3-libnbd versions give the name
                got = getattr(errno, got, got)
            self.eq(got, errno_, what)
            return
        self.ok(False, f"{what}: no error raised")

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


# -- a raw NBD client, for byte-exact and hostile tests ---------------------

import struct  # noqa: E402

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def raw_connect(path, timeout=20.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    greet = recv_exact(s, 18)
    magic, opt, flags = struct.unpack(">QQH", greet)
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
    return s, flags


def raw_option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def raw_option_reply(s):
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == OPT_REPLY_MAGIC, f"bad option reply magic {magic:#x}"
    return opt, rtype, recv_exact(s, length)


def raw_go(path, name, cflags=3):
    """Connect and NBD_OPT_GO (simple replies). Returns (socket, size, flags)."""
    s, _ = raw_connect(path)
    s.sendall(struct.pack(">I", cflags))
    n = name.encode()
    raw_option(s, 7, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    size = tflags = None
    while True:
        _, rtype, data = raw_option_reply(s)
        if rtype == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size, tflags = struct.unpack(">QH", data[2:12])
        elif rtype == 1:
            return s, size, tflags
        elif rtype & 0x80000000:
            raise RuntimeError(f"GO refused: {rtype:#x} {data!r}")


def raw_request(typ, offset, length, cookie, flags=0, payload=b""):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, typ, cookie, offset, length) + payload


def raw_simple_reply(s, read_len=0):
    """(error, cookie, data) of one simple reply; read_len bytes follow a good READ."""
    magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_REPLY_MAGIC, f"bad reply magic {magic:#x}"
    data = recv_exact(s, read_len) if (read_len and err == 0) else b""
    return err, cookie, data
