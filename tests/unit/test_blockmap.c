/*
 * test_blockmap.c — the block map and segment table: never-written blocks are
 * NONE, entries read back, live bytes move between segments when a block is
 * re-pointed (also to/from holes), written_blocks counts entries != NONE,
 * grow keeps entries, out-of-range sets fail, segments must arrive in
 * (epoch, seq) order and seg_find bisects hundreds of them. A random run
 * checks everything against a plain array model.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "blockmap.h"

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static struct gfs_bm_entry ent(uint32_t seg, uint32_t off, uint32_t len, uint64_t wseq)
{
    struct gfs_bm_entry e = {.seg = seg, .offset = off, .length = len, .crc = off ^ len ^ 0x5a5a,
                             .flags = seg & 3, .write_seq = wseq};
    return e;
}

static void assert_entry_eq(struct gfs_bm_entry a, struct gfs_bm_entry b)
{
    assert_int_equal(a.seg, b.seg);
    assert_int_equal(a.offset, b.offset);
    assert_int_equal(a.length, b.length);
    assert_int_equal(a.crc, b.crc);
    assert_int_equal(a.flags, b.flags);
    assert_int_equal(a.write_seq, b.write_seq);
}

static void test_never_written(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 10000), 0);
    assert_int_equal(bm.nblocks, 10000);
    assert_int_equal(bm.written_blocks, 0);
    struct gfs_bm_entry none = {0};
    for (uint64_t b = 0; b < 10000; b += 37)
        assert_entry_eq(gfs_bm_get(&bm, b), none);
    assert_entry_eq(gfs_bm_get(&bm, 9999), none);
    /* beyond the end reads as NONE, too */
    assert_entry_eq(gfs_bm_get(&bm, 10000), none);
    assert_entry_eq(gfs_bm_get(&bm, UINT64_MAX), none);
    /* setting NONE on an unallocated chunk allocates nothing */
    assert_int_equal(gfs_bm_set(&bm, 5, &none), 0);
    assert_null(bm.chunks[0]);
    assert_int_equal(bm.written_blocks, 0);
    gfs_bm_free(&bm);

    /* an empty map */
    assert_int_equal(gfs_bm_init(&bm, 0), 0);
    assert_int_equal(bm.nblocks, 0);
    struct gfs_bm_entry e = ent(0, 0, 0, 0);
    assert_int_equal(gfs_bm_set(&bm, 0, &e), -EINVAL);
    gfs_bm_free(&bm);
}

static void test_set_get_live(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 3 * GFS_BM_CHUNK + 5), 0);
    int64_t s1 = gfs_bm_seg_add(&bm, 1, 1, 100000);
    int64_t s2 = gfs_bm_seg_add(&bm, 1, 2, 200000);
    assert_int_equal(s1, 1);
    assert_int_equal(s2, 2);
    assert_int_equal(bm.segs[s1].total_bytes, 100000);
    assert_int_equal(bm.segs[s2].total_bytes, 200000);
    assert_int_equal(bm.segs[s1].live_bytes, 0);

    struct gfs_bm_entry a = ent(1, 64, 4000, 7);
    assert_int_equal(gfs_bm_set(&bm, 10, &a), 0);
    assert_entry_eq(gfs_bm_get(&bm, 10), a);
    assert_int_equal(bm.segs[1].live_bytes, 4000);
    assert_int_equal(bm.written_blocks, 1);

    /* a second block in the same segment */
    struct gfs_bm_entry b = ent(1, 4064, 1000, 8);
    assert_int_equal(gfs_bm_set(&bm, GFS_BM_CHUNK + 1, &b), 0);
    assert_int_equal(bm.segs[1].live_bytes, 5000);
    assert_int_equal(bm.written_blocks, 2);

    /* re-point block 10 to segment 2: its bytes move */
    struct gfs_bm_entry c = ent(2, 0, 3000, 9);
    assert_int_equal(gfs_bm_set(&bm, 10, &c), 0);
    assert_entry_eq(gfs_bm_get(&bm, 10), c);
    assert_int_equal(bm.segs[1].live_bytes, 1000);
    assert_int_equal(bm.segs[2].live_bytes, 3000);
    assert_int_equal(bm.written_blocks, 2);

    /* overwrite within the same segment with a different length */
    struct gfs_bm_entry c2 = ent(2, 3000, 500, 10);
    assert_int_equal(gfs_bm_set(&bm, 10, &c2), 0);
    assert_int_equal(bm.segs[2].live_bytes, 500);

    /* a hole: written (not NONE) but holds no segment bytes */
    struct gfs_bm_entry hole = {.seg = GFS_BM_HOLE, .write_seq = 11};
    assert_int_equal(gfs_bm_set(&bm, 10, &hole), 0);
    assert_int_equal(gfs_bm_get(&bm, 10).seg, GFS_BM_HOLE);
    assert_int_equal(bm.segs[2].live_bytes, 0);
    assert_int_equal(bm.segs[1].live_bytes, 1000);
    assert_int_equal(bm.written_blocks, 2);
    /* a hole on a never-written block counts as written */
    assert_int_equal(gfs_bm_set(&bm, 3 * GFS_BM_CHUNK + 4, &hole), 0);
    assert_int_equal(bm.written_blocks, 3);
    /* hole -> data */
    struct gfs_bm_entry d = ent(2, 100, 2048, 12);
    assert_int_equal(gfs_bm_set(&bm, 10, &d), 0);
    assert_int_equal(bm.segs[2].live_bytes, 2048);
    assert_int_equal(bm.written_blocks, 3);

    /* back to NONE: written count and live bytes drop */
    struct gfs_bm_entry none = {0};
    assert_int_equal(gfs_bm_set(&bm, 10, &none), 0);
    assert_int_equal(bm.segs[2].live_bytes, 0);
    assert_int_equal(bm.written_blocks, 2);
    assert_entry_eq(gfs_bm_get(&bm, 10), none);
    assert_int_equal(gfs_bm_set(&bm, 3 * GFS_BM_CHUNK + 4, &none), 0);
    assert_int_equal(bm.written_blocks, 1);

    /* out of range */
    assert_int_equal(gfs_bm_set(&bm, 3 * GFS_BM_CHUNK + 5, &a), -EINVAL);
    assert_int_equal(gfs_bm_set(&bm, UINT64_MAX, &a), -EINVAL);
    assert_int_equal(bm.segs[1].live_bytes, 1000);
    assert_int_equal(bm.written_blocks, 1);
    gfs_bm_free(&bm);
}

