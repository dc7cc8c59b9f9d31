#!/usr/bin/python3
"""credserver.py — the credential services a production node asks, for the
test suite only: the EC2 instance metadata service (IMDSv2), the ECS / EKS
container credentials endpoint and STS AssumeRoleWithWebIdentity, on one
port of 127.0.0.1. Each issues short-lived keys (--ttl seconds) and tells
the test S3 proxy (tests/s3/s3proxy.py, --proxy) about them, so a request
signed with them passes there until they expire, and fails after (400
ExpiredToken), as on AWS.

  PUT  /latest/api/token                  IMDSv2 session token; needs
                                          X-aws-ec2-metadata-token-ttl-seconds
                                          (1..21600), refuses X-Forwarded-For
  GET  /latest/meta-data/iam/security-credentials/        the role name
  GET  /latest/meta-data/iam/security-credentials/ROLE    the keys (JSON)
       (both need X-aws-ec2-metadata-token: a valid session token, else 401)
  GET  /ecs/...                           the keys (JSON); needs
                                          Authorization: --ecs-token (else 401)
  POST /sts/  Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=
       &RoleSessionName=&WebIdentityToken=  the keys (XML); the token must be
                                          --web-token and the role --role-arn
                                          (else 400/403 ErrorResponse)

Control (never needs a token):
  GET /__cred__/stats                    JSON: keys issued per service, requests
  GET /__cred__/config?ttl=S             lifetime of keys issued from now on
  GET /__cred__/config?fail=N            answer the next N key requests 500
  GET /__cred__/config?down=1|0          answer every key request 500 until down=0
  GET /__cred__/config?imds=ok|hang|gone hang: the token PUT is never answered
                                          (the connection stays open); gone: 404

Keys: ASIA + the service (IMDS, ECSC, STSW) + 12 random upper-case letters
and digits; secret 40 characters; a session token each. Python 3 standard
library only; listens on 127.0.0.1 only.
"""

import argparse
import datetime
import json
import os
import random
import secrets
import socket
import socketserver
import string
import sys
import threading
import time
import urllib.parse
import urllib.request
import http.server
from xml.sax.saxutils import escape

