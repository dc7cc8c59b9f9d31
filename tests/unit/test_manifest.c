/*
 * test_manifest.c — the manifest format: round trips (plain and zstd, empty),
 * a table of hostile manifests (each breaking one rule, CRCs fixed up so the
 * rule itself refuses it, in plain and compressed form), zstd-specific
 * attacks (decompression bombs, frames without a size, trailing frames),
 * random bit flips, the key helper, and header authentication (the MAC of
 * sealed volumes: round trip, forged fields with fixed-up CRCs, stripped or
 * unexpected MACs).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "bytes.h"
#include "codec.h"
#include "crc32c.h"
#include "manifest.h"
#include "segment.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static uint64_t rng_state = 0x853C49E6748FEA9Bull;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void make_manifest(struct gfs_manifest *m, uint32_t nsegs, uint64_t n, uint32_t bs)
{
    memset(m, 0, sizeof(*m));
    m->epoch = rng() % 100;
    m->seq = rng();
    m->block_size = bs;
    m->nsegs = nsegs;
    m->nentries = n;
    m->segs = calloc(nsegs ? nsegs : 1, sizeof(*m->segs));
    m->entries = calloc(n ? n : 1, sizeof(*m->entries));
    assert_true(m->segs && m->entries);
    uint64_t e = 1, s = 0;
    for (uint32_t i = 0; i < nsegs; i++) {
        if (rng() % 4 == 0) {
            e++;
            s = rng() % 5;
        } else {
            s += 1 + rng() % 3;
        }
        m->segs[i].epoch = e;
        m->segs[i].seq = s;
    }
    uint64_t idx = rng() % 10;
    for (uint64_t i = 0; i < n; i++) {
        struct gfs_man_entry *x = &m->entries[i];
        idx += 1 + rng() % 4;
        x->block_index = idx;
        x->write_seq = rng();
        if (nsegs == 0 || rng() % 5 == 0) {
            x->seg = GFS_MAN_HOLE;
            x->flags = GFS_SEGF_HOLE;
            continue;
        }
        x->seg = (uint32_t)(rng() % nsegs);
        x->offset = (uint32_t)(gfs_seg_header_size(25) + rng() % 4000000);
        x->crc = (uint32_t)rng();
        if (rng() % 2) {
            x->flags = 0;
            x->length = bs;
        } else {
            x->flags = GFS_SEGF_ZSTD | (rng() % 3 == 0 ? GFS_SEGF_SEALED : 0);
            x->length = 1 + (uint32_t)(rng() % bs);
        }
    }
    /* Room for every index, sometimes exactly, sometimes a partial last block. */
    uint64_t blocks = idx + 1 + rng() % 3;
    m->volume_size = blocks * bs - (rng() % 2 ? 0 : (bs - 512));
}

static void assert_same(const struct gfs_manifest *a, const struct gfs_manifest *b)
{
    assert_true(a->epoch == b->epoch && a->seq == b->seq);
    assert_true(a->volume_size == b->volume_size);
    assert_int_equal(a->block_size, b->block_size);
    assert_int_equal(a->nsegs, b->nsegs);
    assert_true(a->nentries == b->nentries);
    for (uint32_t i = 0; i < a->nsegs; i++)
        assert_true(a->segs[i].epoch == b->segs[i].epoch && a->segs[i].seq == b->segs[i].seq);
    for (uint64_t i = 0; i < a->nentries; i++) {
        const struct gfs_man_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_true(x->block_index == y->block_index && x->write_seq == y->write_seq);
        assert_int_equal(x->seg, y->seg);
        assert_int_equal(x->offset, y->offset);
        assert_int_equal(x->length, y->length);
        assert_int_equal(x->crc, y->crc);
        assert_int_equal(x->flags, y->flags);
    }
}

/* The rules of manifest.h, stated independently, for decoded results. */
static void assert_invariants(const struct gfs_manifest *m)
{
    uint32_t bs = m->block_size;
    assert_true(bs >= 4096 && bs <= (4u << 20) && (bs & (bs - 1)) == 0);
    assert_true(m->volume_size % 512 == 0);
    assert_true(m->nsegs <= GFS_MAN_MAX_SEGS && m->nentries <= GFS_MAN_MAX_ENTRIES);
    uint64_t vb = (m->volume_size + bs - 1) / bs;
    for (uint32_t i = 1; i < m->nsegs; i++)
        assert_true(m->segs[i].epoch > m->segs[i - 1].epoch ||
                    (m->segs[i].epoch == m->segs[i - 1].epoch && m->segs[i].seq > m->segs[i - 1].seq));
    for (uint64_t i = 0; i < m->nentries; i++) {
        const struct gfs_man_entry *x = &m->entries[i];
        if (i)
            assert_true(x->block_index > m->entries[i - 1].block_index);
        assert_true(x->block_index < vb);
        assert_true((x->flags & ~15u) == 0);
        if (x->seg == GFS_MAN_HOLE) {
            assert_true(x->flags == GFS_SEGF_HOLE && !x->offset && !x->length && !x->crc);
        } else {
            assert_true(x->seg < m->nsegs && !(x->flags & GFS_SEGF_HOLE));
            assert_true(x->length > 0 && x->offset >= gfs_seg_header_size(1));
            if (!(x->flags & (GFS_SEGF_ZSTD | GFS_SEGF_SEALED)))
                assert_true(x->length == bs);
        }
    }
}

static void round_trip(const struct gfs_manifest *m, int compress)
{
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(gfs_manifest_encode(m, compress, &buf, &len), 0);
    assert_true(len >= GFS_MAN_FIXED_LEN);
    assert_int_equal(gfs_le32_get((uint8_t *)buf + 12), compress ? GFS_MANF_ZSTD : 0);
    struct gfs_manifest d;
    assert_int_equal(gfs_manifest_decode(buf, len, &d), 0);
    assert_same(m, &d);
    assert_invariants(&d);
    gfs_manifest_free(&d);
    assert_null(d.entries);
    free(buf);
}

