#!/usr/bin/python3
"""rgwenv.py — run test programs against a real Ceph RGW (radosgw 16.2 from
Debian 12's packages): one single-node cluster for the whole list.

  rgwenv.py [--require] [--timeout S] -- CASE [;; CASE ...]
  rgwenv.py --serve            bring a cluster up, print its endpoint, wait for ^C

  CASE:  NAME MODE [VAR=VALUE ...] PROGRAM [ARGS ...]
  MODE:  direct      S3_ENDPOINT is radosgw itself
         tls         S3_ENDPOINT is radosgw itself over https (its own TLS, a
                     certificate of a private CA; AWS_CA_BUNDLE names the CA)
         proxy       S3_ENDPOINT is tests/s3/s3proxy.py --passthrough in front
                     of it (SigV4 checked twice, faults injectable, the
                     proxy controls of the s3rver harness work)
         proxy+aws   proxy, then awscli reads back what the test listed in
                     S3_CHECK_FILE (as tests/s3/s3env.py --aws-check)

1. Finds ceph-mon, ceph-osd, radosgw, radosgw-admin, ceph and monmaptool
   (scripts/deps.sh installs them); without them exits 77 (meson's
   "skipped"), or fails with --require (meson option rgw_tests=enabled).
2. Brings up, in a temporary directory, on 127.0.0.1 and free ports: one
   monitor, one OSD on memstore (no disk), one radosgw (beast, on http and
   on https with a certificate of a private CA made here for 127.0.0.1 and
   *.s3.localhost; `rgw dns name = s3.localhost`, so BUCKET.s3.localhost is
   a virtual-hosted request). No systemd:
   the daemons run in the foreground as our children, with pid files, in
   their own process groups. `auth none` everywhere; radosgw then needs
   `ms mon client mode = crc secure` (else it waits five minutes for the mon
   config and gives up); pools of size 1 need `mon allow pool size one`.
3. Creates the S3 user (radosgw-admin; the keys the test programs use) and
   the bucket (a signed PUT), then runs each case in turn with S3_ENDPOINT,
   S3_BUCKET, S3_UPSTREAM (radosgw), S3_STORE=rgw, S3_CHECK_FILE,
   S3_TLS_ENDPOINT / S3_TLS_CA / S3_TLS_WRONG_CA (radosgw's https) and,
   through the proxy, S3_PROXY_LOG. Each case's result
   is printed as it ends (PASS / FAIL / SKIP, with its time) and summed up at
   the end; the exit status is 1 if any failed. GLIDEFS_RGW_ONLY=a,b runs
   only the named cases.
4. Always stops every daemon by its PID (SIGTERM, then SIGKILL) and removes
   the directory (GLIDEFS_RGW_KEEP=1 keeps it, logs included).

Python 3 standard library only; the proxy and awscli helpers are
tests/s3/s3env.py's.
"""

import argparse
import datetime
import hashlib
import hmac
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
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
import s3env  # noqa: E402  (ProxyKeeper, Proc, make_cert, aws_check, clean_env)

SKIP = 77
BUCKET = s3env.BUCKET
CREDS = s3env.CREDS
TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool")
MODES = ("direct", "tls", "proxy", "proxy+aws")


