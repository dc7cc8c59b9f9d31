/*
 * test_budget.c — the node's disk budget (lib/budget.c) with fake volumes:
 * clean-cache admission within the budget, eviction from whoever holds the
 * most, the caller included (another volume only through trylock: a busy
 * one is skipped, never waited for),
 * journal admission within half the budget in FIFO order (nobody passes a
 * waiting writer), the cache making room for the journal, a file larger
 * than the journal's share going alone once the journal is empty,
 * pressure and kicks for the volumes holding journal data while someone
 * waits, a sleeper woken by space given back, file sizes against the
 * number of volumes, and leaving (the share and the place in the queue go
 * back; the budget outlives its creator's reference).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "budget.h"

#define MiB (1024u * 1024u)
#define BLK (128u * 1024u)

/* A fake volume: a lock, a clean cache counted in blocks, a kick counter. */
struct vol {
    pthread_mutex_t lock;
    struct gfs_budget_member m;
    uint64_t cache;  /* bytes "cached" */
    int kicks;
    int evict_calls;
};

static uint64_t fake_evict(void *arg, uint64_t bytes)
{
    struct vol *v = arg;
    v->evict_calls++;
    uint64_t n = (bytes + BLK - 1) / BLK * BLK;
    if (n > v->cache)
        n = v->cache;
    v->cache -= n;
    gfs_budget_cache_add(&v->m, -(int64_t)n);
    return n;
}

static void fake_kick(void *arg)
{
    struct vol *v = arg;
    __atomic_add_fetch(&v->kicks, 1, __ATOMIC_SEQ_CST);
}

static void vol_join(struct vol *v, struct gfs_budget *b, uint64_t total)
{
    memset(v, 0, sizeof *v);
    pthread_mutex_init(&v->lock, NULL);
    v->m.lock = &v->lock;
    v->m.evict = fake_evict;
    v->m.kick = fake_kick;
    v->m.arg = v;
    gfs_budget_join(b, &v->m, total);
}

static void vol_leave(struct vol *v)
{
    gfs_budget_leave(&v->m);
    pthread_mutex_destroy(&v->lock);
}

/* As the volume does: admission under its lock, then the claim charges. */
static int cache_fill(struct vol *v)
{
    pthread_mutex_lock(&v->lock);
    int r = gfs_budget_cache_admit(&v->m, BLK);
    if (r == 0) {
        v->cache += BLK;
        gfs_budget_cache_add(&v->m, BLK);
        gfs_budget_cache_done(&v->m, BLK);
    }
    pthread_mutex_unlock(&v->lock);
    return r;
}

static int journal_take(struct vol *v, uint64_t bytes, int *waiting)
{
    uint64_t gen;
    pthread_mutex_lock(&v->lock);
    int r = gfs_budget_journal_admit(&v->m, bytes, waiting, &gen);
    if (r == 0) {
        gfs_budget_journal_add(&v->m, (int64_t)bytes);
        gfs_budget_journal_done(&v->m, bytes);
    }
    pthread_mutex_unlock(&v->lock);
    return r;
}

static uint64_t total_cache(struct vol *v, int n)
{
    uint64_t t = 0;
    for (int i = 0; i < n; i++)
        t += v[i].cache;
    return t;
}

static void test_cache_shared(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[4];
    for (int i = 0; i < 4; i++)
        vol_join(&v[i], b, 16 * MiB);
    /* one busy volume may use what the idle ones do not: all of it */
    for (int i = 0; i < 128; i++)
        assert_int_equal(cache_fill(&v[0]), 0);
    assert_int_equal(v[0].cache, 16 * MiB);
    /* full: the next fill of the same volume evicts from itself */
    assert_int_equal(cache_fill(&v[0]), 0);
    assert_int_equal(v[0].cache, 16 * MiB);
    /* another volume, below its share, takes from the one above it */
    for (int i = 0; i < 16; i++)
        assert_int_equal(cache_fill(&v[1]), 0);
    assert_int_equal(v[1].cache, 2 * MiB);
    assert_int_equal(v[0].cache, 14 * MiB);
    assert_true(total_cache(v, 4) <= 16 * MiB);
    /* everybody busy: they end near their shares, never above the total */
    for (int r = 0; r < 200; r++)
        for (int i = 0; i < 4; i++) {
            assert_int_equal(cache_fill(&v[i]), 0);
            assert_true(total_cache(v, 4) <= 16 * MiB);
        }
    for (int i = 0; i < 4; i++)
        assert_true(v[i].cache >= 3 * MiB && v[i].cache <= 5 * MiB);
    /* v3 loses its cache and fills again: up to its share, from the others */
    gfs_budget_cache_add(&v[3].m, -(int64_t)v[3].cache);
    v[3].cache = 0;
    for (int i = 0; i < 32; i++)
        assert_int_equal(cache_fill(&v[3]), 0);
    assert_true(v[3].cache >= 3 * MiB);
    /* the others are busy (their locks held elsewhere): never waited for */
    pthread_mutex_lock(&v[0].lock);
    pthread_mutex_lock(&v[1].lock);
    pthread_mutex_lock(&v[2].lock);
    int calls = v[0].evict_calls + v[1].evict_calls + v[2].evict_calls;
    /* the others are skipped: v3 evicts from itself */
    assert_int_equal(cache_fill(&v[3]), 0);
    assert_int_equal(v[0].evict_calls + v[1].evict_calls + v[2].evict_calls, calls);
    pthread_mutex_unlock(&v[2].lock);
    pthread_mutex_unlock(&v[1].lock);
    pthread_mutex_unlock(&v[0].lock);
    for (int i = 0; i < 4; i++)
        vol_leave(&v[i]);
    gfs_budget_unref(b);
}

