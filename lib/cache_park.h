/*
 * cache_park.h — a closed volume's clean cache kept for its next open on
 * this node (cache_park.c).
 */
#ifndef GLIDEFS_CACHE_PARK_H
#define GLIDEFS_CACHE_PARK_H

#include <stdint.h>

struct glidefs_volume;

/* At close (v->lock held): park the cache (index written, file kept) and
 * return the bytes kept, for gfs_budget_park once the volume has left the
 * budget; or empty it and return 0.
 * The cache is closed either way. */
uint64_t gfs_cache_park(struct glidefs_volume *v);
/* Open the cache file at path with slots slots, restoring what a parked
 * index names and the block map still points at (v->lock not held). The
 * first open of a budget also counts the parked caches an earlier process
 * left under cache_dir. */
int gfs_cache_unpark(struct glidefs_volume *v, const char *cache_dir, const char *path,
                     uint32_t slots);
/* The budget's drop for a parked cache: its index and file go (0), unless
 * the volume is open (its dir lock held: -EBUSY, nothing removed). */
int gfs_cache_park_drop(const char *dir);

#endif
