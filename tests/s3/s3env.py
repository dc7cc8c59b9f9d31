#!/usr/bin/python3
"""s3env.py — run one S3 integration test against s3rver behind s3proxy.py.

  s3env.py --cache DIR [--require] [--aws-check] [--credserver] -- TEST-PROGRAM [ARGS...]

1. Finds node and npm; without them exits 77 (meson's "skipped"), unless
   --require (meson option s3_tests=enabled), which makes that a failure.
2. Installs s3rver (pinned version) with npm into DIR/s3rver once (a lock
   serialises parallel test runs; later runs reuse it).
3. Starts s3rver on 127.0.0.1, a free port (it binds port 0 and says which),
   a temporary data directory, NODE_OPTIONS=--openssl-legacy-provider (else
   s3rver 3.7.1 answers every ListObjectsV2 with a 500), and the test bucket.
4. Starts the strict proxy (s3proxy.py) in front of it on another free port;
   restarts it on the same port when it exits with status 3 (the test asked
   it to die: "server killed mid-operation, then back").
5. Runs the test program with S3_ENDPOINT (the proxy), S3_BUCKET, S3_UPSTREAM,
   S3_CHECK_FILE; with --aws-check, then verifies with /usr/bin/aws (through
   the proxy, so botocore's signer checks the proxy too) that the objects the
   test listed in S3_CHECK_FILE are real S3 objects with the right bytes.
   With --credserver, also starts tests/s3/credserver.py (IMDSv2, the
   container endpoint and STS, issuing short-lived keys the proxy accepts)
   and passes CRED_ENDPOINT (its base URL), CRED_LOG, CRED_ECS_TOKEN,
   CRED_WEB_TOKEN and CRED_ROLE_ARN. TLS: S3_TLS_ENDPOINT is the proxy again
   over https with a certificate of a private CA (S3_TLS_CA), good for
   127.0.0.1 and *.s3.localhost; S3_TLS_WRONG_CA is another CA.
6. Always stops the proxy, the credential server and s3rver and removes the
   temporary directory.

Python 3 standard library only.
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

S3RVER_VERSION = "3.7.1"
BUCKET = "glidefs-test"
CREDS = ("S3RVER", "S3RVER")  # s3rver's built-in account
HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
# Requests to 127.0.0.1 must never go through an HTTP proxy from the
# environment (libcurl, urllib and botocore all honour these).
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "all_proxy")


def clean_env(**extra):
    env = dict(os.environ, **extra)
    for k in PROXY_VARS:
        env.pop(k, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def http_ok(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        return opener.open(url, timeout=2).status == 200
    except OSError:
        return False


def log(msg):
    print("s3env: " + msg, file=sys.stderr, flush=True)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


def install_s3rver(cache):
    """npm install s3rver@S3RVER_VERSION into cache/s3rver, once."""
    prefix = os.path.join(cache, "s3rver")
    os.makedirs(prefix, exist_ok=True)
    pkg = os.path.join(prefix, "node_modules", "s3rver", "package.json")
    with open(os.path.join(prefix, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        try:
            with open(pkg) as f:
                if json.load(f).get("version") == S3RVER_VERSION:
                    return os.path.join(prefix, "node_modules", "s3rver", "bin", "s3rver.js")
        except (OSError, ValueError):
            pass
        log("installing s3rver@%s into %s" % (S3RVER_VERSION, prefix))
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", prefix,
                            "s3rver@" + S3RVER_VERSION],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("npm install s3rver@%s failed:\n%s" % (S3RVER_VERSION,
                                                                     r.stdout[-2000:]))
    return os.path.join(prefix, "node_modules", "s3rver", "bin", "s3rver.js")


class Proc:
    """A child process in its own process group, always stopped."""

    def __init__(self, argv, env=None, stdout=None):
        self.p = subprocess.Popen(argv, env=env, stdout=stdout or subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()


class ProxyKeeper:
    """Runs s3proxy.py; restarts it on the same port when it exits with 3."""

    def __init__(self, tmp, upstream_port, name="proxy", tls=None, extra_args=()):
        self.tmp = tmp
        self.extra_args = list(extra_args)  # e.g. --passthrough (tests/rgw/rgwenv.py)
        self.name = name
        self.tls = tls  # (cert, key) for https
        self.upstream = "127.0.0.1:%d" % upstream_port
        self.log_path = os.path.join(tmp, name + ".log")
        self.port = 0
        self.proc = None
        self.restarts = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.start(first=True)
        self.watch = threading.Thread(target=self.watcher, daemon=True)
        self.watch.start()

    def start(self, first=False):
        port_file = os.path.join(self.tmp, self.name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        argv = [sys.executable, os.path.join(HERE, "s3proxy.py"),
                "--listen", "127.0.0.1:%d" % self.port, "--upstream", self.upstream,
                "--creds", "%s:%s" % CREDS, "--port-file", port_file, "--log", self.log_path]
        if self.tls:
            argv += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        argv += self.extra_args
        self.proc = Proc(argv)
        self.port = int(wait_for(lambda: os.path.exists(port_file) and
                                 open(port_file).read().strip(), 20, "the proxy's port"))

    def watcher(self):
        while not self.stopping.is_set():
            with self.lock:
                p = self.proc
            rc = p.p.poll()
            if rc is None:
                self.stopping.wait(0.05)
                continue
            if rc == 3 and not self.stopping.is_set():
                # the test killed it mid-operation: stay down a moment, then come back
                self.stopping.wait(0.5)
                with self.lock:
                    if self.stopping.is_set():
                        return
                    self.restarts += 1
                    log("proxy exited as asked; restart #%d on port %d" % (self.restarts,
                                                                          self.port))
                    try:
                        self.start()
                    except Exception as e:  # keep watching; the test will fail clearly
                        log("proxy restart failed: %s" % e)
                        return
            else:
                log("proxy exited with status %s" % rc)
                return

    def stop(self):
        self.stopping.set()
        with self.lock:
            if self.proc:
                self.proc.stop()


# Names the test certificates are good for: the loopback address, and
# s3.localhost with every name under it (virtual-hosted buckets: libcurl
# resolves any *.localhost name to the loopback address by itself, no DNS).
TLS_DNS_DOMAIN = "s3.localhost"


def _openssl(argv, what):
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    if r.returncode != 0:
        log("no TLS test: openssl %s failed: %s" % (what, r.stderr.strip()[-300:]))
        return False
    return True


def make_ca(tmp, name):
    """A private CA (certificate, key) in tmp, or None without openssl."""
    openssl = shutil.which("openssl")
    if not openssl:
        return None
    cert, key = os.path.join(tmp, name + ".pem"), os.path.join(tmp, name + "-key.pem")
    if not _openssl([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                     "-days", "2", "-subj", "/CN=GlideFS test CA %s" % name,
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "req (CA)"):
        return None
    return cert, key


def make_cert(tmp):
    """A server certificate signed by a private CA made for it: (cert, key,
    ca) in tmp, or None without openssl. Good for 127.0.0.1, TLS_DNS_DOMAIN
    and *.TLS_DNS_DOMAIN; not for "localhost" (a test's wrong host name)."""
    openssl = shutil.which("openssl")
    ca = make_ca(tmp, "tls-ca")
    if not openssl or not ca:
        return None
    cert, key = os.path.join(tmp, "tls-cert.pem"), os.path.join(tmp, "tls-key.pem")
    csr, ext = os.path.join(tmp, "tls.csr"), os.path.join(tmp, "tls.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:%s,DNS:*.%s\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n" % (TLS_DNS_DOMAIN, TLS_DNS_DOMAIN))
    if not _openssl([openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
                    "req (server)"):
        return None
    if not _openssl([openssl, "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                     "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
                    "x509 (sign)"):
        return None
    return cert, key, ca[0]


def aws_check(check_file, endpoint, tmp):
    """Verify with awscli that the objects listed in check_file exist with the
    recorded size and sha256. Lines: full-key TAB size TAB sha256."""
    aws = "/usr/bin/aws"
    if not os.access(aws, os.X_OK):
        log("awscli not installed: skipping the awscli check")
        return 0
    try:
        with open(check_file, encoding="utf-8") as f:
            want = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        log("FAIL: the test wrote no %s" % check_file)
        return 1
    if not want:
        log("FAIL: empty check file")
        return 1
    cfg = os.path.join(tmp, "aws.cfg")
    with open(cfg, "w") as f:
        f.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = clean_env(AWS_CONFIG_FILE=cfg, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_ACCESS_KEY_ID=CREDS[0], AWS_SECRET_ACCESS_KEY=CREDS[1],
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_SESSION_TOKEN", None)
    prefix = os.path.commonprefix([w[0] for w in want])
    prefix = prefix[: prefix.rfind("/") + 1]
    r = subprocess.run([aws, "--endpoint-url", endpoint, "s3api", "list-objects-v2",
                        "--bucket", BUCKET, "--prefix", prefix, "--output", "json"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    if r.returncode != 0:
        log("FAIL: aws s3api list-objects-v2: %s" % r.stderr.strip())
        return 1
    listed = {o["Key"]: o["Size"] for o in json.loads(r.stdout or "{}").get("Contents", [])}
    bad = 0
    for key, size, sha in want:
        if listed.get(key) != int(size):
            log("FAIL: list-objects-v2 shows %r with size %r, want %s" % (key, listed.get(key),
                                                                         size))
            bad += 1
            continue
        out = os.path.join(tmp, "aws-get.bin")
        r = subprocess.run([aws, "--endpoint-url", endpoint, "s3api", "get-object",
                            "--bucket", BUCKET, "--key", key, out],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60)
        if r.returncode != 0:
            log("FAIL: aws s3api get-object %r: %s" % (key, r.stderr.strip()))
            bad += 1
            continue
        with open(out, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != sha:
            log("FAIL: get-object %r: sha256 %s, want %s" % (key, got, sha))
            bad += 1
    if not bad:
        print("awscli check: %d object(s) listed and read back with matching size and sha256"
              % len(want), flush=True)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True, help="where s3rver is installed (build dir)")
    ap.add_argument("--require", action="store_true", help="fail instead of skip without node")
    ap.add_argument("--aws-check", action="store_true")
    ap.add_argument("--credserver", action="store_true",
                    help="also run tests/s3/credserver.py (CRED_ENDPOINT)")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no test program")

    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        msg = "node/npm not found: cannot run s3rver"
        if a.require:
            log("FAIL: " + msg)
            return 1
        log("SKIP: " + msg)
        return SKIP
    try:
        s3rver_js = install_s3rver(os.path.abspath(a.cache))
    except Exception as e:
        if a.require:
            log("FAIL: %s" % e)
            return 1
        log("SKIP: %s" % e)
        return SKIP

    tmp = tempfile.mkdtemp(prefix="glidefs-s3-")
    s3rver = proxy = tls_proxy = creds = None
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        out_path = os.path.join(tmp, "s3rver.out")
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        with open(out_path, "w") as out:
            s3rver = Proc([node, s3rver_js, "-d", data, "-a", "127.0.0.1", "-p", "0", "--silent",
                           "--configure-bucket", BUCKET], env=env, stdout=out)

        def s3rver_port():
            if s3rver.p.poll() is not None:
                raise RuntimeError("s3rver exited: %s" % open(out_path).read()[-2000:])
            for line in open(out_path):
                if "listening on" in line:
                    return int(line.rsplit(":", 1)[1])
            return None
        up_port = wait_for(s3rver_port, 30, "s3rver to listen")
        proxy = ProxyKeeper(tmp, up_port)
        endpoint = "http://127.0.0.1:%d" % proxy.port
        wait_for(lambda: http_ok(endpoint + "/__proxy__/health"), 20, "the proxy to answer")
        check_file = os.path.join(tmp, "awscheck.tsv")
        tenv = clean_env(S3_ENDPOINT=endpoint, S3_BUCKET=BUCKET,
                         S3_UPSTREAM="http://127.0.0.1:%d" % up_port, S3_CHECK_FILE=check_file,
                         S3_PROXY_LOG=proxy.log_path)
        cert = make_cert(tmp)
        if cert:
            tls_proxy = ProxyKeeper(tmp, up_port, name="tls-proxy", tls=cert[:2])
            tenv["S3_TLS_ENDPOINT"] = "https://127.0.0.1:%d" % tls_proxy.port
            tenv["S3_TLS_CA"] = cert[2]
            wrong = make_ca(tmp, "wrong-ca")
            if wrong:
                tenv["S3_TLS_WRONG_CA"] = wrong[0]
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            tenv.pop(k, None)
        if a.credserver:
            port_file = os.path.join(tmp, "credserver.port")
            cred_log = os.path.join(tmp, "credserver.log")
            ecs_token, web_token = "ecs-test-authorization-token", "eyJ0ZXN0IjoxfQ.web.token"
            role = "arn:aws:iam::123456789012:role/glidefs-test-role"
            creds = Proc([sys.executable, os.path.join(HERE, "credserver.py"), "--proxy",
                          endpoint, "--port-file", port_file, "--log", cred_log,
                          "--ecs-token", ecs_token, "--web-token", web_token,
                          "--role-arn", role])
            cport = int(wait_for(lambda: os.path.exists(port_file) and
                                 open(port_file).read().strip(), 20, "the credential server"))
            tenv.update(CRED_ENDPOINT="http://127.0.0.1:%d" % cport, CRED_LOG=cred_log,
                        CRED_ECS_TOKEN=ecs_token, CRED_WEB_TOKEN=web_token,
                        CRED_ROLE_ARN=role)
        log("s3rver on 127.0.0.1:%d, proxy on 127.0.0.1:%d, data in %s" % (up_port, proxy.port,
                                                                           tmp))
        try:
            rc = subprocess.run(cmd, env=tenv, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            log("FAIL: test timed out after %.0f s" % a.timeout)
            rc = 1
        if rc == 0 and a.aws_check:
            rc = aws_check(check_file, endpoint, tmp)
        if rc != 0:
            try:
                with open(proxy.log_path) as f:
                    tail = f.readlines()[-40:]
                log("last proxy log lines:\n" + "".join(tail))
            except OSError:
                pass
        return rc
    except Exception as e:
        log("FAIL: %s" % e)
        return 1
    finally:
        if creds:
            creds.stop()
        if tls_proxy:
            tls_proxy.stop()
        if proxy:
            proxy.stop()
        if s3rver:
            s3rver.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