static void test_cache_busy_victims(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[2];
    vol_join(&v[0], b, 4 * MiB);
    vol_join(&v[1], b, 4 * MiB);
    for (int i = 0; i < 32; i++)
        assert_int_equal(cache_fill(&v[0]), 0);
    /* v0 holds everything and is busy (its lock held by another thread):
     * v1 has nothing to evict of its own, so it does not cache now */
    pthread_mutex_lock(&v[0].lock);
    pthread_mutex_lock(&v[1].lock);
    assert_int_equal(gfs_budget_cache_admit(&v[1].m, BLK), -ENOSPC);
    pthread_mutex_unlock(&v[1].lock);
    pthread_mutex_unlock(&v[0].lock);
    /* not busy any more: it gives v1 room */
    assert_int_equal(cache_fill(&v[1]), 0);
    assert_int_equal(v[0].cache, 4 * MiB - BLK);
    vol_leave(&v[0]);
    vol_leave(&v[1]);
    gfs_budget_unref(b);
}

static void test_journal_fifo_and_pressure(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[3];
    for (int i = 0; i < 3; i++)
        vol_join(&v[i], b, 16 * MiB);
    int w0 = 0, w1 = 0, w2 = 0;
    /* the journal may hold half of the budget */
    assert_int_equal(journal_take(&v[0], 6 * MiB, &w0), 0);
    assert_int_equal(journal_take(&v[2], 1 * MiB, &w2), 0);
    assert_false(gfs_budget_pressure(&v[0].m));
    assert_int_equal(journal_take(&v[1], 2 * MiB, &w1), -EAGAIN);
    assert_true(w1);
    /* someone waits: those holding journal data are told to upload (and
     * their syncers woken), those holding none are not */
    assert_true(gfs_budget_pressure(&v[0].m));
    assert_true(gfs_budget_pressure(&v[2].m));
    assert_false(gfs_budget_pressure(&v[1].m));
    assert_true(v[0].kicks >= 1 && v[2].kicks >= 1);
    assert_int_equal(v[1].kicks, 0);
    /* first come, first served: a smaller request that would fit waits too */
    assert_int_equal(journal_take(&v[2], 512 * 1024, &w2), -EAGAIN);
    assert_true(w2);
    /* space given back: v1, first in line, goes; then v2 */
    gfs_budget_journal_add(&v[0].m, -4 * (int64_t)MiB);
    assert_int_equal(journal_take(&v[2], 512 * 1024, &w2), -EAGAIN);
    assert_int_equal(journal_take(&v[1], 2 * MiB, &w1), 0);
    assert_false(w1);
    assert_int_equal(journal_take(&v[2], 512 * 1024, &w2), 0);
    assert_false(w2);
    assert_false(gfs_budget_pressure(&v[0].m));
    /* a waiter that gives up leaves the queue */
    assert_int_equal(journal_take(&v[0], 4 * MiB, &w0), -EAGAIN);
    gfs_budget_journal_cancel(&v[0].m, &w0);
    assert_false(w0);
    assert_false(gfs_budget_pressure(&v[2].m));
    assert_int_equal(journal_take(&v[2], 512 * 1024, &w2), 0);
    for (int i = 0; i < 3; i++)
        vol_leave(&v[i]);
    gfs_budget_unref(b);
}

static void test_journal_evicts_cache(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[2];
    vol_join(&v[0], b, 8 * MiB);
    vol_join(&v[1], b, 8 * MiB);
    for (int i = 0; i < 64; i++)
        assert_int_equal(cache_fill(&v[1]), 0);
    assert_int_equal(v[1].cache, 8 * MiB);
    /* the journal's half comes first: the cache makes room for it */
    int w = 0;
    assert_int_equal(journal_take(&v[0], 3 * MiB, &w), 0);
    assert_int_equal(v[1].cache, 5 * MiB);
    /* and the cache cannot take it back */
    assert_int_equal(cache_fill(&v[1]), 0);
    assert_int_equal(v[1].cache, 5 * MiB);
    vol_leave(&v[0]);
    vol_leave(&v[1]);
    gfs_budget_unref(b);
}

