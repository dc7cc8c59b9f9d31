/*
 * segment.h — the segment object format: an immutable batch of blocks.
 *
 * Layout (all integers little-endian):
 *   fixed header (64 bytes)
 *     0  magic        "GFSSEG01" (8 bytes)
 *     8  version      u32 = 1
 *     12 flags        u32 (0, or GFS_SEG_HDR_MAC)
 *     16 epoch        u64
 *     24 seq          u64
 *     32 nblocks      u32 (<= GFS_SEG_MAX_BLOCKS)
 *     36 block_size   u32 (power of two, 4 KiB .. 4 MiB)
 *     40 header_len   u32 = 64 + 40 * nblocks
 *     44 key_gen      u32: 0, or on sealed volumes the data key generation
 *                     whose segment key seals the payloads (codec.h)
 *     48 volume_uuid  16 bytes
 *   entries[nblocks], 40 bytes each
 *     0  block_index  u64
 *     8  write_seq    u64  (newest journal sequence number folded into this block)
 *     16 offset       u32  (from the start of the object; >= header_len + 4;
 *                           0 for a hole)
 *     20 length       u32  (stored bytes; 0 for a hole; == raw_length unless
 *                           ZSTD or SEALED; <= GFS_SEG_MAX_STORED(block_size))
 *     24 raw_length   u32  (bytes after decoding; == block_size, or 0 for a hole)
 *     28 crc          u32  (CRC-32C of the stored bytes; 0 for a hole)
 *     32 flags        u32  (GFS_SEGF_HOLE alone, or any of GFS_SEGF_ZSTD,
 *                           GFS_SEGF_SEALED, GFS_SEGF_TRAILER; no other bits)
 *     36 reserved     u32 (0)
 *   header_crc        u32  CRC-32C of bytes [0, header_len)
 *   header_mac        32 bytes, only when flags has GFS_SEG_HDR_MAC:
 *                     HMAC-SHA256 of bytes [0, header_len) under the volume's
 *                     header MAC key (gfs_codec_mac, codec.h)
 *   payloads          the stored bytes of each non-hole block, at their offsets
 *                     (>= gfs_seg_header_size_mac(nblocks, has_mac)); with
 *                     GFS_SEGF_TRAILER each is followed by its CRC-32C (u32,
 *                     the entry's crc again), so the entry spans length + 4
 *
 * The trailer lets a ranged read of one payload check itself: the block map
 * then keeps no CRC in RAM for the block (blockmap.c), only where it is.
 * Segments written before the trailer existed have none; they still read,
 * checked against the CRC the map keeps for them.
 *
 * Decoding validates everything before trusting it: magic, version, counts,
 * lengths, every entry's [offset, offset+length) inside the object and past
 * the header, no overlaps, block indexes strictly increasing, header CRC, and
 * on sealed volumes the header MAC (checked before any entry is read).
 *
 * Header authentication. Segments of a sealed (encrypted) volume carry the
 * MAC and segments of other volumes do not: the _mac encode/decode variants
 * take the volume's codec, and a sealed codec both writes and requires the
 * MAC. Decoding refuses with
 *   -EACCES   a MAC'd header and no sealed codec to check it (also the plain
 *             gfs_seg_decode_header), or a sealed codec and a header without
 *             a MAC (an unauthenticated object in an encrypted volume);
 *   -EBADMSG  a MAC that does not verify (like any other corruption);
 *   -ENOKEY   a sealed header of a key generation the codec does not hold
 *             (checked before the MAC: a follower then learns the new
 *             generation, a retired one stays refused).
 * Non-MAC headers decode exactly as before when no sealed codec is given.
 */
#ifndef GLIDEFS_SEGMENT_H
#define GLIDEFS_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define GFS_SEG_MAGIC "GFSSEG01"
#define GFS_SEG_VERSION 1u
#define GFS_SEG_FIXED_LEN 64u
#define GFS_SEG_ENTRY_LEN 40u
#define GFS_SEG_MAX_BLOCKS 4096u
#define GFS_SEG_HDR_MAC 0x1u /* fixed-header flag: header_mac follows header_crc */
#define GFS_SEG_MAC_LEN 32u

#define GFS_SEGF_HOLE 0x1u   /* block reads as zeroes; no payload */
#define GFS_SEGF_ZSTD 0x2u   /* payload is zstd-compressed */
#define GFS_SEGF_SEALED 0x4u /* payload is AES-256-GCM sealed */
#define GFS_SEGF_TRAILER 0x8u /* payload is followed by its CRC-32C (4 bytes) */
#define GFS_SEGF_CODED (GFS_SEGF_ZSTD | GFS_SEGF_SEALED) /* what the codec undoes */
#define GFS_SEG_TRAILER_LEN 4u

/* Largest stored length of one block: room for zstd's worst case plus the
 * sealing overhead. Bounds what a reader allocates for one payload even when
 * the object's size is not known. */
