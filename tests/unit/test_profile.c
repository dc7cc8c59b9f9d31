/*
 * test_profile.c — the access profile (lib/profile.c): the recorder (first-
 * read order, each block once, the block and time limits), the object's
 * round trip (plain and MAC'd), and a table of hostile objects, each
 * breaking one rule of docs/design.md 5.15 with the CRC fixed up so the rule
 * itself refuses it; truncations and bit flips.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bytes.h"
#include "codec.h"
#include "crc32c.h"
#include "profile.h"

#define BS 4096u
#define VSIZE (UINT64_C(1000) * BS)

static struct gfs_codec *sealed_codec(uint8_t fill)
{
    struct gfs_datakey dk = {.gen = 1};
    memset(dk.key, fill, sizeof dk.key);
    struct gfs_codec_params p = {.block_size = BS, .keys = &dk, .nkeys = 1};
    struct gfs_codec *c = NULL;
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    return c;
}

static void test_recorder(void **state)
{
    (void)state;
    struct gfs_profile_rec r;
    assert_int_equal(gfs_profile_rec_init(&r, 5, 1000, 500), 0);
    gfs_profile_rec_note(&r, 7, 7, 1000);
    gfs_profile_rec_note(&r, 3, 4, 1001);  /* a two-block read */
    gfs_profile_rec_note(&r, 7, 7, 1002);  /* again: not recorded twice */
    gfs_profile_rec_note(&r, 4, 4, 1003);
    assert_int_equal(r.n, 3);
    assert_true(r.blocks[0] == 7 && r.blocks[1] == 3 && r.blocks[2] == 4);
    assert_false(r.done);
    /* the block limit: two more fit, the third ends the recording */
    gfs_profile_rec_note(&r, 10, 12, 1004);
    assert_int_equal(r.n, 5);
    assert_true(r.done);
    assert_true(r.blocks[3] == 10 && r.blocks[4] == 11);
    gfs_profile_rec_note(&r, 20, 20, 1005);
    assert_int_equal(r.n, 5);
    gfs_profile_rec_free(&r);

    /* the time limit */
    assert_int_equal(gfs_profile_rec_init(&r, 100, 1000, 500), 0);
    gfs_profile_rec_note(&r, 1, 1, 1499);
    gfs_profile_rec_note(&r, 2, 2, 1500);
    assert_int_equal(r.n, 1);
    assert_true(r.done);
    gfs_profile_rec_free(&r);

    /* off: nothing recorded, nothing allocated */
    assert_int_equal(gfs_profile_rec_init(&r, 0, 0, 500), 0);
    gfs_profile_rec_note(&r, 1, 1, 1);
    assert_int_equal(r.n, 0);
    assert_null(r.blocks);
    gfs_profile_rec_free(&r);

    /* a larger set: many distinct blocks, with repeats, keep their order */
    assert_int_equal(gfs_profile_rec_init(&r, 20000, 0, 1000), 0);
    for (uint64_t i = 0; i < 30000; i++)
        gfs_profile_rec_note(&r, (i * 7919) % 10007, (i * 7919) % 10007, 1);
    assert_int_equal(r.n, 10007);
    for (uint32_t i = 0; i < r.n; i++)
        assert_int_equal(r.blocks[i], (i * 7919ull) % 10007);
    gfs_profile_rec_free(&r);
}

