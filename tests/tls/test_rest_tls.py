#!/usr/bin/python3
"""test_rest_tls.py - the REST API over HTTPS (servers.api.tls_certificates,
issue 26) and glidefs-ctl verifying its certificate.

  - glidefs-ctl --cacert CA1 (and $GLIDEFS_CACERT) lists exports over
    https:// with the token;
  - without the CA (system CAs only) or with another CA it refuses to talk
    (exit 3, API unreachable) and says why (certificate);
  - plain http:// to the HTTPS port gets no answer from the API;
  - the unix socket stays plain HTTP;
  - certificate rotation with SIGHUP: the directory's files replaced by
    CA2's, SIGHUP; then --cacert CA2 works and --cacert CA1 is refused,
    while a connection opened before keeps working (same socket, CA1's
    certificate); a broken key at the next SIGHUP keeps the last good
    certificate and the log says why, without key material.

usage: test_rest_tls.py GLIDEFSD GLIDEFS_CTL
"""
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rest"))
sys.path.insert(0, HERE)
import resttest  # noqa: E402
import tlscerts  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")
CTL = resttest.arg_path(2, "glidefs-ctl")


def ctl(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("GLIDEFS_")}
    e.update(env or {})
    return subprocess.run([CTL, *args], capture_output=True, text=True, env=e, timeout=60)


def log_after(d, mark, *needles):
    """A log line after offset mark holding every needle, or None."""
    for line in d.log_text()[mark:].splitlines():
        if all(n in line for n in needles):
            return line
    return None


def wait_log(d, mark, *needles):
    return resttest.wait_for(lambda: log_after(d, mark, *needles), 10,
                             f"log line with {needles}")


def healthz(conn):
    conn.request("GET", "/healthz", headers={"Authorization": "Bearer s3cr3t-token"})
    r = conn.getresponse()
    r.read()
    return r.status


def rotation(d, certs, url, tok, ca1, ca2):
    srv = os.path.join(certs, "server")
    ctx = ssl.create_default_context(cafile=ca1)
    old = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    t.eq(healthz(old), 200, "a connection under CA1's certificate")
    sock = old.sock
    for n in ["ca-cert.pem", "server-cert.pem", "server-key.pem"]:
        shutil.copy(os.path.join(certs, "server2", n), os.path.join(srv, n))
    mark = len(d.log_text())
    d.proc.send_signal(signal.SIGHUP)
    wait_log(d, mark, "REST API TLS certificate reloaded")
    r = ctl("--api", url, "--token-file", tok, "--cacert", ca2, "list")
    t.eq(r.returncode, 0, f"after SIGHUP: --cacert CA2 works ({r.stderr})")
    r = ctl("--api", url, "--token-file", tok, "--cacert", ca1, "list")
    t.ok(r.returncode == 3 and "certificate" in r.stderr.lower(),
         f"after SIGHUP: --cacert CA1 is refused ({r.returncode} {r.stderr})")
    t.eq(healthz(old), 200, "after SIGHUP: the connection opened before still works")
    t.ok(old.sock is sock, "... on the same TLS connection (not a reconnect)")
    old.close()

    with open(os.path.join(srv, "server-key.pem")) as f:
        key_line = f.read().splitlines()[1]
    with open(os.path.join(srv, "server-key.pem"), "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    mark = len(d.log_text())
    d.proc.send_signal(signal.SIGHUP)
    line = wait_log(d, mark, "REST API TLS certificate not reloaded", "server-key.pem")
    t.ok(bool(line), f"a broken key at SIGHUP: logged ({line})")
    r = ctl("--api", url, "--token-file", tok, "--cacert", ca2, "list")
    t.eq(r.returncode, 0, f"a broken key at SIGHUP: the last good certificate stays ({r.stderr})")
    r = ctl("--api", url, "--token-file", tok, "--cacert", ca1, "list")
    t.eq(r.returncode, 3, "... and not the one before it")
    t.ok(key_line not in d.log_text(), "no key material in the log")


def main():
    if not tlscerts.have_tools():
        print("SKIP: certtool/psktool (gnutls-bin) not installed", file=sys.stderr)
        sys.exit(77)
    certs = tempfile.mkdtemp(prefix="glidefs-rest-tls-")
    try:
        tlscerts.make(certs)
        ca1 = os.path.join(certs, "client", "ca-cert.pem")
        ca2 = os.path.join(certs, "client2", "ca-cert.pem")
        with resttest.Daemon(GLIDEFSD, token="s3cr3t-token", api_unix=True,
                             extra_api={"tls_certificates": os.path.join(certs, "server")}) as d:
            d.start(wait=False)
            resttest.wait_for(lambda: d.proc.poll() is not None or "ready" in d.log_text(), 20,
                              "glidefsd ready")
            t.ok("REST API listening on https://127.0.0.1" in d.log_text(),
                 "the log says https://")
            url = f"https://127.0.0.1:{d.port}"
            tok = os.path.join(d.base, "token")
            with open(tok, "w") as f:
                f.write("s3cr3t-token\n")
            os.chmod(tok, 0o600)
            r = ctl("--api", url, "--token-file", tok, "--cacert", ca1, "--json", "list")
            t.ok(r.returncode == 0 and r.stdout.strip().startswith(("[", "{")),
                 f"glidefs-ctl --cacert CA: list over HTTPS ({r.returncode} {r.stderr})")
            r = ctl("--api", url, "--token-file", tok, "list", env={"GLIDEFS_CACERT": ca1})
            t.eq(r.returncode, 0, f"$GLIDEFS_CACERT works too ({r.stderr})")
            r = ctl("--api", url, "--token-file", tok, "list")
            t.ok(r.returncode == 3 and "certificate" in r.stderr.lower(),
                 f"without the CA: refused, certificate named ({r.returncode} {r.stderr})")
            r = ctl("--api", url, "--token-file", tok, "--cacert", ca2, "list")
            t.ok(r.returncode == 3 and "certificate" in r.stderr.lower(),
                 f"another CA: refused ({r.returncode} {r.stderr})")
            r = ctl("--api", f"http://127.0.0.1:{d.port}", "--token-file", tok, "list")
            t.ok(r.returncode != 0, f"plain http to the HTTPS port: no answer ({r.returncode})")
            r = ctl("--api", f"unix:{d.api_sock}", "--token-file", tok, "list")
            t.eq(r.returncode, 0, f"the unix socket stays plain HTTP ({r.stderr})")
            rotation(d, certs, url, tok, ca1, ca2)
            t.eq(d.stop(), 0, "exits 0")
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
