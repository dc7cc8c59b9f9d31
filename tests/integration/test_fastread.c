/*
 * test_fastread.c — the lock-free read path (lib/fastread.h) never returns a
 * torn or stale block. Two reader threads hammer glidefs_pread (512 B to 20
 * KiB at 512-byte offsets, across granules and blocks) while one writer
 * thread overwrites and trims 4 KiB granules, each write stamping every
 * 8-byte word of its granule with (granule, version), and a third thread
 * drains (uploads: blocks move journal -> clean cache), flushes and
 * compacts (blocks move between segments), with a cache far smaller than
 * the volume so that slots are evicted and punched all the time, and a
 * fourth drops random blocks from the cache (as eviction does, through
 * the internal library), often the very block a reader is reading, to
 * land in the middle of lock-free reads.
 *
 * Every granule a reader gets back must be one version whole (or zeroes for
 * a trim), no older than what was committed when the read started, no newer
 * than what was started when it ended, and never older than what the same
 * thread read before (a single writer: versions only grow). The run must
 * have served many reads lock-free (the table's counters, read through the
 * internal library), or it proved nothing. About 4 s.
 *
 * A second test: a reader on another node, which learns of new versions only
 * through its block map (gfs_volume_catch_up), reads them after it caught
 * up, not what it had read lock-free before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "testutil.h"
#include "follow.h"
#include "volume_internal.h"

#define BS 16384u
#define GR 4096u
#define SZ (8u << 20)
#define NG (SZ / GR)
#define RUN_MS 3000
#define WPR 512u /* 8-byte words per granule */

static _Atomic uint32_t started[NG], committed[NG];
static _Atomic int stop;

/* Is version ver of granule g a trim (zeroes)? Fixed by (g, ver), so the
 * readers know without being told. Version 1 (the fill) never is. */
static int is_trim(uint32_t g, uint32_t ver)
{
    uint64_t x = ((uint64_t)g << 32 | ver) * 0x9E3779B97F4A7C15ull;
    return ver > 1 && (x >> 61) == 0; /* one in eight */
}

static void stamp(uint8_t *p, uint32_t g, uint32_t ver)
{
    uint64_t w = (uint64_t)g << 32 | ver;
    for (unsigned i = 0; i < WPR; i++)
        memcpy(p + i * 8, &w, 8);
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct writer {
    glidefs_volume *v;
    uint64_t seed, writes, trims;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = malloc(3 * GR);
    while (!atomic_load(&stop)) {
        uint32_t g = (uint32_t)(tu_rand(&w->seed) % NG);
        uint32_t n = 1 + (uint32_t)(tu_rand(&w->seed) % 3); /* 1..3 granules, maybe across blocks */
        if (g + n > NG)
            n = NG - g;
        /* one call per kind: a run of writes, or one trim */
        uint32_t ver = atomic_load(&committed[g]) + 1;
        int trim = is_trim(g, ver);
        if (trim)
            n = 1;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t gv = atomic_load(&committed[g + k]) + 1;
            if (!trim && is_trim(g + k, gv)) {
                n = k; /* the next version of this one is a trim: stop the run here */
                break;
            }
            stamp(buf + (size_t)k * GR, g + k, gv);
            atomic_store(&started[g + k], gv);
        }
        if (n == 0)
            continue;
        int r = trim ? glidefs_trim(w->v, (uint64_t)g * GR, GR, 0)
                     : glidefs_pwrite(w->v, buf, (size_t)n * GR, (uint64_t)g * GR, 0);
        assert_int_equal(r, 0);
        for (uint32_t k = 0; k < n; k++)
            atomic_store(&committed[g + k], atomic_load(&started[g + k]));
        if (trim)
            w->trims++;
        else
            w->writes++;
    }
    free(buf);
    return NULL;
}

struct reader {
    glidefs_volume *v;
    uint64_t seed, reads, bad;
    _Atomic uint64_t cur; /* the block being read: the evictor aims at it */
    uint32_t last[NG]; /* the newest version this thread read */
};

