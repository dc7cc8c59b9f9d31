/*
 * test_crc32c.c — CRC-32C: published check values, chaining, and the
 * hardware path agreeing with the table path on random buffers, lengths and
 * alignments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "crc32c.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    /* xorshift64*: reproducible, no libc rand() state */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

struct vec {
    const char *what;
    uint8_t data[64];
    size_t len;
    uint32_t crc;
};

static void fill_vectors(struct vec *v, size_t *n)
{
    size_t k = 0;
    v[k] = (struct vec){ "empty", { 0 }, 0, 0x00000000u };
    k++;
    v[k] = (struct vec){ "a", { 'a' }, 1, 0xC1D04330u };
    k++;
    v[k] = (struct vec){ "123456789", { 0 }, 9, 0xE3069283u };
    memcpy(v[k].data, "123456789", 9);
    k++;
    /* RFC 3720 B.4 */
    v[k] = (struct vec){ "32 zeroes", { 0 }, 32, 0x8A9136AAu };
    k++;
    v[k] = (struct vec){ "32 x 0xff", { 0 }, 32, 0x62A8AB43u };
    memset(v[k].data, 0xff, 32);
    k++;
    v[k] = (struct vec){ "0..31", { 0 }, 32, 0x46DD794Eu };
    for (int i = 0; i < 32; i++)
        v[k].data[i] = (uint8_t)i;
    k++;
    v[k] = (struct vec){ "31..0", { 0 }, 32, 0x113FDB5Cu };
    for (int i = 0; i < 32; i++)
        v[k].data[i] = (uint8_t)(31 - i);
    k++;
    static const uint8_t iscsi[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    v[k] = (struct vec){ "iSCSI read PDU", { 0 }, 48, 0xD9963A56u };
    memcpy(v[k].data, iscsi, 48);
    k++;
    *n = k;
}

static void test_vectors(void **state)
{
    (void)state;
    struct vec v[16];
    size_t n;
    fill_vectors(v, &n);
    for (size_t i = 0; i < n; i++) {
        uint32_t got = gfs_crc32c(0, v[i].data, v[i].len);
        if (got != v[i].crc)
            fail_msg("%s: got %08x want %08x", v[i].what, got, v[i].crc);
        assert_int_equal(gfs_crc32c_sw(0, v[i].data, v[i].len), v[i].crc);
        if (gfs_crc32c_hw_available())
            assert_int_equal(gfs_crc32c_hw(0, v[i].data, v[i].len), v[i].crc);
    }
}

static void test_chaining(void **state)
{
    (void)state;
    uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rng();
    uint32_t whole = gfs_crc32c(0, buf, sizeof(buf));
    for (int t = 0; t < 500; t++) {
        size_t a = rng() % (sizeof(buf) + 1);
        size_t b = a + rng() % (sizeof(buf) - a + 1);
        uint32_t c = gfs_crc32c(0, buf, a);
        c = gfs_crc32c(c, buf + a, b - a);
        c = gfs_crc32c(c, buf + b, sizeof(buf) - b);
        assert_int_equal(c, whole);
        uint32_t s = gfs_crc32c_sw(gfs_crc32c_sw(0, buf, a), buf + a, sizeof(buf) - a);
        assert_int_equal(s, whole);
    }
    /* One byte at a time, too. */
    uint32_t c = 0;
    for (size_t i = 0; i < sizeof(buf); i++)
        c = gfs_crc32c(c, buf + i, 1);
    assert_int_equal(c, whole);
}

static void test_hw_equals_sw(void **state)
{
    (void)state;
    if (!gfs_crc32c_hw_available()) {
        /* Still exercise the public entry against the table version. */
        fprintf(stderr, "no SSE4.2 here: checking gfs_crc32c against the table path only\n");
    }
    size_t cap = 70000;
    uint8_t *buf = malloc(cap + 16);
    assert_non_null(buf);
    for (size_t i = 0; i < cap + 16; i++)
        buf[i] = (uint8_t)rng();
    for (int t = 0; t < 3000; t++) {
        size_t align = rng() % 16;
        size_t len = (t % 3 == 0) ? rng() % 70000 : rng() % 80;
        uint32_t seed = (t % 2) ? (uint32_t)rng() : 0;
        uint32_t sw = gfs_crc32c_sw(seed, buf + align, len);
        uint32_t pub = gfs_crc32c(seed, buf + align, len);
        assert_int_equal(sw, pub);
        if (gfs_crc32c_hw_available())
            assert_int_equal(gfs_crc32c_hw(seed, buf + align, len), sw);
    }
    free(buf);
}

static void test_detects_flips(void **state)
{
    (void)state;
    uint8_t buf[256];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rng();
    uint32_t base = gfs_crc32c(0, buf, sizeof(buf));
    for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(gfs_crc32c(0, buf, sizeof(buf)), base);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_chaining),
        cmocka_unit_test(test_hw_equals_sw),
        cmocka_unit_test(test_detects_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
