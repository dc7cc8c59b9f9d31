"""vhostfe.py - a vhost-user-blk frontend in Python for the tests (suite
'vhost'): it speaks the vhost-user protocol (QEMU docs/interop/vhost-user.rst)
over the unix socket, shares its "guest RAM" as a memfd (SET_MEM_TABLE with
socket.send_fds), and builds split virtqueues (virtio 1.x 2.7) in that
memory itself, so a test can drive correct requests and every kind of
broken message and ring.

Guest memory layout (offsets into the memfd; guest physical = GPA + off,
the frontend's addresses = UVA + off): descriptor table at 0, avail ring at
0x1000, used ring at 0x2000, indirect tables at 0x3000, request headers and
status bytes at 0x10000, data from 0x20000. Queue 1 (multiqueue), when set
up with setup_queue(1), has its rings 0x4000 further (at 0x4000, 0x5000,
0x6000) and its own kick and call eventfds; use_queue() picks the queue
request() goes to.
"""
import mmap
import os
import select
import socket
import struct
import time

GET_FEATURES, SET_FEATURES, SET_OWNER = 1, 2, 3
SET_MEM_TABLE = 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
GET_CONFIG = 24

F_INDIRECT, F_PROTOCOL, F_VERSION_1 = 1 << 28, 1 << 30, 1 << 32
F_EVENT_IDX = 1 << 29
P_MQ, P_REPLY_ACK, P_CONFIG = 1 << 0, 1 << 3, 1 << 9
NEED_REPLY = 0x8

T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
D_NEXT, D_WRITE, D_INDIRECT = 1, 2, 4

GPA = 0x40000000
UVA = 0x7f1200000000
DESC, AVAIL, USED, INDIRECT, HDR, DATA = 0, 0x1000, 0x2000, 0x3000, 0x10000, 0x20000


class Disconnected(Exception):
    pass