/* Check bytes [from, to) of granule g as read, against the window [lo, hi]. */
static int check_piece(struct reader *r, uint32_t g, const uint8_t *p, uint32_t from,
                       uint32_t to, uint32_t lo, uint32_t hi)
{
    if (lo < r->last[g])
        lo = r->last[g];
    uint64_t w0;
    memcpy(&w0, p, 8);
    int zero = 1;
    for (uint32_t off = from; off < to; off += 8) {
        uint64_t w;
        memcpy(&w, p + (off - from), 8);
        if (w != w0) {
            fprintf(stderr, "granule %u: torn read (word at %u: %#llx, first %#llx)\n", g, off,
                    (unsigned long long)w, (unsigned long long)w0);
            return 0;
        }
        zero &= w == 0;
    }
    if (zero) {
        for (uint32_t ver = lo; ver <= hi; ver++)
            if (is_trim(g, ver)) {
                r->last[g] = ver;
                return 1;
            }
        fprintf(stderr, "granule %u: zeroes, but no trim among versions %u..%u\n", g, lo, hi);
        return 0;
    }
    uint32_t wg = (uint32_t)(w0 >> 32), ver = (uint32_t)w0;
    if (wg != g || ver < lo || ver > hi || is_trim(g, ver)) {
        fprintf(stderr, "granule %u: read granule %u version %u, valid %u..%u (last %u)\n", g,
                wg, ver, lo, hi, r->last[g]);
        return 0;
    }
    r->last[g] = ver;
    return 1;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    static const uint32_t lens[] = {512, 1024, GR, GR, GR, GR, 2 * GR, BS, BS + GR};
    uint8_t *buf = malloc(BS + GR);
    uint32_t lo[8];
    while (!atomic_load(&stop)) {
        uint32_t len = lens[tu_rand(&r->seed) % (sizeof lens / sizeof lens[0])];
        uint64_t off;
        if (len < GR)
            off = (tu_rand(&r->seed) % (SZ / 512 - len / 512)) * 512;
        else
            off = (tu_rand(&r->seed) % ((SZ - len) / GR + 1)) * GR;
        uint32_t g0 = (uint32_t)(off / GR), g1 = (uint32_t)((off + len - 1) / GR);
        for (uint32_t g = g0; g <= g1; g++)
            lo[g - g0] = atomic_load(&committed[g]);
        atomic_store_explicit(&r->cur, off / BS, memory_order_relaxed);
        assert_int_equal(glidefs_pread(r->v, buf, len, off), 0);
        for (uint32_t g = g0; g <= g1; g++) {
            uint32_t hi = atomic_load(&started[g]);
            uint64_t a = (uint64_t)g * GR > off ? (uint64_t)g * GR : off;
            uint64_t z = (uint64_t)(g + 1) * GR < off + len ? (uint64_t)(g + 1) * GR : off + len;
            if (!check_piece(r, g, buf + (a - off), (uint32_t)(a % GR), (uint32_t)(a % GR + z - a),
                             lo[g - g0], hi))
                r->bad++;
        }
        r->reads++;
    }
    free(buf);
    return NULL;
}

struct mover {
    glidefs_volume *v;
    uint64_t drains, compactions;
};

static void *mover_main(void *arg)
{
    struct mover *m = arg;
    while (!atomic_load(&stop)) {
        int r = glidefs_drain(m->v, 2000);
        assert_true(r == 0 || r == -ETIMEDOUT);
        m->drains++;
        assert_int_equal(glidefs_flush(m->v), 0);
        if (m->drains % 4 == 0) {
            assert_int_equal(glidefs_compact(m->v, NULL, 0), 0);
            m->compactions++;
        }
    }
    return NULL;
}

/* Eviction as the budget does it (cache.c's release: generation, then the
 * punch), but of random blocks and far more often, so that it lands in the
 * middle of lock-free reads. */
struct evictor {
    glidefs_volume *v;
    struct reader *rd;
    uint64_t seed, drops;
};

static void *evictor_main(void *arg)
{
    struct evictor *x = arg;
    glidefs_volume *v = x->v;
    while (!atomic_load(&stop)) {
        /* half the time a random block, half the time one being read */
        uint64_t k = tu_rand(&x->seed);
        uint64_t b = k & 2 ? atomic_load_explicit(&x->rd[k & 1].cur, memory_order_relaxed)
                           : k % (SZ / BS);
        pthread_mutex_lock(&v->lock);
        if (gfs_cache_present(&v->cache, b)) {
            gfs_cache_drop(&v->cache, b);
            x->drops++;
        }
        pthread_mutex_unlock(&v->lock);
        sched_yield();
    }
    return NULL;
}

/* Between a lock-free reader's look at the table and its pread, now and
 * then a pause of about 20 us (as a preemption there would make), so that
 * a drop or a write lands in it often. */
static _Atomic uint64_t gaps;

static void gap(void *arg)
{
    (void)arg;
    if (atomic_fetch_add_explicit(&gaps, 1, memory_order_relaxed) % 4)
        return;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 20000);
}

