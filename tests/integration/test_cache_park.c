/*
 * test_cache_park.c — a closed volume's clean cache kept for its next open
 * on this node (cache.keep_on_close, lib/cache_park.c):
 *  - warm reopen: every block read back from the kept cache, byte-exact,
 *    none fetched; the index is gone once the volume is open (a crash from
 *    then on finds none);
 *  - written elsewhere: another node rewrites some blocks while the cache
 *    is parked; the reopen serves its new data for those (fetched) and the
 *    kept copy for the rest;
 *  - a damaged index, or one of another volume, is ignored: a cold but
 *    correct open;
 *  - the budget: a parked cache counts, and goes first (files removed) when
 *    another volume needs the space, also when it was left by an earlier
 *    "process" (a new config: the budget scans the cache dir once);
 *  - keep_on_close false: nothing kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <poll.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"

#define BS 131072u
#define NBLK 32u /* 4 MiB */
#define SZ ((uint64_t)NBLK * BS)

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static glidefs_config *cfg_of(const struct tu_env *env, const char *cache, const char *disk)
{
    glidefs_config *c = tu_config(env, disk, "100");
    tu_set(c, "cache.dir", cache);
    tu_set(c, "cache.profile_s", "0"); /* no prefetch: every read is the cache's or a miss */
    tu_set(c, "cache.readahead_kb", "0");
    /* no background compaction: a block it moves is rightly fetched again,
     * which would blur the count of blocks the other node rewrote */
    tu_set(c, "compaction.interval_s", "0");
    return c;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x = tu_rand(&seed);
        memcpy(p + i, &x, 8);
    }
}

static struct glidefs_stats stats_of(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st;
}

/* Create name with nblk blocks of data (seeded), uploaded, every block
 * read once (so all of it is in the clean cache), closed. */
static uint8_t *make_n(glidefs_config *c, const char *name, uint64_t seed, uint32_t nblk)
{
    uint64_t sz = (uint64_t)nblk * BS;
    uint8_t *data = malloc(sz);
    assert_non_null(data);
    fill(data, sz, seed);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, sz, GLIDEFS_OPEN_CREATE, &v), 0);
    for (uint64_t off = 0; off < sz; off += 1u << 20) /* 1 MiB records: no oversized one */
        assert_int_equal(glidefs_pwrite(v, data + off, 1u << 20, off, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    uint8_t *buf = malloc(sz);
    assert_int_equal(glidefs_pread(v, buf, sz, 0), 0);
    assert_memory_equal(buf, data, sz);
    free(buf);
    assert_int_equal(glidefs_volume_close(v), 0);
    return data;
}

static uint8_t *make(glidefs_config *c, const char *name, uint64_t seed)
{
    return make_n(c, name, seed, NBLK);
}

/* Open name, read it all, check it; returns the blocks fetched from the store. */
static uint64_t read_all(glidefs_config *c, const char *name, const uint8_t *want)
{
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, 0, 0, &v), 0);
    uint64_t sz = glidefs_volume_size(v);
    struct glidefs_stats a = stats_of(v);
    uint8_t *buf = malloc(sz);
    assert_int_equal(glidefs_pread(v, buf, sz, 0), 0);
    assert_memory_equal(buf, want, sz);
    free(buf);
    struct glidefs_stats b = stats_of(v);
    assert_int_equal(glidefs_volume_close(v), 0);
    return b.blocks_fetched - a.blocks_fetched;
}

static int exists(const char *dir, const char *name, const char *leaf)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/%s", dir, name, leaf);
    return access(p, F_OK) == 0;
}

static void test_warm_reopen(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "park-warm");
    glidefs_config *c = cfg_of(&env, env.cache, "64M");
    uint8_t *data = make(c, "vm", 1);
    assert_true(exists(env.cache, "vm", "cache.idx"));
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "vm", 0, 0, &v), 0);
    assert_false(exists(env.cache, "vm", "cache.idx")); /* taken at open */
    uint8_t *buf = malloc(SZ);
    assert_int_equal(glidefs_pread(v, buf, SZ, 0), 0);
    assert_memory_equal(buf, data, SZ);
    struct glidefs_stats st = stats_of(v);
    assert_int_equal(st.blocks_fetched, 0);
    assert_int_equal(st.cache_misses, 0);
    assert_true(st.cache_hits >= NBLK);
    assert_int_equal(st.cache_restored_blocks, NBLK);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* and again: what the second life read was kept too */
    assert_int_equal(read_all(c, "vm", data), 0);
    free(buf);
    free(data);
    glidefs_config_free(c);
    tu_env_done(&env);
}

