"""azsign.py — Azure Storage Shared Key and account SAS, written from
Microsoft's documentation ("Authorize with Shared Key", "Create an account
SAS") in Python's standard library only, independently of lib/azure_auth.c:
the test suite uses it to check the C signer (tests/azure/make_auth_vectors.py
computes the expected values at build time), to create the test container in
Azurite and to read the test's blobs back (tests/azure/azenv.py).
"""

import base64
import email.utils
import hashlib
import hmac
import http.client
import urllib.parse

# Azurite's well-known development account (published by Microsoft)
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
           "K1SZFPTOtr/KBHBeksoGMGw==")
VERSION = "2021-12-02"

STANDARD = ["Content-Encoding", "Content-Language", "Content-Length", "Content-MD5",
            "Content-Type", "Date", "If-Modified-Since", "If-Match", "If-None-Match",
            "If-Unmodified-Since", "Range"]


def canonicalized_headers(headers):
    """x-ms-* headers: lower-case names, sorted, 'name:value\\n' each, the
    value's linear whitespace replaced by one space and trimmed."""
    xms = {}
    for name, value in headers.items():
        n = name.lower()
        if n.startswith("x-ms-"):
            xms[n] = " ".join(str(value).split())
    return "".join("%s:%s\n" % (n, xms[n]) for n in sorted(xms))


def canonicalized_resource(account, path, query):
    """'/account' + the encoded path, then one '\\nname:value' per query
    parameter: lower-case names, sorted, values decoded, several values of
    one name sorted and comma-separated. query: list of (name, value)."""
    out = "/" + account + path
    groups = {}
    for name, value in query:
        groups.setdefault(name.lower(), []).append(value)
    for name in sorted(groups):
        out += "\n%s:%s" % (name, ",".join(sorted(groups[name])))
    return out


def string_to_sign(method, account, path, query, headers):
    lower = {k.lower(): str(v) for k, v in headers.items()}
    lines = [method.upper()]
    for h in STANDARD:
        v = lower.get(h.lower(), "")
        if h == "Content-Length" and v == "0":
            v = ""  # version 2015-02-21 and later
        lines.append(v)
    return "\n".join(lines) + "\n" + canonicalized_headers(headers) + \
        canonicalized_resource(account, path, query)


def authorization(key_b64, account, method, path, query, headers):
    sts = string_to_sign(method, account, path, query, headers)
    mac = hmac.new(base64.b64decode(key_b64), sts.encode("utf-8"), hashlib.sha256).digest()
    return "SharedKey %s:%s" % (account, base64.b64encode(mac).decode())


def account_sas(key_b64, account, permissions, expiry, services="b", resource_types="sco",
                version="2021-08-06", protocol="https,http"):
    """An account SAS token (without '?'), version 2020-12-06 or later."""
    sts = "\n".join([account, permissions, services, resource_types, "", expiry, "",
                     protocol, version, "", ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), sts.encode("utf-8"),
                                    hashlib.sha256).digest()).decode()
    q = [("sv", version), ("ss", services), ("srt", resource_types), ("sp", permissions),
         ("se", expiry), ("spr", protocol), ("sig", sig)]
    return urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="")


def container_sas(key_b64, account, container, permissions, expiry, version="2021-08-06",
                  protocol="https,http"):
    """A service SAS for one container (sr=c, without '?'), version
    2020-12-06 or later: sp, st, se, the canonicalized resource
    '/blob/account/container', si, sip, spr, sv, sr, the snapshot time,
    ses and the five response headers, joined by newlines."""
    sts = "\n".join([permissions, "", expiry, "/blob/%s/%s" % (account, container), "", "",
                     protocol, version, "c", "", "", "", "", "", "", ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), sts.encode("utf-8"),
                                    hashlib.sha256).digest()).decode()
    q = [("sv", version), ("sr", "c"), ("sp", permissions), ("se", expiry), ("spr", protocol),
         ("sig", sig)]
    return urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="")


class Client:
    """A tiny Blob service client (Shared Key), for the harness only.
    base: 'http://127.0.0.1:PORT/devstoreaccount1' (path-style)."""

    def __init__(self, base, account=DEV_ACCOUNT, key=DEV_KEY):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.base_path = u.path.rstrip("/")
        self.account, self.key = account, key

    def request(self, method, path, query=(), body=b"", headers=None):
        """path: '/container[/blob]' (decoded); returns (status, headers, body)."""
        epath = self.base_path + urllib.parse.quote(path, safe="/-._~")
        h = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": VERSION}
        if body or method in ("PUT", "POST"):
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        h["Authorization"] = authorization(self.key, self.account, method, epath, list(query), h)
        target = epath
        if query:
            target += "?" + urllib.parse.urlencode(list(query), quote_via=urllib.parse.quote,
                                                   safe="")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, target, body=body, headers=h)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def create_container(self, name):
        st, _, body = self.request("PUT", "/" + name, [("restype", "container")])
        if st not in (201, 409):
            raise RuntimeError("create container %s: HTTP %d %s" % (name, st, body[:300]))

    def get_blob(self, container, name):
        st, _, body = self.request("GET", "/%s/%s" % (container, name))
        if st != 200:
            raise RuntimeError("get blob %s: HTTP %d %s" % (name, st, body[:300]))
        return body

    def list_blobs(self, container, prefix):
        """{name: size} of every blob under prefix (all pages)."""
        import xml.etree.ElementTree as ET
        out, marker = {}, None
        while True:
            q = [("restype", "container"), ("comp", "list"), ("prefix", prefix)]
            if marker:
                q.append(("marker", marker))
            st, _, body = self.request("GET", "/" + container, q)
            if st != 200:
                raise RuntimeError("list blobs: HTTP %d %s" % (st, body[:300]))
            root = ET.fromstring(body)
            for b in root.iter("Blob"):
                out[b.findtext("Name")] = int(b.find("Properties").findtext("Content-Length"))
            marker = root.findtext("NextMarker")
            if not marker:
                return out