static void test_round_trip(void **state)
{
    (void)state;
    static const uint32_t sizes[] = { 4096, 131072, 4u << 20 };
    for (int t = 0; t < 200; t++) {
        uint32_t nsegs = t < 4 ? (uint32_t)(t & 1) : (uint32_t)(rng() % 40);
        uint64_t n = t < 4 ? (uint64_t)(t >> 1) : rng() % 500;
        struct gfs_manifest m;
        make_manifest(&m, nsegs, n, sizes[rng() % 3]);
        round_trip(&m, 0);
        round_trip(&m, 1);
        gfs_manifest_free(&m);
    }
    /* A larger one, where compression matters. */
    struct gfs_manifest m;
    make_manifest(&m, 1000, 200000, 131072);
    round_trip(&m, 1);
    round_trip(&m, 0);
    gfs_manifest_free(&m);
}

static void test_empty(void **state)
{
    (void)state;
    struct gfs_manifest m = { .epoch = 1, .seq = 2, .volume_size = 0, .block_size = 131072 };
    round_trip(&m, 0);
    round_trip(&m, 1);
    void *buf;
    size_t len;
    assert_int_equal(gfs_manifest_encode(&m, 0, &buf, &len), 0);
    assert_int_equal(len, GFS_MAN_FIXED_LEN + 4);
    free(buf);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    struct gfs_manifest m;
    make_manifest(&m, 3, 10, 4096);
    void *buf;
    size_t len;
    m.block_size = 5000;
    assert_int_equal(gfs_manifest_encode(&m, 0, &buf, &len), -EINVAL);
    m.block_size = 4096;
    m.entries[1].block_index = m.entries[0].block_index;
    assert_int_equal(gfs_manifest_encode(&m, 1, &buf, &len), -EINVAL);
    m.entries[1].block_index = m.entries[0].block_index + 1;
    m.entries[1].seg = 3;
    m.entries[1].flags = 0;
    m.entries[1].length = 4096;
    m.entries[1].offset = 4096;
    assert_int_equal(gfs_manifest_encode(&m, 0, &buf, &len), -EINVAL);
    m.entries[1].seg = 2;
    assert_int_equal(gfs_manifest_encode(&m, 0, &buf, &len), 0);
    free(buf);
    m.volume_size = 4096; /* too small for the block indexes */
    assert_int_equal(gfs_manifest_encode(&m, 0, &buf, &len), -EINVAL);
    assert_int_equal(gfs_manifest_encode(NULL, 0, &buf, &len), -EINVAL);
    gfs_manifest_free(&m);
}

/* ---- hand-built manifests ---- */

struct fixed {
    uint32_t version, flags;
    uint64_t epoch, seq, volume_size;
    uint32_t nsegs, block_size;
    uint64_t nentries;
    uint32_t body_len;
};

/* fixed header + body as given (already compressed or not). */
static uint8_t *assemble(const struct fixed *f, const void *body, size_t blen, size_t *outlen)
{
    uint8_t *p = malloc(GFS_MAN_FIXED_LEN + blen);
    assert_non_null(p);
    memcpy(p, GFS_MAN_MAGIC, 8);
    gfs_le32_put(p + 8, f->version);
    gfs_le32_put(p + 12, f->flags);
    gfs_le64_put(p + 16, f->epoch);
    gfs_le64_put(p + 24, f->seq);
    gfs_le64_put(p + 32, f->volume_size);
    gfs_le32_put(p + 40, f->nsegs);
    gfs_le32_put(p + 44, f->block_size);
    gfs_le64_put(p + 48, f->nentries);
    gfs_le32_put(p + 56, f->body_len);
    gfs_le32_put(p + 60, gfs_crc32c(0, p, 60));
    if (blen)
        memcpy(p + GFS_MAN_FIXED_LEN, body, blen);
    *outlen = GFS_MAN_FIXED_LEN + blen;
    return p;
}

static uint8_t *zcompress(const void *src, size_t len, size_t *clen)
{
    size_t bound = ZSTD_compressBound(len);
    uint8_t *c = malloc(bound);
    assert_non_null(c);
    *clen = ZSTD_compress(c, bound, src, len, 3);
    assert_false(ZSTD_isError(*clen));
    return c;
}

/* Base: block size 4096, 100 blocks, 3 segments, 4 entries. */
#define B_NSEGS 3u
#define B_N 4u
#define SEGS_AT 0u
#define ENT_AT(i) (16u * B_NSEGS + 32u * (i))
#define FLG_AT(i) (16u * B_NSEGS + 32u * B_N + 4u * (i))
#define B_BODY (16u * B_NSEGS + 36u * B_N + 4u)
enum { E_IDX = 0, E_WSEQ = 8, E_SEG = 16, E_OFF = 20, E_LEN = 24, E_CRC = 28 };

static void base_manifest(struct gfs_manifest *m, struct gfs_man_seg *segs,
                          struct gfs_man_entry *ents)
{
    segs[0] = (struct gfs_man_seg){ 1, 1, 0 };
    segs[1] = (struct gfs_man_seg){ 1, 2, 0 };
    segs[2] = (struct gfs_man_seg){ 2, 0, 0 };
    ents[0] = (struct gfs_man_entry){ 2, 7, 0, 108, 4096, 0xaaaa, 0 };
    ents[1] = (struct gfs_man_entry){ 3, 8, GFS_MAN_HOLE, 0, 0, 0, GFS_SEGF_HOLE };
    ents[2] = (struct gfs_man_entry){ 10, 9, 2, 5000, 900, 0xbbbb, GFS_SEGF_ZSTD };
    ents[3] = (struct gfs_man_entry){ 99, 10, 1, 200, 4096, 0xcccc, 0 };
    *m = (struct gfs_manifest){ .epoch = 2, .seq = 0, .volume_size = 100 * 4096,
                                .block_size = 4096, .nsegs = B_NSEGS, .nentries = B_N,
                                .segs = segs, .entries = ents };
}

static void base_fixed(struct fixed *f, uint32_t flags, uint32_t body_len)
{
    *f = (struct fixed){ GFS_MAN_VERSION, flags, 2, 0, 100 * 4096, B_NSEGS, 4096, B_N, body_len };
}

struct body_case {
    const char *what;
    size_t pos;
    int width;
    uint64_t value;
    int keep_crc;
    int want;
};

