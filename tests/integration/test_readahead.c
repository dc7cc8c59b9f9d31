/*
 * test_readahead.c — sequential read-ahead (lib/readahead.c) on a woken
 * volume with an empty cache: the bytes read back, the number of GETs it
 * takes (coalesced: far fewer than blocks), no extra GETs for random reads,
 * and newer data winning over a read-ahead fetch that was in flight when the
 * block was rewritten and uploaded (a hook holds the fetch deterministically).
 * Links the internal library to reach that hook.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include "testutil.h"
#include "readahead.h"
#include "volume_internal.h"

#define BS 131072u
#define NBLK 128u /* 16 MiB */

static uint8_t *expected;

static void fill(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x = tu_rand(s);
        memcpy(p + i, &x, 8);
    }
}

static glidefs_config *cfg_for(struct tu_env *env, const char *ra_kb)
{
    glidefs_config *c = tu_config(env, "64M", "100");
    tu_set(c, "servers.nbd.blocks_per_batch", "25");
    tu_set(c, "cache.readahead_kb", ra_kb);
    /* read-ahead alone: no access profile recorded or prefetched (test_wake) */
    tu_set(c, "cache.profile_s", "0");
    return c;
}

/* A drained volume of NBLK random blocks; its cache is removed. */
static void make_volume(struct tu_env *env, const char *name)
{
    glidefs_config *c = cfg_for(env, "0");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, (uint64_t)NBLK * BS, GLIDEFS_OPEN_CREATE, &v), 0);
    expected = malloc((size_t)NBLK * BS);
    assert_non_null(expected);
    uint64_t s = 7;
    fill(expected, (size_t)NBLK * BS, &s);
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20)
        assert_int_equal(glidefs_pwrite(v, expected + off, 1u << 20, off, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    tu_rmrf(env->cache);
}

static struct glidefs_stats stats_of(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st;
}

/* Read the whole volume with 1 MiB preads; returns the GETs it took. */
static uint64_t seq_read_gets(struct tu_env *env, const char *name, const char *ra_kb,
                              uint64_t *ra_blocks)
{
    glidefs_config *c = cfg_for(env, ra_kb);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, 0, 0, &v), 0);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    struct glidefs_stats a = stats_of(v);
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    struct glidefs_stats b = stats_of(v);
    *ra_blocks = b.readahead_blocks;
    free(buf);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    tu_rmrf(env->cache);
    return b.store_gets - a.store_gets;
}

static void test_sequential_coalesced(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-seq");
    make_volume(&env, "seq");
    uint64_t rab = 0;
    /* without read-ahead: one GET per block */
    uint64_t off_gets = seq_read_gets(&env, "seq", "0", &rab);
    assert_true(off_gets >= NBLK);
    assert_int_equal(rab, 0);
    /* with it: runs of a segment (25 blocks) per GET; the first reads,
     * before the stream is known, and lease reads are the rest */
    uint64_t on_gets = seq_read_gets(&env, "seq", "4096", &rab);
    fprintf(stderr, "sequential read of %u blocks: %llu GETs without read-ahead, %llu with "
            "(%llu blocks read ahead)\n", NBLK, (unsigned long long)off_gets,
            (unsigned long long)on_gets, (unsigned long long)rab);
    assert_true(on_gets <= NBLK / 4);
    assert_true(rab >= NBLK / 2);
    free(expected);
    tu_env_done(&env);
}

static void test_random_no_amplification(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-rand");
    make_volume(&env, "rand");
    glidefs_config *c = cfg_for(&env, "4096");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "rand", 0, 0, &v), 0);
    struct glidefs_stats a = stats_of(v);
    /* 40 distinct blocks, no two read one after the other being neighbours */
    uint8_t seen[NBLK] = {0};
    uint64_t s = 99, prev = NBLK + 5, n = 0;
    uint8_t buf[4096];
    while (n < 40) {
        uint64_t b = tu_rand(&s) % NBLK;
        if (seen[b] || b == prev + 1 || b + 1 == prev || b == prev)
            continue;
        seen[b] = 1;
        prev = b;
        uint64_t off = b * BS + (tu_rand(&s) % 32) * 4096;
        assert_int_equal(glidefs_pread(v, buf, sizeof buf, off), 0);
        assert_memory_equal(buf, expected + off, sizeof buf);
        n++;
    }
    struct glidefs_stats b = stats_of(v);
    assert_int_equal(b.readahead_blocks, 0);
    assert_int_equal(b.blocks_fetched - a.blocks_fetched, n);
    assert_true(b.store_get_bytes - a.store_get_bytes < (n + 2) * BS);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* Wait (at most a minute) until another thread sets *flag under mu. */
