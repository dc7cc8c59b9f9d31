#!/usr/bin/python3
"""Seed corpus for fuzz_vhost (fuzz/fuzz_vhost.c): vhost-user messages
(first byte: the number of descriptors, < 0x40), inflight regions (first
byte 0x40..0x7f: 2^(b & 7) descriptors, bit 0x08 a ring of half that; then
the used ring's index, then the queue's block) and split rings in guest
memory (first byte >= 0x80: 2^min(b & 7, 4) entries, bit 0x40 allows
indirect descriptors; the ring's layout is fuzz_vhost.c's: guest memory at
0x100000, descriptors at +0, avail at +1024, used at +2048).
Valid ones, and the broken kinds the daemon must refuse.
usage: make_vhost_corpus.py FUZZ_DIR
"""
import os
import struct
import sys

GPA = 0x100000


def msg(req, payload=b"", flags=1):
    return struct.pack("<III", req, flags, len(payload)) + payload


def region(gpa, size, uva, off):
    return struct.pack("<QQQQ", gpa, size, uva, off)


def messages():
    st = lambda i, n: struct.pack("<II", i, n)  # noqa: E731
    yield "get_features", 0, msg(1)
    yield "set_features", 0, msg(2, struct.pack("<Q", 1 << 32 | 1 << 30))
    yield "mem_table_1", 1, msg(5, struct.pack("<II", 1, 0) + region(0, 1 << 20, 0x7f0000000000, 0))
    yield "mem_table_2", 2, msg(5, struct.pack("<II", 2, 0) + region(0, 1 << 20, 0x7f0000000000, 0)
                                + region(1 << 32, 1 << 20, 0x7f0000100000, 1 << 20))
    yield "mem_table_overlap", 2, msg(5, struct.pack("<II", 2, 0) + region(0, 1 << 20, 0, 0)
                                      + region(4096, 1 << 20, 1 << 30, 0))
    yield "mem_table_wrap", 1, msg(5, struct.pack("<II", 1, 0) + region(2**64 - 4096, 8192, 0, 0))
    yield "mem_table_fd_mismatch", 0, msg(5, struct.pack("<II", 1, 0) + region(0, 4096, 0, 0))
    yield "vring_num", 0, msg(8, st(0, 256))
    yield "vring_num_bad", 0, msg(8, st(0, 100))
    yield "vring_addr", 0, msg(9, struct.pack("<IIQQQQ", 0, 0, 0x1000, 0x3000, 0x2000, 0))
    yield "vring_addr_misaligned", 0, msg(9, struct.pack("<IIQQQQ", 0, 0, 0x1001, 0x3000, 0x2000, 0))
    yield "vring_base", 0, msg(10, st(0, 0))
    yield "get_vring_base", 0, msg(11, st(7, 0))
    yield "vring_index_bad", 0, msg(11, st(99, 0))
    yield "kick", 1, msg(12, struct.pack("<Q", 0))
    yield "kick_nofd", 0, msg(12, struct.pack("<Q", 0x100))
    yield "call_extra_bits", 1, msg(13, struct.pack("<Q", 1 << 40))
    yield "get_protocol_features", 0, msg(15)
    yield "set_protocol_features", 0, msg(16, struct.pack("<Q", 1 << 9 | 1 << 3 | 1))
    yield "get_queue_num", 0, msg(17)
    yield "vring_enable", 0, msg(18, st(0, 1))
    yield "get_config", 0, msg(24, struct.pack("<III", 0, 60, 0) + bytes(60))
    yield "get_config_beyond", 0, msg(24, struct.pack("<III", 250, 60, 0) + bytes(60))
    yield "bad_version", 0, msg(1, flags=2)
    yield "reply_flag", 0, msg(1, flags=5)
    yield "size_lies", 0, struct.pack("<III", 2, 1, 400) + bytes(8)
    yield "unknown_request", 0, msg(99)
    yield "short", 0, b"\x01\x00\x00"
    infl = lambda size, off, nq, qs: struct.pack("<QQHH4x", size, off, nq, qs)  # noqa: E731
    yield "get_inflight", 0, msg(31, infl(0, 0, 1, 128))
    yield "get_inflight_bad_size", 0, msg(31, infl(0, 0, 1, 100))
    yield "get_inflight_short", 0, msg(31, infl(0, 0, 1, 128)[:20])
    yield "set_inflight", 1, msg(32, infl(2 * 2112, 0, 2, 128))
    yield "set_inflight_size_lies", 1, msg(32, infl(4096, 0, 2, 128))
    yield "set_inflight_wraps", 1, msg(32, infl(2112, 2**64 - 4096, 1, 128))
    yield "set_inflight_no_fd", 0, msg(32, infl(2112, 0, 1, 128))
    yield "set_inflight_queues", 1, msg(32, infl(0, 0, 0, 128))