static void test_grow(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    uint64_t n0 = GFS_BM_CHUNK + 10; /* ends inside the second chunk */
    assert_int_equal(gfs_bm_init(&bm, n0), 0);
    assert_int_equal(gfs_bm_seg_add(&bm, 0, 1, 1 << 20), 1);
    for (uint64_t b = 0; b < n0; b += 97) {
        struct gfs_bm_entry e = ent(1, (uint32_t)b, 512, b);
        assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
    }
    struct gfs_bm_entry last = ent(1, 7, 512, 1);
    assert_int_equal(gfs_bm_set(&bm, n0 - 1, &last), 0);
    uint64_t written = bm.written_blocks;
    /* the block just past the end is refused before growing */
    struct gfs_bm_entry x = ent(1, 9, 512, 2);
    assert_int_equal(gfs_bm_set(&bm, n0, &x), -EINVAL);
    assert_entry_eq(gfs_bm_get(&bm, n0), (struct gfs_bm_entry){0});

    /* shrinking is refused and changes nothing */
    assert_int_equal(gfs_bm_grow(&bm, n0 - 1), -EINVAL);
    assert_int_equal(bm.nblocks, n0);

    /* same size is fine; growing within a chunk, then across many */
    assert_int_equal(gfs_bm_grow(&bm, n0), 0);
    assert_int_equal(gfs_bm_grow(&bm, n0 + 5), 0);
    assert_int_equal(gfs_bm_set(&bm, n0, &x), 0);
    assert_int_equal(gfs_bm_grow(&bm, 40 * (uint64_t)GFS_BM_CHUNK + 3), 0);
    assert_int_equal(bm.nblocks, 40 * (uint64_t)GFS_BM_CHUNK + 3);
    for (uint64_t b = 0; b < n0; b += 97)
        assert_entry_eq(gfs_bm_get(&bm, b), ent(1, (uint32_t)b, 512, b));
    assert_entry_eq(gfs_bm_get(&bm, n0 - 1), last);
    assert_entry_eq(gfs_bm_get(&bm, n0), x);
    assert_int_equal(bm.written_blocks, written + 1);
    /* new area: NONE, and settable up to the new end only */
    assert_entry_eq(gfs_bm_get(&bm, 40 * (uint64_t)GFS_BM_CHUNK + 2), (struct gfs_bm_entry){0});
    assert_int_equal(gfs_bm_set(&bm, 40 * (uint64_t)GFS_BM_CHUNK + 2, &x), 0);
    assert_int_equal(gfs_bm_set(&bm, 40 * (uint64_t)GFS_BM_CHUNK + 3, &x), -EINVAL);
    assert_entry_eq(gfs_bm_get(&bm, 40 * (uint64_t)GFS_BM_CHUNK + 2), x);
    assert_int_equal(bm.segs[1].live_bytes, 512 * bm.written_blocks);
    gfs_bm_free(&bm);
}

