/*
 * test_durable.c — durability modes (issue 23): in store mode a flush
 * returns only once a fresh reader on another cache dir reads every write
 * before it (with the syncer's delay an hour away), flushers waiting
 * together share segment and manifest PUTs (group commit), a store error
 * fails the flush and the data is uploaded once the store is back; in
 * either mode the max_unsynced bounds hold the bytes and the age of writes
 * not in the store under the bound (back-pressure). Runs on file:// and,
 * in the s3 suite, on s3rver behind the test proxy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"
#include "volume_internal.h" /* the slow, counting store wrapped around v->store */

#define BS (64u << 10)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* No upload on its own for an hour: whatever reaches the store, a flush sent. */
static glidefs_config *dcfg(const struct tu_env *e, const char *cache, const char *mode)
{
    glidefs_config *c = tu_config(e, "256M", "3600000");
    tu_set(c, "cache.dir", cache);
    tu_set(c, "servers.nbd.max_dirty_age_ms", "3600000");
    tu_set(c, "servers.nbd.blocks_per_batch", "64");
    tu_set(c, "servers.nbd.block_size", "65536");
    tu_set(c, "compaction.interval_s", "0");
    tu_set(c, "storage.durability", mode);
    return c;
}

static struct glidefs_stats st(glidefs_volume *v)
{
    struct glidefs_stats s;
    assert_int_equal(glidefs_stats(v, &s, sizeof s), 0);
    return s;
}

static void fill(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t k = 0; k + 8 <= n; k += 8) {
        uint64_t x = tu_rand(s);
        memcpy(p + k, &x, 8);
    }
}

/* A fresh cache dir (another node) opens the volume read-only and reads ref. */
static int fresh_reads(const struct tu_env *e, const char *name, const uint8_t *ref,
                       uint64_t size)
{
    char cache2[400];
    snprintf(cache2, sizeof cache2, "%s/cache-reader", e->root);
    glidefs_config *c2 = dcfg(e, cache2, "local");
    glidefs_volume *w = NULL;
    assert_int_equal(glidefs_volume_open(c2, name, 0, GLIDEFS_OPEN_READONLY, &w), 0);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(glidefs_pread(w, buf, size, 0), 0);
    int same = memcmp(buf, ref, size) == 0;
    free(buf);
    glidefs_volume_close(w);
    glidefs_config_free(c2);
    tu_rmrf(cache2);
    return same;
}

/* Store mode: after each flush a fresh reader reads everything written
 * before it; local mode (the control) leaves it dirty on this node. */
static void test_store_flush_visible(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "durable");
    const uint64_t size = 32 * (uint64_t)BS;
    uint8_t *ref = calloc(1, size);
    uint64_t s = 11;

    glidefs_config *lc = dcfg(&env, env.cache, "local");
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(lc, "vis", size, GLIDEFS_OPEN_CREATE, &v), 0);
    struct glidefs_durability d;
    assert_int_equal(glidefs_volume_get_durability(v, &d, sizeof d), 0);
    assert_int_equal(d.mode, GLIDEFS_DURABILITY_LOCAL);
    fill(ref, BS, &s);
    assert_int_equal(glidefs_pwrite(v, ref, BS, 0, 0), 0);
    assert_int_equal(glidefs_flush(v), 0);
    assert_true(st(v).dirty_bytes > 0); /* local: the flush did not upload */
    assert_int_equal(st(v).store_flushes, 0);
    /* switched to store mode on the open volume */
    d.mode = GLIDEFS_DURABILITY_STORE;
    assert_int_equal(glidefs_volume_set_durability(v, &d, sizeof d), 0);
    d.mode = 7;
    assert_int_equal(glidefs_volume_set_durability(v, &d, sizeof d), -EINVAL);
    assert_int_equal(glidefs_flush(v), 0);
    assert_int_equal(st(v).dirty_bytes, 0);
    assert_true(fresh_reads(&env, "vis", ref, size));
    glidefs_volume_close(v);
    glidefs_config_free(lc);

    /* store mode from the config: partial writes, trims, FUA */
    glidefs_config *c = dcfg(&env, env.cache, "store");
    assert_int_equal(glidefs_volume_open(c, "vis", 0, 0, &v), 0);
    assert_int_equal(st(v).durability, GLIDEFS_DURABILITY_STORE);
    for (int round = 0; round < 6; round++) {
        for (int k = 0; k < 5; k++) {
            uint64_t off = (tu_rand(&s) % (size / 512 - 64)) * 512;
            uint64_t len = 512 * (1 + tu_rand(&s) % 63);
            if (tu_rand(&s) % 4 == 0) {
                memset(ref + off, 0, len);
                assert_int_equal(glidefs_trim(v, off, len, 0), 0);
            } else {
                fill(ref + off, len, &s);
                assert_int_equal(glidefs_pwrite(v, ref + off, len, off, 0), 0);
            }
        }
        if (round % 2) {
            assert_int_equal(glidefs_flush(v), 0);
        } else {
            /* a FUA write flushes everything before it too */
            fill(ref, 512, &s);
            assert_int_equal(glidefs_pwrite(v, ref, 512, 0, GLIDEFS_WRITE_FUA), 0);
        }
        if (!fresh_reads(&env, "vis", ref, size))
            fail_msg("round %d: a fresh reader does not see what was flushed", round);
    }
    struct glidefs_stats x = st(v);
    assert_true(x.store_flushes >= 6);
    assert_int_equal(x.store_flush_errors, 0);
    glidefs_volume_close(v);
    glidefs_config_free(c);
    free(ref);
    tu_env_done(&env);
}

