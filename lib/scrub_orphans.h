/*
 * scrub_orphans.h — the orphan objects a scrub reports (and, asked to,
 * deletes): segment objects under the volume's own prefix that nothing
 * keeps. The rule is the one a load applies to its garbage list
 * (gfs_view_seg_garbage, storeview.h) plus what compaction keeps (pins.h:
 * snapshots, fenced holds); deleting goes through compaction's own path
 * for garbage (gfs_compact_drop_garbage, compactor.h).
 *
 * A scrub records the newest segment its view knows (begin, lock held)
 * before it lists, offers every listed key (consider: only keys of the
 * exact form nbd/<own name>/seg/<E>-<S> are kept; the listing is outside
 * input), and keeps, under the lock again (settle), only those that were
 * not possibly in flight when listed and are garbage now.
 */
#ifndef GLIDEFS_SCRUB_ORPHANS_H
#define GLIDEFS_SCRUB_ORPHANS_H

#include <stddef.h>
#include <stdint.h>

struct glidefs_volume;

struct gfs_orphan {
    char *key;
    uint64_t size;             /* as listed */
    uint64_t epoch, seq;       /* parsed from the key (no origin bits) */
};

struct gfs_orphans {
    struct gfs_orphan *o;
    size_t n, cap;
    uint64_t known_epoch, known_seq; /* the newest segment the view knew before the listing */
    char prefix[160];                /* nbd/<name>/seg/ */
};

/* v->lock held, before the listing. */
void gfs_orphans_begin(struct glidefs_volume *v, struct gfs_orphans *o);
/* A key listed under the store: kept if it is a segment key of the
 * volume's own prefix. 0 or -ENOMEM. */
int gfs_orphans_consider(struct gfs_orphans *o, const char *key, uint64_t size);
/* v->lock held: drop every candidate that is not an orphan now. */
void gfs_orphans_settle(struct glidefs_volume *v, struct gfs_orphans *o);
/* Delete the orphans (lock not held): done[i] set for each one deleted.
 * How many, or -EROFS / -EAGAIN / the store's error (gfs_compact_drop_garbage). */
int gfs_orphans_delete(struct glidefs_volume *v, struct gfs_orphans *o, uint8_t *done);
void gfs_orphans_free(struct gfs_orphans *o);

#endif
