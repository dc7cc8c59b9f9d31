#!/usr/bin/python3
"""test_vhost_inflight.py - vhost-user-blk reconnect with inflight tracking
(issue 30, stage 2: VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD), driven by
vhostfe.py's frontend so every state of the region is exact.

1. A fresh session: INFLIGHT_SHMFD is offered; GET_INFLIGHT_FD answers a
   memfd region of the split-ring size (16-byte header + 16 bytes per
   descriptor, rounded to 64) for 1 queue of 16; SET_INFLIGHT_FD hands it
   back (as QEMU does). Two requests later the region says: version 1,
   desc_num 16, head 0 taken with counters 0 then 1 (each marked before
   it ran), unmarked after, used_idx 2, last_batch_head 0.
2. glidefsd gets SIGKILL; its socket file stays; a restarted glidefsd
   (same config) serves it again by itself (no REST call).
3. The reconnect, against the restarted process: the frontend keeps the
   region and sets it up as a backend dying mid-work leaves it. Head 12
   (a write of C over sector 16) is on the used ring (used idx 3) but still
   marked, the region's used_idx 2: the backend died between the used ring
   update and the unmark. Heads 6 (write A to sector 32, counter 11) and 3
   (write B to sector 32, counter 12) are in flight; head 9 (write E to
   sector 48) is available, never taken. After the kick the used ring gets
   6, 3, 9 in that order; sector 32 holds B (resubmitted in counter order,
   not index order), sector 16 still holds D (written in session 1: head
   12 was not replayed), sector 48 holds E; the region ends unmarked with
   used_idx 6; the log says 2 requests were resubmitted.
4. Nonsense in the region or its messages disconnects that frontend only,
   with the reason logged: a size that does not match the queue count and
   size, a file shorter than the region, an inflight flag of 7, a marked
   descriptor past the ring, a desc_num that is not the queue size, the
   messages without the protocol feature.

usage: test_vhost_inflight.py GLIDEFSD
"""
import mmap
import os
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rest"))
sys.path.insert(0, HERE)

from resttest import Checker, Daemon, arg_path, need_libnbd, wait_for  # noqa: E402
import vhostfe as fe  # noqa: E402

GET_INFLIGHT_FD, SET_INFLIGHT_FD = 31, 32
P_INFLIGHT = 1 << 12
NUM = 16
S1, S2, S3 = 32, 16, 48   # sectors the requests write


def qbytes(n):
    return (16 + 16 * n + 63) & ~63


def fill(n, seed):
    return bytes([seed]) * n


def negotiate(f, inflight=True):
    feats = f.get_u64(fe.GET_FEATURES)
    want = fe.F_VERSION_1 | fe.F_INDIRECT | fe.F_PROTOCOL
    f.set_u64(fe.SET_FEATURES, want)
    proto = f.get_u64(fe.GET_PROTOCOL_FEATURES)
    f.set_u64(fe.SET_PROTOCOL_FEATURES, proto & (fe.P_MQ | fe.P_REPLY_ACK | fe.P_CONFIG |
                                                 (P_INFLIGHT if inflight else 0)))
    f.send(fe.SET_OWNER)
    return feats, proto


def inflight_payload(size, off, nq, qs):
    return struct.pack("<QQHH4x", size, off, nq, qs)


def get_inflight(f, nq=1, qs=NUM):
    f.send(GET_INFLIGHT_FD, inflight_payload(0, 0, nq, qs))
    msg, fds, _, _ = socket.recv_fds(f.s, 12 + 24, 1)
    while len(msg) < 12 + 24:
        msg += f.recv_exact(12 + 24 - len(msg))
    req, flags, size = struct.unpack_from("<III", msg)
    assert req == GET_INFLIGHT_FD and flags & 4 and size == 24, (req, flags, size)
    return struct.unpack_from("<QQHH", msg, 12), (fds[0] if fds else None)


def set_inflight(f, fd, size, nq=1, qs=NUM, off=0):
    f.send(SET_INFLIGHT_FD, inflight_payload(size, off, nq, qs), fds=[fd])


def start_ring(f, base=0, prepare=None):
    """Memory table, ring 0 of NUM at f's usual addresses, base, then
    prepare(f) fills the rings, then kick, call, enable (acknowledged)."""
    if f.mem_table() != 0:
        raise AssertionError("SET_MEM_TABLE not acknowledged")
    f.mem[0:0x3000] = bytes(0x3000)
    f.state(fe.SET_VRING_NUM, 0, NUM)
    f.state(fe.SET_VRING_BASE, 0, base)
    f.vring_addr()
    if prepare:
        prepare(f)
    f.send(fe.SET_VRING_KICK, struct.pack("<Q", 0), fds=[f.kick])
    f.send(fe.SET_VRING_CALL, struct.pack("<Q", 0), fds=[f.call])
    return f.state(fe.SET_VRING_ENABLE, 0, 1, ack=True)


