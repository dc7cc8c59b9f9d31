#!/usr/bin/python3
"""test_slowloris.py - the REST API against clients that never finish a
request (issue 21, item 5).

Before: libmicrohttpd's 64-connection limit and an idle timeout that every
byte resets: 64 connections trickling a byte every 20 s kept /healthz
unreachable for as long as they liked. Now receiving a request has a
deadline (servers.api.request_timeout_ms, 1.5 s here) and a newcomer that
finds the listener full pushes out the oldest connection still receiving.

Two rounds from 127.0.0.1, each reopening the connections the server drops
(five times a second) and probing /healthz every 0.5 s:
  1. 24 trickling connections (under every limit): /healthz answers within
     2 s each time, and the server closes each trickler at its deadline
     (not before 1.3 s, not after 2.5 s) - libmicrohttpd's idle timeout
     alone never would;
  2. 72 of them (over servers.api.max_connections, 64, and the per-client
     32): /healthz still answers within 2 s each time, so does the
     unix-socket API, a request that arrives slowly but whole (body 0.4 s
     after the headers) succeeds, and no trickler lives past its deadline.

usage: test_slowloris.py GLIDEFSD
"""
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resttest  # noqa: E402

t = resttest.Checker()
GLIDEFSD = resttest.arg_path(1, "glidefsd")
TIMEOUT_MS = 1500
N = 72


class Trickler:
    """One connection sending a never-ending request, one byte at a time."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.setblocking(False)
        self.opened = time.monotonic()
        self.closed = None
        self.s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    def poke(self):
        try:
            self.s.send(b"a")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.gone()

    def gone(self):
        if self.closed is None:
            self.closed = time.monotonic()
        self.s.close()


def attack(d, n, seconds, probe_slow=False):
    """Keep n trickling connections open for seconds, reopening the ones the
    server drops five times a second, while probing /healthz every 0.5 s.
    Returns (healthz [(status, seconds)], closed Tricklers, slow request status)."""
    live, done = [], []
    healthz, slow_ok = [], None
    end = time.monotonic() + seconds
    next_poke = next_probe = next_fill = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        while len(live) < n and now >= next_fill:
            try:
                live.append(Trickler(d.port))
            except OSError:
                break  # the listen backlog is full: try again next round
        if now >= next_fill:
            next_fill = now + 0.2
        if now >= next_poke:
            for tr in live:
                tr.poke()
            next_poke = now + 0.3
        for tr in [x for x in live if x.closed is not None]:
            live.remove(tr)
            done.append(tr)
        # the server hanging up shows as readable (EOF, RST or its 4xx)
        r, _, _ = select.select([tr.s for tr in live], [], [], 0.05)
        for tr in [x for x in live if x.s in r]:
            try:
                tr.s.recv(65536)
            except OSError:
                pass
            tr.gone()
        if time.monotonic() >= next_probe:
            t0 = time.monotonic()
            try:
                st = d.req("GET", "/healthz", timeout=5).status
            except OSError as e:
                st = repr(e)
            healthz.append((st, time.monotonic() - t0))
            next_probe = time.monotonic() + 0.5
            if probe_slow and slow_ok is None and len(healthz) == 4:
                # a slow but whole request: headers, body 0.4 s later
                c = d.conn(10)
                c.putrequest("POST", "/api/exports", skip_accept_encoding=True)
                body = b'{"name": "slow", "size": "16M"}'
                c.putheader("Content-Type", "application/json")
                c.putheader("Content-Length", str(len(body)))
                c.endheaders()
                time.sleep(0.4)
                c.send(body)
                slow_ok = c.getresponse().status
                c.close()
                r = d.req("GET", "/healthz", unix=True, timeout=5)
                t.status(r, 200, "the unix-socket API answers during the attack")
    for tr in live:
        tr.gone()
    return healthz, done, slow_ok


def healthz_ok(healthz, what):
    bad = [h for h in healthz if h[0] != 200 or h[1] > 2.0]
    t.ok(len(healthz) >= 5 and not bad,
         f"{what}: /healthz answered within 2 s every time ({len(healthz)} probes, slowest "
         f"{max((h[1] for h in healthz), default=0):.2f} s; bad: {bad[:5]})")


def main():
    with resttest.Daemon(GLIDEFSD, api_unix=True,
                         extra_api={"request_timeout_ms": TIMEOUT_MS}) as d:
        d.start()
        # Fewer than the limits: only the deadline closes them.
        healthz, done, _ = attack(d, 24, 4.0)
        healthz_ok(healthz, "24 trickling connections")
        lifetimes = [tr.closed - tr.opened for tr in done]
        t.ok(len(done) >= 24 and min(lifetimes) >= TIMEOUT_MS / 1000 - 0.2 and
             max(lifetimes) <= TIMEOUT_MS / 1000 + 1.0,
             f"the server closed each at its {TIMEOUT_MS} ms deadline ({len(done)} closed, "
             f"{min(lifetimes, default=0):.2f} .. {max(lifetimes, default=0):.2f} s)")
        # More than servers.api.max_connections (64): newcomers push the oldest out.
        healthz, done, slow_ok = attack(d, N, 5.0, probe_slow=True)
        healthz_ok(healthz, f"{N} trickling connections")
        t.eq(slow_ok, 201, "a slow but whole request (body 0.4 s after the headers) succeeds")
        longest = max((tr.closed - tr.opened for tr in done), default=0)
        t.ok(len(done) >= N and longest <= TIMEOUT_MS / 1000 + 1.0,
             f"the server closed them ({len(done)}), none past the deadline + 1 s "
             f"(longest {longest:.2f} s)")
        t.status(d.req("GET", "/healthz"), 200, "healthy after the attack")
        t.eq(d.stop(), 0, "exits 0 on SIGTERM")
    t.done()


if __name__ == "__main__":
    main()
