#!/usr/bin/python3
"""test_hostile.py - hostile byte streams against a running glidefsd, over
raw sockets: each is either answered with the right error (and the session
goes on) or dropped cleanly, and all the while a well-behaved connection
keeps working and the daemon keeps serving. Also: pipelined requests are
answered out of order (a slow request does not hold up a fast one).

usage: test_hostile.py GLIDEFSD
"""
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402
from nbdtest import raw_connect, raw_go, raw_option, raw_option_reply, raw_request, \
    raw_simple_reply  # noqa: E402

t = nbdtest.Checker()
MiB = 1024 * 1024
SIZE = 64 * MiB
EINVAL, ENOSPC = 22, 28
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZERO = 0, 1, 2, 3, 4, 5, 6


def closed_by_server(s, timeout=10.0):
    """True when the server closes the connection (EOF or reset)."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def handshake_only(d, payload, half_close=False):
    s, _ = raw_connect(d.sock)
    try:
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass
    return s


def opt(o, data=b""):
    return struct.pack(">QII", nbdtest.IHAVEOPT, o, len(data)) + data


def go_data(name):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", 0)


DROPS = [
    ("HTTP request instead of NBD", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("unknown client flags", struct.pack(">I", 0x80000000)),
    ("bad option magic", struct.pack(">I", 1) + b"NOTMAGIC" + struct.pack(">II", 3, 0)),
    ("EXPORT_NAME path traversal", struct.pack(">I", 1) + opt(1, b"../../etc/passwd")),
    ("EXPORT_NAME with NUL", struct.pack(">I", 1) + opt(1, b"vm\x00rm -rf")),
    ("EXPORT_NAME 5000 bytes", struct.pack(">I", 1) + opt(1, b"a" * 5000)),
    ("option flood", struct.pack(">I", 1) + opt(8) * 300),
    ("short option then close", struct.pack(">I", 1) + struct.pack(">QII", nbdtest.IHAVEOPT, 7, 100) + b"ab"),
]

TRANSMISSION_DROPS = [
    ("request bad magic", b"\x25\x60\x95\x14" + bytes(24)),
    ("WRITE of 4 GiB", raw_request(WRITE, 0, 0xFFFFFFFF, 1)),
    ("WRITE over 32 MiB", raw_request(WRITE, 0, 32 * MiB + 512, 1)),
    ("short request header then close", raw_request(READ, 0, 512, 1)[:10]),
    ("WRITE with short payload then close", raw_request(WRITE, 0, 4096, 1) + b"abc"),
]


def good_client_loop(d, stop, errors):
    """A well-behaved client writing and verifying while the attacks run."""
    try:
        s, size, _ = raw_go(d.sock, "good")
        i = 0
        while not stop.is_set():
            off = (i % 64) * 4096
            data = bytes([(i * 31) & 0xFF]) * 4096
            s.sendall(raw_request(WRITE, off, 4096, i * 2, payload=data))
            err, _, _ = raw_simple_reply(s)
            s.sendall(raw_request(READ, off, 4096, i * 2 + 1))
            err2, _, got = raw_simple_reply(s, 4096)
            if err or err2 or got != data:
                errors.append(f"iteration {i}: {err} {err2} match={got == data}")
                return
            i += 1
        s.sendall(raw_request(DISC, 0, 0, 0))
        s.close()
        errors.append(f"ok:{i}")
    except Exception as e:  # noqa: BLE001
        errors.append(f"good client failed: {e!r}")


def main():
    with nbdtest.Daemon(log_level="info") as d:
        d.start()
        stop = threading.Event()
        good = []
        th = threading.Thread(target=good_client_loop, args=(d, stop, good))
        th.start()

        for name, payload in DROPS:
            s = handshake_only(d, payload, "then close" in name)
            t.ok(closed_by_server(s), f"dropped: {name}")
        for name, payload in TRANSMISSION_DROPS:
            s, size, _ = raw_go(d.sock, "vm")
            try:
                s.sendall(payload)
                if "then close" in name:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
            t.ok(closed_by_server(s), f"dropped: {name}")

        # Errors that keep the session going.
        s, size, tflags = raw_go(d.sock, "vm")
        t.eq(size, SIZE, "GO over a raw socket")
        s.sendall(raw_request(0x99, 0, 512, 10))
        t.eq(raw_simple_reply(s)[:2], (EINVAL, 10), "unknown command: EINVAL")
        s.sendall(raw_request(WRITE, SIZE, 512, 11, payload=b"\xee" * 512))
        t.eq(raw_simple_reply(s)[:2], (ENOSPC, 11), "write past the end: ENOSPC, payload skipped")
        s.sendall(raw_request(READ, 0, 512, 12, flags=0x4000))
        t.eq(raw_simple_reply(s, 512)[:2], (EINVAL, 12), "unknown flag: EINVAL, no payload")
        s.sendall(raw_request(FLUSH, 512, 0, 13))
        t.eq(raw_simple_reply(s)[:2], (EINVAL, 13), "FLUSH with an offset: EINVAL")
        s.sendall(raw_request(7, 0, 512, 14))
        t.eq(raw_simple_reply(s)[:2], (EINVAL, 14), "BLOCK_STATUS without a context: EINVAL")
        s.sendall(raw_request(READ, 0, 512, 15))
        err, cookie, data = raw_simple_reply(s, 512)
        t.ok(err == 0 and cookie == 15 and len(data) == 512, "session goes on after errors")

        # Options with error replies keep the haggling going.
        s2, _ = raw_connect(d.sock)
        s2.sendall(struct.pack(">I", 3))
        for o, data, want in ((5, b"", 0x80000001), (11, b"", 0x80000001),
                              (0xDEAD, b"junk", 0x80000001), (3, b"x", 0x80000003),
                              (7, go_data("a/b"), 0x80000006), (7, go_data(""), 0x80000006),
                              (7, struct.pack(">I", 0xFFFFFFFF) + b"zz", 0x80000003),
                              (10, go_data("vm") + bytes(2), 0x80000003)):
            raw_option(s2, o, data)
            _, rtype, _ = raw_option_reply(s2)
            t.eq(rtype, want, f"option {o:#x}: reply {want:#x}")
        raw_option(s2, 2)
        _, rtype, _ = raw_option_reply(s2)
        t.eq(rtype, 1, "ABORT acknowledged after errors")
        s2.close()

        # Pipelining: a slow request (64 MiB NO_HOLE zero, written for real)
        # does not hold up a fast read sent right after it.
        overtaken = 0
        for attempt in range(3):
            s.sendall(raw_request(ZERO, 0, SIZE, 100, flags=2) + raw_request(READ, 0, 4096, 101))
            first = raw_simple_reply(s, 0)
            if first[1] == 101:
                recv = nbdtest.recv_exact(s, 4096)  # noqa: F841
                second = raw_simple_reply(s)
                overtaken += 1
            else:
                second = raw_simple_reply(s, 4096)
            t.ok(first[0] == 0 and second[0] == 0, f"pipelined pair {attempt} succeeded")
            if overtaken:
                break
        t.ok(overtaken > 0, "a fast read overtook a slow zero (out-of-order replies)")
        s.sendall(raw_request(DISC, 0, 0, 0))
        t.ok(closed_by_server(s), "DISC closes the connection")

        # Many hostile connections at once.
        socks = []
        for i in range(40):
            name, payload = DROPS[i % len(DROPS)]
            socks.append(handshake_only(d, payload, "then close" in name))
        t.ok(all(closed_by_server(x) for x in socks), "40 concurrent hostile connections dropped")

        stop.set()
        th.join(60)
        t.ok(good and good[-1].startswith("ok:"), f"well-behaved client unaffected ({good})")
        t.ok(not any(os.path.exists(os.path.join(d.cache, n)) for n in ("etc", "passwd", "a")),
             "nothing created for refused names")
        t.eq(d.stop(), 0, "daemon still healthy: clean exit 0")
    t.done()


if __name__ == "__main__":
    main()