static void test_seg_order(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 16), 0);
    assert_int_equal(gfs_bm_seg_find(&bm, 0, 0), -ENOENT);
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 5, 10), 1);
    /* the same key again: found, not re-added, total unchanged */
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 5, 99), 1);
    assert_int_equal(bm.nsegs, 2);
    assert_int_equal(bm.segs[1].total_bytes, 10);
    /* out of order: smaller seq in the same epoch, smaller epoch */
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 4, 10), -EINVAL);
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 100, 10), -EINVAL);
    assert_int_equal(bm.nsegs, 2);
    /* in order: larger seq, larger epoch with a smaller seq */
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 6, 10), 2);
    assert_int_equal(gfs_bm_seg_add(&bm, 3, 0, 10), 3);
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 7, 10), -EINVAL);
    /* an older one already present is still found by add */
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 6, 10), 2);
    assert_int_equal(gfs_bm_seg_find(&bm, 2, 5), 1);
    assert_int_equal(gfs_bm_seg_find(&bm, 2, 6), 2);
    assert_int_equal(gfs_bm_seg_find(&bm, 3, 0), 3);
    assert_int_equal(gfs_bm_seg_find(&bm, 2, 7), -ENOENT);
    assert_int_equal(gfs_bm_seg_find(&bm, 0, 0), -ENOENT);
    assert_int_equal(gfs_bm_seg_find(&bm, UINT64_MAX, UINT64_MAX), -ENOENT);
    gfs_bm_free(&bm);
}

static void test_seg_find_many(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 1), 0);
    enum { N = 777 }; /* past several doublings of the initial 64 */
    uint64_t ep[N + 1], sq[N + 1];
    uint64_t s = 12345, e = 1, q = 0;
    for (int i = 1; i <= N; i++) {
        if (rnd(&s) % 5 == 0) {
            e += 1 + rnd(&s) % 3;
            q = rnd(&s) % 4;
        } else {
            q += 1 + rnd(&s) % 3;
        }
        if (i == N) {
            e = UINT64_MAX;
            q = UINT64_MAX;
        }
        ep[i] = e;
        sq[i] = q;
        assert_int_equal(gfs_bm_seg_add(&bm, e, q, (uint64_t)i * 10), i);
    }
    assert_int_equal(bm.nsegs, N + 1);
    for (int i = 1; i <= N; i++) {
        assert_int_equal(gfs_bm_seg_find(&bm, ep[i], sq[i]), i);
        assert_int_equal(bm.segs[i].total_bytes, (uint64_t)i * 10);
        /* keys between neighbours are absent */
        if (i < N && ep[i] == ep[i + 1] && sq[i] + 1 < sq[i + 1])
            assert_int_equal(gfs_bm_seg_find(&bm, ep[i], sq[i] + 1), -ENOENT);
        if (i < N && ep[i] + 1 < ep[i + 1])
            assert_int_equal(gfs_bm_seg_find(&bm, ep[i] + 1, 0), -ENOENT);
        if (sq[i] > 0 && (i == 1 || ep[i - 1] != ep[i] || sq[i - 1] < sq[i] - 1))
            assert_int_equal(gfs_bm_seg_find(&bm, ep[i], sq[i] - 1), -ENOENT);
    }
    assert_int_equal(gfs_bm_seg_find(&bm, 0, 0), -ENOENT);
    assert_int_equal(gfs_bm_seg_find(&bm, ep[1], sq[1] + 1000000), -ENOENT);
    gfs_bm_free(&bm);
}

/* Random sets against a model: entries, written count and per-segment live
 * bytes recomputed from scratch must match. */
static void test_random_model(void **state)
{
    (void)state;
    enum { NB = 3 * GFS_BM_CHUNK + 100, NSEG = 40 };
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, NB), 0);
    for (int i = 1; i <= NSEG; i++)
        assert_int_equal(gfs_bm_seg_add(&bm, 1, (uint64_t)i, 1 << 22), i);
    struct gfs_bm_entry *m = calloc(NB, sizeof *m);
    assert_non_null(m);
    uint64_t s = 0xdeadbeefcafeULL;
    for (int it = 0; it < 200000; it++) {
        uint64_t b = rnd(&s) % NB;
        uint64_t k = rnd(&s) % 10;
        struct gfs_bm_entry e;
        if (k == 0)
            e = (struct gfs_bm_entry){0};
        else if (k == 1)
            e = (struct gfs_bm_entry){.seg = GFS_BM_HOLE, .write_seq = (uint64_t)it};
        else
            e = ent(1 + (uint32_t)(rnd(&s) % NSEG), (uint32_t)(rnd(&s) % 100000),
                    1 + (uint32_t)(rnd(&s) % 131072), (uint64_t)it);
        assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
        m[b] = e;
        if (it % 20000 == 19999 || it == 0) {
            uint64_t live[NSEG + 1] = {0}, written = 0;
            for (uint64_t q = 0; q < NB; q++) {
                assert_entry_eq(gfs_bm_get(&bm, q), m[q]);
                if (m[q].seg != GFS_BM_NONE)
                    written++;
                if (m[q].seg != GFS_BM_NONE && m[q].seg != GFS_BM_HOLE)
                    live[m[q].seg] += m[q].length;
            }
            assert_int_equal(bm.written_blocks, written);
            for (int i = 1; i <= NSEG; i++)
                assert_int_equal(bm.segs[i].live_bytes, live[i]);
        }
    }
    free(m);
    gfs_bm_free(&bm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_written),
        cmocka_unit_test(test_set_get_live),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_seg_order),
        cmocka_unit_test(test_seg_find_many),
        cmocka_unit_test(test_random_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
