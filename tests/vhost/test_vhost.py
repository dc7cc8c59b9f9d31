#!/usr/bin/python3
"""test_vhost.py - glidefsd's vhost-user-blk backend (issue 30, stage 1)
driven by a frontend written here (vhostfe.py: memfd "guest RAM", rings it
builds itself).

1. POST /api/exports/vm1/vhost-user creates the export and its socket
   DIR/vm1.sock and answers {"socket": PATH} (again: the same path); a body
   with unknown fields is 400.
2. A correct session: features, protocol features, config space (capacity,
   blk_size, seg_max, discard and write-zeroes limits, num_queues), memory
   table, vring setup, then OUT (two buffers), IN (indirect, three
   buffers), FLUSH, GET_ID, WRITE_ZEROES and DISCARD (read back as
   zeroes), an IN past the end (IOERR), an unknown type (UNSUPP), an
   unaligned buffer split (bounce), a second queue (multiqueue) and
   GET_VRING_BASE. An NBD client on the same export reads what the session
   wrote: one volume.
3. Hostile frontends, each on its own connection: malformed messages
   (version, sizes, unknown request, too many descriptors), a memory table
   larger than its file, rings outside the memory table, descriptors
   outside it (below, beyond, straddling its end), direct and indirect
   descriptor loops, a nested indirect table, an available index running
   ahead, a head past the queue, a chain without a status byte. Each is
   disconnected with the reason logged, while an NBD client on another
   export keeps working; afterwards glidefsd has no more descriptors open
   and no guest memory mapped than before, and a new correct session reads
   the data back.
3b. EVENT_IDX (VIRTIO_RING_F_EVENT_IDX) is offered; with it negotiated the
   backend calls the guest only when the used index passes the guest's
   used_event (one call for the first request, none while used_event is
   ahead, one when it is crossed) and, after each request, publishes
   avail_event = the next available entry it wants a kick for.
4. A connected frontend counts as a client connection: DELETE is 409,
   DELETE ?force=true disconnects it.
5. SIGTERM: exit status 0, the socket removed.

usage: test_vhost.py GLIDEFSD
"""
import json
import os
import subprocess
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rest"))
sys.path.insert(0, HERE)

import resttest  # noqa: E402
from resttest import Checker, Daemon, arg_path, need_libnbd, wait_for  # noqa: E402
import vhostfe as fe  # noqa: E402

