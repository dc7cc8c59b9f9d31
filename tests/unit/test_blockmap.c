/*
 * test_blockmap.c — the block map and segment table: never-written blocks are
 * NONE, entries read back, live bytes move between segments when a block is
 * re-pointed (also to/from holes), written_blocks counts entries != NONE,
 * grow keeps entries, out-of-range sets fail, segments must arrive in
 * (epoch, seq) order and seg_find bisects hundreds of them. A random run
 * checks everything against a plain array model. The packed 12-byte form:
 * values at the edges of each packed field read back exactly (the ones past
 * an edge through the overflow table, which empties again when they are
 * replaced), the map keeps no CRC for payloads with a CRC trailer and keeps
 * it in a side page for those without (a dense legacy map <= 16 B per
 * block, renumbered by reclaim with its mark intact), a 1 PiB
 * volume written at three places allocates three pages, and a densely
 * written map costs <= 12 bytes per block plus its segments.
 * The 40-byte segment row: its fields at their edges, absurd sizes refused.
 * Reclaim of deleted segments' rows: a random run of adds, sets (packed,
 * overflow, zero-length), deletes and reclaims against a model that names
 * segments by (epoch, seq), so every renumbered entry, live count and
 * bisection is checked; the thresholds, the newest row of an epoch kept,
 * and the table given back.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "blockmap.h"
#include "segment.h"

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
    /* a payload with a trailer checks itself: the map drops its CRC */
    assert_int_equal(a.crc, (b.flags & GFS_SEGF_TRAILER) ? 0 : b.crc);
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
    enum { T = GFS_SEGF_TRAILER };
    struct gfs_bm_entry v[] = {
        /* the first entry of segment 1 sets its base */
        {.seg = 1, .offset = 0, .length = 1, .crc = 1, .flags = T, .write_seq = base},
        {.seg = 1, .offset = (1u << 23) - 1, .length = (1u << 18) - 1, .crc = 0xffffffffu,
         .flags = 6 | T, .write_seq = base + (1u << 20) - 1},
        {.seg = 1, .offset = 77, .length = 4096, .crc = 2, .flags = 2 | T,
         .write_seq = base - (1u << 20)},
        /* one past each edge: overflow */
        {.seg = 1, .offset = 1u << 23, .length = 4096, .crc = 3, .flags = 4 | T, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 1u << 18, .crc = 4, .flags = T, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 0, .crc = 5, .flags = T, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 6, .flags = 1 | T, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 7, .flags = 16 | T, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 8, .flags = T, .write_seq = base + (1u << 20)},
        {.seg = 1, .offset = 5, .length = 9, .crc = 9, .flags = T,
         .write_seq = base - (1u << 20) - 1},
        {.seg = 1, .offset = 5, .length = 9, .crc = 9, .flags = T, .write_seq = 0},
        /* a write_seq of 2^46 or more cannot be a base; the next one sets it */
        {.seg = 2, .offset = 5, .length = 9, .crc = 10, .flags = T, .write_seq = UINT64_MAX},
        {.seg = 2, .offset = 6, .length = 9, .crc = 11, .flags = 2 | T, .write_seq = 0},
        /* a segment index that is not in the table, and the reserved one */
        {.seg = 3, .offset = 5, .length = 9, .crc = 12, .flags = T, .write_seq = 1},
        {.seg = GFS_BM_HOLE - 1, .offset = 5, .length = 9, .crc = 13, .flags = T, .write_seq = 1},
        /* holes: any write_seq packs; other fields set do not */
        {.seg = GFS_BM_HOLE, .write_seq = UINT64_MAX},
        {.seg = GFS_BM_HOLE, .write_seq = 0},
        {.seg = GFS_BM_HOLE, .write_seq = 0x123456789abcdefull},
        {.seg = GFS_BM_HOLE, .flags = 1, .write_seq = 5},
        {.seg = GFS_BM_HOLE, .crc = 1, .write_seq = 5},
        /* no trailer (a segment written before it existed): packs too, its
         * CRC kept in the side page; past an edge it overflows with it */
        {.seg = 1, .offset = 5, .length = 9, .crc = 14, .flags = 0, .write_seq = base},
        {.seg = 2, .offset = 7, .length = 4096, .crc = 0xfedcba98u, .flags = 6, .write_seq = 1},
        {.seg = 1, .offset = (1u << 23) - 1, .length = (1u << 18) - 1, .crc = 0xffffffffu,
         .flags = 2, .write_seq = base - (1u << 20)},
        {.seg = 1, .offset = 1u << 23, .length = 9, .crc = 16, .flags = 0, .write_seq = base},
        {.seg = 1, .offset = 5, .length = 9, .crc = 17, .flags = 0, .write_seq = base + (1u << 20)},
    };
    const int packs[] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0,
                         1, 1, 1, 0, 0};
    enum { NV = sizeof v / sizeof v[0] };
    _Static_assert(sizeof packs / sizeof packs[0] == NV, "one expectation per value");
    size_t over = 0, legacy = 0;
    for (int i = 0; i < NV; i++) {
        assert_int_equal(gfs_bm_set(&bm, (uint64_t)i, &v[i]), 0);
        over += !packs[i];
        legacy += packs[i] && v[i].seg != GFS_BM_HOLE && !(v[i].flags & T);
        assert_int_equal(gfs_bm_overflow_count(&bm), over);
        assert_int_equal(gfs_bm_legacy_count(&bm), legacy);
    }
    assert_int_equal(legacy, 3);
    for (int i = 0; i < NV; i++)
        assert_entry_eq(gfs_bm_get(&bm, (uint64_t)i), v[i]);
    assert_int_equal(gfs_bm_seg_ws_base(&bm.segs[1]), base);
    assert_int_equal(gfs_bm_seg_ws_base(&bm.segs[2]), 0);
    /* replacing an overflowed entry by a packable one empties the table */
    for (int i = 0; i < NV; i++) {
        struct gfs_bm_entry h = {.seg = GFS_BM_HOLE, .write_seq = (uint64_t)i};
        assert_int_equal(gfs_bm_set(&bm, (uint64_t)i, &h), 0);
        assert_entry_eq(gfs_bm_get(&bm, (uint64_t)i), h);
    }
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
    assert_int_equal(gfs_bm_legacy_count(&bm), 0);
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
        e.flags = GFS_SEGF_ZSTD | GFS_SEGF_TRAILER;
        assert_int_equal(gfs_bm_set(&bm, at[i], &e), 0);
    }
    assert_int_equal(bm.pages, 3);
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
    assert_true(gfs_bm_mem_bytes(&bm) <= empty + 3 * (48 * 1024 + 4096));
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

