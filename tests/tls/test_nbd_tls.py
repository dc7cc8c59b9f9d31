#!/usr/bin/python3
"""test_nbd_tls.py - NBD over TLS (issue 26): NBD_OPT_STARTTLS with X.509
certificates and pre-shared keys, against glidefsd on TCP loopback, with
the clients users have: libnbd (python), nbdinfo, nbdcopy, qemu-img and
qemu-io. Certificates are made at test time (tlscerts.py).

servers.nbd.tls: require, tls_certificates (ca-cert.pem present: client
certificates required) and tls_psk_file:
  - libnbd with a client certificate and with PSK: write, read, flush,
    trim, zero, block status; nbdinfo says "with TLS"; nbdcopy in and out;
    qemu-io with tls-creds-x509 and tls-creds-psk, qemu-img info;
  - a plaintext client gets NBD_REP_ERR_TLS_REQD (raw bytes) and libnbd
    without TLS fails; the log names the peer;
  - a wrong PSK, a client certificate from another CA, an expired client
    certificate and a client that does not trust the server certificate
    are refused, each with a log line naming the peer and the reason;
  - SIGHUP with the certificate directory replaced (a new CA): the
    connected client keeps reading and writing, a new connection sees the
    new certificate (refused with the old CA, served with the new); a
    broken directory at the next SIGHUP keeps the credentials in use.
servers.nbd.tls: on (PSK only): plaintext and TLS both served.
Start-up: tls on without credentials is refused; a non-loopback
servers.nbd.tcp is accepted with tls: require (192.0.2.1: fails only at
bind).

usage: test_nbd_tls.py GLIDEFSD
"""
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nbd"))
sys.path.insert(0, HERE)
import nbdtest  # noqa: E402
import tlscerts  # noqa: E402

