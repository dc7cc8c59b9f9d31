/*
 * clock.c — monotonic and wall-clock milliseconds, monotonic condvar
 * deadlines (clock.h).
 */
#include "clock.h"

int64_t gfs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gfs_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gfs_timespec_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int gfs_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    int r = pthread_condattr_init(&ca);
    if (r == 0)
        r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (r == 0)
        r = pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
    return -r;
}