enum { DENSE_NB = 16 * GFS_BM_CHUNK, DENSE_PER = 25 };

/* Fill a map of DENSE_NB blocks as the syncer does (DENSE_PER blocks per
 * segment, zstd, close write_seqs) with entry flags `flags`; each entry
 * reads back as set. Returns the bytes the map grew by. */
static size_t fill_dense(struct gfs_blockmap *bm, uint32_t flags, uint64_t seed)
{
    assert_int_equal(gfs_bm_init(bm, DENSE_NB), 0);
    size_t empty = gfs_bm_mem_bytes(bm);
    uint64_t s = seed, ws = 5000000;
    for (uint64_t b0 = 0; b0 < DENSE_NB; b0 += DENSE_PER) {
        int64_t si = gfs_bm_seg_add(bm, 1, b0 / DENSE_PER + 1, 0);
        assert_true(si >= 1);
        uint32_t off = 200;
        for (uint64_t b = b0; b < b0 + DENSE_PER && b < DENSE_NB; b++) {
            uint32_t len = 3000 + (uint32_t)(rnd(&s) % 128000);
            struct gfs_bm_entry e = {.seg = (uint32_t)si, .offset = off, .length = len,
                                     .crc = (uint32_t)rnd(&s), .flags = flags,
                                     .write_seq = ws - rnd(&s) % 5000};
            ws += 1 + rnd(&s) % 100;
            off += len;
            assert_int_equal(gfs_bm_set(bm, b, &e), 0);
            assert_entry_eq(gfs_bm_get(bm, b), e);
        }
    }
    assert_int_equal(gfs_bm_overflow_count(bm), 0);
    assert_int_equal(bm->written_blocks, DENSE_NB);
    return gfs_bm_mem_bytes(bm) - empty;
}

/* Dense writes with CRC trailers, as written now: nothing overflows and the
 * map costs <= 12 bytes per block plus the segment table. */