static void test_fastread_hammer(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "fastread");
    /* the cache holds about a quarter of the volume */
    glidefs_config *cfg = tu_config(&e, "4M", "20");
    tu_set(cfg, "servers.nbd.block_size", "16384");
    tu_set(cfg, "compaction.min_live_pct", "90");
    tu_set(cfg, "compaction.grace_ms", "0");
    tu_set(cfg, "compaction.interval_s", "0");
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(cfg, "fr", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    assert_int_equal(v->bs, BS);
    v->fr.test_gap = gap;

    uint8_t *fill = malloc(SZ);
    for (uint32_t g = 0; g < NG; g++) {
        stamp(fill + (size_t)g * GR, g, 1);
        atomic_store(&started[g], 1);
        atomic_store(&committed[g], 1);
    }
    assert_int_equal(glidefs_pwrite(v, fill, SZ, 0, 0), 0);
    free(fill);

    struct writer w = {v, 42, 0, 0};
    struct reader *rd = calloc(2, sizeof *rd);
    struct mover m = {v, 0, 0};
    struct evictor ev = {v, rd, 7, 0};
    pthread_t tw, tm, te, tr[2];
    atomic_store(&stop, 0);
    for (int i = 0; i < 2; i++) {
        rd[i].v = v;
        rd[i].seed = 1000 + (uint64_t)i;
        pthread_create(&tr[i], NULL, reader_main, &rd[i]);
    }
    pthread_create(&tw, NULL, writer_main, &w);
    pthread_create(&tm, NULL, mover_main, &m);
    pthread_create(&te, NULL, evictor_main, &ev);
    int64_t end = now_ms() + RUN_MS;
    while (now_ms() < end) {
        struct timespec t = {0, 50 * 1000000};
        nanosleep(&t, NULL); /* the run's length, not a wait for a condition */
    }
    atomic_store(&stop, 1);
    pthread_join(tw, NULL);
    pthread_join(tm, NULL);
    pthread_join(te, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(tr[i], NULL);

    uint64_t fr_reads, fr_bytes, fr_blocks;
    gfs_fr_sum(&v->fr, &fr_reads, &fr_bytes, &fr_blocks);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    fprintf(stderr,
            "reads %llu + %llu (bad %llu + %llu), lock-free block reads %llu; writes %llu, "
            "trims %llu, drains %llu, compactions %llu, drops %llu; cache misses %llu, cached %llu KiB\n",
            (unsigned long long)rd[0].reads, (unsigned long long)rd[1].reads,
            (unsigned long long)rd[0].bad, (unsigned long long)rd[1].bad,
            (unsigned long long)fr_blocks, (unsigned long long)w.writes,
            (unsigned long long)w.trims, (unsigned long long)m.drains,
            (unsigned long long)m.compactions, (unsigned long long)ev.drops,
            (unsigned long long)st.cache_misses,
            (unsigned long long)(st.cached_bytes >> 10));
    assert_int_equal(rd[0].bad + rd[1].bad, 0);
    /* it proved something: many reads went lock-free, blocks moved, the
     * cache evicted (misses: blocks read back from the store) */
    assert_true(fr_blocks > 1000);
    assert_true(w.writes > 100 && w.trims > 10 && m.drains > 2);
    assert_true(st.cache_misses > 10);
    free(rd);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(cfg);
    tu_env_done(&e);
}

/* A reader on another node: once it has caught up with the writer's new
 * segments, no granule it had read lock-free from its clean cache may come
 * back old (the block map's change alone, with nothing dirty here and no
 * cache slot touched, must forget the published entries). */
static void test_fastread_follower(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "fastread-f");
    glidefs_config *cfg = tu_config(&e, "64M", "100000");
    tu_set(cfg, "servers.nbd.block_size", "16384");
    glidefs_volume *w = NULL, *f = NULL;
    assert_int_equal(glidefs_volume_open(cfg, "ff", SZ, GLIDEFS_OPEN_CREATE, &w), 0);
    uint8_t *img = malloc(SZ), *got = malloc(SZ);
    for (uint32_t g = 0; g < NG; g++)
        stamp(img + (size_t)g * GR, g, 1);
    assert_int_equal(glidefs_pwrite(w, img, SZ, 0, 0), 0);
    assert_int_equal(glidefs_drain(w, -1), 0);

    char fcache[600];
    snprintf(fcache, sizeof fcache, "%s/follower", e.root);
    glidefs_config *fc = tu_config(&e, "64M", "100000");
    tu_set(fc, "cache.dir", fcache);
    assert_int_equal(glidefs_volume_open(fc, "ff", 0, GLIDEFS_OPEN_READONLY, &f), 0);
    /* from the store into the cache, published, then read lock-free */
    for (int pass = 0; pass < 3; pass++)
        for (uint64_t off = 0; off < SZ; off += GR)
            assert_int_equal(glidefs_pread(f, got + off, GR, off), 0);
    assert_memory_equal(got, img, SZ);
    uint64_t r0, b0, n0;
    gfs_fr_sum(&f->fr, &r0, &b0, &n0);
    assert_true(n0 >= NG); /* the last pass went lock-free */

    for (uint32_t g = 0; g < NG; g += 3)
        stamp(img + (size_t)g * GR, g, 2);
    assert_int_equal(glidefs_pwrite(w, img, SZ, 0, 0), 0);
    assert_int_equal(glidefs_drain(w, -1), 0);
    assert_int_equal(gfs_volume_catch_up(f), 0);
    for (uint64_t off = 0; off < SZ; off += GR)
        assert_int_equal(glidefs_pread(f, got + off, GR, off), 0);
    for (uint32_t g = 0; g < NG; g++)
        if (memcmp(got + (size_t)g * GR, img + (size_t)g * GR, GR)) {
            uint64_t w0;
            memcpy(&w0, got + (size_t)g * GR, 8);
            fail_msg("follower: granule %u reads version %u after catching up",
                     g, (unsigned)w0);
        }
    free(img);
    free(got);
    assert_int_equal(glidefs_volume_close(f), 0);
    assert_int_equal(glidefs_volume_close(w), 0);
    glidefs_config_free(fc);
    glidefs_config_free(cfg);
    tu_env_done(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fastread_hammer),
        cmocka_unit_test(test_fastread_follower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