/* A store 20 ms slow on every segment and manifest PUT (an object store's
 * latency), counting them: group commit shows only when PUTs take long
 * enough for flushers to pile up. */
static struct gfs_objstore_ops slow_ops;
static const struct gfs_objstore_ops *real_ops;
static atomic_int slow_seg_puts, slow_man_puts;
static atomic_int slow_us = 20000;

static int slow_put(struct gfs_objstore *st, const char *key, const void *buf, size_t len,
                    unsigned flags, const char *if_match_etag)
{
    if (strstr(key, "/seg/") || strstr(key, "/manifest/")) {
        atomic_fetch_add(strstr(key, "/seg/") ? &slow_seg_puts : &slow_man_puts, 1);
        usleep((useconds_t)atomic_load(&slow_us)); /* the store's latency */
    }
    return real_ops->put(st, key, buf, len, flags, if_match_etag);
}

static void make_slow(glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    real_ops = v->store->ops;
    slow_ops = *real_ops;
    slow_ops.put = slow_put;
    v->store->ops = &slow_ops;
    atomic_store(&slow_seg_puts, 0);
    atomic_store(&slow_man_puts, 0);
    pthread_mutex_unlock(&v->lock);
}

static void make_fast(glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    v->store->ops = real_ops;
    pthread_mutex_unlock(&v->lock);
}

struct flusher {
    glidefs_volume *v;
    uint32_t idx, rounds;
    uint8_t *ref; /* this thread's block, the last content written */
    int err;
};

static void *flusher_main(void *arg)
{
    struct flusher *f = arg;
    uint64_t s = 1000 + f->idx;
    for (uint32_t r = 0; r < f->rounds && !f->err; r++) {
        fill(f->ref, BS, &s);
        int e = glidefs_pwrite(f->v, f->ref, BS, (uint64_t)f->idx * BS, 0);
        if (e == 0)
            e = glidefs_flush(f->v);
        f->err = e;
    }
    return NULL;
}

/* 16 threads, each writing its block and flushing, 20 times: every flush
 * waits for the store, yet segments and manifests are shared. */