def log(msg):
    print("rgwenv: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign_request(method, host, path, body=b"", headers=None, query=""):
    """(path?query, headers) of a SigV4-signed request with the test keys."""
    headers = dict(headers or {})
    amz = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    headers.update({"host": host, "x-amz-date": amz, "x-amz-content-sha256": payload})
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    names = sorted(lower)
    creq = "\n".join([method, path, query, "".join("%s:%s\n" % (n, lower[n]) for n in names),
                      ";".join(names), payload])
    scope = "%s/us-east-1/s3/aws4_request" % amz[:8]
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + CREDS[1]).encode()
    for part in (amz[:8], "us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                                "Signature=%s" % (CREDS[0], scope, ";".join(names), sig))
    return path + ("?" + query if query else ""), headers


def s3_call(port, method, path, body=b"", headers=None, query=""):
    target, hdrs = sign_request(method, "127.0.0.1:%d" % port, path, body, headers, query)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body or None, headers=hdrs)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class Cluster:
    """mon + memstore OSD + radosgw in dir; stop() always tears it down."""

    def __init__(self, d):
        self.dir = d
        self.conf = os.path.join(d, "ceph.conf")
        self.procs = []  # (name, s3env.Proc), stopped in reverse
        self.rgw_port = 0
        self.tls_port = 0  # the same radosgw over https (a private CA's certificate)
        self.tls = None    # (cert, key, ca) or None without openssl
        self.wrong_ca = None

    def ceph(self, *args, timeout=30, check=True):
        r = subprocess.run(["ceph", "-c", self.conf, "--connect-timeout", "10"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=s3env.clean_env())
        if check and r.returncode != 0:
            raise RuntimeError("ceph %s: %s" % (" ".join(args), r.stderr.strip()[-500:]))
        return r

    def run_tool(self, argv, timeout=60):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=s3env.clean_env())
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv[:3]), r.stderr.strip()[-800:]))
        return r.stdout

    def daemon(self, name, argv):
        out = open(os.path.join(self.dir, "log", name + ".out"), "w")
        p = s3env.Proc(argv, env=s3env.clean_env(), stdout=out)
        out.close()
        self.procs.append((name, p))
        return p

    def alive_or_raise(self, name, p):
        if p.p.poll() is not None:
            raise RuntimeError("%s exited with status %s; %s" % (name, p.p.returncode,
                                                                self.log_tail(name)))

    def log_tail(self, name, n=15):
        out = []
        for path in (os.path.join(self.dir, "log", name + ".out"),
                     os.path.join(self.dir, "log", "ceph-%s.log" % name)):
            try:
                with open(path, errors="replace") as f:
                    lines = f.readlines()[-n:]
                if lines:
                    out.append("%s:\n%s" % (path, "".join(lines)))
            except OSError:
                pass
        return "\n".join(out) or "(no log)"

    def start(self):
        t0 = time.monotonic()
        d = self.dir
        for sub in ("mon", "osd", "rgw", "run", "log"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        fsid = str(uuid.uuid4())
        mon2, mon1, self.rgw_port = free_port(), free_port(), free_port()
        self.tls = s3env.make_cert(d)
        wrong = s3env.make_ca(d, "wrong-ca")
        self.wrong_ca = wrong[0] if wrong else None
        frontend = "beast endpoint=127.0.0.1:%d" % self.rgw_port
        if self.tls:
            self.tls_port = free_port()
            frontend += " ssl_endpoint=127.0.0.1:%d ssl_certificate=%s ssl_private_key=%s" % (
                self.tls_port, self.tls[0], self.tls[1])
        addrs = "[v2:127.0.0.1:%d,v1:127.0.0.1:%d]" % (mon2, mon1)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "[global]",
                "fsid = %s" % fsid,
                "mon host = %s" % addrs,
                "public network = 127.0.0.0/8",
                "auth cluster required = none",
                "auth service required = none",
                "auth client required = none",
                # radosgw with auth none: without this it never gets its
                # config from the mon ("failed to fetch mon config", 5 min)
                "ms mon client mode = crc secure",
                "mon allow pool size one = true",
                "mon warn on pool no redundancy = false",
                "osd pool default size = 1",
                "osd pool default min size = 1",
                "osd pool default pg num = 8",
                "osd pool default pgp num = 8",
                "osd objectstore = memstore",
                "memstore device bytes = %d" % (4 << 30),
                "osd data = %s/osd/$cluster-$id" % d,
                "mon data = %s/mon/$cluster-$id" % d,
                "run dir = %s/run" % d,
                "admin socket = %s/run/$name.asok" % d,
                "pid file = %s/run/$name.pid" % d,
                "log file = %s/log/$cluster-$name.log" % d,
                "keyring = %s/keyring" % d,
                "log to stderr = false",
                "err to stderr = true",
                "",
                "[client.rgw.a]",
                "rgw frontends = %s" % frontend,
                "rgw data = %s/rgw" % d,
                # virtual-hosted buckets: BUCKET.s3.localhost (libcurl resolves
                # *.localhost to 127.0.0.1 itself); other Host names stay path-style
                "rgw dns name = %s" % s3env.TLS_DNS_DOMAIN,
                "",
            ]))
        open(os.path.join(d, "keyring"), "w").close()
        monmap = os.path.join(d, "monmap")
        self.run_tool(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", addrs, monmap])
        self.run_tool(["ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap])
        mon = self.daemon("mon.a", ["ceph-mon", "-c", self.conf, "-i", "a", "-f"])

        def mon_up():
            self.alive_or_raise("mon.a", mon)
            return self.ceph("mon", "stat", check=False, timeout=20).returncode == 0
        s3env.wait_for(mon_up, 60, "the monitor")

        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).stdout.strip()
        os.makedirs(os.path.join(d, "osd", "ceph-" + osd_id), exist_ok=True)
        self.run_tool(["ceph-osd", "-c", self.conf, "-i", osd_id, "--mkfs", "--osd-uuid",
                       osd_uuid])
        osd = self.daemon("osd." + osd_id, ["ceph-osd", "-c", self.conf, "-i", osd_id, "-f"])

        def osd_up():
            self.alive_or_raise("osd." + osd_id, osd)
            r = self.ceph("osd", "stat", "-f", "json", check=False)
            try:
                return r.returncode == 0 and json.loads(r.stdout).get("num_up_osds") == 1
            except ValueError:
                return False
        s3env.wait_for(osd_up, 60, "the OSD to be up")

        rgw = self.daemon("client.rgw.a", ["radosgw", "-c", self.conf, "-n", "client.rgw.a",
                                           "-f"])

        def rgw_up():
            self.alive_or_raise("client.rgw.a", rgw)
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.rgw_port, timeout=2)
                c.request("GET", "/")
                return c.getresponse().status == 200
            except OSError:
                return False
        s3env.wait_for(rgw_up, 240, "radosgw to answer")
        self.run_tool(["radosgw-admin", "-c", self.conf, "user", "create", "--uid", "glidefs",
                       "--display-name", "glidefs tests", "--access-key", CREDS[0],
                       "--secret-key", CREDS[1]])
        st, body = s3_call(self.rgw_port, "PUT", "/" + BUCKET)
        if st != 200:
            raise RuntimeError("creating bucket %s: HTTP %d %s" % (BUCKET, st, body[:300]))
        log("Ceph RGW (%s) on 127.0.0.1:%d up in %.1f s, in %s" % (
            self.version(), self.rgw_port, time.monotonic() - t0, d))

    def version(self):
        try:
            return self.run_tool(["radosgw", "--version"], timeout=20).split("(")[0].strip()
        except Exception:
            return "radosgw ?"

    def stop(self):
        for name, p in reversed(self.procs):
            p.stop()
        self.procs = []


def parse_cases(tokens):
    cases, cur = [], []
    for t in tokens + [";;"]:
        if t == ";;":
            if cur:
                if len(cur) < 3 or cur[1] not in MODES:
                    raise SystemExit("rgwenv: bad case %r (NAME MODE [VAR=V ...] PROGRAM ...)"
                                     % cur)
                name, mode, rest = cur[0], cur[1], cur[2:]
                env = {}
                while rest and "=" in rest[0] and not rest[0].startswith(("/", "-")):
                    k, _, v = rest[0].partition("=")
                    env[k] = v
                    rest = rest[1:]
                if not rest:
                    raise SystemExit("rgwenv: case %s has no program" % name)
                cases.append({"name": name, "mode": mode, "env": env, "cmd": rest})
            cur = []
        else:
            cur.append(t)
    return cases


def run_case(cl, case, root, timeout):
    tmp = tempfile.mkdtemp(prefix=case["name"] + "-", dir=root)
    proxy = None
    try:
        direct = "http://127.0.0.1:%d" % cl.rgw_port
        env = s3env.clean_env(S3_BUCKET=BUCKET, S3_UPSTREAM=direct, S3_STORE="rgw",
                              S3_CHECK_FILE=os.path.join(tmp, "awscheck.tsv"))
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_CA_BUNDLE"):
            env.pop(k, None)
        if cl.tls:
            env["S3_TLS_ENDPOINT"] = "https://127.0.0.1:%d" % cl.tls_port
            env["S3_TLS_CA"] = cl.tls[2]
            if cl.wrong_ca:
                env["S3_TLS_WRONG_CA"] = cl.wrong_ca
        if case["mode"] == "direct":
            env["S3_ENDPOINT"] = direct
        elif case["mode"] == "tls":
            if not cl.tls:
                log("%s: no openssl, no https endpoint" % case["name"])
                return SKIP
            env["S3_ENDPOINT"] = env["S3_TLS_ENDPOINT"]
            env["AWS_CA_BUNDLE"] = cl.tls[2]  # how the tests' configs learn the CA
        else:
            proxy = s3env.ProxyKeeper(tmp, cl.rgw_port, extra_args=["--passthrough"])
            env["S3_ENDPOINT"] = "http://127.0.0.1:%d" % proxy.port
            env["S3_PROXY_LOG"] = proxy.log_path
            s3env.wait_for(lambda: s3env.http_ok(env["S3_ENDPOINT"] + "/__proxy__/health"), 20,
                           "the proxy to answer")
        env.update(case["env"])
        try:
            rc = subprocess.run(case["cmd"], env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            log("%s: timed out after %.0f s" % (case["name"], timeout))
            rc = 1
        if rc == 0 and case["mode"] == "proxy+aws":
            rc = s3env.aws_check(env["S3_CHECK_FILE"], env["S3_ENDPOINT"], tmp)
        if rc not in (0, SKIP) and proxy:
            try:
                with open(proxy.log_path, errors="replace") as f:
                    log("last proxy log lines:\n" + "".join(f.readlines()[-30:]))
            except OSError:
                pass
        return rc
    finally:
        if proxy:
            proxy.stop()
        if not os.environ.get("GLIDEFS_RGW_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


def on_signal(signum, frame):
    raise SystemExit("rgwenv: stopped by signal %d" % signum)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--require", action="store_true", help="fail instead of skip without Ceph")
    ap.add_argument("--timeout", type=float, default=300, help="per case")
    ap.add_argument("--serve", action="store_true", help="keep a cluster up until ^C")
    ap.add_argument("cases", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    tokens = a.cases[1:] if a.cases and a.cases[0] == "--" else a.cases
    cases = parse_cases(tokens)
    only = [n for n in os.environ.get("GLIDEFS_RGW_ONLY", "").split(",") if n]
    if only:
        cases = [c for c in cases if c["name"] in only]
    if not cases and not a.serve:
        ap.error("no cases")

    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        msg = ("Ceph is not installed (missing %s): scripts/deps.sh installs ceph-mon, "
               "ceph-osd and radosgw" % ", ".join(missing))
        if a.require:
            log("FAIL: " + msg)
            return 1
        log("SKIP: " + msg)
        return SKIP

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    root = tempfile.mkdtemp(prefix="glidefs-rgw-")
    cl = Cluster(os.path.join(root, "ceph"))
    results = []
    try:
        try:
            cl.start()
        except Exception as e:
            log("FAIL: the Ceph cluster did not come up: %s" % e)
            for name, _ in cl.procs:
                log(cl.log_tail(name))
            return 1
        if a.serve:
            print("S3_ENDPOINT=http://127.0.0.1:%d S3_BUCKET=%s (keys %s:%s); ^C stops it"
                  % (cl.rgw_port, BUCKET, CREDS[0], CREDS[1]), flush=True)
            if cl.tls:
                print("S3_TLS_ENDPOINT=https://127.0.0.1:%d S3_TLS_CA=%s" % (cl.tls_port,
                                                                            cl.tls[2]),
                      flush=True)
            signal.pause()
            return 0
        for case in cases:
            print("=" * 20 + " rgw: %s (%s) " % (case["name"], case["mode"]) + "=" * 20,
                  flush=True)
            t0 = time.monotonic()
            rc = run_case(cl, case, root, a.timeout)
            dt = time.monotonic() - t0
            verdict = "PASS" if rc == 0 else "SKIP" if rc == SKIP else "FAIL (%d)" % rc
            results.append((case["name"], verdict, dt))
            print("rgw: %-28s %s  %.1f s" % (case["name"], verdict, dt), flush=True)
    finally:
        cl.stop()
        if os.environ.get("GLIDEFS_RGW_KEEP"):
            log("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("rgw summary:", flush=True)
    for name, verdict, dt in results:
        print("  %-28s %-10s %6.1f s" % (name, verdict, dt), flush=True)
    failed = [r for r in results if r[1].startswith("FAIL")]
    if failed:
        log("FAIL: %d of %d case(s) failed: %s" % (len(failed), len(results),
                                                   ", ".join(r[0] for r in failed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
