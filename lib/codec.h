/*
 * codec.h — the per-volume block codec: how one block's bytes become the
 * stored bytes of a segment payload and back (optional zstd compression,
 * optional AES-256-GCM sealing), plus the header MAC of sealed volumes and
 * the small crypto helpers (random bytes, AEAD, constant-time compare) that
 * keywrap.c shares.
 *
 * Stored forms of one block (flags are the GFS_SEGF_* of segment.h):
 *   0                        the block itself, block_size bytes
 *   ZSTD                     one zstd frame recording its content size
 *                            (== block_size), shorter than the block
 *   SEALED                   nonce(12) || AES-256-GCM(block) || tag(16)
 *   ZSTD|SEALED              nonce(12) || AES-256-GCM(zstd frame) || tag(16)
 * Compression comes first (ciphertext does not compress). A block that does
 * not shrink by at least 1/64 of its size is stored uncompressed. Holes
 * (all-zero blocks) never reach the codec: the syncer stores them as
 * GFS_SEGF_HOLE entries.
 *
 * Keys. A volume has one or more data key generations (32 random bytes
 * each, numbered from 1; see keywrap.h): rotation adds one, and new segments
 * use the newest. A data key is never used directly: the codec derives
 *   mac key  = HMAC-SHA256(data_key, "glidefs header mac v1")   header MACs
 *   seg base = HMAC-SHA256(data_key, "glidefs segment key v2")
 *   segment key = HMAC-SHA256(seg base, "GFSSEGK1" || object name)
 * where the object name is the segment's key in the store without the
 * prefix, "nbd/<volume>/seg/<E>-<S>": every segment object is sealed under
 * a key of its own (struct gfs_sealkey, gfs_codec_sealkey), named by the
 * generation in its header and its segment-table row (key_gen >= 1).
 * Segments written before segment keys (key_gen 0, "legacy") are sealed
 * under generation 1's one
 *   block key = HMAC-SHA256(data_key, "glidefs block key v1")
 * which only gfs_codec_encode/decode(_seq) use. No key serves two
 * primitives. A header MAC is made with the newest generation's mac key
 * and accepted under any generation the codec holds.
 *
 * Nonces. Every sealed block gets a fresh random 96-bit nonce (getrandom)
 * stored in front of it. Nonces are not derived from segment numbers because
 * a segment <epoch>-<seq> can be written twice with different contents (a
 * retry after a crash, a fenced writer racing the new one). With random
 * nonces the chance that two of q seals under one key share a nonce is about
 * q^2 / 2^97; NIST SP 800-38D caps random-nonce use at 2^32 seals per key.
 * A segment key sees at most GFS_SEG_MAX_BLOCKS (4096) seals per write of
 * its object, so no key comes near the bound however much a lineage writes
 * (the legacy block key had the bound: 2^32 uploads per volume lineage).
 *
 * Additional data. Each seal authenticates
 *   "GFSBLK01" || volume_uuid(16) || block_index(u64) || write_seq(u64) ||
 *   flags(u32) || block_size(u32)                          (little-endian)
 * so a sealed block copied to another block index, another volume or given
 * other flags does not open. gfs_codec_encode/decode bind write_seq 0; the
 * _seq variants bind the block's write_seq as well (the value stored next to
 * it in the segment entry and the manifest), which also refuses an older
 * version of the same block put in place of the newer one. Encode and decode
 * of one block must use the same variant.
 *
 * Threads. A codec is immutable after gfs_codec_new except for a small
 * mutex-protected pool of zstd contexts, so every function may be called
 * from many threads at once.
 *
 * Errors: 0 or a negative errno. Decoding returns -EIO for anything wrong
 * with the stored bytes (bad tag, bad frame, wrong size, flags the codec
 * cannot or must not accept); -ENOMEM only for allocation failure.
 */
#ifndef GLIDEFS_CODEC_H
#define GLIDEFS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "aead.h"

#define GFS_MAC_LEN 32
/* Bytes a seal adds to a payload: nonce and tag. */
#define GFS_SEAL_OVERHEAD (GFS_GCM_NONCE_LEN + GFS_GCM_TAG_LEN)

struct gfs_codec;

#define GFS_CODEC_MAX_GENS 16 /* data key generations one codec holds */

