/*
 * checkpoint.h — writing the block map as a manifest (docs/design.md 5.7):
 * after every MANIFEST_EVERY_SEGS uploads, at drain, before a release or a
 * delete can rely on it. Manifests are serialised on manifest_lock; the
 * map is copied under v->lock and the PUT runs without it.
 */
#ifndef GLIDEFS_CHECKPOINT_H
#define GLIDEFS_CHECKPOINT_H

#include <pthread.h>
#include <stdint.h>

struct glidefs_volume;

struct gfs_ckpt_state {
    pthread_mutex_t lock;       /* manifest_lock: one manifest PUT at a time */
    uint64_t gen;               /* bumped by each manifest we store (v->lock) */
};

/* A manifest if segments were stored since the last one. */
int gfs_volume_write_manifest(struct glidefs_volume *v);
/* Even with no new segment (a clone's first manifest, at key 0-0 if it has none). */
int gfs_volume_write_manifest_force(struct glidefs_volume *v);
/* Forced, and keyed at least (our epoch, 0): every reader then starts after
 * it, so the next taker may raise the lease's floor to our epoch (lease.h). */
int gfs_volume_write_manifest_mark(struct glidefs_volume *v);

#endif
