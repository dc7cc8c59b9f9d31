/*
 * dirty.h — the in-memory index of dirty data: for each block with writes not
 * yet in the store, the sector extents that are newer than the store's copy
 * and where their bytes are (a journal file and offset, or "zeroes"). Extents
 * are inserted in journal sequence order, so a new extent simply replaces
 * whatever it overlaps. Blocks are kept on a list in the order they became
 * dirty, which the syncer walks. Not thread-safe: the volume locks.
 */
#ifndef GLIDEFS_DIRTY_H
#define GLIDEFS_DIRTY_H

#include <stdint.h>

#include "u64map.h"

struct gfs_jfile;

#define GFS_EXT_ZERO 0x1u

struct gfs_ext {
    uint32_t start, count;   /* sectors within the block */
    uint32_t flags;          /* GFS_EXT_ZERO: reads as zeroes, no data */
    uint32_t pad_;
    uint64_t seq;            /* journal seq of the record */
    /* The journal file holding the record. Zero extents point at theirs too:
     * the file must outlive the record, or a TRIM is forgotten on replay. */
    struct gfs_jfile *jf;
    uint64_t data_off;       /* file offset of sector `start` (data extents only) */
};

struct gfs_dirty_block {
    uint64_t block;
    struct gfs_ext *ext;     /* sorted by start, non-overlapping */
    uint32_t n, cap;
    uint32_t pending;        /* writes reserved but not yet on disk */
    uint32_t syncing;        /* the syncer holds a snapshot of it */
    uint64_t max_seq;
    /* no write below first_seq can be missing from the store: the first
     * extent's seq, or one past what an upload of the block took (the
     * durability watermark, syncer.h) */
    uint64_t first_seq;
    int64_t first_ms, last_ms;
    struct gfs_dirty_block *prev, *next;
};

struct gfs_dirty {
    struct gfs_u64map map;
    struct gfs_dirty_block *head, *tail; /* oldest first */
    uint64_t nblocks;
    uint64_t sectors;        /* dirty sectors in all blocks */
    /* the lock-free read path's table (fastread.h): what an extent change
     * makes wrong is forgotten first; NULL: none (set after init) */
    struct gfs_fastrd *fr;
};

void gfs_dirty_init(struct gfs_dirty *d);
void gfs_dirty_free(struct gfs_dirty *d);

static inline struct gfs_dirty_block *gfs_dirty_get(struct gfs_dirty *d, uint64_t block)
{
    return (struct gfs_dirty_block *)gfs_u64map_get(&d->map, block);
}

/* Get or create block's entry (new ones go to the tail of the list). */
struct gfs_dirty_block *gfs_dirty_touch(struct gfs_dirty *d, uint64_t block, int64_t now_ms);

/* Insert an extent newer than everything in the block. Adjusts journal file
 * live counts. -ENOMEM. */
int gfs_dirty_insert(struct gfs_dirty *d, struct gfs_dirty_block *db, const struct gfs_ext *e);

/* Give a block entry with no extents yet n of them at once: sorted by
 * start and disjoint, as a dirty index recorded them (dirty_handoff.c).
 * Adjusts journal file live counts; first_seq becomes the lowest seq.
 * -ENOMEM. */
int gfs_dirty_load(struct gfs_dirty *d, struct gfs_dirty_block *db, const struct gfs_ext *e,
                   uint32_t n);

/* Drop every extent with seq <= upto (it is in the store now). Removes and
 * frees the block entry when nothing is left; returns 1 then, else 0. */
int gfs_dirty_clean(struct gfs_dirty *d, struct gfs_dirty_block *db, uint64_t upto);

/* The block's oldest write not in the store is no older than first_ms now
 * (part of it was uploaded): move it to its place in the oldest-first list,
 * so the head stays the oldest (walks back from the tail: the blocks
 * dirtied since). */
void gfs_dirty_requeue(struct gfs_dirty *d, struct gfs_dirty_block *db, int64_t first_ms);

/* Remove a block entry whatever it holds. */
void gfs_dirty_remove(struct gfs_dirty *d, struct gfs_dirty_block *db);

/* Index of the first extent that ends after sector (db->n if none): a
 * binary search, the extents being sorted and disjoint. */
uint32_t gfs_dirty_find(const struct gfs_dirty_block *db, uint32_t sector);

/* 1 if the extents cover every sector of [start, start+count). */
int gfs_dirty_covers(const struct gfs_dirty_block *db, uint32_t start, uint32_t count);

#endif