/* One data key generation. */
struct gfs_datakey {
    uint32_t gen; /* >= 1 */
    uint8_t key[GFS_KEY_LEN];
};

struct gfs_codec_params {
    uint32_t block_size;      /* power of two, 4 KiB .. 4 MiB */
    uint8_t volume_uuid[16];
    int compress;             /* 0 none, 1 zstd */
    int level;                /* zstd level; 0 = default (3) */
    const uint8_t *data_key;  /* GFS_KEY_LEN bytes (copied): generation 1 only, or NULL */
    const struct gfs_datakey *keys; /* or: nkeys generations (copied; distinct gens) */
    unsigned nkeys;           /* 1 .. GFS_CODEC_MAX_GENS when keys is set */
    const uint8_t *kek;       /* optional (copied): the password's key-encryption key,
                                 kept in the key page for later wraps (keywrap.h) */
};

/* The AES key one segment's payloads are sealed under. Wipe after use. */
struct gfs_sealkey {
    uint32_t gen; /* 0: legacy block key */
    uint8_t k[GFS_KEY_LEN];
};

/* -EINVAL on bad parameters, -ENOMEM, -EIO (crypto library failure). */
int gfs_codec_new(const struct gfs_codec_params *p, struct gfs_codec **out);
/* Frees the codec and zeroizes its keys. NULL is fine. */
void gfs_codec_free(struct gfs_codec *c);

/* 1 when the codec's keys are locked in RAM (mlock; they are kept out of
 * core dumps either way). 0 when not sealed or the limit refused it. */
int gfs_codec_keys_locked(const struct gfs_codec *c);

/* 1 when the codec has a key: blocks are sealed and headers MAC'd. */
int gfs_codec_sealed(const struct gfs_codec *c);
uint32_t gfs_codec_block_size(const struct gfs_codec *c);

/* Largest stored size of one block: block_size, plus GFS_SEAL_OVERHEAD when
 * sealed. Always <= GFS_SEG_MAX_STORED(block_size). */
size_t gfs_codec_max_stored(const struct gfs_codec *c);

/* The generation new segments use (the newest); 0 when not sealed. */
uint32_t gfs_codec_key_gen(const struct gfs_codec *c);
/* 1 when the codec can open payloads of generation gen (0: legacy, which
 * needs generation 1). */
int gfs_codec_has_gen(const struct gfs_codec *c, uint32_t gen);
/* The generations held, up to max into gens; returns how many there are. */
unsigned gfs_codec_gens(const struct gfs_codec *c, uint32_t *gens, unsigned max);

/* Is a segment of key generation key_gen sealed under an older data key
 * than newest (the codec's gfs_codec_key_gen)? Legacy segments (0) count as
 * generation 1. */
static inline int gfs_key_gen_older(uint32_t key_gen, uint32_t newest)
{
    return newest && (key_gen ? key_gen : 1u) < newest;
}

/* Hold one more generation (rotation, or a follower learning the writer's):
 * new segments use it when it is the newest. Safe while other threads use
 * the codec. 0 (also when held already), -ENOSPC (GFS_CODEC_MAX_GENS),
 * -EINVAL unsealed codec. */
int gfs_codec_add_gen(struct gfs_codec *c, const struct gfs_datakey *dk);
/* A segment is being sealed under generation gen (the segment writer, from
 * begin to free): retirement waits for it. -ENOKEY when gen is not held or
 * frozen (then use the newest). */
int gfs_codec_writer_begin(struct gfs_codec *c, uint32_t gen);
void gfs_codec_writer_end(struct gfs_codec *c, uint32_t gen);
/* No new segment under generations <= upto from now on: -EBUSY while one is
 * being sealed under one of them (nothing changed); *was (may be NULL) gets
 * the previous mark for gfs_codec_unfreeze (undo, when the retirement that
 * froze them fails). The newest is never frozen (-EINVAL). */
int gfs_codec_freeze(struct gfs_codec *c, uint32_t upto, uint32_t *was);
void gfs_codec_unfreeze(struct gfs_codec *c, uint32_t to);

/* Stop holding generations <= upto (0: the legacy key too when upto >= 1):
 * nothing sealed under them opens, no MAC of theirs verifies. The newest
 * stays (-EINVAL). Their key material is wiped when the codec is freed. */
