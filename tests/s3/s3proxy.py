#!/usr/bin/python3
"""s3proxy.py — a strict S3 front for s3rver, for the test suite only.

s3rver (the S3 server the tests run) checks only the access key id: never the
SigV4 signature, never x-amz-content-sha256, and it ignores If-None-Match /
If-Match on PUT. A wrong signer would pass against it. This proxy sits in
front of it and:

  * recomputes SigV4 from the request as received (method, path, query,
    signed headers, payload hash) and answers 403 SignatureDoesNotMatch on a
    mismatch, 403 InvalidAccessKeyId for an unknown key, 403
    RequestTimeTooSkewed for a stale x-amz-date;
  * refuses a request target that is not already in canonical SigV4 encoding
    (400 InvalidURI): s3rver decodes '+' in a query as a space, so a client
    that signs one thing and sends another must not slip through;
  * checks x-amz-content-sha256 against the body (400 XAmzContentSHA256Mismatch);
  * checks Content-MD5 against the body (400 BadDigest) and requires it on
    DeleteObjects, as S3 does;
  * implements If-None-Match: * and If-Match: "etag" on PUT (412), atomic
    against other PUT/DELETE through the proxy (a lock per key), unless told
    to ignore them as lax servers do (see /__proxy__/config below);
  * works around two s3rver 3.7.1 bugs so tests see S3's behaviour: a ranged
    GET of an empty object hangs s3rver (the proxy answers 416 InvalidRange,
    as S3 does), and DeleteObjects deletes in parallel and races on removing
    the emptied directory (500): the proxy runs the deletes one by one;
  * injects faults, selected by a seeded schedule (reproducible): 500,
    503 ServiceUnavailable, 503 SlowDown, stall (no answer for --stall-ms,
    then close), reset (the request reaches s3rver, then the connection is
    reset mid-body), truncate (headers promise more body than is sent), 412
    PreconditionFailed (a conditional write refused), and logs each one it
    injects;
  * can die on command (exit status 3) so the harness can restart it: a
    server killed mid-operation.

Control endpoints (unsigned, never forwarded; '__' cannot start a bucket name):
  GET /__proxy__/health
  GET /__proxy__/stats            JSON counters
  GET /__proxy__/faults?rate=0.3&kinds=500,503,slowdown&seed=7
  GET /__proxy__/faults?next=reset[,stall...]   fault the next request(s), in order
  GET /__proxy__/faults?rate=0                   faults off
  GET /__proxy__/faults?...&match=/lease&method=PUT   only requests whose path holds
                                                 match (and of that method); "" clears
  GET /__proxy__/config?max_keys=7              cap ListObjectsV2 pages (0 = off)
  GET /__proxy__/config?ignore_range=1          answer ranged GETs with 200 + whole body
  GET /__proxy__/config?ignore_conditions=1     accept If-None-Match / If-Match PUTs and
                                                overwrite, as lax S3 servers do (0: honour them)
  GET /__proxy__/die?mode=now|next              exit(3) now, or mid-answer to the next request
  GET /__proxy__/config?if_match=rgw            compare If-Match as Ceph RGW 16.2 does (below)
  GET /__proxy__/config?no_batch=1              answer DeleteObjects 501 NotImplemented
  GET /__proxy__/config?region=R&region_answer=redirect|malformed|""
                                                the bucket is in region R; a request signed
                                                for another region gets what AWS answers (see
                                                region_refusal): 301 PermanentRedirect with
                                                x-amz-bucket-region, or 400
                                                AuthorizationHeaderMalformed with <Region>
  GET /__proxy__/config?latency_ms=20           hold every S3 request that long before it
                                                is forwarded (a remote store's first-byte
                                                latency; 0 = off; benchmarks: bench/boot.sh)
  GET /__proxy__/config?crc=verify|ignore|refuse  x-amz-checksum-crc32c on PUT: verify it
                                                (default; 400 BadDigest on a mismatch, echoed
                                                as AWS does; bodies over crc_max bytes,
                                                default 256 KiB, pass unchecked unless
                                                crc_max=0), ignore it (Ceph RGW 16), or refuse
                                                it (400 InvalidArgument, a store without it)
  GET /__proxy__/tempcreds?akid=A&secret=S&token=T&expires=UNIX
                                                one more valid key pair (tests/s3/credserver.py
                                                issues them): with a token, requests must carry
                                                it in x-amz-security-token (else 400
                                                InvalidToken); after expires (0 never), 400
                                                ExpiredToken, as AWS answers
  (stats: lists counts ListObjectsV2 requests (GETs, also in by_method);
  object_gets and object_get_bytes count object GETs answered 200/206 and
  their body bytes, object_gets_by per kind of key (seg, manifest, profile,
  lease, volume.json: the part after nbd/<volume>/);
  by_method counts requests per HTTP method: POST is DeleteObjects; by_akid
  counts signed requests per access key id; vhost counts virtual-hosted requests)

Virtual-hosted requests: Host BUCKET.s3.localhost[:port] (--vhost-domain) is
bucket BUCKET, the path its key; they are verified as they came and sent to
s3rver path-style (in --passthrough, as they came: RGW knows its domain).

--passthrough (in front of a real S3 server such as Ceph RGW): the checks and
faults above stay, but conditional headers, DeleteObjects and ranged GETs go
upstream as they came: the server's own behaviour is what the test sees.
if_match=rgw (in front of s3rver): If-Match is compared with the stored ETag
without stripping its quotes, so the RFC form "etag" never matches and the
bare etag does; If-Match on a missing key is 412. Lets a test meet RGW's
quirk without RGW.

Python 3 standard library only. Listens on 127.0.0.1 only.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "expect"}
FAULT_KINDS = ("500", "503", "slowdown", "stall", "reset", "truncate", "412")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def uri_encode(raw: bytes, keep_slash: bool) -> str:
    """SigV4 URI encoding: unreserved bytes kept, the rest %XX upper-case."""
    out = []
    for b in raw:
        if b in UNRESERVED or (keep_slash and b == 0x2F):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as x-amz-checksum-crc32c carries it (about 80 ms a MiB)."""
    c, t = 0xFFFFFFFF, CRC32C_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def collapse(value: str) -> str:
    return re.sub(r"[ \t]+", " ", value.strip(" \t"))


