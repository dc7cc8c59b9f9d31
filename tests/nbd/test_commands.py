#!/usr/bin/python3
"""test_commands.py - every NBD command, flag and error of glidefsd, driven
with python3-libnbd (the library behind nbdsh): edge cases at the end of the
export, zero-length and 32 MiB requests, trim/zero then read, block status,
simple and structured replies, pipelining, multi-conn consistency, export
name rules and the default export.

usage: test_commands.py GLIDEFSD
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need_libnbd()
import nbd  # noqa: E402

EINVAL, EPERM, ENOSPC, EOVERFLOW, ENOTSUP = 22, 1, 28, 75, 95
MiB = 1024 * 1024
SIZE = 64 * MiB
BLOCK = 128 * 1024  # the library's default block size: whole blocks become holes

t = nbdtest.Checker()


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (n // 256) + bytes(n % 256)


def extents(h, length, offset, flags=0):
    """base:allocation extents as [(len, flags)]."""
    out = []

    def cb(metacontext, off, entries, err):
        if metacontext == "base:allocation":
            out.extend(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(length, offset, cb, flags)
    return out


def status_at(h, offset, length=512):
    return extents(h, length, offset, nbd.CMD_FLAG_REQ_ONE)[0][1]


def check_flags_and_sizes(h):
    t.eq(h.get_size(), SIZE, "export size")
    t.ok(not h.is_read_only(), "read-write export is not READ_ONLY")
    for name in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache",
                 "can_df", "can_multi_conn"):
        t.ok(getattr(h, name)(), f"{name} advertised")
    t.ok(not h.is_rotational(), "not rotational")
    t.eq(h.get_block_size(nbd.SIZE_MINIMUM), 512, "minimum block size")
    t.eq(h.get_block_size(nbd.SIZE_PREFERRED), 4096, "preferred block size")
    t.eq(h.get_block_size(nbd.SIZE_MAXIMUM), 32 * MiB, "maximum payload")
    t.ok(h.can_meta_context("base:allocation"), "base:allocation negotiated")
    t.ok(h.get_structured_replies_negotiated(), "structured replies negotiated")


def check_io_edges(h):
    # Fresh export reads as zeroes and is one hole.
    t.eq(h.pread(4096, 0), bytes(4096), "never-written data reads as zeroes")
    t.eq(status_at(h, 0), 3, "never-written range is hole|zero")

    data = pattern(8192, 1)
    h.pwrite(data, 0, nbd.CMD_FLAG_FUA)
    t.eq(h.pread(8192, 0), data, "write FUA then read")
    t.eq(status_at(h, 0), 0, "written range is data")
    h.pread(512, 0, nbd.CMD_FLAG_FUA)
    t.ok(True, "FUA on READ is accepted")
    t.eq(h.pread(4096, 0, nbd.CMD_FLAG_DF), data[:4096], "READ with DF")

    # The last sector, and one past it.
    last = pattern(512, 9)
    h.pwrite(last, SIZE - 512)
    t.eq(h.pread(512, SIZE - 512), last, "last sector round trip")
    t.raises_errno(lambda: h.pread(512, SIZE), EINVAL, "read one sector past the end")
    t.raises_errno(lambda: h.pread(1024, SIZE - 512), EINVAL, "read straddling the end")
    t.raises_errno(lambda: h.pwrite(bytes(512), SIZE), ENOSPC, "write one sector past the end")
    t.raises_errno(lambda: h.pwrite(bytes(1024), SIZE - 512), ENOSPC, "write straddling the end")
    t.raises_errno(lambda: h.trim(1024, SIZE - 512), EINVAL, "trim past the end")
    t.raises_errno(lambda: h.zero(1024, SIZE - 512), ENOSPC, "zero past the end")
    t.raises_errno(lambda: h.cache(1024, SIZE - 512), EINVAL, "cache past the end")
    t.raises_errno(lambda: extents(h, 1024, SIZE - 512), EINVAL, "block status past the end")
    t.raises_errno(lambda: h.pread(512, 2**64 - 512), EINVAL, "read at offset 2^64-512")
    t.raises_errno(lambda: h.pread(1, SIZE), EINVAL, "read one byte past the end")
    t.raises_errno(lambda: h.pread(512, SIZE - 511), EINVAL, "read ending one byte past the end")
    t.raises_errno(lambda: h.pwrite(b"x", SIZE), ENOSPC, "write one byte past the end")
    t.raises_errno(lambda: h.pwrite(bytes(512), SIZE - 511), ENOSPC,
                   "write ending one byte past the end")
    t.eq(h.pread(512, SIZE - 512), last, "last sector intact after refused writes")

    # Alignment: 512 is the minimum block size.
    t.raises_errno(lambda: h.pread(100, 0), EINVAL, "unaligned read length")
    t.raises_errno(lambda: h.pread(512, 100), EINVAL, "unaligned read offset")
    t.raises_errno(lambda: h.pwrite(b"x" * 100, 0), EINVAL, "unaligned write length")
    t.raises_errno(lambda: h.trim(512, 1), EINVAL, "unaligned trim")
    t.eq(h.pread(8192, 0), data, "data intact after refused unaligned write")

    # Zero-length requests are harmless no-ops (block status needs a range).
    t.eq(h.pread(0, 0), b"", "zero-length read")
    h.pwrite(b"", 0)
    h.pwrite(b"", SIZE)
    h.trim(0, 4096)
    h.zero(0, 4096)
    h.cache(0, 0)
    t.ok(True, "zero-length write/trim/zero/cache succeed")
    t.raises_errno(lambda: extents(h, 0, 0), EINVAL, "zero-length block status")
    t.eq(h.pread(8192, 0), data, "zero-length requests changed nothing")


def check_big(h):
    big = os.urandom(32 * MiB)
    h.pwrite(big, 16 * MiB)
    t.ok(h.pread(32 * MiB, 16 * MiB) == big, "32 MiB write and read")
    t.raises_errno(lambda: h.pread(32 * MiB + 512, 0), EOVERFLOW,
                   "read over the maximum payload (structured) is EOVERFLOW")
    h.trim(32 * MiB, 16 * MiB)  # no payload: longer than the maximum is fine
    t.eq(h.pread(MiB, 20 * MiB), bytes(MiB), "trim then read (large trim)")
    h.flush()


def check_trim_zero(h):
    base = 4 * BLOCK
    h.pwrite(pattern(4 * BLOCK, 3), base)
    h.trim(2 * BLOCK, base + BLOCK)
    t.eq(h.pread(2 * BLOCK, base + BLOCK), bytes(2 * BLOCK), "trim then read: zeroes")
    t.eq(h.pread(BLOCK, base), pattern(4 * BLOCK, 3)[:BLOCK], "data before trimmed range kept")
    t.eq(status_at(h, base + BLOCK, 2 * BLOCK), 3, "trimmed whole blocks are hole|zero")
    ex = extents(h, 4 * BLOCK, base)
    t.eq(ex, [(BLOCK, 0), (2 * BLOCK, 3), (BLOCK, 0)], "block status: data, hole, data")
    t.eq(len(extents(h, 4 * BLOCK, base, nbd.CMD_FLAG_REQ_ONE)), 1, "REQ_ONE gives one extent")

    # Partial-block trim and zero still read back as zeroes.
    h.pwrite(pattern(BLOCK, 5), base)
    h.trim(4096, base + 512, nbd.CMD_FLAG_FUA)
    t.eq(h.pread(4096, base + 512), bytes(4096), "partial trim (FUA) then read: zeroes")
    t.eq(h.pread(512, base), pattern(BLOCK, 5)[:512], "bytes around a partial trim kept")

    z = base + 8 * BLOCK
    for flags, what in ((0, "zero"), (nbd.CMD_FLAG_FUA, "zero FUA"),
                        (nbd.CMD_FLAG_NO_HOLE, "zero NO_HOLE"),
                        (nbd.CMD_FLAG_FAST_ZERO, "zero FAST_ZERO")):
        h.pwrite(pattern(2 * BLOCK, 7), z)
        h.zero(BLOCK + 4096, z + 512, flags)
        t.eq(h.pread(BLOCK + 4096, z + 512), bytes(BLOCK + 4096), f"{what} then read: zeroes")
        t.eq(h.pread(512, z), pattern(2 * BLOCK, 7)[:512], f"{what}: data before kept")
    t.raises_errno(lambda: h.zero(4096, z, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE),
                   ENOTSUP, "FAST_ZERO with NO_HOLE fails fast with ENOTSUP")
    h.cache(4 * BLOCK, base)
    t.ok(True, "CACHE on written data")
    h.flush()


def check_bad_flags(h):
    t.raises_errno(lambda: h.pread(512, 0, nbd.CMD_FLAG_NO_HOLE), EINVAL, "NO_HOLE on READ")
    t.raises_errno(lambda: h.pwrite(bytes(512), 0, nbd.CMD_FLAG_REQ_ONE), EINVAL,
                   "REQ_ONE on WRITE")
    t.raises_errno(lambda: h.flush(nbd.CMD_FLAG_DF), EINVAL, "DF on FLUSH")
    try:
        h.pread(512, 0, 1 << 9)  # an undefined flag bit
        t.ok(False, "unknown command flag refused")
    except nbd.Error as e:
        t.ok(e.errno in (EINVAL, "EINVAL"), "unknown command flag refused")
    except Exception:
        pass  # this libnbd refuses it client-side


def check_simple(d):
    h = d.connect("vm", structured=False)
    t.ok(not h.get_structured_replies_negotiated(), "simple replies when not requested")
    t.ok(not h.can_df(), "DF not advertised without structured replies")
    t.eq(h.pread(8192, 0)[:512], pattern(8192, 1)[:512], "simple reply read")
    t.raises_errno(lambda: h.pread(512, SIZE), EINVAL, "simple reply error past the end")
    t.raises_errno(lambda: h.pread(32 * MiB + 512, 0), EINVAL,
                   "read over the maximum payload (simple) is EINVAL")
    t.ok(h.pread(32 * MiB, 0) is not None, "32 MiB read with simple replies")
    h.shutdown()


def check_pipelined(d):
    h = d.connect("vm")
    n = 64
    bufs, cookies = [], []
    for i in range(n):
        h.aio_pwrite(pattern(4096, i), (i * 2) * 4096)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for i in range(n):
        b = nbd.Buffer(4096)
        bufs.append(b)
        cookies.append(h.aio_pread(b, (i * 2) * 4096))
    # Add a large read in the middle of the queue.
    big = nbd.Buffer(8 * MiB)
    big_cookie = h.aio_pread(big, 16 * MiB)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    good = all(h.aio_command_completed(c) for c in cookies) and h.aio_command_completed(big_cookie)
    t.ok(good, f"{n} pipelined reads and a large read completed")
    t.ok(all(bufs[i].to_bytearray() == pattern(4096, i) for i in range(n)),
         "pipelined reads return the right data")
    h.shutdown()


def check_multi_conn(d):
    hs = [d.connect("mc") for _ in range(4)]
    t.ok(all(h.can_multi_conn() for h in hs), "CAN_MULTI_CONN on every connection")
    for i, h in enumerate(hs):
        h.pwrite(pattern(BLOCK, 20 + i), i * BLOCK)
    hs[3].flush()  # covers the writes completed on all four
    ok = all(hs[(i + 1) % 4].pread(BLOCK, i * BLOCK) == pattern(BLOCK, 20 + i) for i in range(4))
    t.ok(ok, "writes on one connection are seen by the others")
    hs[0].trim(BLOCK, 0)
    t.eq(hs[2].pread(BLOCK, 0), bytes(BLOCK), "trim on one connection, zeroes on another")
    for h in hs:
        h.shutdown()


def check_names(d):
    bad_names = ("", ".hidden", "a/b", "../etc", "x" * 129, "sp ace", "tab\tname", "\u00e9")
    for bad in bad_names:
        try:
            h = d.connect(bad)
            h.shutdown()
            t.ok(False, f"name {bad!r} refused")
        except nbd.Error:
            t.ok(True, f"name {bad!r} refused")
    # Refused with an error reply in negotiation, and the session goes on.
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_unix(d.sock)
    h.set_export_name("../x")
    try:
        h.opt_info()
        t.ok(False, "opt_info on a bad name fails")
    except nbd.Error:
        t.ok(True, "opt_info on a bad name fails")
    h.set_export_name("x" * 128)
    h.opt_info()
    t.eq(h.get_size(), SIZE, "128-character name is accepted (created on first use)")
    names = []
    h.opt_list(lambda name, desc: names.append(name))
    t.ok("vm" in names, f"NBD_OPT_LIST lists open exports ({names})")
    h.opt_abort()
    # Nothing named after a refused name exists anywhere.
    suspects = {".hidden", "a", "b", "etc", "x", "x" * 129, "sp ace", "tab\tname", "\u00e9"}
    found = []
    for root in (d.base, d.cache, d.store, os.path.join(d.store, "nbd")):
        if os.path.isdir(root):
            found += [os.path.join(root, n) for n in os.listdir(root) if n in suspects]
    t.eq(found, [], "refused names created nothing in the cache or the store")


def main():
    with nbdtest.Daemon() as d:
        d.start()
        h = d.connect("vm")
        check_flags_and_sizes(h)
        check_io_edges(h)
        check_big(h)
        check_trim_zero(h)
        check_bad_flags(h)
        h.shutdown()
        check_simple(d)
        check_pipelined(d)
        check_multi_conn(d)
        check_names(d)
        t.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")

    # The default export: an empty name maps to it.
    with nbdtest.Daemon(nbd_extra={"default_export": "dflt"}) as d:
        d.start()
        h = d.connect("")
        h.pwrite(pattern(4096, 42), 0)
        h.shutdown()
        h = d.connect("dflt")
        t.eq(h.pread(4096, 0), pattern(4096, 42), "empty export name maps to default_export")
        h.shutdown()
        t.eq(d.stop(), 0, "daemon exits 0")
    t.done()


if __name__ == "__main__":
    main()
