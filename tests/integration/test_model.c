/*
 * test_model.c — the volume API checked against an in-memory model: thousands
 * of random reads, writes, trims, zeroes, flushes, drains and reopens (sizes
 * 512 B to 1 MiB at random 512-aligned offsets) with a cache budget so small
 * that eviction, re-fetch from the store and journal back-pressure happen all
 * the time. Then wake: drain, delete the cache dir, reopen, compare every byte.
 * Also: partial writes to uncached blocks never read the store, and are
 * uploaded merged with the rest of the block (never with zeroes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "testutil.h"

#define VOL_SIZE (48ull << 20)
#define MAX_IO (1u << 20)

static uint64_t rand_len(uint64_t *s, uint64_t maxlen)
{
    unsigned k = (unsigned)(tu_rand(s) % 12); /* 512 B .. 1 MiB, small sizes more likely */
    uint64_t n = 1 + tu_rand(s) % (1u << k);
    uint64_t len = n * 512;
    if (len > MAX_IO)
        len = MAX_IO;
    if (len > maxlen)
        len = maxlen;
    return len;
}

static void fill(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x = tu_rand(s);
        memcpy(p + i, &x, 8);
    }
}

static void verify_all(glidefs_volume *v, const uint8_t *ref)
{
    uint8_t *buf = malloc(MAX_IO);
    assert_non_null(buf);
    for (uint64_t off = 0; off < VOL_SIZE; off += MAX_IO) {
        assert_int_equal(glidefs_pread(v, buf, MAX_IO, off), 0);
        if (memcmp(buf, ref + off, MAX_IO) != 0) {
            for (size_t i = 0; i < MAX_IO; i++)
                if (buf[i] != ref[off + i]) {
                    fail_msg("mismatch at byte %llu", (unsigned long long)(off + i));
                }
        }
    }
    free(buf);
}

