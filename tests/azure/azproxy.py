#!/usr/bin/python3
"""azproxy.py — a fault-injecting HTTP front for Azurite, for the test suite.

Forwards every request unchanged (Azurite checks the Shared Key signatures
and SAS tokens itself) and, by a seeded schedule (reproducible), answers
some badly instead, logging each fault it injects:

  500       500 InternalError, the request not forwarded
  503       503 ServerBusy ("The server is currently unable to receive requests")
  slowdown  503 ServerBusy ("Egress is over the account limit": Azure's throttle)
  stall     no answer for --stall-ms, then the connection closed
  reset     the request reaches Azurite, then the connection is reset with no answer
  truncate  Azurite's answer with its headers and only half its body
  500after  the request reaches Azurite (it takes effect), then 500 instead of
            Azurite's answer: a success whose answer was lost

Control endpoints (never forwarded; '__proxy__' is no account name):
  GET /__proxy__/health
  GET /__proxy__/stats                           JSON counters
  GET /__proxy__/faults?rate=0.3&kinds=500,503&seed=7[&stall_ms=2500]
  GET /__proxy__/faults?next=500after[,reset...] fault the next request(s), in order
  GET /__proxy__/faults?rate=0                    faults off (and the queue emptied)
  GET /__proxy__/config?no_batch=1                answer Blob Batch requests 400
                                                  FeatureNotSupported, as a store without
                                                  it would (0: forward them again)

/__proxy__/stats counts the requests by method ("by_method"), a Blob Batch
as "POST".

The same control interface as tests/s3/s3proxy.py, so tests/fault/faultlib.py
drives both. Python 3 standard library only. Listens on 127.0.0.1 only.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

KINDS = ("500", "503", "slowdown", "stall", "reset", "truncate", "500after")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}


class State:
    def __init__(self, log_path, stall_ms):
        self.lock = threading.Lock()
        self.rate = 0.0
        self.kinds = []
        self.seed = 0
        self.rng = random.Random(0)
        self.queue = []
        self.stall_ms = stall_ms
        self.requests = 0
        self.by_kind = {k: 0 for k in KINDS}
        self.by_method = {}
        self.no_batch = False
        self.nfault = 0
        self.logf = open(log_path, "a", buffering=1) if log_path else None

    def log(self, msg):
        if self.logf:
            self.logf.write("%.3f %s\n" % (time.time(), msg))

    def pick(self, method, path):
        """The fault for this request, or None; counts it."""
        with self.lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            kind = None
            if self.queue:
                kind = self.queue.pop(0)
            elif self.rate > 0 and self.kinds and self.rng.random() < self.rate:
                kind = self.rng.choice(self.kinds)
            if kind:
                self.nfault += 1
                self.by_kind[kind] += 1
                self.log("fault #%d (seed %d): %s on %s %s" % (self.nfault, self.seed, kind,
                                                              method, path.split("?")[0]))
            return kind


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "azproxy"

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_simple(self, status, body, ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":  # as Azure: an answer to HEAD has no body
            self.wfile.write(body)

    def azure_error(self, status, code, message):
        body = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s\n'
                'RequestId:azproxy</Message></Error>' % (code, message)).encode()
        self.send_simple(status, body, "application/xml",
                         {"x-ms-error-code": code, "x-ms-request-id": "azproxy"})

    def control(self):
        st = self.server.state
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/__proxy__/health":
            return self.send_simple(200, b"{}")
        if u.path == "/__proxy__/stats":
            with st.lock:
                body = json.dumps({"requests": st.requests, "faults": st.nfault,
                                   "by_kind": dict(st.by_kind),
                                   "by_method": dict(st.by_method)}).encode()
            return self.send_simple(200, body)
        if u.path == "/__proxy__/faults":
            with st.lock:
                if "next" in q:
                    kinds = [k for k in q["next"].split(",") if k]
                    if any(k not in KINDS for k in kinds):
                        return self.send_simple(400, b'{"error": "unknown kind"}')
                    st.queue.extend(kinds)
                if "rate" in q:
                    st.rate = float(q["rate"])
                    if st.rate == 0:
                        st.queue = []
                if "kinds" in q:
                    kinds = [k for k in q["kinds"].split(",") if k]
                    if any(k not in KINDS for k in kinds):
                        return self.send_simple(400, b'{"error": "unknown kind"}')
                    st.kinds = kinds
                if "seed" in q:
                    st.seed = int(q["seed"])
                    st.rng = random.Random(st.seed)
                if "stall_ms" in q:
                    st.stall_ms = int(q["stall_ms"])
                st.log("faults: rate %.3f kinds %s seed %d queue %s" % (
                    st.rate, ",".join(st.kinds), st.seed, ",".join(st.queue)))
            return self.send_simple(200, b"{}")
        if u.path == "/__proxy__/config":
            with st.lock:
                if "no_batch" in q:
                    st.no_batch = q["no_batch"] == "1"
                st.log("config: no_batch %s" % st.no_batch)
            return self.send_simple(200, b"{}")
        return self.send_simple(404, b'{"error": "no such control"}')

    def reset_connection(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def forward(self, body):
        up = http.client.HTTPConnection(self.server.upstream[0], self.server.upstream[1],
                                        timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                up.putheader(k, v)
            up.endheaders(body if body else None)
            r = up.getresponse()
            data = r.read()
            keep_len = self.command == "HEAD"  # the blob's size, no body
            return r.status, r.reason, [(k, v) for k, v in r.getheaders()
                                        if k.lower() not in HOP and
                                        (keep_len or k.lower() != "content-length")], data
        finally:
            up.close()

    def handle_any(self):
        if self.path.startswith("/__proxy__/"):
            return self.control()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        st = self.server.state
        kind = st.pick(self.command, self.path)
        if st.no_batch and self.command == "POST" and "comp=batch" in self.path:
            return self.azure_error(400, "FeatureNotSupported",
                                    "This operation is not supported (azproxy no_batch).")
        if kind == "500":
            return self.azure_error(500, "InternalError",
                                    "The server encountered an internal error.")
        if kind == "503":
            return self.azure_error(503, "ServerBusy",
                                    "The server is currently unable to receive requests.")
        if kind == "slowdown":
            return self.azure_error(503, "ServerBusy", "Egress is over the account limit.")
        if kind == "stall":
            time.sleep(st.stall_ms / 1000.0)
            self.close_connection = True
            return None
        try:
            status, reason, headers, data = self.forward(body)
        except OSError as e:
            st.log("upstream failed: %s" % e)
            return self.azure_error(502, "ProxyUpstreamFailed", "azproxy: %s" % e)
        if kind == "reset":
            return self.reset_connection()
        if kind == "500after":
            return self.azure_error(500, "InternalError",
                                    "The server encountered an internal error.")
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return None
        if kind == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self.reset_connection()
        self.wfile.write(data)
        return None

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True, help="host:port of Azurite")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", default=None)
    ap.add_argument("--stall-ms", type=int, default=2500)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("azproxy listens on loopback only")
    uh, up = a.upstream.rsplit(":", 1)
    srv = Server((host, int(port)), Handler)
    srv.upstream = (uh, int(up))
    srv.state = State(a.log, a.stall_ms)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, a.port_file)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
