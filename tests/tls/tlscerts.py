"""tlscerts.py - certificates and pre-shared keys for the tls suite, made
with GnuTLS's certtool and psktool at test time in a temporary directory.

Layout (directories as qemu-nbd, nbdkit and libnbd read them):
  server/      ca-cert.pem (CA1), server-cert.pem (CA1, 127.0.0.1 +
               localhost), server-key.pem   -> servers.nbd.tls_certificates
  server2/     the same names, all from CA2 (the rotation's new set)
  client/      ca-cert.pem (CA1), client-cert.pem / client-key.pem (CA1)
  client2/     ca-cert.pem (CA2), a client certificate from CA2
  client_other/  ca-cert.pem (CA1), client certificate from CA2 (another CA)
  client_expired/  ca-cert.pem (CA1), client certificate from CA1 that expired
  client_untrusting/  ca-cert.pem (CA2) only, client certificate from CA1:
               trusts no certificate our server has
  keys.psk     alice:<key> (psktool), wrong.psk: alice:<another key>,
  mallory.psk  mallory:<key>, an identity the server does not have
  qemu_psk/keys.psk  the same as keys.psk (QEMU's tls-creds-psk wants a dir)
"""
import os
import shutil
import subprocess

CERTTOOL = "/usr/bin/certtool"
PSKTOOL = "/usr/bin/psktool"


def have_tools():
    return os.access(CERTTOOL, os.X_OK) and os.access(PSKTOOL, os.X_OK)


def _run(*args):
    subprocess.run(args, check=True, capture_output=True)


def _template(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _ca(base, name):
    key = os.path.join(base, f"{name}-key.pem")
    cert = os.path.join(base, f"{name}-cert.pem")
    _run(CERTTOOL, "--generate-privkey", "--outfile", key)
    t = _template(os.path.join(base, f"{name}.info"),
                  [f"cn = GlideFS test {name}", "ca", "cert_signing_key", "expiration_days = 30"])
    _run(CERTTOOL, "--generate-self-signed", "--load-privkey", key, "--template", t,
         "--outfile", cert)
    return key, cert


def _leaf(base, ca, key_out, cert_out, lines):
    _run(CERTTOOL, "--generate-privkey", "--outfile", key_out)
    t = _template(cert_out + ".info", lines + ["encryption_key", "signing_key"])
    _run(CERTTOOL, "--generate-certificate", "--load-privkey", key_out,
         "--load-ca-certificate", ca[1], "--load-ca-privkey", ca[0], "--template", t,
         "--outfile", cert_out)
    os.unlink(cert_out + ".info")


SERVER = ["cn = localhost", "dns_name = localhost", "ip_address = 127.0.0.1", "tls_www_server",
          "expiration_days = 30"]
CLIENT = ["cn = glidefs-test-client", "tls_www_client", "expiration_days = 30"]
EXPIRED = ["cn = glidefs-test-client", "tls_www_client",
           'activation_date = "2020-01-01 00:00:00 UTC"',
           'expiration_date = "2020-06-01 00:00:00 UTC"']


def make(base):
    """Make everything under base (a fresh directory); returns base."""
    cas = os.path.join(base, "ca")
    os.makedirs(cas)
    ca1 = _ca(cas, "ca1")
    ca2 = _ca(cas, "ca2")
    d = {n: os.path.join(base, n) for n in
         ["server", "server2", "client", "client2", "client_other", "client_expired",
          "client_untrusting", "qemu_psk"]}
    for p in d.values():
        os.makedirs(p)
    for name, ca in [("server", ca1), ("server2", ca2)]:
        shutil.copy(ca[1], os.path.join(d[name], "ca-cert.pem"))
        _leaf(base, ca, os.path.join(d[name], "server-key.pem"),
              os.path.join(d[name], "server-cert.pem"), SERVER)
    for name, ca_trust, ca_sign, tmpl in [("client", ca1, ca1, CLIENT),
                                          ("client2", ca2, ca2, CLIENT),
                                          ("client_other", ca1, ca2, CLIENT),
                                          ("client_expired", ca1, ca1, EXPIRED),
                                          ("client_untrusting", ca2, ca1, CLIENT)]:
        shutil.copy(ca_trust[1], os.path.join(d[name], "ca-cert.pem"))
        _leaf(base, ca_sign, os.path.join(d[name], "client-key.pem"),
              os.path.join(d[name], "client-cert.pem"), tmpl)
    _run(PSKTOOL, "-u", "alice", "-p", os.path.join(base, "keys.psk"))
    _run(PSKTOOL, "-u", "alice", "-p", os.path.join(base, "wrong.psk"))
    _run(PSKTOOL, "-u", "mallory", "-p", os.path.join(base, "mallory.psk"))
    os.chmod(os.path.join(base, "keys.psk"), 0o600)
    shutil.copy(os.path.join(base, "keys.psk"), os.path.join(d["qemu_psk"], "keys.psk"))
    return base
