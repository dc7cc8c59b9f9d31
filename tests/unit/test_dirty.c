/*
 * test_dirty.c — the dirty-extent index against a per-sector model: random
 * inserts (each newer than the last) and cleans, checking after every step
 * that extents stay sorted and disjoint, that each sector maps to the newest
 * record covering it with the right data offset, and that journal-file live
 * counts equal the number of extents pointing into each file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dirty.h"
#include "journal.h"

#define SPB 256

struct cell {
    uint64_t seq;     /* 0 = not dirty */
    int zero;
    int file;
    uint64_t off;     /* data offset of this sector */
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check(struct gfs_dirty *d, struct gfs_dirty_block *db, struct cell *m,
                  struct gfs_jfile *files, int nfiles)
{
    uint64_t live[4] = {0};
    uint64_t sectors = 0;
    uint32_t pos = 0;
    for (uint32_t i = 0; db && i < db->n; i++) {
        const struct gfs_ext *e = &db->ext[i];
        assert_true(e->count > 0);
        assert_true(e->start >= pos);
        assert_true(e->start + e->count <= SPB);
        for (uint32_t k = pos; k < e->start; k++)
            assert_int_equal(m[k].seq, 0);
        for (uint32_t k = e->start; k < e->start + e->count; k++) {
            assert_int_equal(m[k].seq, e->seq);
            assert_int_equal(m[k].zero, (e->flags & GFS_EXT_ZERO) != 0);
            assert_non_null(e->jf);
            if (!m[k].zero) {
                assert_int_equal(m[k].file, (int)(e->jf - files));
                assert_int_equal(m[k].off, e->data_off + (uint64_t)(k - e->start) * 512);
            }
        }
        live[e->jf - files]++; /* zero extents keep their file alive too */
        pos = e->start + e->count;
        sectors += e->count;
    }
    for (uint32_t k = pos; k < SPB; k++)
        assert_int_equal(m[k].seq, 0);
    assert_int_equal(d->sectors, sectors);
    for (int f = 0; f < nfiles; f++)
        assert_int_equal(files[f].live, live[f]);
}

static void test_random(void **state)
{
    (void)state;
    struct gfs_dirty d;
    gfs_dirty_init(&d);
    struct gfs_jfile files[4];
    memset(files, 0, sizeof files);
    struct cell m[SPB];
    memset(m, 0, sizeof m);
    uint64_t s = 88172645463325252ULL, seq = 0;
    struct gfs_dirty_block *db = NULL;
    for (int it = 0; it < 200000; it++) {
        uint64_t r = rnd(&s) % 10;
        if (r < 8 || !db) {
            uint32_t start = (uint32_t)(rnd(&s) % SPB);
            uint32_t count = 1 + (uint32_t)(rnd(&s) % (rnd(&s) % 4 == 0 ? SPB : 16));
            if (start + count > SPB)
                count = SPB - start;
            int zero = rnd(&s) % 4 == 0;
            int f = (int)(rnd(&s) % 4);
            struct gfs_ext e = {.start = start, .count = count, .seq = ++seq,
                                .flags = zero ? GFS_EXT_ZERO : 0, .jf = &files[f],
                                .data_off = zero ? 0 : rnd(&s) % (1u << 30) * 512};
            if (!db)
                db = gfs_dirty_touch(&d, 7, 0);
            assert_non_null(db);
            assert_int_equal(gfs_dirty_insert(&d, db, &e), 0);
            for (uint32_t k = start; k < start + count; k++) {
                m[k].seq = e.seq;
                m[k].zero = zero;
                m[k].file = f;
                m[k].off = e.data_off + (uint64_t)(k - start) * 512;
            }
        } else {
            uint64_t upto = seq - rnd(&s) % 8;
            int gone = gfs_dirty_clean(&d, db, upto);
            for (int k = 0; k < SPB; k++)
                if (m[k].seq <= upto)
                    m[k].seq = 0;
            if (gone) {
                for (int k = 0; k < SPB; k++)
                    assert_int_equal(m[k].seq, 0);
                db = NULL;
                assert_null(gfs_dirty_get(&d, 7));
            }
        }
        check(&d, db, m, files, 4);
        if (db) {
            uint32_t a = (uint32_t)(rnd(&s) % SPB), n = 1 + (uint32_t)(rnd(&s) % (SPB - a));
            int cov = 1;
            for (uint32_t k = a; k < a + n; k++)
                cov &= m[k].seq != 0;
            assert_int_equal(gfs_dirty_covers(db, a, n), cov);
            /* the binary search names the first extent ending after a */
            uint32_t i = gfs_dirty_find(db, a), lin = 0;
            while (lin < db->n && db->ext[lin].start + db->ext[lin].count <= a)
                lin++;
            assert_int_equal(i, lin);
            assert_int_equal(i < db->n && db->ext[i].start <= a, m[a].seq != 0);
        }
    }
    gfs_dirty_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