static void test_memory_dense(void **state)
{
    (void)state;
    enum { NB = DENSE_NB, PER = DENSE_PER };
    struct gfs_blockmap bm;
    size_t used = fill_dense(&bm, GFS_SEGF_ZSTD | GFS_SEGF_TRAILER, 77);
    assert_int_equal(gfs_bm_legacy_count(&bm), 0);
    size_t segs = (size_t)bm.segcap * sizeof *bm.segs;
    assert_true(used - segs + 64 * sizeof *bm.segs <= 12 * (size_t)NB + 4096);
    /* the whole: entries, directory and segments, with the table's growth slack */
    assert_true(used <= 12 * (size_t)NB + 3 * (NB / PER + 2) * sizeof *bm.segs / 2 + 4096);
    gfs_bm_free(&bm);
}

/* The same map written before segments had CRC trailers: every entry packs,
 * its CRC in a side page, <= 16 bytes per block plus the segment table (as
 * the map cost before the trailer); replacing them by entries with a
 * trailer (compaction's copies) leaves none counted as legacy. */
static void test_memory_dense_legacy(void **state)
{
    (void)state;
    enum { NB = DENSE_NB };
    struct gfs_blockmap bm;
    size_t used = fill_dense(&bm, GFS_SEGF_ZSTD, 78);
    assert_int_equal(gfs_bm_legacy_count(&bm), NB);
    size_t segs = (size_t)bm.segcap * sizeof *bm.segs;
    assert_true(used - segs + 64 * sizeof *bm.segs <= 16 * (size_t)NB + 3 * 4096);
    /* compaction moves them into segments with trailers */
    int64_t si = gfs_bm_seg_add(&bm, 2, 1, 0);
    assert_true(si >= 1);
    for (uint64_t b = 0; b < NB; b++) {
        struct gfs_bm_entry e = gfs_bm_get(&bm, b);
        e.seg = (uint32_t)si;
        e.offset = (uint32_t)(b % 25) * 140000u;
        e.flags |= GFS_SEGF_TRAILER;
        if (b % 25 == 0 && b) {
            si = gfs_bm_seg_add(&bm, 2, b + 1, 0);
            assert_true(si >= 1);
            e.seg = (uint32_t)si;
        }
        assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
        assert_entry_eq(gfs_bm_get(&bm, b), e);
    }
    assert_int_equal(gfs_bm_legacy_count(&bm), 0);
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
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
            e.flags |= (r >> 15) % 4 ? GFS_SEGF_TRAILER : 0; /* mostly, as written now */
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

/* The 48-byte row: narrow fields hold their largest values without
 * touching their neighbours; live bytes stop at GFS_BM_SEG_MAX_BYTES, and
 * the compactor's live_bytes * 100 is exact there; absurd sizes are 0. */
static void test_seg_row(void **state)
{
    (void)state;
    assert_int_equal(sizeof(struct gfs_bm_seg), 48);
    enum { NB = 16384 + 4 };
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, NB), 0);
    int64_t si = gfs_bm_seg_add(&bm, UINT64_MAX - 1, UINT64_MAX - 2, GFS_BM_SEG_MAX_BYTES);
    assert_int_equal(si, 1);
    struct gfs_bm_seg *g = &bm.segs[1];
    assert_int_equal(g->total_bytes, UINT32_MAX);
    const int64_t since = (INT64_C(1) << 40) - 1;
    g->dead_since_ms = since;
    g->dead_gen = UINT32_MAX;
    g->deleted = 1;
    /* the largest base packs */
    const uint64_t wmax = (UINT64_C(1) << GFS_BM_WS_BITS) - 1;
    struct gfs_bm_entry e = {.seg = 1, .offset = 0, .length = (1u << 18) - 1, .crc = 7,
                             .flags = 6 | GFS_SEGF_TRAILER, .write_seq = wmax};
    assert_int_equal(gfs_bm_set(&bm, 0, &e), 0);
    assert_int_equal(gfs_bm_overflow_count(&bm), 0);
    assert_entry_eq(gfs_bm_get(&bm, 0), e);
    assert_int_equal(gfs_bm_seg_ws_base(g), wmax);
    assert_int_equal(g->ws_known, 1);
    /* and nothing else moved */
    assert_int_equal(g->epoch, UINT64_MAX - 1);
    assert_int_equal(g->seq, UINT64_MAX - 2);
    assert_int_equal(g->dead_since_ms, since);
    assert_true(INT64_C(5) - g->dead_since_ms < 0); /* signed, as the compactor compares it */
    assert_int_equal(g->dead_gen, UINT32_MAX);
    assert_int_equal(g->deleted, 1);
    assert_int_equal(g->total_bytes, UINT32_MAX);
    assert_int_equal(g->live_bytes, (1u << 18) - 1);
    g->deleted = 0;
    /* 16384 entries of 2^18 - 1 bytes: just under 4 GiB live */
    for (uint64_t b = 1; b < 16384; b++) {
        e.write_seq = wmax - b;
        assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
    }
    uint64_t live = 16384 * (uint64_t)((1u << 18) - 1);
    assert_int_equal(g->live_bytes, live);
    assert_int_equal((uint64_t)(g->live_bytes * 100), live * 100);
    /* one byte more than a segment can hold is refused, and changes nothing */
    uint32_t room = (uint32_t)(GFS_BM_SEG_MAX_BYTES - live);
    struct gfs_bm_entry x = {.seg = 1, .offset = 9, .length = room + 1,
                             .flags = GFS_SEGF_TRAILER, .write_seq = wmax};
    assert_int_equal(gfs_bm_set(&bm, 16384, &x), -EOVERFLOW);
    assert_int_equal(gfs_bm_get(&bm, 16384).seg, GFS_BM_NONE);
    assert_int_equal(bm.written_blocks, 16384);
    /* every entry read out carries its row's key generation, packed or not */
    g->key_gen = UINT32_MAX - 3;
    assert_int_equal(gfs_bm_get(&bm, 5).key_gen, UINT32_MAX - 3);
    struct gfs_bm_entry big = {.seg = 1, .offset = 1u << 30, .length = 100, .crc = 3,
                               .flags = GFS_SEGF_ZSTD | GFS_SEGF_TRAILER, .write_seq = wmax,
                               .key_gen = 99};
    assert_int_equal(gfs_bm_set(&bm, 16385, &big), 0);
    assert_int_equal(gfs_bm_overflow_count(&bm), 1);
    assert_int_equal(gfs_bm_get(&bm, 16385).key_gen, UINT32_MAX - 3); /* the row's, not the set's */
    struct gfs_bm_entry it;
    uint64_t at = 16385;
    assert_true(gfs_bm_next(&bm, &at, &it));
    assert_int_equal(it.key_gen, UINT32_MAX - 3);
    assert_int_equal(g->dead_gen, UINT32_MAX); /* the neighbours kept theirs */
    assert_int_equal(gfs_bm_seg_ws_base(g), wmax);
    g->key_gen = 0;
    big.seg = GFS_BM_NONE;
    big = (struct gfs_bm_entry){0};
    assert_int_equal(gfs_bm_set(&bm, 16385, &big), 0);
    x.length = room;
    assert_int_equal(gfs_bm_set(&bm, 16384, &x), 0);
    assert_int_equal(g->live_bytes, GFS_BM_SEG_MAX_BYTES);
    assert_int_equal((uint64_t)(g->live_bytes * 100), GFS_BM_SEG_MAX_BYTES * UINT64_C(100));
    /* a block replaced within its segment is not counted twice */
    x.length = room;
    x.offset = 11;
    assert_int_equal(gfs_bm_set(&bm, 16384, &x), 0);
    assert_int_equal(g->live_bytes, GFS_BM_SEG_MAX_BYTES);
    /* sizes no segment can have are recorded as unknown */
    assert_int_equal(gfs_bm_seg_add(&bm, UINT64_MAX, 0, GFS_BM_SEG_MAX_BYTES + UINT64_C(1)), 2);
    assert_int_equal(bm.segs[2].total_bytes, 0);
    assert_int_equal(gfs_bm_seg_set_total(&bm, 2, UINT64_C(1) << 40), -EFBIG);
    assert_int_equal(bm.segs[2].total_bytes, 0);
    assert_int_equal(gfs_bm_seg_set_total(&bm, 2, 12345), 0);
    assert_int_equal(bm.segs[2].total_bytes, 12345);
    assert_int_equal(gfs_bm_seg_set_total(&bm, 3, 1), -EINVAL);
    assert_int_equal(gfs_bm_seg_set_total(&bm, 0, 1), -EINVAL);
    /* a base of 2^46 does not fit: that entry overflows, intact */
    struct gfs_bm_entry y = {.seg = 2, .offset = 1, .length = 5, .flags = GFS_SEGF_TRAILER,
                             .write_seq = wmax + 1};
    assert_int_equal(gfs_bm_set(&bm, 16385, &y), 0);
    assert_int_equal(bm.segs[2].ws_known, 0);
    assert_entry_eq(gfs_bm_get(&bm, 16385), y);
    assert_int_equal(gfs_bm_overflow_count(&bm), 1);
    gfs_bm_free(&bm);
}

