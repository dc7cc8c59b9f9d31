/*
 * test_budget.c — cache.disk_size is one budget for all the volumes opened
 * with one config (issue #21, item 11), through the library API:
 *  - no starvation: with uploads put off for an hour (sync_delay_ms and
 *    max_dirty_age_ms), eight volumes write three times the journal's share
 *    between them; every write completes (writers wait while the others'
 *    dirty data holds the share, and those volumes are made to upload);
 *  - a write larger than the journal's whole share goes alone: it waits
 *    until the other volumes have uploaded and given back even their
 *    current journal files, and then completes;
 *  - the clean cache is shared: a busy volume uses what idle ones do not,
 *    gives it back to a volume that needs its share, and a closed volume's
 *    kept cache goes (its file emptied) when an open one needs the space;
 *  - two configs are two budgets; a config freed before its volumes are
 *    closed leaves them working.
 * Everything written reads back, and from a fresh cache after a drain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"

#define MiB (1024u * 1024u)
#define NVOL 8

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The bytes round `rnd` of volume `vol` puts at [off, off + len). */
static void pattern(int vol, int rnd, uint64_t off, uint8_t *p, size_t len)
{
    for (size_t k = 0; k < len; k += 4096) {
        uint64_t s = ((uint64_t)vol << 48) ^ ((uint64_t)rnd << 40) ^ ((off + k) / 4096 + 1);
        for (size_t i = 0; i < 4096 && k + i < len; i += 8) {
            uint64_t x = tu_rand(&s);
            memcpy(p + k + i, &x, 8);
        }
    }
}

static void check_range(glidefs_volume *v, int vol, int rnd, uint64_t off, size_t len)
{
    uint8_t *got = malloc(len), *want = malloc(len);
    assert_non_null(got);
    assert_non_null(want);
    assert_int_equal(glidefs_pread(v, got, len, off), 0);
    pattern(vol, rnd, off, want, len);
    if (memcmp(got, want, len) != 0)
        fail_msg("volume %d: [%llu, +%zu) does not read back", vol, (unsigned long long)off, len);
    free(got);
    free(want);
}

static struct glidefs_stats st(glidefs_volume *v)
{
    struct glidefs_stats s;
    assert_int_equal(glidefs_stats(v, &s, sizeof s), 0);
    return s;
}

static glidefs_volume *open_vol(glidefs_config *c, const char *prefix, int i, uint64_t size)
{
    char name[32];
    snprintf(name, sizeof name, "%s%d", prefix, i);
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(c, name, size, GLIDEFS_OPEN_CREATE, &v), 0);
    return v;
}

/* ---- writers with a deadline ---- */

struct writer {
    glidefs_volume *v;
    int vol, rnd;
    uint64_t off, len;
    uint32_t chunk;
    int done, err;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = malloc(w->chunk);
    if (!buf) {
        w->err = -ENOMEM;
    }
    for (uint64_t p = 0; buf && p < w->len && !w->err; p += w->chunk) {
        pattern(w->vol, w->rnd, w->off + p, buf, w->chunk);
        w->err = glidefs_pwrite(w->v, buf, w->chunk, w->off + p, 0);
    }
    if (!w->err)
        w->err = glidefs_flush(w->v);
    free(buf);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Run the writers; every one must be done within `limit` seconds. A hung
 * writer cannot be stopped: the test fails and the process exits. */
static void run_writers(struct writer *w, int n, double limit, const char *what)
{
    pthread_t t[NVOL];
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    double t0 = now_s();
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += __atomic_load_n(&w[i].done, __ATOMIC_SEQ_CST);
        if (done == n)
            break;
        if (now_s() - t0 > limit) {
            fprintf(stderr, "%s: %d of %d writers still blocked after %.0f s\n", what, n - done,
                    n, limit);
            fflush(stderr);
            _exit(1); /* blocked threads hold the volumes: nothing to clean up */
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].err, 0);
    }
    fprintf(stderr, "# %s: done in %.2f s\n", what, now_s() - t0);
}

/* Uploads put off for an hour: only the budget's back-pressure moves data. */
static glidefs_config *lazy_config(const struct tu_env *e)
{
    glidefs_config *c = tu_config(e, "16M", "3600000");
    tu_set(c, "servers.nbd.max_dirty_age_ms", "3600000");
    return c;
}

