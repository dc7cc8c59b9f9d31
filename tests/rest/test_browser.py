#!/usr/bin/python3
"""test_browser.py - the REST API against web pages (issue 21, item 4).

Without a token (the default) anything on the machine may use the API, and a
browser is on the machine: a page the operator opens can POST to 127.0.0.1
(a "simple" text/plain or form request needs no CORS preflight), and a
DNS-rebinding page (its own name resolving to 127.0.0.1) can even read the
answers. What the API must refuse, as a browser sends it:

  - a cross-origin POST with a text/plain body (create), and body-less
    state changes (promote?force, drain, release, fenced/discard) with a
    foreign Origin: 403, nothing changes;
  - Sec-Fetch-Site: cross-site / same-site: 403;
  - a request body that is not Content-Type: application/json: 415;
  - a Host header that is not the listen address, an address literal,
    localhost or a name in servers.api.allowed_hosts (DNS rebinding): 403,
    for GET (reading) and DELETE alike.

And what must keep working: the API's own origin, Host values naming it
(127.0.0.1:PORT, localhost, [::1], an allowed name in any case),
application/json with parameters, GETs with no body, and the unix-socket API
(no Host check: browsers cannot reach it; Origin still checked).

usage: test_browser.py GLIDEFSD
"""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")


def raw(d, method, path, headers, body=None, unix=False):
    """One request with exactly these headers (Host included: none is added)."""
    c = d.conn(10, unix)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            c.putheader(k, v)
        data = body.encode() if isinstance(body, str) else body
        if data is not None:
            c.putheader("Content-Length", str(len(data)))
        try:
            c.endheaders(data)
        except (BrokenPipeError, ConnectionResetError):
            # refused on its headers: the daemon answered and closed before
            # the body went out; its answer is still there to read
            pass
        r = c.getresponse()
        return resttest.Response(r.status, dict(r.getheaders()),
                                 r.read().decode("utf-8", "replace"))
    finally:
        c.close()


