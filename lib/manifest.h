/*
 * manifest.h — the manifest object format: an immutable checkpoint of the
 * block map. A manifest named <epoch>-<seq> covers every segment up to and
 * including segment <epoch>-<seq>; a reader loads the newest manifest and
 * then replays the headers of the segments after it.
 *
 * Layout (little-endian), zstd-compressed as a whole when flags has
 * GFS_MANF_ZSTD (the 64-byte fixed header stays uncompressed):
 *   fixed header (64 bytes)
 *     0  magic        "GFSMAN01"
 *     8  version      u32 = 1
 *     12 flags        u32
 *     16 epoch        u64  (of the last covered segment)
 *     24 seq          u64
 *     32 volume_size  u64
 *     40 nsegs        u32  segments referenced
 *     44 block_size   u32
 *     48 nentries     u64  block map entries
 *     56 body_len     u32  bytes of body as stored (after the fixed header)
 *     60 header_crc   u32  CRC-32C of bytes [0,60)
 *   link (32 bytes, only when flags has GFS_MANF_DELTA; never compressed, so
 *   a ranged GET of the first 96 bytes tells what a delta extends)
 *     64 prev_epoch   u64  the manifest this one extends: its key's <E>-<S>;
 *     72 prev_seq     u64  prev_epoch == epoch and prev_seq < seq
 *     80 base_seq     u64  the chain's base (<epoch>-<base_seq>), <= prev_seq
 *     88 depth        u32  deltas from the base to this one, 1 ..
 *                          GFS_MAN_MAX_CHAIN; 1 exactly when prev_seq == base_seq
 *     92 link_crc     u32  CRC-32C of bytes [64,92)
 *   body (possibly compressed), when decoded:
 *     segs[nsegs]      16 bytes each: epoch u64, seq u64 (strictly increasing)
 *     entries[n]       32 bytes each: block_index u64, write_seq u64,
 *                      seg u32 (index into segs, or GFS_MAN_HOLE), offset u32,
 *                      length u32, crc u32  — block_index strictly increasing;
 *                      crc is 0 when the payload has a CRC trailer (the
 *                      map does not keep it; the trailer checks the payload)
 *     flags[n]         u32 each: the GFS_SEGF_* flags of the entry
 *     keygens[nsegs]   u32 each, only when flags has GFS_MANF_KEYGEN (sealed
 *                      volumes, never without GFS_MANF_MAC): the data key
 *                      generation of each segment's key (segment.h key_gen;
 *                      0 = the legacy block key). Without the flag every
 *                      segment has key_gen 0
 *     body_crc         u32  CRC-32C of the decoded body before it
 *   mac               32 bytes, only when flags has GFS_MANF_MAC (sealed
 *                     volumes): HMAC-SHA256 (gfs_codec_mac) of every byte
 *                     before it — fixed header and body as stored. It is
 *                     checked before the body is decompressed or parsed.
 *
 * A delta (GFS_MANF_DELTA) lists only the blocks whose map entry changed
 * since the manifest it extends (holes included), and only the segments
 * those entries reference; a reader applies the base and then each delta in
 * order, a delta's entry replacing the block's (manchain.h). body_len
 * counts the body only (not the link); the MAC covers the link too.
 *
 * Header authentication follows segment.h: the _mac variants take the
 * volume's codec; a sealed codec writes and requires the MAC. Decoding
 * returns -EACCES for a MAC'd manifest without a sealed codec (also the
 * plain gfs_manifest_decode) or a sealed codec and no MAC, and -EBADMSG for
 * a MAC that does not verify.
 *
 * Rules checked by encode and decode alike: block_size a power of two, 4 KiB
 * .. 4 MiB; volume_size a multiple of 512; every block_index below
 * ceil(volume_size / block_size); a hole entry (seg == GFS_MAN_HOLE) has
 * flags == GFS_SEGF_HOLE and offset, length and crc 0; any other entry has a
 * seg < nsegs, no HOLE flag, 0 < length <= GFS_SEG_MAX_STORED(block_size),
 * length == block_size unless ZSTD or SEALED, and an offset past the smallest
 * segment header. A compressed body is exactly one zstd frame that records
 * its content size.
 */