static void test_no_starvation(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "budget-starve");
    glidefs_config *c = lazy_config(&e);
    glidefs_volume *v[NVOL];
    for (int i = 0; i < NVOL; i++)
        v[i] = open_vol(c, "s", i, 16 * MiB);
    /* seven volumes write 2 MiB each, more than the journal's share (8 MiB)
     * between them, and then sit on their dirty data */
    struct writer w[NVOL];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NVOL - 1; i++)
        w[i] = (struct writer){v[i], i, 1, 0, 2 * MiB, 128 * 1024, 0, 0};
    run_writers(w, NVOL - 1, 60, "seven volumes, 14 MiB with uploads put off");
    /* the eighth writes 4 MiB: the others must give room back */
    struct writer w8 = {v[7], 7, 1, 0, 4 * MiB, 128 * 1024, 0, 0};
    run_writers(&w8, 1, 60, "the eighth volume, 4 MiB");
    uint64_t waited = 0;
    for (int i = 0; i < NVOL; i++)
        waited += st(v[i]).writes_waited;
    fprintf(stderr, "# writes that waited: %llu\n", (unsigned long long)waited);
    assert_true(waited > 0); /* the share was full: back-pressure happened */
    for (int i = 0; i < NVOL; i++)
        check_range(v[i], i, 1, 0, i == 7 ? 4 * MiB : 2 * MiB);
    for (int i = 0; i < NVOL; i++) {
        assert_int_equal(glidefs_drain(v[i], 60000), 0);
        assert_int_equal(glidefs_volume_close(v[i]), 0);
    }
    glidefs_config_free(c);
    /* a fresh cache: the store has it all */
    char fresh[400];
    snprintf(fresh, sizeof fresh, "%s/fresh", e.root);
    c = lazy_config(&e);
    tu_set(c, "cache.dir", fresh);
    for (int i = 0; i < NVOL; i++) {
        v[i] = open_vol(c, "s", i, 16 * MiB);
        check_range(v[i], i, 1, 0, i == 7 ? 4 * MiB : 2 * MiB);
        assert_int_equal(glidefs_volume_close(v[i]), 0);
    }
    glidefs_config_free(c);
    tu_env_done(&e);
}

static void test_oversize_write(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "budget-big");
    glidefs_config *c = lazy_config(&e);
    glidefs_volume *v[NVOL];
    for (int i = 0; i < NVOL; i++)
        v[i] = open_vol(c, "o", i, 16 * MiB);
    /* seven volumes with uploaded data: each keeps its current journal file */
    struct writer w[NVOL];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NVOL - 1; i++)
        w[i] = (struct writer){v[i], i, 1, 0, 256 * 1024, 128 * 1024, 0, 0};
    run_writers(w, NVOL - 1, 60, "seven volumes, 256 KiB each");
    uint64_t held = 0;
    for (int i = 0; i < NVOL - 1; i++) {
        assert_int_equal(glidefs_drain(v[i], 60000), 0);
        held += st(v[i]).journal_bytes;
    }
    assert_true(held > 0);
    /* one write of 9 MiB, more than the journal's whole share: it must wait
     * for an empty journal, which needs the others' current files back */
    struct writer big = {v[7], 7, 1, 0, 9 * MiB, 9 * MiB, 0, 0};
    run_writers(&big, 1, 60, "one 9 MiB write");
    check_range(v[7], 7, 1, 0, 9 * MiB);
    for (int i = 0; i < NVOL - 1; i++)
        check_range(v[i], i, 1, 0, 256 * 1024);
    for (int i = 0; i < NVOL; i++)
        assert_int_equal(glidefs_volume_close(v[i]), 0);
    glidefs_config_free(c);
    tu_env_done(&e);
}

static uint64_t file_blocks(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return UINT64_MAX;
    return (uint64_t)sb.st_blocks * 512;
}

static void write_all(glidefs_volume *v, int vol, uint64_t len)
{
    struct writer w = {v, vol, 1, 0, len, 1 * MiB, 0, 0};
    run_writers(&w, 1, 120, "writing");
    assert_int_equal(glidefs_drain(v, 60000), 0);
}

