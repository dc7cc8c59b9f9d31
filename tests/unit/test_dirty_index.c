/*
 * test_dirty_index.c — a closed volume's dirty index (lib/dirty_index.c):
 * what is written reads back; every truncation and every flipped byte is
 * refused whole; another volume's, size's or boot's is -ESTALE; the seeds
 * of fuzz/corpus-dirty_index: the valid ones accepted, every bad_* one
 * (overlapping extents, data past a file's used end, an unknown file, a
 * block twice, a seq not below next seq, a current file that is not the
 * newest, ...) refused; take removes the file whatever it held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dirty.h"
#include "dirty_index.h"

#define BS 131072u
#define VOL ((uint64_t)64 * BS)

static uint8_t UUID[16], BOOT[16];

static struct gfs_jfile_id FILES[2] = {
    {.id = 3, .size = 1 << 20, .used = 1 << 20, .dev = 1, .ino = 2, .mtime_ns = 5,
     .ctime_ns = 6, .tail_crc = 7},
    {.id = 4, .size = 1 << 20, .used = 70000, .dev = 1, .ino = 9, .mtime_ns = -1,
     .ctime_ns = 8, .tail_crc = 9},
};
static struct gfs_didx_block BLOCKS[2] = {
    {.block = 63, .first_seq = 4, .first_ms = -5, .last_ms = 100, .n = 2},
    {.block = 0, .first_seq = 9, .first_ms = 7, .last_ms = 7, .n = 1},
};
static struct gfs_didx_ext EXTS[3] = {
    {.start = 0, .count = 8, .flags = 0, .file = 0, .seq = 4, .data_off = 40},
    {.start = 8, .count = 248, .flags = GFS_EXT_ZERO, .file = 1, .seq = 11, .data_off = 0},
    {.start = 3, .count = 100, .flags = 0, .file = 1, .seq = 10, .data_off = 70000 - 51200},
};

static struct gfs_didx sample(void)
{
    struct gfs_didx x = {
        .block_size = BS, .vol_size = VOL, .epoch = 2, .next_seq = 12, .next_id = 5,
        .cur_id = 4, .nfiles = 2, .nblocks = 2, .nexts = 3,
        .files = FILES, .blocks = BLOCKS, .exts = EXTS};
    memcpy(x.uuid, UUID, 16);
    memcpy(x.boot_id, BOOT, 16);
    return x;
}

static uint8_t *encode(size_t *n)
{
    struct gfs_didx x = sample();
    uint8_t *b = gfs_didx_encode(&x, n);
    assert_non_null(b);
    return b;
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = encode(&n);
    struct gfs_didx x;
    assert_int_equal(gfs_didx_parse(b, n, BS, UUID, VOL, BOOT, &x), 0);
    assert_int_equal(x.nfiles, 2);
    assert_int_equal(x.nblocks, 2);
    assert_int_equal(x.nexts, 3);
    assert_int_equal(x.epoch, 2);
    assert_int_equal(x.cur_id, 4);
    assert_memory_equal(&x.files[1], &FILES[1], sizeof FILES[1]);
    assert_int_equal(x.blocks[0].first_ms, -5);
    assert_int_equal(x.blocks[1].ext0, 2);
    assert_int_equal(x.exts[2].data_off, 70000 - 51200);
    size_t n2;
    uint8_t *again = gfs_didx_encode(&x, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(again, b, n);
    free(again);
    gfs_didx_free(&x);
    free(b);
}

static void test_damaged(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = encode(&n);
    struct gfs_didx x;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(gfs_didx_parse(b, k, BS, UUID, VOL, BOOT, &x), -EINVAL);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            int r = gfs_didx_parse(b, n, BS, UUID, VOL, BOOT, &x);
            assert_true(r == -EINVAL || r == -ESTALE);
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(b);
}

static void test_stale(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = encode(&n);
    struct gfs_didx x;
    uint8_t other[16];
    memset(other, 0x77, sizeof other);
    assert_int_equal(gfs_didx_parse(b, n, BS, other, VOL, BOOT, &x), -ESTALE);
    assert_int_equal(gfs_didx_parse(b, n, BS, UUID, VOL, other, &x), -ESTALE);
    assert_int_equal(gfs_didx_parse(b, n, BS, UUID, VOL + BS, BOOT, &x), -ESTALE);
    assert_int_equal(gfs_didx_parse(b, n, 65536, UUID, VOL, BOOT, &x), -ESTALE);
    free(b);
}

/* Cross-field rules, each broken alone in an otherwise valid index (so
 * the CRC is right and only the rule can refuse it). */
