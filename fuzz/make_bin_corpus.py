#!/usr/bin/python3
"""Seed corpora for fuzz_segment, fuzz_manifest, fuzz_profile,
fuzz_cache_index and fuzz_dirty_index (docs/design.md 5.5, 5.7, 5.15, 6.6,
6.7).

Each seed starts with the reader byte of its target (fuzz_segment: 0 no
codec, 1 unsealed codec, 2 sealed codec; fuzz_manifest and fuzz_profile:
0 none, 1 sealed),
then an object written by these rules: valid ones, sealed ones MAC'd under
the targets' fixed keys (generation 1 = 32 x 0x41, 2 = 32 x 0x42) with
key generations, and truncated or bit-flipped variants.
usage: make_bin_corpus.py FUZZ_DIR
"""
import hashlib
import hmac
import os
import struct
import sys


def crc32c(b):
    crc = 0xFFFFFFFF
    for x in b:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def mac_key(gen):
    return hmac.new(bytes([0x40 + gen]) * 32, b"glidefs header mac v1", hashlib.sha256).digest()


def segment(sealed, key_gen=0, mac_gen=2):
    bs = 4096
    n = 3
    hlen = 64 + 40 * n
    hs = hlen + 4 + (32 if sealed else 0)
    plen = bs + 28 if sealed else bs
    pay = bytes((i * 7) & 0xFF for i in range(plen))
    pcrc = crc32c(pay)
    flags = (0x4 if sealed else 0) | 0x8
    ents = [(1, 5, 0, 0, 0, 0, 1),            # a hole
            (2, 6, hs, plen, bs, pcrc, flags),
            (9, 7, hs + plen + 4, plen, bs, pcrc, flags)]
    h = b"GFSSEG01" + struct.pack("<IIQQIIII", 1, 1 if sealed else 0, 1, 1, n, bs, hlen, key_gen)
    h += b"\x11" * 16
    for e in ents:
        h += struct.pack("<QQIIIIII", *e, 0)
    out = h + struct.pack("<I", crc32c(h))
    if sealed:
        out += hmac.new(mac_key(mac_gen), h, hashlib.sha256).digest()
    body = pay + struct.pack("<I", pcrc)
    return out + body + body


def manifest(sealed, keygens=None, mac_gen=2, link=None, flag_delta=None):
    """link: (prev_epoch, prev_seq, base_seq, depth) makes a delta (flag 0x8
    and the 32-byte link after the fixed header); flag_delta overrides the
    flag (misuse: a link without it, or it without a link)."""
    segs = [(1, 1), (1, 2)]
    ents = [(0, 3, 0, 108, 4096, 0, 0x8), (1, 0, 0xFFFFFFFF, 0, 0, 0, 0x1),
            (7, 9, 1, 5000, 900, 0, 0x2 | 0x8 | (0x4 if sealed else 0))]
    body = b"".join(struct.pack("<QQ", *s) for s in segs)
    body += b"".join(struct.pack("<QQIIII", *e[:6]) for e in ents)
    body += b"".join(struct.pack("<I", e[6]) for e in ents)
    flags = 0x2 if sealed else 0
    if flag_delta if flag_delta is not None else link:
        flags |= 0x8
    if keygens:
        body += b"".join(struct.pack("<I", k) for k in keygens)
        flags |= 0x4
    body += struct.pack("<I", crc32c(body))
    fixed = b"GFSMAN01" + struct.pack("<IIQQQIIQI", 1, flags, 1, 2, 64 * 4096, len(segs), 4096,
                                      len(ents), len(body))
    fixed += struct.pack("<I", crc32c(fixed))
    lk = b""
    if link:
        lk = struct.pack("<QQQI", *link)
        lk += struct.pack("<I", crc32c(lk))
    out = fixed + lk + body
    if sealed:
        out += hmac.new(mac_key(mac_gen), out, hashlib.sha256).digest()
    return out


def cache_index(entries, bs=131072, uuid=b"\x11" * 16, version=1, count=None, pad=0,
                crc=None):
    """A parked cache's index (lib/cache_index.h): header, 32-byte entries, CRC."""
    b = b"GFSCIDX1" + struct.pack("<II", version, bs) + uuid
    b += struct.pack("<QQ", len(entries) if count is None else count, 0)
    for blk, ep, sq, off in entries:
        b += struct.pack("<QQQII", blk, ep, sq, off, pad)
    return b + struct.pack("<I", crc32c(b) if crc is None else crc)


