"""resttest.py - shared helpers for the REST API tests (suite 'rest').

Daemon starts its own glidefsd with a temporary config: file:// store,
cache, NBD unix socket and log in a temporary directory, the REST API on
127.0.0.1 with a free port (and optionally a unix socket and a token). It
waits for /healthz by polling with a deadline and is always stopped (a
context manager; kill -9 if SIGTERM was not used). Checks count passes and
failures; tests exit 77 (meson's "skipped") when a tool is missing.

usage of a test: test_x.py GLIDEFSD [GLIDEFS_CTL]
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
MiB = 1024 * 1024
GiB = 1024 * MiB


def arg_path(i, what):
    p = sys.argv[i] if len(sys.argv) > i else ""
    if not p or not os.access(p, os.X_OK):
        print(f"{what} not given (argv[{i}])", file=sys.stderr)
        sys.exit(1)
    return os.path.abspath(p)


def need(*tools):
    for t in tools:
        if shutil.which(t, path="/usr/bin:/bin:/usr/sbin:/sbin") is None:
            print(f"SKIP: {t} not installed", file=sys.stderr)
            sys.exit(SKIP)


def need_libnbd():
    try:
        import nbd  # noqa: F401
    except ImportError:
        print("SKIP: python3-libnbd not available", file=sys.stderr)
        sys.exit(SKIP)


def wait_for(cond, timeout=20.0, what="condition"):
    """Poll cond() until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    interval = 0.01
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


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def error(self):
        return self.json.get("error") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Daemon:
    def __init__(self, glidefsd, base=None, store=None, size="64M", token=None,
                 api_unix=False, listen=None, sync_delay_ms=20, extra_nbd=None,
                 shutdown_timeout_s=30, node_id=None, extra_api=None, extra_storage=None):
        self.glidefsd = glidefsd
        self.own_base = base is None
        self.base = base or tempfile.mkdtemp(prefix="glidefsd-rest-")
        os.makedirs(self.base, exist_ok=True)
        self.store = store or os.path.join(self.base, "store")
        self.cache = os.path.join(self.base, "cache")
        os.makedirs(self.store, exist_ok=True)
        os.makedirs(self.cache, exist_ok=True)
        self.sock = os.path.join(self.base, "nbd.sock")
        self.api_sock = os.path.join(self.base, "api.sock") if api_unix else None
        self.port = free_tcp_port()
        self.listen = listen if listen is not None else f"127.0.0.1:{self.port}"
        self.token = token
        self.cfg = os.path.join(self.base, "glidefs.yaml")
        self.log = os.path.join(self.base, "glidefsd.log")
        self.proc = None
        self.logf = None
        lines = []
        if node_id:
            lines.append(f"node_id: {node_id}")
        lines += [
            "cache:",
            f"  dir: {self.cache}",
            "  disk_size_gb: 2",
            "storage:",
            f"  url: file://{self.store}",
        ]
        for k, v in (extra_storage or {}).items():
            lines.append(f"  {k}: {v}")
        lines += [
            "servers:",
            f"  shutdown_timeout_s: {shutdown_timeout_s}",
            "  nbd:",
            f"    unix_socket: {self.sock}",
            f"    auto_create_size: {size}",
            f"    sync_delay_ms: {sync_delay_ms}",
            "    workers: 4",
        ]
        for k, v in (extra_nbd or {}).items():
            lines.append(f"    {k}: {v}")
        lines += ["  api:", f"    listen: \"{self.listen}\""]
        if token:
            lines.append(f"    token: {token}")
        if self.api_sock:
            lines.append(f"    unix_socket: {self.api_sock}")
        for k, v in (extra_api or {}).items():
            lines.append(f"    {k}: {v}")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- lifecycle ---------------------------------------------------------

    def start(self, wait=True):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.glidefsd, "-c", self.cfg, "--log-level", "debug"],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf)
        if wait:
            wait_for(self._healthy, 20, "glidefsd REST API")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"glidefsd exited with {self.proc.returncode}:\n"
                               f"{self.log_text()[-4000:]}")
        try:
            r = self.req("GET", "/healthz", timeout=2)
            return r.status == 200 and os.path.exists(self.sock)
        except OSError:
            return False

    def stop(self, timeout=60.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"glidefsd did not exit:\n{self.log_text()[-4000:]}")
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        if self.logf:
            self.logf.close()
        text = self.log_text()
        san = [ln for ln in text.splitlines() if "Sanitizer" in ln or "runtime error:" in ln]
        if exc[0] is not None or san:
            sys.stderr.write(f"--- glidefsd log ({self.log}) ---\n{text[-20000:]}\n")
        if san and exc[0] is None:
            raise AssertionError(f"sanitizer report in the glidefsd log: {san[0]}")
        if self.own_base and exc[0] is None and not os.environ.get("GLIDEFS_TEST_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)
        return False

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- HTTP --------------------------------------------------------------

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def conn(self, timeout=60, unix=False):
        if unix:
            return UnixHTTPConnection(self.api_sock, timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def req(self, method, path, body=None, headers=None, token=True, timeout=60, unix=False):
        """One request on a new connection; body: dict (sent as JSON), str or bytes, with
        Content-Type: application/json unless headers say otherwise (None: no such header)."""
        h = {}
        if token is True and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        elif isinstance(token, str):
            h["Authorization"] = token
        if isinstance(body, dict):
            body = json.dumps(body)
        if body is not None:
            h["Content-Type"] = "application/json"  # the API refuses other bodies (415)
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}  # headers={"X": None}: leave X out
        c = self.conn(timeout, unix)
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            for k, v in h.items():
                c.putheader(k, v)
            data = body.encode() if isinstance(body, str) else body
            if data is not None:
                c.putheader("Content-Length", str(len(data)))
            c.endheaders(data)
            r = c.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace"))
        finally:
            c.close()

    # -- NBD ---------------------------------------------------------------

    def uri(self, name):
        return f"nbd+unix:///{name}?socket={self.sock}"

    def connect(self, name):
        import nbd
        h = nbd.NBD()
        h.set_export_name(name)
        h.connect_unix(self.sock)
        return h


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
        return cond

    def eq(self, got, want, what):
        return self.ok(got == want, what if got == want else f"{what} (got {got!r}, want {want!r})")

    def status(self, r, want, what):
        """r has status want and, for errors, a JSON {"error": "..."} body."""
        good = r.status == want
        if want >= 400:
            good = good and isinstance(r.error(), str) and len(r.error()) > 0
        return self.ok(good, what if good else f"{what} (want {want}, got {r!r})")

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