def xml_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


class S3Reject(Exception):
    def __init__(self, status, code, message, extra=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}
        self.headers = headers or {}


class State:
    """Shared, lock-protected proxy state."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.creds = dict(c.split(":", 1) for c in args.creds)
        self.base_akid = args.creds[0].split(":", 1)[0]  # what temporary keys become upstream
        self.temp = {}  # akid -> (secret, token or "", expires unix time or 0)
        self.region = args.region
        self.region_answer = ""  # "", "redirect", "malformed": see region_refusal
        self.crc = "verify"      # x-amz-checksum-crc32c: verify, ignore, refuse
        self.crc_max = 256 * 1024
        self.rate = args.fault_rate
        self.kinds = [k for k in args.fault_kinds.split(",") if k]
        self.seed = args.seed
        self.rng = random.Random(args.seed)
        self.next_faults = []
        self.match, self.match_method = "", ""  # faults only on these requests
        self.max_keys = 0
        self.ignore_range = False  # answer ranged GETs with the whole object (200)
        self.if_match_rgw = False  # If-Match compared as RGW 16.2 does (see the docstring)
        self.no_batch = False  # DeleteObjects answered 501 NotImplemented
        self.ignore_conditions = False  # conditional PUTs overwrite (a lax store)
        self.die_next = False
        self.latency_ms = 0  # held before forwarding each request
        self.stats = {"requests": 0, "forwarded": 0, "injected": 0, "rejected": 0,
                      "by_kind": {k: 0 for k in FAULT_KINDS}, "by_code": {}, "by_akid": {},
                      "vhost": 0, "crc_checked": 0, "crc_unchecked": 0, "wrong_region": 0}
        self.key_locks = {}
        self.fault_no = 0
        self.log_file = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.stopping = threading.Event()

    def log(self, msg):
        stamp = time.strftime("%H:%M:%S")
        with self.lock:
            self.log_file.write("%s s3proxy[%d] %s\n" % (stamp, os.getpid(), msg))

    def draw_fault(self, method="", path=""):
        with self.lock:
            self.stats["requests"] += 1
            bm = self.stats.setdefault("by_method", {})
            bm[method] = bm.get(method, 0) + 1
            if self.match and (self.match not in path or
                               (self.match_method and method != self.match_method)):
                return None
            if self.next_faults:
                return self.next_faults.pop(0)
            if self.rate > 0 and self.kinds:
                # one draw per request keeps the schedule a function of the seed
                r = self.rng.random()
                k = self.rng.choice(self.kinds)
                if r < self.rate:
                    return k
            return None

    def key_lock(self, key):
        with self.lock:
            lk = self.key_locks.get(key)
            if lk is None:
                lk = self.key_locks[key] = threading.Lock()
            return lk


class Handler(http.server.BaseHTTPRequestHandler):
    def setup(self):
        super().setup()
        # small replies must not wait for the client's delayed ACK (Nagle):
        # without this every request pays ~40 ms on loopback
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    protocol_version = "HTTP/1.1"
    server_version = "s3proxy"
    sys_version = ""

    # ---- plumbing ---------------------------------------------------------

    def log_message(self, fmt, *a):  # quiet: our own log says what matters
        pass

    @property
    def st(self) -> State:
        return self.server.state

    def send_xml_error(self, status, code, message, extra=None, head=False, headers=None):
        rid = uuid.uuid4().hex[:16].upper()
        body = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>",
                "<Code>%s</Code><Message>%s</Message>" % (code, xml_escape(message))]
        for k, v in (extra or {}).items():
            body.append("<%s>%s</%s>" % (k, xml_escape(v), k))
        body.append("<RequestId>%s</RequestId></Error>" % rid)
        data = "".join(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", rid)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        with self.st.lock:
            self.st.stats["by_code"][code] = self.st.stats["by_code"].get(code, 0) + 1

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise S3Reject(411, "MissingContentLength", "chunked bodies are not supported")
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        if not n.isdigit() or int(n) > 1 << 30:
            raise S3Reject(400, "InvalidArgument", "bad Content-Length")
        n = int(n)
        chunks, left = [], n
        while left:
            c = self.rfile.read(min(left, 1 << 20))
            if not c:
                raise S3Reject(400, "IncompleteBody", "body shorter than Content-Length")
            chunks.append(c)
            left -= len(c)
        return b"".join(chunks)

    def hard_reset(self):
        """Close the client connection with RST (SO_LINGER 0)."""
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

    # ---- SigV4 verification ----------------------------------------------

    def verify(self, body: bytes, raw_path: str, raw_query: str):
        auth = self.headers.get("Authorization")
        if not auth:
            raise S3Reject(403, "AccessDenied", "anonymous requests are refused")
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/"
                         r"aws4_request,\s*SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})",
                         auth.strip())
        if not m:
            raise S3Reject(400, "AuthorizationHeaderMalformed", "cannot parse Authorization")
        akid, date8, region, service, signed, signature = m.groups()
        secret = self.st.creds.get(akid)
        self.temp_akid = None
        with self.st.lock:
            temp = self.st.temp.get(akid)
        if secret is None and temp is not None:
            secret, token, expires = temp
            if expires and time.time() >= expires:
                raise S3Reject(400, "ExpiredToken", "The provided token has expired.",
                               {"AWSAccessKeyId": akid})
            if token and self.headers.get("x-amz-security-token") != token:
                raise S3Reject(400, "InvalidToken", "The provided token is malformed or "
                               "otherwise invalid.")
            self.temp_akid = akid
        if secret is None:
            raise S3Reject(403, "InvalidAccessKeyId",
                           "The AWS Access Key Id you provided does not exist in our records.",
                           {"AWSAccessKeyId": akid})
        with self.st.lock:
            ba = self.st.stats["by_akid"]
            ba[akid] = ba.get(akid, 0) + 1
        if region != self.st.region:
            self.region_refusal(region)
        if service != "s3":
            raise S3Reject(400, "AuthorizationHeaderMalformed", "credential scope must be s3")
        amz_date = self.headers.get("x-amz-date") or ""
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise S3Reject(403, "AccessDenied", "missing or bad x-amz-date")
        if amz_date[:8] != date8:
            raise S3Reject(403, "SignatureDoesNotMatch", "credential date is not x-amz-date's")
        if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 900:
            raise S3Reject(403, "RequestTimeTooSkewed",
                           "The difference between the request time and the current time is "
                           "too large.")
        names = signed.split(";")
        if names != sorted(names) or len(set(names)) != len(names):
            raise S3Reject(403, "SignatureDoesNotMatch", "SignedHeaders not sorted")
        for must in ("host", "x-amz-date", "x-amz-content-sha256"):
            if must not in names:
                raise S3Reject(403, "AccessDenied", "header %s must be signed" % must)
        for h in self.headers.keys():
            if h.lower().startswith("x-amz-") and h.lower() not in names:
                raise S3Reject(403, "AccessDenied", "header %s must be signed" % h.lower())

        payload = self.headers.get("x-amz-content-sha256") or ""
        if payload.startswith("STREAMING-"):
            raise S3Reject(501, "NotImplemented", "streaming payloads are not supported")
        if payload != "UNSIGNED-PAYLOAD":
            actual = hashlib.sha256(body).hexdigest()
            if payload != actual:
                raise S3Reject(400, "XAmzContentSHA256Mismatch",
                               "The provided 'x-amz-content-sha256' header does not match what "
                               "was computed.",
                               {"ClientComputedContentSHA256": payload,
                                "S3ComputedContentSHA256": actual})

        md5 = self.headers.get("Content-MD5")
        if md5 is not None:
            try:
                digest = base64.b64decode(md5, validate=True)
            except ValueError:
                digest = b""
            if len(digest) != 16:
                raise S3Reject(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
            if digest != hashlib.md5(body).digest():
                raise S3Reject(400, "BadDigest",
                               "The Content-MD5 you specified did not match what we received.")
        self.check_crc32c(body)

        # canonical URI and query, from the decoded target; the target must
        # already be in canonical form (see the module docstring)
        dec_path = urllib.parse.unquote_to_bytes(raw_path)
        cpath = uri_encode(dec_path, True)
        if cpath != raw_path:
            raise S3Reject(400, "InvalidURI",
                           "request path is not in canonical SigV4 encoding: %r (want %r)"
                           % (raw_path, cpath))
        pairs = []
        if raw_query:
            for part in raw_query.split("&"):
                name, eq, value = part.partition("=")
                cn = uri_encode(urllib.parse.unquote_to_bytes(name), False)
                cv = uri_encode(urllib.parse.unquote_to_bytes(value), False)
                if cn != name or cv != value:
                    raise S3Reject(400, "InvalidURI",
                                   "query is not in canonical SigV4 encoding: %r" % part)
                pairs.append((cn, cv))
        cquery = "&".join("%s=%s" % p for p in sorted(pairs))
        lines = []
        for n in names:
            vals = self.headers.get_all(n)
            if vals is None:
                raise S3Reject(403, "SignatureDoesNotMatch", "signed header %s is missing" % n)
            lines.append("%s:%s\n" % (n, ",".join(collapse(v) for v in vals)))
        creq = "\n".join([self.command, cpath, cquery, "".join(lines), signed, payload])
        scope = "%s/%s/s3/aws4_request" % (date8, region)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()])
        k = ("AWS4" + secret).encode()
        for part in (date8, region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature):
            raise S3Reject(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your key and signing method.",
                           {"AWSAccessKeyId": akid, "StringToSign": sts,
                            "CanonicalRequest": creq})

    def region_refusal(self, region):
        """A request signed for region while the bucket is in st.region,
        answered as AWS does (botocore's S3RegionRedirector reads the same):
        redirect: 301 PermanentRedirect naming the bucket's endpoint, with
        x-amz-bucket-region (the only hint a HEAD's empty answer carries);
        malformed: 400 AuthorizationHeaderMalformed with <Region> in the body
        (and x-amz-bucket-region on a HEAD). Default: a plain 400."""
        st = self.st
        with st.lock:
            st.stats["wrong_region"] += 1
        if st.region_answer == "redirect":
            raise S3Reject(301, "PermanentRedirect", "The bucket you are attempting to access "
                           "must be addressed using the specified endpoint. Please send all "
                           "future requests to this endpoint.",
                           {"Endpoint": "%s.s3.%s.amazonaws.com" % (
                               self.vhost_bucket() or
                               self.object_key(self.path.partition("?")[0])[0], st.region)},
                           headers={"x-amz-bucket-region": st.region})
        if st.region_answer == "malformed":
            raise S3Reject(400, "AuthorizationHeaderMalformed",
                           "The authorization header is malformed; the region '%s' is wrong; "
                           "expecting '%s'" % (region, st.region), {"Region": st.region},
                           headers={"x-amz-bucket-region": st.region}
                           if self.command == "HEAD" else None)
        raise S3Reject(400, "AuthorizationHeaderMalformed",
                       "credential scope must be %s/s3" % st.region)

    def check_crc32c(self, body):
        """x-amz-checksum-crc32c: base64 of the big-endian CRC-32C of the body."""
        value = self.headers.get("x-amz-checksum-crc32c")
        self.crc_verified = None
        if value is None or self.command != "PUT":
            return
        mode = self.st.crc
        if mode == "refuse":
            raise S3Reject(400, "InvalidArgument", "x-amz-checksum-crc32c is not supported "
                           "here", {"ArgumentName": "x-amz-checksum-crc32c"})
        if mode == "ignore":
            return
        try:
            want = base64.b64decode(value, validate=True)
        except ValueError:
            want = b""
        if len(want) != 4:
            raise S3Reject(400, "InvalidRequest",
                           "Value for x-amz-checksum-crc32c header is invalid.")
        if self.st.crc_max and len(body) > self.st.crc_max:
            with self.st.lock:
                self.st.stats["crc_unchecked"] += 1
            return
        if struct.pack(">I", crc32c(body)) != want:
            raise S3Reject(400, "BadDigest",
                           "The CRC32C you specified did not match the calculated checksum.")
        with self.st.lock:
            self.st.stats["crc_checked"] += 1
        self.crc_verified = value

    def vhost_bucket(self):
        """BUCKET of a virtual-hosted request (Host BUCKET.<vhost domain>), else None."""
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        suffix = "." + self.st.args.vhost_domain
        if self.st.args.vhost_domain and name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
        return None

    # ---- upstream ---------------------------------------------------------

    def upstream(self, method, target, headers, body):
        host, port = self.st.args.upstream.rsplit(":", 1)
        for attempt in range(2):
            conn = getattr(self, "_up", None)
            if conn is None:
                conn = self._up = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                conn.request(method, target, body=body if body else None, headers=headers)
                resp = conn.getresponse()
                # read even a HEAD's (empty) answer: an unread answer leaves
                # the connection busy, and the next request on it would be
                # sent and then fail (ResponseNotReady) - and sent twice
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                self._up = None
                if attempt:
                    raise
                self.st.log("upstream %s %s: %r; sending it again" % (method, target, e))
        raise RuntimeError("unreachable")

    @staticmethod
    def path_has_query(target):
        return "?" in target

    def make_durable(self, raw_path, target, headers, body):
        """Answer a PUT only once s3rver serves exactly its bytes.

        s3rver 3.7.1 answers a PUT before its file is written (it resolves
        on its transform's "finish"), and when the key's directory is new it
        awaits mkdirp before piping the request, which can lose the body and
        store 0 bytes. S3 never does either; so poll, and re-send the PUT
        when the stored bytes stay wrong."""
        md5hex = hashlib.md5(body).hexdigest()
        ghead = self.fwd_headers(drop=("if-none-match", "if-match", "content-md5",
                                       "content-type", "x-amz-content-sha256", "range"))
        ghead["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        for attempt in range(5):
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                st, _, data = self.upstream("GET", raw_path, ghead, b"")
                if st == 200 and hashlib.md5(data).hexdigest() == md5hex:
                    return
                time.sleep(0.002)  # s3rver is still writing its file
            self.st.log("s3rver stored other bytes for PUT %s; sending it again (%d)"
                        % (raw_path, attempt + 1))
            self.upstream("PUT", target, headers, body)
        self.st.log("PUT %s: s3rver never served the bytes it was sent" % raw_path)

    def fwd_headers(self, drop=()):
        out = {}
        temp = getattr(self, "temp_akid", None)
        for k, v in self.headers.items():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in drop or lk == "content-length":
                continue
            if temp and lk == "x-amz-security-token":
                continue
            if temp and lk == "authorization":
                # s3rver knows only its own account (and checks no signature)
                v = v.replace("Credential=%s/" % temp, "Credential=%s/" % self.st.base_akid)
            if lk == "host" and getattr(self, "vhost", None) and not self.st.args.passthrough:
                v = self.st.args.upstream  # s3rver would take BUCKET.domain for a bucket name
            out[k] = v
        return out

    def object_key(self, raw_path):
        """(bucket, key) of a path-style request; key None for a bucket request."""
        parts = raw_path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 and parts[1] else None
        return bucket, key

    # ---- request handling -------------------------------------------------

    def control(self, path, query):
        q = urllib.parse.parse_qs(query, keep_blank_values=True)  # "x=" clears x
        st = self.st
        reply = {"ok": True}
        if path == "/__proxy__/health":
            pass
        elif path == "/__proxy__/stats":
            with st.lock:
                reply = json.loads(json.dumps(st.stats))
        elif path == "/__proxy__/faults":
            with st.lock:
                if "rate" in q:
                    st.rate = float(q["rate"][0])
                if "kinds" in q:
                    kinds = [k for k in q["kinds"][0].split(",") if k]
                    bad = [k for k in kinds if k not in FAULT_KINDS]
                    if bad:
                        reply = {"ok": False, "error": "unknown kinds %s" % bad}
                    else:
                        st.kinds = kinds
                if "seed" in q:
                    st.seed = int(q["seed"][0])
                    st.rng = random.Random(st.seed)
                if "next" in q:
                    st.next_faults = [k for k in q["next"][0].split(",") if k in FAULT_KINDS]
                if "stall_ms" in q:
                    st.args.stall_ms = int(q["stall_ms"][0])
                if "match" in q or "method" in q:
                    st.match = q.get("match", [""])[0]
                    st.match_method = q.get("method", [""])[0]
            st.log("faults: rate=%s kinds=%s seed=%s next=%s" % (st.rate, ",".join(st.kinds),
                                                                  st.seed, st.next_faults))
        elif path == "/__proxy__/config":
            if "max_keys" in q:
                st.max_keys = int(q["max_keys"][0])
            if "ignore_range" in q:
                st.ignore_range = q["ignore_range"][0] == "1"
            if "if_match" in q:
                st.if_match_rgw = q["if_match"][0] == "rgw"
            if "no_batch" in q:
                st.no_batch = q["no_batch"][0] == "1"
            if "region" in q:
                st.region = q["region"][0]
            if "region_answer" in q:
                st.region_answer = q["region_answer"][0]
            if "latency_ms" in q:
                st.latency_ms = int(q["latency_ms"][0])
                st.log("latency %d ms per request" % st.latency_ms)
            if "crc" in q:
                st.crc = q["crc"][0]
            if "crc_max" in q:
                st.crc_max = int(q["crc_max"][0])
            if "ignore_conditions" in q:
                st.ignore_conditions = q["ignore_conditions"][0] == "1"
                st.log("conditional PUTs %s" % ("ignored" if st.ignore_conditions else "honoured"))
        elif path == "/__proxy__/tempcreds":
            akid = q.get("akid", [""])[0]
            if not akid or "secret" not in q:
                reply = {"ok": False, "error": "akid and secret required"}
            else:
                with st.lock:
                    st.temp[akid] = (q["secret"][0], q.get("token", [""])[0],
                                     float(q.get("expires", ["0"])[0]))
                st.log("temporary key %s added, expires %s" % (akid, q.get("expires", ["0"])[0]))
        elif path == "/__proxy__/die":
            mode = q.get("mode", ["now"])[0]
            if mode == "next":
                st.die_next = True
            else:
                st.log("dying now, as asked")
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                os._exit(3)
        else:
            reply = {"ok": False, "error": "unknown control path"}
        data = json.dumps(reply).encode()
        self.send_response(200 if reply.get("ok", True) else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        raw_path, _, raw_query = self.path.partition("?")
        if raw_path.startswith("/__proxy__/"):
            self.read_body()
            return self.control(raw_path, raw_query)
        head = self.command == "HEAD"
        try:
            body = self.read_body()
            self.verify(body, raw_path, raw_query)
        except S3Reject as e:
            with self.st.lock:
                self.st.stats["rejected"] += 1
            self.st.log("rejected %s %s: %s %s" % (self.command, raw_path, e.code, e.message))
            self.close_connection = True
            return self.send_xml_error(e.status, e.code, e.message, e.extra, head, e.headers)
        self.vhost = self.vhost_bucket()
        if self.vhost:
            with self.st.lock:
                self.st.stats["vhost"] += 1
            if not self.st.args.passthrough:
                # verified as it came; s3rver gets it path-style
                raw_path = "/" + uri_encode(self.vhost.encode(), False) + (
                    raw_path if raw_path != "/" else "")

        if self.command == "GET" and "list-type=" in raw_query:
            with self.st.lock:  # LISTs apart from object GETs (bench/scrub.sh)
                self.st.stats["lists"] = self.st.stats.get("lists", 0) + 1
        fault = self.st.draw_fault(self.command, raw_path)
        if self.st.latency_ms > 0:
            self.st.stopping.wait(self.st.latency_ms / 1000.0)
        if fault:
            with self.st.lock:
                self.st.fault_no += 1
                n = self.st.fault_no
                self.st.stats["injected"] += 1
                self.st.stats["by_kind"][fault] += 1
            self.st.log("fault #%d (seed %s): %s on %s %s" % (n, self.st.seed, fault,
                                                             self.command, self.path))
            if fault == "500":
                return self.send_xml_error(500, "InternalError",
                                           "We encountered an internal error. Please try again.",
                                           head=head)
            if fault == "412":
                return self.send_xml_error(412, "PreconditionFailed",
                                           "At least one of the pre-conditions you specified "
                                           "did not hold", head=head)
            if fault == "503":
                return self.send_xml_error(503, "ServiceUnavailable",
                                           "Service is unable to handle request.", head=head)
            if fault == "slowdown":
                return self.send_xml_error(503, "SlowDown", "Please reduce your request rate.",
                                           head=head)
            if fault == "stall":
                self.st.stopping.wait(self.st.args.stall_ms / 1000.0)
                return self.hard_reset()

        bucket, key = self.object_key(raw_path)
        target = raw_path + ("?" + raw_query if raw_query else "")
        if self.command == "GET" and key is None and self.st.max_keys and "list-type=2" in \
                raw_query.split("&"):
            # serve smaller pages than asked: legal for S3, exercises continuation tokens
            pairs = [p for p in raw_query.split("&") if not p.startswith("max-keys=")]
            pairs.append("max-keys=%d" % self.st.max_keys)
            target = raw_path + "?" + "&".join(pairs)

        if self.st.no_batch and self.command == "POST" and key is None and \
                "delete" in [p.partition("=")[0] for p in raw_query.split("&")]:
            return self.send_xml_error(501, "NotImplemented", "A header or query you provided "
                                       "requested a function that is not implemented.")
        if self.st.args.passthrough:
            return self.pass_through(raw_path, target, body, head, fault)
        if self.command == "POST" and key is None and \
                "delete" in [p.partition("=")[0] for p in raw_query.split("&")]:
            return self.delete_objects(bucket, body, fault)
        if self.command == "GET" and key is not None and self.headers.get("Range"):
            hs, hh, _ = self.upstream("HEAD", raw_path, self.fwd_headers(drop=("range",)), b"")
            size = dict((k.lower(), v) for k, v in hh).get("content-length")
            if hs == 200 and size == "0":
                return self.send_xml_error(416, "InvalidRange",
                                           "The requested range is not satisfiable",
                                           {"RangeRequested": self.headers.get("Range"),
                                            "ActualObjectSize": "0"})

        drop = ["if-none-match", "if-match"]
        if self.st.ignore_range:
            drop.append("range")
        headers = self.fwd_headers(drop=drop)
        lock = None
        # Reads of a key are serialised with writes to it, and a PUT is not
        # answered until s3rver serves the new bytes: s3rver answers a PUT
        # before its file write has finished (it resolves on its transform's
        # "finish"), so a GET right after could read an empty or partial
        # object. S3 itself is strongly read-after-write consistent and never
        # returns a partial object; the proxy makes the test server so.
        if key is not None and self.command in ("PUT", "DELETE", "GET", "HEAD"):
            lock = self.st.key_lock((bucket, key))
            lock.acquire()
        try:
            if self.command == "PUT" and key is not None:
                inm = self.headers.get("If-None-Match")
                im = self.headers.get("If-Match")
                if (inm is not None or im is not None) and not self.st.ignore_conditions:
                    hs, hh, _ = self.upstream("HEAD", raw_path, self.fwd_headers(
                        drop=("if-none-match", "if-match", "content-md5", "content-type")), b"")
                    etag = dict((k.lower(), v) for k, v in hh).get("etag", "")
                    if inm is not None:
                        if inm.strip() != "*":
                            return self.send_xml_error(501, "NotImplemented",
                                                       "only If-None-Match: * is supported")
                        if hs == 200:
                            return self.send_xml_error(412, "PreconditionFailed",
                                                       "At least one of the pre-conditions you "
                                                       "specified did not hold",
                                                       {"Condition": "If-None-Match"})
                    if im is not None and self.st.if_match_rgw:
                        refusal = self.if_match_as_rgw(im, hs, etag)
                        if refusal:
                            return refusal
                    elif im is not None:
                        if hs == 404:
                            return self.send_xml_error(404, "NoSuchKey",
                                                       "The specified key does not exist.",
                                                       {"Key": key})
                        wanted = [w.strip() for w in im.split(",")]
                        if "*" not in wanted and etag not in wanted:
                            return self.send_xml_error(412, "PreconditionFailed",
                                                       "At least one of the pre-conditions you "
                                                       "specified did not hold",
                                                       {"Condition": "If-Match"})
            status, rh, data = self.upstream(self.command, target, headers, body)
            if self.command == "PUT" and key is not None and status == 200 and \
                    not self.path_has_query(target):
                self.make_durable(raw_path, target, headers, body or b"")
        finally:
            if lock:
                lock.release()
        with self.st.lock:
            self.st.stats["forwarded"] += 1
        self.relay(status, rh, data, head, fault)

    def if_match_as_rgw(self, im, hs, etag):
        """RGW 16.2's If-Match: the header against the ETag without quotes,
        as strings; a missing key fails the condition (412, not 404).
        Returns the refusal sent, or None when the PUT may go on."""
        if hs == 200 and im.strip() == etag.strip('"'):
            return None
        self.send_xml_error(412, "PreconditionFailed", "", {"Condition": "If-Match"})
        return True

    def pass_through(self, raw_path, target, body, head, fault):
        """--passthrough: the request goes upstream as it came (conditions,
        DeleteObjects, Range included), the answer comes back as it is. What
        the proxy changes (ignore_range, max_keys) it signs again with the
        client's key, since a real server checks the signature too; S3's
        own rule that DeleteObjects carries Content-MD5 stays checked here."""
        raw_query = target.partition("?")[2]
        if self.command == "POST" and "delete" in [p.partition("=")[0]
                                                   for p in raw_query.split("&")] and \
                self.headers.get("Content-MD5") is None:
            return self.send_xml_error(400, "InvalidRequest",
                                       "Missing required header for this request: Content-MD5")
        drop = ["range"] if self.st.ignore_range and self.headers.get("Range") else []
        headers = self.fwd_headers(drop=drop)
        if drop or target != self.path or getattr(self, "temp_akid", None):
            headers = self.resign(target, headers, drop)
        status, rh, data = self.upstream(self.command, target, headers, body)
        with self.st.lock:
            self.st.stats["forwarded"] += 1
        self.relay(status, rh, data, head, fault)

    def resign(self, target, headers, dropped):
        """SigV4 of the request as it goes upstream (target, headers without
        the dropped ones), with the key and time the client signed with."""
        m = re.search(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/s3/aws4_request,\s*"
                      r"SignedHeaders=([a-z0-9;\-]+)", self.headers.get("Authorization", ""))
        akid, date8, region, signed = m.groups()
        if getattr(self, "temp_akid", None):
            akid = self.st.base_akid  # the upstream store knows only the test's account
            dropped = list(dropped) + ["x-amz-security-token"]
        names = [n for n in signed.split(";") if n not in dropped]
        path, _, query = target.partition("?")
        cquery = "&".join(sorted(query.split("&"))) if query else ""
        lower = {k.lower(): v for k, v in headers.items()}
        lines = "".join("%s:%s\n" % (n, collapse(lower.get(n, ""))) for n in names)
        payload = lower.get("x-amz-content-sha256", "")
        creq = "\n".join([self.command, path, cquery, lines, ";".join(names), payload])
        scope = "%s/%s/s3/aws4_request" % (date8, region)
        sts = "\n".join(["AWS4-HMAC-SHA256", lower.get("x-amz-date", ""), scope,
                         hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()])
        k = ("AWS4" + self.st.creds[akid]).encode()
        for part in (date8, region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        out = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        out["Authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                                "Signature=%s" % (akid, scope, ";".join(names), sig))
        return out

    def delete_objects(self, bucket, body, fault):
        """DeleteObjects, done as single DELETEs upstream (see the docstring)."""
        if self.headers.get("Content-MD5") is None:
            return self.send_xml_error(400, "InvalidRequest",
                                       "Missing required header for this request: Content-MD5")
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return self.send_xml_error(400, "MalformedXML", "The XML you provided was not "
                                       "well-formed or did not validate against our schema.")
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        if root.tag not in ("Delete", ns + "Delete"):
            return self.send_xml_error(400, "MalformedXML", "root element must be Delete")
        quiet = (root.findtext("Quiet") or root.findtext(ns + "Quiet") or "").strip() == "true"
        keys = [o.findtext("Key") or o.findtext(ns + "Key")
                for o in list(root.iter("Object")) + list(root.iter(ns + "Object"))]
        if not keys or len(keys) > 1000 or any(not k for k in keys):
            return self.send_xml_error(400, "MalformedXML", "1 to 1000 Object/Key required")
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="%s">' % ns[1:-1]]
        headers = self.fwd_headers(drop=("content-md5", "content-type"))
        for k in keys:
            path = "/" + uri_encode(bucket.encode(), False) + "/" + uri_encode(k.encode(), True)
            with self.st.key_lock((bucket, k)):
                status, _, data = self.upstream("DELETE", path, headers, b"")
            if status in (200, 204, 404):
                if not quiet:
                    out.append("<Deleted><Key>%s</Key></Deleted>" % xml_escape(k))
            else:
                out.append("<Error><Key>%s</Key><Code>InternalError</Code><Message>upstream "
                           "answered %d</Message></Error>" % (xml_escape(k), status))
        out.append("</DeleteResult>")
        data = "".join(out).encode()
        with self.st.lock:
            self.st.stats["forwarded"] += 1
        self.relay(200, [("Content-Type", "application/xml")], data, False, fault)

    def relay(self, status, rh, data, head, fault):
        st = self.st
        if st.die_next:
            st.log("dying mid-answer to %s %s, as asked" % (self.command, self.path))
            self.send_response(status)
            self.send_header("Content-Length", str(len(data) + 1000))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            os._exit(3)
        if fault in ("reset", "truncate") and (head or not data):
            # no body to cut: the request took effect, the answer is lost
            # (reset: RST; truncate: a plain close before any byte)
            if fault == "reset":
                return self.hard_reset()
            self.close_connection = True
            return
        self.send_response(status)
        if status == 200 and self.command == "PUT" and getattr(self, "crc_verified", None) \
                and not st.args.passthrough:
            self.send_header("x-amz-checksum-crc32c", self.crc_verified)  # as AWS answers
        cl = None
        for k, v in rh:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == "date" or lk == "server":
                continue
            if lk == "content-length":
                cl = v
                continue
            self.send_header(k, v)
        if head:
            self.send_header("Content-Length", cl or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        if self.command == "GET" and status in (200, 206) and "list-type=" not in self.path:
            # by kind of object: the part of the key after nbd/<volume>/
            parts = self.path.partition("?")[0].split("/")
            kind = parts[parts.index("nbd") + 2] if "nbd" in parts[:-2] else "other"
            with st.lock:
                st.stats["object_gets"] = st.stats.get("object_gets", 0) + 1
                st.stats["object_get_bytes"] = st.stats.get("object_get_bytes", 0) + len(data)
                by = st.stats.setdefault("object_gets_by", {})
                by[kind] = by.get(kind, 0) + 1
        if fault == "reset":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self.hard_reset()
        if fault == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def finish(self):
        up = getattr(self, "_up", None)
        if up is not None:
            up.close()
        try:
            super().finish()
        except OSError:
            pass  # the client went away (or we reset it on purpose)

    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="127.0.0.1:PORT (0 = any free)")
    ap.add_argument("--upstream", required=True, help="s3rver as HOST:PORT")
    ap.add_argument("--creds", action="append", default=[], help="AKID:SECRET (repeatable)")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--port-file", help="write the bound port here")
    ap.add_argument("--log", help="append the proxy log here (default stderr)")
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--fault-kinds", default="500,503,slowdown")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stall-ms", type=int, default=5000)
    ap.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    ap.add_argument("--tls-key", help="... and this private key (PEM)")
    ap.add_argument("--vhost-domain", default="s3.localhost",
                    help="Host BUCKET.<this> is a virtual-hosted request for BUCKET")
    ap.add_argument("--passthrough", action="store_true",
                    help="upstream is a real S3 server: forward conditions and batches as they are")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        ap.error("the test proxy listens on 127.0.0.1 only")
    if not args.creds:
        args.creds = ["S3RVER:S3RVER"]
    srv = Server(("127.0.0.1", int(port)), Handler)
    srv.state = State(args)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # handshake in the handler thread, not in the accept loop
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    bound = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound)
        os.rename(tmp, args.port_file)
    srv.state.log("listening on %s://127.0.0.1:%d, upstream %s" % (
        "https" if args.tls_cert else "http", bound, args.upstream))
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.state.stopping.set()


if __name__ == "__main__":
    main()
