/*
 * blockmap.h — where each block of a volume lives in the object store:
 * block index -> (segment, offset, length, crc, flags, write_seq), plus the
 * table of segments with their live-byte counts. Entries are stored packed
 * in 12 bytes (see blockmap.c for the layout and the memory math; 16 for
 * payloads written before segments had CRC trailers) in 48 KiB pages
 * allocated on first write, so memory follows the written part of the
 * volume and a sparse 1 PiB volume costs a few KiB. The segment table keeps
 * a 48-byte row per segment; rows of segments deleted from the store are
 * reclaimed (gfs_bm_seg_reclaim), which renumbers the segment indices. Not
 * thread-safe: the volume locks.
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
    uint32_t crc;       /* CRC-32C of the stored bytes; 0 (not kept) when the
                           payload has its own (GFS_SEGF_TRAILER) */
    uint32_t flags;     /* GFS_SEGF_* */
    uint32_t key_gen;   /* its segment row's (filled by get/next; ignored by set) */
    uint64_t write_seq; /* newest journal seq folded into this version */
};

/* A segment object's size, and the bytes the map references in it, are at
 * most this (volume_open.c keeps blocks_per_batch * block_size well below). */
#define GFS_BM_SEG_MAX_BYTES UINT32_MAX
/* ws_base bits: entries with a write_seq >= 2^46 do not pack (overflow). */
#define GFS_BM_WS_BITS 46
#define GFS_BM_WS_LO_BITS 25

/* One row of the segment table: 48 bytes (layout in blockmap.c). The narrow
 * fields are bit-fields so that their readers keep their plain form; GCC
 * does arithmetic on a uint64_t:N field in N bits, so widen one before a
 * multiplication that could exceed N bits (live_bytes has 39: live_bytes *
 * 100 is exact for any value it can hold). */
struct gfs_bm_seg {
    uint64_t epoch, seq;
    uint64_t live_bytes : 39;   /* stored bytes still referenced by the map (<= GFS_BM_SEG_MAX_BYTES) */
    uint64_t ws_lo : GFS_BM_WS_LO_BITS;             /* ws_base, low bits */
    uint32_t total_bytes;       /* object size (0 until known, or too large to be a segment) */
    uint32_t dead_gen;          /* manifest generation when it was found dead */
    int64_t dead_since_ms : 41; /* monotonic ms when first seen with nothing live (0: not dead) */
    uint64_t deleted : 1;       /* the object is gone from the store */
    uint64_t ws_known : 1;      /* ws_base is set (by the first entry stored in it) */
    uint64_t ws_hi : GFS_BM_WS_BITS - GFS_BM_WS_LO_BITS; /* ws_base, high bits */
    uint32_t key_gen;           /* data key generation of the segment's key (0: legacy) */
    uint32_t reserved_;
};

/* The write_seq the segment's packed entries are stored relative to. */
static inline uint64_t gfs_bm_seg_ws_base(const struct gfs_bm_seg *s)
{
    return (uint64_t)s->ws_hi << GFS_BM_WS_LO_BITS | (uint64_t)s->ws_lo;
}

/* A packed entry (blockmap.c): 12 bytes, so 32-bit words. */
struct gfs_bm_slot {
    uint32_t seg;
    uint32_t lo, hi; /* the packed 64-bit word */
};

#define GFS_BM_CHUNK_SHIFT 12                    /* 4096 entries = one 48 KiB page */
#define GFS_BM_CHUNK (1u << GFS_BM_CHUNK_SHIFT)
#define GFS_BM_DIR_SHIFT 9                       /* 512 page pointers per directory page */
#define GFS_BM_DIR (1u << GFS_BM_DIR_SHIFT)