ROLE = "glidefs-test-role"


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.ttl = args.ttl
        self.fail = 0
        self.down = False
        self.imds = "ok"
        self.tokens = {}  # IMDSv2 session token -> expiry
        self.stats = {"issued": {"imds": 0, "ecs": 0, "sts": 0}, "requests": 0,
                      "refused": 0, "failed": 0, "imds_tokens": 0, "last_akid": {}}
        self.log_file = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.stopping = threading.Event()

    def log(self, msg):
        with self.lock:
            self.log_file.write("%s credserver[%d] %s\n" % (time.strftime("%H:%M:%S"),
                                                           os.getpid(), msg))


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "credserver"
    sys_version = ""

    def log_message(self, fmt, *a):
        pass

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    @property
    def st(self) -> State:
        return self.server.state

    def reply(self, status, body, ctype="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = self.headers.get("Content-Length")
        if not n or not n.isdigit() or int(n) > 1 << 20:
            return b""
        return self.rfile.read(int(n))

    # -- keys ---------------------------------------------------------------

    def issue(self, service):
        """New keys, registered with the proxy; None when told to fail."""
        st = self.st
        with st.lock:
            if st.down or st.fail > 0:
                if st.fail > 0:
                    st.fail -= 1
                st.stats["failed"] += 1
                return None
            ttl = st.ttl
        tag = {"imds": "IMDS", "ecs": "ECSC", "sts": "STSW"}[service]
        akid = "ASIA" + tag + "".join(random.choice(string.ascii_uppercase + string.digits)
                                      for _ in range(12))
        secret = secrets.token_urlsafe(30)[:40]
        token = "TOKEN" + secrets.token_urlsafe(48)
        expires = time.time() + ttl
        q = urllib.parse.urlencode({"akid": akid, "secret": secret, "token": token,
                                    "expires": "%.3f" % expires})
        with st.opener.open(st.args.proxy + "/__proxy__/tempcreds?" + q, timeout=10) as r:
            r.read()
        with st.lock:
            st.stats["issued"][service] += 1
            st.stats["last_akid"][service] = akid
        st.log("%s: issued %s, expires in %s s" % (service, akid, ttl))
        return {"AccessKeyId": akid, "SecretAccessKey": secret, "Token": token,
                "Expiration": iso(expires)}

    # -- IMDSv2 ---------------------------------------------------------------

    def imds_token_ok(self):
        tok = self.headers.get("X-aws-ec2-metadata-token")
        with self.st.lock:
            exp = self.st.tokens.get(tok or "")
        return exp is not None and exp > time.time()

    def imds(self, path):
        st = self.st
        if st.imds == "gone":
            return self.reply(404, "Not Found")
        if self.command == "PUT" and path == "/latest/api/token":
            if st.imds == "hang":
                st.log("imds: hanging the token request, as told")
                st.stopping.wait(60)
                self.close_connection = True
                return
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if self.headers.get("X-Forwarded-For"):
                return self.reply(403, "Forbidden")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.reply(400, "Bad Request")
            tok = secrets.token_urlsafe(40)
            with st.lock:
                st.tokens[tok] = time.time() + int(ttl)
                st.stats["imds_tokens"] += 1
            return self.reply(200, tok)
        if self.command != "GET":
            return self.reply(405, "Method Not Allowed")
        if not self.imds_token_ok():
            with st.lock:
                st.stats["refused"] += 1
            return self.reply(401, "Unauthorized")
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return self.reply(200, ROLE)
        if path == base + ROLE:
            keys = self.issue("imds")
            if keys is None:
                return self.reply(500, "Internal Server Error")
            keys.update({"Code": "Success", "LastUpdated": iso(time.time()),
                         "Type": "AWS-HMAC"})
            return self.reply(200, json.dumps(keys), "application/json")
        return self.reply(404, "Not Found")

    # -- ECS / EKS container endpoint ----------------------------------------------

    def ecs(self):
        if self.command != "GET":
            return self.reply(405, "")
        if self.headers.get("Authorization") != self.st.args.ecs_token:
            with self.st.lock:
                self.st.stats["refused"] += 1
            return self.reply(401, json.dumps({"code": "AccessDeniedException",
                                               "message": "bad authorization token"}),
                              "application/json")
        keys = self.issue("ecs")
        if keys is None:
            return self.reply(500, "{}", "application/json")
        keys["RoleArn"] = self.st.args.role_arn
        return self.reply(200, json.dumps(keys), "application/json")

    # -- STS ------------------------------------------------------------------------

    def sts_error(self, status, code, message):
        body = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                "<Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
                "<RequestId>%s</RequestId></ErrorResponse>" % (code, escape(message),
                                                               secrets.token_hex(8)))
        with self.st.lock:
            self.st.stats["refused"] += 1
        return self.reply(status, body, "text/xml")

    def sts(self, body):
        if self.command != "POST":
            return self.sts_error(405, "InvalidAction", "POST only here")
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        one = {k: v[0] for k, v in form.items() if len(v) == 1}
        if one.get("Action") != "AssumeRoleWithWebIdentity" or \
                one.get("Version") != "2011-06-15":
            return self.sts_error(400, "InvalidAction", "unknown action or version")
        if one.get("WebIdentityToken") != self.st.args.web_token:
            return self.sts_error(400, "InvalidIdentityToken",
                                  "Couldn't retrieve verification key from your identity "
                                  "provider")
        if one.get("RoleArn") != self.st.args.role_arn:
            return self.sts_error(403, "AccessDenied", "Not authorized to perform "
                                  "sts:AssumeRoleWithWebIdentity")
        if not one.get("RoleSessionName"):
            return self.sts_error(400, "ValidationError", "RoleSessionName missing")
        keys = self.issue("sts")
        if keys is None:
            return self.sts_error(500, "InternalFailure", "told to fail")
        xml = ('<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/'
               '2011-06-15/"><AssumeRoleWithWebIdentityResult>'
               "<SubjectFromWebIdentityToken>system:serviceaccount:test:glidefs"
               "</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>"
               "<AssumedRoleUser><Arn>%s/%s</Arn><AssumedRoleId>AROATEST:%s</AssumedRoleId>"
               "</AssumedRoleUser><Credentials><SessionToken>%s</SessionToken>"
               "<SecretAccessKey>%s</SecretAccessKey><Expiration>%s</Expiration>"
               "<AccessKeyId>%s</AccessKeyId></Credentials><Provider>test</Provider>"
               "</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>%s"
               "</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
               % (escape(self.st.args.role_arn), escape(one["RoleSessionName"]),
                  escape(one["RoleSessionName"]), keys["Token"], keys["SecretAccessKey"],
                  keys["Expiration"], keys["AccessKeyId"], secrets.token_hex(8)))
        return self.reply(200, xml, "text/xml")

    # -- dispatch -------------------------------------------------------------------

    def control(self, path, query):
        st = self.st
        q = urllib.parse.parse_qs(query)
        if path == "/__cred__/stats":
            with st.lock:
                return self.reply(200, json.dumps(st.stats), "application/json")
        if path == "/__cred__/config":
            with st.lock:
                if "ttl" in q:
                    st.ttl = float(q["ttl"][0])
                if "fail" in q:
                    st.fail = int(q["fail"][0])
                if "down" in q:
                    st.down = q["down"][0] == "1"
                if "imds" in q:
                    st.imds = q["imds"][0]
            st.log("config: ttl=%s fail=%s down=%s imds=%s" % (st.ttl, st.fail, st.down,
                                                               st.imds))
            return self.reply(200, '{"ok": true}', "application/json")
        return self.reply(404, "unknown control path")

    def handle_any(self):
        path, _, query = self.path.partition("?")
        body = self.read_body()
        if path.startswith("/__cred__/"):
            return self.control(path, query)
        with self.st.lock:
            self.st.stats["requests"] += 1
        if path.startswith("/latest/"):
            return self.imds(path)
        if path.startswith("/ecs/"):
            return self.ecs()
        if path == "/sts/" or path == "/sts":
            return self.sts(body)
        return self.reply(404, "Not Found")

    do_GET = do_PUT = do_POST = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", required=True, help="the s3proxy.py base URL (controls)")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--ttl", type=float, default=900)
    ap.add_argument("--ecs-token", default="ecs-test-authorization-token")
    ap.add_argument("--web-token", default="eyJ0ZXN0IjoiZ2xpZGVmcyJ9.web-identity.token")
    ap.add_argument("--role-arn", default="arn:aws:iam::123456789012:role/" + ROLE)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.state = State(args)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    srv.state.log("listening on 127.0.0.1:%d" % srv.server_address[1])
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.state.stopping.set()


if __name__ == "__main__":
    main()