def desc(addr, length, flags, nxt):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def ring(descs, heads, num):
    mem = bytearray(4096)
    for i, d in enumerate(descs):
        mem[16 * i:16 * i + 16] = d
    struct.pack_into("<HH", mem, 1024, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", mem, 1028 + 2 * i, h)
    return bytes(mem)


def rings():
    data = GPA + 3072
    # num 4 (mode & 7 == 2): a request with header, data and status
    yield "ring_chain", 0x82, ring([desc(data, 16, 1, 1), desc(data + 16, 512, 3, 2),
                                    desc(data + 600, 1, 2, 0)], [0], 4)
    yield "ring_two_chains", 0x82, ring([desc(data, 16, 0, 0), desc(data + 16, 1, 2, 0)], [0, 1], 4)
    yield "ring_loop", 0x82, ring([desc(data, 16, 1, 1), desc(data, 16, 1, 0)], [0], 4)
    # zero-length buffers: only the loop check ends this walk
    yield "ring_loop_empty", 0x82, ring([desc(data, 0, 1, 1), desc(data, 0, 1, 0)], [0], 4)
    yield "ring_outside", 0x82, ring([desc(0x10, 16, 0, 0)], [0], 4)
    yield "ring_crosses_end", 0x82, ring([desc(GPA + 8000, 4096, 0, 0)], [0], 4)
    yield "ring_beyond", 0x82, ring([desc(GPA + 16384, 16, 0, 0)], [0], 4)
    yield "ring_wraps", 0x82, ring([desc(2**64 - 8, 16, 0, 0)], [0], 4)
    yield "ring_bad_head", 0x82, ring([desc(data, 16, 0, 0)], [9], 4)
    yield "ring_idx_runs_ahead", 0x82, ring([desc(data, 16, 0, 0)], [0] * 9, 4)
    yield "ring_write_then_read", 0x82, ring([desc(data, 1, 3, 1), desc(data, 16, 0, 0)], [0], 4)
    # indirect (bit 0x40): a table of 3 at +3072
    table = desc(data + 64, 16, 1, 1) + desc(data + 80, 512, 3, 2) + desc(data + 700, 1, 2, 0)
    mem = bytearray(ring([desc(GPA + 3072, len(table), 4, 0)], [0], 4))
    mem[3072:3072 + len(table)] = table
    yield "ring_indirect", 0xc2, bytes(mem)
    yield "ring_indirect_not_negotiated", 0x82, bytes(mem)
    mem2 = bytearray(mem)
    mem2[3072:3072 + 16] = desc(GPA + 3072, 48, 4, 0)
    yield "ring_indirect_nested", 0xc2, bytes(mem2)
    mem3 = bytearray(mem)
    mem3[3072 + 14:3072 + 16] = struct.pack("<H", 0)
    mem3[3072 + 12:3072 + 14] = struct.pack("<H", 1)
    mem3[3072 + 16 + 12:3072 + 16 + 16] = struct.pack("<HH", 1, 0)
    yield "ring_indirect_loop", 0xc2, bytes(mem3)


def inflight_block(qs, version=1, desc_num=None, last=0, used=0, marks=()):
    b = bytearray((16 + 16 * qs + 63) & ~63)
    struct.pack_into("<QHHHH", b, 0, 0, version, qs if desc_num is None else desc_num, last, used)
    for i, fl, counter in marks:
        struct.pack_into("<B5xHQ", b, 16 + 16 * i, fl, 0, counter)
    return bytes(b)


def inflights():
    u = lambda i: struct.pack("<H", i)  # noqa: E731
    # 2^3 = 8 descriptors
    yield "inflight_fresh", 0x43, u(0) + inflight_block(8, version=0)
    yield "inflight_two", 0x43, u(5) + inflight_block(8, used=5, marks=[(2, 1, 9), (6, 1, 8)])
    yield "inflight_crash_window", 0x43, u(6) + inflight_block(8, last=2, used=5,
                                                              marks=[(2, 1, 9), (6, 1, 10)])
    yield "inflight_bad_flag", 0x43, u(0) + inflight_block(8, marks=[(1, 7, 0)])
    yield "inflight_dup_counter", 0x43, u(0) + inflight_block(8, marks=[(1, 1, 4), (3, 1, 4)])
    yield "inflight_desc_num", 0x43, u(0) + inflight_block(8, desc_num=9)
    yield "inflight_version", 0x43, u(0) + inflight_block(8, version=2)
    yield "inflight_last_past", 0x43, u(1) + inflight_block(8, last=200)
    # a ring of 4 in a region of 8: a mark at 6 is past the ring
    yield "inflight_past_ring", 0x4b, u(0) + inflight_block(8, marks=[(6, 1, 0)])


def main():
    out = os.path.join(sys.argv[1], "corpus-vhost")
    os.makedirs(out, exist_ok=True)
    for name, b0, body in list(messages()) + list(rings()) + list(inflights()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([b0]) + body)


if __name__ == "__main__":
    main()
