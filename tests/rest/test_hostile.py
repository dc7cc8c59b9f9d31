#!/usr/bin/python3
"""test_hostile.py - hostile input to the REST API: malformed JSON, 10 MB
bodies (with and without a length), names with ../ or %2F, bad escapes,
unknown methods and paths, unknown query parameters, the bearer token
(missing, wrong, right; on every endpoint), the API on a unix socket, and
start-up refusals (a non-loopback address without a token, an address in
use). Every error must be JSON {"error": "..."} with the right status, and
nothing may be created on disk by a refused request.

usage: test_hostile.py GLIDEFSD
"""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402
from resttest import MiB  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")


def raw_big_body(d, path, n, chunked=False):
    """Send n bytes of body on a raw socket; return (status line, body) of the answer."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        hdr = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        hdr += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {n}\r\n\r\n"
        s.sendall(hdr.encode())
        chunk = b"{" * 65536
        try:
            sent = 0
            while sent < n:
                k = min(len(chunk), n - sent)
                s.sendall((b"%x\r\n" % k + chunk[:k] + b"\r\n") if chunked else chunk[:k])
                sent += k
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and hung up: read what it said
        data = b""
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                data += got
                if b"\r\n\r\n" in data:
                    head, _, rest = data.partition(b"\r\n\r\n")
                    cl = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                    if cl and len(rest) >= int(cl[0].split(b":")[1]):
                        break
        except (ConnectionResetError, socket.timeout):
            pass
        head, _, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0].decode(errors="replace"), body.decode(errors="replace")
    finally:
        s.close()


def main():
    with resttest.Daemon(GLIDEFSD) as d:
        d.start()
        before_cache = sorted(os.listdir(d.cache))
        before_store = sorted(os.listdir(d.store))

        # -- malformed bodies ----------------------------------------------------
        for body, what in [("{", "truncated JSON"), ("[1, 2]", "a JSON array"),
                           ('"vm1"', "a JSON string"), ("", "an empty body"),
                           ('{"name": "a", "name": "b", "size_gb": 1}', "duplicate keys"),
                           (b'{"name": "\xff\xfe", "size_gb": 1}', "invalid UTF-8"),
                           ('{"name": "vm1", "size_gb": 1e400}', "a huge number"),
                           ('{"name": "vm1", "size_gb": -1}', "a negative size"),
                           ('{"name": "vm1", "size_gb": 99999999999999999999}', "an overflowing size"),
                           ('{"name": "vm1", "size_gb": "1"}', "size_gb as a string"),
                           ('{"name": null, "size_gb": 1}', "a null name"),
                           ('{"name": "vm1"} trailing', "trailing garbage"),
                           ("[" * 5000 + "]" * 5000, "deep nesting"),
                           ('{"name": "vm\\u0000x", "size_gb": 1}', "a NUL in the name")]:
            r = d.req("POST", "/api/exports", body)
            t.status(r, 400, f"POST {what}: 400")
        r = d.req("PUT", "/api/exports/vm1", "{nope")
        t.status(r, 400, "PUT malformed JSON: 400")

        # -- oversized bodies ----------------------------------------------------------
        line, body = raw_big_body(d, "/api/exports", 10 * MiB)
        t.ok(" 413 " in line, f"10 MB body with Content-Length: 413 ({line})")
        t.ok('"error"' in body, "413 body is JSON")
        line, body = raw_big_body(d, "/api/exports", 10 * MiB, chunked=True)
        t.ok(" 413 " in line, f"10 MB chunked body: 413 ({line})")
        r = d.req("POST", "/api/exports", "{" + " " * (65 * 1024) + "}")
        t.status(r, 413, "65 KiB JSON body: 413")
        r = d.req("POST", "/api/exports", '{"name": "okay",' + " " * 60000 + '"size_gb": 1}')
        t.status(r, 201, "a 60 KiB body under the limit is accepted")
        t.status(d.req("GET", "/healthz"), 200, "still healthy after the big bodies")

        # -- names and paths --------------------------------------------------------------
        for path, want, what in [
                ("/api/exports/..%2F..%2Fetc", 400, "..%2F..%2F in the name"),
                ("/api/exports/a%2Fb", 400, "%2F in the name"),
                ("/api/exports/%2e%2e", 400, "%2e%2e (..) as the name"),
                ("/api/exports/.hidden", 400, "a leading dot"),
                ("/api/exports/" + "a" * 129, 400, "a 129-character name"),
                ("/api/exports/a%00b", 400, "%00 in the name"),
                ("/api/exports/a%zzb", 400, "a bad %-escape"),
                ("/api/exports/a%", 400, "a truncated %-escape"),
                ("/api/exports/sp%20ace", 400, "a space in the name"),
                ("/api/exports/caf%C3%A9", 400, "non-ASCII in the name"),
                ("/api/exports/../../etc/passwd", 404, "../ segments"),
                ("/api/exports/x/../../../etc/passwd", 404, "../ after a name"),
                ("/api/exports/vm1/unknown", 404, "an unknown action"),
                ("/api/exports/vm1/drain/x", 404, "a segment too many"),
                ("/api//exports", 404, "an empty segment"),
                ("/nothing", 404, "an unknown path"),
                ("/", 404, "the root"),
                ("/api/exports/%61bc", 404, "an escaped valid name (not open)")]:
            r = d.req("GET", path)
            t.status(r, want, f"GET {what}: {want}")
        for path in ["/api/exports/..%2Fx/drain", "/api/exports/a%2Fb/promote",
                     "/api/exports/%2e%2e/compact"]:
            t.status(d.req("POST", path), 400, f"POST {path}: 400")
        t.status(d.req("DELETE", "/api/exports/..%2F..%2Fcache?purge=true"), 400,
                 "DELETE ..%2F..%2Fcache?purge=true: 400")
        t.eq(sorted(os.listdir(d.cache)), sorted(before_cache + ["okay"]),
             "no directory was created in the cache by a refused request")
        stored = os.listdir(os.path.join(d.store, "nbd"))
        t.eq(sorted(set(os.listdir(d.store)) - set(before_store)), ["nbd"],
             "the store directory holds only nbd/")
        t.eq(stored, ["okay"], "the store holds only the volume created on purpose")

        # -- methods and query parameters -----------------------------------------------------
        for m, path in [("PATCH", "/api/exports"), ("FOO", "/api/exports"),
                        ("OPTIONS", "/api/exports/vm1"), ("GET", "/api/exports/vm1/drain"),
                        ("PUT", "/api/exports"), ("DELETE", "/metrics"),
                        ("POST", "/healthz"), ("POST", "/api/exports/vm1")]:
            r = d.req(m, path)
            t.status(r, 405, f"{m} {path}: 405")
            t.ok(bool(r.headers.get("Allow")), f"{m} {path}: Allow header")
        r = d.req("HEAD", "/healthz")
        t.eq(r.status, 200, "HEAD /healthz: 200")
        t.status(d.req("GET", "/api/exports?bogus=1"), 400, "unknown query parameter: 400")
        t.status(d.req("DELETE", "/api/exports/okay?force=maybe"), 400, "force=maybe: 400")
        for v in ("0", "-1", "abc", "1e3", "86401", ""):
            t.status(d.req("POST", f"/api/exports/okay/drain?timeout_s={v}"), 400,
                     f"timeout_s={v!r}: 400")
        t.status(d.req("POST", "/api/exports/okay/drain?timeout_s=5"), 200,
                 "timeout_s=5 is fine")

        # -- many clients at once --------------------------------------------------------
        results = []

        def hammer():
            for _ in range(10):
                results.append(d.req("GET", "/api/exports").status)

        ths = [threading.Thread(target=hammer) for _ in range(16)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        t.eq(results.count(200), 160, "160 concurrent GETs all answered 200")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")

    # -- the token and the unix socket ------------------------------------------------
    with resttest.Daemon(GLIDEFSD, token="t0ps3cret-token", api_unix=True) as d:
        d.start()
        for path in ["/healthz", "/metrics", "/api/exports", "/api/exports/vm1",
                     "/nothing"]:
            r = d.req("GET", path, token=False)
            t.status(r, 401, f"no token: GET {path}: 401")
            t.eq(r.headers.get("WWW-Authenticate"), "Bearer", f"{path}: WWW-Authenticate")
        t.status(d.req("POST", "/api/exports", {"name": "x", "size_gb": 1}, token=False), 401,
                 "no token: POST: 401")
        line, body = raw_big_body(d, "/api/exports", MiB)
        t.ok(" 401 " in line and '"error"' in body, f"no token and a big body: 401 ({line})")
        for hdr in ["Bearer wrong", "Bearer t0ps3cret-toke", "Bearer t0ps3cret-token2",
                    "Basic t0ps3cret-token", "t0ps3cret-token", "Bearer"]:
            t.status(d.req("GET", "/api/exports", token=hdr), 401, f"Authorization: {hdr!r}: 401")
        t.status(d.req("GET", "/api/exports", token="bearer t0ps3cret-token"), 200,
                 "right token (scheme in any case): 200")
        t.status(d.req("GET", "/api/exports"), 200, "right token: 200")
        t.ok(not os.path.exists(os.path.join(d.cache, "x")), "refused POST created nothing")
        r = d.req("GET", "/healthz", unix=True)
        t.status(r, 200, "API on the unix socket (with the token)")
        t.status(d.req("GET", "/healthz", unix=True, token=False), 401,
                 "unix socket without the token: 401")
        t.eq(oct(os.stat(d.api_sock).st_mode & 0o777), "0o660", "API socket mode 0660")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
        t.ok(not os.path.exists(d.api_sock), "API socket removed at exit")

    # -- start-up refusals --------------------------------------------------------------
    with resttest.Daemon(GLIDEFSD, listen=f"0.0.0.0:{resttest.free_tcp_port()}") as d:
        d.start(wait=False)
        rc = d.proc.wait(30)
        t.ok(rc != 0, "non-loopback listen without a token: refused at start-up")
        t.ok("loopback" in d.log_text() and "servers.api.token" in d.log_text(),
             "the refusal names the problem and the fix")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with resttest.Daemon(GLIDEFSD, listen=f"127.0.0.1:{port}") as d:
            d.start(wait=False)
            rc = d.proc.wait(30)
            t.ok(rc != 0, "API address in use: exits non-zero")
            t.ok("servers.api.listen" in d.log_text(), "the error names servers.api.listen")
    with resttest.Daemon(GLIDEFSD, listen="", api_unix=False) as d:
        d.start(wait=False)
        resttest.wait_for(lambda: "REST API off" in d.log_text() or d.proc.poll() is not None,
                          20, "start-up")
        t.ok(d.proc.poll() is None, "listen \"\" turns the API off; the daemon runs")
        t.eq(d.stop(), 0, "and stops cleanly")
    t.done()


if __name__ == "__main__":
    main()
