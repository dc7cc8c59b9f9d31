/*
 * latency.c — per-export request latency histograms (see latency.h). The
 * entries live in a list under a mutex that is taken only to find or create
 * an entry (once per NBD connection) and to snapshot; recording is lock-free:
 * relaxed atomic adds on a bucket and on the sum. The count is the sum of the
 * buckets, so a snapshot never shows a count without its bucket. Reader
 * reliefs are one more relaxed counter per entry.
 */
#include "latency.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "glidefs/glidefs.h"

struct lat_op {
    _Atomic uint64_t buckets[GD_LAT_BUCKETS + 1];
    _Atomic uint64_t sum_ns;
} __attribute__((aligned(64))); /* ops of one export do not share cache lines */

struct gd_latency {
    struct gd_latency *next;
    char name[GLIDEFS_NAME_MAX + 1];
    struct lat_op ops[GD_LAT_NOPS];
    _Atomic uint64_t reliefs;
};

static pthread_mutex_t lat_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gd_latency *lat_head;

static const char *const op_names[GD_LAT_NOPS] = {
    "read", "write", NULL, "flush", "trim", "cache", "write_zeroes", "block_status",
};

const char *gd_latency_op_name(unsigned op)
{
    return op < GD_LAT_NOPS ? op_names[op] : NULL;
}

uint64_t gd_latency_bucket_le_us(unsigned i)
{
    return (uint64_t)8 << i;
}

static struct gd_latency *find_locked(const char *name)
{
    for (struct gd_latency *l = lat_head; l; l = l->next)
        if (strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

struct gd_latency *gd_latency_for(const char *name)
{
    if (!name || strlen(name) > GLIDEFS_NAME_MAX)
        return NULL;
    SCOPED_LOCK(&lat_lock);
    struct gd_latency *l = find_locked(name);
    if (l)
        return l;
    l = aligned_alloc(64, sizeof *l);
    if (!l)
        return NULL;
    memset(l, 0, sizeof *l);
    strcpy(l->name, name);
    l->next = lat_head;
    lat_head = l;
    return l;
}

uint64_t gd_latency_start(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void gd_latency_end(struct gd_latency *l, unsigned op, uint64_t t0_ns)
{
    if (!l || op >= GD_LAT_NOPS)
        return;
    uint64_t ns = gd_latency_start() - t0_ns;
    uint64_t us = ns / 1000;
    unsigned i = 0;
    if (us > 8) {
        /* smallest i with us <= 8 << i, i.e. ceil(log2(us)) - 3 */
        unsigned bits = 64u - (unsigned)__builtin_clzll(us - 1);
        i = bits - 3;
        if (i > GD_LAT_BUCKETS)
            i = GD_LAT_BUCKETS;
    }
    atomic_fetch_add_explicit(&l->ops[op].buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->ops[op].sum_ns, ns, memory_order_relaxed);
}

void gd_latency_relief(struct gd_latency *l)
{
    if (l)
        atomic_fetch_add_explicit(&l->reliefs, 1, memory_order_relaxed);
}

uint64_t gd_latency_reliefs(const char *name)
{
    SCOPED_LOCK(&lat_lock);
    struct gd_latency *l = find_locked(name);
    return l ? atomic_load_explicit(&l->reliefs, memory_order_relaxed) : 0;
}

int gd_latency_snapshot(const char *name, struct gd_lat_snapshot out[GD_LAT_NOPS])
{
    SCOPED_LOCK(&lat_lock);
    struct gd_latency *l = find_locked(name);
    if (!l)
        return -ENOENT;
    for (unsigned op = 0; op < GD_LAT_NOPS; op++) {
        struct gd_lat_snapshot *s = &out[op];
        s->count = 0;
        for (unsigned i = 0; i <= GD_LAT_BUCKETS; i++) {
            s->buckets[i] = atomic_load_explicit(&l->ops[op].buckets[i], memory_order_relaxed);
            s->count += s->buckets[i];
        }
        s->sum_ns = atomic_load_explicit(&l->ops[op].sum_ns, memory_order_relaxed);
    }
    return 0;
}

uint64_t gd_latency_quantile_us(const struct gd_lat_snapshot *s, double q)
{
    if (s->count == 0)
        return 0;
    double want = q * (double)s->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < GD_LAT_BUCKETS; i++) {
        seen += s->buckets[i];
        if ((double)seen >= want && seen > 0)
            return gd_latency_bucket_le_us(i);
    }
    return gd_latency_bucket_le_us(GD_LAT_BUCKETS - 1) * 2;
}

void gd_latency_free_all(void)
{
    SCOPED_LOCK(&lat_lock);
    while (lat_head) {
        struct gd_latency *l = lat_head;
        lat_head = l->next;
        free(l);
    }
}
