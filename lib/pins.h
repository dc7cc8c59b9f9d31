/*
 * pins.h — what the volume's snapshots keep from compaction (v->snap): the
 * segments and manifests they name, and the "@fenced-<epoch>" holds that
 * keep a fenced node's epoch. Loaded from the store (gfs_snapshots_load),
 * added to before a new snapshot is stored (gfs_pins_add_manifest), asked
 * by the compactor under v->lock.
 */
#ifndef GLIDEFS_PINS_H
#define GLIDEFS_PINS_H

#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"

struct glidefs_volume;
struct gfs_objstore;

struct gfs_pin {
    uint64_t epoch, seq; /* epoch with its origin bits, as in the block map */
};

struct gfs_hold {        /* "@fenced-<epoch>" snapshots: that epoch's segments stay */
    uint64_t epoch;
    int64_t created_ms;  /* wall clock */
};

struct gfs_snap_state {
    struct gfs_pin *pins;        /* sorted */
    size_t npins;
    char **pinned_manifests;     /* keys */
    size_t npinned_manifests;
    uint64_t gen;                /* bumped when a snapshot is about to be stored: a load
                                  * of the pins that began before must not install */
    struct gfs_hold *holds;
    size_t nholds;
    int64_t fenced_hold_ms;      /* compaction.fenced_hold_s */
};

/* v->lock held: */
int gfs_pinned(const struct glidefs_volume *v, uint64_t epoch, uint64_t seq);
int gfs_manifest_pinned(const struct glidefs_volume *v, const char *key);
/* Is `epoch` (our own, without origin bits) held for a fenced node? */
int gfs_held_epoch(const struct glidefs_volume *v, uint64_t epoch);

/* (Re)load the pins from the store's snapshot objects (lock not held). */
int gfs_snapshots_load(struct glidefs_volume *v);
/* The same, but a snapshot whose manifest is missing (-ENOENT) or does not
 * decode (-EIO) is passed to bad (its manifest's key) and the walk goes
 * on; if any was, nothing is installed and the pins in force stay. Scrub
 * reports such snapshots with it. */
typedef void (*gfs_snap_bad_fn)(void *arg, const char *manifest_key, int err);
int gfs_snapshots_load_report(struct glidefs_volume *v, gfs_snap_bad_fn bad, void *arg);
void gfs_snapshots_free(struct glidefs_volume *v);
/* Pin manifest `mkey` now, before the snapshot naming it is stored. */
int gfs_pins_add_manifest(struct glidefs_volume *v, const char *mkey);

/* Holds older than compaction.fenced_hold_s go. How many went, or -errno. */
int gfs_fence_holds_expire(struct glidefs_volume *v);

/* For each "@fenced-<epoch>" hold of volume `name`: the epochs [lo, hi]
 * whose fences its view needs (lo: the epoch of the manifest it keeps; hi:
 * the held epoch, whose fence says how many segments the view must find). */
#define GFS_MAX_RANGES 256
struct gfs_epoch_ranges {
    size_t n;
    struct gfs_epoch_range {
        uint64_t lo, hi;
        char name[GLIDEFS_NAME_MAX + 8];
    } r[GFS_MAX_RANGES];
};
int gfs_fence_hold_ranges(struct gfs_objstore *st, const char *name,
                          struct gfs_epoch_ranges *rs);

#endif
