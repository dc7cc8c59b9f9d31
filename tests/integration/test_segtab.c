/*
 * test_segtab.c — the segment table of a long-lived volume stays bounded:
 * heavy overwrites of a small volume with a compaction after each round
 * create and delete hundreds of segments, and the rows of the deleted ones
 * are reclaimed (the table's row count, read through the internal library,
 * stays near the number of live segments while the segments ever created
 * grow without bound). Readers run during every compaction and check each
 * block they read against the model (a read or cache fill straddling a
 * renumbering must not return or cache another segment's data, and a read
 * from the clean cache racing the drop of a moved block must not return
 * the punched hole: it did, about one run in ten, before cache.c changed
 * the generation before punching); the whole volume reads back byte-exact
 * after the run, and after a wake on an empty cache. Links the internal
 * library to read the table's size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>

#include "testutil.h"
#include "volume_internal.h"

#define SZ (4u << 20) /* 32 blocks of 128 KiB */
#define ROUNDS 160
#define ROW_BOUND 140 /* live segments (<= 32) + the newest + reclaim's thresholds */

static uint8_t *ref;

struct reader {
    glidefs_volume *v;
    uint64_t seed;
    int stop;
    uint64_t reads, bad;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint8_t *buf = malloc(131072);
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint64_t len = 4096u << (tu_rand(&r->seed) % 6); /* 4 .. 128 KiB */
        uint64_t off = (tu_rand(&r->seed) % ((SZ - len) / 4096)) * 4096;
        int rc = glidefs_pread(r->v, buf, len, off);
        if (rc != 0 || memcmp(buf, ref + off, len) != 0) {
            if (!r->bad++) {
                uint64_t at = 0;
                while (rc == 0 && at < len && buf[at] == ref[off + at])
                    at++;
                fprintf(stderr, "read of %llu bytes at %llu: %s, first difference at +%llu\n",
                        (unsigned long long)len, (unsigned long long)off, glidefs_strerror(rc),
                        (unsigned long long)at);
            }
        }
        r->reads++;
    }
    free(buf);
    return NULL;
}

static void rows(glidefs_volume *v, uint32_t *n, uint64_t *gen)
{
    pthread_mutex_lock(&v->lock);
    *n = v->sv.bm.nsegs - 1;
    *gen = v->sv.bm.seg_gen;
    pthread_mutex_unlock(&v->lock);
}

static void verify(glidefs_volume *v)
{
    uint8_t *buf = malloc(SZ);
    assert_int_equal(glidefs_pread(v, buf, SZ, 0), 0);
    if (memcmp(buf, ref, SZ) != 0)
        fail_msg("volume differs from the model");
    free(buf);
}

static void test_table_bounded(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "segtab");
    if (strncmp(env.url, "file://", 7) != 0)
        skip();
    glidefs_config *c = tu_config(&env, "64M", "0");
    tu_set(c, "compaction.min_live_pct", "90");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    tu_set(c, "compaction.keep_manifests", "1");
    tu_set(c, "cache.readahead_kb", "512");
    ref = calloc(1, SZ);
    uint8_t *buf = malloc(1 << 20);
    uint64_t s = 777;
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "vol", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    uint32_t n = 0, most = 0;
    uint64_t gen = 0, reads = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < 12; i++) {
            uint64_t len = 4096u << (tu_rand(&s) % 7); /* 4 .. 256 KiB */
            uint64_t off = (tu_rand(&s) % ((SZ - len) / 4096)) * 4096;
            for (uint64_t k = 0; k < len; k += 8) {
                uint64_t x = tu_rand(&s);
                memcpy(buf + k, &x, 8);
            }
            assert_int_equal(glidefs_pwrite(v, buf, len, off, 0), 0);
            memcpy(ref + off, buf, len);
        }
        assert_int_equal(glidefs_drain(v, -1), 0);
        /* readers while the compactor moves, deletes and renumbers */
        struct reader rd[2];
        pthread_t th[2];
        for (int t = 0; t < 2; t++) {
            rd[t] = (struct reader){.v = v, .seed = 1000 + (uint64_t)round * 2 + (uint64_t)t};
            assert_int_equal(pthread_create(&th[t], NULL, reader_main, &rd[t]), 0);
        }
        struct glidefs_compact_result res;
        assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
        for (int t = 0; t < 2; t++) {
            __atomic_store_n(&rd[t].stop, 1, __ATOMIC_RELEASE);
            pthread_join(th[t], NULL);
            assert_int_equal(rd[t].bad, 0);
            reads += rd[t].reads;
        }
        rows(v, &n, &gen);
        if (n > most)
            most = n;
        assert_true(n <= ROW_BOUND);
    }
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    fprintf(stderr, "segments uploaded %llu, deleted %llu; table rows now %u (most %u), "
            "%llu renumberings, %llu reads during compaction\n",
            (unsigned long long)st.segments_uploaded, (unsigned long long)st.segments_deleted, n,
            most, (unsigned long long)gen, (unsigned long long)reads);
    /* far more segments came and went than the table ever held */
    assert_true(st.segments_deleted > 4 * ROW_BOUND);
    assert_true(gen >= 3);
    verify(v);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* wake on an empty cache: the same bytes, from a table of what exists */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "vol", 0, 0, &v), 0);
    verify(v);
    rows(v, &n, &gen);
    assert_true(n <= ROW_BOUND);
    /* and it goes on: more rounds after the wake stay bounded too */
    for (int round = 0; round < 20; round++) {
        uint64_t len = 65536, off = (tu_rand(&s) % ((SZ - len) / 4096)) * 4096;
        for (uint64_t k = 0; k < len; k += 8) {
            uint64_t x = tu_rand(&s);
            memcpy(buf + k, &x, 8);
        }
        assert_int_equal(glidefs_pwrite(v, buf, len, off, 0), 0);
        memcpy(ref + off, buf, len);
        assert_int_equal(glidefs_drain(v, -1), 0);
        struct glidefs_compact_result res;
        assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
        rows(v, &n, &gen);
        assert_true(n <= ROW_BOUND);
    }
    verify(v);
    assert_int_equal(glidefs_volume_close(v), 0);
    free(buf);
    free(ref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