static void test_random_model(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "model");
    glidefs_config *cfg = tu_config(&env, "6M", "2");
    char name[64];
    snprintf(name, sizeof name, "model-%d", (int)getpid());
    uint64_t seed = getenv("GLIDEFS_TEST_SEED") ? strtoull(getenv("GLIDEFS_TEST_SEED"), NULL, 0)
                                                : 0x9e3779b97f4a7c15ULL;
    fprintf(stderr, "seed 0x%llx\n", (unsigned long long)seed);
    uint64_t s = seed;

    uint8_t *ref = calloc(1, VOL_SIZE);
    uint8_t *buf = malloc(MAX_IO);
    assert_non_null(ref);
    assert_non_null(buf);
    glidefs_volume *v = NULL;
    assert_int_equal(glidefs_volume_open(cfg, name, VOL_SIZE, GLIDEFS_OPEN_CREATE, &v), 0);
    assert_int_equal(glidefs_volume_size(v), VOL_SIZE);

    int nops = getenv("GLIDEFS_TEST_OPS") ? atoi(getenv("GLIDEFS_TEST_OPS")) : 4000;
    for (int op = 0; op < nops; op++) {
        uint64_t r = tu_rand(&s) % 100;
        uint64_t off = (tu_rand(&s) % (VOL_SIZE / 512)) * 512;
        uint64_t len = rand_len(&s, VOL_SIZE - off);
        if (len == 0)
            continue;
        if (r < 40) {
            fill(buf, len, &s);
            unsigned fl = (tu_rand(&s) % 16 == 0) ? GLIDEFS_WRITE_FUA : 0;
            assert_int_equal(glidefs_pwrite(v, buf, len, off, fl), 0);
            memcpy(ref + off, buf, len);
        } else if (r < 78) {
            assert_int_equal(glidefs_pread(v, buf, len, off), 0);
            if (memcmp(buf, ref + off, len) != 0) {
                uint64_t i = 0, j;
                while (buf[i] == ref[off + i])
                    i++;
                for (j = i; j < len && buf[j] != ref[off + j]; j++)
                    ;
                uint8_t *again = malloc(len);
                int same = glidefs_pread(v, again, len, off) == 0 && memcmp(again, ref + off, len) == 0;
                free(again);
                fprintf(stderr, "re-read %s\n", same ? "matches (transient)" : "differs too");
                fail_msg("op %d: read %llu+%llu differs from the model at byte %llu..%llu "
                         "(got %02x, want %02x)", op, (unsigned long long)off,
                         (unsigned long long)len, (unsigned long long)(off + i),
                         (unsigned long long)(off + j), buf[i], ref[off + i]);
            }
        } else if (r < 86) {
            assert_int_equal(glidefs_trim(v, off, len, 0), 0);
            memset(ref + off, 0, len);
        } else if (r < 92) {
            assert_int_equal(glidefs_write_zeroes(v, off, len, 0), 0);
            memset(ref + off, 0, len);
        } else if (r < 97) {
            assert_int_equal(glidefs_flush(v), 0);
        } else if (r < 98) {
            assert_int_equal(glidefs_drain(v, -1), 0);
        } else if (r < 99) {
            int is_hole = -1;
            int64_t n = glidefs_block_status(v, off, len, &is_hole);
            assert_true(n > 0 && (uint64_t)n <= len);
            if (is_hole) {
                /* a reported hole must read as zeroes */
                assert_int_equal(glidefs_pread(v, buf, (size_t)n, off), 0);
                for (int64_t i = 0; i < n; i++)
                    if (buf[i])
                        fail_msg("op %d: hole at %llu reads nonzero", op, (unsigned long long)off);
            }
        } else {
            /* clean close and reopen: the journal carries what is not uploaded */
            assert_int_equal(glidefs_volume_close(v), 0);
            assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
        }
    }
    verify_all(v, ref);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    fprintf(stderr, "ops %d: hits %llu misses %llu puts %llu gets %llu waited %llu\n", nops,
            (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses,
            (unsigned long long)st.store_puts, (unsigned long long)st.store_gets,
            (unsigned long long)st.writes_waited);
    assert_true(st.store_puts > 0);
    assert_true(st.cache_misses > 0); /* the budget forced re-fetches */

    /* wake: drain, forget the cache, read everything back from the store */
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_int_equal(st.dirty_bytes, 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
    assert_int_equal(glidefs_volume_size(v), VOL_SIZE);
    verify_all(v, ref);
    assert_int_equal(glidefs_volume_close(v), 0);

    free(ref);
    free(buf);
    glidefs_config_free(cfg);
    tu_env_done(&env);
}

static void test_partial_write_uncached(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "partial");
    glidefs_config *cfg = tu_config(&env, "64M", "100000"); /* no timed uploads */
    char name[64];
    snprintf(name, sizeof name, "partial-%d", (int)getpid());
    const size_t bs = 131072;
    uint8_t *a = malloc(bs), *b = malloc(bs);
    uint64_t s = 42;
    fill(a, bs, &s);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(cfg, name, 8 * bs, GLIDEFS_OPEN_CREATE, &v), 0);
    assert_int_equal(glidefs_pwrite(v, a, bs, bs, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);

    assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
    struct glidefs_stats st0, st1;
    assert_int_equal(glidefs_stats(v, &st0, sizeof st0), 0);
    uint8_t sector[512];
    memset(sector, 0xAB, sizeof sector);
    assert_int_equal(glidefs_pwrite(v, sector, 512, bs + 4096, 0), 0);
    assert_int_equal(glidefs_flush(v), 0);
    assert_int_equal(glidefs_stats(v, &st1, sizeof st1), 0);
    /* promise 1: a write fetches nothing (store_gets may move: the lease
     * heartbeat reads its object back) */
    assert_int_equal(st1.blocks_fetched, st0.blocks_fetched);
    memcpy(a + 4096, sector, 512);
    assert_int_equal(glidefs_pread(v, b, bs, bs), 0);
    assert_memory_equal(a, b, bs);
    /* upload merges the block with the store's copy, not with zeroes */
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
    assert_int_equal(glidefs_pread(v, b, bs, bs), 0);
    assert_memory_equal(a, b, bs);

    /* bad input changes nothing */
    assert_int_equal(glidefs_pwrite(v, sector, 100, 0, 0), -EINVAL);
    assert_int_equal(glidefs_pwrite(v, sector, 512, 7, 0), -EINVAL);
    assert_int_equal(glidefs_pwrite(v, sector, 512, 8 * bs, 0), -EINVAL);
    assert_int_equal(glidefs_pread(v, b, 1024, 8 * bs - 512), -EINVAL);
    assert_int_equal(glidefs_resize(v, 4 * bs), -EINVAL);
    assert_int_equal(glidefs_resize(v, 16 * bs), 0);
    assert_int_equal(glidefs_volume_size(v), 16 * bs);
    assert_int_equal(glidefs_pwrite(v, sector, 512, 15 * bs, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(cfg, name, 0, 0, &v), 0);
    assert_int_equal(glidefs_volume_size(v), 16 * bs);
    assert_int_equal(glidefs_pread(v, b, 512, 15 * bs), 0);
    assert_memory_equal(sector, b, 512);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* opening a missing volume without CREATE, and bad names */
    assert_int_equal(glidefs_volume_open(cfg, "missing", 0, 0, &v), -ENOENT);
    char stray[600];
    snprintf(stray, sizeof stray, "%s/missing", env.cache);
    assert_int_equal(access(stray, F_OK), -1); /* a failed open leaves nothing behind */
    assert_int_equal(glidefs_volume_exists(cfg, "missing"), 0);
    assert_int_equal(glidefs_volume_exists(cfg, name), 1);
    assert_int_equal(glidefs_volume_exists(cfg, "../x"), -EINVAL);
    assert_int_equal(glidefs_volume_open(cfg, "../x", 4096, GLIDEFS_OPEN_CREATE, &v), -EINVAL);
    assert_int_equal(glidefs_volume_open(cfg, name, 4096, GLIDEFS_OPEN_CREATE | GLIDEFS_OPEN_EXCLUSIVE,
                                         &v), -EEXIST);
    free(a);
    free(b);
    glidefs_config_free(cfg);
    tu_env_done(&env);
}

static void test_two_opens_refused(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "busy");
    glidefs_config *cfg = tu_config(&env, "64M", "10");
    glidefs_volume *v, *w;
    assert_int_equal(glidefs_volume_open(cfg, "busy", 1 << 20, GLIDEFS_OPEN_CREATE, &v), 0);
    assert_int_equal(glidefs_volume_open(cfg, "busy", 1 << 20, GLIDEFS_OPEN_CREATE, &w), -EBUSY);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(cfg);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partial_write_uncached),
        cmocka_unit_test(test_two_opens_refused),
        cmocka_unit_test(test_random_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