static const struct body_case body_cases[] = {
    { "segs equal", 16 + 8, 8, 1, 0, -EBADMSG },
    { "segs descending epoch", 32, 8, 0, 0, -EBADMSG },
    { "segs descending seq", 16 + 8, 8, 0, 0, -EBADMSG },
    { "entries unsorted", ENT_AT(1) + E_IDX, 8, 1, 0, -EBADMSG },
    { "entries duplicate", ENT_AT(2) + E_IDX, 8, 3, 0, -EBADMSG },
    { "block index past volume", ENT_AT(3) + E_IDX, 8, 100, 0, -EBADMSG },
    { "block index 2^64-1", ENT_AT(3) + E_IDX, 8, UINT64_MAX, 0, -EBADMSG },
    { "seg index == nsegs", ENT_AT(0) + E_SEG, 4, B_NSEGS, 0, -EBADMSG },
    { "seg index huge", ENT_AT(0) + E_SEG, 4, 0xFFFFFFFEu, 0, -EBADMSG },
    { "hole with length", ENT_AT(1) + E_LEN, 4, 4096, 0, -EBADMSG },
    { "hole with offset", ENT_AT(1) + E_OFF, 4, 4096, 0, -EBADMSG },
    { "hole with crc", ENT_AT(1) + E_CRC, 4, 1, 0, -EBADMSG },
    { "hole without HOLE flag", FLG_AT(1), 4, 0, 0, -EBADMSG },
    { "hole with ZSTD too", FLG_AT(1), 4, GFS_SEGF_HOLE | GFS_SEGF_ZSTD, 0, -EBADMSG },
    { "data with HOLE flag", FLG_AT(0), 4, GFS_SEGF_HOLE, 0, -EBADMSG },
    { "unknown flag", FLG_AT(3), 4, 0x10, 0, -EBADMSG },
    { "data length 0", ENT_AT(2) + E_LEN, 4, 0, 0, -EBADMSG },
    { "plain length != block", ENT_AT(0) + E_LEN, 4, 4095, 0, -EBADMSG },
    { "length > max stored", ENT_AT(2) + E_LEN, 4, 0xFFFFFFFFu, 0, -EBADMSG },
    { "offset inside seg header", ENT_AT(3) + E_OFF, 4, 107, 0, -EBADMSG },
    { "body CRC mismatch", ENT_AT(0) + E_WSEQ, 8, 1234, 1, -EBADMSG },
    { "control: other write_seq", ENT_AT(0) + E_WSEQ, 8, 1234, 0, 0 },
    { "control: zstd length 1", ENT_AT(2) + E_LEN, 4, 1, 0, 0 },
};

static void test_hostile_body(void **state)
{
    (void)state;
    struct gfs_man_seg segs[B_NSEGS];
    struct gfs_man_entry ents[B_N];
    struct gfs_manifest m;
    base_manifest(&m, segs, ents);
    void *enc;
    size_t enclen;
    assert_int_equal(gfs_manifest_encode(&m, 0, &enc, &enclen), 0);
    assert_int_equal(enclen, GFS_MAN_FIXED_LEN + B_BODY);

    for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
        const struct body_case *c = &body_cases[i];
        uint8_t body[B_BODY];
        memcpy(body, (uint8_t *)enc + GFS_MAN_FIXED_LEN, B_BODY);
        if (c->width == 8)
            gfs_le64_put(body + c->pos, c->value);
        else
            gfs_le32_put(body + c->pos, (uint32_t)c->value);
        if (!c->keep_crc)
            gfs_le32_put(body + B_BODY - 4, gfs_crc32c(0, body, B_BODY - 4));
        for (int z = 0; z < 2; z++) {
            struct fixed f;
            size_t blen = B_BODY, len;
            uint8_t *stored = body, *cbuf = NULL;
            if (z) {
                cbuf = zcompress(body, B_BODY, &blen);
                stored = cbuf;
            }
            base_fixed(&f, z ? GFS_MANF_ZSTD : 0, (uint32_t)blen);
            uint8_t *obj = assemble(&f, stored, blen, &len);
            struct gfs_manifest d;
            int r = gfs_manifest_decode(obj, len, &d);
            if (r != c->want)
                fail_msg("case \"%s\" (%s): got %d want %d", c->what, z ? "zstd" : "plain", r,
                         c->want);
            if (r == 0) {
                assert_invariants(&d);
                gfs_manifest_free(&d);
            } else {
                assert_null(d.entries);
                assert_null(d.segs);
            }
            free(obj);
            free(cbuf);
        }
    }
    free(enc);
}

struct fixed_case {
    const char *what;
    size_t pos; /* byte in the fixed header; 999: see test */
    int width;
    uint64_t value;
    int keep_crc;
};

static const struct fixed_case fixed_cases[] = {
    { "bad magic", 0, 4, 0x4e414d58, 0 },
    { "version 0", 8, 4, 0, 0 },
    { "version 2", 8, 4, 2, 0 },
    { "unknown flag", 12, 4, 0x4, 0 },
    { "volume size not sector multiple", 32, 8, 100 * 4096 - 1, 0 },
    { "volume too small for nentries", 32, 8, 3 * 4096, 0 },
    { "volume 0 with entries", 32, 8, 0, 0 },
    { "nsegs + 1", 40, 4, B_NSEGS + 1, 0 },
    { "nsegs - 1", 40, 4, B_NSEGS - 1, 0 },
    { "nsegs > max", 40, 4, GFS_MAN_MAX_SEGS + 1, 0 },
    { "nsegs 2^32-1", 40, 4, 0xFFFFFFFFu, 0 },
    { "block size 0", 44, 4, 0, 0 },
    { "block size 6000", 44, 4, 6000, 0 },
    { "block size 8 MiB", 44, 4, 8u << 20, 0 },
    { "nentries + 1", 48, 8, B_N + 1, 0 },
    { "nentries - 1", 48, 8, B_N - 1, 0 },
    { "nentries > max", 48, 8, GFS_MAN_MAX_ENTRIES + 1, 0 },
    { "nentries 2^64-1", 48, 8, UINT64_MAX, 0 },
    { "body_len + 1", 56, 4, 0, 0 },  /* value set in the test */
    { "body_len - 1", 56, 4, 0, 0 },
    { "body_len 2^32-1", 56, 4, 0xFFFFFFFFu, 0 },
    { "header CRC mismatch", 16, 8, 3, 1 },
    { "header CRC zero", 60, 4, 0, 1 },
};

