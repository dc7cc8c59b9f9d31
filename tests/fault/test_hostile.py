#!/usr/bin/python3
"""test_hostile.py - hostile input against a live glidefsd (promise 7): each
gets a clear error, nothing it should not touch changes, and the daemon keeps
serving a well-behaved client on another export throughout. Run it on the
ASan/UBSan build too: the daemon's log must stay free of sanitizer reports.

  nbd     the fuzz corpus (fuzz/corpus: client byte streams) replayed over a
          real socket, then seeded mutations of it (flips, cuts, splices,
          inserted junk);
  rest    random methods, paths, query strings, headers and bodies over raw
          HTTP, with and without the bearer token: 4xx with a JSON
          {"error": ...} for what is wrong, never a 5xx or a hang, never a
          2xx without the token;
  yaml    mutated and generated configs through glidefs_config_load()
          (cfgcheck): an error of one line or a valid config, never a crash;
          a sample of the bad ones through glidefsd itself: exit non-zero
          with one clear line, nothing listening;
  store   crafted objects in the store (bad magic, lengths past the end,
          huge counts, wrong checksums, truncated, garbage) in segments,
          manifests, volume.json and the lease of copies of a good volume:
          every block reads back either exactly right or as EIO, or the
          export is refused - never wrong data, never a crash or a hang.

usage: test_hostile.py GLIDEFSD CFGCHECK CORPUS_DIR [--only nbd,rest,yaml,store]
  GLIDEFS_HOSTILE_SCALE=N  multiply the number of generated inputs (default 1)
"""
import argparse
import errno
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

MiB = fl.MiB
SCALE = float(os.environ.get("GLIDEFS_HOSTILE_SCALE") or 1)
TOKEN = "fuzz-token-1234"
COUNTS = {}
FAILED = []


def count(k, n=1):
    COUNTS[k] = COUNTS.get(k, 0) + n


def fail(msg):
    FAILED.append(msg)
    print("FAIL - " + msg, flush=True)


class Good:
    """A well-behaved client on its own export: writes, flushes, reads back."""

    def __init__(self, d):
        self.d = d
        self.m = fl.ExportModel("good", 8 * MiB)
        self.h = d.connect("good")
        self.rng = random.Random(5)
        self.n = 0

    def check(self, where):
        import nbd
        self.n += 1
        s = self.rng.randrange(self.m.nsect - 64)
        n = 1 + self.rng.randrange(64)
        tag = fl.make_tag(self.n, 0, self.n)
        data = b"".join(fl.sector_bytes(tag, x, self.m.salt) for x in range(s, s + n))
        try:
            if not self.d.alive():
                raise RuntimeError("glidefsd died (status %s)" % self.d.proc.returncode)
            self.h.pwrite(data, s * fl.SECTOR)
            self.h.flush()
            if self.h.pread(len(data), s * fl.SECTOR) != data:
                raise RuntimeError("read back other bytes")
        except (nbd.Error, RuntimeError) as e:
            fail("the well-behaved client broke after %s: %s" % (where, e))
            return False
        return True


# ---------------------------------------------------------------------------
# nbd: the fuzz corpus over a real socket

def replay(sock_path, stream, timeout=5.0, half_close=False):
    """Send one client byte stream after the greeting; read whatever comes
    until the server closes or stays quiet. Returns the bytes received."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    got = b""
    try:
        got = fl_recv(s, 18)
        s.setblocking(False)
        import select
        off = 0
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            want_w = off < len(stream)
            if not want_w and half_close:
                half_close = False
                try:
                    s.shutdown(socket.SHUT_WR)  # EOF: the client is gone mid-stream
                except OSError:
                    pass
            r, w, _ = select.select([s], [s] if want_w else [], [], 0.05)
            if w:
                try:
                    off += s.send(stream[off:off + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
                except BlockingIOError:
                    pass
            if r:
                try:
                    c = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    break
                if not c:
                    break
                got += c
                quiet_since = time.monotonic()
            if not want_w and time.monotonic() - quiet_since > 0.15:
                break  # all sent, the server has nothing more to say
    finally:
        s.close()
    return got


def fl_recv(s, n):
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            break
        buf += c
    return buf


def mutate(rng, seeds):
    b = bytearray(rng.choice(seeds))
    for _ in range(1 + rng.randrange(4)):
        k = rng.randrange(7)
        if k == 0 and b:  # flip bits
            for _ in range(1 + rng.randrange(8)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
        elif k == 1 and b:  # cut
            b = b[:rng.randrange(len(b))]
        elif k == 2:  # insert junk
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        elif k == 3:  # splice another seed
            o = rng.choice(seeds)
            i = rng.randrange(len(b) + 1)
            j = rng.randrange(len(o) + 1)
            b = b[:i] + o[j:]
        elif k == 4 and len(b) >= 4:  # interesting 32-bit values
            i = rng.randrange(len(b) - 3)
            v = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 512, 4096,
                            32 * MiB, 32 * MiB + 1, 0x02000000])
            b[i:i + 4] = struct.pack(">I", v)
        elif k == 5 and len(b) >= 8:  # interesting 64-bit values
            i = rng.randrange(len(b) - 7)
            v = rng.choice([0, (1 << 63), (1 << 64) - 1, (1 << 64) - 512, 64 * MiB - 512])
            b[i:i + 8] = struct.pack(">Q", v)
        elif k == 6 and b:  # duplicate a slice
            i = rng.randrange(len(b))
            j = min(len(b), i + rng.randrange(1, 200))
            b[j:j] = b[i:j] * rng.randrange(1, 4)
    return bytes(b)


def nbd_part(d, good, corpus, rng):
    seeds = []
    for nm in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, nm), "rb") as f:
            seeds.append(f.read())
    for st in seeds:
        replay(d.sock, st)
        count("nbd_corpus")
    good.check("the NBD fuzz corpus")
    n = int(300 * SCALE)
    for i in range(n):
        replay(d.sock, mutate(rng, seeds), timeout=3.0, half_close=rng.random() < 0.5)
        count("nbd_mutations")
        if i % 50 == 49 and not good.check("%d NBD mutations" % (i + 1)):
            return
    good.check("the NBD mutations")
    print("ok - NBD: %d corpus streams and %d mutations, the daemon kept serving"
          % (COUNTS.get("nbd_corpus", 0), COUNTS.get("nbd_mutations", 0)), flush=True)


# ---------------------------------------------------------------------------
# rest: raw HTTP

def raw_http(port, data, timeout=5.0):
    """(status or None, body) of a raw request; None if no answer came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server hung up before taking it all
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                c = s.recv(65536)
            except socket.timeout:
                return "timeout", got
            except OSError:
                break
            if not c:
                break
            got += c
    finally:
        s.close()
    if not got.startswith(b"HTTP/1."):
        return None, got
    try:
        status = int(got.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, got
    body = got.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in got else b""
    return status, body


NAMES = ["victim", "fz1", "fz-2", "a.b_c", "x" * 128, "x" * 129, ".hidden", "..", ".",
         "a/b", "a%2Fb", "%2e%2e", "%00", "%zz", "ünï", "con", "-", "_", "a b", "a+b",
         "%41bc", "victim%00", "*", "\\", "name?x=1", ""]
PATHS = ["/metrics", "/api/exports", "/api/exports/{n}", "/api/exports/{n}/drain",
         "/api/exports/{n}/promote", "/api/exports/{n}/release", "/api/exports/{n}/compact",
         "/api/exports/{n}/metrics", "/api", "/", "/api/exports/{n}/x", "/api//exports",
         "/api/exports/{n}/drain/extra", "/API/EXPORTS", "/api/exports/", "/../etc/passwd",
         "/api/exports/{n}/../good", "*", "/api/exports/{n}%2Fdrain", "/metrics/x"]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE", "CONNECT",
           "PROPFIND", "get", "G\x01T", "X" * 300]