static void test_group_commit(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "durable");
    enum { N = 16, ROUNDS = 20 };
    const uint64_t size = N * (uint64_t)BS;
    glidefs_config *c = dcfg(&env, env.cache, "store");
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(c, "group", size, GLIDEFS_OPEN_CREATE, &v), 0);
    uint8_t *ref = calloc(1, size);
    make_slow(v);
    struct glidefs_stats a = st(v);
    struct flusher f[N];
    pthread_t t[N];
    double t0 = now_s();
    for (uint32_t i = 0; i < N; i++) {
        f[i] = (struct flusher){v, i, ROUNDS, ref + (uint64_t)i * BS, 0};
        assert_int_equal(pthread_create(&t[i], NULL, flusher_main, &f[i]), 0);
    }
    for (uint32_t i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(f[i].err, 0);
    }
    double took = now_s() - t0;
    struct glidefs_stats b = st(v);
    make_fast(v);
    uint64_t flushes = b.store_flushes - a.store_flushes;
    uint64_t segs = b.segments_uploaded - a.segments_uploaded;
    uint64_t mans = b.manifests_uploaded - a.manifests_uploaded;
    assert_int_equal(segs, (uint64_t)atomic_load(&slow_seg_puts));
    assert_int_equal(mans, (uint64_t)atomic_load(&slow_man_puts));
    fprintf(stderr, "# %llu store flushes, %llu segments, %llu manifests, %.2f s\n",
            (unsigned long long)flushes, (unsigned long long)segs, (unsigned long long)mans,
            took);
    assert_true(flushes > 0);
    /* one flush per PUT would be N * ROUNDS of each; a round of all N
     * flushers per segment and manifest is ROUNDS */
    if (segs * 8 > N * ROUNDS || mans * 8 > N * ROUNDS)
        fail_msg("no group commit: %llu segments and %llu manifests for %d flushes",
                 (unsigned long long)segs, (unsigned long long)mans, N * ROUNDS);
    assert_true(fresh_reads(&env, "group", ref, size));
    glidefs_volume_close(v);
    glidefs_config_free(c);
    free(ref);
    tu_env_done(&env);
}

/* A store that refuses the segment: the flush fails (not 0), the data stays
 * dirty, and once the store takes it again the next flush stores it. Only
 * on file:// (the segment directory replaced by a file). */
static void test_store_error(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "durable");
    if (strncmp(env.url, "file://", 7) != 0) {
        tu_env_done(&env);
        skip();
    }
    const uint64_t size = 8 * (uint64_t)BS;
    glidefs_config *c = dcfg(&env, env.cache, "store");
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(c, "err", size, GLIDEFS_OPEN_CREATE, &v), 0);
    uint8_t *ref = calloc(1, size);
    uint64_t s = 5;
    fill(ref, BS, &s);
    assert_int_equal(glidefs_pwrite(v, ref, BS, 0, 0), 0);
    assert_int_equal(glidefs_flush(v), 0);
    char segdir[600], aside[620];
    snprintf(segdir, sizeof segdir, "%s/nbd/err/seg", env.store);
    snprintf(aside, sizeof aside, "%s.aside", segdir);
    assert_int_equal(rename(segdir, aside), 0);
    FILE *fp = fopen(segdir, "w"); /* no directory: every segment PUT fails */
    assert_non_null(fp);
    fclose(fp);
    fill(ref + BS, BS, &s);
    assert_int_equal(glidefs_pwrite(v, ref + BS, BS, BS, 0), 0);
    int r = glidefs_flush(v);
    if (r == 0)
        fail_msg("the flush succeeded while the store refused its segment");
    assert_true(st(v).dirty_bytes > 0);
    assert_true(st(v).store_flush_errors > 0);
    assert_int_equal(unlink(segdir), 0);
    assert_int_equal(rename(aside, segdir), 0);
    /* the syncer backs off, then the next flush gets it all in */
    double t0 = now_s();
    while ((r = glidefs_flush(v)) != 0 && now_s() - t0 < 30)
        ;
    assert_int_equal(r, 0);
    assert_int_equal(st(v).dirty_bytes, 0);
    assert_true(fresh_reads(&env, "err", ref, size));
    glidefs_volume_close(v);
    glidefs_config_free(c);
    free(ref);
    tu_env_done(&env);
}

struct sampler {
    glidefs_volume *v;
    volatile int stop;
    uint64_t max_bytes;
    int64_t max_age;
};

static void *sampler_main(void *arg)
{
    struct sampler *sm = arg;
    while (!sm->stop) {
        struct glidefs_stats x;
        if (glidefs_stats(sm->v, &x, sizeof x) == 0) {
            if (x.dirty_bytes > sm->max_bytes)
                sm->max_bytes = x.dirty_bytes;
            if (x.oldest_dirty_age_ms > sm->max_age)
                sm->max_age = x.oldest_dirty_age_ms;
        }
        usleep(5000); /* the sampling period */
    }
    return NULL;
}

/* Local mode with the bounds (the syncer's own delays an hour away) on a
 * slow store: the bytes not in the store never pass max_unsynced_bytes, the
 * oldest such write never gets older than max_unsynced_ms, sampled all
 * along; and with a store slower than the bound, writes wait. */
