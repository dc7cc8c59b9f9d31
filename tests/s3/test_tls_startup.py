#!/usr/bin/python3
"""test_tls_startup.py - glidefsd on an https store whose certificate comes
from a private CA: S3_TLS_ENDPOINT and S3_TLS_CA (tests/s3/s3env.py serves
the proxy over https; tests/rgw/rgwenv.py gives radosgw's own https).

 1. without the CA, with another CA (S3_TLS_WRONG_CA), and with the right
    CA but a host name the certificate does not carry (localhost): glidefsd
    exits 1 at start-up, and its log has a line that says the certificate
    is the problem and what to set (storage.ca_bundle);
 2. with storage.ca_bundle: it serves; a volume is written through NBD,
    drained by SIGTERM, and read back by a second daemon on an empty cache
    that takes the CA from AWS_CA_BUNDLE instead;
 3. tls_verify: false starts without the CA, and says in the log that
    verification is off.
usage: test_tls_startup.py GLIDEFSD --s3-cache DIR   (skips, 77, without S3)
"""
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fault"))
import faultlib as fl  # noqa: E402

MiB = 1 << 20


def main():
    a = fl.s3_only_test(timeout=240)
    if a is None:
        return fl.SKIP
    ep, ca = os.environ.get("S3_TLS_ENDPOINT"), os.environ.get("S3_TLS_CA")
    if not ep or not ca:
        print("SKIP: no https endpoint (openssl missing?)", file=sys.stderr)
        return fl.SKIP
    wrong = os.environ.get("S3_TLS_WRONG_CA")
    port = ep.rsplit(":", 1)[1]
    base = tempfile.mkdtemp(prefix="glidefs-tls-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    prefix = "tls-%d" % os.getpid()
    daemons = []

    def daemon(name, storage, env=None):
        d = fl.Glidefsd(os.path.abspath(a.glidefsd), base, name, prefix=prefix, size="8M",
                        storage_extra=dict(storage), env=env)
        daemons.append(d)
        return d

    env_no_ca = {"AWS_CA_BUNDLE": ""}
    try:
        refused = [("no CA file", {"endpoint": ep}, "certificate"),
                   ("localhost, not a name of the certificate",
                    {"endpoint": "https://localhost:%s" % port, "ca_bundle": ca}, "localhost")]
        if wrong:
            refused.insert(1, ("another CA", {"endpoint": ep, "ca_bundle": wrong},
                               "certificate"))
        for i, (what, storage, word) in enumerate(refused):
            d = daemon("refused%d" % i, storage, env=env_no_ca)
            d.start(wait=False)
            try:
                rc = d.proc.wait(timeout=60)
            except Exception:
                rc = None
            text = d.log_text()
            lines = [ln for ln in text.splitlines() if "ca_bundle" in ln and word in ln]
            check(rc == 1, "%s: glidefsd exits 1 at start-up (status %s)" % (what, rc))
            check(bool(lines), "%s: a log line names the certificate problem and "
                  "storage.ca_bundle" % what)
            if lines:
                print("  " + lines[0].strip()[:400], flush=True)
            d.close()

        # the right CA: serve, write, drain on SIGTERM
        d1 = daemon("writer", {"endpoint": ep, "ca_bundle": ca}, env=env_no_ca)
        d1.start()
        h = d1.connect("vm")
        data = bytes(range(256)) * (MiB // 256)
        h.pwrite(data, MiB)
        h.flush()
        h.shutdown()
        check(d1.stop() == 0, "glidefsd on https with storage.ca_bundle drains and exits 0")
        # a second daemon on an empty cache, the CA from AWS_CA_BUNDLE
        d2 = daemon("reader", {"endpoint": ep}, env={"AWS_CA_BUNDLE": ca})
        d2.start()
        h = d2.connect("vm")
        check(h.pread(MiB, MiB) == data, "a second daemon (CA from AWS_CA_BUNDLE, empty cache) "
              "reads the volume back")
        h.shutdown()
        d2.stop()
        text = d2.log_text()
        check("CA file %s" % ca in text, "the store line names the CA file")

        d3 = daemon("noverify", {"endpoint": ep, "tls_verify": "false"}, env=env_no_ca)
        d3.start()
        check("TLS certificate verification is off" in d3.log_text(),
              "tls_verify: false starts, and says verification is off")
        d3.stop()
        for d in daemons:
            reports = d.sanitizer_reports()
            check(not reports, "%s: no sanitizer reports" % d.name)
    finally:
        for d in daemons:
            d.close()
        if not failed:
            shutil.rmtree(base, ignore_errors=True)
    if failed:
        print("FAILED: %d check(s); logs in %s" % (len(failed), base), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
