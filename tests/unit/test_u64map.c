/*
 * test_u64map.c — the open-addressing uint64 -> pointer map against simple
 * reference models: a direct table for keys in a small range (so deletes,
 * tombstones and re-inserts hit the same keys over and over) and a sorted
 * array for large random keys, including 0 and UINT64_MAX. Iteration must
 * visit each live key exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "u64map.h"

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* distinct non-NULL values: pointers into this array */
static char vals[1 << 16];
#define VAL(i) ((void *)&vals[(i) & 0xffff])

static void test_empty(void **state)
{
    (void)state;
    struct gfs_u64map m;
    gfs_u64map_init(&m);
    assert_null(gfs_u64map_get(&m, 0));
    assert_null(gfs_u64map_get(&m, UINT64_MAX));
    assert_null(gfs_u64map_del(&m, 42));
    size_t it = 0;
    uint64_t k;
    void *v;
    assert_int_equal(gfs_u64map_next(&m, &it, &k, &v), 0);
    assert_int_equal(m.count, 0);
    gfs_u64map_free(&m);
    gfs_u64map_free(&m); /* freeing twice (after init state) is harmless */
}

static void test_extreme_keys(void **state)
{
    (void)state;
    struct gfs_u64map m;
    gfs_u64map_init(&m);
    assert_int_equal(gfs_u64map_put(&m, 0, VAL(1)), 0);
    assert_int_equal(gfs_u64map_put(&m, UINT64_MAX, VAL(2)), 0);
    assert_ptr_equal(gfs_u64map_get(&m, 0), VAL(1));
    assert_ptr_equal(gfs_u64map_get(&m, UINT64_MAX), VAL(2));
    assert_null(gfs_u64map_get(&m, 1));
    assert_null(gfs_u64map_get(&m, UINT64_MAX - 1));
    assert_int_equal(m.count, 2);
    /* replace */
    assert_int_equal(gfs_u64map_put(&m, 0, VAL(3)), 0);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(gfs_u64map_get(&m, 0), VAL(3));
    /* iteration with NULL out-params */
    size_t it = 0;
    int n = 0;
    while (gfs_u64map_next(&m, &it, NULL, NULL))
        n++;
    assert_int_equal(n, 2);
    assert_ptr_equal(gfs_u64map_del(&m, 0), VAL(3));
    assert_null(gfs_u64map_get(&m, 0));
    assert_null(gfs_u64map_del(&m, 0));
    assert_ptr_equal(gfs_u64map_get(&m, UINT64_MAX), VAL(2));
    assert_ptr_equal(gfs_u64map_del(&m, UINT64_MAX), VAL(2));
    assert_int_equal(m.count, 0);
    assert_int_equal(gfs_u64map_put(&m, UINT64_MAX, VAL(4)), 0);
    assert_ptr_equal(gfs_u64map_get(&m, UINT64_MAX), VAL(4));
    gfs_u64map_free(&m);
}

/* ---- reference model: direct table for small keys + sorted array for big ones ---- */

#define SMALL 4096

struct ref {
    void *small[SMALL];
    uint64_t *bk;  /* sorted big keys */
    void **bv;
    size_t nb, capb;
    size_t count;
};

