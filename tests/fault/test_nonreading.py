#!/usr/bin/python3
"""test_nonreading.py - NBD clients that never read their replies (issue 21,
item 8).

Before: nine connections that each sent two 32 MiB READs and never read the
replies held the whole 512 MiB buffer budget of all connections, and another
client's 4 KiB write on another export still waited after 30 s (until the
120 s send timeout, which a client reading a byte now and then resets).
Now a connection's first 256 KiB in flight never wait for the global
budget, and a reply the client does not take within
servers.nbd.reply_timeout_ms gets the connection dropped.

Scaled down (buffer_memory 64M, connection_buffer_memory 16M,
reply_timeout_ms 4000): nine raw connections on export "stuck" each send two
8 MiB READs and read nothing (together 144 MiB of replies for a 64 MiB
budget). Then:
  - a client on export "other", connected before, writes 4 KiB, flushes and
    reads it back within 1.5 s; so does a new connection;
  - a 1 MiB read (more than the per-connection reserve, so it needs the
    global budget) completes once the stuck connections are dropped, within
    the deadline + 10 s (a stuck read waited forever before);
  - the log says each of the nine was dropped for not taking its reply, and
    each stuck socket reaches EOF (the server closed it);
  - the daemon stops cleanly.

usage: test_nonreading.py GLIDEFSD
"""
import argparse
import os
import shutil
import socket
import struct
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

MiB = fl.MiB
DEADLINE_MS = 4000
FAILED = []


def check(cond, what):
    print(("ok - " if cond else "FAIL - ") + what, flush=True)
    if not cond:
        FAILED.append(what)
    return cond


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        got = s.recv(n - len(b))
        if not got:
            raise EOFError("server closed during the handshake")
        b += got
    return b


def stuck_client(path, name, reads):
    """Handshake (EXPORT_NAME, no zeroes), then send the READs; read nothing more."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    recv_exact(s, 18)  # greeting
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, len(name)) + name)
    recv_exact(s, 10)  # size and flags
    for i, (off, n) in enumerate(reads):
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, i + 1, off, n))
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    a = ap.parse_args()
    fl.need_libnbd()
    base = tempfile.mkdtemp(prefix="glidefs-nonread-")
    d = fl.Glidefsd(a.glidefsd, base, size="64M",
                    nbd_extra={"buffer_memory": "64M", "connection_buffer_memory": "16M",
                               "reply_timeout_ms": DEADLINE_MS})
    t_start = time.monotonic()
    stuck = []
    try:
        d.start()
        other = d.connect("other")
        other.pwrite(b"\x11" * 4096, 0)
        other.flush()

        rss0 = d.rss_kib()
        t0 = time.monotonic()
        for _ in range(9):
            stuck.append(stuck_client(d.sock, b"stuck", [(0, 8 * MiB), (8 * MiB, 8 * MiB)]))
        # the budget is full once the read buffers are resident: 56 of the 64 MiB at least
        fl.wait_for(lambda: d.rss_kib() - rss0 >= 56 * 1024, 10, "the buffer budget to fill")

        t1 = time.monotonic()
        other.pwrite(b"\x22" * 4096, 4096)
        other.flush()
        ok = other.pread(4096, 4096) == b"\x22" * 4096
        took = time.monotonic() - t1
        check(ok and took <= 1.5, f"4 KiB write, flush, read on another export: {took:.2f} s "
              "(at most 1.5 s) while nine clients read nothing")
        t1 = time.monotonic()
        new = d.connect("other")
        new.pwrite(b"\x33" * 4096, 8192)
        new.flush()
        took = time.monotonic() - t1
        check(took <= 1.5, f"a new connection writes too: {took:.2f} s")
        new.shutdown()

        import nbd
        buf = nbd.Buffer(MiB)
        cookie = other.aio_pread(buf, 0)
        limit = t0 + DEADLINE_MS / 1000 + 10  # slack: ASan on 2 cores took 7.1 s
        while not other.aio_command_completed(cookie) and time.monotonic() < limit:
            other.poll(100)
        took = time.monotonic() - t0
        done = time.monotonic() < limit or other.aio_command_completed(cookie)
        check(done and bytes(buf.to_bytearray()[:4096]) == b"\x11" * 4096,
              f"a 1 MiB read (needs the global budget) done {took:.2f} s after the attack began "
              f"(deadline {DEADLINE_MS / 1000:.0f} s + 10)")
        if not done:
            raise RuntimeError("the 1 MiB read is still waiting: stop here")
        try:
            fl.wait_for(lambda: d.log_text().count("took no reply") >= 9, 10,
                        "nine 'took no reply' lines")
        except TimeoutError:
            pass
        check(d.log_text().count("took no reply") == 9,
              "the log names each of the nine as dropped for not taking its reply "
              f"({d.log_text().count('took no reply')})")
        eof = 0
        for s in stuck:
            s.settimeout(10)
            try:
                while s.recv(1 << 20):
                    pass
                eof += 1
            except OSError:
                eof += 1  # reset: closed too
        check(eof == 9, f"every stuck socket was closed by the server ({eof} of 9)")
        other.shutdown()
        check(d.stop() == 0, "drains and exits 0")
        san = d.sanitizer_reports()
        check(not san, "no sanitizer report in the log" + (": " + san[0] if san else ""))
    finally:
        for s in stuck:
            s.close()
        d.close()
    print("SUMMARY {\"test\": \"nonreading\", \"seconds\": %.1f}" % (time.monotonic() - t_start))
    if FAILED:
        print("--- glidefsd log tail ---\n" + d.log_tail(40))
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