static void test_hostile_fixed(void **state)
{
    (void)state;
    struct gfs_man_seg segs[B_NSEGS];
    struct gfs_man_entry ents[B_N];
    struct gfs_manifest m;
    base_manifest(&m, segs, ents);
    for (int z = 0; z < 2; z++) {
        void *enc;
        size_t enclen;
        assert_int_equal(gfs_manifest_encode(&m, z, &enc, &enclen), 0);
        uint32_t body_len = (uint32_t)(enclen - GFS_MAN_FIXED_LEN);
        for (size_t i = 0; i < sizeof(fixed_cases) / sizeof(fixed_cases[0]); i++) {
            const struct fixed_case *c = &fixed_cases[i];
            uint8_t *obj = malloc(enclen);
            assert_non_null(obj);
            memcpy(obj, enc, enclen);
            uint64_t v = c->value;
            if (strcmp(c->what, "body_len + 1") == 0)
                v = body_len + 1;
            else if (strcmp(c->what, "body_len - 1") == 0)
                v = body_len - 1;
            if (c->width == 8)
                gfs_le64_put(obj + c->pos, v);
            else
                gfs_le32_put(obj + c->pos, (uint32_t)v);
            if (!c->keep_crc)
                gfs_le32_put(obj + 60, gfs_crc32c(0, obj, 60));
            struct gfs_manifest d;
            int r = gfs_manifest_decode(obj, enclen, &d);
            if (r != -EBADMSG)
                fail_msg("case \"%s\" (%s): got %d", c->what, z ? "zstd" : "plain", r);
            free(obj);
        }
        /* Truncated anywhere, or one byte too many. */
        for (size_t len = 0; len < enclen; len++) {
            uint8_t *obj = malloc(len ? len : 1);
            assert_non_null(obj);
            memcpy(obj, enc, len);
            struct gfs_manifest d;
            assert_int_equal(gfs_manifest_decode(len ? obj : NULL, len, &d), -EBADMSG);
            free(obj);
        }
        uint8_t *longer = calloc(1, enclen + 1);
        assert_non_null(longer);
        memcpy(longer, enc, enclen);
        struct gfs_manifest d;
        assert_int_equal(gfs_manifest_decode(longer, enclen + 1, &d), -EBADMSG);
        free(longer);
        free(enc);
    }
    struct gfs_manifest d;
    assert_int_equal(gfs_manifest_decode(NULL, 10, &d), -EINVAL);
}

/* A zstd frame written by hand: single segment, 8-byte content size, then
 * nblocks RLE blocks of rle_len bytes of zero each. */
static size_t rle_frame(uint8_t *out, uint64_t claimed, unsigned nblocks, uint32_t rle_len)
{
    size_t k = 0;
    gfs_le32_put(out, 0xFD2FB528u);
    k += 4;
    out[k++] = 0xE0; /* FCS 8 bytes, single segment, no checksum, no dict */
    gfs_le64_put(out + k, claimed);
    k += 8;
    for (unsigned i = 0; i < nblocks; i++) {
        uint32_t bh = (rle_len << 3) | (1u << 1) | (i + 1 == nblocks ? 1u : 0u);
        out[k++] = (uint8_t)bh;
        out[k++] = (uint8_t)(bh >> 8);
        out[k++] = (uint8_t)(bh >> 16);
        out[k++] = 0; /* the repeated byte */
    }
    return k;
}

/* Counts whose body is exactly want bytes: 16*nsegs + 36*n + 4. */
static void counts_for(uint64_t want, uint32_t *nsegs, uint64_t *n)
{
    uint64_t rest = want - 4;
    *nsegs = 0;
    while (rest % 36) {
        rest -= 16;
        (*nsegs)++;
    }
    *n = rest / 36;
}

static int decode_bomb(uint64_t claimed, unsigned nblocks, uint32_t rle_len)
{
    uint32_t nsegs;
    uint64_t n;
    counts_for(claimed, &nsegs, &n);
    uint8_t frame[4 + 1 + 8 + 4 * 64];
    assert_true(nblocks <= 64);
    size_t flen = rle_frame(frame, claimed, nblocks, rle_len);
    struct fixed f = { GFS_MAN_VERSION, GFS_MANF_ZSTD, 1, 1, (n + 1) * 131072, nsegs, 131072, n,
                       (uint32_t)flen };
    size_t len;
    uint8_t *obj = assemble(&f, frame, flen, &len);
    struct gfs_manifest d;
    int r = gfs_manifest_decode(obj, len, &d);
    if (r == 0)
        gfs_manifest_free(&d);
    free(obj);
    return r;
}

