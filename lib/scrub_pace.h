/*
 * scrub_pace.h — the budget a rate-limited scrub spends its GETs from
 * (glidefs_scrub_ex's limits): one virtual clock shared by the scrub's
 * threads. Each GET reserves the next slot on it, as long as its bytes
 * take at max_bytes_per_s or one GET takes at max_gets_per_s, whichever is
 * longer, and starts when its slot comes: no credit is saved up while the
 * scrub is idle, so there is no burst beyond one GET.
 */
#ifndef GLIDEFS_SCRUB_PACE_H
#define GLIDEFS_SCRUB_PACE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct gfs_pace {
    pthread_mutex_t mu;
    uint64_t bytes_per_s;   /* 0: no limit */
    uint32_t gets_per_s;    /* 0: no limit */
    int64_t next_ns;        /* CLOCK_MONOTONIC: the next free slot */
    int (*cancel)(void *arg);
    void *cancel_arg;
    atomic_uint_fast64_t gets; /* takes so far: the scrub's GETs */
};

void gfs_pace_init(struct gfs_pace *p, uint64_t bytes_per_s, uint32_t gets_per_s,
                   int (*cancel)(void *arg), void *cancel_arg);
void gfs_pace_destroy(struct gfs_pace *p);

/* Before a GET of up to `bytes`: wait for its slot. 0, or -ECANCELED as
 * soon as cancel says so (polled at least every 100 ms while waiting). */
int gfs_pace_take(struct gfs_pace *p, uint64_t bytes);

#endif