def main():
    with resttest.Daemon(GLIDEFSD, api_unix=True,
                         extra_api={"allowed_hosts": '"glidefs.example, Node1.Example"'}) as d:
        d.start()
        me = f"127.0.0.1:{d.port}"
        own = {"Host": me}
        t.status(d.req("POST", "/api/exports", {"name": "vm1", "size": "16M"}), 201,
                 "setup: vm1 created the normal way")

        def exports():
            p = os.path.join(d.store, "nbd")
            return sorted(os.listdir(p)) if os.path.isdir(p) else []

        # -- a page on another site, no preflight ------------------------------------------
        evil = {"Host": me, "Origin": "http://evil.example"}
        body = json.dumps({"name": "evil", "size": "16M"})
        r = raw(d, "POST", "/api/exports", dict(evil, **{"Content-Type": "text/plain"}), body)
        t.status(r, 403, "cross-origin text/plain POST /api/exports: 403")
        for path in ["/api/exports/vm1/promote?force=true", "/api/exports/vm1/drain",
                     "/api/exports/vm1/release", "/api/exports/vm1/fenced/discard",
                     "/api/exports/vm1/snapshots"]:
            r = raw(d, "POST", path, dict(evil, **{"Content-Type": "text/plain"}), "")
            t.status(r, 403, f"cross-origin body-less POST {path}: 403")
        r = raw(d, "POST", "/api/exports",
                dict(evil, **{"Content-Type": "application/x-www-form-urlencoded"}), "a=b")
        t.status(r, 403, "cross-origin form POST: 403")
        r = raw(d, "POST", "/api/exports", {"Host": me, "Origin": "null",
                                            "Content-Type": "text/plain"}, body)
        t.status(r, 403, "Origin: null (a sandboxed page or a file://): 403")
        r = raw(d, "POST", "/api/exports", {"Host": me, "Origin": f"http://127.0.0.1:{d.port + 1}",
                                            "Content-Type": "application/json"}, body)
        t.status(r, 403, "another local port's page: 403")
        for site in ("cross-site", "same-site"):
            r = raw(d, "POST", "/api/exports", {"Host": me, "Sec-Fetch-Site": site,
                                                "Content-Type": "text/plain"}, body)
            t.status(r, 403, f"Sec-Fetch-Site: {site} (no Origin): 403")
        # Old browsers: no Origin on a form POST; the body type still gives it away.
        r = raw(d, "POST", "/api/exports", {"Host": me, "Content-Type": "text/plain"}, body)
        t.status(r, 415, "text/plain body without Origin: 415")
        r = raw(d, "POST", "/api/exports", own, body)
        t.status(r, 415, "a body without a Content-Type: 415")
        r = raw(d, "POST", "/api/exports", dict(own, **{"Content-Type": "application/jsonx"}), body)
        t.status(r, 415, "application/jsonx: 415")
        r = raw(d, "PUT", "/api/exports/vm1", dict(own, **{"Content-Type": "text/plain"}),
                '{"size": "32M"}')
        t.status(r, 415, "text/plain PUT (resize): 415")
        c = d.conn(10)
        try:
            c.putrequest("POST", "/api/exports", skip_accept_encoding=True)
            c.putheader("Content-Type", "text/plain")
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body.encode()))
            r = c.getresponse()
            t.eq(r.status, 415, "chunked text/plain body: 415")
            r.read()
        finally:
            c.close()
        t.eq(exports(), ["vm1"], "nothing was created by the refused requests")
        t.ok(not os.path.exists(os.path.join(d.cache, "evil")), "no cache directory either")
        st = d.req("GET", "/api/exports/vm1")
        t.ok(st.status == 200 and st.json["size_bytes"] == 16 << 20, "vm1 was not resized")

        # -- DNS rebinding: the page's own name in Host ------------------------------------
        for host in [f"evil.example:{d.port}", "evil.example", f"127.0.0.1.evil.example:{d.port}",
                     f"localhost.evil.example:{d.port}", "", f"{me}:{d.port}", "127.0.0.1:x"]:
            r = raw(d, "GET", "/api/exports", {"Host": host})
            t.status(r, 403, f"GET with Host {host!r}: 403")
        r = raw(d, "DELETE", "/api/exports/vm1?force=true&purge=true",
                {"Host": f"evil.example:{d.port}"})
        t.status(r, 403, "DELETE ?purge with a foreign Host: 403")
        t.eq(exports(), ["vm1"], "vm1 is still in the store")
        t.status(d.req("GET", "/api/exports/vm1"), 200, "and still open")

        # -- what must keep working --------------------------------------------------------
        for host in [me, "127.0.0.1", f"localhost:{d.port}", "LOCALHOST", f"[::1]:{d.port}",
                     f"glidefs.example:{d.port}", "NODE1.example", "node1.example.",
                     f"10.1.2.3:{d.port}"]:
            r = raw(d, "GET", "/healthz", {"Host": host})
            t.status(r, 200, f"Host {host!r}: 200")
        r = raw(d, "GET", "/api/exports", {})
        t.status(r, 200, "no Host at all (HTTP/1.0 style): 200")
        r = raw(d, "POST", "/api/exports", {"Host": me, "Origin": f"http://{me}",
                                            "Sec-Fetch-Site": "same-origin",
                                            "Content-Type": "application/json; charset=utf-8"},
                json.dumps({"name": "vm2", "size": "16M"}))
        t.status(r, 201, "the API's own origin, application/json; charset=utf-8: 201")
        r = raw(d, "GET", "/api/exports", {"Host": me, "Content-Type": "text/plain",
                                           "Sec-Fetch-Site": "none"})
        t.status(r, 200, "a GET with no body needs no Content-Type: 200")
        r = raw(d, "POST", "/api/exports/vm2/drain", {"Host": me, "Content-Length": "0"})
        t.status(r, 200, "a body-less POST without Content-Type: 200")
        # The unix socket: no Host check (no browser reaches it), Origin still checked.
        r = raw(d, "GET", "/healthz", {"Host": "anything.example"}, unix=True)
        t.status(r, 200, "unix socket: any Host: 200")
        r = raw(d, "POST", "/api/exports", {"Host": "localhost", "Origin": "http://evil.example",
                                            "Content-Type": "application/json"},
                json.dumps({"name": "evil", "size": "16M"}), unix=True)
        t.status(r, 403, "unix socket: a foreign Origin: 403")
        t.eq(exports(), ["vm1", "vm2"], "only vm1 and vm2 exist")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
    t.done()


if __name__ == "__main__":
    main()