QUERIES = ["", "", "", "?timeout_s=1", "?timeout_s=-1", "?timeout_s=99999999999999999999",
           "?timeout_s=abc", "?force=1", "?force=yes", "?purge=1&force=1", "?unknown=1",
           "?timeout_s=1&timeout_s=2", "?%00=1", "?=", "?&&&", "?timeout_s", "?a=" + "b" * 5000,
           "?timeout_s=0x10", "?force=%ff"]


def json_junk(rng, depth=0):
    k = rng.randrange(12 if depth < 4 else 7)
    if k == 0:
        return rng.choice([0, -1, 1, 2 ** 63, -2 ** 63, 2 ** 64, 10 ** 30, 1.5, -0.0, 1e308])
    if k == 1:
        return rng.choice(["", "x" * rng.randrange(1, 300), "1G", "-5", "1e3", "\u0000",
                           "\ud800", "1T", "18446744073709551616", "victim", "good", "..",
                           "12345678901234567890K", "1 GiB", "0"])
    if k == 2:
        return rng.choice([True, False, None])
    if k in (3, 4, 5, 6):
        keys = ["name", "size", "size_gb", "size_bytes", "force", "timeout_s", "purge",
                "x", "", "name\u0000", "read_only"]
        return {rng.choice(keys): json_junk(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [json_junk(rng, depth + 1) for _ in range(rng.randrange(4))]


def body_junk(rng):
    k = rng.randrange(10)
    if k < 5:
        return json.dumps(json_junk(rng)).encode()
    if k == 5:
        return b"[" * 100000 + b"]" * 100000
    if k == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 500)))
    if k == 7:
        return b'{"name": "fz%d", "size": "%s"}' % (rng.randrange(1000), rng.choice(
            [b"1M", b"64M", b"1P", b"16E", b"0", b"-1M", b"511", b"1.5G", b"99999999999T"]))
    if k == 8:
        return b'{"size_bytes": %d}' % rng.choice([0, 512, 513, 2 ** 40, 2 ** 62, 2 ** 64,
                                                   -512, 16 * MiB])
    return b""


ROUTES = [("GET", "/metrics"), ("GET", "/api/exports"), ("POST", "/api/exports"),
          ("GET", "/api/exports/{n}"), ("PUT", "/api/exports/{n}"),
          ("DELETE", "/api/exports/{n}"), ("POST", "/api/exports/{n}/drain"),
          ("POST", "/api/exports/{n}/promote"), ("POST", "/api/exports/{n}/release"),
          ("POST", "/api/exports/{n}/compact"), ("GET", "/api/exports/{n}/metrics")]


def plausible(rng):
    """A request that follows the route table, with odd but well-typed values,
    so the handlers themselves run (create, resize, drain, delete, ...)."""
    method, path = rng.choice(ROUTES)
    name = rng.choice(["victim", "victim", "fz%d" % rng.randrange(8)])
    path = path.replace("{n}", name)
    q = rng.choice(["", "", "?timeout_s=%d" % rng.randrange(0, 3), "?force=1",
                    "?purge=1", "?force=0", "?timeout_s=1&force=1&purge=1"])
    body = b""
    # sizes up to 1 PiB (the config's limit); beyond that: rest_part's own checks
    sizes = rng.choice([("size", ["16M", "1G", "4096", "1T", "0", "-1M", "1P", "8E", "17M",
                                  "1.5G", 16]),
                        ("size_gb", [1, 0, 1024, -1, 1.5, "1", 2 ** 20]),
                        ("size_bytes", [512, 2 ** 20, 2 ** 40, 2 ** 50, 0, 513, -512, "1M"])])
    if method == "POST" and path == "/api/exports":
        body = json.dumps({"name": name, sizes[0]: rng.choice(sizes[1])}).encode()
    elif method == "PUT":
        body = json.dumps({sizes[0]: rng.choice(sizes[1])}).encode()
    elif rng.random() < 0.2:
        body = json.dumps(json_junk(rng)).encode()
    return method, path, q, body