static void test_shared_cache(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "budget-share");
    glidefs_config *c = tu_config(&e, "16M", "20");
    tu_set(c, "cache.readahead_kb", "0"); /* what is cached is what was read */
    glidefs_volume *v[NVOL];
    for (int i = 0; i < NVOL; i++)
        v[i] = open_vol(c, "c", i, 16 * MiB);
    write_all(v[0], 0, 12 * MiB);
    write_all(v[1], 1, 12 * MiB);
    /* v0 reads: it may use what the six volumes that hold nothing do not
     * (its fair share would be 2 MiB); v1, which holds what it uploaded,
     * gives back what it holds above v0 */
    check_range(v[0], 0, 1, 0, 12 * MiB);
    check_range(v[0], 0, 1, 0, 12 * MiB);
    uint64_t c0 = st(v[0]).cached_bytes;
    fprintf(stderr, "# v0 reading: v0 %llu, v1 %llu bytes cached\n", (unsigned long long)c0,
            (unsigned long long)st(v[1]).cached_bytes);
    assert_true(c0 >= 6 * MiB);
    /* v1 reads too: they share what the journal leaves, never more */
    check_range(v[1], 1, 1, 0, 12 * MiB);
    check_range(v[1], 1, 1, 0, 12 * MiB);
    uint64_t sum = 0;
    for (int i = 0; i < NVOL; i++) {
        struct glidefs_stats s = st(v[i]);
        sum += s.cached_bytes + s.journal_bytes;
    }
    c0 = st(v[0]).cached_bytes;
    fprintf(stderr, "# both reading: v0 %llu, v1 %llu bytes cached; the node holds %llu\n",
            (unsigned long long)c0, (unsigned long long)st(v[1]).cached_bytes,
            (unsigned long long)sum);
    assert_true(sum <= 16 * MiB);
    assert_true(st(v[1]).cached_bytes >= 6 * MiB);
    assert_true(c0 >= 6 * MiB && c0 < 10 * MiB);
    /* closing v1 keeps its cache for its next open (cache.keep_on_close),
     * still counted; v0 needing the space pushes it out, file and all */
    char path[700];
    snprintf(path, sizeof path, "%s/c1/cache.dat", e.cache);
    assert_true(file_blocks(path) > 0);
    assert_int_equal(glidefs_volume_close(v[1]), 0);
    assert_true(file_blocks(path) > 0);
    check_range(v[0], 0, 1, 0, 12 * MiB);
    check_range(v[0], 0, 1, 0, 12 * MiB);
    uint64_t left = file_blocks(path);
    assert_true(left == 0 || left == UINT64_MAX); /* emptied or removed */
    assert_true(st(v[0]).cached_bytes >= 10 * MiB);
    for (int i = 0; i < NVOL; i++)
        if (i != 1)
            assert_int_equal(glidefs_volume_close(v[i]), 0);
    glidefs_config_free(c);
    tu_env_done(&e);
}

static void test_two_configs(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "budget-two");
    glidefs_config *c1 = tu_config(&e, "8M", "20"), *c2 = tu_config(&e, "8M", "20");
    char dir2[400];
    snprintf(dir2, sizeof dir2, "%s/cache2", e.root);
    tu_set(c2, "cache.dir", dir2);
    tu_set(c1, "cache.readahead_kb", "0");
    tu_set(c2, "cache.readahead_kb", "0");
    glidefs_volume *a = open_vol(c1, "a", 0, 8 * MiB), *b = open_vol(c2, "b", 0, 8 * MiB);
    /* the config may go before its volumes: they keep the budget alive */
    glidefs_config_free(c1);
    write_all(a, 0, 6 * MiB);
    write_all(b, 1, 6 * MiB);
    check_range(a, 0, 1, 0, 6 * MiB);
    check_range(b, 1, 1, 0, 6 * MiB);
    check_range(a, 0, 1, 0, 6 * MiB);
    check_range(b, 1, 1, 0, 6 * MiB);
    /* each has (nearly) its whole budget: 12 MiB cached, above either one */
    assert_true(st(a).cached_bytes >= 5 * MiB);
    assert_true(st(b).cached_bytes >= 5 * MiB);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(b), 0);
    glidefs_config_free(c2);
    tu_env_done(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_starvation),
        cmocka_unit_test(test_oversize_write),
        cmocka_unit_test(test_shared_cache),
        cmocka_unit_test(test_two_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