static int wait_set(pthread_mutex_t *mu, pthread_cond_t *cv, const int *flag)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    pthread_mutex_lock(mu);
    while (!*flag)
        if (pthread_cond_timedwait(cv, mu, &dl) != 0)
            break;
    int set = *flag;
    pthread_mutex_unlock(mu);
    return set;
}

/* The hook holds the read-ahead fetch that covers block `target` after its
 * GET returned and before its blocks go into the cache. */
struct hold {
    pthread_t main;    /* a fetch the test thread runs itself is not held */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t target;
    int held, go;
};

static void hold_hook(void *arg, uint64_t first, uint32_t n)
{
    struct hold *h = arg;
    if (h->target < first || h->target >= first + n || pthread_equal(pthread_self(), h->main))
        return;
    pthread_mutex_lock(&h->mu);
    h->held = 1;
    pthread_cond_broadcast(&h->cv);
    while (!h->go)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

static void test_newer_data_wins(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-race");
    make_volume(&env, "race");
    glidefs_config *c = cfg_for(&env, "4096");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "race", 0, 0, &v), 0);
    assert_non_null(v->ra);
    struct hold h = {pthread_self(), PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 30, 0, 0};
    gfs_ra_set_test_hook(v->ra, hold_hook, &h);

    /* blocks 0..15 sequentially: read-ahead covers the window after them,
     * block 30 (second segment) included, fetched by a background thread */
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    for (uint32_t off = 0; off < 2u << 20; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    assert_true(wait_set(&h.mu, &h.cv, &h.held));

    /* while its old bytes are in flight: rewrite block 30 whole and 4 KiB of
     * block 31, and upload both (the block map moves to a new segment) */
    uint64_t s = 1234;
    fill(expected + 30 * (size_t)BS, BS, &s);
    fill(expected + 31 * (size_t)BS + 8192, 4096, &s);
    assert_int_equal(glidefs_pwrite(v, expected + 30 * (size_t)BS, BS, 30 * (uint64_t)BS, 0), 0);
    assert_int_equal(glidefs_pwrite(v, expected + 31 * (size_t)BS + 8192, 4096,
                                    31 * (uint64_t)BS + 8192, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    pthread_mutex_lock(&h.mu);
    h.go = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    /* until that fetch has offered its (old) blocks to the cache */
    while (gfs_ra_wait(v->ra, 30))
        ;
    for (uint32_t off = 2u << 20; off < NBLK * BS; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    assert_true(stats_of(v).readahead_blocks > 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* and from the store alone */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "race", 0, 0, &v), 0);
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(buf);
    free(expected);
    tu_env_done(&env);
}

/* A plain read's GET held (the store wrapper below) while compaction moves
 * the block and deletes its old segment (grace 0): the read must notice the
 * block moved and read it from its new place, not fail with EIO. */
static struct {
    const struct gfs_objstore_ops *real;
    pthread_t reader;
    int have_reader;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int held, go;
} slow = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int slow_get_range(struct gfs_objstore *st, const char *key, uint64_t offset, size_t len,
                          void *buf, size_t *got)
{
    pthread_mutex_lock(&slow.mu);
    int mine = slow.have_reader && pthread_equal(pthread_self(), slow.reader);
    pthread_mutex_unlock(&slow.mu);
    if (mine && strstr(key, "/seg/")) {
        pthread_mutex_lock(&slow.mu);
        slow.held = 1;
        pthread_cond_broadcast(&slow.cv);
        while (!slow.go)
            pthread_cond_wait(&slow.cv, &slow.mu);
        pthread_mutex_unlock(&slow.mu);
    }
    return slow.real->get_range(st, key, offset, len, buf, got);
}

struct read_job {
    glidefs_volume *v;
    uint8_t buf[4096];
    int r;
};

static void *read_first(void *arg)
{
    struct read_job *j = arg;
    pthread_mutex_lock(&slow.mu);
    slow.reader = pthread_self();
    slow.have_reader = 1;
    pthread_mutex_unlock(&slow.mu);
    j->r = glidefs_pread(j->v, j->buf, sizeof j->buf, 0);
    return NULL;
}

static void test_read_outlives_compaction(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-moved");
    make_volume(&env, "moved");
    glidefs_config *c = cfg_for(&env, "0");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "moved", 0, 0, &v), 0);
    /* the first segment keeps only block 0 live */
    uint64_t s = 4321;
    fill(expected + BS, 24 * (size_t)BS, &s);
    assert_int_equal(glidefs_pwrite(v, expected + BS, 24 * (size_t)BS, BS, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache); /* block 0 must come from the store */
    assert_int_equal(glidefs_volume_open(c, "moved", 0, 0, &v), 0);

    struct gfs_objstore_ops ops = *v->store->ops;
    ops.get_range = slow_get_range;
    slow.real = v->store->ops;
    v->store->ops = &ops;
    struct read_job j = {v, {0}, 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_first, &j), 0);
    assert_true(wait_set(&slow.mu, &slow.cv, &slow.held));

    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    assert_true(res.segments_rewritten >= 1);
    assert_true(res.segments_deleted >= 1);
    pthread_mutex_lock(&slow.mu);
    slow.go = 1;
    pthread_cond_broadcast(&slow.cv);
    pthread_mutex_unlock(&slow.mu);
    pthread_join(t, NULL);
    assert_int_equal(j.r, 0);
    assert_memory_equal(j.buf, expected, sizeof j.buf);
    v->store->ops = slow.real;

    /* and every block from the store alone */
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "moved", 0, 0, &v), 0);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    free(buf);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* Workers that have nothing to do exit (a daemon holds many volumes read
 * sequentially once), and the next stream starts them again. */