static void test_rules(void **state)
{
    (void)state;
    struct gfs_didx_ext saved[3];
    struct gfs_didx_block bsaved[2];
    struct gfs_jfile_id fsaved[2];
    memcpy(saved, EXTS, sizeof saved);
    memcpy(bsaved, BLOCKS, sizeof bsaved);
    memcpy(fsaved, FILES, sizeof fsaved);
    for (int rule = 0; rule < 14; rule++) {
        struct gfs_didx x = sample();
        switch (rule) {
        case 0: EXTS[1].start = 7; break;                         /* overlaps the one before */
        case 1: EXTS[2].data_off = 70000 - 51199; break;          /* data past used */
        case 2: EXTS[0].file = 2; break;                          /* no such file */
        case 3: EXTS[1].seq = 12; break;                          /* not below next seq */
        case 4: EXTS[0].seq = 3; break;                           /* below the block's first seq */
        case 5: x.cur_id = 3; break;                              /* not the newest file */
        case 6: BLOCKS[1].block = 63; break;                      /* a block twice */
        case 7: BLOCKS[0].block = 64; break;                      /* past the volume */
        case 8: EXTS[1].count = 249; break;                       /* past the block */
        case 9: EXTS[1].data_off = 512; break;                    /* a zero extent with data */
        case 10: FILES[1].id = 3; break;                          /* files out of order */
        case 11: FILES[1].used = FILES[1].size + 1; break;        /* used past the size */
        case 12: BLOCKS[0].first_ms = 101; break;                 /* first after last */
        case 13: EXTS[1].flags = 2; break;                        /* unknown flag */
        }
        size_t n;
        uint8_t *b = gfs_didx_encode(&x, &n);
        assert_non_null(b);
        struct gfs_didx y;
        int r = gfs_didx_parse(b, n, BS, UUID, VOL, BOOT, &y);
        if (r != -EINVAL)
            fail_msg("rule %d: %d", rule, r);
        free(b);
        memcpy(EXTS, saved, sizeof saved);
        memcpy(BLOCKS, bsaved, sizeof bsaved);
        memcpy(FILES, fsaved, sizeof fsaved);
    }
}

static void test_corpus(void **state)
{
    (void)state;
    uint8_t boot[16], uuid[16];
    memset(boot, 0x33, sizeof boot);
    memset(uuid, 0x11, sizeof uuid);
    DIR *d = opendir(FUZZ_DIR "/corpus-dirty_index");
    assert_non_null(d);
    struct dirent *de;
    int good = 0, bad = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/corpus-dirty_index/%s", FUZZ_DIR, de->d_name);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        uint8_t buf[4096];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        struct gfs_didx x;
        int r = gfs_didx_parse(buf, n, BS, uuid, VOL, boot, &x);
        if (strncmp(de->d_name, "bad_", 4) == 0) {
            if (r == 0)
                fail_msg("%s accepted", de->d_name);
            bad++;
        } else {
            if (r != 0)
                fail_msg("%s refused: %d", de->d_name, r);
            gfs_didx_free(&x);
            good++;
        }
    }
    closedir(d);
    assert_true(good >= 4 && bad >= 10);
}

static void test_take(void **state)
{
    (void)state;
    char dir[] = "/tmp/glidefs-didx-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[100];
    snprintf(p, sizeof p, "%s/dirty.idx", dir);
    struct gfs_didx x = sample(), y;
    assert_int_equal(gfs_didx_write(p, &x), 0);
    assert_int_equal(gfs_didx_take(p, BS, UUID, VOL, BOOT, &y), 0);
    assert_int_equal(y.nexts, 3);
    gfs_didx_free(&y);
    assert_int_not_equal(access(p, F_OK), 0); /* taken */
    assert_int_equal(gfs_didx_take(p, BS, UUID, VOL, BOOT, &y), -ENOENT);
    FILE *f = fopen(p, "wb");
    fputs("junk", f);
    fclose(f);
    assert_int_equal(gfs_didx_take(p, BS, UUID, VOL, BOOT, &y), -EINVAL);
    assert_int_not_equal(access(p, F_OK), 0); /* removed, bad as it was */
    /* this boot's id reads */
    uint8_t b[16];
    assert_int_equal(gfs_didx_boot_id(b), 0);
    rmdir(dir);
}

int main(void)
{
    memset(UUID, 0x5a, sizeof UUID);
    memset(BOOT, 0xb0, sizeof BOOT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_stale),     cmocka_unit_test(test_rules),
        cmocka_unit_test(test_corpus),    cmocka_unit_test(test_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
