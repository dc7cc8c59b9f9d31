/*
 * test_manchain.c — reading a manifest chain (lib/manchain.c) from a
 * file:// store: a base and two deltas load base first and flatten to the
 * map a base would hold (the newest entry of each block, only the segments
 * still referenced); a missing link, a link at another key, one of another
 * size, one that is not its child's link, a fenced link, and segments under
 * two key generations are refused; a base folded in at a link's place is
 * taken.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lease.h"
#include "manchain.h"
#include "manifest.h"
#include "objstore.h"
#include "segment.h"

#define BS 131072u
#define VOL (64ull * BS)

static char root[256];
static struct gfs_objstore *st;

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "%s/glidefs-manchain-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root))
        return -1;
    char err[256];
    return gfs_objstore_file_open(root, NULL, &st, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    gfs_objstore_close(st);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static struct gfs_man_entry ent(uint64_t b, uint64_t ws, uint32_t seg)
{
    struct gfs_man_entry e = {.block_index = b, .write_seq = ws, .seg = seg};
    if (seg == GFS_MAN_HOLE) {
        e.flags = GFS_SEGF_HOLE;
    } else {
        e.offset = 4096;
        e.length = BS;
    }
    return e;
}

/* Store manifest (epoch, seq) at key seq_at (normally seq). */
static void put_man(uint64_t seq_at, uint64_t seq, uint32_t depth, uint64_t prev, uint64_t base,
                    uint64_t vol, const struct gfs_man_seg *segs, uint32_t nsegs,
                    const struct gfs_man_entry *e, uint64_t n)
{
    struct gfs_manifest m = {
        .epoch = 7, .seq = seq, .volume_size = vol, .block_size = BS, .nsegs = nsegs,
        .nentries = n, .depth = depth, .prev_epoch = depth ? 7 : 0, .prev_seq = depth ? prev : 0,
        .base_seq = depth ? base : 0, .segs = (struct gfs_man_seg *)segs,
        .entries = (struct gfs_man_entry *)e,
    };
    void *buf;
    size_t len;
    assert_int_equal(gfs_manifest_encode(&m, 1, &buf, &len), 0);
    char key[256];
    assert_int_equal(gfs_manifest_key(key, sizeof key, "v", 7, seq_at), 0);
    assert_int_equal(st->ops->put(st, key, buf, len, 0, NULL), 0);
    free(buf);
}

static const struct gfs_man_seg SA = {7, 1, 0}, SB = {7, 11, 0}, SC = {7, 21, 0};

/* base 7-10: blocks 0..9 in A; delta 7-20: block 3 a hole, 5 in B; delta
 * 7-30: 5 in C, 12 new in C. */
static void put_chain(void)
{
    struct gfs_man_entry b[10];
    for (int i = 0; i < 10; i++)
        b[i] = ent((uint64_t)i, 100 + (uint64_t)i, 0);
    put_man(10, 10, 0, 0, 0, VOL, &SA, 1, b, 10);
    struct gfs_man_entry d1[] = {ent(3, 200, GFS_MAN_HOLE), ent(5, 201, 0)};
    put_man(20, 20, 1, 10, 10, VOL, &SB, 1, d1, 2);
    struct gfs_man_entry d2[] = {ent(5, 300, 0), ent(12, 301, 0)};
    put_man(30, 30, 2, 20, 10, VOL, &SC, 1, d2, 2);
}

static int load(uint64_t seq, const struct gfs_lease *l, struct gfs_manchain *c)
{
    char key[256];
    gfs_manifest_key(key, sizeof key, "v", 7, seq);
    return gfs_manchain_load(st, NULL, "v", key, NULL, l, c);
}

static void test_chain_flattens(void **state)
{
    (void)state;
    put_chain();
    struct gfs_manchain c;
    assert_int_equal(load(30, NULL, &c), 0);
    assert_int_equal(c.n, 3);
    assert_true(c.links[0].seq == 10 && c.links[0].depth == 0);
    assert_true(c.links[2].seq == 30 && c.links[2].depth == 2);
    struct gfs_manifest f;
    assert_int_equal(gfs_manchain_flatten(&c, &f), 0);
    assert_true(f.epoch == 7 && f.seq == 30 && f.volume_size == VOL && f.depth == 0);
    /* B is no longer referenced: only A and C */
    assert_int_equal(f.nsegs, 2);
    assert_true(f.segs[0].seq == 1 && f.segs[1].seq == 21);
    assert_int_equal(f.nentries, 11);
    for (uint64_t i = 0; i < f.nentries; i++) {
        const struct gfs_man_entry *e = &f.entries[i];
        uint64_t b = e->block_index;
        assert_true(b == (i < 10 ? i : 12));
        if (b == 3)
            assert_true(e->seg == GFS_MAN_HOLE && e->write_seq == 200);
        else if (b == 5)
            assert_true(e->seg == 1 && e->write_seq == 300);
        else if (b == 12)
            assert_true(e->seg == 1 && e->write_seq == 301);
        else
            assert_true(e->seg == 0 && e->write_seq == 100 + b);
    }
    /* it encodes as a base (the rules hold) */
    void *buf;
    size_t len;
    assert_int_equal(gfs_manifest_encode(&f, 0, &buf, &len), 0);
    free(buf);
    gfs_manifest_free(&f);
    gfs_manchain_free(&c);
    /* a base alone */
    assert_int_equal(load(10, NULL, &c), 0);
    assert_int_equal(c.n, 1);
    gfs_manchain_free(&c);
}

