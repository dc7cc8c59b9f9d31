"""faultlib.py - shared pieces of the reliability suite (tests/fault/).

 * Glidefsd: one glidefsd in a temporary directory with its own YAML config
   (file:// store, or s3:// through tests/s3/s3proxy.py when run under
   tests/s3/s3env.py, or azure:// through tests/azure/azproxy.py when run
   under tests/azure/azenv.py), started with an optional LD_PRELOAD and
   always stopped; its log is scanned for sanitizer reports.
 * run_under_s3env(): re-runs the calling test under tests/s3/s3env.py (s3rver
   behind the strict, fault-injecting proxy) unless it already runs there;
   without node/npm it falls back to the file:// store (or skips);
   s3_only_test(): the argument parsing and re-run of a test that needs S3.
 * Proxy: the proxy's control URLs (/__proxy__/faults, /stats) and its log
   (s3proxy.py and azproxy.py share them).
 * ExportModel / Writer / verify_export: the verifying NBD writer. Every
   written sector carries its identity (tag, sector) in its first 16 bytes
   and a pattern derived from tag, sector and the export in the rest, as in
   tests/integration/test_crash.c. The model knows, per sector, the value at
   the last durable point (a completed FLUSH covering it, or its FUA write)
   and every value written after it; after a crash each sector must hold one
   of those, and what it holds becomes the reference for the next round.

Python 3 standard library plus python3-libnbd (the `nbd` module). Uses
/usr/bin/python3 (tests are registered with it).
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
SKIP = 77
SECTOR = 512
KiB, MiB = 1024, 1024 * 1024
M64 = (1 << 64) - 1


def log(msg):
    print(msg, flush=True)


def wait_for(cond, timeout=30.0, what="condition", interval=0.01):
    """Poll cond() until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def need_libnbd():
    try:
        import nbd  # noqa: F401
    except ImportError:
        print("SKIP: python3-libnbd not available", file=sys.stderr)
        sys.exit(SKIP)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return str(n)


# ---------------------------------------------------------------------------
# s3env / proxy

def azure_active():
    """Under tests/azure/azenv.py: Azurite behind azproxy.py."""
    return bool(os.environ.get("AZURE_TEST_ENDPOINT") and os.environ.get("AZURE_TEST_CONTAINER"))


def s3_active():
    """A remote store behind a fault proxy: s3rver (s3env.py) or Azurite
    (azenv.py); the tests that need one take either."""
    return bool(os.environ.get("S3_ENDPOINT") and os.environ.get("S3_BUCKET")) or azure_active()


def run_under_s3env(s3_cache, timeout, require_s3=False):
    """Re-run this very command under tests/s3/s3env.py (s3rver + proxy) and
    exit with its status, unless already there. When s3env skips (no
    node/npm): return (the caller goes on with the file:// store) or, with
    require_s3, exit 77."""
    if s3_active() or os.environ.get("GLIDEFS_FAULT_NO_S3"):
        if not s3_active() and require_s3:
            print("SKIP: GLIDEFS_FAULT_NO_S3 set and this test needs S3", file=sys.stderr)
            sys.exit(SKIP)
        return
    s3env = os.path.join(SRC, "tests", "s3", "s3env.py")
    argv = [sys.executable, s3env, "--cache", s3_cache, "--timeout", str(timeout), "--",
            sys.executable] + sys.argv
    rc = subprocess.run(argv).returncode
    if rc == SKIP:
        if require_s3:
            sys.exit(SKIP)
        log("# no node/npm for s3rver: running on the file:// store instead")
        os.environ["GLIDEFS_FAULT_NO_S3"] = "1"
        return
    sys.exit(rc)