static void test_idle_threads_exit(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-idle");
    make_volume(&env, "idle");
    glidefs_config *c = cfg_for(&env, "4096");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "idle", 0, 0, &v), 0);
    assert_non_null(v->ra);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    uint32_t half = NBLK * BS / 2;
    for (uint32_t off = 0; off < half; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    assert_true(gfs_ra_threads(v->ra) > 0);
    uint64_t ra0 = stats_of(v).readahead_blocks;
    assert_true(ra0 > 0);
    gfs_ra_set_idle_ms(v->ra, 20);
    struct timespec t0, now, pause = {0, 5000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        nanosleep(&pause, NULL); /* polling a condition, with a deadline */
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (gfs_ra_threads(v->ra) > 0 && now.tv_sec - t0.tv_sec < 60);
    assert_int_equal(gfs_ra_threads(v->ra), 0);
    /* a new stream: threads again, the data right */
    gfs_ra_set_idle_ms(v->ra, 60000);
    for (uint32_t off = half; off < NBLK * BS; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    assert_true(stats_of(v).readahead_blocks > ra0);
    free(buf);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* glidefs_prefetch (NBD_CMD_CACHE) on a woken volume: the range comes in
 * coalesced GETs, and afterwards reads of it are cache hits. */
static void test_prefetch_coalesced(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-prefetch");
    make_volume(&env, "pf");
    glidefs_config *c = cfg_for(&env, "4096");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "pf", 0, 0, &v), 0);
    struct glidefs_stats a = stats_of(v);
    assert_int_equal(glidefs_prefetch(v, 0, (uint64_t)NBLK * BS), 0);
    struct glidefs_stats b = stats_of(v);
    fprintf(stderr, "prefetch of %u blocks: %llu GETs\n", NBLK,
            (unsigned long long)(b.store_gets - a.store_gets));
    assert_true(b.store_gets - a.store_gets <= NBLK / 4);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    for (uint32_t off = 0; off < NBLK * BS; off += 1u << 20) {
        assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
        assert_memory_equal(buf, expected + off, 1u << 20);
    }
    assert_int_equal(stats_of(v).store_gets, b.store_gets); /* all from the cache */
    free(buf);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

/* Close while read-ahead GETs are queued and in flight (ASan/TSan catch a
 * use after free; the test checks the close itself succeeds). */
static void test_close_while_reading_ahead(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ra-close");
    make_volume(&env, "close");
    glidefs_config *c = cfg_for(&env, "8192");
    for (int round = 0; round < 3; round++) {
        glidefs_volume *v;
        assert_int_equal(glidefs_volume_open(c, "close", 0, 0, &v), 0);
        uint8_t *buf = malloc(1u << 20);
        assert_non_null(buf);
        for (uint32_t off = 0; off < 2u << 20; off += 1u << 20) {
            assert_int_equal(glidefs_pread(v, buf, 1u << 20, off), 0);
            assert_memory_equal(buf, expected + off, 1u << 20);
        }
        free(buf);
        assert_int_equal(glidefs_volume_close(v), 0);
        tu_rmrf(env.cache);
    }
    glidefs_config_free(c);
    free(expected);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential_coalesced),
        cmocka_unit_test(test_random_no_amplification),
        cmocka_unit_test(test_newer_data_wins),
        cmocka_unit_test(test_read_outlives_compaction),
        cmocka_unit_test(test_idle_threads_exit),
        cmocka_unit_test(test_prefetch_coalesced),
        cmocka_unit_test(test_close_while_reading_ahead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