static void test_chain_broken(void **state)
{
    (void)state;
    struct gfs_manchain c;
    char key[256];
    /* a missing link */
    put_chain();
    gfs_manifest_key(key, sizeof key, "v", 7, 20);
    assert_int_equal(st->ops->del(st, key), 0);
    assert_int_equal(load(30, NULL, &c), -EIO);
    /* a link whose header names another position than its key */
    struct gfs_man_entry d1[] = {ent(3, 200, GFS_MAN_HOLE)};
    put_man(20, 19, 1, 10, 10, VOL, NULL, 0, d1, 1);
    assert_int_equal(load(30, NULL, &c), -EIO);
    /* a link of another volume size */
    put_man(20, 20, 1, 10, 10, VOL * 2, NULL, 0, d1, 1);
    assert_int_equal(load(30, NULL, &c), -EIO);
    /* a delta at the link's place that is not the child's link (another base) */
    put_man(20, 20, 1, 5, 5, VOL, NULL, 0, d1, 1);
    assert_int_equal(load(30, NULL, &c), -EIO);
    put_man(20, 20, 2, 10, 5, VOL, NULL, 0, d1, 1);
    assert_int_equal(load(30, NULL, &c), -EIO);
    /* a base there (a writer folded at that key since): complete, taken */
    put_man(20, 20, 0, 0, 0, VOL, NULL, 0, d1, 1);
    assert_int_equal(load(30, NULL, &c), 0);
    assert_int_equal(c.n, 2);
    gfs_manchain_free(&c);
    /* the base missing under an intact delta */
    put_chain();
    gfs_manifest_key(key, sizeof key, "v", 7, 10);
    assert_int_equal(st->ops->del(st, key), 0);
    assert_int_equal(load(30, NULL, &c), -EIO);
    assert_int_equal(load(20, NULL, &c), -EIO);
    /* a fenced link */
    put_chain();
    struct gfs_lease l = {.epoch = 8, .nfences = 1};
    l.fences[0].epoch = 7;
    l.fences[0].last_seq = 15;
    assert_int_equal(load(30, &l, &c), -EIO);
    l.fences[0].last_seq = 30;
    assert_int_equal(load(30, &l, &c), 0);
    gfs_manchain_free(&c);
}

static void test_chain_keygens(void **state)
{
    (void)state;
    struct gfs_manchain c = {0};
    c.links = calloc(2, sizeof *c.links);
    c.n = 2;
    struct gfs_man_seg s0 = {7, 1, 1}, s1 = {7, 1, 2};
    struct gfs_man_entry e0 = ent(0, 1, 0), e1 = ent(1, 2, 0);
    c.links[0] = (struct gfs_manifest){.epoch = 7, .seq = 1, .volume_size = VOL, .block_size = BS,
                                       .nsegs = 1, .nentries = 1};
    c.links[1] = c.links[0];
    c.links[1].seq = 2;
    c.links[0].segs = malloc(sizeof s0);
    c.links[1].segs = malloc(sizeof s1);
    c.links[0].entries = malloc(sizeof e0);
    c.links[1].entries = malloc(sizeof e1);
    *c.links[0].segs = s0;
    *c.links[1].segs = s1;
    *c.links[0].entries = e0;
    *c.links[1].entries = e1;
    struct gfs_manifest f;
    assert_int_equal(gfs_manchain_flatten(&c, &f), -EIO);
    c.links[1].segs[0].key_gen = 1;
    assert_int_equal(gfs_manchain_flatten(&c, &f), 0);
    assert_int_equal(f.nsegs, 1);
    assert_int_equal(f.nentries, 2);
    gfs_manifest_free(&f);
    gfs_manchain_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_flattens),
        cmocka_unit_test(test_chain_broken),
        cmocka_unit_test(test_chain_keygens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
