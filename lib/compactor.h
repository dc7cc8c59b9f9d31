/*
 * compactor.h — compaction's state in an open volume (v->comp) and its
 * step, run by the syncer thread when nothing is due.
 */
#ifndef GLIDEFS_COMPACTOR_H
#define GLIDEFS_COMPACTOR_H

#include <stdint.h>

#include "blockmap.h"
#include "glidefs/glidefs.h"

struct glidefs_volume;
struct gfs_sealkey;

struct gfs_comp_state {
    /* tunables (set at open) */
    int min_live_pct;
    int64_t interval_ms;
    uint64_t rate_bps;
    int64_t grace_ms;
    int keep_manifests;
    int max_stored_pct;          /* stored bytes above this % of live: compact now (0: off) */
    /* under v->lock */
    int64_t next_ms;             /* next background cycle */
    int64_t rate_next_ms;        /* ratio-triggered steps: not before (compaction.rate_mb_s) */
    int64_t check_next_ms;       /* next look at the stored/live ratio */
    uint64_t req_gen;            /* bumped by each glidefs_compact call */
    uint64_t done_gen;           /* the last request generation a cycle has served */
    struct glidefs_compact_result last;
};

/* One bounded step (v->lock held; dropped for I/O). requested: a
 * glidefs_compact call waits. 1 if it did work, 0, or -errno. */
int gfs_compact_step(struct glidefs_volume *v, int requested);

/* A block compaction or layout (layout.h) copies into a new segment. */
struct gfs_moved {
    uint64_t block;
    struct gfs_bm_entry old;        /* its map entry when read */
    uint32_t new_offset;
    int skip;                       /* its seal did not open: left where it is */
    const struct gfs_sealkey *from; /* its segment's key (sealed volumes) */
};

/* Upload one new segment holding the given blocks' stored bytes
 * (payloads[i]: mv[i]'s payload as stored, CRC already checked; the order
 * of both may change) and commit the moves that are still current: the map
 * points at the copy unless a newer write landed meanwhile (a cached copy,
 * filed under the old location, goes). *rewritten grows by the bytes moved. Lock held; dropped
 * for the upload. 0 or -errno (nothing moved). */
int gfs_compact_copy(struct glidefs_volume *v, struct gfs_moved *mv, uint32_t n,
                     uint8_t **payloads, uint64_t *rewritten);

/* Delete the segment objects keys[0..n) of this volume that nothing
 * references (found at open, or by scrub: storeview.h's garbage rule),
 * under the rule of docs/design.md 4.6 (v->lock held; dropped for I/O): only
 * the writer, once a manifest stored since open exists and
 * compaction.grace_ms has passed since open, never one a snapshot pins or
 * of an epoch held for a fenced node, and after re-reading the lease
 * (unless confirmed: the caller just did). done[i] is set for each key
 * deleted. Returns how many, -EAGAIN (no manifest yet, or within the
 * grace), -EROFS (not the writer) or the store's error (none deleted). */
int gfs_compact_drop_garbage(struct glidefs_volume *v, char *const *keys, size_t n, int confirmed,
                             uint8_t *done);

#endif
