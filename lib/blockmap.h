/*
 * blockmap.h — where each block of a volume lives in the object store:
 * block index -> (segment, offset, length, crc, flags, write_seq), plus the
 * table of segments with their live-byte counts. Entries are stored packed
 * in 16 bytes (see blockmap.c for the layout and the memory math) in 64 KiB
 * pages allocated on first write, so memory follows the written part of the
 * volume and a sparse 1 PiB volume costs a few KiB. Not thread-safe: the
 * volume locks.
 */
#ifndef GLIDEFS_BLOCKMAP_H
#define GLIDEFS_BLOCKMAP_H

#include <stddef.h>
#include <stdint.h>

#include "u64map.h"

#define GFS_BM_NONE 0u           /* never written: reads as zeroes */
#define GFS_BM_HOLE 0xFFFFFFFFu  /* trimmed / zeroed: reads as zeroes */

/* The unpacked form every caller sees (get/set/next). */
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
    uint32_t ws_known;     /* ws_base is set (by the first entry stored in it) */
    uint64_t ws_base;      /* write_seq its entries are stored relative to */
};

/* A packed entry (blockmap.c). */
struct gfs_bm_slot {
    uint32_t seg;
    uint32_t crc;
    uint64_t w;
};

#define GFS_BM_CHUNK_SHIFT 12                    /* 4096 entries = one 64 KiB page */
#define GFS_BM_CHUNK (1u << GFS_BM_CHUNK_SHIFT)
#define GFS_BM_DIR_SHIFT 9                       /* 512 page pointers per directory page */
#define GFS_BM_DIR (1u << GFS_BM_DIR_SHIFT)

struct gfs_blockmap {
    uint64_t nblocks;
    struct gfs_bm_slot ***dir;    /* ndir pointers to directory pages of GFS_BM_DIR page pointers */
    size_t ndir;
    struct gfs_u64map big;        /* block -> struct gfs_bm_entry *: entries that do not pack */
    struct gfs_bm_seg *segs;      /* segs[0] unused */
    uint32_t nsegs, segcap;
    uint64_t written_blocks;      /* entries != NONE */
    size_t pages;                 /* entry pages allocated */
};

int gfs_bm_init(struct gfs_blockmap *bm, uint64_t nblocks);
void gfs_bm_free(struct gfs_blockmap *bm);
int gfs_bm_grow(struct gfs_blockmap *bm, uint64_t nblocks);

/* The entry of block b (a zeroed NONE entry if never written). */
struct gfs_bm_entry gfs_bm_get(const struct gfs_blockmap *bm, uint64_t b);

/* Set block b's entry, moving live bytes from the old segment to the new.
 * A NONE entry is stored as all zeroes (its other fields are dropped). */
int gfs_bm_set(struct gfs_blockmap *bm, uint64_t b, const struct gfs_bm_entry *e);

/* The first written (non-NONE) block >= *b: sets *b and *e and returns 1, or
 * returns 0 when there is none. Loop: for (b = 0; gfs_bm_next(bm, &b, &e); b++) */
int gfs_bm_next(const struct gfs_blockmap *bm, uint64_t *b, struct gfs_bm_entry *e);

/* Bytes allocated by the map (pages, directory, segment table, overflow). */
size_t gfs_bm_mem_bytes(const struct gfs_blockmap *bm);
/* Entries kept unpacked in the overflow table. */
size_t gfs_bm_overflow_count(const struct gfs_blockmap *bm);

/* Find or add a segment; returns its index (>= 1) or a negative errno. */
int64_t gfs_bm_seg_add(struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq, uint64_t total_bytes);
int64_t gfs_bm_seg_find(const struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq);

#endif