static void test_journal_oversize(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[2];
    vol_join(&v[0], b, 8 * MiB);
    vol_join(&v[1], b, 8 * MiB);
    int w0 = 0, w1 = 0;
    assert_int_equal(journal_take(&v[1], 1 * MiB, &w1), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(cache_fill(&v[1]), 0);
    /* bigger than the journal's share (4 MiB): only an empty journal */
    assert_int_equal(journal_take(&v[0], 6 * MiB, &w0), -EAGAIN);
    gfs_budget_journal_add(&v[1].m, -1 * (int64_t)MiB);
    assert_int_equal(journal_take(&v[0], 6 * MiB, &w0), 0);
    /* the cache gave the rest back: 6 + 1 <= 8 */
    assert_true(v[1].cache <= 2 * MiB);
    /* larger than the whole budget: everything else goes first */
    gfs_budget_journal_add(&v[0].m, -6 * (int64_t)MiB);
    assert_int_equal(journal_take(&v[0], 12 * MiB, &w0), 0);
    assert_int_equal(v[1].cache, 0);
    assert_int_equal(cache_fill(&v[1]), -ENOSPC);
    vol_leave(&v[0]);
    vol_leave(&v[1]);
    gfs_budget_unref(b);
}

struct sleeper {
    struct gfs_budget *b;
    uint64_t gen;
    int done;
};

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    gfs_budget_wait(s->b, s->gen, 60000);
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_wait_wakes(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[2];
    vol_join(&v[0], b, 4 * MiB);
    vol_join(&v[1], b, 4 * MiB);
    int w0 = 0, w1 = 0;
    assert_int_equal(journal_take(&v[0], 2 * MiB, &w0), 0);
    uint64_t gen;
    pthread_mutex_lock(&v[1].lock);
    assert_int_equal(gfs_budget_journal_admit(&v[1].m, 1 * MiB, &w1, &gen), -EAGAIN);
    pthread_mutex_unlock(&v[1].lock);
    struct sleeper s = {b, gen, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sleeper_main, &s), 0);
    /* asleep (nothing given back): still there a moment later */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_false(__atomic_load_n(&s.done, __ATOMIC_SEQ_CST));
    gfs_budget_journal_add(&v[0].m, -1 * (int64_t)MiB); /* wakes it long before 60 s */
    pthread_join(t, NULL);
    assert_true(s.done);
    assert_int_equal(journal_take(&v[1], 1 * MiB, &w1), 0);
    /* a gen that is already old does not sleep at all */
    gfs_budget_wait(b, gen, 60000);
    vol_leave(&v[0]);
    vol_leave(&v[1]);
    gfs_budget_unref(b);
}

static void test_sizes_and_leave(void **state)
{
    (void)state;
    struct gfs_budget *b;
    assert_int_equal(gfs_budget_new(&b), 0);
    struct vol v[8];
    vol_join(&v[0], b, 16 * MiB);
    /* alone: B/16 as before, read-ahead B/8 */
    assert_int_equal(gfs_budget_jfile_size(b), 1 * MiB);
    assert_int_equal(gfs_budget_readahead_cap(b), 2 * MiB);
    for (int i = 1; i < 8; i++)
        vol_join(&v[i], b, 16 * MiB);
    /* eight: the smallest files, eight of which take half the journal */
    assert_int_equal(gfs_budget_jfile_size(b), 512 * 1024);
    assert_int_equal(gfs_budget_readahead_cap(b), 256 * 1024);
    assert_int_equal(gfs_budget_total(b), 16 * MiB);
    vol_leave(&v[0]);
    int w = 0;
    /* leaving gives the share back and takes the volume out of the queue */
    assert_int_equal(journal_take(&v[1], 8 * MiB, &w), 0);
    int w2 = 0;
    assert_int_equal(journal_take(&v[2], 1 * MiB, &w2), -EAGAIN);
    assert_true(gfs_budget_pressure(&v[1].m));
    vol_leave(&v[2]);
    assert_false(gfs_budget_pressure(&v[1].m));
    vol_leave(&v[1]);
    /* v1's 8 MiB went with it */
    int w3 = 0;
    assert_int_equal(journal_take(&v[3], 8 * MiB, &w3), 0);
    for (int i = 3; i < 8; i++)
        vol_leave(&v[i]);
    /* the creator drops its reference first: the volumes keep it alive */
    struct gfs_budget *big;
    assert_int_equal(gfs_budget_new(&big), 0);
    vol_join(&v[0], big, 100ull << 30);
    gfs_budget_unref(big);
    assert_int_equal(gfs_budget_jfile_size(big), 64 * MiB);
    vol_leave(&v[0]); /* frees it (ASan would see a leak or a use after free) */
    gfs_budget_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_shared),
        cmocka_unit_test(test_cache_busy_victims),
        cmocka_unit_test(test_journal_fifo_and_pressure),
        cmocka_unit_test(test_journal_evicts_cache),
        cmocka_unit_test(test_journal_oversize),
        cmocka_unit_test(test_wait_wakes),
        cmocka_unit_test(test_sizes_and_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