static void roundtrip(struct gfs_codec *c)
{
    uint64_t bl[] = {999, 0, 5, 4, 100};
    uint8_t *obj;
    size_t len;
    assert_int_equal(gfs_profile_encode(bl, 5, VSIZE, BS, c, &obj, &len), 0);
    assert_int_equal(len, GFS_PROFILE_HDR + 5 * 8 + 4 + (c ? GFS_MAC_LEN : 0));
    uint64_t *out, vs;
    uint32_t n;
    assert_int_equal(gfs_profile_decode(obj, len, BS, c, &out, &n, &vs, NULL), 0);
    assert_int_equal(n, 5);
    assert_int_equal(vs, VSIZE);
    assert_memory_equal(out, bl, sizeof bl);
    free(out);
    /* every truncation and every single bit flip is refused */
    for (size_t l = 0; l < len; l++) {
        const char *why = NULL;
        assert_int_equal(gfs_profile_decode(obj, l, BS, c, &out, &n, &vs, &why), -EIO);
        assert_non_null(why);
    }
    for (size_t i = 0; i < len * 8; i++) {
        obj[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(gfs_profile_decode(obj, len, BS, c, &out, &n, &vs, NULL), -EIO);
        obj[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    free(obj);
    /* empty */
    assert_int_equal(gfs_profile_encode(NULL, 0, VSIZE, BS, c, &obj, &len), 0);
    assert_int_equal(gfs_profile_decode(obj, len, BS, c, &out, &n, &vs, NULL), 0);
    assert_int_equal(n, 0);
    assert_null(out);
    free(obj);
}

static void test_roundtrip(void **state)
{
    (void)state;
    roundtrip(NULL);
    struct gfs_codec *c = sealed_codec(0x41);
    roundtrip(c);
    gfs_codec_free(c);
}

/* The MAC binds the profile to the volume's keys; plain and sealed never mix. */
static void test_mac(void **state)
{
    (void)state;
    struct gfs_codec *a = sealed_codec(0x41), *b = sealed_codec(0x42);
    uint64_t bl[] = {1, 2, 3};
    uint8_t *obj;
    size_t len;
    uint64_t *out, vs;
    uint32_t n;
    const char *why;
    assert_int_equal(gfs_profile_encode(bl, 3, VSIZE, BS, a, &obj, &len), 0);
    assert_int_equal(gfs_profile_decode(obj, len, BS, b, &out, &n, &vs, &why), -EIO);
    assert_string_equal(why, "MAC mismatch");
    assert_int_equal(gfs_profile_decode(obj, len, BS, NULL, &out, &n, &vs, &why), -EIO);
    free(obj);
    assert_int_equal(gfs_profile_encode(bl, 3, VSIZE, BS, NULL, &obj, &len), 0);
    assert_int_equal(gfs_profile_decode(obj, len, BS, a, &out, &n, &vs, &why), -EIO);
    assert_string_equal(why, "no MAC on an encrypted volume");
    free(obj);
    gfs_codec_free(a);
    gfs_codec_free(b);
}

/* A plain object with its fields set by hand, the CRC made to match. */
static size_t hostile(uint8_t *p, uint32_t version, uint32_t flags, uint64_t size, uint32_t bs,
                      uint32_t count, const uint64_t *bl, uint32_t nbl, size_t extra)
{
    memcpy(p, GFS_PROFILE_MAGIC, 8);
    gfs_le32_put(p + 8, version);
    gfs_le32_put(p + 12, flags);
    gfs_le64_put(p + 16, size);
    gfs_le32_put(p + 24, bs);
    gfs_le32_put(p + 28, count);
    for (uint32_t i = 0; i < nbl; i++)
        gfs_le64_put(p + 32 + 8 * i, bl[i]);
    size_t body = 32 + 8 * (size_t)nbl + extra;
    memset(p + 32 + 8 * (size_t)nbl, 0, extra);
    gfs_le32_put(p + body, gfs_crc32c(0, p, body));
    return body + 4;
}

static void test_hostile(void **state)
{
    (void)state;
    uint8_t p[512];
    uint64_t ok[] = {1, 2, 3}, dup[] = {1, 2, 1}, past[] = {1, 1000, 2}, last[] = {999};
    uint64_t *out, vs;
    uint32_t n;
    const struct {
        const char *why;
        uint32_t version, flags;
        uint64_t size;
        uint32_t bs, count;
        const uint64_t *bl;
        uint32_t nbl;
        size_t extra;
    } t[] = {
        {NULL, 1, 0, VSIZE, BS, 3, ok, 3, 0},
        {NULL, 1, 0, VSIZE, BS, 1, last, 1, 0},
        {"unsupported version", 2, 0, VSIZE, BS, 3, ok, 3, 0},
        {"unknown flags", 1, 0x2, VSIZE, BS, 3, ok, 3, 0},
        {"a MAC on a profile of an unencrypted volume", 1, 0x1, VSIZE, BS, 3, ok, 3, 0},
        {"bad volume size", 1, 0, 0, BS, 3, ok, 3, 0},
        {"bad volume size", 1, 0, VSIZE + 1, BS, 3, ok, 3, 0},
        {"bad volume size", 1, 0, (UINT64_C(1) << 50) + 512, BS, 3, ok, 3, 0},
        {"block size differs from the volume's", 1, 0, VSIZE, 8192, 3, ok, 3, 0},
        /* more blocks than a 2-block volume has */
        {"more blocks than the volume holds", 1, 0, 2 * BS, BS, 3, ok, 3, 0},
        {"more blocks than the volume holds", 1, 0, VSIZE, BS, GFS_PROFILE_MAX + 1, ok, 3, 0},
        /* the count and the length disagree */
        {"length does not match the block count", 1, 0, VSIZE, BS, 4, ok, 3, 0},
        {"length does not match the block count", 1, 0, VSIZE, BS, 2, ok, 3, 0},
        {"length does not match the block count", 1, 0, VSIZE, BS, 3, ok, 3, 4},
        {"a block past the end of the volume", 1, 0, VSIZE, BS, 3, past, 3, 0},
        {"a block listed twice", 1, 0, VSIZE, BS, 3, dup, 3, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t len = hostile(p, t[i].version, t[i].flags, t[i].size, t[i].bs, t[i].count, t[i].bl,
                             t[i].nbl, t[i].extra);
        const char *why = NULL;
        int r = gfs_profile_decode(p, len, BS, NULL, &out, &n, &vs, &why);
        if (!t[i].why) {
            assert_int_equal(r, 0);
            assert_int_equal(n, t[i].count);
            free(out);
            continue;
        }
        if (r != -EIO || !why || strcmp(why, t[i].why) != 0)
            fail_msg("case %zu: expected \"%s\", got %d \"%s\"", i, t[i].why, r,
                     why ? why : "(none)");
    }
    /* bad magic and a wrong CRC */
    size_t len = hostile(p, 1, 0, VSIZE, BS, 3, ok, 3, 0);
    const char *why = NULL;
    p[0] = 'X';
    assert_int_equal(gfs_profile_decode(p, len, BS, NULL, &out, &n, &vs, &why), -EIO);
    assert_string_equal(why, "bad magic");
    p[0] = 'G';
    p[40] ^= 1;
    assert_int_equal(gfs_profile_decode(p, len, BS, NULL, &out, &n, &vs, &why), -EIO);
    assert_string_equal(why, "CRC mismatch");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recorder),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
