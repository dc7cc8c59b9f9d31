/*
 * fastread.c — the lock-free read path's table (see fastread.h).
 */
#include "fastread.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int gfs_fr_init(struct gfs_fastrd *fr, uint64_t nblocks, uint32_t spb)
{
    memset(fr, 0, sizeof *fr);
    fr->gpb = spb / GFS_FR_GRAN ? spb / GFS_FR_GRAN : 1;
    uint64_t want = nblocks * fr->gpb, n = 1;
    if (want > GFS_FR_MAX_ENTRIES)
        want = GFS_FR_MAX_ENTRIES;
    while (n < want)
        n <<= 1;
    fr->ent = calloc(n, sizeof *fr->ent);
    /* aligned: a stripe shares its line with nothing another CPU writes */
    fr->ctr = aligned_alloc(64, GFS_FR_STRIPES * sizeof *fr->ctr);
    if (!fr->ent || !fr->ctr) {
        gfs_fr_free(fr);
        return -ENOMEM;
    }
    memset(fr->ctr, 0, GFS_FR_STRIPES * sizeof *fr->ctr);
    fr->mask = n - 1;
    return 0;
}

void gfs_fr_free(struct gfs_fastrd *fr)
{
    free(fr->ent);
    free(fr->ctr);
    fr->ent = NULL;
    fr->ctr = NULL;
}

