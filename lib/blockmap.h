/*
 * blockmap.h — where each block of a volume lives in the object store:
 * block index -> (segment, offset, length, crc, flags, write_seq), plus the
 * table of segments with their live-byte counts. Two-level array so memory
 * follows the written part of the volume. Not thread-safe: the volume locks.
 */
#ifndef GLIDEFS_BLOCKMAP_H
#define GLIDEFS_BLOCKMAP_H

#include <stddef.h>
#include <stdint.h>

#define GFS_BM_NONE 0u           /* never written: reads as zeroes */
#define GFS_BM_HOLE 0xFFFFFFFFu  /* trimmed / zeroed: reads as zeroes */

struct gfs_bm_entry {
    uint32_t seg;       /* index into the segment table (>= 1), or NONE/HOLE */
    uint32_t offset;    /* of the stored bytes inside the segment object */
    uint32_t length;    /* stored bytes */
    uint32_t crc;       /* CRC-32C of the stored bytes */
    uint32_t flags;     /* GFS_SEGF_* */
    uint32_t pad_;
    uint64_t write_seq; /* newest journal seq folded into this version */
};

struct gfs_bm_seg {
    uint64_t epoch, seq;
    uint64_t live_bytes;   /* stored bytes still referenced by the map */
    uint64_t total_bytes;  /* object size (0 until known) */
    int64_t dead_since_ms; /* when it was first seen with nothing live (0: not dead) */
    uint64_t dead_gen;     /* manifest generation when it was found dead */
    int deleted;           /* the object is gone from the store */
};

struct gfs_blockmap {
    uint64_t nblocks;
    struct gfs_bm_entry **chunks; /* nchunks pointers, chunk = GFS_BM_CHUNK entries */
    size_t nchunks;
    struct gfs_bm_seg *segs;      /* segs[0] unused */
    uint32_t nsegs, segcap;
    uint64_t written_blocks;      /* entries != NONE */
};

#define GFS_BM_CHUNK_SHIFT 12
#define GFS_BM_CHUNK (1u << GFS_BM_CHUNK_SHIFT)

int gfs_bm_init(struct gfs_blockmap *bm, uint64_t nblocks);
void gfs_bm_free(struct gfs_blockmap *bm);
int gfs_bm_grow(struct gfs_blockmap *bm, uint64_t nblocks);

/* The entry of block b (a zeroed NONE entry if never written). */
struct gfs_bm_entry gfs_bm_get(const struct gfs_blockmap *bm, uint64_t b);

/* Set block b's entry, moving live bytes from the old segment to the new. */
int gfs_bm_set(struct gfs_blockmap *bm, uint64_t b, const struct gfs_bm_entry *e);

/* Find or add a segment; returns its index (>= 1) or a negative errno. */
int64_t gfs_bm_seg_add(struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq, uint64_t total_bytes);
int64_t gfs_bm_seg_find(const struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq);

#endif