t = nbdtest.Checker()
MiB = 1 << 20


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (n // 256) + bytes(n % 256)


def handle(port, certs=None, psk=None, user="alice", tls=True):
    import nbd
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.set_export_name("vm")
    if tls:
        h.set_tls(nbd.TLS_REQUIRE)
        if certs:
            h.set_tls_certificates(certs)
        if psk:
            h.set_tls_psk_file(psk)
            h.set_tls_username(user)
    else:
        h.set_tls(nbd.TLS_DISABLE)
    h.connect_tcp("127.0.0.1", str(port))
    return h


def status_at(h, offset, length=4096):
    import nbd
    out = []

    def cb(ctx, off, entries, err):
        if ctx == "base:allocation":
            out.extend(zip(entries[0::2], entries[1::2]))
        return 0
    h.block_status(length, offset, cb, nbd.CMD_FLAG_REQ_ONE)
    return out[0][1] if out else None


def exercise(h, what, base):
    """Write, read, flush, trim, zero, block status through h."""
    data = pattern(256 * 1024, base & 0xFF)
    h.pwrite(data, base)
    t.eq(h.pread(len(data), base) == data, True, f"{what}: 256 KiB written and read back")
    h.flush()
    t.eq(status_at(h, base), 0, f"{what}: block status of written data says data")
    h.trim(128 * 1024, base)
    t.eq(h.pread(4096, base), bytes(4096), f"{what}: trimmed range reads zero")
    t.eq(status_at(h, base) & 1, 1, f"{what}: block status of a trimmed range says hole")
    h.zero(4096, base + 128 * 1024)
    t.eq(h.pread(4096, base + 128 * 1024), bytes(4096), f"{what}: zeroed range reads zero")
    t.eq(h.pread(4096, base + 132 * 1024), data[132 * 1024:136 * 1024],
         f"{what}: data after the zeroed range intact")
    t.ok(h.get_size() == 64 * MiB, f"{what}: export size over TLS")
    # 4 KiB requests 64 in flight: corked replies gathered into records,
    # the writer thread when the socket is full, pipelined request headers
    blocks = 512
    area = base + 1 * MiB
    bufs = [nbd_buffer(pattern(4096, i)) for i in range(blocks)]
    qd(h, [(lambda i=i: h.aio_pwrite(bufs[i], area + i * 4096)) for i in range(blocks)])
    reads = [None] * blocks

    def rd(i):
        import nbd
        reads[i] = nbd.Buffer(4096)
        return h.aio_pread(reads[i], area + i * 4096)
    qd(h, [(lambda i=i: rd(i)) for i in range(blocks)])
    bad = [i for i in range(blocks) if reads[i].to_bytearray() != pattern(4096, i)]
    t.eq(bad[:5], [], f"{what}: {blocks} 4 KiB writes and reads at queue depth 64")
    big = pattern(3 * MiB + 512, 5)
    h.pwrite(big, base + 2 * MiB)
    t.ok(h.pread(len(big), base + 2 * MiB) == big, f"{what}: a 3 MiB write and read")
    # 32 MiB: more than the socket buffers hold, so the reply path runs out
    # of room mid-record and the writer thread finishes it
    huge = os.urandom(32 * MiB)
    h.pwrite(huge, 32 * MiB)
    t.ok(h.pread(len(huge), 32 * MiB) == huge, f"{what}: a 32 MiB write and read")


def nbd_buffer(data):
    import nbd
    return nbd.Buffer.from_bytearray(bytearray(data))


def qd(h, starts, depth=64):
    """Run the aio calls in starts with up to depth in flight."""
    pending = []
    for st in starts:
        while len(pending) >= depth:
            h.poll(-1)
            pending = [c for c in pending if not h.aio_command_completed(c)]
        pending.append(st())
    while pending:
        h.poll(-1)
        pending = [c for c in pending if not h.aio_command_completed(c)]


def refused(fn):
    try:
        h = fn()
    except Exception as e:
        print(f"  (refused: {e})")
        return True
    h.shutdown()
    return False


def log_lines_after(d, mark, *needles):
    """Lines logged after byte offset mark containing every needle."""
    return [ln for ln in d.log_text()[mark:].splitlines() if all(n in ln for n in needles)]


def wait_log(d, mark, *needles):
    return nbdtest.wait_for(lambda: log_lines_after(d, mark, *needles), 10,
                            f"log line with {needles}")


def raw_list_reply(port):
    """Plaintext: greeting, client flags, NBD_OPT_LIST; the reply type."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        nbdtest.recv_exact(s, 18)
        s.sendall(struct.pack(">I", 3))
        nbdtest.raw_option(s, 3)
        _, rtype, _ = nbdtest.raw_option_reply(s)
        nbdtest.raw_option(s, 2)  # ABORT, answered even before TLS
        _, artype, _ = nbdtest.raw_option_reply(s)
        return rtype, artype


def run_env():
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    return env


def test_require(certs):
    port = nbdtest.free_tcp_port()
    srv = os.path.join(certs, "server_live")
    shutil.copytree(os.path.join(certs, "server"), srv)
    nbd_extra = {"tls": "require", "tls_certificates": srv,
                 "tls_psk_file": os.path.join(certs, "keys.psk")}
    with nbdtest.Daemon(tcp=f'"127.0.0.1:{port}"', nbd_extra=nbd_extra,
                        log_level="info") as d:
        d.start()
        cli = os.path.join(certs, "client")
        psk = os.path.join(certs, "keys.psk")

        h = handle(port, certs=cli)
        exercise(h, "libnbd X.509", 0)
        h.shutdown()
        h = handle(port, psk=psk)
        exercise(h, "libnbd PSK", 4 * MiB)
        h.shutdown()

        uri = f"nbds://127.0.0.1:{port}/vm?tls-certificates={cli}"
        r = nbdtest.run(["nbdinfo", uri])
        t.ok("with TLS" in r.stdout and "67108864" in r.stdout, "nbdinfo over TLS")
        r = nbdtest.run(["nbdinfo", f"nbds://alice@127.0.0.1:{port}/vm?tls-psk-file={psk}"])
        t.ok("with TLS" in r.stdout, "nbdinfo over TLS with PSK")

        src = os.path.join(d.base, "in.bin")
        out = os.path.join(d.base, "out.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(4 * MiB))
        nbdtest.run(["nbdcopy", src, uri])
        nbdtest.run(["nbdcopy", "--", uri, out])
        with open(src, "rb") as a, open(out, "rb") as b:
            t.ok(b.read(4 * MiB) == a.read(), "nbdcopy in and out over TLS: same bytes")

        x509 = f"tls-creds-x509,id=tls0,dir={cli},endpoint=client"
        qpsk = f"tls-creds-psk,id=tls0,dir={os.path.join(certs, 'qemu_psk')}," \
               "username=alice,endpoint=client"
        opts = f"driver=nbd,host=127.0.0.1,port={port},export=vm,tls-creds=tls0"
        r = nbdtest.run(["qemu-img", "info", "--object", x509, "--image-opts", opts])
        t.ok("67108864" in r.stdout, "qemu-img info with tls-creds-x509")
        for what, obj, off in [("tls-creds-x509", x509, 8 * MiB), ("tls-creds-psk", qpsk, 9 * MiB)]:
            r = nbdtest.run(["qemu-io", "--object", obj, "--image-opts", opts,
                             "-c", f"write -P 0x5a {off} 65536", "-c", "flush",
                             "-c", f"discard {off} 4096", "-c", f"read -P 0 {off} 4096",
                             "-c", f"read -P 0x5a {off + 4096} 61440"], check=False)
            t.ok(r.returncode == 0 and "Pattern verification failed" not in r.stdout,
                 f"qemu-io with {what}: write, flush, discard, read\n{r.stdout}{r.stderr}")

        # plaintext under require
        mark = len(d.log_text())
        rtype, artype = raw_list_reply(port)
        t.eq(rtype, 0x80000005, "plaintext NBD_OPT_LIST: NBD_REP_ERR_TLS_REQD")
        t.eq(artype, 1, "plaintext NBD_OPT_ABORT still answered with ACK")
        t.ok(refused(lambda: handle(port, tls=False)), "libnbd without TLS is refused")
        t.ok(wait_log(d, mark, "from 127.0.0.1:", "TLS is required"),
             "the refusal is logged with the peer")

        cases = [
            ("a wrong PSK", lambda: handle(port, psk=os.path.join(certs, "wrong.psk")),
             "wrong key"),
            ("an unknown PSK identity", lambda: handle(port, psk=os.path.join(certs, "mallory.psk"),
                                                     user="mallory"),
             'PSK identity "mallory" is not in the PSK file'),
            ("a client certificate from another CA",
             lambda: handle(port, certs=os.path.join(certs, "client_other")),
             "no certificate issued by ca-cert.pem"),
            ("an expired client certificate",
             lambda: handle(port, certs=os.path.join(certs, "client_expired")), "expired"),
            ("a client that does not trust the server certificate",
             lambda: handle(port, certs=os.path.join(certs, "client_untrusting")),
             "does it trust"),
        ]
        for what, fn, why in cases:
            mark = len(d.log_text())
            t.ok(refused(fn), f"{what}: refused")
            try:
                wait_log(d, mark, "from 127.0.0.1:", "TLS handshake failed", why)
                t.ok(True, f"{what}: logged with the peer and '{why}'")
            except TimeoutError:
                t.ok(False, f"{what}: logged with the peer and '{why}':\n"
                     f"{d.log_text()[mark:]}")
        with open(psk) as f:
            key = f.read().split(":")[1].strip()
        t.ok(key[:16] not in d.log_text(), "no PSK key material in the log")

        # rotation with SIGHUP
        old = handle(port, certs=cli)
        keep = pattern(64 * 1024, 99)
        old.pwrite(keep, 16 * MiB)
        for n in ["ca-cert.pem", "server-cert.pem", "server-key.pem"]:
            shutil.copy(os.path.join(certs, "server2", n), os.path.join(srv, n))
        mark = len(d.log_text())
        d.signal(signal.SIGHUP)
        wait_log(d, mark, "credentials reloaded")
        t.ok(refused(lambda: handle(port, certs=cli)),
             "after SIGHUP: a client trusting only the old CA is refused (new certificate)")
        h2 = handle(port, certs=os.path.join(certs, "client2"))
        t.eq(h2.pread(len(keep), 16 * MiB) == keep, True,
             "after SIGHUP: a new connection with the new CA is served")
        t.eq(old.pread(len(keep), 16 * MiB) == keep, True,
             "after SIGHUP: the connected client still reads")
        old.pwrite(pattern(4096, 7), 17 * MiB)
        old.flush()
        t.eq(h2.pread(4096, 17 * MiB) == pattern(4096, 7), True,
             "after SIGHUP: the connected client still writes")
        old.shutdown()
        with open(os.path.join(srv, "server-key.pem"), "w") as f:
            f.write("not a key\n")
        mark = len(d.log_text())
        d.signal(signal.SIGHUP)
        wait_log(d, mark, "not reloaded", "server-key.pem")
        h3 = handle(port, certs=os.path.join(certs, "client2"))
        t.eq(h3.pread(4096, 17 * MiB) == pattern(4096, 7), True,
             "a broken directory at SIGHUP: the credentials in use stay")
        h3.shutdown()
        h2.shutdown()
        t.eq(d.stop(), 0, "require: exits 0")


def test_on(certs):
    port = nbdtest.free_tcp_port()
    psk = os.path.join(certs, "keys.psk")
    with nbdtest.Daemon(tcp=f'"127.0.0.1:{port}"', nbd_extra={"tls": "on", "tls_psk_file": psk},
                        log_level="info") as d:
        d.start()
        h = handle(port, tls=False)
        h.pwrite(b"x" * 4096, 0)
        h.shutdown()
        t.ok(True, "tls: on: a plaintext client is served")
        h = handle(port, psk=psk)
        t.eq(h.pread(4096, 0), b"x" * 4096, "tls: on: a PSK client is served")
        h.shutdown()
        t.eq(d.stop(), 0, "on: exits 0")


def start_result(nbd_extra, tcp=None):
    with nbdtest.Daemon(tcp=tcp, nbd_extra=nbd_extra) as d:
        d.start(wait=False)
        try:
            nbdtest.wait_for(lambda: d.proc.poll() is not None or "ready" in d.log_text(), 20,
                             "glidefsd to exit or serve")
        except TimeoutError:
            pass
        d.kill()
        return d.proc.returncode, d.log_text()


def test_startup(certs):
    rc, log = start_result({"tls": "require"})
    t.ok(rc and "neither servers.nbd.tls_certificates nor servers.nbd.tls_psk_file" in log,
         f"tls: require without credentials: refused at start-up (exit {rc})")
    rc, log = start_result({"tls": "require", "tls_psk_file": os.path.join(certs, "keys.psk")},
                           tcp=f'"192.0.2.1:{nbdtest.free_tcp_port()}"')
    t.ok(rc and "insecure_tcp" not in log and "cannot listen" in log,
         f"a non-loopback tcp address is accepted with tls: require (exit {rc}, at bind)")
    rc, log = start_result({"tls": "on", "tls_psk_file": os.path.join(certs, "keys.psk")},
                           tcp=f'"192.0.2.1:{nbdtest.free_tcp_port()}"')
    t.ok(rc and "servers.nbd.tls: require" in log,
         f"... but not with tls: on (exit {rc})")


def main():
    nbdtest.need("nbdinfo", "nbdcopy", "qemu-img", "qemu-io")
    nbdtest.need_libnbd()
    if not tlscerts.have_tools():
        print("SKIP: certtool/psktool (gnutls-bin) not installed", file=sys.stderr)
        sys.exit(nbdtest.SKIP)
    certs = tempfile.mkdtemp(prefix="glidefs-tls-")
    try:
        tlscerts.make(certs)
        test_startup(certs)
        test_on(certs)
        test_require(certs)
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