static void test_unsynced_bounds(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "durable");
    const uint64_t size = 256 * (uint64_t)BS;
    const char *bound_ms_env = getenv("GLIDEFS_TEST_UNSYNCED_MS");
    uint32_t bound_ms = bound_ms_env ? (uint32_t)atoi(bound_ms_env) : 1500;
    glidefs_config *c = dcfg(&env, env.cache, "local");
    tu_set(c, "storage.max_unsynced_bytes", "1M");
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(c, "bound", size, GLIDEFS_OPEN_CREATE, &v), 0);
    assert_int_equal(st(v).max_unsynced_bytes, 1 << 20);
    /* a slow store: 150 ms a segment or manifest PUT */
    atomic_store(&slow_us, 150000);
    make_slow(v);
    struct sampler sm = {.v = v};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sampler_main, &sm), 0);
    uint8_t *buf = malloc(BS);
    uint64_t s = 3;
    /* bytes: 8 MiB of block writes, as fast as they go */
    for (uint32_t i = 0; i < 128; i++) {
        fill(buf, BS, &s);
        assert_int_equal(glidefs_pwrite(v, buf, BS, (uint64_t)(i % 256) * BS, 0), 0);
        uint64_t dirty = st(v).dirty_bytes;
        if (dirty > (1u << 20))
            fail_msg("%llu bytes not in the store after write %u (bound 1 MiB)",
                     (unsigned long long)dirty, i);
    }
    assert_true(st(v).unsynced_waits > 0);
    /* age: small writes every 20 ms for 3 bounds' time, both bounds on */
    struct glidefs_durability d = {GLIDEFS_DURABILITY_LOCAL, bound_ms, 1 << 20};
    assert_int_equal(glidefs_volume_set_durability(v, &d, sizeof d), 0);
    assert_int_equal(glidefs_drain(v, -1), 0); /* nothing older than the bound's start */
    sm.max_age = 0;
    double t0 = now_s();
    for (uint32_t i = 0; now_s() - t0 < 3.0 * bound_ms / 1000; i++) {
        fill(buf, 4096, &s);
        assert_int_equal(glidefs_pwrite(v, buf, 4096, (uint64_t)(i % 256) * BS, 0), 0);
        usleep(20000); /* the pace of the workload */
    }
    sm.stop = 1;
    pthread_join(t, NULL);
    make_fast(v);

    /* a store slower than the bound: once the oldest write not in the store
     * is older than it, a write waits for that upload (the gap does not grow) */
    assert_int_equal(glidefs_drain(v, -1), 0);
    d.max_unsynced_ms = 400; /* due at 200 ms; the upload takes 600 */
    assert_int_equal(glidefs_volume_set_durability(v, &d, sizeof d), 0);
    atomic_store(&slow_us, 600000);
    make_slow(v);
    uint64_t waits0 = st(v).unsynced_waits;
    assert_int_equal(glidefs_pwrite(v, buf, 4096, 0, 0), 0);
    /* until the oldest write not in the store is past the bound (its upload,
     * begun at 200 ms, is in the store until about 800 ms) */
    double until = now_s() + 30;
    while (st(v).oldest_dirty_age_ms < 420 && now_s() < until)
        usleep(2000); /* polling a condition, with a deadline */
    assert_true(st(v).oldest_dirty_age_ms >= 420);
    double w0 = now_s();
    assert_int_equal(glidefs_pwrite(v, buf, 4096, BS, 0), 0);
    double waited = now_s() - w0;
    make_fast(v);
    atomic_store(&slow_us, 20000);
    fprintf(stderr, "# a write past the age bound waited %.0f ms\n", waited * 1000);
    if (waited < 0.15 || st(v).unsynced_waits == waits0)
        fail_msg("a write went in while the oldest write not in the store was past the bound "
                 "(waited %.0f ms)", waited * 1000);
    fprintf(stderr, "# max %llu bytes not in the store, oldest %lld ms (bound %u ms)\n",
            (unsigned long long)sm.max_bytes, (long long)sm.max_age, bound_ms);
    if (sm.max_bytes > (1u << 20))
        fail_msg("%llu bytes were not in the store at once (bound 1 MiB)",
                 (unsigned long long)sm.max_bytes);
    if (sm.max_age > (int64_t)bound_ms)
        fail_msg("a write stayed out of the store %lld ms (bound %u ms)", (long long)sm.max_age,
                 bound_ms);
    glidefs_volume_close(v);
    glidefs_config_free(c);
    free(buf);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_flush_visible),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_store_error),
        cmocka_unit_test(test_unsynced_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
