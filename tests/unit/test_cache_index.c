/*
 * test_cache_index.c — a parked cache's index (lib/cache_index.c): what is
 * written reads back; every truncation, every flipped byte, another
 * volume's uuid or block size, an unknown version and a non-zero pad are
 * refused whole; take removes the file whatever it held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "cache_index.h"
#include "crc32c.h"

#define BS 131072u

static const uint8_t UUID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static const struct gfs_cidx_entry ENT[3] = {
    {.block = 0, .epoch = 1, .seq = 1, .offset = 0},
    {.block = 77, .epoch = (UINT64_C(3) << 56) | 9, .seq = 123456789, .offset = 131072 + 29},
    {.block = UINT64_C(1) << 40, .epoch = 2, .seq = 5, .offset = UINT32_MAX},
};

static uint8_t *encode(size_t *n)
{
    uint8_t *b = gfs_cidx_encode(BS, UUID, ENT, 3, n);
    assert_non_null(b);
    return b;
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = encode(&n);
    assert_int_equal(n, GFS_CIDX_HEADER + 3 * GFS_CIDX_ENTRY + 4);
    struct gfs_cidx_entry *e;
    size_t k;
    assert_int_equal(gfs_cidx_parse(b, n, BS, UUID, &e, &k), 0);
    assert_int_equal(k, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(e[i].block, ENT[i].block);
        assert_int_equal(e[i].epoch, ENT[i].epoch);
        assert_int_equal(e[i].seq, ENT[i].seq);
        assert_int_equal(e[i].offset, ENT[i].offset);
    }
    free(e);
    free(b);
    /* no entries at all is a valid (empty) index */
    b = gfs_cidx_encode(BS, UUID, NULL, 0, &n);
    assert_non_null(b);
    assert_int_equal(gfs_cidx_parse(b, n, BS, UUID, &e, &k), 0);
    assert_int_equal(k, 0);
    assert_null(e);
    free(b);
}

static void test_damage_refused(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = encode(&n);
    struct gfs_cidx_entry *e;
    size_t k;
    for (size_t len = 0; len < n; len++) {
        assert_int_equal(gfs_cidx_parse(b, len, BS, UUID, &e, &k), -EINVAL);
        assert_null(e);
    }
    for (size_t i = 0; i < n; i++) {
        b[i] ^= 0x40;
        int r = gfs_cidx_parse(b, n, BS, UUID, &e, &k);
        assert_true(r == -EINVAL);
        assert_null(e);
        b[i] ^= 0x40;
    }
    /* one byte too many */
    uint8_t *big = calloc(1, n + 1);
    memcpy(big, b, n);
    assert_int_equal(gfs_cidx_parse(big, n + 1, BS, UUID, &e, &k), -EINVAL);
    free(big);
    free(b);
}

/* Change a field and seal the CRC again: only the field's check can refuse it. */
static int parse_with(size_t at, uint32_t v32, int wide, uint64_t v64)
{
    size_t n;
    uint8_t *b = encode(&n);
    if (wide)
        gfs_le64_put(b + at, v64);
    else
        gfs_le32_put(b + at, v32);
    gfs_le32_put(b + n - 4, gfs_crc32c(0, b, n - 4));
    struct gfs_cidx_entry *e = NULL;
    size_t k;
    int r = gfs_cidx_parse(b, n, BS, UUID, &e, &k);
    if (r < 0)
        assert_null(e);
    free(e);
    free(b);
    return r;
}

static void test_fields(void **state)
{
    (void)state;
    assert_int_equal(parse_with(8, 2, 0, 0), -EINVAL);           /* version */
    assert_int_equal(parse_with(12, 4096, 0, 0), -ESTALE);       /* block size */
    assert_int_equal(parse_with(16, 0xdeadbeef, 0, 0), -ESTALE); /* uuid */
    assert_int_equal(parse_with(32, 0, 1, 2), -EINVAL);          /* count != size */
    assert_int_equal(parse_with(32, 0, 1, 4), -EINVAL);
    assert_int_equal(parse_with(32, 0, 1, UINT64_MAX / 16), -EINVAL); /* overflow */
    assert_int_equal(parse_with(40, 0, 1, 1), -EINVAL);          /* reserved */
    assert_int_equal(parse_with(GFS_CIDX_HEADER + 28, 1, 0, 0), -EINVAL); /* entry pad */
    assert_int_equal(parse_with(GFS_CIDX_HEADER + 8, 0, 1, 42), 0); /* a plain value */
}

static void test_write_take(void **state)
{
    (void)state;
    char dir[] = "/tmp/glidefs-cidx-XXXXXX", p[256];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/cache.idx", dir);
    struct gfs_cidx_entry *e;
    size_t k;
    assert_int_equal(gfs_cidx_take(p, BS, UUID, &e, &k), -ENOENT);
    assert_int_equal(gfs_cidx_write(p, BS, UUID, ENT, 3), 0);
    assert_int_equal(gfs_cidx_take(p, BS, UUID, &e, &k), 0);
    assert_int_equal(k, 3);
    assert_int_equal(e[1].seq, ENT[1].seq);
    free(e);
    assert_int_equal(access(p, F_OK), -1); /* taken: a later crash finds nothing */
    assert_int_equal(gfs_cidx_take(p, BS, UUID, &e, &k), -ENOENT);
    /* a damaged one is refused and removed as well */
    assert_int_equal(gfs_cidx_write(p, BS, UUID, ENT, 3), 0);
    FILE *f = fopen(p, "r+");
    assert_non_null(f);
    fseek(f, 60, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(gfs_cidx_take(p, BS, UUID, &e, &k), -EINVAL);
    assert_null(e);
    assert_int_equal(access(p, F_OK), -1);
    /* another volume's */
    uint8_t other[16] = {0};
    assert_int_equal(gfs_cidx_write(p, BS, other, ENT, 3), 0);
    assert_int_equal(gfs_cidx_take(p, BS, UUID, &e, &k), -ESTALE);
    assert_int_equal(access(p, F_OK), -1);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_damage_refused),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_write_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