SIZE = 64 << 20


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def guest_maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for ln in f if "memfd:guest" in ln)


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def good_session(t, d, sock):
    with fe.Frontend(sock) as f:
        feats, proto = f.setup()
        t.ok(feats & (1 << 9) and feats & (1 << 13) and feats & (1 << 14) and feats & (1 << 12),
             "features: FLUSH, DISCARD, WRITE_ZEROES and MQ offered")
        t.ok(proto & fe.P_CONFIG and proto & fe.P_REPLY_ACK and proto & fe.P_MQ,
             "protocol features: CONFIG, REPLY_ACK and MQ offered")
        t.ok(f.get_u64(fe.GET_QUEUE_NUM) >= 1, "GET_QUEUE_NUM answers")
        cfg = f.get_config(60)
        cap, = struct.unpack_from("<Q", cfg, 0)
        seg_max, = struct.unpack_from("<I", cfg, 12)
        blk, = struct.unpack_from("<I", cfg, 20)
        nq, = struct.unpack_from("<H", cfg, 34)
        mds, mdseg = struct.unpack_from("<II", cfg, 36)
        mwz, mwzseg = struct.unpack_from("<II", cfg, 48)
        t.eq(cap, SIZE // 512, "config: capacity in sectors")
        t.eq(blk, 512, "config: blk_size")
        t.ok(seg_max >= 1 and nq >= 1 and mds and mdseg and mwz and mwzseg,
             f"config: seg_max {seg_max}, num_queues {nq}, discard {mds}/{mdseg}, "
             f"write zeroes {mwz}/{mwzseg}")

        data = pattern(8192, 3)
        st, _, _ = f.request(fe.T_OUT, 8, out=data, split=2)
        t.eq(st, fe.S_OK, "OUT of 8 KiB in two buffers")
        st, got, used = f.request(fe.T_IN, 8, in_len=8192, split=3, indirect=True)
        t.eq(st, fe.S_OK, "IN through an indirect table of three buffers")
        t.ok(got == data, "IN reads what OUT wrote")
        t.eq(used, 8193, "IN's used length: data and status")
        # buffers that are not whole sectors (1000 + 3096 + ...) go through the bounce buffer
        odd = pattern(4096, 9)
        st, _, _ = f.request(fe.T_OUT, 100, out=odd, split=3)
        st2, got, _ = f.request(fe.T_IN, 100, in_len=4096, split=3)
        t.ok(st == fe.S_OK and st2 == fe.S_OK and got == odd,
             "OUT and IN with buffers that are not whole sectors")
        t.eq(f.request(fe.T_FLUSH)[0], fe.S_OK, "FLUSH")
        st, ident, _ = f.request(fe.T_GET_ID, in_len=20)
        t.ok(st == fe.S_OK and ident.rstrip(b"\0") == b"vm1", f"GET_ID: {ident!r}")
        st, _, _ = f.request(fe.T_WRITE_ZEROES, out=struct.pack("<QII", 12, 4, 0))
        t.eq(st, fe.S_OK, "WRITE_ZEROES of sectors 12..15")
        st, got, _ = f.request(fe.T_IN, 8, in_len=8192)
        t.ok(got == data[:2048] + bytes(2048) + data[4096:], "the zeroed sectors read as zeroes")
        f.request(fe.T_OUT, 1024, out=pattern(8192, 5))
        st, _, _ = f.request(fe.T_DISCARD, out=struct.pack("<QII", 1024, 2048, 0))
        t.eq(st, fe.S_OK, "DISCARD of 1 MiB")
        st, got, _ = f.request(fe.T_IN, 1024, in_len=8192)
        t.ok(st == fe.S_OK and got == bytes(8192), "the discarded range reads as zeroes")
        st, _, _ = f.request(fe.T_DISCARD, out=struct.pack("<QII", 1024, 8, 1))
        t.eq(st, fe.S_UNSUPP, "DISCARD with the unmap flag: UNSUPP")
        st, _, _ = f.request(fe.T_IN, SIZE // 512 - 1, in_len=1024)
        t.eq(st, fe.S_IOERR, "IN past the end: IOERR")
        st, _, _ = f.request(fe.T_OUT, 0, out=bytes(100))
        t.eq(st, fe.S_IOERR, "OUT of 100 bytes (not whole sectors): IOERR")
        t.eq(f.request(77)[0], fe.S_UNSUPP, "an unknown request type: UNSUPP")
        # multiqueue: a second queue with its own rings and eventfds
        f.setup_queue(1)
        f.use_queue(1)
        q1 = pattern(4096, 11)
        st, _, _ = f.request(fe.T_OUT, 4000, out=q1)
        st2, got, _ = f.request(fe.T_IN, 4000, in_len=4096)
        t.ok(st == fe.S_OK and st2 == fe.S_OK and got == q1 and f.used_idx() == 2,
             "queue 1 (multiqueue): OUT and IN on its own rings")
        f.use_queue(0)
        st, got, _ = f.request(fe.T_IN, 4000, in_len=4096)
        t.ok(st == fe.S_OK and got == q1, "queue 0 goes on after queue 1 was used")
        # GET_VRING_BASE stops the ring and says where it is
        f.send(fe.GET_VRING_BASE, struct.pack("<II", 0, 0))
        idx, base = struct.unpack("<II", f.reply(fe.GET_VRING_BASE))
        t.eq((idx, base), (0, f.avail_idx), "GET_VRING_BASE: the next available entry")
    # the same volume through NBD
    h = d.connect("vm1")
    t.ok(h.pread(8192, 8 * 512) == data[:2048] + bytes(2048) + data[4096:],
         "NBD reads what the vhost-user session wrote (one volume)")
    h.shutdown()
    return data


def hostile(t, d, sock, nbd_other):
    """Each case: (name, action(frontend), reason logged)."""
    def raw(f, b):
        f.s.sendall(b)

    def setup_then(fn):
        def act(f):
            f.setup()
            fn(f)
        return act

    def desc_at(addr, length=512, flags=0):
        def fn(f):
            struct.pack_into("<IIQ", f.mem, fe.HDR, fe.T_OUT, 0, 0)
            f.put_desc(fe.DESC, 0, fe.GPA + fe.HDR, 16, fe.D_NEXT, 1)
            f.put_desc(fe.DESC, 1, addr, length, flags | fe.D_NEXT, 2)
            f.put_desc(fe.DESC, 2, fe.GPA + fe.HDR + 0x100, 1, fe.D_WRITE)
            f.publish(0)
        return fn

    def loop(f):
        # zero-length buffers: only the loop check can end this walk
        f.put_desc(fe.DESC, 0, fe.GPA + fe.HDR, 0, fe.D_NEXT, 1)
        f.put_desc(fe.DESC, 1, fe.GPA + fe.HDR, 0, fe.D_NEXT, 0)
        f.publish(0)

    def indirect_loop(f):
        f.put_desc(fe.INDIRECT, 0, fe.GPA + fe.HDR, 0, fe.D_NEXT, 1)
        f.put_desc(fe.INDIRECT, 1, fe.GPA + fe.HDR, 0, fe.D_NEXT, 0)
        f.put_desc(fe.DESC, 0, fe.GPA + fe.INDIRECT, 32, fe.D_INDIRECT)
        f.publish(0)

    def nested(f):
        f.put_desc(fe.INDIRECT, 0, fe.GPA + fe.INDIRECT, 16, fe.D_INDIRECT)
        f.put_desc(fe.DESC, 0, fe.GPA + fe.INDIRECT, 16, fe.D_INDIRECT)
        f.publish(0)

    def no_status(f):
        struct.pack_into("<IIQ", f.mem, fe.HDR, fe.T_FLUSH, 0, 0)
        f.put_desc(fe.DESC, 0, fe.GPA + fe.HDR, 16, 0)
        f.publish(0)

    end = fe.GPA + (4 << 20)
    cases = [
        ("protocol version 2", lambda f: raw(f, struct.pack("<III", fe.GET_FEATURES, 2, 0)),
         "unsupported protocol version"),
        ("SET_FEATURES with a 4-byte payload",
         lambda f: f.send(fe.SET_FEATURES, b"\0\0\0\0"), "feature payload is not 8 bytes"),
        ("a header announcing 1 MiB", lambda f: f.send(fe.GET_FEATURES, size=1 << 20),
         "payload"),
        ("an unknown request", lambda f: f.send(99), "unsupported request"),
        ("nine descriptors with one message",
         lambda f: f.send(fe.GET_FEATURES, fds=[f.kick] * 9), "too many descriptors"),
        ("a memory table larger than its file",
         lambda f: f.mem_table([(fe.GPA, 64 << 20, fe.UVA, 0)], ack=False),
         "cannot be mapped"),
        ("overlapping memory regions",
         lambda f: f.mem_table([(fe.GPA, 1 << 20, fe.UVA, 0),
                                (fe.GPA + 4096, 1 << 20, fe.UVA + (8 << 20), 0)], ack=False),
         "overlap"),
        ("ring addresses outside the memory table",
         lambda f: (f.negotiate(), f.mem_table(), f.state(fe.SET_VRING_NUM, 0, 16),
                    f.vring_addr(desc=fe.UVA + (4 << 20) - 64)),
         "ring addresses outside the memory table"),
        ("a descriptor below the memory table", setup_then(desc_at(0x1000)),
         "outside the memory table"),
        ("a descriptor beyond the memory table", setup_then(desc_at(end + (1 << 20))),
         "outside the memory table"),
        ("a descriptor straddling the end of the memory table",
         setup_then(desc_at(end - 16, 4096)), "outside the memory table"),
        ("a descriptor loop", setup_then(loop), "loops"),
        ("a loop in an indirect table", setup_then(indirect_loop), "loops"),
        ("an indirect table inside an indirect table", setup_then(nested),
         "indirect table inside an indirect table"),
        ("the available index running ahead",
         setup_then(lambda f: f.publish(0, idx=40)), "ran ahead"),
        ("a head past the queue", setup_then(lambda f: f.publish(99)), "past the queue size"),
        ("a chain without a status byte", setup_then(no_status), "without a writable status"),
    ]
    for i, (name, act, reason) in enumerate(cases):
        before = len(d.log_text())
        with fe.Frontend(sock) as f:
            try:
                act(f)
            except (fe.Disconnected, BrokenPipeError, ConnectionResetError):
                pass
            t.ok(f.expect_disconnect(), f"hostile: {name}: disconnected")
        logged = d.log_text()[before:]
        t.ok(reason in logged and "disconnecting" in logged,
             f"hostile: {name}: the log says why ({reason!r})")
        # the daemon and another export are unharmed
        t.ok(d.proc.poll() is None, f"hostile: {name}: glidefsd still runs")
        buf = pattern(4096, i)
        nbd_other.pwrite(buf, 4096 * i)
        t.ok(nbd_other.pread(4096, 4096 * i) == buf, f"hostile: {name}: NBD on another export works")


def event_idx_session(t, sock):
    num = 16
    used_event = fe.AVAIL + 4 + 2 * num      # in the avail ring, after its entries
    avail_event = fe.USED + 4 + 8 * num      # in the used ring, after its entries
    with fe.Frontend(sock, num=num) as f:
        feats = f.get_u64(fe.GET_FEATURES)
        t.ok(feats & fe.F_EVENT_IDX, "EVENT_IDX offered")
        f.set_u64(fe.SET_FEATURES, fe.F_VERSION_1 | fe.F_PROTOCOL | fe.F_EVENT_IDX)
        proto = f.get_u64(fe.GET_PROTOCOL_FEATURES)
        f.set_u64(fe.SET_PROTOCOL_FEATURES, proto & (fe.P_MQ | fe.P_REPLY_ACK | fe.P_CONFIG))
        f.send(fe.SET_OWNER)
        f.mem_table()
        f.mem[0:0x3000] = bytes(0x3000)
        f.state(fe.SET_VRING_NUM, 0, num)
        f.state(fe.SET_VRING_BASE, 0, 0)
        f.vring_addr()
        f.send(fe.SET_VRING_KICK, struct.pack("<Q", 0), fds=[f.kick])
        f.send(fe.SET_VRING_CALL, struct.pack("<Q", 0), fds=[f.call])
        f.state(fe.SET_VRING_ENABLE, 0, 1, ack=True)

        def one(sector):
            """A FLUSH; returns (calls seen, avail_event) once it is used."""
            struct.pack_into("<IIQ", f.mem, fe.HDR, fe.T_FLUSH, 0, sector)
            f.put_desc(fe.DESC, 0, fe.GPA + fe.HDR, 16, fe.D_NEXT, 1)
            f.put_desc(fe.DESC, 1, fe.GPA + fe.HDR + 0x100, 1, fe.D_WRITE, 0)
            want = (f.used_idx() + 1) & 0xffff
            f.publish(0)
            wait_for(lambda: f.used_idx() == want, 10, "the used entry")
            f.get_u64(fe.GET_QUEUE_NUM)   # the session has finished that round, calls included
            try:
                calls = os.eventfd_read(f.call)
            except BlockingIOError:
                calls = 0
            return calls, struct.unpack_from("<H", f.mem, avail_event)[0]

        calls, ae = one(0)
        t.eq((calls, ae), (1, 1), "EVENT_IDX: the first used entry calls; avail_event 1")
        struct.pack_into("<H", f.mem, used_event, 5)   # interrupt me once used passes 5
        got = [one(0) for _ in range(4)]                 # used idx 2..5
        t.eq(got, [(0, 2), (0, 3), (0, 4), (0, 5)],
             "EVENT_IDX: no call while used_event (5) is ahead; avail_event follows the ring")
        t.eq(one(0), (1, 6), "EVENT_IDX: the call when the used index passes used_event")


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
        t.ok(r.status == 200 and (r.json or {}).get("socket") == sock, f"POST vhost-user: {r!r}")
        t.ok(os.path.exists(sock), "the socket exists")
        r = d.req("POST", "/api/exports/vm1/vhost-user")
        t.ok(r.status == 200 and (r.json or {}).get("socket") == sock, "POST again: the same socket")
        t.status(d.req("POST", "/api/exports/vm1/vhost-user", body={"x": 1}), 400,
                 "POST with an unknown field")
        if len(sys.argv) > 2:  # glidefs-ctl vhost-user, human and --json
            ctl = arg_path(2, "glidefs-ctl")
            r = subprocess.run([ctl, "--api", d.url, "vhost-user", "vm1"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
            t.ok(r.returncode == 0 and r.stdout.strip() ==
                 f"vm1 is served on the vhost-user-blk socket {sock}",
                 f"glidefs-ctl vhost-user vm1 ({r.returncode}, {r.stdout!r}, {r.stderr!r})")
            r = subprocess.run([ctl, "--api", d.url, "--json", "vhost-user", "vm1"],
                               capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            t.ok(r.returncode == 0 and json.loads(r.stdout or "{}").get("socket") == sock,
                 f"glidefs-ctl --json vhost-user vm1 ({r.stdout!r})")
        t.status(d.req("GET", "/api/exports/vm1"), 200, "the export was created")

        data = good_session(t, d, sock)
        event_idx_session(t, sock)
        pid = d.proc.pid
        wait_for(lambda: guest_maps(pid) == 0, 10, "the session's guest memory unmapped")
        other = d.connect("other")
        other.pwrite(b"x" * 4096, 0)
        keep = d.connect("vm1")  # vm1 stays open: its files do not come and go meanwhile
        fds0 = fd_count(pid)
        hostile(t, d, sock, other)
        try:
            wait_for(lambda: fd_count(pid) <= fds0 and guest_maps(pid) == 0, 10,
                     "descriptors and mappings of the hostile sessions closed")
            t.ok(True, f"no descriptor or guest mapping left behind ({fd_count(pid)} fds)")
        except TimeoutError:
            t.ok(False, f"descriptors left behind: {fd_count(pid)} open, {fds0} before; "
                        f"{guest_maps(pid)} guest mappings")
        other.shutdown()
        keep.shutdown()
        t.status(d.req("GET", "/healthz"), 200, "healthz after the hostile frontends")
        with fe.Frontend(sock) as f:
            f.setup()
            st, got, _ = f.request(fe.T_IN, 8, in_len=2048)
            t.ok(st == fe.S_OK and got == data[:2048], "a new session reads the data back")
        # a connected frontend is a client: DELETE needs force, which disconnects it
        with fe.Frontend(sock) as f:
            f.setup()
            wait_for(lambda: (d.req("GET", "/api/exports/vm1").json or {}).get("connections")
                     == 1, 10, "the session counted as a connection")
            t.status(d.req("DELETE", "/api/exports/vm1"), 409,
                     "DELETE while a vhost-user frontend is connected")
            r = d.req("DELETE", "/api/exports/vm1?force=true")
            t.ok(r.status == 200 and f.expect_disconnect(),
                 f"DELETE ?force=true disconnects the frontend: {r!r}")
        # vhost-user devices are not handed over yet: a takeover is refused
        # while a socket is served, and this process serves on
        t.ok(os.path.exists(sock), "the socket is still served")
        succ = subprocess.Popen([glidefsd, "-c", d.cfg, "--takeover", "--log-level", "debug"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            rc = succ.wait(60)
        except subprocess.TimeoutExpired:
            succ.kill()  # it took over: the refusal is missing
            rc = succ.wait()
            rc = 0
        t.ok(rc != 0, f"a takeover exits non-zero ({rc})")
        t.ok("vhost-user socket(s) served here" in d.log_text() and d.proc.poll() is None,
             "the old process refused it, said why, and serves on")
        t.status(d.req("GET", "/healthz"), 200, "healthz after the refused takeover")
        print(f"MEASURED vhost test body {time.monotonic() - t0:.2f} s")
        t.eq(d.stop(), 0, "SIGTERM: exit status 0")
        t.ok(not os.path.exists(sock), "the socket is removed at exit")
    t.done()


if __name__ == "__main__":
    resttest  # noqa: B018 (imported for its helpers)
    main()
