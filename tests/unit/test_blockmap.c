/*
 * test_blockmap.c — the block map and segment table: never-written blocks are
 * NONE, entries read back, live bytes move between segments when a block is
 * re-pointed (also to/from holes), written_blocks counts entries != NONE,
 * grow keeps entries, out-of-range sets fail, segments must arrive in
 * (epoch, seq) order and seg_find bisects hundreds of them. A random run
 * checks everything against a plain array model. The packed 16-byte form:
 * values at the edges of each packed field read back exactly (the ones past
 * an edge through the overflow table, which empties again when they are
 * replaced), a 1 PiB volume written at three places allocates three pages,
 * and a densely written map costs <= 16 bytes per block plus its segments.
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
    size_t mem0 = gfs_bm_mem_bytes(&bm);
    assert_int_equal(gfs_bm_set(&bm, 5, &none), 0);
    assert_int_equal(bm.pages, 0);
    assert_int_equal(gfs_bm_mem_bytes(&bm), mem0);
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

static void check_model(struct gfs_blockmap *bm, const struct gfs_bm_entry *m, uint64_t nb,
                        uint32_t nseg)
{
    uint64_t *live = calloc(nseg + 1, sizeof *live), written = 0;
    assert_non_null(live);
    for (uint64_t q = 0; q < nb; q++) {
        assert_entry_eq(gfs_bm_get(bm, q), m[q]);
        if (m[q].seg != GFS_BM_NONE)
            written++;
        if (m[q].seg != GFS_BM_NONE && m[q].seg != GFS_BM_HOLE)
            live[m[q].seg] += m[q].length;
    }
    assert_int_equal(bm->written_blocks, written);
    for (uint32_t i = 1; i <= nseg; i++)
        assert_int_equal(bm->segs[i].live_bytes, live[i]);
    /* iteration visits exactly the written blocks, in order */
    uint64_t seen = 0, prev = 0;
    struct gfs_bm_entry e;
    for (uint64_t b = 0; gfs_bm_next(bm, &b, &e); b++) {
        assert_true(seen == 0 || b > prev);
        assert_true(b < nb);
        assert_int_not_equal(m[b].seg, GFS_BM_NONE);
        assert_entry_eq(e, m[b]);
        prev = b;
        seen++;
    }
    assert_int_equal(seen, written);
    assert_true(gfs_bm_overflow_count(bm) <= written);
    free(live);
}