/* ---- reclaim ---- */

struct mseg {
    uint64_t epoch, seq;
    uint32_t total, idx; /* idx: row now (0: reclaimed), kept up to date by the renumbering */
    uint64_t live;
    int deleted;
};

struct ment {
    int kind;    /* 0 NONE, 1 hole, 2 data */
    uint32_t k;  /* model segment */
    struct gfs_bm_entry e; /* seg unused */
};

struct renum_log {
    struct mseg *S;
    uint32_t nS, calls, lastn;
};

static void renum_cb(void *arg, const uint32_t *map, uint32_t n)
{
    struct renum_log *l = arg;
    l->calls++;
    l->lastn = n;
    assert_int_equal(map[0], 0);
    uint32_t prev = 0;
    for (uint32_t i = 1; i < n; i++)
        if (map[i]) {
            assert_true(map[i] > prev); /* order kept */
            prev = map[i];
        }
    for (uint32_t k = 0; k < l->nS; k++)
        if (l->S[k].idx) {
            assert_true(l->S[k].idx < n);
            l->S[k].idx = map[l->S[k].idx];
        }
}

static void check_reclaim_model(struct gfs_blockmap *bm, const struct mseg *S, uint32_t nS,
                                const struct ment *M, uint64_t nb)
{
    uint32_t rows = 1;
    for (uint32_t k = 0; k < nS; k++) {
        int64_t f = gfs_bm_seg_find(bm, S[k].epoch, S[k].seq);
        if (!S[k].idx) {
            assert_int_equal(f, -ENOENT);
            continue;
        }
        assert_int_equal(S[k].idx, rows); /* in key order, no gaps */
        assert_int_equal(f, S[k].idx);
        const struct gfs_bm_seg *g = &bm->segs[S[k].idx];
        assert_int_equal(g->epoch, S[k].epoch);
        assert_int_equal(g->seq, S[k].seq);
        assert_int_equal(g->total_bytes, S[k].total);
        assert_int_equal(g->live_bytes, S[k].live);
        assert_int_equal(g->deleted, S[k].deleted);
        /* the dead marks travel with the row */
        assert_int_equal(g->dead_gen, S[k].deleted ? k * 3 + 1 : 0);
        assert_int_equal(g->dead_since_ms, S[k].deleted ? (int64_t)k + 1000 : 0);
        rows++;
    }
    assert_int_equal(bm->nsegs, rows);
    uint64_t written = 0;
    for (uint64_t b = 0; b < nb; b++) {
        struct gfs_bm_entry e = gfs_bm_get(bm, b), want = M[b].e;
        if (M[b].kind == 0) {
            assert_int_equal(e.seg, GFS_BM_NONE);
            continue;
        }
        written++;
        if (M[b].kind == 1) {
            want.seg = GFS_BM_HOLE;
        } else {
            assert_int_not_equal(S[M[b].k].idx, 0); /* a named segment is never reclaimed */
            want.seg = S[M[b].k].idx;
        }
        assert_entry_eq(e, want);
    }
    assert_int_equal(bm->written_blocks, written);
    uint64_t seen = 0;
    struct gfs_bm_entry e;
    for (uint64_t b = 0; gfs_bm_next(bm, &b, &e); b++) {
        assert_int_not_equal(M[b].kind, 0);
        assert_int_equal(e.seg, M[b].kind == 1 ? GFS_BM_HOLE : S[M[b].k].idx);
        seen++;
    }
    assert_int_equal(seen, written);
}