def dirty_index(files, blocks, bs=131072, uuid=b"\x11" * 16, boot=b"\x33" * 16,
                size=64 * 131072, epoch=3, next_seq=1000, next_id=None, cur_id=None,
                version=1, nblocks=None, crc=None):
    """A closed volume's dirty index (lib/dirty_index.h). files: (id, size,
    used); blocks: (block, first_seq, [(start, count, flags, file, seq,
    data_off)])."""
    if next_id is None:
        next_id = files[-1][0] + 1 if files else 1
    if cur_id is None:
        cur_id = files[-1][0] if files else 0
    nexts = sum(len(b[2]) for b in blocks)
    b = b"GFSDIDX1" + struct.pack("<II", version, bs) + uuid + boot
    b += struct.pack("<QQQQQIIQQ", size, epoch, next_seq, next_id, cur_id, len(files), 0,
                     len(blocks) if nblocks is None else nblocks, nexts)
    for i, (fid, fsize, used) in enumerate(files):
        b += struct.pack("<QQQQQQQII", fid, fsize, used, 2049, 1000 + i, 1700000000 * 10**9,
                         1700000000 * 10**9 + 5, 0x1234 + i, 0)
    for blk, first_seq, exts in blocks:
        b += struct.pack("<QQqqII", blk, first_seq, 1000, 2000, len(exts), 0)
    for _, _, exts in blocks:
        for start, count, flags, f, seq, off in exts:
            b += struct.pack("<IIIIQQ", start, count, flags, f, seq, off)
    return b + struct.pack("<I", crc32c(b) if crc is None else crc)