/* Every packed field at and past its edge. */
static void test_pack_edges(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 64), 0);
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 1, 0), 1);
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 2, 0), 2);
    const uint64_t base = 1000000000000ull;
    struct gfs_bm_entry v[] = {
        /* the first entry of segment 1 sets its base */
        {.seg = 1, .offset = 0, .length = 1, .crc = 1, .flags = 0, .write_seq = base},
        {.seg = 1, .offset = (1u << 23) - 1, .length = (1u << 18) - 1, .crc = 0xffffffffu,
         .flags = 6, .write_seq = base + (1u << 20) - 1},
        {.seg = 1, .offset = 77, .length = 4096, .crc = 2, .flags = 2,
         .write_seq = base - (1u << 20)},
        /* one past each edge: overflow */
        {.seg = 1, .offset = 1u << 23, .length = 4096, .crc = 3, .flags = 4, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 1u << 18, .crc = 4, .flags = 0, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 0, .crc = 5, .flags = 0, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 6, .flags = 1, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 7, .flags = 8, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 8, .flags = 0, .write_seq = base + (1u << 20)},
        {.seg = 1, .offset = 5, .length = 9, .crc = 9, .flags = 0,
         .write_seq = base - (1u << 20) - 1},
        {.seg = 1, .offset = 5, .length = 9, .crc = 9, .flags = 0, .write_seq = 0},
        {.seg = 2, .offset = 5, .length = 9, .crc = 10, .flags = 0, .write_seq = UINT64_MAX},
        {.seg = 2, .offset = 6, .length = 9, .crc = 11, .flags = 2, .write_seq = 0},
        /* a segment index that is not in the table, and the reserved one */
        {.seg = 3, .offset = 5, .length = 9, .crc = 12, .flags = 0, .write_seq = 1},
        {.seg = GFS_BM_HOLE - 1, .offset = 5, .length = 9, .crc = 13, .flags = 0, .write_seq = 1},
        /* holes: any write_seq packs; other fields set do not */
        {.seg = GFS_BM_HOLE, .write_seq = UINT64_MAX},
        {.seg = GFS_BM_HOLE, .write_seq = 0},
        {.seg = GFS_BM_HOLE, .write_seq = 0x123456789abcdefull},
        {.seg = GFS_BM_HOLE, .flags = 1, .write_seq = 5},
        {.seg = GFS_BM_HOLE, .crc = 1, .write_seq = 5},
    };
    /* write_seq deltas are modular: 0 is one past UINT64_MAX */
    const int packs[] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0};
    enum { NV = sizeof v / sizeof v[0] };
    _Static_assert(sizeof packs / sizeof packs[0] == NV, "one expectation per value");
    size_t over = 0;
    for (int i = 0; i < NV; i++) {
        assert_int_equal(gfs_bm_set(&bm, (uint64_t)i, &v[i]), 0);
        over += !packs[i];
        assert_int_equal(gfs_bm_overflow_count(&bm), over);
    }
    for (int i = 0; i < NV; i++)
        assert_entry_eq(gfs_bm_get(&bm, (uint64_t)i), v[i]);
    assert_int_equal(bm.segs[1].ws_base, base);
    assert_int_equal(bm.segs[2].ws_base, UINT64_MAX);
    /* replacing an overflowed entry by a packable one empties the table */
    for (int i = 0; i < NV; i++) {
        struct gfs_bm_entry h = {.seg = GFS_BM_HOLE, .write_seq = (uint64_t)i};
        assert_int_equal(gfs_bm_set(&bm, (uint64_t)i, &h), 0);
        assert_entry_eq(gfs_bm_get(&bm, (uint64_t)i), h);
    }
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
    assert_int_equal(bm.segs[1].live_bytes, 0);
    assert_int_equal(bm.segs[2].live_bytes, 0);
    assert_int_equal(bm.written_blocks, NV);
    gfs_bm_free(&bm);
}

/* A 1 PiB volume (2^33 blocks of 128 KiB) allocates only where written. */
static void test_sparse_huge(void **state)
{
    (void)state;
    const uint64_t nb = (1ull << 50) / (128 * 1024);
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, nb), 0);
    size_t empty = gfs_bm_mem_bytes(&bm);
    assert_true(empty <= 64 * 1024); /* the top directory (32 KiB) and the segment table */
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 1, 0), 1);
    const uint64_t at[] = {0, nb / 2 + 12345, nb - 1};
    for (int i = 0; i < 3; i++) {
        struct gfs_bm_entry e = ent(1, 100 * (uint32_t)i, 4000, 42 + (uint64_t)i);
        e.flags = 2;
        assert_int_equal(gfs_bm_set(&bm, at[i], &e), 0);
    }
    assert_int_equal(bm.pages, 3);
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
    assert_true(gfs_bm_mem_bytes(&bm) <= empty + 3 * (64 * 1024 + 4096));
    assert_int_equal(bm.written_blocks, 3);
    uint64_t b = 0;
    struct gfs_bm_entry e;
    for (int i = 0; i < 3; i++, b++) {
        assert_int_equal(gfs_bm_next(&bm, &b, &e), 1);
        assert_int_equal(b, at[i]);
        assert_int_equal(e.offset, 100 * (uint32_t)i);
        assert_int_equal(e.write_seq, 42 + (uint64_t)i);
    }
    assert_int_equal(gfs_bm_next(&bm, &b, &e), 0);
    assert_int_equal(gfs_bm_get(&bm, 1).seg, GFS_BM_NONE);
    assert_int_equal(gfs_bm_get(&bm, nb - 2).seg, GFS_BM_NONE);
    assert_int_equal(gfs_bm_set(&bm, nb, &e), -EINVAL);
    gfs_bm_free(&bm);
}