static size_t ref_find(const struct ref *r, uint64_t k, int *found)
{
    size_t lo = 0, hi = r->nb;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->bk[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < r->nb && r->bk[lo] == k;
    return lo;
}

static void *ref_get(const struct ref *r, uint64_t k)
{
    if (k < SMALL)
        return r->small[k];
    int f;
    size_t i = ref_find(r, k, &f);
    return f ? r->bv[i] : NULL;
}

static void ref_put(struct ref *r, uint64_t k, void *v)
{
    if (k < SMALL) {
        if (!r->small[k])
            r->count++;
        r->small[k] = v;
        return;
    }
    int f;
    size_t i = ref_find(r, k, &f);
    if (f) {
        r->bv[i] = v;
        return;
    }
    if (r->nb == r->capb) {
        r->capb = r->capb ? 2 * r->capb : 64;
        r->bk = realloc(r->bk, r->capb * sizeof *r->bk);
        r->bv = realloc(r->bv, r->capb * sizeof *r->bv);
        assert_non_null(r->bk);
        assert_non_null(r->bv);
    }
    memmove(r->bk + i + 1, r->bk + i, (r->nb - i) * sizeof *r->bk);
    memmove(r->bv + i + 1, r->bv + i, (r->nb - i) * sizeof *r->bv);
    r->bk[i] = k;
    r->bv[i] = v;
    r->nb++;
    r->count++;
}

static void *ref_del(struct ref *r, uint64_t k)
{
    if (k < SMALL) {
        void *v = r->small[k];
        if (v)
            r->count--;
        r->small[k] = NULL;
        return v;
    }
    int f;
    size_t i = ref_find(r, k, &f);
    if (!f)
        return NULL;
    void *v = r->bv[i];
    memmove(r->bk + i, r->bk + i + 1, (r->nb - i - 1) * sizeof *r->bk);
    memmove(r->bv + i, r->bv + i + 1, (r->nb - i - 1) * sizeof *r->bv);
    r->nb--;
    r->count--;
    return v;
}

/* Iterate the map: every live key exactly once, with the model's value. */
static void check_iter(const struct gfs_u64map *m, const struct ref *r)
{
    uint8_t *seen_small = calloc(SMALL, 1);
    uint8_t *seen_big = calloc(r->nb ? r->nb : 1, 1);
    assert_non_null(seen_small);
    assert_non_null(seen_big);
    size_t it = 0, n = 0;
    uint64_t k;
    void *v;
    while (gfs_u64map_next(m, &it, &k, &v)) {
        n++;
        assert_non_null(v);
        assert_ptr_equal(ref_get(r, k), v);
        if (k < SMALL) {
            assert_int_equal(seen_small[k], 0);
            seen_small[k] = 1;
        } else {
            int f;
            size_t i = ref_find(r, k, &f);
            assert_true(f);
            assert_int_equal(seen_big[i], 0);
            seen_big[i] = 1;
        }
    }
    assert_int_equal(n, r->count);
    assert_int_equal(m->count, r->count);
    /* after the end, next keeps returning 0 */
    assert_int_equal(gfs_u64map_next(m, &it, &k, &v), 0);
    free(seen_small);
    free(seen_big);
}

static uint64_t pick_key(struct ref *r, uint64_t *s)
{
    uint64_t x = rnd(s) % 100;
    if (x < 70)
        return rnd(s) % SMALL;
    if (x < 72)
        return rnd(s) % 2 ? 0 : UINT64_MAX;
    if (x < 85 && r->nb)
        return r->bk[rnd(s) % r->nb]; /* an existing big key */
    uint64_t k = rnd(s);
    return k < SMALL ? k + SMALL : k;
}

static void run_random(uint64_t seed, int iters, int del_pct)
{
    struct gfs_u64map m;
    gfs_u64map_init(&m);
    struct ref *r = calloc(1, sizeof *r);
    assert_non_null(r);
    uint64_t s = seed;
    for (int it = 0; it < iters; it++) {
        uint64_t op = rnd(&s) % 100;
        uint64_t k = pick_key(r, &s);
        if (op < (uint64_t)del_pct) {
            void *want = ref_del(r, k);
            assert_ptr_equal(gfs_u64map_del(&m, k), want);
            assert_null(gfs_u64map_get(&m, k));
        } else if (op < 90) {
            void *v = VAL(1 + rnd(&s) % 60000);
            ref_put(r, k, v);
            assert_int_equal(gfs_u64map_put(&m, k, v), 0);
            assert_ptr_equal(gfs_u64map_get(&m, k), v);
        } else {
            assert_ptr_equal(gfs_u64map_get(&m, k), ref_get(r, k));
        }
        assert_int_equal(m.count, r->count);
        /* invariants of the table itself */
        assert_true(m.used >= m.count);
        assert_true(m.cap == 0 || (m.cap & (m.cap - 1)) == 0);
        assert_true(m.used * 10 < m.cap * 7 || m.cap == 0);
        if (it % 5000 == 4999) {
            check_iter(&m, r);
            /* every model key reads back, every small non-key misses */
            for (uint64_t q = 0; q < SMALL; q++)
                assert_ptr_equal(gfs_u64map_get(&m, q), r->small[q]);
            for (size_t i = 0; i < r->nb; i++)
                assert_ptr_equal(gfs_u64map_get(&m, r->bk[i]), r->bv[i]);
        }
    }
    check_iter(&m, r);
    /* delete everything through the map, then it must be empty */
    for (uint64_t q = 0; q < SMALL; q++)
        assert_ptr_equal(gfs_u64map_del(&m, q), ref_del(r, q));
    while (r->nb) {
        uint64_t k = r->bk[r->nb - 1];
        void *want = ref_del(r, k);
        assert_ptr_equal(gfs_u64map_del(&m, k), want);
    }
    assert_int_equal(m.count, 0);
    check_iter(&m, r);
    gfs_u64map_free(&m);
    free(r->bk);
    free(r->bv);
    free(r);
}

static void test_random_balanced(void **state)
{
    (void)state;
    run_random(88172645463325252ULL, 300000, 40);
}

static void test_random_delete_heavy(void **state)
{
    (void)state;
    /* deletes nearly as often as inserts: the table fills with tombstones */
    run_random(0x9E3779B97F4A7C15ULL, 300000, 50);
}

/* Churn at a constant size: insert/delete the same small key window over and
 * over, so tombstones accumulate and must be reclaimed by rehashing in place
 * instead of letting the table grow without bound or loop forever. */
static void test_tombstone_churn(void **state)
{
    (void)state;
    struct gfs_u64map m;
    gfs_u64map_init(&m);
    for (uint64_t k = 0; k < 100; k++)
        assert_int_equal(gfs_u64map_put(&m, k, VAL(k + 1)), 0);
    size_t cap0 = m.cap;
    uint64_t next = 100;
    for (int it = 0; it < 200000; it++) {
        uint64_t old = next - 100;
        assert_ptr_equal(gfs_u64map_del(&m, old), VAL(old + 1));
        assert_int_equal(gfs_u64map_put(&m, next, VAL(next + 1)), 0);
        next++;
        assert_int_equal(m.count, 100);
    }
    assert_true(m.cap <= 4 * cap0); /* size stays bounded by the live count */
    for (uint64_t k = 0; k < next; k++)
        assert_ptr_equal(gfs_u64map_get(&m, k), k >= next - 100 ? VAL(k + 1) : NULL);
    size_t it = 0, n = 0;
    uint64_t k;
    while (gfs_u64map_next(&m, &it, &k, NULL)) {
        assert_true(k >= next - 100 && k < next);
        n++;
    }
    assert_int_equal(n, 100);
    /* delete a key and re-insert it: it lands once, not twice */
    assert_non_null(gfs_u64map_del(&m, next - 50));
    assert_int_equal(gfs_u64map_put(&m, next - 50, VAL(7)), 0);
    assert_int_equal(gfs_u64map_put(&m, next - 50, VAL(8)), 0);
    assert_int_equal(m.count, 100);
    assert_ptr_equal(gfs_u64map_del(&m, next - 50), VAL(8));
    assert_null(gfs_u64map_get(&m, next - 50));
    gfs_u64map_free(&m);
}

/* Keys whose hashes collide into long probe chains: delete from the middle
 * of a chain and make sure later chain members are still found. */
static void test_chain_delete(void **state)
{
    (void)state;
    struct gfs_u64map m;
    gfs_u64map_init(&m);
    /* sequential keys, big table: many neighbours in the probe sequence */
    for (uint64_t k = 0; k < 20000; k++)
        assert_int_equal(gfs_u64map_put(&m, k << 32, VAL(k + 1)), 0);
    for (uint64_t k = 0; k < 20000; k += 2)
        assert_ptr_equal(gfs_u64map_del(&m, k << 32), VAL(k + 1));
    for (uint64_t k = 0; k < 20000; k++)
        assert_ptr_equal(gfs_u64map_get(&m, k << 32), (k & 1) ? VAL(k + 1) : NULL);
    for (uint64_t k = 0; k < 20000; k += 2)
        assert_int_equal(gfs_u64map_put(&m, k << 32, VAL(k + 2)), 0);
    for (uint64_t k = 0; k < 20000; k++)
        assert_ptr_equal(gfs_u64map_get(&m, k << 32), (k & 1) ? VAL(k + 1) : VAL(k + 2));
    assert_int_equal(m.count, 20000);
    gfs_u64map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_extreme_keys),
        cmocka_unit_test(test_random_balanced),
        cmocka_unit_test(test_random_delete_heavy),
        cmocka_unit_test(test_tombstone_churn),
        cmocka_unit_test(test_chain_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