#ifndef GLIDEFS_MANIFEST_H
#define GLIDEFS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define GFS_MAN_MAGIC "GFSMAN01"
#define GFS_MAN_VERSION 1u
#define GFS_MAN_FIXED_LEN 64u
#define GFS_MANF_ZSTD 0x1u
#define GFS_MANF_MAC 0x2u
#define GFS_MANF_KEYGEN 0x4u /* the body lists each segment's key generation */
#define GFS_MANF_DELTA 0x8u  /* a delta: the link follows the fixed header */
#define GFS_MAN_LINK_LEN 32u
/* A chain holds at most this many deltas over its base (readers refuse more). */
#define GFS_MAN_MAX_CHAIN 64u
#define GFS_MAN_MAC_LEN 32u
#define GFS_MAN_HOLE 0xFFFFFFFFu
/* Refuse to decode manifests beyond this many entries/segments (hostile input). */
#define GFS_MAN_MAX_ENTRIES (1ull << 34)
#define GFS_MAN_MAX_SEGS (1u << 28)

struct gfs_man_seg {
    uint64_t epoch, seq;
    uint32_t key_gen; /* 0 legacy / unsealed; encode refuses non-zero without a sealed codec */
};

struct gfs_man_entry {
    uint64_t block_index;
    uint64_t write_seq;
    uint32_t seg;     /* index into segs[], or GFS_MAN_HOLE */
    uint32_t offset;
    uint32_t length;
    uint32_t crc;
    uint32_t flags;
};

struct gfs_manifest {
    uint64_t epoch, seq;
    uint64_t volume_size;
    uint32_t block_size;
    uint32_t nsegs;
    uint64_t nentries;
    /* a delta when depth > 0 (GFS_MANF_DELTA): extends manifest
     * <prev_epoch>-<prev_seq>, whose chain starts at base <epoch>-<base_seq> */
    uint32_t depth;
    uint64_t prev_epoch, prev_seq, base_seq;
    struct gfs_man_seg *segs;
    struct gfs_man_entry *entries;
};

/* Encode m into a malloc'd buffer (*out, *outlen), zstd-compressed when
 * compress is set. Returns 0, -EINVAL (m breaks a rule below, or the body
 * does not fit body_len's 32 bits) or -ENOMEM. */
int gfs_manifest_encode(const struct gfs_manifest *m, int compress, void **out, size_t *outlen);

struct gfs_codec;

/* The same, MAC'd when codec is sealed (NULL or unsealed: exactly
 * gfs_manifest_encode). Also returns the MAC's error. */
int gfs_manifest_encode_mac(const struct gfs_manifest *m, int compress,
                            const struct gfs_codec *codec, void **out, size_t *outlen);

/* Decode and fully validate a manifest object. Fills *m (free with
 * gfs_manifest_free). -EBADMSG for anything malformed (bad magic, CRC,
 * lengths, seg index out of range, unsorted entries, decompression bombs:
 * decoded size must equal what the counts imply). */
int gfs_manifest_decode(const void *buf, size_t len, struct gfs_manifest *m);

/* The same, with header authentication (see above). */
int gfs_manifest_decode_mac(const void *buf, size_t len, const struct gfs_codec *codec,
                            struct gfs_manifest *m);

void gfs_manifest_free(struct gfs_manifest *m);

/* The link of a manifest object from its first bytes (at least
 * GFS_MAN_FIXED_LEN, GFS_MAN_FIXED_LEN + GFS_MAN_LINK_LEN for a delta),
 * CRCs checked but not the MAC (for deciding what to keep, never for
 * reading): 1 and the link (depth > 0) for a delta, 0 for a base (*m's
 * link fields 0), -EAGAIN if len is too short, -EBADMSG if malformed. Only
 * the header fields and link of *m are set (no arrays). */
int gfs_manifest_peek(const void *buf, size_t len, struct gfs_manifest *m);

/* "nbd/<name>/manifest/<epoch:016x>-<seq:016x>". Returns 0, -EINVAL (name
 * fails glidefs_name_valid) or -ENAMETOOLONG (buf too small). */
int gfs_manifest_key(char *buf, size_t buflen, const char *name, uint64_t epoch, uint64_t seq);

#endif
