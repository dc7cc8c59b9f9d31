/*
 * workers.c — a fixed-size pool of threads draining one FIFO of jobs (see
 * workers.h). A mutex and a condition variable; no per-job allocation.
 */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cleanup.h"
#include "clock.h"
#include "log.h"

struct gd_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* jobs queued or stopping (lock; CLOCK_MONOTONIC) */
    struct gd_job *head, *tail;
    bool stopping;
    int nthreads;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    struct gd_pool *p = arg;
    for (;;) {
        struct gd_job *job;
        {
            SCOPED_LOCK(&p->lock);
            while (!p->head && !p->stopping)
                pthread_cond_wait(&p->cond, &p->lock);
            job = p->head;
            if (!job)
                return NULL; /* stopping and drained */
            p->head = job->next;
            if (!p->head)
                p->tail = NULL;
        }
        job->next = NULL;
        job->fn(job);
    }
}

int gd_pool_create(int nthreads, struct gd_pool **out)
{
    if (nthreads < 1)
        nthreads = 1;
    struct gd_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    gfs_cond_init(&p->cond);
    for (int i = 0; i < nthreads; i++) {
        int e = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (e) {
            gd_err("cannot start worker thread: %s", glidefs_strerror(e));
            p->nthreads = i;
            gd_pool_destroy(p);
            return -e;
        }
    }
    p->nthreads = nthreads;
    *out = p;
    return 0;
}

void gd_pool_submit(struct gd_pool *p, struct gd_job *job)
{
    job->next = NULL;
    SCOPED_LOCK(&p->lock);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cond);
}

void gd_pool_destroy(struct gd_pool *p)
{
    if (!p)
        return;
    {
        SCOPED_LOCK(&p->lock);
        p->stopping = true;
        pthread_cond_broadcast(&p->cond);
    }
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}
