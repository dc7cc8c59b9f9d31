#!/usr/bin/python3
"""test_tcp_policy.py - NBD on a non-loopback TCP address needs an explicit
servers.nbd.insecure_tcp (issue 21, item 10).

NBD has no authentication and (yet) no TLS: a listener anyone on the
network reaches lets them read and write every volume. Before, a config
with servers.nbd.tcp: 0.0.0.0:PORT started silently. Now:

  - 0.0.0.0:PORT and [::]:PORT: glidefsd exits non-zero at start-up with one
    error naming servers.nbd.tcp and servers.nbd.insecure_tcp, and listens
    on nothing (not even its unix socket);
  - with insecure_tcp: true the refusal is gone (checked on 192.0.2.1, a
    documentation address this machine does not have: the start fails only
    at bind(), so nothing is ever exposed by the test);
  - loopback (127.0.0.1, localhost, ::1 forms) needs nothing and serves.

usage: test_tcp_policy.py GLIDEFSD
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

t = nbdtest.Checker()


def start_fails(tcp, nbd_extra=None):
    """Start glidefsd with servers.nbd.tcp = tcp; return (exit status, log)."""
    with nbdtest.Daemon(tcp=tcp, nbd_extra=nbd_extra) as d:
        d.start(wait=False)
        try:  # a refusal comes at once; one that serves is stopped soon
            nbdtest.wait_for(lambda: d.proc.poll() is not None or "ready" in d.log_text(), 20,
                             "glidefsd to exit or serve")
        except TimeoutError:
            pass
        sock = os.path.exists(d.sock)
        d.kill()
        return d.proc.returncode, d.log_text(), sock


def main():
    for tcp in [f'"0.0.0.0:{nbdtest.free_tcp_port()}"', f'"[::]:{nbdtest.free_tcp_port()}"']:
        rc, log, sock = start_fails(tcp)
        t.ok(rc is not None and rc > 0 and "ready" not in log,
             f"tcp {tcp}: refused at start-up (exit {rc})")
        t.ok("servers.nbd.tcp" in log and "servers.nbd.insecure_tcp" in log and
             "loopback" in log, f"tcp {tcp}: the error names the key and the way out")
        t.ok(not sock, f"tcp {tcp}: nothing listening (no unix socket either)")

    port = nbdtest.free_tcp_port()
    rc, log, _ = start_fails(f'"192.0.2.1:{port}"', {"insecure_tcp": "true"})
    t.ok(rc is not None and rc > 0 and "insecure_tcp" not in log and "cannot listen" in log,
         f"insecure_tcp: true lifts the refusal (192.0.2.1 then fails only at bind; exit {rc})")

    for tcp in [f'"localhost:{nbdtest.free_tcp_port()}"', f'"127.0.0.1:{nbdtest.free_tcp_port()}"']:
        with nbdtest.Daemon(tcp=tcp) as d:
            d.start()
            host, port = tcp.strip('"').rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as s:
                t.eq(s.recv(8), b"NBDMAGIC", f"tcp {tcp}: loopback serves without the option")
            t.eq(d.stop(), 0, f"tcp {tcp}: exits 0")
    t.done()


if __name__ == "__main__":
    main()