def rest_request(rng, port):
    """Build one hostile request. Returns (bytes, well_formed, authed, target)."""
    method = rng.choice(METHODS[:5]) if rng.random() < 0.8 else rng.choice(METHODS)
    name = rng.choice(NAMES)
    path = rng.choice(PATHS).replace("{n}", name)
    if rng.random() < 0.05:
        path = "/api/exports/" + "%41" * rng.randrange(1, 3000)
    q = rng.choice(QUERIES)
    body = body_junk(rng) if rng.random() < 0.6 else b""
    if rng.random() < 0.3:
        method, path, q, body = plausible(rng)
    authed = rng.random() < 0.85
    hdrs = [("Host", "127.0.0.1:%d" % port), ("Connection", "close")]
    if authed:
        hdrs.append(("Authorization", "Bearer " + TOKEN))
    else:
        hdrs.append(rng.choice([("Authorization", "Bearer wrong"), ("Authorization", "Basic eDp5"),
                                ("Authorization", "Bearer " + TOKEN + "x"),
                                ("Authorization", "Bearer"), ("X-Nothing", "1"),
                                ("Authorization", "bearer " + TOKEN.upper())]))
    well_formed = True
    big = False
    k = rng.randrange(14)
    if k == 0:
        hdrs.append(("Content-Length", str(len(body) + rng.randrange(1, 1000))))  # short body
        well_formed = False
    elif k == 1:
        hdrs.append(("Content-Length", rng.choice(["-1", "abc", "99999999999999999999999",
                                                   "1e3", " 5", "0x10"])))
        well_formed = False
    elif k == 2:
        hdrs.append(("Transfer-Encoding", "chunked"))
        body = (b"%x\r\n" % len(body)) + body + b"\r\n0\r\n\r\n" if rng.random() < 0.5 else \
            b"zz\r\n" + body
        well_formed = False
    elif k == 3:  # may be too big for the server (431)
        hdrs += [("X-H%d" % i, "v" * rng.randrange(100)) for i in range(rng.randrange(50, 400))]
        hdrs.append(("Content-Length", str(len(body))))
        big = True
    elif k == 4:
        hdrs.append(("X-Big", "b" * rng.randrange(10000, 100000)))
        hdrs.append(("Content-Length", str(len(body))))
        big = True
    elif k == 5:
        hdrs.append(("Content-Length", "33554432000"))  # 31 GiB promised
        well_formed = False
    elif k == 6:
        hdrs.append(("Content-Type", rng.choice(["text/plain", "application/json; charset=x",
                                                 "\x00", "multipart/form-data; boundary=x"])))
        hdrs.append(("Content-Length", str(len(body))))
    else:
        hdrs.append(("Content-Length", str(len(body))))
        hdrs.append(("Content-Type", "application/json"))  # else 415 before the handlers
    version = "HTTP/1.1" if rng.random() < 0.95 else rng.choice(["HTTP/1.0", "HTTP/2.0",
                                                                  "HTTP/9", "FOO"])
    head = "%s %s%s %s\r\n" % (method, path, q, version)
    head += "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    try:
        raw = head.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = head.encode("utf-8", "replace")
    # plain enough that the request must reach glidefsd (not only libmicrohttpd)
    std = (method in ("GET", "POST", "PUT", "DELETE", "HEAD") and version == "HTTP/1.1"
           and all(33 <= ord(c) < 127 for c in path + q) and not big and len(raw) < 4096)
    return (raw + body, well_formed and std, authed, version,
            "%s %s%s" % (method, path[:60], q[:30]))


