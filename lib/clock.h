/*
 * clock.h — the library's clocks: monotonic milliseconds for deadlines and
 * ages, wall-clock milliseconds for what is stored or shown (leases,
 * snapshots, stats), and condvar deadlines on CLOCK_MONOTONIC (every
 * condvar in the library is made with that clock: docs/architecture.md).
 */
#ifndef GLIDEFS_CLOCK_H
#define GLIDEFS_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC, ms */
int64_t gfs_now_ms(void);
/* CLOCK_REALTIME, ms since the epoch */
int64_t gfs_wall_ms(void);
/* *ts = now + ms on CLOCK_MONOTONIC: a deadline for pthread_cond_timedwait
 * on a condvar made with gfs_cond_init */
void gfs_timespec_in(struct timespec *ts, int64_t ms);
/* A condvar whose timed waits run on CLOCK_MONOTONIC. */
int gfs_cond_init(pthread_cond_t *c);

#endif