/* Which rows reclaim removes, from the model: deleted, nothing live, not the
 * newest of its epoch, not named by a (zero-length) entry. */
static uint32_t expect_gone(const struct mseg *S, uint32_t nS, const struct ment *M, uint64_t nb,
                            uint8_t *gone, uint32_t *named)
{
    memset(gone, 0, nS);
    uint32_t n = 0;
    for (uint32_t k = 0; k < nS; k++) {
        if (!S[k].idx || !S[k].deleted || S[k].live)
            continue;
        uint32_t next = k + 1;
        while (next < nS && !S[next].idx)
            next++;
        if (next == nS || S[next].epoch != S[k].epoch)
            continue;
        gone[k] = 1;
        n++;
    }
    for (uint64_t b = 0; b < nb; b++)
        if (M[b].kind == 2 && gone[M[b].k]) {
            gone[M[b].k] = 0;
            n--;
            ++*named;
        }
    return n;
}

static void test_reclaim_model(void **state)
{
    (void)state;
    enum { NB = 2 * GFS_BM_CHUNK + 50, MAXS = 4000, HOT = 300 };
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, NB), 0);
    struct mseg *S = calloc(MAXS, sizeof *S);
    struct ment *M = calloc(NB, sizeof *M);
    uint8_t *gone = calloc(MAXS, 1);
    assert_non_null(S);
    assert_non_null(M);
    assert_non_null(gone);
    struct renum_log lg = {.S = S};
    uint64_t s = 0xfeedf00dULL, ep = 3, sq = 0;
    uint32_t nS = 0, reclaims = 0, removed = 0, zero_len_kept = 0;
    uint64_t hot0 = 0;
    for (int it = 0; it < 60000; it++) {
        uint64_t r = rnd(&s) % 100;
        if (nS == 0 || (r < 4 && nS < MAXS)) {
            if (rnd(&s) % 10 == 0) {
                ep += 1 + rnd(&s) % 2;
                if (rnd(&s) % 4 == 0)
                    ep += UINT64_C(1) << 56; /* another origin depth: a larger key */
                sq = rnd(&s) % 3;
            } else {
                sq += 1 + rnd(&s) % 2;
            }
            uint32_t tot = 1 + (uint32_t)(rnd(&s) % (4u << 20));
            int64_t si = gfs_bm_seg_add(&bm, ep, sq, tot);
            assert_int_equal(si, bm.nsegs - 1);
            S[nS] = (struct mseg){.epoch = ep, .seq = sq, .total = tot, .idx = bm.nsegs - 1};
            lg.nS = ++nS;
        } else if (r < 80) {
            /* mostly a moving hot range, so segments die */
            if (rnd(&s) % 500 == 0)
                hot0 = rnd(&s) % (NB - HOT);
            uint64_t b = rnd(&s) % 100 < 97 ? hot0 + rnd(&s) % HOT : rnd(&s) % NB;
            struct ment m = {0};
            uint64_t kind = rnd(&s) % 20;
            if (kind == 0) {
                m.kind = 0;
            } else if (kind <= 2) {
                m.kind = 1;
                m.e.write_seq = rnd(&s);
            } else {
                uint32_t k = nS - 1 - (uint32_t)(rnd(&s) % (nS < 8 ? nS : 8));
                if (S[k].deleted || !S[k].idx)
                    continue;
                m.kind = 2;
                m.k = k;
                uint64_t w = rnd(&s) % 64;
                m.e.offset = (uint32_t)(rnd(&s) % (w == 1 ? 1u << 24 : 1u << 22));
                m.e.length = w == 2 ? 0 : (uint32_t)(1 + rnd(&s) % (w == 3 ? 1u << 19 : 1u << 17));
                m.e.crc = (uint32_t)rnd(&s);
                m.e.flags = w == 4 ? 1 : (uint32_t)(rnd(&s) % 4) * 2;
                m.e.flags |= w == 6 ? 0 : GFS_SEGF_TRAILER;
                m.e.write_seq = w == 5 ? rnd(&s) : (uint64_t)it * 16 + rnd(&s) % 1000;
            }
            struct gfs_bm_entry e = m.e;
            e.seg = m.kind == 0 ? GFS_BM_NONE : m.kind == 1 ? GFS_BM_HOLE : S[m.k].idx;
            assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
            if (M[b].kind == 2)
                S[M[b].k].live -= M[b].e.length;
            if (m.kind == 2)
                S[m.k].live += m.e.length;
            M[b] = m;
        } else if (r < 93) {
            /* the compactor deletes a segment with nothing live */
            uint32_t k = (uint32_t)(rnd(&s) % (rnd(&s) % 2 ? nS : nS < 300 ? nS : 300));
            k = rnd(&s) % 2 ? k : nS - 1 - k;
            if (!S[k].idx || S[k].deleted || S[k].live)
                continue;
            struct gfs_bm_seg *g = &bm.segs[S[k].idx];
            g->deleted = 1;
            g->dead_gen = k * 3 + 1;
            g->dead_since_ms = (int64_t)k + 1000;
            S[k].deleted = 1;
        } else if (r < 96) {
            uint32_t min = rnd(&s) % 3 == 0 ? 64 : rnd(&s) % 2 ? 8 : 0;
            uint32_t exp = expect_gone(S, nS, M, NB, gone, &zero_len_kept);
            uint32_t n0 = bm.nsegs;
            int will = exp > 0 && exp >= min && (!min || (uint64_t)exp * 4 >= n0 - 1);
            uint64_t gen0 = bm.seg_gen;
            uint32_t calls0 = lg.calls;
            int64_t got = gfs_bm_seg_reclaim(&bm, min, renum_cb, &lg);
            assert_int_equal(got, will ? exp : 0);
            assert_int_equal(bm.seg_gen, gen0 + (will ? 1 : 0));
            assert_int_equal(lg.calls, calls0 + (will ? 1 : 0));
            if (will) {
                assert_int_equal(lg.lastn, n0);
                for (uint32_t k = 0; k < nS; k++)
                    assert_int_equal(S[k].idx == 0, !S[k].idx || gone[k] ? 1 : 0);
                reclaims++;
                removed += exp;
                check_reclaim_model(&bm, S, nS, M, NB);
            }
            assert_true(bm.segcap >= bm.nsegs);
        } else if (r < 98) {
            /* TRIM of a run (to holes): the segments it held may die */
            uint64_t b0 = rnd(&s) % (NB - 256);
            for (uint64_t b = b0; b < b0 + 256; b++) {
                struct gfs_bm_entry h = {.seg = GFS_BM_HOLE, .write_seq = (uint64_t)it};
                assert_int_equal(gfs_bm_set(&bm, b, &h), 0);
                if (M[b].kind == 2)
                    S[M[b].k].live -= M[b].e.length;
                M[b] = (struct ment){.kind = 1, .e = {.write_seq = (uint64_t)it}};
            }
        }
        if (it % 5000 == 4999)
            check_reclaim_model(&bm, S, nS, M, NB);
    }
    /* the run did what it is meant to exercise */
    assert_true(reclaims >= 20);
    assert_true(removed >= nS / 4);
    assert_true(zero_len_kept > 0);
    assert_true(gfs_bm_overflow_count(&bm) > 0);
    /* everything deletable at the end goes with min_rows 0 */
    uint32_t exp = expect_gone(S, nS, M, NB, gone, &zero_len_kept);
    assert_int_equal(gfs_bm_seg_reclaim(&bm, 0, renum_cb, &lg), exp);
    check_reclaim_model(&bm, S, nS, M, NB);
    assert_int_equal(gfs_bm_seg_reclaim(&bm, 0, renum_cb, &lg), 0);
    fprintf(stderr, "%u segments, %u reclaims removed %u rows, %u rows left\n", nS, reclaims,
            removed + exp, bm.nsegs - 1);
    free(gone);
    free(M);
    free(S);
    gfs_bm_free(&bm);
}

