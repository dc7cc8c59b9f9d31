/*
 * cache.h — the clean-block cache: whole blocks as the store holds them,
 * decoded, in a sparse file (<cache>/<name>/cache.dat, block b at offset
 * b * block_size). Each cached block remembers the store location it came
 * from; it is served only while the block map still points there, so a newer
 * upload (ours or another node's) invalidates exactly the blocks that changed.
 * Its size is decided by the node's budget (budget.h): the volume asks the
 * budget before it claims a new slot, and the budget has the cache evict
 * (CLOCK, gfs_cache_shrink) when space is short; the file's blocks are
 * punched out as they go, and the cache reports every change of its bytes
 * through acct (after allocation is charged, before the space is used; after
 * the hole is punched when it is given back).
 * Dirty data never lives here (it is in the journal), so eviction never loses
 * anything. Index operations run under the volume's mutex; data I/O does not:
 * a reader takes a generation under the lock and checks it again after its
 * pread, so an eviction in between is seen and the read retried. Locations
 * are segment indices of the block map, so its renumbering (reclaim) is
 * followed here (gfs_cache_renumber).
 * When a volume closes its cache may be parked (cache_park.c): the file is
 * kept with an index of its slots, and the next open restores the slots
 * whose store copy the block map still points at.
 */
#ifndef GLIDEFS_CACHE_H
#define GLIDEFS_CACHE_H

#include <stdatomic.h>
#include <stdint.h>

#include "u64map.h"

struct gfs_cache_slot {
    uint64_t block;
    uint32_t seg, offset;  /* store location the data came from */
    _Atomic uint32_t gen;  /* bumped whenever the slot's contents change (read
                              without the lock by gfs_cache_still) */
    _Atomic uint8_t ref;   /* CLOCK reference bit (the lock-free read path sets it too) */
    uint8_t state;         /* 0 free, 1 filling, 2 valid */
    uint8_t doomed;        /* filling, but the cache was cleared meanwhile: commit releases */
};

struct gfs_cache {
    int fd;
    uint32_t block_size;
    struct gfs_cache_slot *slots;
    uint32_t nslots, hand, nvalid;
    struct gfs_u64map map;  /* block -> slot index + 1 */
    uint64_t bytes;         /* bytes of slots in use */
    uint64_t hits, misses;
    /* told of every change of bytes (the node's budget); set after open */
    void (*acct)(void *arg, int64_t delta);
    void *acct_arg;
    /* the lock-free read path's table (fastread.h): every change of a slot
     * forgets its block's entries first; set after open, NULL: none */
    struct gfs_fastrd *fr;
};

/* Open (and empty) the cache file; nslots = how many blocks the budget allows. */
int gfs_cache_open(struct gfs_cache *c, const char *path, uint32_t block_size, uint32_t nslots);
/* Empty the file (nothing in it is of use to a later open, which starts
 * empty anyway: the space goes back now) and close it. */
void gfs_cache_close(struct gfs_cache *c);

/* Parking (cache_park.c has the policy, cache_index.h the file). */
struct gfs_cidx_entry;
/* Open the file without emptying it, for gfs_cache_restore. */
int gfs_cache_open_keep(struct gfs_cache *c, const char *path, uint32_t block_size,
                        uint32_t nslots);
/* Make block, whose data the file already holds from (seg, offset), a valid
 * slot (charged through acct): 0, -EEXIST, -ENOSPC or -ENOMEM. */
int gfs_cache_restore(struct gfs_cache *c, uint64_t block, uint32_t seg, uint32_t offset);
/* Punch block's place in the file unless a slot holds it (an index entry
 * not restored). */
void gfs_cache_forget(struct gfs_cache *c, uint64_t block);
/* The valid slots as index entries (seg_id names a segment index stably;
 * slots it cannot name, and fills in progress, are released): *out
 * malloc'd, NULL when *count is 0. */
int gfs_cache_park_entries(struct gfs_cache *c, struct gfs_cidx_entry **out, size_t *count,
                           int (*seg_id)(void *arg, uint32_t seg, uint64_t *epoch, uint64_t *seq),
                           void *arg);
/* The slots' data on disk (before an index names it). */
int gfs_cache_sync(struct gfs_cache *c);
/* Close, leaving the file and its bytes as they are (an index names them;
 * the budget counts them as parked). */
void gfs_cache_close_keep(struct gfs_cache *c);

/* A valid slot holding block from (seg, offset): returns slot index and
 * *gen, or -1. Marks the slot referenced. */
int64_t gfs_cache_lookup(struct gfs_cache *c, uint64_t block, uint32_t seg, uint32_t offset,
                         uint32_t *gen);
/* 1 if block is cached from (seg, offset) or being filled: read-ahead
 * leaves it alone. Unlike lookup, does not mark the slot referenced. */
int gfs_cache_has(const struct gfs_cache *c, uint64_t block, uint32_t seg, uint32_t offset);
/* After reading a looked-up slot outside the lock: still the same data?
 * Safe to call without the lock. */
int gfs_cache_still(const struct gfs_cache *c, int64_t slot, uint64_t block, uint32_t gen);

/* Is block in the cache (valid or filling, whatever its location)? A claim
 * for it then needs no new space. */
int gfs_cache_present(const struct gfs_cache *c, uint64_t block);
/* Claim a slot for block (evicting within the budget max_bytes). Returns the
 * slot (state "filling") and *gen, or -1 if nothing can be evicted or the
 * block is being filled already. */
int64_t gfs_cache_claim(struct gfs_cache *c, uint64_t block, uint64_t max_bytes, uint32_t *gen);
/* Finish a claim: valid with the location, or released when ok == 0.
 * Returns 0 if the claim was dropped meanwhile (the slot is not ours). */
int gfs_cache_commit(struct gfs_cache *c, int64_t slot, uint32_t gen, uint32_t seg,
                     uint32_t offset, int ok);
/* A filler whose claim was dropped while it wrote (commit returned 0): its
 * pwrite allocated block's space after the drop punched it. Punch it again
 * unless a new claim of block holds it now: space nobody counts must not
 * stay allocated. */
void gfs_cache_stale_write(struct gfs_cache *c, uint64_t block);
/* Drop block from the cache (if present). */
void gfs_cache_drop(struct gfs_cache *c, uint64_t block);
/* Forget every block (the map they were valid for is gone). */
void gfs_cache_clear(struct gfs_cache *c);
/* Evict until bytes <= max_bytes (valid slots only). Returns the bytes given back. */
uint64_t gfs_cache_shrink(struct gfs_cache *c, uint64_t max_bytes);
/* The block map renumbered its segments (a gfs_bm_renum_fn; arg is the
 * cache): valid slots follow map[] (or go, if their segment went), and
 * slots being filled are doomed, since their filler holds an index of the
 * old numbering for its commit. */
void gfs_cache_renumber(void *cache, const uint32_t *map, uint32_t n);

#endif