/* Dense writes as the syncer makes them (25 blocks per segment, zstd, close
 * write_seqs): nothing overflows and the map costs <= 16 bytes per block
 * plus the segment table. */
static void test_memory_dense(void **state)
{
    (void)state;
    enum { NB = 16 * GFS_BM_CHUNK, PER = 25 };
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, NB), 0);
    size_t empty = gfs_bm_mem_bytes(&bm);
    uint64_t s = 77, ws = 5000000;
    for (uint64_t b0 = 0; b0 < NB; b0 += PER) {
        int64_t si = gfs_bm_seg_add(&bm, 1, b0 / PER + 1, 0);
        assert_true(si >= 1);
        uint32_t off = 200;
        for (uint64_t b = b0; b < b0 + PER && b < NB; b++) {
            uint32_t len = 3000 + (uint32_t)(rnd(&s) % 128000);
            struct gfs_bm_entry e = {.seg = (uint32_t)si, .offset = off, .length = len,
                                     .crc = (uint32_t)rnd(&s), .flags = 2,
                                     .write_seq = ws - rnd(&s) % 5000};
            ws += 1 + rnd(&s) % 100;
            off += len;
            assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
        }
    }
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
    assert_int_equal(bm.written_blocks, NB);
    size_t used = gfs_bm_mem_bytes(&bm) - empty;
    size_t segs = (size_t)bm.segcap * sizeof *bm.segs;
    assert_true(used - segs + 64 * sizeof *bm.segs <= 16 * (size_t)NB + 4096);
    /* the whole: entries, directory and segments, with the table's doubling slack */
    assert_true(used <= 16 * (size_t)NB + 2 * (NB / PER + 2) * sizeof *bm.segs + 4096);
    gfs_bm_free(&bm);
}

/* Random sets of packable and unpackable entries against a model. */
static void test_random_model_wide(void **state)
{
    (void)state;
    enum { NB = 2 * GFS_BM_CHUNK + 7, NSEG = 30 };
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, NB), 0);
    for (int i = 1; i <= NSEG; i++)
        assert_int_equal(gfs_bm_seg_add(&bm, 2, (uint64_t)i, 0), i);
    struct gfs_bm_entry *m = calloc(NB, sizeof *m);
    assert_non_null(m);
    uint64_t s = 0x1234567ULL;
    for (int it = 0; it < 100000; it++) {
        uint64_t b = rnd(&s) % NB, k = rnd(&s) % 8;
        struct gfs_bm_entry e = {0};
        if (k == 1) {
            e = (struct gfs_bm_entry){.seg = GFS_BM_HOLE, .write_seq = rnd(&s)};
        } else if (k >= 2) {
            uint64_t r = rnd(&s);
            e.seg = 1 + (uint32_t)(r % NSEG);
            e.offset = (uint32_t)(rnd(&s) % ((r >> 8) & 1 ? 1u << 24 : 1u << 22));
            e.length = (uint32_t)(rnd(&s) % ((r >> 9) & 1 ? 1u << 19 : 1u << 17));
            e.crc = (uint32_t)rnd(&s);
            e.flags = (uint32_t)((r >> 10) & 7) & ((r >> 13) & 1 ? 7u : 6u);
            e.write_seq = (r >> 14) & 1 ? rnd(&s) : 1000000000 + rnd(&s) % (1u << 21);
        }
        assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
        m[b] = e;
        if (it % 25000 == 24999)
            check_model(&bm, m, NB, NSEG);
    }
    check_model(&bm, m, NB, NSEG);
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
        cmocka_unit_test(test_pack_edges),
        cmocka_unit_test(test_sparse_huge),
        cmocka_unit_test(test_memory_dense),
        cmocka_unit_test(test_random_model_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
