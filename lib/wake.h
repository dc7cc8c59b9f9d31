/*
 * wake.h — cold start (docs/design.md 4.12): a volume records the blocks a
 * guest reads first after open (profile.h) and stores them as
 * nbd/<vol>/profile when it drains or closes; the next open, on any node,
 * loads that object in the background and has read-ahead's workers fetch
 * its blocks ahead of the guest (gfs_ra_prefetch_start), until the guest
 * stops following it. Clones start with their parent's profile
 * (gfs_wake_copy_profile). State in v->wake, under v->lock unless said.
 */
#ifndef GLIDEFS_WAKE_H
#define GLIDEFS_WAKE_H

#include <stdatomic.h>
#include <stdint.h>

#include "profile.h"

struct glidefs_volume;
struct glidefs_config;
struct gfs_objstore;
struct gfs_log;

#define GFS_WAKE_OFF_RUN 64 /* guest reads in a row outside the profile that stop the prefetch */

struct gfs_wake_state {
    int enabled;                  /* cache.profile_s and cache.profile_mb both > 0 */
    struct gfs_profile_rec rec;   /* this session's (lock) */
    uint32_t saved_n;             /* rec.n when last stored */
    uint32_t laid;                /* rec positions layout has looked at (layout.h) */
    /* the profile loaded at open (lock): position of each block, and a mark
     * per position: 1 prefetched into the cache, 2 read after that */
    struct gfs_blkset loaded;
    uint8_t *mark;
    uint64_t *prev;               /* its blocks (a session that read the same need not store) */
    uint32_t nloaded;
    uint32_t off_run;             /* guest reads in a row not in the profile */
    uint32_t guest_max;           /* furthest profile position the guest read */
    int stopped;                  /* the guest stopped following */
    uint64_t unread;              /* prefetched blocks not read yet */
    _Atomic int64_t first_read_ms; /* open to the first guest read done; 0: none yet */
};

/* Set up recording from cfg (cache.profile_s, cache.profile_mb). */
int gfs_wake_init(struct glidefs_volume *v, const struct glidefs_config *cfg);
/* After read-ahead is set up: load the profile and prefetch, in the
 * background (nothing without read-ahead or with profiling off). */
void gfs_wake_start(struct glidefs_volume *v);
void gfs_wake_free(struct glidefs_volume *v);
/* The guest reads blocks [fb, lb] (lock held; no allocation). */
void gfs_wake_note_read(struct glidefs_volume *v, uint64_t fb, uint64_t lb);
/* Block b was served from the cache to the guest (lock held). */
void gfs_wake_cache_hit(struct glidefs_volume *v, uint64_t b);
/* A guest read completed (lock not held). */
void gfs_wake_read_done(struct glidefs_volume *v);
/* Store the recorded profile if this node writes the volume and it has
 * something new. Lock not held. A failure is logged and returned; it
 * never fails a drain or a close. */
int gfs_wake_save(struct glidefs_volume *v);
/* Copy nbd/<from>/profile to nbd/<to>/profile (clones); 0 when there is
 * none to copy. */
int gfs_wake_copy_profile(struct gfs_objstore *store, struct gfs_log *log, const char *from,
                          const char *to);

#endif