def write_chain(f, head, sector, data):
    """A write request on descriptors head, head+1, head+2 with its own
    header, data and status areas; the status starts at 0xee."""
    hdr = fe.HDR + 0x100 * head
    dat = fe.DATA + 0x1000 * head
    struct.pack_into("<IIQ", f.mem, hdr, fe.T_OUT, 0, sector)
    f.mem[dat:dat + len(data)] = data
    f.mem[hdr + 0x20] = 0xee
    f.put_desc(fe.DESC, head, fe.GPA + hdr, 16, fe.D_NEXT, head + 1)
    f.put_desc(fe.DESC, head + 1, fe.GPA + dat, len(data), fe.D_NEXT, head + 2)
    f.put_desc(fe.DESC, head + 2, fe.GPA + hdr + 0x20, 1, fe.D_WRITE, 0)
    return hdr + 0x20


def region_hdr(r, q=0):
    _, version, desc_num, last, used = struct.unpack_from("<QHHHH", r, q)
    return version, desc_num, last, used


def region_desc(r, i, q=0):
    fl, = struct.unpack_from("<B", r, q + 16 + 16 * i)
    counter, = struct.unpack_from("<Q", r, q + 16 + 16 * i + 8)
    return fl, counter


def set_desc(r, i, fl, counter, q=0):
    struct.pack_into("<B5xHQ", r, q + 16 + 16 * i, fl, 0, counter)


def fresh_session(t, sock):
    with fe.Frontend(sock, num=NUM) as f:
        _, proto = negotiate(f)
        t.ok(proto & P_INFLIGHT, "protocol feature INFLIGHT_SHMFD offered")
        (size, off, nq, qs), fd = get_inflight(f)
        t.ok(fd is not None and (size, off, nq, qs) == (qbytes(NUM), 0, 1, NUM) and
             os.fstat(fd).st_size >= size,
             f"GET_INFLIGHT_FD: a {size}-byte region at {off} for {nq} queue(s) of {qs}, "
             f"with its descriptor")
        set_inflight(f, fd, size)
        region = mmap.mmap(fd, size)
        t.eq(start_ring(f), 0, "the ring starts with the region set")
        t.eq(f.request(fe.T_OUT, S2, out=fill(4096, 0xd0))[0], fe.S_OK, "write D to sector 16")
        t.eq(f.request(fe.T_FLUSH)[0], fe.S_OK, "FLUSH")
        t.eq(region_hdr(region), (1, NUM, 0, 2),
             "region header: version 1, desc_num 16, last_batch_head 0, used_idx 2")
        t.eq(region_desc(region, 0), (0, 1),
             "head 0 was marked with counters 0 and 1 (once per request) and is unmarked")
    return fd, size, region


def reconnect_session(t, d, sock, fd, size, region):
    heads = {}

    def prepare(f):
        # the avail ring: 2 entries of session 1, then 12 (done), 6, 3 (in
        # flight), 9 (never taken); the used ring: 3 entries, the last 12
        for pos, h in enumerate([0, 0, 12, 6, 3, 9]):
            struct.pack_into("<H", f.mem, fe.AVAIL + 4 + 2 * pos, h)
        struct.pack_into("<H", f.mem, fe.AVAIL + 2, 6)
        for pos, h in enumerate([0, 0, 12]):
            struct.pack_into("<II", f.mem, fe.USED + 4 + 8 * pos, h, 1)
        struct.pack_into("<H", f.mem, fe.USED + 2, 3)
        f.avail_idx, f.used_seen = 6, 3
        heads[12] = write_chain(f, 12, S2, fill(4096, 0xc0))
        heads[6] = write_chain(f, 6, S1, fill(4096, 0xa0))
        heads[3] = write_chain(f, 3, S1, fill(4096, 0xb0))
        heads[9] = write_chain(f, 9, S3, fill(4096, 0xe0))

    # the region as a backend killed mid-work leaves it
    for i in range(NUM):
        set_desc(region, i, 0, 0)
    set_desc(region, 12, 1, 10)
    set_desc(region, 6, 1, 11)
    set_desc(region, 3, 1, 12)
    struct.pack_into("<HH", region, 12, 12, 2)   # last_batch_head 12, used_idx 2
    before = len(d.log_text())
    with fe.Frontend(sock, num=NUM) as f:
        negotiate(f)
        set_inflight(f, fd, size)
        t.eq(start_ring(f, base=3, prepare=prepare), 0, "the reconnected ring starts")
        try:
            wait_for(lambda: f.used_idx() == 6, 10, "used idx 6")
        except TimeoutError:
            pass
        used = [struct.unpack_from("<I", f.mem, fe.USED + 4 + 8 * p)[0] for p in (3, 4, 5)]
        t.eq((f.used_idx(), used), (6, [6, 3, 9]),
             "used ring: the in-flight heads 6 and 3 in counter order, then the new head 9")
        t.eq([f.mem[heads[h]] for h in (6, 3, 9)], [fe.S_OK] * 3,
             "status OK for the resubmitted and the new request")
        t.eq(f.mem[heads[12]], 0xee, "head 12 (completed before the crash) was not run again")
        t.eq(region_hdr(region)[3], 6, "region used_idx follows the used ring (6)")
        t.ok(all(region_desc(region, i)[0] == 0 for i in range(NUM)),
             "no descriptor left marked in the region")
    logged = d.log_text()[before:]
    t.ok("resubmitting 2 in-flight request(s)" in logged and "disconnecting" not in logged,
         "the log says 2 requests were resubmitted, no protocol error")
    t.ok("head 12 was on the used ring but still marked" in logged,
         "the log says head 12 was completed before the crash")
    h = d.connect("vm1")
    got = {s: h.pread(4096, s * 512) for s in (S1, S2, S3)}
    h.shutdown()
    t.ok(got[S1] == fill(4096, 0xb0), "sector 32 holds B: A then B, the order they were taken")
    t.ok(got[S2] == fill(4096, 0xd0), "sector 16 still holds D (head 12's C not replayed)")
    t.ok(got[S3] == fill(4096, 0xe0), "sector 48 holds E (the request never taken before)")