/* The writer's side of the seqcount: odd, change, even. */
static void ent_begin(struct gfs_fr_ent *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void ent_end(struct gfs_fr_ent *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
}

static void ent_clear(struct gfs_fr_ent *e)
{
    ent_begin(e);
    atomic_store_explicit(&e->kind, GFS_FR_NONE, memory_order_relaxed);
    ent_end(e);
}

void gfs_fr_publish(struct gfs_fastrd *fr, uint64_t b, uint32_t g, enum gfs_fr_kind kind,
                    int64_t off, int32_t fd)
{
    if (!fr || !fr->ent || g >= fr->gpb)
        return;
    uint64_t key = b * fr->gpb + g;
    struct gfs_fr_ent *e = &fr->ent[key & fr->mask];
    if (atomic_load_explicit(&e->kind, memory_order_relaxed) == (uint32_t)kind &&
        atomic_load_explicit(&e->key, memory_order_relaxed) == key &&
        atomic_load_explicit(&e->off, memory_order_relaxed) == off &&
        atomic_load_explicit(&e->fd, memory_order_relaxed) == fd)
        return; /* already so: no store, the readers' cache line stays shared */
    ent_begin(e);
    atomic_store_explicit(&e->kind, (uint32_t)kind, memory_order_relaxed);
    atomic_store_explicit(&e->key, key, memory_order_relaxed);
    atomic_store_explicit(&e->off, off, memory_order_relaxed);
    atomic_store_explicit(&e->fd, fd, memory_order_relaxed);
    ent_end(e);
}

void gfs_fr_inval(struct gfs_fastrd *fr, uint64_t b, uint32_t s, uint32_t n)
{
    if (!fr || !fr->ent || n == 0)
        return;
    uint32_t g0 = s / GFS_FR_GRAN, g1 = (s + n - 1) / GFS_FR_GRAN;
    if (g1 >= fr->gpb)
        g1 = fr->gpb - 1;
    for (uint32_t g = g0; g <= g1; g++) {
        uint64_t key = b * fr->gpb + g;
        struct gfs_fr_ent *e = &fr->ent[key & fr->mask];
        if (atomic_load_explicit(&e->kind, memory_order_relaxed) != GFS_FR_NONE &&
            atomic_load_explicit(&e->key, memory_order_relaxed) == key)
            ent_clear(e);
    }
    /* the change the caller makes next (a punch, new bytes, a close) comes
     * after the bumps in every reader's view */
    atomic_thread_fence(memory_order_seq_cst);
}

void gfs_fr_inval_block(struct gfs_fastrd *fr, uint64_t b)
{
    if (fr && fr->ent)
        gfs_fr_inval(fr, b, 0, fr->gpb * GFS_FR_GRAN);
}

void gfs_fr_inval_all(struct gfs_fastrd *fr)
{
    if (!fr || !fr->ent)
        return;
    for (uint64_t i = 0; i <= fr->mask; i++)
        if (atomic_load_explicit(&fr->ent[i].kind, memory_order_relaxed) != GFS_FR_NONE)
            ent_clear(&fr->ent[i]);
    atomic_thread_fence(memory_order_seq_cst);
}

int gfs_fr_read(struct gfs_fastrd *fr, uint64_t b, uint32_t s, uint32_t n, int cache_fd,
                uint32_t bs, uint8_t *dst, int64_t *slot)
{
    if (!fr->ent || n == 0)
        return 0;
    uint32_t g0 = s / GFS_FR_GRAN, g1 = (s + n - 1) / GFS_FR_GRAN;
    if (g1 - g0 >= GFS_FR_MAX_SPAN || g1 >= fr->gpb)
        return 0;
    uint64_t k0 = b * fr->gpb;
    size_t len = (size_t)n * 512;
    for (int tries = 0; tries < 3; tries++) {
        uint32_t seqs[GFS_FR_MAX_SPAN];
        uint32_t kind = GFS_FR_NONE;
        int64_t off = 0;
        int32_t fd = -1;
        int busy = 0;
        for (uint32_t g = g0; g <= g1; g++) {
            const struct gfs_fr_ent *e = &fr->ent[(k0 + g) & fr->mask];
            uint32_t sq = atomic_load_explicit(&e->seq, memory_order_acquire);
            if (sq & 1) {
                busy = 1;
                break;
            }
            seqs[g - g0] = sq;
            uint32_t k = atomic_load_explicit(&e->kind, memory_order_relaxed);
            if (k == GFS_FR_NONE || atomic_load_explicit(&e->key, memory_order_relaxed) != k0 + g)
                return 0;
            if (g == g0) {
                kind = k;
                off = atomic_load_explicit(&e->off, memory_order_relaxed);
                fd = atomic_load_explicit(&e->fd, memory_order_relaxed);
            } else if (k != kind ||
                       (k == GFS_FR_JDATA &&
                        (atomic_load_explicit(&e->fd, memory_order_relaxed) != fd ||
                         atomic_load_explicit(&e->off, memory_order_relaxed) !=
                             off + (int64_t)(g - g0) * GFS_FR_GRAN * 512))) {
                return 0; /* one pread: the same kind, journal data contiguous */
            }
        }
        if (busy)
            continue;
        if (fr->test_gap)
            fr->test_gap(fr->test_gap_arg);
        if (kind == GFS_FR_CACHE) {
            if (pread(cache_fd, dst, len, (off_t)(b * bs + (uint64_t)s * 512)) != (ssize_t)len)
                return 0;
        } else if (kind == GFS_FR_JZERO) {
            memset(dst, 0, len);
        } else {
            off_t at = (off_t)(off + (int64_t)(s - g0 * GFS_FR_GRAN) * 512);
            if (pread(fd, dst, len, at) != (ssize_t)len)
                continue; /* a stale descriptor, most likely: look again */
        }
        /* like a seqlock's reader: the data read before the seqcounts again */
        atomic_thread_fence(memory_order_seq_cst);
        int same = 1;
        for (uint32_t g = g0; g <= g1 && same; g++)
            same = atomic_load_explicit(&fr->ent[(k0 + g) & fr->mask].seq,
                                        memory_order_relaxed) == seqs[g - g0];
        if (!same)
            continue;
        *slot = kind == GFS_FR_CACHE ? off : -1;
        return 1;
    }
    return 0;
}

static struct gfs_fr_ctr *stripe(struct gfs_fastrd *fr)
{
    int cpu = sched_getcpu();
    return &fr->ctr[(unsigned)(cpu < 0 ? 0 : cpu) % GFS_FR_STRIPES];
}

void gfs_fr_count(struct gfs_fastrd *fr, uint64_t reads, uint64_t bytes, uint64_t hits)
{
    struct gfs_fr_ctr *c = stripe(fr);
    if (reads)
        atomic_fetch_add_explicit(&c->reads, reads, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
    if (hits)
        atomic_fetch_add_explicit(&c->hits, hits, memory_order_relaxed);
}

void gfs_fr_sum(const struct gfs_fastrd *fr, uint64_t *reads, uint64_t *bytes, uint64_t *hits)
{
    uint64_t r = 0, by = 0, h = 0;
    for (unsigned i = 0; fr->ctr && i < GFS_FR_STRIPES; i++) {
        r += atomic_load_explicit(&fr->ctr[i].reads, memory_order_relaxed);
        by += atomic_load_explicit(&fr->ctr[i].bytes, memory_order_relaxed);
        h += atomic_load_explicit(&fr->ctr[i].hits, memory_order_relaxed);
    }
    *reads = r;
    *bytes = by;
    *hits = h;
}
