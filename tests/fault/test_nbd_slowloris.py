#!/usr/bin/python3
"""test_nbd_slowloris.py - NBD clients that never finish their handshake
(issue 21, item 6).

Before: the handshake timeout applied to each recv(), so a client sending a
byte every 45 s kept its slot for ever; 1,024 of them (the connection cap)
locked every real client out. Now the whole handshake has a deadline
(servers.nbd.handshake_timeout_ms, 1.5 s here), at most a quarter of the
cap may be in the handshake, and a newcomer that finds the cap or that
quarter full cuts the oldest unfinished handshake short.

Two rounds on the unix socket, servers.nbd.max_connections 64 (so at most
16 handshakes), each trickler reading the greeting and then sending a valid
handshake one byte every 0.3 s (never slow enough for a per-recv timeout):
  1. 12 tricklers (under every limit): each is closed by the server at its
     deadline (not before 1.3 s, not after 2.5 s);
  2. 100 tricklers, reopened five times a second when dropped: a real
     client (libnbd: connect, write, flush, read back, disconnect) gets in
     and is served within 2 s every 0.5 s, and a client connected before
     the attack keeps working (transmission is never cut short); no
     trickler lives past its deadline + 1 s.
Afterwards the daemon's descriptors are back near where they started.

usage: test_nbd_slowloris.py GLIDEFSD
"""
import argparse
import os
import select
import socket
import struct
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

HS_MS = 1500
FAILED = []


def check(cond, what):
    print(("ok - " if cond else "FAIL - ") + what, flush=True)
    if not cond:
        FAILED.append(what)
    return cond


# A whole, valid handshake (fixed newstyle, NBD_OPT_GO "good"): what a real
# client would send, only very slowly.
NAME = b"good"
HANDSHAKE = (struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 7, 4 + len(NAME) + 2)
             + struct.pack(">I", len(NAME)) + NAME + struct.pack(">H", 0))


class Trickler:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(2)
        self.s.connect(path)
        self.s.setblocking(False)
        self.opened = time.monotonic()
        self.closed = None
        self.off = 0

    def poke(self):
        if self.off >= len(HANDSHAKE) - 1:
            return  # never the last byte
        try:
            self.off += self.s.send(HANDSHAKE[self.off:self.off + 1])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.gone()

    def gone(self):
        if self.closed is None:
            self.closed = time.monotonic()
            self.s.close()


def real_client(d, i):
    """Seconds a whole session took: connect, write, flush, read back."""
    t0 = time.monotonic()
    h = d.connect("good")
    data = bytes([i % 256]) * 4096
    h.pwrite(data, 4096 * (i % 16))
    h.flush()
    ok = h.pread(4096, 4096 * (i % 16)) == data
    h.shutdown()
    return time.monotonic() - t0 if ok else None


def attack(d, n, seconds, probe=None):
    live, done, probes = [], [], []
    end = time.monotonic() + seconds
    next_poke = next_fill = next_probe = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_fill:
            while len(live) < n:
                try:
                    live.append(Trickler(d.sock))
                except OSError:
                    break
            next_fill = now + 0.2
        if now >= next_poke:
            for tr in live:
                tr.poke()
            next_poke = now + 0.3
        for tr in [x for x in live if x.closed is not None]:
            live.remove(tr)
            done.append(tr)
        r, _, _ = select.select([tr.s for tr in live], [], [], 0.05)
        for tr in [x for x in live if x.s in r]:
            try:
                got = tr.s.recv(4096)
            except OSError:
                got = b""
            if not got:
                tr.gone()  # EOF: the server hung up (the greeting was data)
        if probe and time.monotonic() >= next_probe:
            try:
                probes.append(real_client(d, len(probes)))
            except Exception as e:  # noqa: BLE001 (nbd.Error, OSError: report, do not stop)
                probes.append(repr(e))
            next_probe = time.monotonic() + 0.5
    for tr in live:
        tr.gone()
    return done, probes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glidefsd")
    a = ap.parse_args()
    fl.need_libnbd()
    base = tempfile.mkdtemp(prefix="glidefs-nbdslow-")
    d = fl.Glidefsd(a.glidefsd, base, size="16M",
                    nbd_extra={"max_connections": 64, "handshake_timeout_ms": HS_MS})
    t_start = time.monotonic()
    try:
        d.start()
        early = d.connect("good")
        early.pwrite(b"\x01" * 4096, 0)
        fds0 = d.nfds()

        done, _ = attack(d, 12, 4.0)
        life = [tr.closed - tr.opened for tr in done]
        check(len(done) >= 12 and min(life) >= HS_MS / 1000 - 0.2 and
              max(life) <= HS_MS / 1000 + 1.0,
              f"12 tricklers: each closed at its {HS_MS} ms deadline ({len(done)} closed, "
              f"{min(life, default=0):.2f} .. {max(life, default=0):.2f} s)")

        done, probes = attack(d, 100, 6.0, probe=True)
        bad = [p for p in probes if not isinstance(p, float) or p > 2.0]
        check(len(probes) >= 8 and not bad,
              f"100 tricklers: a real client was served within 2 s every time ({len(probes)} "
              f"sessions, slowest {max((p for p in probes if isinstance(p, float)), default=0):.2f}"
              f" s; bad: {bad[:3]})")
        longest = max((tr.closed - tr.opened for tr in done), default=0)
        check(len(done) >= 100 and longest <= HS_MS / 1000 + 1.0,
              f"the server closed them ({len(done)}), none past the deadline + 1 s "
              f"(longest {longest:.2f} s)")
        try:
            early.pwrite(b"\x02" * 4096, 0)
            early.flush()
            ok = early.pread(4096, 0) == b"\x02" * 4096
        except Exception as e:  # noqa: BLE001
            ok = False
            print("# early client: %r" % e)
        check(ok, "the client connected before the attack still writes and reads")
        early.shutdown()
        try:
            fl.wait_for(lambda: d.nfds() <= fds0 + 4, 10, "descriptors back")
        except TimeoutError:
            pass
        check(d.nfds() <= fds0 + 4, f"descriptors back near the start ({fds0} -> {d.nfds()})")
        check(d.stop() == 0, "drains and exits 0")
        san = d.sanitizer_reports()
        check(not san, "no sanitizer report in the log" + (": " + san[0] if san else ""))
    finally:
        d.close()
    print("SUMMARY {\"test\": \"nbd_slowloris\", \"seconds\": %.1f}" % (time.monotonic() - t_start))
    if FAILED:
        print("--- glidefsd log tail ---\n" + d.log_tail(40))
        return 1
    import shutil
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
