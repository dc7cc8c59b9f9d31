/*
 * profile.h — the access profile of a volume (docs/design.md 4.12, 5.15):
 * which blocks a guest read first after a wake, in first-read order, each
 * once. The recorder runs in the read path under the volume's lock and
 * never allocates there (its arrays are sized from cache.profile_mb at
 * open). The object nbd/<vol>/profile holds such a list; this file
 * encodes and parses it (the parser faces the store: every field is
 * checked). Loading, storing and prefetching are wake.c's.
 */
#ifndef GLIDEFS_PROFILE_H
#define GLIDEFS_PROFILE_H

#include <stddef.h>
#include <stdint.h>

struct gfs_codec;

#define GFS_PROFILE_MAGIC "GFSPRF01"
#define GFS_PROFILE_HDR 32           /* fixed header */
#define GFS_PROFILE_MAX (1u << 22)   /* blocks in one profile at most */
#define GFS_PROFILEF_MAC 0x1u

/* A set of block numbers in a preallocated open-addressing table (no
 * allocation after init). Each block maps to its position in the list. */
struct gfs_blkset {
    uint64_t *keys;   /* block + 1; 0 = empty */
    uint32_t *pos;
    uint32_t mask;
};
int gfs_blkset_init(struct gfs_blkset *s, uint32_t cap);
void gfs_blkset_free(struct gfs_blkset *s);
/* Position of b, or -1. */
int64_t gfs_blkset_get(const struct gfs_blkset *s, uint64_t b);
/* Add b at position pos; 1 if added, 0 if it was there (the table is sized
 * for cap entries: callers never add more). */
int gfs_blkset_add(struct gfs_blkset *s, uint64_t b, uint32_t pos);

struct gfs_profile_rec {
    uint64_t *blocks;   /* first-read order */
    uint32_t n, cap;
    struct gfs_blkset seen;
    int64_t until_ms;   /* recording ends at this time (monotonic ms) */
    int64_t last_new_ms; /* when the last new block was appended (0: none yet) */
    int done;           /* the window is over, or the list is full */
};

/* cap blocks at most, for window_ms from now_ms. cap 0: records nothing. */
int gfs_profile_rec_init(struct gfs_profile_rec *r, uint32_t cap, int64_t now_ms,
                         int64_t window_ms);
void gfs_profile_rec_free(struct gfs_profile_rec *r);
/* The guest reads blocks [fb, lb] at now_ms: the new ones are appended.
 * Lock held; O(blocks read), no allocation. */
void gfs_profile_rec_note(struct gfs_profile_rec *r, uint64_t fb, uint64_t lb, int64_t now_ms);

/* The object: header, blocks, CRC, and a MAC when the codec is sealed
 * (docs/design.md 5.15). *out is malloc'd. */
int gfs_profile_encode(const uint64_t *blocks, uint32_t n, uint64_t volume_size,
                       uint32_t block_size, const struct gfs_codec *codec, uint8_t **out,
                       size_t *outlen);
/* Parse and check an object: -EIO (corrupt, with the rule in *why when
 * why is not NULL), -ENOMEM. block_size: the volume's (a profile of
 * another block size is refused). *blocks is malloc'd (NULL when n is 0);
 * *volume_size is the size the blocks were recorded against. */
int gfs_profile_decode(const void *buf, size_t len, uint32_t block_size,
                       const struct gfs_codec *codec, uint64_t **blocks, uint32_t *n,
                       uint64_t *volume_size, const char **why);

#endif