struct gfs_blockmap {
    uint64_t nblocks;
    struct gfs_bm_slot ***dir;    /* ndir pointers to directory pages of GFS_BM_DIR page pointers */
    size_t ndir;
    uint32_t ***crcdir;           /* parallel to dir (NULL until needed): side pages of
                                     CRCs for payloads without a trailer */
    struct gfs_u64map big;        /* block -> struct gfs_bm_entry *: entries that do not pack */
    struct gfs_bm_seg *segs;      /* segs[0] unused */
    uint32_t nsegs, segcap;
    uint64_t seg_gen;             /* bumped whenever reclaim renumbers the segments */
    uint64_t written_blocks;      /* entries != NONE */
    size_t pages;                 /* entry pages allocated */
    size_t crcpages;              /* side pages allocated */
    uint64_t legacy_entries;      /* packed entries of payloads without a CRC trailer */
    /* the lock-free read path's table (fastread.h): a block's entries are
     * forgotten before its map entry changes; NULL: none (set after init) */
    struct gfs_fastrd *fr;
};

int gfs_bm_init(struct gfs_blockmap *bm, uint64_t nblocks);
void gfs_bm_free(struct gfs_blockmap *bm);
int gfs_bm_grow(struct gfs_blockmap *bm, uint64_t nblocks);

/* The entry of block b (a zeroed NONE entry if never written). */
struct gfs_bm_entry gfs_bm_get(const struct gfs_blockmap *bm, uint64_t b);

/* Set block b's entry, moving live bytes from the old segment to the new.
 * A NONE entry is stored as all zeroes (its other fields are dropped); the
 * crc of a GFS_SEGF_TRAILER entry is not kept (reads back 0). */
int gfs_bm_set(struct gfs_blockmap *bm, uint64_t b, const struct gfs_bm_entry *e);

/* The first written (non-NONE) block >= *b: sets *b and *e and returns 1, or
 * returns 0 when there is none. Loop: for (b = 0; gfs_bm_next(bm, &b, &e); b++) */
int gfs_bm_next(const struct gfs_blockmap *bm, uint64_t *b, struct gfs_bm_entry *e);

/* Bytes allocated by the map (pages, directory, segment table, overflow). */
size_t gfs_bm_mem_bytes(const struct gfs_blockmap *bm);
/* Entries kept unpacked in the overflow table. */
size_t gfs_bm_overflow_count(const struct gfs_blockmap *bm);
/* Packed entries of payloads without a CRC trailer (their CRC in a side page). */
uint64_t gfs_bm_legacy_count(const struct gfs_blockmap *bm);

/* Find or add a segment; returns its index (>= 1) or a negative errno. A
 * total_bytes over GFS_BM_SEG_MAX_BYTES is recorded as 0 (unknown: such a
 * segment is never compacted or deleted). */
int64_t gfs_bm_seg_add(struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq, uint64_t total_bytes);
int64_t gfs_bm_seg_find(const struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq);
/* Set a segment's object size (from a listing): -EFBIG, and 0 recorded, if
 * it is more than a segment can be. */
int gfs_bm_seg_set_total(struct gfs_blockmap *bm, uint32_t seg, uint64_t total_bytes);
/* Room for n more segments without growing (a manifest about to be loaded
 * names its count): the table is then sized exactly. */
int gfs_bm_seg_reserve(struct gfs_blockmap *bm, uint32_t n);

/* Told the renumbering: map[i] is the new index of old row i (0: removed),
 * for i < n. Other holders of segment indices (the clean cache) follow it. */
typedef void (*gfs_bm_renum_fn)(void *arg, const uint32_t *map, uint32_t n);

#define GFS_BM_RECLAIM_MIN 64 /* rows: fewer are not worth a pass over the map */

/* Remove the rows of segments deleted from the store with nothing live
 * (except the newest of each epoch, which gfs_view_last_seq_of needs, and
 * one a zero-length entry still names), keeping the table sorted, and
 * renumber every entry (one pass over the written pages and the overflow
 * table); bumps seg_gen, calls fn (may be NULL), and gives memory back when
 * the table shrank a lot. Only when at least min_rows rows and a quarter of
 * the table qualify (min_rows 0: whatever there is). Returns the rows
 * removed, or -ENOMEM (nothing changed). An index held across a lock drop
 * names another segment afterwards: re-resolve it by (epoch, seq), or
 * compare seg_gen. */
int64_t gfs_bm_seg_reclaim(struct gfs_blockmap *bm, uint32_t min_rows, gfs_bm_renum_fn fn,
                           void *arg);

#endif
