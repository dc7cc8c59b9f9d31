/*
 * workers.h — the shared worker pool that executes NBD requests for every
 * connection, so a slow request (a cache miss fetching from the store) never
 * holds up the requests behind it. Jobs are intrusive: the caller embeds a
 * struct gd_job and owns its memory.
 */
#ifndef GLIDEFSD_WORKERS_H
#define GLIDEFSD_WORKERS_H

struct gd_job {
    struct gd_job *next;
    void (*fn)(struct gd_job *job);
};

struct gd_pool;

/* Start nthreads workers. 0 or negative errno. */
int gd_pool_create(int nthreads, struct gd_pool **out);
/* Queue a job (FIFO); some worker runs job->fn(job). Never blocks. */
void gd_pool_submit(struct gd_pool *p, struct gd_job *job);
/* Run every queued job, then stop and free the pool. */
void gd_pool_destroy(struct gd_pool *p);

#endif
