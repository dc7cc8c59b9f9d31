/*
 * scrub_pace.c — the scrub's GET budget (scrub_pace.h): a slot per GET on
 * a shared virtual clock, and the wait for it, cut short by a cancel.
 */
#include <errno.h>
#include <time.h>

#include "scrub_pace.h"

#define POLL_NS 100000000LL /* how long a wait goes without asking cancel */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void gfs_pace_init(struct gfs_pace *p, uint64_t bytes_per_s, uint32_t gets_per_s,
                   int (*cancel)(void *arg), void *cancel_arg)
{
    pthread_mutex_init(&p->mu, NULL);
    p->bytes_per_s = bytes_per_s;
    p->gets_per_s = gets_per_s;
    p->next_ns = 0;
    p->cancel = cancel;
    p->cancel_arg = cancel_arg;
    atomic_init(&p->gets, 0);
}

void gfs_pace_destroy(struct gfs_pace *p)
{
    pthread_mutex_destroy(&p->mu);
}

static int cancelled(const struct gfs_pace *p)
{
    return p->cancel && p->cancel(p->cancel_arg);
}

int gfs_pace_take(struct gfs_pace *p, uint64_t bytes)
{
    if (cancelled(p))
        return -ECANCELED;
    atomic_fetch_add_explicit(&p->gets, 1, memory_order_relaxed);
    if (!p->bytes_per_s && !p->gets_per_s)
        return 0;
    /* this GET's length on the clock: the longer of its two costs (double:
     * a large run times 1e9 stays exact enough and cannot overflow) */
    double cost = 0;
    if (p->bytes_per_s)
        cost = (double)bytes * 1e9 / (double)p->bytes_per_s;
    if (p->gets_per_s && 1e9 / p->gets_per_s > cost)
        cost = 1e9 / p->gets_per_s;
    pthread_mutex_lock(&p->mu);
    int64_t now = now_ns();
    int64_t start = p->next_ns > now ? p->next_ns : now; /* an idle clock saves nothing up */
    p->next_ns = start + (int64_t)cost;
    pthread_mutex_unlock(&p->mu);
    /* pacing, not waiting for a condition: sleep to the slot, asking
     * cancel on the way so a stopping daemon is not held up */
    for (;;) {
        int64_t left = start - now_ns();
        if (left <= 0)
            return 0;
        if (left > POLL_NS)
            left = POLL_NS;
        struct timespec ts = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
        nanosleep(&ts, NULL);
        if (cancelled(p))
            return -ECANCELED;
    }
}