/* Thresholds, the newest row of each epoch, and memory given back. */
static void test_reclaim_edges(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 4096), 0);
    /* nothing to do on an empty or tiny table */
    assert_int_equal(gfs_bm_seg_reclaim(&bm, 0, NULL, NULL), 0);
    enum { N = 1000 };
    for (uint32_t i = 1; i <= N; i++)
        assert_int_equal(gfs_bm_seg_add(&bm, 1 + (i > 900), i, 1000), i);
    /* blocks in the rows 901.. (epoch 2) and row 1000 */
    for (uint32_t b = 0; b < 100; b++) {
        struct gfs_bm_entry e = ent(901 + b, b * 10, 10, 5);
        assert_int_equal(gfs_bm_set(&bm, b, &e), 0);
    }
    size_t mem0 = gfs_bm_mem_bytes(&bm);
    uint32_t cap0 = bm.segcap;
    assert_true(cap0 >= N + 1);
    /* 63 deleted: below min_rows */
    for (uint32_t i = 1; i <= 63; i++)
        bm.segs[i].deleted = 1;
    assert_int_equal(gfs_bm_seg_reclaim(&bm, GFS_BM_RECLAIM_MIN, NULL, NULL), 0);
    assert_int_equal(bm.nsegs, N + 1);
    /* 200: at least 64, but less than a quarter of the table */
    for (uint32_t i = 1; i <= 200; i++)
        bm.segs[i].deleted = 1;
    assert_int_equal(gfs_bm_seg_reclaim(&bm, GFS_BM_RECLAIM_MIN, NULL, NULL), 0);
    assert_int_equal(bm.seg_gen, 0);
    /* all of epoch 1: its newest (row 900) stays; a quarter and more go */
    for (uint32_t i = 1; i <= 900; i++)
        bm.segs[i].deleted = 1;
    assert_int_equal(gfs_bm_seg_reclaim(&bm, GFS_BM_RECLAIM_MIN, NULL, NULL), 899);
    assert_int_equal(bm.nsegs, N + 1 - 899);
    assert_int_equal(bm.seg_gen, 1);
    assert_int_equal(gfs_bm_seg_find(&bm, 1, 900), 1);
    assert_int_equal(gfs_bm_seg_find(&bm, 1, 899), -ENOENT);
    assert_int_equal(gfs_bm_seg_find(&bm, 2, 901), 2);
    assert_int_equal(gfs_bm_seg_find(&bm, 2, 1000), 101);
    for (uint32_t b = 0; b < 100; b++) {
        struct gfs_bm_entry e = ent(901 + b, b * 10, 10, 5);
        e.seg = 2 + b;
        assert_entry_eq(gfs_bm_get(&bm, b), e);
    }
    /* the table shrank, and so did its allocation */
    assert_true(bm.segcap < cap0 / 2);
    assert_true(bm.segcap >= bm.nsegs);
    assert_true(gfs_bm_mem_bytes(&bm) < mem0);
    /* it still grows in order after that */
    assert_int_equal(gfs_bm_seg_add(&bm, 2, 1001, 1), 102);
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 5, 1), -EINVAL);
    /* a deleted row that still holds live bytes stays */
    bm.segs[2].deleted = 1;
    assert_int_equal(gfs_bm_seg_reclaim(&bm, 0, NULL, NULL), 0);
    assert_int_equal(gfs_bm_seg_find(&bm, 2, 901), 2);
    gfs_bm_free(&bm);
}