def rest_part(d, good, rng):
    if not fl.api_available(d):
        print("# REST API not available: REST fuzz skipped", flush=True)
        COUNTS["rest_skipped"] = 1
        return good
    port = d.api_port
    # a real export for the state-changing routes to act on
    vb = b'{"name": "victim", "size": "16M"}'
    st, body = raw_http(port, b"POST /api/exports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Connection: close\r\nContent-Type: application/json\r\n"
                        b"Authorization: Bearer " + TOKEN.encode() +
                        b"\r\nContent-Length: %d\r\n\r\n" % len(vb) + vb)
    if st not in (200, 201):
        fail("POST /api/exports to create the victim: %s %r" % (st, body[:200]))
    n = int(1500 * SCALE)
    codes = {}
    for i in range(n):
        data, well_formed, authed, version, what = rest_request(rng, port)
        try:
            st, body = raw_http(port, data, timeout=15.0)
        except OSError as e:
            fail("REST %s: could not connect: %s" % (what, e))
            break
        count("rest_requests")
        codes[st] = codes.get(st, 0) + 1
        if st == "timeout":
            fail("REST %s: no answer within 15 s" % what)
        elif st is None:
            if well_formed:
                fail("REST %s: the connection closed without an answer" % what)
        else:
            if st >= 500 and st != 503 and not (st == 505 and version != "HTTP/1.1"):
                fail("REST %s: %d %r" % (what, st, body[:200]))
            if not authed and 200 <= st < 300:
                fail("REST %s: %d without the token" % (what, st))
            is_api = b"/api" in data.split(b" ", 2)[1][:5] if b" " in data else False
            if st >= 400 and is_api and well_formed and not data.startswith(b"HEAD"):
                try:
                    j = json.loads(body)
                    if not (isinstance(j, dict) and isinstance(j.get("error"), str)):
                        fail("REST %s: %d with a body that is not {\"error\": ...}: %r"
                             % (what, st, body[:200]))
                except ValueError:
                    fail("REST %s: %d with a non-JSON body %r" % (what, st, body[:200]))
        if i % 100 == 99:
            if not good.check("%d REST requests" % (i + 1)):
                return good
            st, body = raw_http(port, b"GET /api/exports HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
                                b"close\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
            if st != 200 or "exports" not in json.loads(body or b"{}"):
                fail("the REST API stopped answering GET /api/exports: %s %r" % (st, body[:200]))
                return good
    COUNTS["rest_status"] = {str(k): v for k, v in sorted(codes.items(), key=str)}
    good.check("the REST fuzz")
    print("%s - REST: %d hostile requests (%s), the daemon kept serving"
          % ("FAIL" if FAILED else "ok", COUNTS.get("rest_requests", 0), COUNTS["rest_status"]),
          flush=True)
    return good


# ---------------------------------------------------------------------------
# yaml: configs

KEYS = ["cache.dir", "cache.disk_size_gb", "cache.disk_size", "storage.url", "storage.endpoint",
        "storage.region", "storage.access_key_id", "storage.secret_access_key",
        "storage.timeout_ms", "storage.max_retries", "storage.encryption_password",
        "storage.compression", "storage.compression_level", "storage.tls_verify",
        "storage.max_connections", "node_id", "servers.shutdown_timeout_s",
        "servers.nbd.unix_socket", "servers.nbd.tcp", "servers.nbd.auto_create_size_gb",
        "servers.nbd.auto_create_size", "servers.nbd.blocks_per_batch",
        "servers.nbd.sync_delay_ms", "servers.nbd.block_size", "servers.nbd.default_export",
        "servers.nbd.workers", "servers.api.listen", "servers.api.token",
        "compaction.min_live_pct", "cost.put_per_1000", "nonexistent.key", "cache",
        "servers.nbd", "storage.url.extra"]
VALUES = ["", "0", "-1", "1", "4096", "9999999999999999999999", "1e30", "-0", "0x10", "1.5",
          "true", "no", "~", "null", "[]", "{}", "[1, 2]", "{a: 1}", "'quoted'", '"dq\\x00"',
          "x" * 5000, "${HOME}", "${UNDEFINED_VAR_X}", "${X:-default}", "${${NESTED}}", "${",
          "$${ESC}", "s3://bucket/p", "file:///tmp/x", "file://relative", "ftp://x",
          "http://[::1", "127.0.0.1:99999", ":0", "1T", "1P", "64MiB", "1 G", "10Q", "-5M",
          "!!binary aGVsbG8=", "!!python/object:os.system ls", "&a x", "*a", "|\n  block",
          ">\n  folded", "\"\\u0000\"", "ünïcödé", "\x00", "\t", "'"]
BASE_CFG = """cache:
  dir: {base}/cfgfuzz-cache
  disk_size_gb: 4
storage:
  url: file://{base}/cfgfuzz-store
  region: us-east-1
servers:
  shutdown_timeout_s: 10
  nbd:
    unix_socket: {base}/cfgfuzz.sock
    sync_delay_ms: 20
  api:
    listen: ""
"""


def set_key(rng, key, value):
    parts = key.split(".")
    out = []
    for i, p in enumerate(parts[:-1]):
        out.append("  " * i + p + ":")
    out.append("  " * (len(parts) - 1) + parts[-1] + ": " + value)
    return "\n".join(out) + "\n"


def yaml_case(rng, base):
    doc = BASE_CFG.format(base=base)
    k = rng.randrange(12)
    if k <= 2:  # byte mutations of the good config
        b = bytearray(doc.encode())
        for _ in range(1 + rng.randrange(6)):
            i = rng.randrange(len(b))
            op = rng.randrange(4)
            if op == 0:
                b[i] = rng.randrange(256)
            elif op == 1:
                del b[i]
            elif op == 2:
                b[i:i] = bytes([rng.choice(b":-{}[]&*!|>'\"%@`#,?\t\n \x00\xff")])
            else:
                b[i:i] = b[i:i + rng.randrange(1, 40)]
        return bytes(b)
    if k <= 5:  # a key with a hostile value, appended (duplicate maps/keys) or alone
        key, val = rng.choice(KEYS), rng.choice(VALUES)
        if rng.random() < 0.5:
            return (doc + set_key(rng, key, val)).encode("utf-8", "surrogateescape")
        lines = doc.splitlines(True)
        i = rng.randrange(len(lines))
        ind = len(lines[i]) - len(lines[i].lstrip())
        lines.insert(i + 1, " " * ind + key.split(".")[-1] + ": " + val + "\n")
        return "".join(lines).encode("utf-8", "surrogateescape")
    if k == 6:  # billion laughs
        s = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        for j in range(1, 9):
            s += "%s: &%s [%s]\n" % (chr(97 + j), chr(97 + j), ",".join(["*" + chr(96 + j)] * 10))
        return (doc + "cost:\n  x: *i\n" + s).encode()
    if k == 7:  # deep nesting
        n = rng.choice([100, 1000, 50000])
        return (doc + "cache2: " + "[" * n + "]" * n + "\n").encode()
    if k == 8:  # multi-document, directives, BOM, tags
        return rng.choice([doc + "---\n" + doc, "%YAML 1.1\n---\n" + doc, "\ufeff" + doc,
                           "--- !!map\n" + doc, doc + "...\n" + "junk: [", "%TAG ! x\n" + doc,
                           "<<: {cache: {dir: /x}}\n" + doc]).encode()
    if k == 9:  # garbage
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
    if k == 10:  # a huge scalar or many keys
        if rng.random() < 0.5:
            return (doc + "node_id: " + "n" * rng.choice([129, 10000, 1000000]) + "\n").encode()
        return (doc + "cost:\n" + "".join("  k%d: 1\n" % i for i in range(20000))).encode()
    # structural nonsense
    return rng.choice(["", "\n", "- a\n- b\n", "cache: [1,2]\n", "42\n", "cache:\n  dir:\n",
                       "storage: {url: file:///tmp, url: file:///x}\n" + doc,
                       "cache: &c {dir: /tmp/x}\nstorage: *c\n", "? complex\n: key\n",
                       doc.replace("  ", "\t"), doc.replace(":", " :")]).encode()


def yaml_part(glidefsd, cfgcheck, base, rng):
    d = os.path.join(base, "cfgfuzz")
    os.makedirs(d)
    n = int(1500 * SCALE)
    files = []
    for i in range(n):
        p = os.path.join(d, "c%05d.yaml" % i)
        with open(p, "wb") as f:
            f.write(yaml_case(rng, base))
        files.append(p)
    env = dict(os.environ, NESTED="HOME", X="x")
    results = {}
    for i in range(0, n, 250):
        batch = files[i:i + 250]
        r = subprocess.run([cfgcheck] + batch, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=300)
        out = r.stdout.decode(errors="replace").splitlines()
        last = None
        for line in out:
            if line.startswith("FILE "):
                last = line[5:]
            elif line.startswith(("OK ", "ERR ", "BROKEN ")):
                results[last] = line
        err = r.stderr.decode(errors="replace")
        if r.returncode != 0 or "Sanitizer" in err or "runtime error" in err:
            culprit = last
            kept = os.path.join(base, "..", os.path.basename(base) + "-crash.yaml")
            if culprit:
                shutil.copy(culprit, kept)
            fail("config loader: status %d on %s (kept as %s): %s" % (
                r.returncode, culprit, kept, err.strip()[-1500:]))
            if r.returncode < 0 or "Sanitizer" in err:
                return
    ok = sum(1 for v in results.values() if v.startswith("OK "))
    errs = [v for v in results.values() if v.startswith("ERR ")]
    broken = [v for v in results.values() if v.startswith("BROKEN ")]
    for b in broken[:10]:
        fail("config loader: " + b)
    # every error names the file; where there is a place, line and column
    import re
    with_pos = 0
    for p, v in results.items():
        if not v.startswith("ERR "):
            continue
        msg = v.split(": ", 1)[1] if ": " in v else ""
        if not msg.startswith(p):
            fail("config loader: an error that does not name the file: %s" % v[:300])
        elif re.match(re.escape(p) + r":\d+:\d+: ", msg):
            with_pos += 1
    COUNTS["yaml_errors_with_line_col"] = with_pos
    COUNTS["yaml_configs"] = len(results)
    COUNTS["yaml_valid"] = ok
    COUNTS["yaml_errors"] = len(errs)
    # a sample of the bad ones through glidefsd itself
    sample = [p for p, v in results.items() if v.startswith("ERR ")]
    rng.shuffle(sample)
    for p in sample[:int(25 * SCALE)]:
        t = time.monotonic()
        try:
            r = subprocess.run([glidefsd, "-c", p], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, timeout=20)
        except subprocess.TimeoutExpired:
            fail("glidefsd -c %s (a bad config) did not exit within 20 s" % p)
            continue
        count("yaml_daemon_runs")
        err = r.stderr.decode(errors="replace").strip().splitlines()
        if r.returncode <= 0:
            fail("glidefsd -c %s (bad config %s): exit status %d" % (
                p, results[p][:120], r.returncode))
        if "Sanitizer" in "\n".join(err) or "runtime error" in "\n".join(err):
            fail("glidefsd -c %s: sanitizer report" % p)
        elif len(err) != 1:
            fail("glidefsd -c %s: %d lines on stderr, want one: %r" % (p, len(err), err[:4]))
        if os.path.exists(os.path.join(base, "cfgfuzz.sock")):
            fail("glidefsd -c %s left a socket behind" % p)
        if time.monotonic() - t > 10:
            fail("glidefsd -c %s took %.1f s to refuse a bad config" % (p, time.monotonic() - t))
    print("ok - YAML: %d configs (%d valid, %d refused with one line), %d bad ones through "
          "glidefsd: all refused, exit non-zero" % (len(results), ok, len(errs),
                                                     COUNTS.get("yaml_daemon_runs", 0)),
          flush=True)


# ---------------------------------------------------------------------------
# store: crafted objects

def crc32c(data, crc=0):
    t = CRC_TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    CRC_TABLE.append(_c)
assert crc32c(b"123456789") == 0xE3069283

SEG_FIX = struct.Struct("<8sIIQQIIII16s")
SEG_ENT = struct.Struct("<QQIIIIII")
MAN_FIX = struct.Struct("<8sIIQQQIIQII")
MAN_ENT = struct.Struct("<QQIIII")


class Seg:
    def __init__(self, raw):
        self.raw = raw
        (self.magic, self.version, self.flags, self.epoch, self.seq, self.nblocks, self.bs,
         self.hlen, self.res, self.uuid) = SEG_FIX.unpack_from(raw)
        self.ents = [list(SEG_ENT.unpack_from(raw, 64 + 40 * i)) for i in range(self.nblocks)]

    def header(self, crc=True, **over):
        f = dict(magic=self.magic, version=self.version, flags=self.flags, epoch=self.epoch,
                 seq=self.seq, nblocks=self.nblocks, bs=self.bs, hlen=self.hlen, res=self.res,
                 uuid=self.uuid)
        f.update(over)
        h = SEG_FIX.pack(f["magic"], f["version"], f["flags"], f["epoch"], f["seq"],
                         f["nblocks"], f["bs"], f["hlen"], f["res"], f["uuid"])
        h += b"".join(SEG_ENT.pack(*e) for e in self.ents)
        return h + struct.pack("<I", crc32c(h) if crc else 0xDEADBEEF)

    def build(self, crc=True, **over):
        h = self.header(crc, **over)  # as long as the original header
        return h + self.raw[len(h):]


def build_manifest(epoch, seq, vsize, bs, segs, ents, flags=0, nsegs=None, nentries=None,
                   body_len=None, hcrc=True, bcrc=True, body=None):
    if body is None:
        body = b"".join(struct.pack("<QQ", e, s) for e, s in segs)
        body += b"".join(MAN_ENT.pack(*e[:6]) for e in ents)
        body += b"".join(struct.pack("<I", e[6]) for e in ents)
        body += struct.pack("<I", crc32c(body) if bcrc else 0x12345678)
    h = MAN_FIX.pack(b"GFSMAN01", 1, flags, epoch, seq, vsize,
                     len(segs) if nsegs is None else nsegs, bs,
                     len(ents) if nentries is None else nentries,
                     len(body) if body_len is None else body_len, 0)[:60]
    h += struct.pack("<I", crc32c(h) if hcrc else 0x0BADC0DE)
    return h + body


def make_pristine(glidefsd, base):
    """A volume 'pristine' (2 MiB, 16 blocks, each written once, 4 segments)
    plus its manifest, drained. Returns (store dir, model)."""
    store = os.path.join(base, "store")
    d = fl.Glidefsd(glidefsd, base, "maker", store=store, size="2M",
                    nbd_extra={"blocks_per_batch": 4})
    m = fl.ExportModel("pristine", 2 * MiB)
    try:
        d.start()
        h = d.connect("pristine")
        for s in range(0, m.nsect, 256):
            h.pwrite(b"".join(fl.sector_bytes(7, x, m.salt) for x in range(s, s + 256)),
                     s * fl.SECTOR)
        h.flush()
        h.shutdown()
        m.base = [7] * m.nsect
        if d.stop() != 0:
            raise RuntimeError("maker drain failed:\n" + d.log_tail())
    finally:
        d.close()
    return store, m


def store_cases(vol):
    """[(case name, mutate(dir))]; dir is a copy of the pristine volume."""
    segdir = os.path.join(vol, "seg")
    mandir = os.path.join(vol, "manifest")
    seg_names = sorted(os.listdir(segdir))
    man_names = sorted(os.listdir(mandir))
    segs = {n: Seg(open(os.path.join(segdir, n), "rb").read()) for n in seg_names}
    with open(os.path.join(vol, "volume.json")) as f:
        vj = json.load(f)
    vsize, bs = vj["size"], vj["block_size"]
    seglist = [tuple(int(x, 16) for x in n.split("-")) for n in seg_names]
    ents = []
    for i, n in enumerate(seg_names):
        for e in segs[n].ents:
            # manifest entry: block, write_seq, seg, offset, length, crc, flags
            ents.append([e[0], e[1], i, e[2], e[3], e[5], e[6]])
    ents.sort()
    ep, sq = (int(x, 16) for x in man_names[-1].split("-"))
    target = max(seg_names, key=lambda n: (segs[n].nblocks, n))
    sg = segs[target]
    if sg.nblocks < 4:
        raise RuntimeError("want a segment of 4+ blocks, got %s" %
                           {n: s.nblocks for n, s in segs.items()})

    def put(rel, data):
        def f(d):
            with open(os.path.join(d, rel), "wb") as fh:
                fh.write(data)
        return f

    def no_manifest(fn):
        def f(d):
            shutil.rmtree(os.path.join(d, "manifest"))
            fn(d)
        return f

    def seg_put(data):
        return no_manifest(put("seg/" + target, data))

    def ent_mod(i, j, v):
        s2 = Seg(sg.raw)
        s2.ents[i][j] = v
        return s2

    def seg_with(mod):
        return seg_put(mod.build())

    man = "manifest/" + man_names[-1]
    payload0 = sg.ents[2][2]

    def flip_payload(d):
        p = os.path.join(d, "seg", target)
        b = bytearray(open(p, "rb").read())
        b[payload0 + 1000] ^= 0x40
        open(p, "wb").write(bytes(b))

    def mb(**kw):
        e = kw.pop("ents", ents)
        return put(man, build_manifest(ep, sq, vsize, bs, seglist, e, **kw))

    def ents_with(i, j, v):
        e2 = [list(e) for e in ents]
        e2[i][j] = v
        return e2

    swapped = [list(e) for e in ents]
    swapped[0][0], swapped[1][0] = swapped[1][0], swapped[0][0]
    deep = "[" * 200000 + "]" * 200000
    cases = [
        # controls: must read back exactly
        ("control: untouched", lambda d: None),
        ("control: no manifest (segment headers replayed)", no_manifest(lambda d: None)),
        ("control: manifest rebuilt uncompressed by the test", mb()),
        # segments (no manifest, so their headers are read)
        ("segment: bad magic", seg_put(b"GFSSEG99" + sg.raw[8:])),
        ("segment: version 7", seg_put(sg.build(version=7))),
        ("segment: header checksum wrong", seg_put(sg.build(crc=False))),
        ("segment: nblocks 0xFFFFFFFF", seg_put(sg.build(nblocks=0xFFFFFFFF))),
        ("segment: nblocks 4097, header_len to match", seg_put(sg.build(
            nblocks=4097, hlen=64 + 40 * 4097))),
        ("segment: header_len past the end", seg_put(sg.build(hlen=0x7FFFFFF0))),
        ("segment: block size 3", seg_put(sg.build(bs=3))),
        ("segment: other volume's uuid", seg_put(sg.build(uuid=b"\x55" * 16))),
        ("segment: entry offset past the end", seg_with(ent_mod(2, 2, len(sg.raw) - 100))),
        ("segment: entry length 2 GiB", seg_with(ent_mod(3, 3, 0x7FFFFFFF))),
        ("segment: entry offset inside the header", seg_with(ent_mod(0, 2, 8))),
        ("segment: overlapping entries", seg_with(ent_mod(1, 2, sg.ents[0][2]))),
        ("segment: block index 10^12", seg_with(ent_mod(0, 0, 10 ** 12))),
        ("segment: block indexes out of order", seg_with(ent_mod(
            0, 0, sg.ents[1][0] + 1))),
        ("segment: raw_length 999", seg_with(ent_mod(1, 4, 999))),
        ("segment: entry flags 0xFF", seg_with(ent_mod(1, 6, 0xFF))),
        ("segment: entry crc wrong", seg_with(ent_mod(2, 5, sg.ents[2][5] ^ 1))),
        ("segment: write_seq 2^64-1", seg_with(ent_mod(2, 1, (1 << 64) - 1))),
        ("segment: cut inside the header", seg_put(sg.raw[:100])),
        ("segment: cut inside the payloads", seg_put(sg.raw[:300000])),
        ("segment: empty object", seg_put(b"")),
        ("segment: random bytes", seg_put(random.Random(3).randbytes(len(sg.raw)))),
        ("segment: payload byte flipped (manifest kept)", flip_payload),
        ("segment: payload byte flipped (no manifest)", no_manifest(flip_payload)),
        # manifests
        ("manifest: bad magic", put(man, b"GFSMANXX" + build_manifest(
            ep, sq, vsize, bs, seglist, ents)[8:])),
        ("manifest: header checksum wrong", mb(hcrc=False)),
        ("manifest: body checksum wrong", mb(bcrc=False)),
        ("manifest: nentries 2^40", mb(nentries=1 << 40)),
        ("manifest: nentries 2^34+1 (over the cap)", mb(nentries=(1 << 34) + 1)),
        ("manifest: nsegs 2^31", mb(nsegs=1 << 31)),
        ("manifest: body_len past the end", mb(body_len=1 << 31)),
        ("manifest: body_len short", mb(body_len=17)),
        ("manifest: zstd flag, garbage body", mb(flags=1, body=b"\x28\xb5\x2f\xfd" + b"x" * 64)),
        ("manifest: unknown flag bits", mb(flags=0x80)),
        ("manifest: entry segment index 99", mb(ents=ents_with(3, 2, 99))),
        ("manifest: entry offset past the segment", mb(ents=ents_with(4, 3, 1 << 30))),
        ("manifest: entry crc wrong", mb(ents=ents_with(5, 5, ents[5][5] ^ 0xFF))),
        ("manifest: entry length 0", mb(ents=ents_with(6, 4, 0))),
        ("manifest: entry block index past the volume", mb(ents=ents_with(15, 0, 10 ** 9))),
        ("manifest: entries out of order", mb(ents=swapped)),
        ("manifest: volume size 1 TiB", put(man, build_manifest(ep, sq, 1 << 40, bs, seglist,
                                                                 ents))),
        ("manifest: block size 3", put(man, build_manifest(ep, sq, vsize, 3, seglist, ents))),
        ("manifest: segments out of order", put(man, build_manifest(
            ep, sq, vsize, bs, list(reversed(seglist)), ents))),
        ("manifest: cut in the header", put(man, build_manifest(ep, sq, vsize, bs, seglist,
                                                                 ents)[:40])),
        ("manifest: cut in the body", put(man, build_manifest(ep, sq, vsize, bs, seglist,
                                                               ents)[:200])),
        ("manifest: empty object", put(man, b"")),
        ("manifest: random bytes", put(man, random.Random(4).randbytes(700))),
        # volume.json
        ("volume.json: not JSON", put("volume.json", b"{\"format\": 1, size")),
        ("volume.json: empty", put("volume.json", b"")),
        ("volume.json: format 2", put("volume.json", json.dumps(dict(vj, format=2)).encode())),
        ("volume.json: size -512", put("volume.json", json.dumps(dict(vj, size=-512)).encode())),
        ("volume.json: size 513", put("volume.json", json.dumps(dict(vj, size=513)).encode())),
        # (huge sizes such as 2^62: test_sizelimits.py)
        ("volume.json: size 2^64", put("volume.json", json.dumps(dict(vj, size=1 << 64))
                                       .encode())),
        ("volume.json: size a string", put("volume.json", json.dumps(dict(vj, size="2M"))
                                           .encode())),
        ("volume.json: block size 3", put("volume.json", json.dumps(dict(vj, block_size=3))
                                          .encode())),
        ("volume.json: block size 2^40", put("volume.json", json.dumps(
            dict(vj, block_size=1 << 40)).encode())),
        ("volume.json: bad uuid", put("volume.json", json.dumps(dict(vj, uuid="zz")).encode())),
        ("volume.json: compression lz4", put("volume.json", json.dumps(
            dict(vj, compression="lz4")).encode())),
        ("volume.json: encryption garbage", put("volume.json", json.dumps(
            dict(vj, encryption={"kdf": "x", "salt": 5})).encode())),
        ("volume.json: duplicate keys", put("volume.json", b'{"format": 1, "format": 1}')),
        ("volume.json: nested 200000 deep", put("volume.json", deep.encode())),
        ("volume.json: NUL in a string", put("volume.json", json.dumps(
            dict(vj, uuid=vj["uuid"] + "\u0000x")).encode())),
        ("volume.json: 4 MiB string", put("volume.json", json.dumps(
            dict(vj, created_by="x" * (4 * MiB))).encode())),
        ("volume.json: invalid UTF-8", put("volume.json", b'{"format": 1, "uuid": "\xff\xfe"}')),
        # lease
        ("lease: garbage", put("lease", b"\x00\x01garbage")),
        ("lease: empty", put("lease", b"")),
        ("lease: epoch 2^64-1", put("lease", json.dumps(
            {"epoch": (1 << 64) - 1, "fences": {}, "format": 1, "heartbeat_ms": 1,
             "node_id": "x", "state": "released"}).encode())),
        ("lease: 100000 fences", put("lease", json.dumps(
            {"epoch": 2, "fences": {str(i): i for i in range(100000)}, "format": 1,
             "heartbeat_ms": 1, "node_id": "x", "state": "released"}).encode())),
        ("lease: node id of 10 KiB", put("lease", json.dumps(
            {"epoch": 1, "fences": {}, "format": 1, "heartbeat_ms": 1, "node_id": "n" * 10240,
             "state": "released"}).encode())),
        ("lease: state 'weird', format 9", put("lease", json.dumps(
            {"epoch": 1, "fences": {}, "format": 9, "heartbeat_ms": 1, "node_id": "x",
             "state": "weird"}).encode())),
        ("lease: nested 200000 deep", put("lease", deep.encode())),
    ]
    return cases


def read_case(d, name, model, timeout=60.0):
    """Read every block of export name; returns (outcome, problems)."""
    import nbd
    res = {"ok": 0, "eio": 0, "other_err": [], "wrong": [], "refused": None}

    def run():
        try:
            h = d.connect(name)
        except nbd.Error as e:
            res["refused"] = str(e)
            return
        try:
            size = h.get_size()
            if size != model.size:
                res["other_err"].append("size %d, want %d" % (size, model.size))
            for off in range(0, min(size, model.size), 128 * 1024):
                try:
                    data = h.pread(128 * 1024, off)
                except nbd.Error as e:
                    if fl.nbd_errno(e) == errno.EIO:
                        res["eio"] += 1
                    else:
                        res["other_err"].append("read at %d: %s" % (off, e))
                    continue
                s0 = off // fl.SECTOR
                want = b"".join(fl.sector_bytes(model.base[s], s, model.salt)
                                for s in range(s0, s0 + 256))
                if data == want:
                    res["ok"] += 1
                else:
                    res["wrong"].append(off)
            h.shutdown()
        except nbd.Error as e:
            res["other_err"].append(str(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return "HANG", ["no answer within %.0f s" % timeout]
    probs = []
    if res["wrong"]:
        probs.append("WRONG DATA served at offsets %s" % res["wrong"][:8])
    probs += res["other_err"]
    if res["refused"] is not None:
        return "refused at open", probs
    if res["eio"]:
        return "%d blocks EIO, %d read back right" % (res["eio"], res["ok"]), probs
    return "all %d blocks read back right" % res["ok"], probs


def store_part(glidefsd, base, good_daemon_factory):
    store, model = make_pristine(glidefsd, base)
    vol = os.path.join(store, "nbd", "pristine")
    cases = store_cases(vol)
    names = []
    for i, (what, mut) in enumerate(cases):
        nm = "case%02d" % i
        dst = os.path.join(store, "nbd", nm)
        # not the file store's uploads in flight (".tmp.*", renamed over an object)
        shutil.copytree(vol, dst, ignore=shutil.ignore_patterns(".tmp.*"))
        mut(dst)
        names.append(nm)
    d = good_daemon_factory(store)
    d.start()
    good = Good(d)
    rows = []
    died = 0
    try:
        for (what, _), nm in zip(cases, names):
            before = len(d.log_text().splitlines())
            m = fl.ExportModel(nm, model.size)
            m.salt = model.salt  # a copy of pristine: same bytes
            m.base = model.base
            outcome, probs = read_case(d, nm, m)
            count("store_cases")
            new_log = d.log_text().splitlines()[before:]
            said = [ln.split(": ", 2)[-1] for ln in new_log
                    if nm in ln and (" error" in ln or "warn" in ln)]
            rows.append((what, outcome, said[0][:150] if said else ""))
            if what.startswith("control") and not outcome.startswith("all"):
                fail("store %s: %s %s" % (what, outcome, probs))
            for p in probs:
                fail("store %s: %s" % (what, p))
            if outcome == "HANG":
                break
            if any("out of memory" in ln for ln in new_log):
                fail("store %s: a corrupt object answered as 'out of memory' (the daemon "
                     "believed it and tried to allocate for it): %s" % (
                         what, [ln for ln in new_log if "out of memory" in ln][0][-200:]))
            if "payload byte flipped" in what and outcome.startswith("all"):
                fail("store %s: the corrupt block was served (%s)" % (what, outcome))
            if not d.alive():
                fail("store %s: glidefsd died (status %s): %s" % (
                    what, d.proc.returncode, (d.sanitizer_reports() or [""])[0]))
                died += 1
                d.close()
                d.start()  # go on with the other cases
                good = Good(d)
                continue
            if not good.check("crafted store objects: " + what):
                break
    finally:
        for what, outcome, said in rows:
            print("#   %-48s -> %s%s" % (what, outcome, ("  [log: %s]" % said) if said else ""))
        san = d.sanitizer_reports()
        if san and not died:
            fail("sanitizer report in %s: %s" % (d.log, san[0]))
        d.close()
    print("ok - store: %d crafted cases, no wrong data, the daemon kept serving" % len(rows),
          flush=True)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    ap.add_argument("cfgcheck")
    ap.add_argument("corpus")
    ap.add_argument("--only", default="nbd,rest,yaml,store")
    a = ap.parse_args()
    fl.need_libnbd()
    parts = a.only.split(",")
    glidefsd, cfgcheck = os.path.abspath(a.glidefsd), os.path.abspath(a.cfgcheck)
    seed = int(os.environ.get("GLIDEFS_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    base = tempfile.mkdtemp(prefix="glidefs-hostile-")
    t0 = time.monotonic()
    print("# seed %d" % seed, flush=True)
    d = None
    try:
        if "nbd" in parts or "rest" in parts:
            d = fl.Glidefsd(glidefsd, base, "node1", size="64M", api=True, api_token=TOKEN)
            d.start()
            good = Good(d)
            if "nbd" in parts:
                nbd_part(d, good, os.path.abspath(a.corpus), rng)
            if "rest" in parts:
                good = rest_part(d, good, rng)
            good.check("all of it")
            san = d.sanitizer_reports()
            if san:
                fail("sanitizer report in %s: %s" % (d.log, san[0]))
            if d.alive():
                rc = d.stop()
                if rc != 0:
                    fail("glidefsd exited %s after SIGTERM" % rc)
            else:
                fail("glidefsd died: status %s" % d.proc.returncode)
            d.close()
        if "yaml" in parts:
            yaml_part(glidefsd, cfgcheck, base, rng)
        if "store" in parts:
            def factory(store):
                return fl.Glidefsd(glidefsd, base, "reader", store=store, size="8M")
            store_part(glidefsd, base, factory)
    finally:
        if d:
            d.close()
    summary = {"test": "hostile", "seed": seed, "seconds": round(time.monotonic() - t0, 1),
               "failures": len(FAILED)}
    summary.update(COUNTS)
    print("SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
    if FAILED:
        if d:
            print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(60)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
