/*
 * syncer.h — the upload thread's state in an open volume (v->sync) and its
 * start and stop. The syncer runs only while we hold the lease; compaction
 * runs in it when nothing is due (compactor.h).
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
    /* the thread (started and stopped under own_lock, or at open/close) */
    pthread_t thr;
    int running;
};

int gfs_syncer_start(struct glidefs_volume *v);
void gfs_syncer_stop(struct glidefs_volume *v);

#endif