def profile(blocks, sealed=False, mac_gen=2, size=64 * 4096, count=None, version=1):
    n = len(blocks) if count is None else count
    out = b"GFSPRF01" + struct.pack("<IIQII", version, 1 if sealed else 0, size, 4096, n)
    out += b"".join(struct.pack("<Q", b) for b in blocks)
    out += struct.pack("<I", crc32c(out))
    if sealed:
        out += hmac.new(mac_key(mac_gen), out, hashlib.sha256).digest()
    return out


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    root = sys.argv[1]
    sd, md = os.path.join(root, "corpus-segment"), os.path.join(root, "corpus-manifest")
    plain, sealed1 = segment(False), segment(True, key_gen=1, mac_gen=1)
    seeds = {
        "plain_none": b"\x00" + plain,
        "plain_unsealed": b"\x01" + plain,
        "sealed_gen1": b"\x02" + sealed1,
        "sealed_gen2": b"\x02" + segment(True, key_gen=2),
        "sealed_legacy": b"\x02" + segment(True, key_gen=0, mac_gen=1),
        "bad_gen_unsealed": b"\x01" + segment(False, key_gen=1),
        "bad_truncated": b"\x02" + sealed1[:150],
        "bad_flip": b"\x00" + plain[:20] + bytes([plain[20] ^ 1]) + plain[21:],
    }
    for k, v in seeds.items():
        write(sd, k, v)
    mseeds = {
        "plain": b"\x00" + manifest(False),
        "sealed": b"\x01" + manifest(True, mac_gen=1),
        "sealed_keygen": b"\x01" + manifest(True, keygens=[0, 2]),
        "bad_keygen_no_mac": b"\x00" + manifest(False, keygens=[1, 1]),
        "bad_truncated": b"\x01" + manifest(True, keygens=[1, 2])[:90],
        # deltas (epoch 1, seq 2): over the base 1-1, and deeper in a chain
        "delta": b"\x00" + manifest(False, link=(1, 1, 1, 1)),
        "delta_sealed": b"\x01" + manifest(True, keygens=[0, 2], link=(1, 1, 0, 2)),
        "bad_delta_self": b"\x00" + manifest(False, link=(1, 2, 2, 1)),
        "bad_delta_epoch": b"\x00" + manifest(False, link=(0, 1, 1, 1)),
        "bad_delta_depth": b"\x00" + manifest(False, link=(1, 1, 0, 1)),
        "bad_delta_noflag": b"\x00" + manifest(False, link=(1, 1, 1, 1), flag_delta=False),
        "bad_delta_nolink": b"\x00" + manifest(False, flag_delta=True),
        "bad_delta_truncated": b"\x00" + manifest(False, link=(1, 1, 1, 1))[:80],
    }
    for k, v in mseeds.items():
        write(md, k, v)
    pd = os.path.join(root, "corpus-profile")
    pseeds = {
        "plain": b"\x00" + profile([5, 0, 63, 7]),
        "empty": b"\x00" + profile([]),
        "sealed": b"\x01" + profile([1, 2, 3], sealed=True, mac_gen=1),
        "sealed_gen2": b"\x01" + profile(list(range(40)), sealed=True),
        "bad_dup": b"\x00" + profile([1, 2, 1]),
        "bad_past_end": b"\x00" + profile([64]),
        "bad_count": b"\x00" + profile([1, 2], count=3),
        "bad_version": b"\x00" + profile([1], version=2),
        "bad_no_mac": b"\x01" + profile([1]),
        "bad_truncated": b"\x01" + profile([1, 2, 3], sealed=True)[:50],
    }
    for k, v in pseeds.items():
        write(pd, k, v)
    cd = os.path.join(root, "corpus-cache_index")
    cseeds = {
        "one": cache_index([(3, 1, 7, 0)]),
        "empty": cache_index([]),
        "several": cache_index([(0, 1, 1, 0), (9, 1, 2, 131072 + 29), (63, (1 << 56) | 2, 5, 40)]),
        "bad_crc": cache_index([(1, 1, 1, 0)], crc=0),
        "bad_count": cache_index([(1, 1, 1, 0)], count=2),
        "bad_uuid": cache_index([(1, 1, 1, 0)], uuid=b"\x22" * 16),
        "bad_block_size": cache_index([(1, 1, 1, 0)], bs=4096),
        "bad_version": cache_index([(1, 1, 1, 0)], version=2),
        "bad_pad": cache_index([(1, 1, 1, 0)], pad=1),
        "bad_truncated": cache_index([(1, 1, 1, 0), (2, 1, 1, 0)])[:70],
    }
    for k, v in cseeds.items():
        write(cd, k, v)
    dd = os.path.join(root, "corpus-dirty_index")
    files = [(1, 1 << 20, 1 << 20), (2, 1 << 20, 300000)]
    blocks = [(0, 5, [(0, 8, 0, 0, 5, 40), (8, 16, 1, 1, 9, 0)]),
              (63, 7, [(200, 56, 0, 1, 12, 100000)]),
              (9, 2, [(0, 256, 0, 0, 2, 5000)])]
    dseeds = {
        "none": dirty_index([], []),
        "files_only": dirty_index(files, []),
        "several": dirty_index(files, blocks),
        "no_cur": dirty_index(files, blocks, cur_id=0),
        "bad_crc": dirty_index(files, blocks, crc=0),
        "bad_count": dirty_index(files, blocks, nblocks=2),
        "bad_uuid": dirty_index(files, blocks, uuid=b"\x22" * 16),
        "bad_boot": dirty_index(files, blocks, boot=b"\x44" * 16),
        "bad_size": dirty_index(files, blocks, size=65 * 131072),
        "bad_version": dirty_index(files, blocks, version=2),
        "bad_overlap": dirty_index(files, [(0, 5, [(0, 8, 0, 0, 5, 40), (7, 2, 0, 0, 6, 9000)])]),
        "bad_past_used": dirty_index(files, [(1, 5, [(0, 8, 0, 1, 5, 299000)])]),
        "bad_file": dirty_index(files, [(1, 5, [(0, 8, 0, 2, 5, 40)])]),
        "bad_dup_block": dirty_index(files, [(1, 5, [(0, 8, 1, 0, 5, 0)]),
                                             (1, 6, [(9, 8, 1, 0, 6, 0)])]),
        "bad_seq": dirty_index(files, [(1, 5, [(0, 8, 1, 0, 1000, 0)])]),
        "bad_cur": dirty_index(files, blocks, cur_id=1),
        "bad_truncated": dirty_index(files, blocks)[:300],
    }
    for k, v in dseeds.items():
        write(dd, k, v)


if __name__ == "__main__":
    main()
