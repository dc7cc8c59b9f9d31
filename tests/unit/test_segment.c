/*
 * test_segment.c — the segment header format: round trips, a table of
 * hostile headers (each breaking exactly one rule, with the CRC fixed up so
 * the rule itself is what refuses it), truncation (-EAGAIN with the right
 * *need), random mutation, the payload CRC check (with a trailer, or the
 * CRC given for a payload without one), and the key helpers. Hostile cases
 * include trailers that run past the object or into the next payload.
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

#include "bytes.h"
#include "codec.h"
#include "crc32c.h"
#include "segment.h"

static uint64_t rng_state = 0xD1B54A32D192ED03ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Build a random valid header of n blocks: holes, plain and zstd blocks,
 * payloads laid out one after another from first_off. Returns the object
 * size. */
static uint64_t make_header_at(struct gfs_seg_header *h, uint32_t n, uint32_t bs,
                               uint64_t first_off)
{
    memset(h, 0, sizeof(*h));
    h->epoch = rng();
    h->seq = rng();
    h->nblocks = n;
    h->block_size = bs;
    for (int i = 0; i < 16; i++)
        h->volume_uuid[i] = (uint8_t)rng();
    h->entries = calloc(n ? n : 1, sizeof(*h->entries));
    assert_non_null(h->entries);
    uint64_t off = first_off;
    uint64_t idx = rng() % 1000;
    for (uint32_t i = 0; i < n; i++) {
        struct gfs_seg_entry *e = &h->entries[i];
        idx += 1 + rng() % 50;
        e->block_index = idx;
        e->write_seq = rng();
        switch (rng() % 3) {
        case 0:
            e->flags = GFS_SEGF_HOLE;
            break;
        case 1:
            e->flags = 0;
            e->length = e->raw_length = bs;
            break;
        default:
            e->flags = GFS_SEGF_ZSTD | (rng() % 2 ? GFS_SEGF_SEALED : 0);
            e->length = 1 + (uint32_t)(rng() % bs);
            e->raw_length = bs;
            break;
        }
        if (!(e->flags & GFS_SEGF_HOLE)) {
            e->flags |= rng() % 4 ? GFS_SEGF_TRAILER : 0;
            e->offset = (uint32_t)off;
            e->crc = (uint32_t)rng();
            off += gfs_seg_span(e->length, e->flags) + rng() % 3; /* gaps are allowed */
        }
    }
    return off;
}

static uint64_t make_header(struct gfs_seg_header *h, uint32_t n, uint32_t bs)
{
    return make_header_at(h, n, bs, gfs_seg_header_size(n));
}

/* An independent statement of the rules, for the mutation loop. */
static void assert_invariants(const struct gfs_seg_header *h, uint64_t object_size)
{
    assert_true(h->nblocks <= GFS_SEG_MAX_BLOCKS);
    assert_true(h->block_size >= 4096 && h->block_size <= (4u << 20));
    assert_true((h->block_size & (h->block_size - 1)) == 0);
    uint64_t hs = gfs_seg_header_size(h->nblocks);
    assert_true(h->header_len == hs - 4);
    if (object_size)
        assert_true(object_size >= hs);
    for (uint32_t i = 0; i < h->nblocks; i++) {
        const struct gfs_seg_entry *e = &h->entries[i];
        if (i)
            assert_true(e->block_index > h->entries[i - 1].block_index);
        assert_true((e->flags & ~15u) == 0);
        if (e->flags & GFS_SEGF_HOLE) {
            assert_true(e->flags == GFS_SEGF_HOLE);
            assert_true(!e->offset && !e->length && !e->raw_length && !e->crc);
            continue;
        }
        assert_true(e->length > 0);
        assert_true(e->raw_length == h->block_size);
        assert_true(e->offset >= hs);
        if (object_size)
            assert_true((uint64_t)e->offset + e->length + (e->flags & GFS_SEGF_TRAILER ? 4 : 0) <=
                        object_size);
        if (!(e->flags & (GFS_SEGF_ZSTD | GFS_SEGF_SEALED)))
            assert_true(e->length == e->raw_length);
        for (uint32_t j = 0; j < i; j++) {
            const struct gfs_seg_entry *f = &h->entries[j];
            if (f->flags & GFS_SEGF_HOLE)
                continue;
            uint64_t a0 = e->offset, a1 = a0 + e->length + (e->flags & GFS_SEGF_TRAILER ? 4 : 0);
            uint64_t b0 = f->offset, b1 = b0 + f->length + (f->flags & GFS_SEGF_TRAILER ? 4 : 0);
            assert_true(a1 <= b0 || b1 <= a0);
        }
    }
}