class Frontend:
    def __init__(self, path, mem_size=4 << 20, num=16, timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.mem_size = mem_size
        self.memfd = os.memfd_create("guest", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, mem_size)
        self.mem = mmap.mmap(self.memfd, mem_size)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.num = num
        self.avail_idx = 0
        self.used_seen = 0
        self.ring = 0          # offset of the current queue's rings
        self.queues = {}       # index -> [ring offset, kick, call, avail_idx, used_seen]

    def close(self):
        extra = [fd for q in self.queues.values() for fd in q[1:3]
                 if fd not in (self.kick, self.call)]
        for fd in [self.kick, self.call, self.memfd] + extra:
            try:
                os.close(fd)
            except OSError:
                pass
        self.mem.close()
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- messages ----------------------------------------------------------

    def send(self, req, payload=b"", fds=(), flags=1, size=None):
        hdr = struct.pack("<III", req, flags, len(payload) if size is None else size)
        if fds:
            socket.send_fds(self.s, [hdr + payload], list(fds))
        else:
            self.s.sendall(hdr + payload)

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            try:
                chunk = self.s.recv(n - len(b))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Disconnected("the backend closed the connection")
            b += chunk
        return b

    def reply(self, req):
        r, flags, size = struct.unpack("<III", self.recv_exact(12))
        if r != req or not flags & 0x4:
            raise AssertionError(f"reply to {r} flags {flags:#x}, expected a reply to {req}")
        return self.recv_exact(size)

    def get_u64(self, req):
        self.send(req)
        return struct.unpack("<Q", self.reply(req))[0]

    def set_u64(self, req, v, ack=False):
        self.send(req, struct.pack("<Q", v), flags=1 | (NEED_REPLY if ack else 0))
        if ack:
            return struct.unpack("<Q", self.reply(req))[0]
        return None

    def state(self, req, index, num, ack=False):
        self.send(req, struct.pack("<II", index, num), flags=1 | (NEED_REPLY if ack else 0))
        if ack:
            return struct.unpack("<Q", self.reply(req))[0]
        return None

    def mem_table(self, regions=None, fds=None, ack=True):
        """regions: [(gpa, size, uva, mmap_offset)], default the whole memfd."""
        if regions is None:
            regions = [(GPA, self.mem_size, UVA, 0)]
        if fds is None:
            fds = [self.memfd] * len(regions)
        p = struct.pack("<II", len(regions), 0)
        for r in regions:
            p += struct.pack("<QQQQ", *r)
        self.send(SET_MEM_TABLE, p, fds=fds, flags=1 | (NEED_REPLY if ack else 0))
        if ack:
            return struct.unpack("<Q", self.reply(SET_MEM_TABLE))[0]
        return None

    def vring_addr(self, index=0, desc=UVA + DESC, used=UVA + USED, avail=UVA + AVAIL):
        self.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", index, 0, desc, used, avail, 0))

    def get_config(self, size=60):
        self.send(GET_CONFIG, struct.pack("<III", 0, size, 0) + bytes(size))
        p = self.reply(GET_CONFIG)
        off, n, _ = struct.unpack("<III", p[:12])
        return p[12:12 + n]

    def negotiate(self):
        feats = self.get_u64(GET_FEATURES)
        want = F_VERSION_1 | F_INDIRECT | F_PROTOCOL
        if feats & want != want:
            raise AssertionError(f"features {feats:#x} lack {want:#x}")
        self.set_u64(SET_FEATURES, want)
        proto = self.get_u64(GET_PROTOCOL_FEATURES)
        self.set_u64(SET_PROTOCOL_FEATURES, proto & (P_MQ | P_REPLY_ACK | P_CONFIG))
        return feats, proto

    def setup(self):
        """The whole start-up of queue 0, as QEMU does it."""
        feats, proto = self.negotiate()
        self.send(SET_OWNER)
        if self.mem_table() != 0:
            raise AssertionError("SET_MEM_TABLE not acknowledged")
        self.mem[0:0x3000] = bytes(0x3000)
        self.state(SET_VRING_NUM, 0, self.num)
        self.state(SET_VRING_BASE, 0, 0)
        self.vring_addr()
        self.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[self.kick])
        self.send(SET_VRING_CALL, struct.pack("<Q", 0), fds=[self.call])
        if self.state(SET_VRING_ENABLE, 0, 1, ack=True) != 0:
            raise AssertionError("SET_VRING_ENABLE not acknowledged")
        self.queues[0] = [0, self.kick, self.call, 0, 0]
        return feats, proto

    def setup_queue(self, index):
        """Start queue index (after setup()) with its rings 0x4000 * index further."""
        off = 0x4000 * index
        kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.mem[off:off + 0x3000] = bytes(0x3000)
        self.state(SET_VRING_NUM, index, self.num)
        self.state(SET_VRING_BASE, index, 0)
        self.vring_addr(index, UVA + off + DESC, UVA + off + USED, UVA + off + AVAIL)
        self.send(SET_VRING_KICK, struct.pack("<Q", index), fds=[kick])
        self.send(SET_VRING_CALL, struct.pack("<Q", index), fds=[call])
        if self.state(SET_VRING_ENABLE, index, 1, ack=True) != 0:
            raise AssertionError("SET_VRING_ENABLE not acknowledged")
        self.queues[index] = [off, kick, call, 0, 0]

    def use_queue(self, index):
        cur = self.queues.get(next(i for i, q in self.queues.items() if q[0] == self.ring))
        cur[3], cur[4] = self.avail_idx, self.used_seen
        self.ring, self.kick, self.call, self.avail_idx, self.used_seen = self.queues[index]

    # -- the ring ----------------------------------------------------------

    def put_desc(self, table_off, i, addr, length, flags, nxt=0):
        struct.pack_into("<QIHH", self.mem, table_off + 16 * i, addr, length, flags, nxt)

    def publish(self, head, idx=None):
        """Put head on the avail ring and kick; idx overrides the new avail index."""
        a = self.ring + AVAIL
        struct.pack_into("<H", self.mem, a + 4 + 2 * (self.avail_idx % self.num), head)
        self.avail_idx = (self.avail_idx + 1) & 0xffff
        struct.pack_into("<H", self.mem, a + 2, self.avail_idx if idx is None else idx)
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.mem, self.ring + USED + 2)[0]

    def wait_used(self):
        """Wait (call eventfd, deadline) for the next used entry: (id, len)."""
        deadline = time.monotonic() + self.timeout
        while self.used_idx() == self.used_seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no used entry within the deadline")
            select.select([self.call], [], [], min(left, 0.5))
            try:
                os.eventfd_read(self.call)
            except BlockingIOError:
                pass
        slot = self.used_seen % self.num
        self.used_seen = (self.used_seen + 1) & 0xffff
        return struct.unpack_from("<II", self.mem, self.ring + USED + 4 + 8 * slot)

    def chain(self, bufs, indirect=False):
        """bufs: [(gpa, len, flags)] without NEXT; lays them out as one chain
        (in the descriptor table, or in an indirect table) and returns its head."""
        table = INDIRECT if indirect else self.ring + DESC
        for i, (addr, length, flags) in enumerate(bufs):
            last = i == len(bufs) - 1
            self.put_desc(table, i, addr, length, flags | (0 if last else D_NEXT), i + 1)
        if indirect:
            self.put_desc(self.ring + DESC, 0, GPA + INDIRECT, 16 * len(bufs), D_INDIRECT)
        return 0

    def request(self, typ, sector=0, out=b"", in_len=0, split=1, indirect=False):
        """One virtio-blk request; returns (status, data read, used length)."""
        struct.pack_into("<IIQ", self.mem, HDR, typ, 0, sector)
        bufs = [(GPA + HDR, 16, 0)]
        for data, flags in ((out, 0), (bytes(in_len), D_WRITE)):
            if not data:
                continue
            self.mem[DATA:DATA + len(data)] = data
            step = len(data) // split
            for k in range(split):
                a = k * step
                b = len(data) if k == split - 1 else a + step
                bufs.append((GPA + DATA + a, b - a, flags))
        self.mem[HDR + 0x100] = 0xff
        bufs.append((GPA + HDR + 0x100, 1, D_WRITE))
        self.publish(self.chain(bufs, indirect))
        head, used_len = self.wait_used()
        if head != 0:
            raise AssertionError(f"used id {head}, expected 0")
        return self.mem[HDR + 0x100], bytes(self.mem[DATA:DATA + in_len]), used_len

    def expect_disconnect(self):
        """True once the backend closes the socket (within the timeout)."""
        try:
            while True:
                if not self.s.recv(4096):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
