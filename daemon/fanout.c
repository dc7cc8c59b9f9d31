/*
 * fanout.c — one job per item on a few threads (fanout.h).
 */
#include "fanout.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define FANOUT_MAX 16

struct fanout {
    uint32_t n;
    _Atomic uint32_t next;
    void (*fn)(void *arg, uint32_t i);
    void *arg;
};

static void *run(void *p)
{
    struct fanout *f = p;
    for (;;) {
        uint32_t i = atomic_fetch_add(&f->next, 1);
        if (i >= f->n)
            return NULL;
        f->fn(f->arg, i);
    }
}

void gd_fanout(uint32_t n, unsigned max_threads, void (*fn)(void *arg, uint32_t i), void *arg)
{
    if (n == 0)
        return;
    struct fanout f = { .n = n, .fn = fn, .arg = arg };
    atomic_init(&f.next, 0);
    pthread_t thr[FANOUT_MAX];
    unsigned extra = max_threads > 1 ? max_threads - 1 : 0, started = 0;
    if (extra > FANOUT_MAX)
        extra = FANOUT_MAX;
    if (extra > n - 1)
        extra = n - 1;
    while (started < extra && pthread_create(&thr[started], NULL, run, &f) == 0)
        started++;
    run(&f);
    for (unsigned i = 0; i < started; i++)
        pthread_join(thr[i], NULL);
}
