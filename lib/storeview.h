/*
 * storeview.h — a view of a volume in the store: what reading it needs (its
 * name, store, codec and volume.json) and the block map loaded from its
 * newest manifest plus the segment headers after it, counting only what
 * the lease's fences let count (docs/design.md 5.10). An open volume embeds
 * one (v->sv, kept current by follow.c and by its own uploads); fenced.c
 * loads a private one for the epoch a fenced node last wrote.
 *
 * A view borrows name, log, store, codec and meta (they must outlive it)
 * and owns the rest. Not thread-safe: an open volume guards its view with
 * v->lock (the map) and own_lock (lease, loading); the I/O of a load runs
 * without v->lock where the callers say so.
 */
#ifndef GLIDEFS_STOREVIEW_H
#define GLIDEFS_STOREVIEW_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "blockmap.h"
#include "lease.h"
#include "segment.h"
#include "volmeta.h"

struct gfs_codec;
struct gfs_log;
struct gfs_objstore;

struct gfs_view {
    /* borrowed */
    const char *name;
    const struct gfs_log *log;
    struct gfs_objstore *store;
    struct gfs_codec *codec;
    const struct gfs_volmeta *meta;
    uint32_t bs;                /* block size (meta->block_size) */
    /* owned */
    struct gfs_lease lease;     /* whose fences the map was loaded under (an open
                                 * volume: the lease as last read or written;
                                 * written under own_lock and v->lock, read
                                 * under either) */
    struct gfs_blockmap bm;
    uint64_t last_seg_epoch, last_seg_seq;  /* newest segment we know of */
    uint64_t manifest_epoch, manifest_seq;  /* newest manifest's covered segment */
    uint32_t segs_since_manifest;           /* segments after it */
    uint64_t max_write_seq;     /* highest write seq the map has held (never lowered) */
    char **garbage;             /* unreferenced segment keys found by a full load */
    size_t ngarbage;
    /* counted by every fetch through the view (blockio.h) */
    _Atomic uint64_t blocks_fetched, checksum_errors;
};

/* The prefix name of the volume that stores segments of origin o. */
static inline const char *gfs_view_origin_name(const struct gfs_view *sv, uint32_t o)
{
    return gfs_origin_name(sv->meta, sv->name, o);
}

/* Borrow the identity and make an empty map of size bytes. */
int gfs_view_init(struct gfs_view *sv, const char *name, const struct gfs_log *log,
                  struct gfs_objstore *store, struct gfs_codec *codec,
                  const struct gfs_volmeta *meta, uint64_t size);
void gfs_view_free(struct gfs_view *sv);
/* Forget the garbage list. */
void gfs_view_garbage_free(struct gfs_view *sv);

/* Load the map (empty before) from the store under sv->lease's fences: a
 * clone's base manifest, the newest manifest of its own, the segments after
 * it; every other segment goes to the garbage list (or gets its size, for
 * compaction). */
int gfs_view_load(struct gfs_view *sv);

/* The segment keys after start_after ("" or NULL: all) that sv->lease lets
 * count, in key order, with their sizes. */
struct gfs_seg_list {
    char **keys;
    uint64_t *sizes;
    size_t n, cap;
    const struct gfs_lease *lease; /* NULL: every segment */
};
int gfs_view_list_segs(struct gfs_view *sv, const char *start_after, struct gfs_seg_list *l);
void gfs_seg_list_free(struct gfs_seg_list *l);

/* GET and check segment key's header (it must be one of this volume's). */
int gfs_view_seg_header(struct gfs_view *sv, const char *key, uint64_t size,
                        struct gfs_seg_header *h);
/* Apply a checked header of segment key (size bytes) to the map: the newest
 * write of each block wins; it becomes the newest segment we know. */
int gfs_view_apply_seg(struct gfs_view *sv, const char *key, uint64_t size,
                       const struct gfs_seg_header *h);

/* Does segment (epoch, seq) of the volume's own prefix count for a load
 * under sv->lease (not fenced, not below the floor)? */
int gfs_view_seg_counts(const struct gfs_view *sv, uint64_t epoch, uint64_t seq);

/* Is segment (epoch, seq) of the volume's own prefix, found in a listing
 * now, garbage: what a load now would put on the garbage list (not in the
 * map, and fenced, below the floor, or at or before the newest segment the
 * view knows), as opposed to one a load would apply (after the newest the
 * view knows: possibly an upload or compaction not committed yet)? Pins
 * and fenced holds are the caller's (pins.h). 0 for an epoch or seq no
 * segment key has. */
int gfs_view_seg_garbage(const struct gfs_view *sv, uint64_t epoch, uint64_t seq);

/* Highest segment seq of an epoch (our own origin) in the view, 0 if none. */
uint64_t gfs_view_last_seq_of(const struct gfs_view *sv, uint64_t epoch);

#endif
