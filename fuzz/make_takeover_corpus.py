#!/usr/bin/python3
"""make_takeover_corpus.py - writes fuzz/corpus-takeover/: takeover state
messages (daemon/takeover_proto.h) an old glidefsd sends its successor,
valid ones and ones the decoder must refuse (names start with bad_)."""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-takeover")


def state(listeners=(), exports=(), conns=(), next_id=10, nfds=None, version=1,
          magic=b"GFSTKST1", extra=b""):
    body = b""
    for kind, path in listeners:
        p = path.encode()
        body += struct.pack(">BH", kind, len(p)) + p
    for name, flags in exports:
        n = name.encode()
        body += struct.pack(">B", len(n)) + n + struct.pack(">I", flags)
    for cid, size, eflags, flags, idx, peer, pending in conns:
        p = peer.encode()
        body += struct.pack(">QQHBIB", cid, size, eflags, flags, idx, len(p)) + p
        body += struct.pack(">I", len(pending)) + pending
    body += extra
    if nfds is None:
        nfds = 1 + len(listeners) + len(conns)
    hdr = magic + struct.pack(">IIIIIIQ", version, len(body), nfds, len(listeners),
                              len(conns), len(exports), next_id)
    return hdr + body


REQ = bytes.fromhex("25609513") + b"\0" * 24  # a request header, as read ahead
LST = [(0, "/run/glidefs.sock"), (1, ""), (2, "@glidefsd-takeover-0123456789abcdef")]
EXP = [("vm1", 0), ("vm-2", 2)]
CONNS = [(1, 1 << 26, 0x1ff, 3, 0, "unix", b""),
         (7, 1 << 20, 0x10b, 0, 1, "127.0.0.1:40000", REQ + REQ[:5])]



def dur(name, mode, max_ms, max_bytes):
    """One durability entry (set through the REST API) of the optional section."""
    n = name.encode()
    return struct.pack(">B", len(n)) + n + struct.pack(">IIQ", mode, max_ms, max_bytes)


DURS = b"DUR1" + struct.pack(">I", 2) + dur("vm1", 1, 0, 0) + dur("idle", 0, 5000, 1 << 30)

SEEDS = {
    "empty": state(),
    "listeners_only": state(LST),
    "full": state(LST, EXP, CONNS),
    "max_pending": state(LST[:1], EXP[:1], [(1, 4096, 1, 1, 0, "unix", b"x" * 65536)]),
    "hello": b"GFSTKHI1" + struct.pack(">II", 1, 1234),
    "ack": b"GFSTKOK1" + struct.pack(">II", 1, 0),
    "commit": b"GFSTKGO1" + struct.pack(">II", 1, 0),
    "bad_magic": state(LST, EXP, CONNS, magic=b"GFSTKST2"),
    "bad_version": state(LST, EXP, CONNS, version=2),
    "bad_nfds": state(LST, EXP, CONNS, nfds=2),
    "bad_trailing": state(LST, EXP, CONNS, extra=b"\0"),
    "bad_export_idx": state(LST, EXP, [(1, 4096, 1, 0, 2, "unix", b"")]),
    "bad_export_name": state(LST, [("../etc", 0)]),
    "bad_export_twice": state(LST, [("vm1", 0), ("vm1", 0)]),
    "bad_open_flags": state(LST, [("vm1", 1)]),
    "bad_id_zero": state(LST, EXP, [(0, 4096, 1, 0, 0, "unix", b"")]),
    "bad_id_next": state(LST, EXP, [(10, 4096, 1, 0, 0, "unix", b"")]),
    "bad_id_twice": state(LST, EXP, [CONNS[0], CONNS[0]]),
    "bad_flags": state(LST, EXP, [(1, 4096, 1, 8, 0, "unix", b"")]),
    "bad_meta_without_structured": state(LST, EXP, [(1, 4096, 1, 2, 0, "unix", b"")]),
    "bad_size": state(LST, EXP, [(1, 1000, 1, 0, 0, "unix", b"")]),
    "bad_pending": state(LST, EXP, [(1, 4096, 1, 0, 0, "unix", b"x" * 65537)]),
    "bad_listener_kind": state([(3, "/x")]),
    "bad_tcp_path": state([(1, "/x")]),
    "bad_unix_relative": state([(0, "x.sock")]),
    "bad_two_ctl": state([(2, "@a"), (2, "@b")]),
    "bad_ctl_file": state([(2, "/run/ctl")]),
    "bad_counts": state(LST, EXP, CONNS)[:24] + struct.pack(">I", 60000) +
    state(LST, EXP, CONNS)[28:],
    "bad_truncated": state(LST, EXP, CONNS)[:-3],
    "durability": state(LST, EXP, CONNS, extra=DURS),
    "bad_durability_mode": state(LST, EXP, CONNS, extra=b"DUR1" + struct.pack(">I", 1) +
                                 dur("vm1", 7, 0, 0)),
    "bad_durability_twice": state(LST, EXP, CONNS, extra=b"DUR1" + struct.pack(">I", 2) +
                                  dur("vm1", 1, 0, 0) * 2),
    "bad_durability_count": state(LST, EXP, CONNS, extra=b"DUR1" + struct.pack(">I", 9) +
                                  dur("vm1", 1, 0, 0)),
}

if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