static void assert_same(const struct gfs_seg_header *a, const struct gfs_seg_header *b)
{
    assert_true(a->epoch == b->epoch);
    assert_true(a->seq == b->seq);
    assert_int_equal(a->nblocks, b->nblocks);
    assert_int_equal(a->block_size, b->block_size);
    assert_memory_equal(a->volume_uuid, b->volume_uuid, 16);
    for (uint32_t i = 0; i < a->nblocks; i++) {
        const struct gfs_seg_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_true(x->block_index == y->block_index);
        assert_true(x->write_seq == y->write_seq);
        assert_int_equal(x->offset, y->offset);
        assert_int_equal(x->length, y->length);
        assert_int_equal(x->raw_length, y->raw_length);
        assert_int_equal(x->crc, y->crc);
        assert_int_equal(x->flags, y->flags);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    static const uint32_t sizes[] = { 4096, 131072, 4u << 20 };
    for (int t = 0; t < 300; t++) {
        uint32_t n = t < 3 ? (uint32_t)t : (uint32_t)(rng() % 120);
        if (t == 3)
            n = GFS_SEG_MAX_BLOCKS;
        uint32_t bs = t == 3 ? 4096 : sizes[rng() % 3];
        struct gfs_seg_header h, d;
        uint64_t objsz = make_header(&h, n, bs);
        if (objsz > UINT32_MAX) { /* offsets are 32 bits: keep the layout legal */
            gfs_seg_header_free(&h);
            continue;
        }
        size_t hs = gfs_seg_header_size(n);
        uint8_t *buf = malloc(hs);
        assert_non_null(buf);
        assert_int_equal(gfs_seg_encode_header(&h, buf, hs), (int)hs);
        size_t need = 0;
        assert_int_equal(gfs_seg_decode_header(buf, hs, objsz, &d, &need), 0);
        assert_same(&h, &d);
        assert_int_equal(d.header_len, hs - 4);
        assert_invariants(&d, objsz);
        gfs_seg_header_free(&d);
        /* Unknown object size: payload bounds are not checked, all else is. */
        assert_int_equal(gfs_seg_decode_header(buf, hs, 0, &d, NULL), 0);
        assert_same(&h, &d);
        gfs_seg_header_free(&d);
        /* Extra bytes after the header (the payloads) are fine. */
        uint8_t *big = calloc(1, hs + 100);
        assert_non_null(big);
        memcpy(big, buf, hs);
        assert_int_equal(gfs_seg_decode_header(big, hs + 100, objsz, &d, NULL), 0);
        gfs_seg_header_free(&d);
        free(big);
        free(buf);
        gfs_seg_header_free(&h);
    }
}

static void test_encode_refuses(void **state)
{
    (void)state;
    struct gfs_seg_header h;
    make_header(&h, 4, 4096);
    h.entries[0].flags = 0;
    h.entries[0].length = h.entries[0].raw_length = 4096;
    h.entries[0].offset = (uint32_t)gfs_seg_header_size(4);
    h.entries[0].crc = 1;
    size_t hs = gfs_seg_header_size(4);
    uint8_t buf[512];
    assert_true(hs <= sizeof(buf));
    assert_int_equal(gfs_seg_encode_header(&h, buf, hs - 1), -EINVAL);
    uint64_t saved = h.entries[1].block_index;
    h.entries[1].block_index = h.entries[0].block_index;
    assert_int_equal(gfs_seg_encode_header(&h, buf, hs), -EINVAL);
    h.entries[1].block_index = saved;
    h.block_size = 5000;
    assert_int_equal(gfs_seg_encode_header(&h, buf, hs), -EINVAL);
    h.block_size = 4096;
    h.nblocks = GFS_SEG_MAX_BLOCKS + 1;
    assert_int_equal(gfs_seg_encode_header(&h, buf, sizeof(buf)), -EINVAL);
    h.nblocks = 4;
    assert_int_equal(gfs_seg_encode_header(NULL, buf, hs), -EINVAL);
    assert_int_equal(gfs_seg_encode_header(&h, NULL, hs), -EINVAL);
    gfs_seg_header_free(&h);
}

/* ---- hostile headers ---- */

/* Base case: 4 entries of block size 4096.
 *   e0: block 1, plain, at hs
 *   e1: block 5, hole
 *   e2: block 7, zstd, 1000 bytes
 *   e3: block 9, plain */
#define BASE_N 4u
#define BASE_BS 4096u
#define BASE_HS (64u + 40u * BASE_N + 4u)
#define OFF0 BASE_HS
#define OFF2 (BASE_HS + BASE_BS)
#define OFF3 (BASE_HS + BASE_BS + 1000u)
#define OBJSZ (BASE_HS + 2u * BASE_BS + 1000u)

struct base {
    uint8_t buf[BASE_HS];
    size_t hs;
    uint64_t objsz;
};

static void make_base(struct base *b)
{
    struct gfs_seg_header h = { .epoch = 3, .seq = 77, .nblocks = BASE_N, .block_size = BASE_BS };
    struct gfs_seg_entry e[BASE_N];
    memset(e, 0, sizeof(e));
    b->hs = gfs_seg_header_size(BASE_N);
    uint32_t off = (uint32_t)b->hs;
    e[0] = (struct gfs_seg_entry){ 1, 10, off, BASE_BS, BASE_BS, 0x1111, 0 };
    off += BASE_BS;
    e[1] = (struct gfs_seg_entry){ 5, 11, 0, 0, 0, 0, GFS_SEGF_HOLE };
    e[2] = (struct gfs_seg_entry){ 7, 12, off, 1000, BASE_BS, 0x2222, GFS_SEGF_ZSTD };
    off += 1000;
    e[3] = (struct gfs_seg_entry){ 9, 13, off, BASE_BS, BASE_BS, 0x3333, 0 };
    off += BASE_BS;
    b->objsz = off;
    h.entries = e;
    assert_int_equal(gfs_seg_encode_header(&h, b->buf, sizeof(b->buf)), (int)b->hs);
}

#define ENT(i) (64u + 40u * (i))
enum { F_IDX = 0, F_WSEQ = 8, F_OFF = 16, F_LEN = 20, F_RAW = 24, F_CRC = 28, F_FLAGS = 32, F_RES = 36 };

struct hostile {
    const char *what;
    size_t pos;       /* byte position to overwrite */
    int width;        /* 4 or 8 */
    uint64_t value;
    int keep_crc;     /* 1: leave the (now wrong) CRC */
    uint64_t objsz;   /* OBJ_BASE, OBJ_UNKNOWN, or a size to pass */
    int want;
};

#define OBJ_BASE 0   /* pass the base object size */
#define OBJ_UNKNOWN 1 /* pass 0: size unknown */

static const struct hostile hostile_cases[] = {
    { "bad magic", 0, 4, 0x58534647, 0, OBJ_BASE, -EBADMSG },
    { "bad magic tail", 4, 4, 0x30304745, 0, OBJ_BASE, -EBADMSG },
    { "version 0", 8, 4, 0, 0, OBJ_BASE, -EBADMSG },
    { "version 2", 8, 4, 2, 0, OBJ_BASE, -EBADMSG },
    { "unknown header flag", 12, 4, 2, 0, OBJ_BASE, -EBADMSG },
    { "MAC flag without a verifier", 12, 4, GFS_SEG_HDR_MAC, 0, OBJ_BASE, -EACCES },
    { "header reserved", 44, 4, 1, 0, OBJ_BASE, -EBADMSG },
    { "nblocks 2^32-1", 32, 4, 0xFFFFFFFFu, 0, OBJ_BASE, -EBADMSG },
    { "nblocks max+1", 32, 4, GFS_SEG_MAX_BLOCKS + 1, 0, OBJ_BASE, -EBADMSG },
    { "nblocks 3 (header_len mismatch)", 32, 4, 3, 0, OBJ_BASE, -EBADMSG },
    { "nblocks 5 (header_len mismatch)", 32, 4, 5, 0, OBJ_BASE, -EBADMSG },
    { "header_len +40", 40, 4, 64 + 40 * 5, 0, OBJ_BASE, -EBADMSG },
    { "header_len -1", 40, 4, 64 + 40 * BASE_N - 1, 0, OBJ_BASE, -EBADMSG },
    { "header_len 0", 40, 4, 0, 0, OBJ_BASE, -EBADMSG },
    { "block_size 0", 36, 4, 0, 0, OBJ_BASE, -EBADMSG },
    { "block_size 3000", 36, 4, 3000, 0, OBJ_BASE, -EBADMSG },
    { "block_size 4097", 36, 4, 4097, 0, OBJ_BASE, -EBADMSG },
    { "block_size 2048", 36, 4, 2048, 0, OBJ_BASE, -EBADMSG },
    { "block_size 8 MiB", 36, 4, 8u << 20, 0, OBJ_BASE, -EBADMSG },
    { "block_size 2^31", 36, 4, 1u << 31, 0, OBJ_BASE, -EBADMSG },
    { "offset 0", ENT(0) + F_OFF, 4, 0, 0, OBJ_BASE, -EBADMSG },
    { "offset inside header", ENT(0) + F_OFF, 4, BASE_HS - 1, 0, OBJ_BASE, -EBADMSG },
    { "offset at header CRC", ENT(0) + F_OFF, 4, BASE_HS - 4, 0, OBJ_UNKNOWN, -EBADMSG },
    { "offset+length past end", ENT(3) + F_OFF, 4, OFF3 + 1, 0, OBJ_BASE, -EBADMSG },
    { "offset far past end", ENT(3) + F_OFF, 4, 0xFFFFF000u, 0, OBJ_BASE, -EBADMSG },
    { "zstd length past end", ENT(2) + F_LEN, 4, OBJSZ, 0, OBJ_BASE, -EBADMSG },
    { "overlap e3 into e2", ENT(3) + F_OFF, 4, OFF2 + 999, 0, OBJ_BASE, -EBADMSG },
    { "overlap e0 into e2", ENT(0) + F_OFF, 4, OFF2 - 100, 0, OBJ_UNKNOWN, -EBADMSG },
    { "same offset twice", ENT(3) + F_OFF, 4, OFF0, 0, OBJ_UNKNOWN, -EBADMSG },
    { "zstd grows into e3", ENT(2) + F_LEN, 4, 1001, 0, OBJ_UNKNOWN, -EBADMSG },
    { "length 0 without HOLE", ENT(2) + F_LEN, 4, 0, 0, OBJ_BASE, -EBADMSG },
    { "HOLE with length", ENT(1) + F_LEN, 4, 10, 0, OBJ_BASE, -EBADMSG },
    { "HOLE with offset", ENT(1) + F_OFF, 4, OBJSZ - 1, 0, OBJ_BASE, -EBADMSG },
    { "HOLE with raw_length", ENT(1) + F_RAW, 4, BASE_BS, 0, OBJ_BASE, -EBADMSG },
    { "HOLE with crc", ENT(1) + F_CRC, 4, 5, 0, OBJ_BASE, -EBADMSG },
    { "HOLE with ZSTD", ENT(1) + F_FLAGS, 4, GFS_SEGF_HOLE | GFS_SEGF_ZSTD, 0, OBJ_BASE, -EBADMSG },
    { "HOLE flag on data", ENT(0) + F_FLAGS, 4, GFS_SEGF_HOLE, 0, OBJ_BASE, -EBADMSG },
    { "unknown entry flag", ENT(0) + F_FLAGS, 4, 0x10, 0, OBJ_BASE, -EBADMSG },
    { "HOLE with TRAILER", ENT(1) + F_FLAGS, 4, GFS_SEGF_HOLE | GFS_SEGF_TRAILER, 0, OBJ_BASE,
      -EBADMSG },
    { "trailer past the end", ENT(3) + F_FLAGS, 4, GFS_SEGF_TRAILER, 0, OBJ_BASE, -EBADMSG },
    { "trailer overlaps the next", ENT(0) + F_FLAGS, 4, GFS_SEGF_TRAILER, 0, OBJ_UNKNOWN,
      -EBADMSG },
    { "zstd trailer into e3", ENT(2) + F_FLAGS, 4, GFS_SEGF_ZSTD | GFS_SEGF_TRAILER, 0,
      OBJ_UNKNOWN, -EBADMSG },
    { "entry reserved", ENT(2) + F_RES, 4, 1, 0, OBJ_BASE, -EBADMSG },
    { "unsorted indexes", ENT(1) + F_IDX, 8, 0, 0, OBJ_BASE, -EBADMSG },
    { "duplicate index", ENT(3) + F_IDX, 8, 7, 0, OBJ_BASE, -EBADMSG },
    { "descending at end", ENT(3) + F_IDX, 8, 2, 0, OBJ_BASE, -EBADMSG },
    { "raw_length != block_size", ENT(0) + F_RAW, 4, BASE_BS / 2, 0, OBJ_BASE, -EBADMSG },
    { "raw_length 0 on data", ENT(2) + F_RAW, 4, 0, 0, OBJ_BASE, -EBADMSG },
    { "plain length != raw", ENT(0) + F_LEN, 4, BASE_BS - 1, 0, OBJ_BASE, -EBADMSG },
    { "zstd length > max stored", ENT(2) + F_LEN, 4, 0x7FFFFFFFu, 0, OBJ_UNKNOWN, -EBADMSG },
    { "CRC mismatch (entry)", ENT(0) + F_WSEQ, 8, 999, 1, OBJ_BASE, -EBADMSG },
    { "CRC mismatch (epoch)", 16, 8, 4, 1, OBJ_BASE, -EBADMSG },
    { "CRC field zeroed", BASE_HS - 4, 4, 0, 1, OBJ_BASE, -EBADMSG },
    { "object smaller than header", 16, 8, 3, 0, 100, -EBADMSG },
    /* controls: the fix-up machinery itself leaves valid headers valid */
    { "control: new write_seq", ENT(0) + F_WSEQ, 8, 12345, 0, OBJ_BASE, 0 },
    { "control: huge gap before e3", ENT(3) + F_OFF, 4, OFF3 + 50, 0, OBJ_UNKNOWN, 0 },
    { "control: trailer, size unknown", ENT(3) + F_FLAGS, 4, GFS_SEGF_TRAILER, 0, OBJ_UNKNOWN, 0 },
    { "control: trailer that fits", ENT(3) + F_FLAGS, 4, GFS_SEGF_TRAILER, 0, OBJSZ + 4, 0 },
};

static void test_hostile_table(void **state)
{
    (void)state;
    struct base b;
    make_base(&b);
    assert_int_equal(b.hs, BASE_HS);
    assert_int_equal(b.objsz, OBJSZ);
    for (size_t i = 0; i < sizeof(hostile_cases) / sizeof(hostile_cases[0]); i++) {
        const struct hostile *c = &hostile_cases[i];
        uint8_t buf[BASE_HS];
        memcpy(buf, b.buf, BASE_HS);
        if (c->width == 8)
            gfs_le64_put(buf + c->pos, c->value);
        else
            gfs_le32_put(buf + c->pos, (uint32_t)c->value);
        if (!c->keep_crc)
            gfs_le32_put(buf + BASE_HS - 4, gfs_crc32c(0, buf, BASE_HS - 4));
        uint64_t objsz = c->objsz == OBJ_BASE ? OBJSZ : c->objsz == OBJ_UNKNOWN ? 0 : c->objsz;
        struct gfs_seg_header h;
        size_t need = 0;
        int r = gfs_seg_decode_header(buf, BASE_HS, objsz, &h, &need);
        if (r != c->want)
            fail_msg("case \"%s\": got %d want %d", c->what, r, c->want);
        if (r == 0) {
            assert_invariants(&h, objsz);
            gfs_seg_header_free(&h);
        } else {
            assert_null(h.entries);
        }
    }
}

static void test_truncated(void **state)
{
    (void)state;
    struct base b;
    make_base(&b);
    struct gfs_seg_header h;
    for (size_t len = 0; len < BASE_HS; len++) {
        size_t need = 0;
        /* A fresh copy of just len bytes, so reading past it is caught by ASan. */
        uint8_t *p = malloc(len ? len : 1);
        assert_non_null(p);
        memcpy(p, b.buf, len);
        int r = gfs_seg_decode_header(len ? p : NULL, len, OBJSZ, &h, &need);
        if (r != -EAGAIN)
            fail_msg("len %zu: got %d", len, r);
        assert_int_equal(need, len < 64 ? 64 : BASE_HS);
        free(p);
    }
    /* Follow the protocol: fixed part first, then what it asks for. */
    size_t need = 0;
    assert_int_equal(gfs_seg_decode_header(b.buf, 64, 0, &h, &need), -EAGAIN);
    assert_int_equal(need, BASE_HS);
    assert_int_equal(gfs_seg_decode_header(b.buf, need, 0, &h, &need), 0);
    gfs_seg_header_free(&h);

    /* Foreign bytes are refused outright, not asked to be read further. */
    assert_int_equal(gfs_seg_decode_header("GFSSEX", 6, 0, &h, &need), -EBADMSG);
    assert_int_equal(gfs_seg_decode_header("<?xml", 5, 0, &h, &need), -EBADMSG);
    /* A huge nblocks must not turn into a huge *need. */
    uint8_t fixed[64];
    memcpy(fixed, b.buf, 64);
    gfs_le32_put(fixed + 32, 0xFFFFFFFFu);
    assert_int_equal(gfs_seg_decode_header(fixed, 64, 0, &h, &need), -EBADMSG);
    assert_int_equal(gfs_seg_decode_header(NULL, 10, 0, &h, &need), -EINVAL);
    assert_int_equal(gfs_seg_decode_header(b.buf, 10, 0, NULL, &need), -EINVAL);
}

static void test_random_mutation(void **state)
{
    (void)state;
    struct gfs_seg_header h;
    uint64_t objsz = make_header(&h, 30, 4096);
    size_t hs = gfs_seg_header_size(30);
    uint8_t *good = malloc(hs);
    assert_non_null(good);
    assert_int_equal(gfs_seg_encode_header(&h, good, hs), (int)hs);
    gfs_seg_header_free(&h);

    int accepted = 0;
    for (int t = 0; t < 10000; t++) {
        uint8_t *buf = malloc(hs);
        assert_non_null(buf);
        memcpy(buf, good, hs);
        int flips = 1 + (int)(rng() % 4);
        for (int f = 0; f < flips; f++) {
            size_t pos = rng() % hs;
            if (rng() % 2)
                buf[pos] ^= (uint8_t)(1u << (rng() % 8));
            else
                buf[pos] = (uint8_t)rng();
        }
        /* Half the time fix the CRC up so the semantic checks are reached. */
        if (t % 2)
            gfs_le32_put(buf + hs - 4, gfs_crc32c(0, buf, hs - 4));
        size_t len = (t % 7 == 0) ? rng() % (hs + 1) : hs;
        uint64_t os = (t % 3 == 0) ? 0 : objsz;
        size_t need = 0;
        int r = gfs_seg_decode_header(buf, len, os, &h, &need);
        if (r == 0) {
            accepted++;
            assert_invariants(&h, os);
            gfs_seg_header_free(&h);
        } else {
            /* -EACCES only for a (mutated-in) MAC flag: no verifier given. */
            assert_true(r == -EBADMSG || r == -EAGAIN ||
                        (r == -EACCES && (gfs_le32_get(buf + 12) & GFS_SEG_HDR_MAC)));
            if (r == -EAGAIN)
                assert_true(need > len && need <= gfs_seg_header_size(GFS_SEG_MAX_BLOCKS));
        }
        free(buf);
    }
    /* Flips of write_seq, crc or uuid bytes stay valid: some must pass. */
    assert_true(accepted > 0);
    free(good);
}

/* A payload read back checks against its trailer, or without one against
 * the CRC it is given: any flipped byte, a short or long read, fails. */
static void test_payload_check(void **state)
{
    (void)state;
    enum { LEN = 1000 };
    uint8_t p[LEN + 4];
    for (int i = 0; i < LEN; i++)
        p[i] = (uint8_t)(i * 7 + 3);
    uint32_t crc = gfs_crc32c(0, p, LEN), got = 0;
    assert_int_equal(gfs_seg_span(LEN, GFS_SEGF_TRAILER), LEN + 4);
    assert_int_equal(gfs_seg_span(LEN, GFS_SEGF_ZSTD), LEN);
    gfs_seg_put_trailer(p, LEN, crc);
    assert_int_equal(gfs_le32_get(p + LEN), crc);
    /* with a trailer the given crc is not used */
    assert_int_equal(gfs_seg_payload_check(p, LEN + 4, LEN, GFS_SEGF_TRAILER, 0, &got), 0);
    assert_int_equal(got, crc);
    assert_int_equal(gfs_seg_payload_check(p, LEN, LEN, GFS_SEGF_TRAILER, crc, NULL), -EBADMSG);
    assert_int_equal(gfs_seg_payload_check(p, LEN + 3, LEN, GFS_SEGF_TRAILER, crc, NULL),
                     -EBADMSG);
    assert_int_equal(gfs_seg_payload_check(NULL, LEN + 4, LEN, GFS_SEGF_TRAILER, crc, NULL),
                     -EBADMSG);
    for (int i = 0; i < LEN + 4; i += 97) {
        p[i] ^= 0x10;
        assert_int_equal(gfs_seg_payload_check(p, LEN + 4, LEN, GFS_SEGF_TRAILER, crc, NULL),
                         -EBADMSG);
        p[i] ^= 0x10;
    }
    p[LEN + 3] ^= 1; /* the trailer itself */
    assert_int_equal(gfs_seg_payload_check(p, LEN + 4, LEN, GFS_SEGF_TRAILER, crc, NULL),
                     -EBADMSG);
    p[LEN + 3] ^= 1;
    /* without a trailer: the CRC from the map */
    assert_int_equal(gfs_seg_payload_check(p, LEN, LEN, GFS_SEGF_ZSTD, crc, &got), 0);
    assert_int_equal(gfs_seg_payload_check(p, LEN, LEN, 0, crc ^ 1, NULL), -EBADMSG);
    assert_int_equal(gfs_seg_payload_check(p, LEN + 4, LEN, 0, crc, NULL), -EBADMSG);
}

static void test_keys(void **state)
{
    (void)state;
    char buf[128];
    assert_int_equal(gfs_seg_key(buf, sizeof(buf), "vm1", 1, 0x2a), 0);
    assert_string_equal(buf, "nbd/vm1/seg/0000000000000001-000000000000002a");
    assert_int_equal(gfs_seg_key(buf, sizeof(buf), "a.b_c-D", UINT64_MAX, 0), 0);
    assert_string_equal(buf, "nbd/a.b_c-D/seg/ffffffffffffffff-0000000000000000");
    assert_int_equal(gfs_seg_key(buf, 20, "vm1", 1, 2), -ENAMETOOLONG);
    static const char *bad_names[] = { "", ".hidden", "a/b", "..", "a b", "x\n", NULL };
    for (int i = 0; bad_names[i]; i++)
        assert_int_equal(gfs_seg_key(buf, sizeof(buf), bad_names[i], 1, 2), -EINVAL);
    assert_int_equal(gfs_seg_key(buf, sizeof(buf), NULL, 1, 2), -EINVAL);
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(gfs_seg_key(buf, sizeof(buf), longname, 1, 2), -EINVAL);

    uint64_t e, s;
    assert_int_equal(gfs_parse_epoch_seq("0000000000000001-000000000000002a", &e, &s), 0);
    assert_true(e == 1 && s == 42);
    assert_int_equal(gfs_parse_epoch_seq("ffffffffffffffff-fedcba9876543210", &e, &s), 0);
    assert_true(e == UINT64_MAX && s == 0xfedcba9876543210ull);
    /* Round trip through the key. */
    assert_int_equal(gfs_seg_key(buf, sizeof(buf), "vm", 0xabc, 0xdef), 0);
    assert_int_equal(gfs_parse_epoch_seq(buf + strlen("nbd/vm/seg/"), &e, &s), 0);
    assert_true(e == 0xabc && s == 0xdef);

    static const char *bad_tails[] = {
        "",
        "0000000000000001",
        "0000000000000001-",
        "0000000000000001-00000000000002a",    /* 15 digits */
        "0000000000000001-000000000000002a0",  /* 17 digits */
        "000000000000001-000000000000002a",    /* 15 digits epoch */
        "0000000000000001-000000000000002A",   /* uppercase */
        "000000000000000G-000000000000002a",
        "0000000000000001_000000000000002a",
        "0000000000000001--00000000000002a",
        "+000000000000001-000000000000002a",
        " 000000000000001-000000000000002a",
        "0000000000000001-000000000000002a ",
        "0000000000000001-000000000000002a\n",
        "0000000000000001-000000000000002a/x",
        "0x00000000000001-000000000000002a",
        "-000000000000001-000000000000002a",
        NULL,
    };
    for (int i = 0; bad_tails[i]; i++)
        if (gfs_parse_epoch_seq(bad_tails[i], &e, &s) != -EINVAL)
            fail_msg("accepted \"%s\"", bad_tails[i]);
    assert_int_equal(gfs_parse_epoch_seq(NULL, &e, &s), -EINVAL);
}

/* ---- header authentication ---- */

static struct gfs_codec *codec_with(uint8_t keybyte, const uint8_t uuid[16])
{
    uint8_t key[GFS_KEY_LEN];
    memset(key, keybyte, sizeof(key));
    struct gfs_codec_params p = { .block_size = 4096, .data_key = keybyte ? key : NULL };
    memcpy(p.volume_uuid, uuid, 16);
    struct gfs_codec *c = NULL;
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    return c;
}

/* key_gen: written and read back on sealed headers, covered by the MAC,
 * -ENOKEY for a generation the reader does not hold; refused on unsealed
 * ones both ways (encode -EINVAL; a crafted header with a valid CRC
 * -EBADMSG). */
static void test_key_gen(void **state)
{
    (void)state;
    static const uint8_t uuid[16] = { 9, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    struct gfs_codec *sealed = codec_with(0x42, uuid);
    struct gfs_seg_entry one = { 7, 1, (uint32_t)gfs_seg_header_size_mac(1, 1), 4096, 4096, 9,
                                 GFS_SEGF_SEALED };
    struct gfs_seg_header h = { .epoch = 3, .seq = 4, .nblocks = 1, .block_size = 4096,
                                .entries = &one, .key_gen = 1 };
    memcpy(h.volume_uuid, uuid, 16);
    uint8_t buf[512];
    size_t hs = gfs_seg_header_size_mac(1, 1);
    assert_int_equal(gfs_seg_encode_header_mac(&h, buf, sizeof buf, sealed), (int)hs);
    assert_int_equal(gfs_le32_get(buf + 44), 1);
    struct gfs_seg_header d;
    assert_int_equal(gfs_seg_decode_header_mac(buf, hs, 0, &d, NULL, sealed), 0);
    assert_int_equal(d.key_gen, 1);
    gfs_seg_header_free(&d);
    /* the MAC covers it: as legacy (0, a generation the codec holds) the
     * CRC passes and the MAC does not */
    gfs_le32_put(buf + 44, 0);
    size_t hl = gfs_seg_header_size(1) - 4;
    gfs_le32_put(buf + hl, gfs_crc32c(0, buf, hl));
    assert_int_equal(gfs_seg_decode_header_mac(buf, hs, 0, &d, NULL, sealed), -EBADMSG);
    /* a generation the reader does not hold: -ENOKEY, before the MAC */
    gfs_le32_put(buf + 44, 0xfffffff0u);
    gfs_le32_put(buf + hl, gfs_crc32c(0, buf, hl));
    assert_int_equal(gfs_seg_decode_header_mac(buf, hs, 0, &d, NULL, sealed), -ENOKEY);
    /* unsealed */
    one.offset = (uint32_t)gfs_seg_header_size(1);
    one.flags = 0;
    assert_int_equal(gfs_seg_encode_header(&h, buf, sizeof buf), -EINVAL);
    h.key_gen = 0;
    assert_int_equal(gfs_seg_encode_header(&h, buf, sizeof buf), (int)gfs_seg_header_size(1));
    assert_int_equal(gfs_seg_decode_header(buf, sizeof buf, 0, &d, NULL), 0);
    assert_int_equal(d.key_gen, 0);
    gfs_seg_header_free(&d);
    gfs_le32_put(buf + 44, 1);
    gfs_le32_put(buf + hl, gfs_crc32c(0, buf, hl));
    assert_int_equal(gfs_seg_decode_header(buf, sizeof buf, 0, &d, NULL), -EBADMSG);
    gfs_codec_free(sealed);
}

static void test_mac_round_trip(void **state)
{
    (void)state;
    static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    struct gfs_codec *sealed = codec_with(0x42, uuid);
    struct gfs_codec *other = codec_with(0x43, uuid);
    struct gfs_codec *plain = codec_with(0, uuid);
    for (int t = 0; t < 50; t++) {
        uint32_t n = t == 0 ? 0 : (uint32_t)(rng() % 60);
        size_t hs = gfs_seg_header_size_mac(n, 1);
        assert_int_equal(hs, gfs_seg_header_size(n) + GFS_SEG_MAC_LEN);
        assert_int_equal(gfs_seg_header_size_mac(n, 0), gfs_seg_header_size(n));
        struct gfs_seg_header h, d;
        uint64_t objsz = make_header_at(&h, n, 4096, hs);
        uint8_t *buf = malloc(hs);
        assert_non_null(buf);
        assert_int_equal(gfs_seg_encode_header_mac(&h, buf, hs, sealed), (int)hs);
        assert_int_equal(gfs_le32_get(buf + 12), GFS_SEG_HDR_MAC);
        assert_int_equal(gfs_seg_decode_header_mac(buf, hs, objsz, &d, NULL, sealed), 0);
        assert_same(&h, &d);
        assert_int_equal(d.flags, GFS_SEG_HDR_MAC);
        assert_int_equal(d.header_len, gfs_seg_header_size(n) - 4);
        assert_invariants(&d, objsz);
        gfs_seg_header_free(&d);
        /* No verifier, or one without a key: refused, nothing returned. */
        assert_int_equal(gfs_seg_decode_header(buf, hs, objsz, &d, NULL), -EACCES);
        assert_null(d.entries);
        assert_int_equal(gfs_seg_decode_header_mac(buf, hs, objsz, &d, NULL, plain), -EACCES);
        /* Another key (another volume's segment with the same uuid). */
        assert_int_equal(gfs_seg_decode_header_mac(buf, hs, objsz, &d, NULL, other), -EBADMSG);
        assert_null(d.entries);
        /* The MAC is part of what must be read. */
        size_t need = 0;
        assert_int_equal(gfs_seg_decode_header_mac(buf, hs - 1, 0, &d, &need, sealed), -EAGAIN);
        assert_int_equal(need, hs);
        assert_int_equal(gfs_seg_decode_header_mac(buf, 64, 0, &d, &need, sealed), -EAGAIN);
        assert_int_equal(need, hs);
        /* An unsealed codec encodes exactly the plain format. */
        if (n) {
            size_t ps = gfs_seg_header_size(n);
            uint8_t *pb = malloc(ps), *pb2 = malloc(ps);
            assert_true(pb && pb2);
            assert_int_equal(gfs_seg_encode_header_mac(&h, pb, ps, plain), (int)ps);
            assert_int_equal(gfs_seg_encode_header(&h, pb2, ps), (int)ps);
            assert_memory_equal(pb, pb2, ps);
            assert_int_equal(gfs_le32_get(pb + 12), 0);
            free(pb);
            free(pb2);
        }
        free(buf);
        gfs_seg_header_free(&h);
    }
    /* Payloads laid out for a plain header run into the MAC: refused. */
    struct gfs_seg_entry one = { 7, 1, (uint32_t)gfs_seg_header_size(1), 4096, 4096, 9, 0 };
    struct gfs_seg_header h = { .epoch = 1, .seq = 2, .nblocks = 1, .block_size = 4096,
                                .entries = &one };
    uint8_t big[512];
    assert_int_equal(gfs_seg_encode_header(&h, big, sizeof(big)), (int)gfs_seg_header_size(1));
    assert_int_equal(gfs_seg_encode_header_mac(&h, big, sizeof(big), sealed), -EINVAL);
    one.offset = (uint32_t)gfs_seg_header_size_mac(1, 1) - 1;
    assert_int_equal(gfs_seg_encode_header_mac(&h, big, sizeof(big), sealed), -EINVAL);
    one.offset++;
    assert_int_equal(gfs_seg_encode_header_mac(&h, big, sizeof(big), sealed),
                     (int)gfs_seg_header_size_mac(1, 1));
    /* Room for the header but not its MAC. */
    assert_int_equal(gfs_seg_encode_header_mac(&h, big, gfs_seg_header_size(1), sealed), -EINVAL);
    /* A payload starting inside the MAC is refused on decode too (CRC and
     * MAC recomputed by a key holder: the structure rule still holds). */
    one.offset--;
    assert_int_equal(gfs_seg_encode_header(&h, big, sizeof(big)), (int)gfs_seg_header_size(1));
    size_t hl = gfs_seg_header_size(1) - 4;
    gfs_le32_put(big + 12, GFS_SEG_HDR_MAC);
    gfs_le32_put(big + hl, gfs_crc32c(0, big, hl));
    assert_int_equal(gfs_codec_mac(sealed, big, hl, big + hl + 4), 0);
    struct gfs_seg_header d;
    assert_int_equal(gfs_seg_decode_header_mac(big, gfs_seg_header_size_mac(1, 1), 0, &d, NULL,
                                               sealed),
                     -EBADMSG);
    one.offset++;
    assert_int_equal(gfs_seg_encode_header(&h, big, sizeof(big)), (int)gfs_seg_header_size(1));
    gfs_le32_put(big + 12, GFS_SEG_HDR_MAC);
    gfs_le32_put(big + hl, gfs_crc32c(0, big, hl));
    assert_int_equal(gfs_codec_mac(sealed, big, hl, big + hl + 4), 0);
    assert_int_equal(gfs_seg_decode_header_mac(big, gfs_seg_header_size_mac(1, 1), 0, &d, NULL,
                                               sealed),
                     0);
    gfs_seg_header_free(&d);
    gfs_codec_free(sealed);
    gfs_codec_free(other);
    gfs_codec_free(plain);
}

/* Fields the structural checks cannot refuse (epoch, seq, uuid, write_seq,
 * crc, hole positions...): flipped with the CRC recomputed, only the MAC
 * stands in the way. The same edit to a plain header is accepted (control). */
static void test_mac_forgery(void **state)
{
    (void)state;
    static const uint8_t uuid[16] = { 0xaa, 0xbb };
    struct gfs_codec *sealed = codec_with(0x11, uuid);
    const uint32_t n = 6;
    struct gfs_seg_header h;
    size_t ms = gfs_seg_header_size_mac(n, 1);
    uint64_t objsz = make_header_at(&h, n, 4096, ms);
    uint8_t *mac_hdr = malloc(ms), *plain_hdr = malloc(ms);
    assert_true(mac_hdr && plain_hdr);
    assert_int_equal(gfs_seg_encode_header_mac(&h, mac_hdr, ms, sealed), (int)ms);
    assert_int_equal(gfs_seg_encode_header(&h, plain_hdr, ms), (int)gfs_seg_header_size(n));
    size_t hl = gfs_seg_header_size(n) - 4;

    int forged_only_by_mac = 0;
    for (size_t pos = 0; pos < hl; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            uint8_t *a = malloc(ms), *b = malloc(ms);
            assert_true(a && b);
            memcpy(a, mac_hdr, ms);
            memcpy(b, plain_hdr, ms);
            a[pos] ^= (uint8_t)(1u << bit);
            b[pos] ^= (uint8_t)(1u << bit);
            gfs_le32_put(a + hl, gfs_crc32c(0, a, hl));
            gfs_le32_put(b + hl, gfs_crc32c(0, b, hl));
            struct gfs_seg_header d;
            int rm = gfs_seg_decode_header_mac(a, ms, objsz, &d, NULL, sealed);
            if (rm == 0)
                fail_msg("forged byte %zu bit %d accepted", pos, bit);
            assert_null(d.entries);
            int rp = gfs_seg_decode_header(b, ms, objsz, &d, NULL);
            if (rp == 0) {
                gfs_seg_header_free(&d);
                /* Structurally fine: the MAC alone refused it. */
                assert_int_equal(rm, -EBADMSG);
                forged_only_by_mac++;
            }
            free(a);
            free(b);
        }
    }
    assert_true(forged_only_by_mac > 100);

    /* A flipped MAC byte. */
    for (size_t pos = hl + 4; pos < ms; pos++) {
        uint8_t *a = malloc(ms);
        assert_non_null(a);
        memcpy(a, mac_hdr, ms);
        a[pos] ^= 0x80;
        struct gfs_seg_header d;
        assert_int_equal(gfs_seg_decode_header_mac(a, ms, objsz, &d, NULL, sealed), -EBADMSG);
        free(a);
    }

    /* Stripped MAC: flag cleared, CRC fixed. Fine for a plain reader, which
     * is the point: a sealed volume must refuse it. */
    uint8_t *s = malloc(ms);
    assert_non_null(s);
    memcpy(s, mac_hdr, ms);
    gfs_le32_put(s + 12, 0);
    gfs_le32_put(s + hl, gfs_crc32c(0, s, hl));
    struct gfs_seg_header d;
    assert_int_equal(gfs_seg_decode_header_mac(s, ms, objsz, &d, NULL, sealed), -EACCES);
    assert_int_equal(gfs_seg_decode_header(s, ms, objsz, &d, NULL), 0);
    gfs_seg_header_free(&d);
    /* An honest plain header is refused by a sealed reader as well. */
    assert_int_equal(gfs_seg_decode_header_mac(plain_hdr, ms, objsz, &d, NULL, sealed), -EACCES);
    free(s);

    free(mac_hdr);
    free(plain_hdr);
    gfs_seg_header_free(&h);
    gfs_codec_free(sealed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_hostile_table),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_random_mutation),
        cmocka_unit_test(test_payload_check),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_mac_round_trip),
        cmocka_unit_test(test_key_gen),
        cmocka_unit_test(test_mac_forgery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
