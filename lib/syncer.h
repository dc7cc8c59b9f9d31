/*
 * syncer.h — the upload thread's state in an open volume (v->sync) and its
 * start and stop. The syncer runs only while we hold the lease; compaction
 * runs in it when nothing is due (compactor.h). It also serves store-mode
 * flushes (gfs_syncer_flush) and the max_unsynced bounds.
 */
#ifndef GLIDEFS_SYNCER_H
#define GLIDEFS_SYNCER_H

#include <pthread.h>
#include <stdint.h>

struct glidefs_volume;

struct gfs_sync_state {
    /* tunables (set at open) */
    uint32_t blocks_per_batch;
    uint32_t upload_parallel;
    uint32_t drain_parallel;     /* segments in flight while a drain or back-pressure waits
                                    (storage.max_connections) */
    int64_t delay_ms;            /* servers.nbd.sync_delay_ms */
    int64_t max_dirty_age_ms;
    /* under v->lock */
    uint32_t force;              /* drains / back-pressure waiting: ignore the delay */
    int64_t backoff_until_ms;
    int error;                   /* last upload error, 0 after a success */
    uint64_t next_seg_seq;       /* of our epoch: the syncer's and compaction's segments */
    int stop;                    /* this run ends (release, close) */
    pthread_cond_t cond;         /* wakes the syncer (with v->lock; CLOCK_MONOTONIC) */
    /* durability (v->lock; glidefs_volume_set_durability) */
    int durability;              /* GLIDEFS_DURABILITY_*: store = a flush waits for the store */
    int64_t max_unsynced_ms;     /* upload by half this age; writes wait past it; 0 = off */
    uint64_t max_unsynced_bytes; /* writes wait while this much is not in the store; 0 = off */
    /* Store-mode flushers waiting (group commit): each waits until every
     * write seq up to its target is in a committed segment and a manifest
     * stored after that commit covers it: durable_seq >= target. */
    struct gfs_flush_waiter *waiters;
    uint64_t durable_seq;        /* uploaded-through watermark a stored manifest covers */
    uint64_t flush_upto;         /* the current round: blocks with a write up to it go now */
    uint64_t flush_err_gen;      /* bumped by an upload or manifest failure seen by waiters */
    int flush_err;               /* that failure */
    /* the thread (started and stopped under own_lock, or at open/close) */
    pthread_t thr;
    int running;
};

struct gfs_flush_waiter {
    uint64_t target;
    struct gfs_flush_waiter *next;
};

int gfs_syncer_start(struct glidefs_volume *v);
void gfs_syncer_stop(struct glidefs_volume *v);

/* Every write seq <= the result is in a committed segment (v->lock held):
 * one below the oldest dirty block's first_seq (dirty.h). */
uint64_t gfs_syncer_uploaded_through(struct glidefs_volume *v);

/* Store mode (lock held, after the journal flush): ask the syncer to upload
 * every write up to target now and store a manifest, and wait until it has
 * (one segment and one manifest PUT for all the flushers waiting meanwhile).
 * 0 in local mode. A store error is returned (the data stays dirty and is
 * retried); -EROFS when the lease is lost, -ESHUTDOWN when closing. */
int gfs_syncer_flush(struct glidefs_volume *v, uint64_t target);

/* Before a write of len bytes (lock held): wait while the max_unsynced
 * bounds are exceeded, with the syncer hurried (back-pressure, never a
 * failure). -EROFS / -ESHUTDOWN as journal_room. */
int gfs_syncer_room(struct glidefs_volume *v, uint64_t len);

#endif