static void test_zstd_bombs(void **state)
{
    (void)state;
    /* Sanity of the hand-made frame: it does decode, to claimed bytes. */
    uint8_t frame[64];
    size_t flen = rle_frame(frame, 3 * 1000, 3, 1000);
    uint8_t out[3000];
    assert_int_equal(ZSTD_decompress(out, sizeof(out), frame, flen), 3000);

    /* ~600 GB claimed by a 17-byte frame (within the count limits): refused
     * as malformed, before any allocation of that size. In a child with a
     * 1 GiB address-space limit (not under ASan, which needs a huge address
     * space), an attempted allocation would turn into -ENOMEM instead. */
    uint64_t huge = 16ull * 3 + 36ull * ((1ull << 34) - 10) + 4;
#ifndef UNDER_ASAN
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = { 1ull << 30, 1ull << 30 };
        setrlimit(RLIMIT_AS, &rl);
        _exit(decode_bomb(huge, 1, 0) == -EBADMSG ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
#endif
    assert_int_equal(decode_bomb(huge, 1, 0), -EBADMSG);
    /* 64 MiB claimed by 4 RLE blocks: past zstd's possible expansion. */
    assert_int_equal(decode_bomb(64ull << 20, 4, 131072), -EBADMSG);
    /* Claims 400 bytes but its blocks produce 4 x 128 KiB: stopped at the cap. */
    assert_int_equal(decode_bomb(400, 4, 131072), -EBADMSG);
    /* Claims exactly what its blocks produce: decodes, then zeroes fail the CRC. */
    assert_int_equal(decode_bomb(4 * 100000, 4, 100000), -EBADMSG);
}

static void test_zstd_framing(void **state)
{
    (void)state;
    struct gfs_man_seg segs[B_NSEGS];
    struct gfs_man_entry ents[B_N];
    struct gfs_manifest m;
    base_manifest(&m, segs, ents);
    void *enc;
    size_t enclen;
    assert_int_equal(gfs_manifest_encode(&m, 0, &enc, &enclen), 0);
    const uint8_t *body = (uint8_t *)enc + GFS_MAN_FIXED_LEN;
    struct fixed f;
    struct gfs_manifest d;
    size_t len;

    /* ZSTD flag on a plain body. */
    base_fixed(&f, GFS_MANF_ZSTD, B_BODY);
    uint8_t *obj = assemble(&f, body, B_BODY, &len);
    assert_int_equal(gfs_manifest_decode(obj, len, &d), -EBADMSG);
    free(obj);

    /* A frame that does not record its content size. */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
    uint8_t cbuf[1024];
    size_t clen = ZSTD_compress2(cctx, cbuf, sizeof(cbuf), body, B_BODY);
    assert_false(ZSTD_isError(clen));
    assert_true(ZSTD_getFrameContentSize(cbuf, clen) == ZSTD_CONTENTSIZE_UNKNOWN);
    ZSTD_freeCCtx(cctx);
    base_fixed(&f, GFS_MANF_ZSTD, (uint32_t)clen);
    obj = assemble(&f, cbuf, clen, &len);
    assert_int_equal(gfs_manifest_decode(obj, len, &d), -EBADMSG);
    free(obj);

    /* The right frame, then a second (empty) frame after it. */
    size_t c1;
    uint8_t *z = zcompress(body, B_BODY, &c1);
    uint8_t two[2048];
    memcpy(two, z, c1);
    size_t c2 = ZSTD_compress(two + c1, sizeof(two) - c1, "", 0, 3);
    assert_false(ZSTD_isError(c2));
    base_fixed(&f, GFS_MANF_ZSTD, (uint32_t)(c1 + c2));
    obj = assemble(&f, two, c1 + c2, &len);
    assert_int_equal(gfs_manifest_decode(obj, len, &d), -EBADMSG);
    free(obj);
    /* ... and the same frame alone is fine (control). */
    base_fixed(&f, GFS_MANF_ZSTD, (uint32_t)c1);
    obj = assemble(&f, z, c1, &len);
    assert_int_equal(gfs_manifest_decode(obj, len, &d), 0);
    gfs_manifest_free(&d);
    free(obj);
    /* Cut short inside the frame (body_len kept consistent). */
    base_fixed(&f, GFS_MANF_ZSTD, (uint32_t)(c1 - 3));
    obj = assemble(&f, z, c1 - 3, &len);
    assert_int_equal(gfs_manifest_decode(obj, len, &d), -EBADMSG);
    free(obj);
    /* A frame of the body with one entry fewer than the header claims. */
    size_t cshort;
    uint8_t *zs = zcompress(body, B_BODY - 36, &cshort);
    base_fixed(&f, GFS_MANF_ZSTD, (uint32_t)cshort);
    obj = assemble(&f, zs, cshort, &len);
    assert_int_equal(gfs_manifest_decode(obj, len, &d), -EBADMSG);
    free(obj);
    free(zs);
    free(z);
    free(enc);
}

static void test_bit_flips(void **state)
{
    (void)state;
    for (int z = 0; z < 2; z++) {
        struct gfs_manifest m;
        make_manifest(&m, 8, 60, 65536);
        void *enc;
        size_t enclen;
        assert_int_equal(gfs_manifest_encode(&m, z, &enc, &enclen), 0);
        gfs_manifest_free(&m);
        int accepted = 0;
        for (int t = 0; t < 5000; t++) {
            uint8_t *obj = malloc(enclen);
            assert_non_null(obj);
            memcpy(obj, enc, enclen);
            int flips = 1 + (int)(rng() % 3);
            for (int f = 0; f < flips; f++)
                obj[rng() % enclen] ^= (uint8_t)(1u << (rng() % 8));
            /* Mostly fix the header CRC so the deeper checks are reached. */
            if (t % 4)
                gfs_le32_put(obj + 60, gfs_crc32c(0, obj, 60));
            /* Plain bodies: also fix the body CRC, for the semantic checks. */
            if (!z && t % 2) {
                size_t blen = enclen - GFS_MAN_FIXED_LEN;
                gfs_le32_put(obj + enclen - 4, gfs_crc32c(0, obj + GFS_MAN_FIXED_LEN, blen - 4));
            }
            struct gfs_manifest d;
            int r = gfs_manifest_decode(obj, enclen, &d);
            if (r == 0) {
                accepted++;
                assert_invariants(&d);
                gfs_manifest_free(&d);
            } else if (r == -EACCES) {
                /* a MAC flag flipped in, and no verifier to check it */
                assert_true(gfs_le32_get(obj + 12) & GFS_MANF_MAC);
            } else {
                assert_int_equal(r, -EBADMSG);
            }
            free(obj);
        }
        if (!z)
            assert_true(accepted > 0); /* write_seq/crc flips stay valid */
        free(enc);
    }
}

static void test_keys(void **state)
{
    (void)state;
    char buf[128];
    assert_int_equal(gfs_manifest_key(buf, sizeof(buf), "vm1", 2, 0x10), 0);
    assert_string_equal(buf, "nbd/vm1/manifest/0000000000000002-0000000000000010");
    uint64_t e, s;
    assert_int_equal(gfs_parse_epoch_seq(buf + strlen("nbd/vm1/manifest/"), &e, &s), 0);
    assert_true(e == 2 && s == 16);
    assert_int_equal(gfs_manifest_key(buf, 30, "vm1", 2, 0x10), -ENAMETOOLONG);
    assert_int_equal(gfs_manifest_key(buf, sizeof(buf), "../x", 2, 0x10), -EINVAL);
    assert_int_equal(gfs_manifest_key(buf, sizeof(buf), "", 2, 0x10), -EINVAL);
    assert_int_equal(gfs_manifest_key(buf, sizeof(buf), NULL, 2, 0x10), -EINVAL);
}

/* ---- header authentication ---- */

static struct gfs_codec *codec_with(uint8_t keybyte)
{
    uint8_t key[GFS_KEY_LEN];
    memset(key, keybyte, sizeof(key));
    struct gfs_codec_params p = { .block_size = 4096, .data_key = keybyte ? key : NULL };
    struct gfs_codec *c = NULL;
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    return c;
}

/* Key generations of segments: listed only under GFS_MANF_KEYGEN, which
 * needs the MAC; round trip; refused without a sealed codec; the flag on a
 * manifest without a MAC is refused even with the body's size right. */
static void test_keygens(void **state)
{
    (void)state;
    struct gfs_codec *sealed = codec_with(0x5a);
    for (int z = 0; z < 2; z++) {
        struct gfs_manifest m;
        struct gfs_man_seg segs[B_NSEGS];
        struct gfs_man_entry ents[B_N];
        base_manifest(&m, segs, ents);
        void *enc;
        size_t enclen, len0;
        assert_int_equal(gfs_manifest_encode_mac(&m, z, sealed, &enc, &len0), 0);
        assert_int_equal(gfs_le32_get((uint8_t *)enc + 12) & GFS_MANF_KEYGEN, 0);
        free(enc);
        segs[0].key_gen = 0; /* a legacy segment next to segment-keyed ones */
        segs[1].key_gen = 1;
        segs[2].key_gen = 0xfffffffeu;
        assert_int_equal(gfs_manifest_encode_mac(&m, z, sealed, &enc, &enclen), 0);
        uint8_t *e = enc;
        assert_int_equal(gfs_le32_get(e + 12), (z ? GFS_MANF_ZSTD : 0) | GFS_MANF_MAC |
                                                   GFS_MANF_KEYGEN);
        if (!z)
            assert_int_equal(enclen, len0 + 4 * B_NSEGS);
        struct gfs_manifest d;
        assert_int_equal(gfs_manifest_decode_mac(enc, enclen, sealed, &d), 0);
        assert_int_equal(d.nsegs, B_NSEGS);
        assert_int_equal(d.segs[0].key_gen, 0);
        assert_int_equal(d.segs[1].key_gen, 1);
        assert_int_equal(d.segs[2].key_gen, 0xfffffffeu);
        gfs_manifest_free(&d);
        free(enc);
        /* no MAC, no key generations */
        assert_int_equal(gfs_manifest_encode(&m, z, &enc, &enclen), -EINVAL);
    }
    /* an unsealed manifest whose body has room for key generations, flagged
     * KEYGEN: refused (the flag needs the MAC) */
    struct gfs_manifest m;
    struct gfs_man_seg segs[B_NSEGS];
    struct gfs_man_entry ents[B_N];
    base_manifest(&m, segs, ents);
    void *enc;
    size_t enclen;
    assert_int_equal(gfs_manifest_encode(&m, 0, &enc, &enclen), 0);
    uint8_t *big = calloc(1, enclen + 4 * B_NSEGS);
    assert_non_null(big);
    memcpy(big, enc, enclen - 4);
    size_t blen = enclen - GFS_MAN_FIXED_LEN + 4 * B_NSEGS;
    gfs_le32_put(big + GFS_MAN_FIXED_LEN + blen - 4, gfs_crc32c(0, big + GFS_MAN_FIXED_LEN, blen - 4));
    gfs_le32_put(big + 12, GFS_MANF_KEYGEN);
    gfs_le32_put(big + 56, (uint32_t)blen);
    gfs_le32_put(big + 60, gfs_crc32c(0, big, 60));
    struct gfs_manifest d;
    assert_int_equal(gfs_manifest_decode(big, enclen + 4 * B_NSEGS, &d), -EBADMSG);
    /* the same bytes without the flag are a manifest with 12 bytes too many */
    gfs_le32_put(big + 12, 0);
    gfs_le32_put(big + 60, gfs_crc32c(0, big, 60));
    assert_int_equal(gfs_manifest_decode(big, enclen + 4 * B_NSEGS, &d), -EBADMSG);
    free(big);
    free(enc);
    gfs_codec_free(sealed);
}

static void test_mac(void **state)
{
    (void)state;
    struct gfs_codec *sealed = codec_with(0x5a), *other = codec_with(0x5b), *plain = codec_with(0);
    for (int z = 0; z < 2; z++) {
        struct gfs_manifest m;
        make_manifest(&m, 5, 40, 65536);
        void *enc;
        size_t enclen;
        assert_int_equal(gfs_manifest_encode_mac(&m, z, sealed, &enc, &enclen), 0);
        uint8_t *e = enc;
        assert_int_equal(gfs_le32_get(e + 12), (z ? GFS_MANF_ZSTD : 0) | GFS_MANF_MAC);
        assert_int_equal(gfs_le32_get(e + 56), enclen - GFS_MAN_FIXED_LEN - GFS_MAN_MAC_LEN);
        struct gfs_manifest d;
        assert_int_equal(gfs_manifest_decode_mac(enc, enclen, sealed, &d), 0);
        assert_same(&m, &d);
        assert_invariants(&d);
        gfs_manifest_free(&d);
        /* No verifier / no key / another key. */
        assert_int_equal(gfs_manifest_decode(enc, enclen, &d), -EACCES);
        assert_null(d.entries);
        assert_int_equal(gfs_manifest_decode_mac(enc, enclen, plain, &d), -EACCES);
        assert_int_equal(gfs_manifest_decode_mac(enc, enclen, other, &d), -EBADMSG);
        assert_null(d.entries);
        /* Truncated anywhere (including inside the MAC), or a byte longer. */
        for (size_t len = 0; len < enclen; len++) {
            uint8_t *obj = malloc(len ? len : 1);
            assert_non_null(obj);
            memcpy(obj, enc, len);
            int r = gfs_manifest_decode_mac(len ? obj : NULL, len, sealed, &d);
            assert_int_equal(r, -EBADMSG);
            free(obj);
        }
        uint8_t *longer = calloc(1, enclen + 1);
        assert_non_null(longer);
        memcpy(longer, enc, enclen);
        assert_int_equal(gfs_manifest_decode_mac(longer, enclen + 1, sealed, &d), -EBADMSG);
        free(longer);

        /* Any flipped bit, with the header CRC (and the plain body's CRC)
         * recomputed, is refused; where the same edit to an unMAC'd
         * manifest is accepted, the MAC alone refused it. */
        void *penc;
        size_t penclen;
        assert_int_equal(gfs_manifest_encode(&m, z, &penc, &penclen), 0);
        assert_int_equal(penclen + GFS_MAN_MAC_LEN, enclen);
        int only_mac = 0;
        size_t blen = enclen - GFS_MAN_FIXED_LEN - GFS_MAN_MAC_LEN;
        for (size_t pos = 0; pos < enclen; pos++) {
            if (pos == 12 || (pos >= 60 && pos < 64))
                continue; /* the flags (covered below); the CRC, recomputed */
            if (!z && pos >= GFS_MAN_FIXED_LEN + blen - 4 && pos < GFS_MAN_FIXED_LEN + blen)
                continue; /* the plain body's CRC, recomputed */
            uint8_t *a = malloc(enclen), *b = malloc(penclen);
            assert_true(a && b);
            memcpy(a, enc, enclen);
            memcpy(b, penc, penclen);
            a[pos] ^= 0x10;
            if (pos < penclen)
                b[pos] ^= 0x10;
            gfs_le32_put(a + 60, gfs_crc32c(0, a, 60));
            gfs_le32_put(b + 60, gfs_crc32c(0, b, 60));
            if (!z) {
                uint8_t *ab = a + GFS_MAN_FIXED_LEN, *bb = b + GFS_MAN_FIXED_LEN;
                gfs_le32_put(ab + blen - 4, gfs_crc32c(0, ab, blen - 4));
                gfs_le32_put(bb + blen - 4, gfs_crc32c(0, bb, blen - 4));
            }
            int rm = gfs_manifest_decode_mac(a, enclen, sealed, &d);
            if (rm == 0)
                fail_msg("%s: flip at %zu accepted", z ? "zstd" : "plain", pos);
            assert_int_equal(rm, -EBADMSG);
            if (pos < penclen && gfs_manifest_decode(b, penclen, &d) == 0) {
                gfs_manifest_free(&d);
                only_mac++;
            }
            free(a);
            free(b);
        }
        assert_true(only_mac > 0);

        /* Stripped MAC (flag cleared, MAC cut off, CRC fixed): a plain reader
         * takes it, a sealed volume must not. */
        uint8_t *s = malloc(enclen);
        assert_non_null(s);
        memcpy(s, enc, enclen);
        gfs_le32_put(s + 12, z ? GFS_MANF_ZSTD : 0);
        gfs_le32_put(s + 60, gfs_crc32c(0, s, 60));
        assert_int_equal(gfs_manifest_decode(s, enclen - GFS_MAN_MAC_LEN, &d), 0);
        gfs_manifest_free(&d);
        assert_int_equal(gfs_manifest_decode_mac(s, enclen - GFS_MAN_MAC_LEN, sealed, &d),
                         -EACCES);
        /* An honest unMAC'd manifest, too. */
        assert_int_equal(gfs_manifest_decode_mac(penc, penclen, sealed, &d), -EACCES);
        /* An unsealed codec writes the plain format. */
        void *qenc;
        size_t qlen;
        assert_int_equal(gfs_manifest_encode_mac(&m, z, plain, &qenc, &qlen), 0);
        assert_int_equal(qlen, penclen);
        assert_memory_equal(qenc, penc, qlen);
        free(qenc);
        free(s);
        free(penc);
        free(enc);
        gfs_manifest_free(&m);
    }
    gfs_codec_free(sealed);
    gfs_codec_free(other);
    gfs_codec_free(plain);
}

/* ---- deltas (GFS_MANF_DELTA) ---- */

static void make_delta(struct gfs_manifest *m, uint32_t depth)
{
    make_manifest(m, 5, 20, 131072);
    m->epoch = 7;
    m->seq = 100;
    m->depth = depth;
    m->prev_epoch = 7;
    m->prev_seq = 90;
    m->base_seq = depth == 1 ? 90 : 40;
}

static void test_delta_round_trip(void **state)
{
    (void)state;
    struct gfs_codec *sealed = NULL;
    struct gfs_datakey dk = {.gen = 1};
    memset(dk.key, 0x5a, sizeof dk.key);
    struct gfs_codec_params p = {.block_size = 131072, .keys = &dk, .nkeys = 1};
    assert_int_equal(gfs_codec_new(&p, &sealed), 0);
    for (uint32_t depth = 1; depth <= GFS_MAN_MAX_CHAIN; depth += 21) {
        for (int z = 0; z < 2; z++) {
            for (int mac = 0; mac < 2; mac++) {
                struct gfs_manifest m;
                make_delta(&m, depth);
                void *buf;
                size_t len;
                assert_int_equal(gfs_manifest_encode_mac(&m, z, mac ? sealed : NULL, &buf, &len),
                                 0);
                uint32_t fl = gfs_le32_get((uint8_t *)buf + 12);
                assert_true(fl & GFS_MANF_DELTA);
                assert_int_equal(!!(fl & GFS_MANF_ZSTD), z);
                struct gfs_manifest d;
                assert_int_equal(gfs_manifest_decode_mac(buf, len, mac ? sealed : NULL, &d), 0);
                assert_same(&m, &d);
                assert_int_equal(d.depth, depth);
                assert_true(d.prev_epoch == 7 && d.prev_seq == 90 && d.base_seq == m.base_seq);
                gfs_manifest_free(&d);
                /* the link is readable from the first 96 bytes alone */
                struct gfs_manifest pk;
                assert_int_equal(gfs_manifest_peek(buf, GFS_MAN_FIXED_LEN, &pk), -EAGAIN);
                assert_int_equal(gfs_manifest_peek(buf, GFS_MAN_FIXED_LEN + GFS_MAN_LINK_LEN, &pk),
                                 1);
                assert_true(pk.depth == depth && pk.prev_seq == 90 && pk.base_seq == m.base_seq &&
                            pk.seq == 100);
                free(buf);
                /* a base: no flag, no link, peek says 0 */
                m.depth = 0;
                m.prev_epoch = m.prev_seq = m.base_seq = 0;
                assert_int_equal(gfs_manifest_encode_mac(&m, z, mac ? sealed : NULL, &buf, &len),
                                 0);
                assert_false(gfs_le32_get((uint8_t *)buf + 12) & GFS_MANF_DELTA);
                assert_int_equal(gfs_manifest_peek(buf, GFS_MAN_FIXED_LEN, &pk), 0);
                assert_int_equal(pk.depth, 0);
                free(buf);
                gfs_manifest_free(&m);
            }
        }
    }
    gfs_codec_free(sealed);
}

/* Encode refuses a link that breaks a rule; so does decode, with every CRC
 * fixed up so the rule itself is what refuses it. */
static void test_delta_refuses(void **state)
{
    (void)state;
    struct {
        uint32_t depth;
        uint64_t prev_epoch, prev_seq, base_seq;
    } bad[] = {
        {1, 6, 90, 90},                     /* extends another epoch */
        {1, 7, 100, 100},                   /* extends itself */
        {1, 7, 101, 101},                   /* extends a later one */
        {2, 7, 90, 91},                     /* base after prev */
        {1, 7, 90, 40},                     /* depth 1 but prev is not the base */
        {2, 7, 90, 90},                     /* depth 2 but prev is the base */
        {GFS_MAN_MAX_CHAIN + 1, 7, 90, 40}, /* too long a chain */
        {0, 7, 90, 90},                     /* a base with a link */
        {0, 0, 0, 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gfs_manifest m;
        make_delta(&m, 2);
        void *buf;
        size_t len;
        assert_int_equal(gfs_manifest_encode(&m, 0, &buf, &len), 0);
        m.depth = bad[i].depth;
        m.prev_epoch = bad[i].prev_epoch;
        m.prev_seq = bad[i].prev_seq;
        m.base_seq = bad[i].base_seq;
        void *b2;
        size_t l2;
        assert_int_equal(gfs_manifest_encode(&m, 0, &b2, &l2), -EINVAL);
        if (bad[i].depth) {
            /* the same link forged into the good object */
            uint8_t *q = (uint8_t *)buf + GFS_MAN_FIXED_LEN;
            gfs_le64_put(q, m.prev_epoch);
            gfs_le64_put(q + 8, m.prev_seq);
            gfs_le64_put(q + 16, m.base_seq);
            gfs_le32_put(q + 24, m.depth);
            gfs_le32_put(q + 28, gfs_crc32c(0, q, 28));
            struct gfs_manifest d;
            assert_int_equal(gfs_manifest_decode(buf, len, &d), -EBADMSG);
            assert_int_equal(gfs_manifest_peek(buf, len, &d), -EBADMSG);
        }
        free(buf);
        gfs_manifest_free(&m);
    }
}

/* Flag misuse and damage: a delta without its flag, a base with it, a
 * broken link CRC, a link cut short; every single-bit flip of a delta's
 * header and link is refused. */
static void test_delta_flags(void **state)
{
    (void)state;
    for (int z = 0; z < 2; z++) {
        struct gfs_manifest m;
        make_delta(&m, 3);
        uint8_t *buf;
        size_t len;
        assert_int_equal(gfs_manifest_encode(&m, z, (void **)&buf, &len), 0);
        struct gfs_manifest d;
        uint8_t *t = malloc(len + GFS_MAN_LINK_LEN);
        /* the flag cleared (header CRC fixed): the link reads as body */
        memcpy(t, buf, len);
        gfs_le32_put(t + 12, gfs_le32_get(t + 12) & ~GFS_MANF_DELTA);
        gfs_le32_put(t + 60, gfs_crc32c(0, t, 60));
        assert_int_equal(gfs_manifest_decode(t, len, &d), -EBADMSG);
        /* the link's CRC broken */
        memcpy(t, buf, len);
        t[GFS_MAN_FIXED_LEN + 3] ^= 1;
        assert_int_equal(gfs_manifest_decode(t, len, &d), -EBADMSG);
        /* cut inside the link, or just after it */
        for (size_t cut = GFS_MAN_FIXED_LEN; cut <= GFS_MAN_FIXED_LEN + GFS_MAN_LINK_LEN; cut++)
            assert_int_equal(gfs_manifest_decode(buf, cut, &d), -EBADMSG);
        /* every bit of header and link */
        for (size_t bit = 0; bit < 8 * (GFS_MAN_FIXED_LEN + GFS_MAN_LINK_LEN); bit++) {
            memcpy(t, buf, len);
            t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_int_equal(gfs_manifest_decode(t, len, &d), -EBADMSG);
        }
        free(buf);
        /* a base with the flag set (header CRC fixed): its body is no link */
        m.depth = 0;
        m.prev_epoch = m.prev_seq = m.base_seq = 0;
        assert_int_equal(gfs_manifest_encode(&m, z, (void **)&buf, &len), 0);
        memcpy(t, buf, len);
        gfs_le32_put(t + 12, gfs_le32_get(t + 12) | GFS_MANF_DELTA);
        gfs_le32_put(t + 60, gfs_crc32c(0, t, 60));
        assert_int_equal(gfs_manifest_decode(t, len, &d), -EBADMSG);
        /* and an unknown flag beyond DELTA */
        memcpy(t, buf, len);
        gfs_le32_put(t + 12, gfs_le32_get(t + 12) | 0x10u);
        gfs_le32_put(t + 60, gfs_crc32c(0, t, 60));
        assert_int_equal(gfs_manifest_decode(t, len, &d), -EBADMSG);
        free(t);
        free(buf);
        gfs_manifest_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_hostile_body),
        cmocka_unit_test(test_hostile_fixed),
        cmocka_unit_test(test_zstd_bombs),
        cmocka_unit_test(test_zstd_framing),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_keygens),
        cmocka_unit_test(test_delta_round_trip),
        cmocka_unit_test(test_delta_refuses),
        cmocka_unit_test(test_delta_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