/* A reserve sizes the table exactly (a woken volume's manifest). */
static void test_seg_reserve(void **state)
{
    (void)state;
    struct gfs_blockmap bm;
    assert_int_equal(gfs_bm_init(&bm, 1), 0);
    assert_int_equal(gfs_bm_seg_reserve(&bm, 5243), 0);
    assert_int_equal(bm.segcap, 5244);
    for (uint32_t i = 1; i <= 5243; i++)
        assert_int_equal(gfs_bm_seg_add(&bm, 1, i, 0), i);
    assert_int_equal(bm.segcap, 5244);
    /* then it grows by half, not double */
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 5244, 0), 5244);
    assert_int_equal(gfs_bm_seg_add(&bm, 1, 5245, 0), 5245);
    assert_int_equal(bm.segcap, 5244 + 5244 / 2);
    assert_int_equal(gfs_bm_seg_reserve(&bm, 10), 0); /* room already */
    assert_int_equal(bm.segcap, 5244 + 5244 / 2);
    assert_int_equal(gfs_bm_seg_reserve(&bm, UINT32_MAX), -ENOSPC);
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
        cmocka_unit_test(test_memory_dense_legacy),
        cmocka_unit_test(test_random_model_wide),
        cmocka_unit_test(test_seg_row),
        cmocka_unit_test(test_reclaim_model),
        cmocka_unit_test(test_reclaim_edges),
        cmocka_unit_test(test_seg_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