#define GFS_SEG_MAX_STORED(bs) ((uint64_t)(bs) + (uint64_t)(bs) / 128u + 4096u)

struct gfs_seg_entry {
    uint64_t block_index;
    uint64_t write_seq;
    uint32_t offset;
    uint32_t length;
    uint32_t raw_length;
    uint32_t crc;
    uint32_t flags;
};

/* Bytes an entry's payload spans in its object, with its trailer if any. */
static inline uint64_t gfs_seg_span(uint32_t length, uint32_t flags)
{
    return (uint64_t)length + ((flags & GFS_SEGF_TRAILER) ? GFS_SEG_TRAILER_LEN : 0u);
}

/* Check a payload read back: got must be exactly its span, and its CRC-32C
 * must match the trailer (GFS_SEGF_TRAILER) or else crc. Returns 0 and the
 * CRC in *crc_out (may be NULL), or -EBADMSG. */
int gfs_seg_payload_check(const void *p, size_t got, uint32_t length, uint32_t flags,
                          uint32_t crc, uint32_t *crc_out);

/* Write payload p's trailer at p + length (the caller left room). */
void gfs_seg_put_trailer(void *p, uint32_t length, uint32_t crc);

struct gfs_seg_header {
    uint64_t epoch;
    uint64_t seq;
    uint32_t nblocks;
    uint32_t block_size;
    uint32_t header_len;  /* fixed + entries, without the trailing header CRC */
    uint8_t volume_uuid[16];
    struct gfs_seg_entry *entries; /* nblocks entries (owned by the header) */
    uint32_t flags;       /* GFS_SEG_HDR_* as decoded; ignored by encode */
    uint32_t key_gen;     /* 0 (legacy key / not sealed) or a data key generation;
                             encode refuses a non-zero one without a sealed codec */
};

struct gfs_codec;

/* Bytes of the header including its CRC, for n blocks. */
static inline size_t gfs_seg_header_size(uint32_t n)
{
    return (size_t)GFS_SEG_FIXED_LEN + (size_t)GFS_SEG_ENTRY_LEN * n + 4u;
}

/* Bytes of the header including its CRC and, if has_mac, its MAC. */
static inline size_t gfs_seg_header_size_mac(uint32_t n, int has_mac)
{
    return gfs_seg_header_size(n) + (has_mac ? GFS_SEG_MAC_LEN : 0u);
}

/* Encode h (entries with offsets/lengths/crcs already filled in, offsets
 * starting at gfs_seg_header_size(nblocks)) into out, which has room for
 * gfs_seg_header_size(h->nblocks) bytes. Returns bytes written or -EINVAL
 * (h breaks a rule that decoding checks; h->header_len is ignored and
 * computed). */
int gfs_seg_encode_header(const struct gfs_seg_header *h, void *out, size_t outlen);

/* The same, MAC'd when codec is sealed (codec NULL or unsealed: exactly
 * gfs_seg_encode_header). Offsets then start at gfs_seg_header_size_mac(n,
 * 1), and out needs that many bytes. Returns bytes written, -EINVAL, or the
 * MAC's error. */
int gfs_seg_encode_header_mac(const struct gfs_seg_header *h, void *out, size_t outlen,
                              const struct gfs_codec *codec);

/* Decode and validate a header from the first len bytes of an object whose
 * total size is object_size (pass 0 if unknown: payload bounds then not
 * checked against it). On success fills *h (caller frees with
 * gfs_seg_header_free). -EINVAL/-EBADMSG for anything malformed; -EAGAIN with
 * *need set when len is too short to hold the whole header (read more and
 * call again). */
int gfs_seg_decode_header(const void *buf, size_t len, uint64_t object_size,
                          struct gfs_seg_header *h, size_t *need);

/* The same, with header authentication (see the top of this file): a sealed
 * codec requires and verifies the MAC; NULL or an unsealed codec refuses a
 * MAC'd header with -EACCES. *need then includes the MAC. */
int gfs_seg_decode_header_mac(const void *buf, size_t len, uint64_t object_size,
                              struct gfs_seg_header *h, size_t *need,
                              const struct gfs_codec *codec);

void gfs_seg_header_free(struct gfs_seg_header *h);

/* Store key of a segment: "nbd/<name>/seg/<epoch:016x>-<seq:016x>".
 * Returns 0, -EINVAL (name fails glidefs_name_valid) or -ENAMETOOLONG (buf
 * too small). */
int gfs_seg_key(char *buf, size_t buflen, const char *name, uint64_t epoch, uint64_t seq);

/* Parse the "<epoch:016x>-<seq:016x>" tail of a seg/ or manifest/ key.
 * Returns 0 or -EINVAL. */
int gfs_parse_epoch_seq(const char *tail, uint64_t *epoch, uint64_t *seq);

#endif
