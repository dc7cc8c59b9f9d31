#!/usr/bin/env python3
"""make_corpus.py - writes fuzz/corpus/: seed client byte streams for
fuzz_nbd (valid sessions of each shape plus a few hostile ones). Run it
again after changing it; the files are committed."""
import os
import struct

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def name_data(name, *reqs):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(reqs)) + b"".join(
        struct.pack(">H", r) for r in reqs)


def meta(name, *queries):
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


def req(typ, off, length, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, typ, cookie, off, length) + payload


FLAGS = struct.pack(">I", 3)
SR = opt(8)
SEEDS = {
    "go_simple": FLAGS + opt(7, name_data("vm", 3)) + req(0, 0, 4096) +
    req(1, 4096, 512, 1, 2, b"\xaa" * 512) + req(3, 0, 0) + req(2, 0, 0),
    "go_structured_meta": FLAGS + SR + opt(10, meta("vm", "base:allocation")) +
    opt(7, name_data("vm", 3, 1, 2)) + req(7, 0, 65536, 8) + req(0, 0, 512, 4) +
    req(6, 0, 8192, 2) + req(6, 0, 8192, 16) + req(4, 0, 4096, 1) + req(5, 0, 4096),
    "export_name_old": struct.pack(">I", 0) + opt(1, b"vm") + req(0, 0, 512),
    "export_name_nozeroes": struct.pack(">I", 2) + opt(1, b"vm") + req(1, 0, 1024, 0, 1,
                                                                         bytes(1024)),
    "info_list_abort": FLAGS + opt(3) + opt(6, name_data("", 0, 1, 2, 3)) +
    opt(9, meta("vm")) + opt(9, meta("vm", "base:", "qemu:x")) + opt(2),
    "unsupported_options": FLAGS + opt(5) + opt(11) + opt(0x1234, b"junk") + opt(2),
    "errors_in_transmission": FLAGS + opt(7, name_data("vm")) + req(0, 1 << 40, 512) +
    req(0, 1, 512) + req(0x99, 0, 0) + req(1, 1 << 40, 512, 0, 1, bytes(512)) + req(3, 1, 0),
    "bad_request_magic": FLAGS + opt(7, name_data("vm")) + b"\x00" * 28,
    "huge_write": FLAGS + opt(7, name_data("vm")) + req(1, 0, 0xFFFFFFFF),
    "bad_names": FLAGS + opt(7, name_data("../x")) + opt(6, name_data(".h")) +
    opt(7, name_data("a" * 200)) + opt(1, b"a/b"),
    "meta_malformed": FLAGS + SR + opt(10, struct.pack(">I", 0xFFFFFFFF)) +
    opt(10, meta("vm") + b"x") + opt(9, struct.pack(">II", 0, 5)),
    "readonly_writes": FLAGS + opt(7, name_data("a")) + req(1, 0, 512, 0, 1, bytes(512)) +
    req(4, 0, 512) + req(6, 0, 512, 2),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"wrote {len(SEEDS)} seeds to {here}")