def s3_only_test(timeout):
    """Prologue of a test that needs S3 and libnbd: parses GLIDEFSD
    --s3-cache DIR and re-runs under s3env (see run_under_s3env). Returns the
    arguments, or None when there is no S3 to run on (the caller returns
    SKIP)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("--s3-cache", default=None)
    a = ap.parse_args()
    need_libnbd()
    if not a.s3_cache and not s3_active():
        print("SKIP: needs S3 (run with --s3-cache)", file=sys.stderr)
        return None
    run_under_s3env(a.s3_cache, timeout=timeout, require_s3=True)
    return a


class Proxy:
    """The s3proxy.py control interface (only under s3env)."""

    def __init__(self):
        self.endpoint = os.environ.get("S3_ENDPOINT") or os.environ["AZURE_PROXY_CONTROL"]
        self.log_path = os.environ.get("S3_PROXY_LOG") or os.environ.get("AZURE_PROXY_LOG")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _get(self, path, **q):
        url = self.endpoint + path
        if q:
            url += "?" + urllib.parse.urlencode(q)
        for attempt in range(50):
            try:
                with self.opener.open(url, timeout=10) as r:
                    return json.loads(r.read() or b"{}")
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.1)  # the proxy is being restarted by s3env

    def faults(self, rate, kinds="500,503,slowdown", seed=1, stall_ms=None):
        q = {"rate": rate, "kinds": kinds, "seed": seed}
        if stall_ms is not None:
            q["stall_ms"] = stall_ms
        return self._get("/__proxy__/faults", **q)

    def off(self):
        return self._get("/__proxy__/faults", rate=0)

    def stats(self):
        return self._get("/__proxy__/stats")

    def logged_faults(self):
        """{kind: count} of the 'fault #n (seed s): KIND on ...' lines in its log."""
        out = {}
        if not self.log_path:
            return out
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    i = line.find("): ")
                    if " fault #" in line and i > 0:
                        kind = line[i + 3:].split(" ", 1)[0]
                        out[kind] = out.get(kind, 0) + 1
        except OSError:
            pass
        return out


# ---------------------------------------------------------------------------
# glidefsd

class Glidefsd:
    """One glidefsd. base holds the config, log and socket; cache and the
    store (file://) default to base/cache and base/store. prefix: the s3://
    prefix (defaults to a unique name) when running under s3env."""

    def __init__(self, glidefsd, base, name="d", cache=None, store=None, prefix=None,
                 disk_size="32M", size="8M", sync_delay_ms=20, node_id=None, api=False,
                 extra=None, nbd_extra=None, storage_extra=None, env=None, log_level="info",
                 shutdown_timeout_s=120, workers=8, s3=None, api_token=None, compaction=None):
        self.exe = glidefsd
        self.base = base
        self.name = name
        os.makedirs(base, exist_ok=True)
        self.cache = cache or os.path.join(base, name + "-cache")
        self.store = store or os.path.join(base, "store")
        self.s3 = s3_active() if s3 is None else s3
        self.prefix = prefix or "fault-%s-%d" % (os.path.basename(base), os.getpid())
        self.sock = os.path.join(base, name + ".sock")
        self.cfg = os.path.join(base, name + ".yaml")
        self.log = os.path.join(base, name + ".log")
        self.env = env or {}
        self.log_level = log_level
        self.proc = None
        self.logf = None
        self.preexec = None  # run in the child before exec (e.g. setrlimit)
        self.api_port = free_port() if api else None
        os.makedirs(self.cache, exist_ok=True)
        lines = []
        if node_id:
            lines.append("node_id: %s" % node_id)
        lines += ["cache:", "  dir: %s" % self.cache, "  disk_size: %s" % disk_size,
                  "storage:"]
        if self.s3 and azure_active():
            storage = {"url": "azure://%s/%s/%s" % (os.environ["AZURE_TEST_ACCOUNT"],
                                                     os.environ["AZURE_TEST_CONTAINER"],
                                                     self.prefix),
                       "endpoint": os.environ["AZURE_TEST_ENDPOINT"],
                       "azure_account_key": os.environ["AZURE_TEST_KEY"], "timeout_ms": 3000}
        elif self.s3:
            storage = {"url": "s3://%s/%s" % (os.environ["S3_BUCKET"], self.prefix),
                       "endpoint": os.environ["S3_ENDPOINT"], "region": "us-east-1",
                       "access_key_id": "S3RVER", "secret_access_key": "S3RVER",
                       "timeout_ms": 3000}
        else:
            os.makedirs(self.store, exist_ok=True)
            storage = {"url": "file://%s" % self.store}
        storage.update(storage_extra or {})
        lines += ["  %s: %s" % (k, v) for k, v in storage.items()]
        nbd = {"unix_socket": self.sock, "auto_create_size": size,
               "sync_delay_ms": sync_delay_ms, "workers": workers}
        nbd.update(nbd_extra or {})
        lines += ["servers:", "  shutdown_timeout_s: %d" % shutdown_timeout_s, "  nbd:"]
        lines += ["    %s: %s" % (k, v) for k, v in nbd.items()]
        lines += ["  api:"]
        # never the default 127.0.0.1:8080: parallel tests would fight over it
        lines += ["    listen: \"%s\"" % ("127.0.0.1:%d" % self.api_port if api else "")]
        self.api_token = api_token
        if api_token:
            lines += ["    token: %s" % api_token]
        if compaction:
            lines += ["compaction:"] + ["  %s: %s" % kv for kv in compaction.items()]
        lines += extra or []
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- lifecycle --------------------------------------------------------

    def start(self, wait=True, timeout=60.0):
        self.logf = open(self.log, "ab")
        env = dict(os.environ)
        env.update(self.env)
        self.proc = subprocess.Popen([self.exe, "-c", self.cfg, "--log-level", self.log_level],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=env, preexec_fn=self.preexec)
        if wait:
            self.wait_ready(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _connectable(self):
        if self.proc.poll() is not None:
            raise RuntimeError("glidefsd %s exited with %s:\n%s" % (
                self.name, self.proc.returncode, self.log_tail()))
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

    def wait_ready(self, timeout=60.0):
        wait_for(self._connectable, timeout, "glidefsd %s to listen" % self.name)

    def kill(self):
        """SIGKILL and reap; returns True if it was running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            return True
        return False

    def stop(self, timeout=180.0):
        """SIGTERM (drain every export) and wait; returns the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError("glidefsd %s did not exit after SIGTERM:\n%s" % (
                    self.name, self.log_tail()))
        return self.proc.returncode if self.proc else None

    def close(self):
        self.kill()
        if self.logf:
            self.logf.close()
            self.logf = None

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def nfds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    # -- logs -------------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def sanitizer_reports(self):
        return [ln for ln in self.log_text().splitlines()
                if "Sanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]

    # -- clients ----------------------------------------------------------

    def connect(self, export):
        import nbd
        h = nbd.NBD()
        h.set_export_name(export)
        h.connect_unix(self.sock)
        return h

    def api_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.api_port, path)


# Compaction often enough that a long run's store stays small: by default a
# cycle runs every 300 s, and a stress run uploads gigabytes in that time.
FAST_COMPACTION = {"interval_s": 1, "grace_ms": 500}


def disk_guard(path, min_free=10 << 30):
    """None, or why the run must stop: the disk under path (shared with other
    work) is nearly full."""
    free = shutil.disk_usage(path).free
    if free < min_free:
        return "only %s free on the disk under %s: stopping before it fills up" % (
            human(free), path)
    return None


def compact_all(d, models, timeout=60.0):
    """POST /api/exports/NAME/compact for every export until a cycle finds
    nothing more to rewrite or delete (dead segments go only after
    compaction.grace_ms). Returns the bytes reclaimed."""
    total = [0]
    for m in models:
        def done():
            try:
                st, _, body = http("POST", d.api_url("/api/exports/%s/compact" % m.name),
                                   timeout=timeout)
            except OSError:
                return True  # housekeeping only: never fail a test over it
            if st != 200:  # e.g. the store failed it (S3 faults): try next time
                log("# compaction of %s: HTTP %s %s" % (m.name, st, body[:160]))
                return True
            j = json.loads(body)
            total[0] += j.get("bytes_reclaimed", 0)
            return not j.get("bytes_reclaimed") and not j.get("segments_rewritten")
        try:
            wait_for(done, timeout, "compaction of " + m.name, interval=0.2)
        except TimeoutError:
            log("# compaction of %s still reclaiming after %.0f s" % (m.name, timeout))
    return total[0]


def dir_bytes(path):
    total = 0
    for dp, _, names in os.walk(path):
        for nm in names:
            try:
                total += os.lstat(os.path.join(dp, nm)).st_blocks * 512
            except OSError:
                pass
    return total


def nbd_errno(e):
    """The errno of an nbd.Error as an int (or None)."""
    import errno as errno_mod
    got = getattr(e, "errno", None)
    if isinstance(got, str):
        got = getattr(errno_mod, got, None)
    return got


def http(method, url, body=None, headers=None, timeout=10.0):
    """(status, headers, body bytes) of one HTTP request, no proxy from the env."""
    import http.client
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        headers = dict(headers or {})
        if body is not None and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"  # the API refuses other bodies
        c.request(method, path or "/", body=body, headers=headers)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def api_available(d):
    """True when d's REST API answers (it is being added to glidefsd)."""
    if not d.api_port:
        return False
    try:
        st, _, _ = http("GET", d.api_url("/api/exports"), timeout=2)
        return st < 500
    except OSError:
        return False


# ---------------------------------------------------------------------------
# tagged sectors

def mix64(x):
    """splitmix64 finaliser."""
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def sector_bytes(tag, sect, salt):
    """512 bytes: tag, sector, then a pattern derived from (tag, sector, salt)."""
    a = mix64(tag ^ (sect * 0x9E3779B97F4A7C15) ^ salt)
    b = mix64(a ^ 0xC2B2AE3D27D4EB4F ^ (salt << 1))
    return struct.pack("<QQ", tag, sect) + struct.pack("<QQ", a, b) * 31


ZERO_SECTOR = bytes(SECTOR)


def make_tag(rnd, conn, op):
    """Never 0 (0 is 'zeroes'): round in the top 24 bits, connection 8, op 32."""
    return (((rnd + 1) & 0xFFFFFF) << 40) | ((conn & 0xFF) << 32) | ((op + 1) & 0xFFFFFFFF)


def decode_sector(buf, sect, salt):
    """The tag a sector holds (0 for zeroes), or raise ValueError if its bytes
    are not exactly what some write of that tag to that sector put there."""
    if buf == ZERO_SECTOR:
        return 0
    tag, s = struct.unpack_from("<QQ", buf)
    if s != sect or tag == 0 or buf != sector_bytes(tag, sect, salt):
        raise ValueError("sector %d is corrupt: header says tag %#x sector %d" % (sect, tag, s))
    return tag


class Clock:
    """A global, thread-safe event counter (orders completions vs flushes)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0

    def tick(self):
        with self.lock:
            self.n += 1
            return self.n


class ExportModel:
    """What one export may hold. base[s]: the verified tag of sector s. Per
    round, ops[] lists every write/trim/zero issued (even those that never
    completed) and hist[s] the ops touching s in issue order (each sector is
    written by one connection only, so issue order is completion order)."""

    def __init__(self, name, size):
        self.name = name
        self.size = size
        self.nsect = size // SECTOR
        self.salt = mix64(sum(name.encode()) * 0x100000001B3 + len(name))
        self.base = [0] * self.nsect
        self.lock = threading.Lock()
        self.new_round()

    def new_round(self):
        self.ops = []          # [sect, n, tag, done_clock or None, fua_durable]
        self.hist = {}         # sect -> [op index]
        self.durable_upto = 0  # every op with done < durable_upto is durable

    def begin(self, sect, n, tag):
        with self.lock:
            i = len(self.ops)
            self.ops.append([sect, n, tag, None, False])
            for s in range(sect, sect + n):
                self.hist.setdefault(s, []).append(i)
            return i

    def complete(self, i, clock, fua=False):
        with self.lock:
            self.ops[i][3] = clock
            self.ops[i][4] = fua

    def flushed(self, start_clock):
        with self.lock:
            if start_clock > self.durable_upto:
                self.durable_upto = start_clock

    def allowed(self, s):
        """(durable value, [values that may have replaced it])."""
        h = self.hist.get(s)
        if not h:
            return self.base[s], []
        d = -1
        for j, i in enumerate(h):
            op = self.ops[i]
            if op[4] or (op[3] is not None and op[3] < self.durable_upto):
                d = j
        durable = self.ops[h[d]][2] if d >= 0 else self.base[s]
        return durable, [self.ops[i][2] for i in h[d + 1:]]

    def pending_bytes(self):
        """Bytes written this round."""
        return sum(op[1] for op in self.ops) * SECTOR


def read_export(h, size, chunk=4 * MiB):
    out = bytearray()
    for off in range(0, size, chunk):
        out += h.pread(min(chunk, size - off), off)
    return bytes(out)


def verify_export(model, data, exact=False, what=""):
    """Check data (the whole export) against the model; on success the
    observed tags become model.base and the round's history is cleared.
    exact: every sector must hold its base value (no writes since).
    Returns the list of problems (empty when all is well)."""
    bad = []
    obs = [0] * model.nsect
    mv = memoryview(data)
    for s in range(model.nsect):
        buf = bytes(mv[s * SECTOR:(s + 1) * SECTOR])
        try:
            tag = decode_sector(buf, s, model.salt)
        except ValueError as e:
            bad.append("%s%s: %s" % (what, model.name, e))
            if len(bad) > 20:
                break
            continue
        obs[s] = tag
        if exact:
            ok = tag == model.base[s]
            durable, later = model.base[s], []
        else:
            durable, later = model.allowed(s)
            ok = tag == durable or tag in later
        if not ok:
            bad.append("%s%s: sector %d holds tag %#x; durable value %#x, later writes %s"
                       % (what, model.name, s, tag, durable,
                          [hex(t) for t in later][:8]))
            if len(bad) > 20:
                break
    if not bad:
        model.base = obs
        model.new_round()
    return bad


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}

    def add(self, k, n=1):
        with self.lock:
            self.c[k] = self.c.get(k, 0) + n

    def get(self, k):
        return self.c.get(k, 0)


class Writer(threading.Thread):
    """One NBD connection writing its own region of one export with random
    writes (some FUA), trims, write-zeroes and flushes, recording everything
    in the model. Runs until stop is set or the connection dies."""

    def __init__(self, daemon, model, conn_idx, nconns, rnd, clock, stop, stats, seed,
                 max_sectors=256, expect_death=None, think=None):
        super().__init__(daemon=True)
        self.d = daemon
        self.m = model
        self.conn = conn_idx
        per = model.nsect // nconns
        self.lo = conn_idx * per
        self.hi = model.nsect if conn_idx == nconns - 1 else (conn_idx + 1) * per
        self.rnd = rnd
        self.clock = clock
        self.stop = stop
        self.stats = stats
        self.rng = random.Random(seed)
        self.max_sectors = max_sectors
        self.expect_death = expect_death  # Event: set before the daemon is killed
        self.error = None
        self.ops_done = 0
        self.think = think

    def run(self):
        import nbd
        try:
            h = self.d.connect(self.m.name)
        except nbd.Error as e:
            if not (self.expect_death and self.expect_death.is_set()):
                self.error = "connect %s: %s" % (self.m.name, e)
            return
        op = 0
        try:
            while not self.stop.is_set():
                r = self.rng.random()
                if r < 0.10:
                    start = self.clock.tick()
                    h.flush()
                    self.m.flushed(start)
                    self.stats.add("flushes")
                else:
                    big = self.rng.random() < 0.1
                    n = 1 + self.rng.randrange(self.max_sectors if big else 16)
                    n = min(n, self.hi - self.lo)
                    sect = self.lo + self.rng.randrange(self.hi - self.lo - n + 1)
                    if r < 0.17:
                        kind, tag = ("trim" if r < 0.135 else "zero"), 0
                    else:
                        kind = "write"
                        tag = make_tag(self.rnd, self.conn, op)
                    fua = self.rng.random() < 0.08
                    flags = nbd.CMD_FLAG_FUA if fua else 0
                    i = self.m.begin(sect, n, tag)
                    if kind == "write":
                        buf = b"".join(sector_bytes(tag, s, self.m.salt)
                                       for s in range(sect, sect + n))
                        h.pwrite(buf, sect * SECTOR, flags)
                        self.stats.add("bytes_written", n * SECTOR)
                    elif kind == "trim":
                        h.trim(n * SECTOR, sect * SECTOR, flags)
                    else:
                        h.zero(n * SECTOR, sect * SECTOR, flags)
                    self.m.complete(i, self.clock.tick(), fua)
                    self.stats.add(kind + ("_fua" if fua else ""))
                op += 1
                self.ops_done += 1
                if self.think:
                    self.stop.wait(self.think)
        except nbd.Error as e:
            if not (self.expect_death and self.expect_death.is_set()):
                self.error = "%s conn %d op %d: %s" % (self.m.name, self.conn, op, e)
        finally:
            try:
                h.shutdown()
            except Exception:
                pass
            try:
                h.close()
            except Exception:
                pass


def verify_all(d, models, stats, exact=False, what=""):
    """Read every export of d in full and check it; returns problems."""
    bad = []
    for m in models:
        h = d.connect(m.name)
        try:
            data = read_export(h, m.size)
        finally:
            try:
                h.shutdown()
            except Exception:
                pass
        stats.add("bytes_verified", len(data))
        bad += verify_export(m, data, exact=exact, what=what)
    return bad


# ---------------------------------------------------------------------------
# power cut (used with powercut.so, see powercut.c)

def power_cut(root, shadow, rng, mode):
    """Turn every file under root into a state a power cut could leave:
    mode 'lose': exactly what was last fsync'ed/fdatasync'ed (as recorded by
    the shim in shadow/); mode 'mix': every 4 KiB page written since then
    independently either old or new, and the size either old or new.
    Files the shim never saw keep their contents (unchanged since the last
    cut). Afterwards everything on disk counts as synced: the shadow is
    emptied. A file created since the last cut whose name no directory fsync
    has listed yet is removed ('lose') or removed or kept ('mix').
    Returns (files rolled back, pages reverted, pages kept, names dropped)."""
    files = reverted = kept = dropped = 0
    listings = {}
    for dirpath, _, names in os.walk(root):
        for nm in names:
            p = os.path.join(dirpath, nm)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if not (st.st_mode & 0o170000) == 0o100000:
                continue
            sp = os.path.join(shadow, "%d-%d" % (st.st_dev, st.st_ino))
            if os.path.exists(sp + ".new"):
                dst = os.stat(dirpath)
                lp = os.path.join(shadow, "dir-%d-%d" % (dst.st_dev, dst.st_ino))
                if lp not in listings:
                    try:
                        with open(lp) as f:
                            listings[lp] = set(f.read().splitlines())
                    except FileNotFoundError:
                        listings[lp] = None
                durable = listings[lp] is None or nm in listings[lp]
                if not durable and (mode == "lose" or rng.random() < 0.5):
                    os.unlink(p)  # its directory entry never reached the disk
                    dropped += 1
                    continue
            if not os.path.exists(sp):
                continue
            with open(p, "rb") as f:
                real = f.read()
            with open(sp, "rb") as f:
                old = f.read()
            if real == old:
                continue
            files += 1
            if mode == "lose":
                new = old
                reverted += (max(len(real), len(old)) + 4095) // 4096
            else:
                size = rng.choice((len(real), len(old)))
                out = bytearray()
                for off in range(0, size, 4096):
                    a = real[off:off + 4096]
                    b = old[off:off + 4096]
                    ln = min(4096, size - off)
                    a = a + bytes(ln - len(a)) if len(a) < ln else a[:ln]
                    b = b + bytes(ln - len(b)) if len(b) < ln else b[:ln]
                    if a == b or rng.random() < 0.5:
                        out += a
                        kept += a != b
                    else:
                        out += b
                        reverted += 1
                new = bytes(out)
            with open(p, "r+b") as f:
                f.truncate(0)
                f.write(new)
    shutil.rmtree(shadow, ignore_errors=True)
    os.makedirs(shadow, exist_ok=True)
    return files, reverted, kept, dropped


# ---------------------------------------------------------------------------
# anchors

def anchor(d, models):
    """One idle connection per export, held while a round's writers connect:
    while a client is connected the node keeps the write lease, so the
    writers do not race the lease hand-back (test_leaseback.py tests that)."""
    return [d.connect(m.name) for m in models]


def drop(handles):
    for h in handles:
        try:
            h.shutdown()
        except Exception:  # noqa: BLE001 - the daemon may be gone
            pass
        try:
            h.close()
        except Exception:  # noqa: BLE001
            pass
    del handles[:]