static void test_written_elsewhere(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "park-other");
    char ca[512], cb[512];
    snprintf(ca, sizeof ca, "%s/cache-a", env.root);
    snprintf(cb, sizeof cb, "%s/cache-b", env.root);
    glidefs_config *a = cfg_of(&env, ca, "64M"), *b = cfg_of(&env, cb, "64M");
    tu_set(a, "node_id", "node-a");
    tu_set(b, "node_id", "node-b");
    tu_set(a, "servers.lease_timeout_ms", "1000");
    tu_set(b, "servers.lease_timeout_ms", "1000");
    uint8_t *data = make(a, "vm", 2);
    /* node B rewrites blocks 3..6 and 20 (and compacts nothing) */
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(b, "vm", 0, 0, &v), 0);
    double end = mono() + 10;
    int r = 0;
    while (glidefs_volume_read_only(v) && (r = glidefs_promote(v, 0)) == -EBUSY && mono() < end)
        poll(NULL, 0, 50);
    assert_int_equal(r, 0);
    uint8_t *nb = malloc(4 * BS);
    fill(nb, 4 * BS, 99);
    assert_int_equal(glidefs_pwrite(v, nb, 4 * BS, 3 * BS, 0), 0);
    memcpy(data + 3 * BS, nb, 4 * BS);
    fill(nb, BS, 98);
    assert_int_equal(glidefs_pwrite(v, nb, BS, 20 * BS, 0), 0);
    memcpy(data + 20 * BS, nb, BS);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* node A: B's blocks are fetched, the other 27 come from the kept cache */
    uint64_t fetched = UINT64_MAX;
    end = mono() + 10;
    for (;;) {
        glidefs_volume *w;
        r = glidefs_volume_open(a, "vm", 0, 0, &w);
        assert_int_equal(r, 0);
        int ro = glidefs_volume_read_only(w);
        assert_int_equal(glidefs_volume_close(w), 0);
        if (!ro || mono() > end)
            break;
        poll(NULL, 0, 50);
    }
    fetched = read_all(a, "vm", data);
    assert_int_equal(fetched, 5);
    free(nb);
    free(data);
    glidefs_config_free(a);
    glidefs_config_free(b);
    tu_env_done(&env);
}

static void test_bad_index(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "park-bad");
    glidefs_config *c = cfg_of(&env, env.cache, "64M");
    uint8_t *d1 = make(c, "vm", 3);
    uint8_t *d2 = make(c, "other", 4);
    /* a flipped byte in vm's index */
    char p[1024], q[1024];
    snprintf(p, sizeof p, "%s/vm/cache.idx", env.cache);
    FILE *f = fopen(p, "r+");
    assert_non_null(f);
    fseek(f, 50, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 50, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    assert_int_equal(read_all(c, "vm", d1), NBLK); /* cold, and right */
    /* other's index (and data) under vm's name: another volume's, ignored */
    snprintf(q, sizeof q, "%s/other/cache.idx", env.cache);
    assert_int_equal(rename(q, p), 0);
    char qd[1024], pd[1024];
    snprintf(qd, sizeof qd, "%s/other/cache.dat", env.cache);
    snprintf(pd, sizeof pd, "%s/vm/cache.dat", env.cache);
    assert_int_equal(rename(qd, pd), 0);
    assert_int_equal(read_all(c, "vm", d1), NBLK);
    assert_int_equal(read_all(c, "other", d2), NBLK); /* its index moved away: cold */
    free(d1);
    free(d2);
    glidefs_config_free(c);
    tu_env_done(&env);
}

static uint64_t disk_bytes(const char *dir, const char *name, const char *leaf)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s/%s", dir, name, leaf);
    return stat(p, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

#define BIG 80u /* 10 MiB */

static void test_budget(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "park-budget");
    /* 12 MiB: a 4 MiB volume's kept cache and a 10 MiB one's do not fit together */
    glidefs_config *c = cfg_of(&env, env.cache, "12M");
    uint8_t *d1 = make(c, "x", 5);
    assert_true(exists(env.cache, "x", "cache.idx"));
    assert_true(disk_bytes(env.cache, "x", "cache.dat") >= SZ);
    uint8_t *d2 = make_n(c, "y", 6, BIG);
    /* y's cache pushed x's kept one out, files and all */
    assert_false(exists(env.cache, "x", "cache.idx"));
    assert_int_equal(disk_bytes(env.cache, "x", "cache.dat"), 0);
    assert_true(exists(env.cache, "y", "cache.idx"));
    /* x again (cold): now y's kept cache is the one that goes */
    assert_int_equal(read_all(c, "x", d1), NBLK);
    assert_false(exists(env.cache, "y", "cache.idx"));
    assert_true(exists(env.cache, "x", "cache.idx"));
    glidefs_config_free(c);
    /* a new config is a new process's budget: it finds x's kept cache at its
     * first open and counts it, so z's cache pushes it out */
    c = cfg_of(&env, env.cache, "12M");
    uint8_t *d3 = make_n(c, "z", 7, BIG);
    assert_false(exists(env.cache, "x", "cache.idx"));
    uint64_t on_disk = disk_bytes(env.cache, "x", "cache.dat") +
                       disk_bytes(env.cache, "y", "cache.dat") +
                       disk_bytes(env.cache, "z", "cache.dat");
    assert_true(on_disk <= (uint64_t)12 << 20);
    free(d1);
    free(d2);
    free(d3);
    glidefs_config_free(c);
    tu_env_done(&env);
}

static void test_keep_off(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "park-off");
    glidefs_config *c = cfg_of(&env, env.cache, "64M");
    tu_set(c, "cache.keep_on_close", "false");
    uint8_t *d = make(c, "vm", 8);
    assert_false(exists(env.cache, "vm", "cache.idx"));
    assert_int_equal(disk_bytes(env.cache, "vm", "cache.dat"), 0);
    assert_int_equal(read_all(c, "vm", d), NBLK);
    free(d);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warm_reopen),
        cmocka_unit_test(test_written_elsewhere),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_keep_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