def hostile(t, d, sock):
    def memfd(size):
        fd = os.memfd_create("inflight", os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        return fd

    def region_with(edit, qs=NUM):
        fd = memfd(qbytes(qs))
        with mmap.mmap(fd, qbytes(qs)) as r:
            struct.pack_into("<QHHHH", r, 0, 0, 1, qs, 0, 0)
            edit(r)
        return fd

    def with_region(fd, qs=NUM, size=None):
        def act(f):
            negotiate(f)
            set_inflight(f, fd, qbytes(qs) if size is None else size, qs=qs)
            start_ring(f)
        return act

    def unnegotiated(f):
        negotiate(f, inflight=False)
        f.send(GET_INFLIGHT_FD, inflight_payload(0, 0, 1, NUM))
        f.reply(GET_INFLIGHT_FD)

    cases = [
        ("region size not matching its queues", with_region(memfd(4096), size=4096),
         "does not match its queue count"),
        ("file shorter than the region", with_region(memfd(100)), "beyond its file"),
        ("an inflight flag of 7", with_region(region_with(lambda r: set_desc(r, 2, 7, 0))),
         "neither 0 nor 1"),
        ("a marked descriptor past the ring",
         with_region(region_with(lambda r: set_desc(r, 20, 1, 0), qs=32), qs=32),
         "in-flight descriptor past the ring"),
        ("desc_num not the queue size",
         with_region(region_with(lambda r: struct.pack_into("<H", r, 10, 99))),
         "queue size is not the one"),
        ("GET_INFLIGHT_FD without the protocol feature", unnegotiated, "not negotiated"),
    ]
    for name, act, reason in cases:
        before = len(d.log_text())
        with fe.Frontend(sock, num=NUM) as f:
            try:
                act(f)
            except (fe.Disconnected, BrokenPipeError, ConnectionResetError, AssertionError):
                pass
            t.ok(f.expect_disconnect(), f"hostile: {name}: disconnected")
        logged = d.log_text()[before:]
        said = [ln for ln in logged.splitlines() if "disconnecting" in ln]
        t.ok(reason in logged and said, f"hostile: {name}: the log says why ({reason!r})" +
             ("" if reason in logged else f": {said[:1]}"))
        t.ok(d.proc.poll() is None, f"hostile: {name}: glidefsd still runs")


def main():
    glidefsd = arg_path(1, "glidefsd")
    need_libnbd()
    t = Checker()
    with Daemon(glidefsd, size="64M") as d:
        vdir = os.path.join(d.base, "vhost")
        os.makedirs(vdir)
        with open(d.cfg, "a") as f:
            f.write(f"  vhost_user:\n    dir: {vdir}\n")
        d.start()
        t0 = time.monotonic()
        r = d.req("POST", "/api/exports/vm1/vhost-user")
        sock = os.path.join(vdir, "vm1.sock")
        t.ok(r.status == 200, f"POST vhost-user: {r!r}")
        fd, size, region = fresh_session(t, sock)
        # SIGKILL: the socket file stays; the restarted process serves it again
        d.kill()
        t.ok(os.path.exists(sock), "after SIGKILL the socket file is still there")
        before = len(d.log_text())
        d.start()
        try:   # (after the REST API is up, before "ready")
            wait_for(lambda: "vm1: serving its socket again" in d.log_text()[before:], 10,
                     "the socket served again")
            t.ok(True, "the restarted glidefsd serves the export's socket again by itself")
        except TimeoutError as e:
            t.ok(False, str(e))
        reconnect_session(t, d, sock, fd, size, region)
        hostile(t, d, sock)
        region.close()
        os.close(fd)
        t.status(d.req("GET", "/healthz"), 200, "healthz after the hostile frontends")
        print(f"MEASURED vhost inflight test body {time.monotonic() - t0:.2f} s")
        t.eq(d.stop(), 0, "SIGTERM: exit status 0")
        t.ok(not os.path.exists(sock), "the socket is removed at exit")
    t.done()


if __name__ == "__main__":
    main()