int gfs_codec_retire(struct gfs_codec *c, uint32_t upto);
/* A copy of the key-encryption key given at gfs_codec_new or set since (a
 * password change); -ENOKEY: none. */
int gfs_codec_kek(const struct gfs_codec *c, uint8_t kek[GFS_KEY_LEN]);
int gfs_codec_set_kek(struct gfs_codec *c, const uint8_t kek[GFS_KEY_LEN]);

/* The key of segment object `name` ("nbd/<vol>/seg/<E>-<S>") under
 * generation gen (0: the legacy block key; name unused). -ENOKEY when the
 * codec does not hold gen, -EINVAL when not sealed. */
int gfs_codec_sealkey(const struct gfs_codec *c, uint32_t gen, const char *name,
                      struct gfs_sealkey *out);
void gfs_sealkey_wipe(struct gfs_sealkey *k);

/* Encode / decode as below, sealed under k (NULL on an unsealed codec). */
int gfs_codec_encode_k(struct gfs_codec *c, const struct gfs_sealkey *k, uint64_t block_index,
                       uint64_t write_seq, const void *in, void *out, uint32_t *outlen,
                       uint32_t *flags);
int gfs_codec_decode_k(struct gfs_codec *c, const struct gfs_sealkey *k, uint64_t block_index,
                       uint64_t write_seq, uint32_t flags, const void *in, uint32_t inlen,
                       void *out);

/* A sealed payload (inlen stored bytes with coded flags) opened under from
 * and sealed again under to with a fresh nonce, into out (inlen bytes; may
 * equal in). Same length and flags, nothing decompressed. -EIO if it does
 * not open (out zeroed), -EINVAL for an unsealed payload or codec. */
int gfs_codec_reseal(struct gfs_codec *c, const struct gfs_sealkey *from,
                     const struct gfs_sealkey *to, uint64_t block_index, uint64_t write_seq,
                     uint32_t flags, const void *in, uint32_t inlen, void *out);

/* Encode the block_size bytes at in into out (room for
 * gfs_codec_max_stored bytes; must not overlap in). Sets *outlen and *flags
 * (0, GFS_SEGF_ZSTD, GFS_SEGF_SEALED or both). -EINVAL, -ENOMEM, -EIO. */
/* The plain and _seq variants seal under the legacy block key (key_gen 0):
 * -ENOKEY when the codec lacks generation 1. */
int gfs_codec_encode(struct gfs_codec *c, uint64_t block_index, const void *in, void *out,
                     uint32_t *outlen, uint32_t *flags);
int gfs_codec_encode_seq(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                         const void *in, void *out, uint32_t *outlen, uint32_t *flags);

/* Decode inlen stored bytes with the given flags into out (block_size
 * bytes; never writes more). -EIO when anything fails to verify: bad tag,
 * bad or oversized zstd frame, wrong decoded size, a SEALED block without a
 * key, an unsealed block on a sealed codec, HOLE or unknown flags. On any
 * error out is zeroed (unverified plaintext is never left behind). */
int gfs_codec_decode(struct gfs_codec *c, uint64_t block_index, uint32_t flags, const void *in,
                     uint32_t inlen, void *out);
int gfs_codec_decode_seq(struct gfs_codec *c, uint64_t block_index, uint64_t write_seq,
                         uint32_t flags, const void *in, uint32_t inlen, void *out);

/* HMAC-SHA256 of buf under the header MAC key. -EINVAL when the codec is not
 * sealed (there is no key), -EIO/-ENOMEM if the hash fails. */
int gfs_codec_mac(const struct gfs_codec *c, const void *buf, size_t len,
                  uint8_t mac[GFS_MAC_LEN]);
/* 0 when mac is the MAC of buf, -EBADMSG when not, -EINVAL unsealed codec. */
int gfs_codec_mac_verify(const struct gfs_codec *c, const void *buf, size_t len,
                         const uint8_t mac[GFS_MAC_LEN]);

/* ---- helpers shared with keywrap.c ---- */

/* 1 when the n bytes at a and b are equal; time depends only on n. */
int gfs_ct_equal(const void *a, const void *b, size_t n);

/* n bytes from getrandom(2) (blocking until the pool is ready, retrying on
 * EINTR). 0 or -EIO. */
int gfs_random_bytes(void *buf, size_t n);

#endif
