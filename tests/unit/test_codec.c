/*
 * test_codec.c — the block codec: round trips for every mix of compression
 * and sealing on random, compressible and incompressible blocks; that
 * compression shrinks and sealing hides; that every tampering with sealed
 * bytes (bit flips, truncation, other block index, volume, key, write_seq or
 * flags) is -EIO with a zeroed output; hostile zstd frames (decompression
 * bombs, frames without a size, trailing bytes) including ones sealed with
 * the right key; the header MAC; parameter checks; and four threads sharing
 * one codec.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <zstd.h>
#include <cmocka.h>

#include "bytes.h"
#include "codec.h"
#include "segment.h"
#include "sigv4.h"

static const uint8_t UUID_A[16] = { 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87,
                                    0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0f };
static const uint8_t UUID_B[16] = { 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87,
                                    0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0e };

static void fill_key(uint8_t key[GFS_KEY_LEN], uint8_t seed)
{
    for (int i = 0; i < GFS_KEY_LEN; i++)
        key[i] = (uint8_t)(seed * 31 + i * 7);
}

/* xorshift, seeded per caller so threads do not share state */
static uint64_t next_rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

enum pattern { P_RANDOM, P_TEXT, P_ZERO_TAIL };

static void fill(uint8_t *b, uint32_t bs, enum pattern p, uint64_t seed)
{
    uint64_t s = seed | 1;
    switch (p) {
    case P_RANDOM:
        for (uint32_t i = 0; i < bs; i++)
            b[i] = (uint8_t)next_rng(&s);
        break;
    case P_TEXT: {
        size_t k = 0;
        for (unsigned line = 0; k < bs; line++) {
            char tmp[96];
            int n = snprintf(tmp, sizeof(tmp), "seed %llu line %u: the quick brown fox %u\n",
                             (unsigned long long)seed, line, (unsigned)(next_rng(&s) % 10));
            for (int i = 0; i < n && k < bs; i++)
                b[k++] = (uint8_t)tmp[i];
        }
        break;
    }
    case P_ZERO_TAIL:
        /* a mostly-empty block: a little random data then zeroes */
        memset(b, 0, bs);
        for (uint32_t i = 0; i < 100; i++)
            b[i] = (uint8_t)next_rng(&s);
        break;
    }
}

static struct gfs_codec *make(uint32_t bs, int compress, const uint8_t *key, const uint8_t *uuid)
{
    struct gfs_codec_params p = { .block_size = bs, .compress = compress, .data_key = key };
    memcpy(p.volume_uuid, uuid, 16);
    struct gfs_codec *c = NULL;
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    assert_non_null(c);
    return c;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void test_params(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 1);
    struct gfs_codec *c = NULL;
    struct gfs_codec_params p = { .block_size = 4096 };
    assert_int_equal(gfs_codec_new(NULL, &c), -EINVAL);
    assert_int_equal(gfs_codec_new(&p, NULL), -EINVAL);
    static const uint32_t bad_bs[] = { 0, 512, 2048, 4095, 5000, 8u << 20, 0x80000000u };
    for (size_t i = 0; i < sizeof(bad_bs) / sizeof(bad_bs[0]); i++) {
        p.block_size = bad_bs[i];
        assert_int_equal(gfs_codec_new(&p, &c), -EINVAL);
    }
    p.block_size = 4096;
    p.compress = 2;
    assert_int_equal(gfs_codec_new(&p, &c), -EINVAL);
    p.compress = 1;
    p.level = ZSTD_maxCLevel() + 1;
    assert_int_equal(gfs_codec_new(&p, &c), -EINVAL);
    p.level = -1; /* zstd's fast levels are fine */
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    gfs_codec_free(c);
    gfs_codec_free(NULL);

    /* max_stored fits what segments and manifests accept, at every size. */
    for (uint32_t bs = 4096; bs <= (4u << 20); bs <<= 1) {
        struct gfs_codec *s = make(bs, 1, key, UUID_A), *u = make(bs, 1, NULL, UUID_A);
        assert_true(gfs_codec_max_stored(s) <= GFS_SEG_MAX_STORED(bs));
        assert_int_equal(gfs_codec_max_stored(s), bs + GFS_SEAL_OVERHEAD);
        assert_int_equal(gfs_codec_max_stored(u), bs);
        assert_int_equal(gfs_codec_block_size(s), bs);
        assert_int_equal(gfs_codec_sealed(s), 1);
        assert_int_equal(gfs_codec_sealed(u), 0);
        gfs_codec_free(s);
        gfs_codec_free(u);
    }
    assert_int_equal(gfs_codec_sealed(NULL), 0);
}

static void test_round_trips(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 2);
    static const uint32_t sizes[] = { 4096, 131072 };
    for (size_t si = 0; si < 2; si++) {
        uint32_t bs = sizes[si];
        for (int comp = 0; comp < 2; comp++) {
            for (int sealed = 0; sealed < 2; sealed++) {
                struct gfs_codec *c = make(bs, comp, sealed ? key : NULL, UUID_A);
                size_t ms = gfs_codec_max_stored(c);
                uint8_t *in = malloc(bs), *out = malloc(bs), *st = malloc(ms);
                assert_true(in && out && st);
                for (int pat = P_RANDOM; pat <= P_ZERO_TAIL; pat++) {
                    for (uint64_t b = 0; b < 3; b++) {
                        fill(in, bs, (enum pattern)pat, b * 977 + (uint64_t)pat);
                        uint32_t len = 0, flags = 0xdead;
                        assert_int_equal(gfs_codec_encode(c, b, in, st, &len, &flags), 0);
                        assert_true(len > 0 && len <= ms);
                        assert_int_equal(!!(flags & GFS_SEGF_SEALED), sealed);
                        assert_true((flags & ~(GFS_SEGF_SEALED | GFS_SEGF_ZSTD)) == 0);
                        int zstd = !!(flags & GFS_SEGF_ZSTD);
                        if (!comp || pat == P_RANDOM)
                            assert_int_equal(zstd, 0); /* incompressible: stored raw */
                        else
                            assert_int_equal(zstd, 1);
                        if (zstd) /* compressible data really shrinks */
                            assert_true(len < bs / 4 + (sealed ? GFS_SEAL_OVERHEAD : 0));
                        else
                            assert_int_equal(len, bs + (sealed ? GFS_SEAL_OVERHEAD : 0));
                        if (!sealed && !zstd)
                            assert_memory_equal(st, in, bs);
                        memset(out, 0xee, bs);
                        assert_int_equal(gfs_codec_decode(c, b, flags, st, len, out), 0);
                        assert_memory_equal(in, out, bs);
                    }
                }
                free(in);
                free(out);
                free(st);
                gfs_codec_free(c);
            }
        }
    }
}

/* The ciphertext shows nothing of a highly structured plaintext: no 16-byte
 * window of the output occurs anywhere in the input, and sealing the same
 * block twice gives different bytes (fresh nonces). */
static void test_sealing_hides(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 3);
    const uint32_t bs = 4096;
    for (int comp = 0; comp < 2; comp++) {
        struct gfs_codec *c = make(bs, comp, key, UUID_A);
        size_t ms = gfs_codec_max_stored(c);
        uint8_t *in = malloc(bs), *a = malloc(ms), *b = malloc(ms);
        assert_true(in && a && b);
        fill(in, bs, P_TEXT, 5);
        uint32_t la, lb, fa, fb;
        assert_int_equal(gfs_codec_encode(c, 9, in, a, &la, &fa), 0);
        assert_int_equal(gfs_codec_encode(c, 9, in, b, &lb, &fb), 0);
        assert_int_equal(la, lb);
        assert_int_equal(fa, fb);
        assert_true(memcmp(a, b, la) != 0);
        assert_true(memcmp(a, b, GFS_GCM_NONCE_LEN) != 0);
        for (uint32_t i = 0; i + 16 <= la; i++)
            if (memmem(in, bs, a + i, 16))
                fail_msg("output window at %u found in the plaintext", i);
        free(in);
        free(a);
        free(b);
        gfs_codec_free(c);
    }
}

/* Everything that must not open: -EIO and a zeroed output buffer. */
static void expect_eio(struct gfs_codec *c, uint64_t idx, uint64_t wseq, uint32_t flags,
                       const void *st, uint32_t len, uint8_t *out, uint32_t bs)
{
    memset(out, 0xcc, bs);
    int r = gfs_codec_decode_seq(c, idx, wseq, flags, st, len, out);
    if (r != -EIO)
        fail_msg("decode of idx %llu flags %#x len %u: got %d", (unsigned long long)idx, flags,
                 len, r);
    assert_true(all_zero(out, bs));
}

static void test_tampering(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN], key2[GFS_KEY_LEN];
    fill_key(key, 4);
    fill_key(key2, 5);
    const uint32_t bs = 4096;
    for (int comp = 0; comp < 2; comp++) {
        struct gfs_codec *c = make(bs, comp, key, UUID_A);
        struct gfs_codec *other_vol = make(bs, comp, key, UUID_B);
        struct gfs_codec *other_key = make(bs, comp, key2, UUID_A);
        struct gfs_codec *nokey = make(bs, comp, NULL, UUID_A);
        size_t ms = gfs_codec_max_stored(c);
        uint8_t *in = malloc(bs), *out = malloc(bs), *st = malloc(ms + 1), *t = malloc(ms + 1);
        assert_true(in && out && st && t);
        fill(in, bs, comp ? P_TEXT : P_RANDOM, 77);
        uint32_t len, flags;
        assert_int_equal(gfs_codec_encode_seq(c, 1234, 55, in, st, &len, &flags), 0);
        assert_int_equal(!!(flags & GFS_SEGF_ZSTD), comp);
        assert_int_equal(gfs_codec_decode_seq(c, 1234, 55, flags, st, len, out), 0);
        assert_memory_equal(in, out, bs);

        /* Every byte, one bit each (rotating through the 8). */
        for (uint32_t i = 0; i < len; i++) {
            memcpy(t, st, len);
            t[i] ^= (uint8_t)(1u << (i % 8));
            expect_eio(c, 1234, 55, flags, t, len, out, bs);
        }
        /* Truncated to every length, or one byte longer. */
        for (uint32_t l = 0; l < len; l++)
            expect_eio(c, 1234, 55, flags, st, l, out, bs);
        memcpy(t, st, len);
        t[len] = 0;
        expect_eio(c, 1234, 55, flags, t, len + 1, out, bs);
        /* Moved: another block index, volume, key, write_seq. */
        expect_eio(c, 1235, 55, flags, st, len, out, bs);
        expect_eio(c, 1234 + (1ull << 40), 55, flags, st, len, out, bs);
        expect_eio(other_vol, 1234, 55, flags, st, len, out, bs);
        expect_eio(other_key, 1234, 55, flags, st, len, out, bs);
        expect_eio(c, 1234, 54, flags, st, len, out, bs);
        memset(out, 0xcc, bs);
        assert_int_equal(gfs_codec_decode(c, 1234, flags, st, len, out), -EIO); /* seq 0 */
        /* Other flags: ZSTD toggled, SEALED dropped, HOLE, unknown bits. */
        expect_eio(c, 1234, 55, flags ^ GFS_SEGF_ZSTD, st, len, out, bs);
        expect_eio(c, 1234, 55, flags & ~GFS_SEGF_SEALED, st, len, out, bs);
        expect_eio(c, 1234, 55, GFS_SEGF_HOLE, st, len, out, bs);
        expect_eio(c, 1234, 55, flags | GFS_SEGF_HOLE, st, len, out, bs);
        expect_eio(c, 1234, 55, flags | 0x8, st, len, out, bs);
        expect_eio(c, 1234, 55, flags | 0x80000000u, st, len, out, bs);
        /* A sealed block and no key. */
        expect_eio(nokey, 1234, 55, flags, st, len, out, bs);
        /* A plain block where a seal is due (a sealed codec verifies every
         * byte it returns). */
        expect_eio(c, 1234, 55, 0, in, bs, out, bs);
        /* Bad arguments are not I/O errors. */
        assert_int_equal(gfs_codec_decode(NULL, 0, flags, st, len, out), -EINVAL);
        assert_int_equal(gfs_codec_decode(c, 0, flags, NULL, len, out), -EINVAL);
        assert_int_equal(gfs_codec_decode(c, 0, flags, st, len, NULL), -EINVAL);
        assert_int_equal(gfs_codec_encode(c, 0, NULL, st, &len, &flags), -EINVAL);
        /* Still fine after all that. */
        assert_int_equal(gfs_codec_decode_seq(c, 1234, 55, flags, st, len, out), 0);
        assert_memory_equal(in, out, bs);
        free(in);
        free(out);
        free(st);
        free(t);
        gfs_codec_free(c);
        gfs_codec_free(other_vol);
        gfs_codec_free(other_key);
        gfs_codec_free(nokey);
    }
}

/* A zstd frame written by hand: single segment, 8-byte content size, then
 * nblocks RLE blocks of rle_len bytes of 'x' each. */
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
        out[k++] = 'x';
    }
    return k;
}

/* Seal arbitrary plaintext the way the codec does (its key derivation and
 * additional data restated here), to hand a hostile but authentic payload to
 * the decoder: what a malicious key holder could write. */
static uint32_t seal_raw(const uint8_t key[GFS_KEY_LEN], const uint8_t uuid[16], uint32_t bs,
                         uint64_t idx, uint32_t flags, const uint8_t *pt, size_t len,
                         uint8_t *out)
{
    uint8_t bkey[32];
    assert_int_equal(gfs_hmac_sha256(key, GFS_KEY_LEN, "glidefs block key v1", 20, bkey), 0);
    uint8_t aad[48];
    memcpy(aad, "GFSBLK01", 8);
    memcpy(aad + 8, uuid, 16);
    gfs_le64_put(aad + 24, idx);
    gfs_le64_put(aad + 32, 0);
    gfs_le32_put(aad + 40, flags);
    gfs_le32_put(aad + 44, bs);
    memset(out, 0x5c, GFS_GCM_NONCE_LEN);
    assert_int_equal(gfs_aes256gcm_seal(bkey, out, aad, sizeof(aad), pt, len,
                                        out + GFS_GCM_NONCE_LEN, out + GFS_GCM_NONCE_LEN + len),
                     0);
    return (uint32_t)(len + GFS_SEAL_OVERHEAD);
}

/* The AEAD against the standard, not against itself: test case 16 of the
 * GCM specification (McGrew and Viega; AES-256, 96-bit IV, 20 bytes of
 * additional data, 60 bytes of plaintext). Then every single-bit change of
 * ciphertext, tag, nonce and additional data is refused with -EBADMSG and
 * leaves no plaintext behind; lengths 0 and 1 round-trip. */
static void hexin(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void test_gcm_known_answer(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], aad[20], pt[60], want_ct[60], want_tag[16];
    hexin("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
    hexin("cafebabefacedbaddecaf888", iv, 12);
    hexin("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    hexin("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", pt, 60);
    hexin("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662", want_ct, 60);
    hexin("76fc6ece0f4e1768cddf8853bb2d551b", want_tag, 16);
    uint8_t ct[60], tag[16], back[60];
    assert_int_equal(gfs_aes256gcm_seal(key, iv, aad, sizeof aad, pt, sizeof pt, ct, tag), 0);
    assert_memory_equal(ct, want_ct, sizeof ct);
    assert_memory_equal(tag, want_tag, sizeof tag);
    assert_int_equal(gfs_aes256gcm_open(key, iv, aad, sizeof aad, ct, sizeof ct, back, tag), 0);
    assert_memory_equal(back, pt, sizeof pt);

    uint8_t *fields[] = {ct, tag, iv, aad};
    size_t lens[] = {sizeof ct, sizeof tag, sizeof iv, sizeof aad};
    for (size_t f = 0; f < 4; f++) {
        for (size_t bit = 0; bit < lens[f] * 8; bit += 7) {
            fields[f][bit / 8] ^= (uint8_t)(1u << (bit % 8));
            memset(back, 0xa5, sizeof back);
            assert_int_equal(gfs_aes256gcm_open(key, iv, aad, sizeof aad, ct, sizeof ct, back, tag),
                             -EBADMSG);
            for (size_t i = 0; i < sizeof back; i++)
                assert_int_equal(back[i], 0); /* no unauthenticated plaintext */
            fields[f][bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
    for (size_t n = 0; n < 2; n++) {
        uint8_t one = 0x42, c1 = 0, b1 = 0;
        assert_int_equal(gfs_aes256gcm_seal(key, iv, NULL, 0, &one, n, &c1, tag), 0);
        assert_int_equal(gfs_aes256gcm_open(key, iv, NULL, 0, &c1, n, &b1, tag), 0);
        assert_int_equal(b1, n ? one : 0);
        tag[0] ^= 1;
        assert_int_equal(gfs_aes256gcm_open(key, iv, NULL, 0, &c1, n, &b1, tag), -EBADMSG);
    }
}

/* kB of this process's memory locked in RAM (VmLck in /proc/self/status). */
static long vm_locked_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
            break;
    fclose(f);
    assert_true(kb >= 0);
    return kb;
}

/* A sealed codec's keys sit in a page locked in RAM (where RLIMIT_MEMLOCK
 * allows: the test needs a limit of at least two pages), given back on
 * free; an unsealed codec locks nothing. */
static void test_keys_locked(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * 4096) {
        skip();
    }
    /* AddressSanitizer turns mlock into a no-op that succeeds: only where a
     * locked page shows in VmLck can the codec's be checked */
    void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(probe != MAP_FAILED);
    long base = vm_locked_kb();
    int shows = mlock(probe, 4096) == 0 && vm_locked_kb() > base;
    munlock(probe, 4096);
    munmap(probe, 4096);
    if (!shows) {
        skip();
    }
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 9);
    long before = vm_locked_kb();
    struct gfs_codec *plain = make(4096, 1, NULL, UUID_A);
    assert_int_equal(gfs_codec_keys_locked(plain), 0);
    assert_int_equal(vm_locked_kb(), before);
    struct gfs_codec *sealed = make(4096, 1, key, UUID_A);
    assert_int_equal(gfs_codec_keys_locked(sealed), 1);
    assert_true(vm_locked_kb() >= before + 4);
    gfs_codec_free(sealed);
    assert_int_equal(vm_locked_kb(), before);
    gfs_codec_free(plain);
}

static void test_hostile_frames(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 6);
    const uint32_t bs = 4096;
    struct gfs_codec *plain = make(bs, 1, NULL, UUID_A);
    struct gfs_codec *sealed = make(bs, 1, key, UUID_A);
    uint8_t *out = malloc(bs); /* exactly one block: ASan sees any overrun */
    assert_non_null(out);
    uint8_t frame[4096], st[4096 + GFS_SEAL_OVERHEAD];
    size_t n;

    /* Sanity: the hand-made frame decodes, and a right-sized one is accepted. */
    n = rle_frame(frame, bs, 1, bs);
    assert_int_equal(ZSTD_decompress(out, bs, frame, n), bs);
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)n, out), 0);
    for (uint32_t i = 0; i < bs; i++)
        assert_int_equal(out[i], 'x');
    uint32_t sl = seal_raw(key, UUID_A, bs, 3, GFS_SEGF_ZSTD | GFS_SEGF_SEALED, frame, n, st);
    assert_int_equal(gfs_codec_decode(sealed, 3, GFS_SEGF_ZSTD | GFS_SEGF_SEALED, st, sl, out), 0);
    assert_int_equal(out[bs - 1], 'x');

    struct hostile {
        const char *what;
        uint64_t claimed;
        unsigned nblocks;
        uint32_t rle_len;
    } cases[] = {
        { "claims a block, makes 4 (bomb)", bs, 4, bs },
        { "claims 64 MiB", 64ull << 20, 4, 16384 },
        { "claims 2^64-2", UINT64_MAX - 1, 1, 100 },
        { "claims a block, makes half", bs, 1, bs / 2 },
        { "claims half a block", bs / 2, 1, bs / 2 },
        { "claims a block + 1", bs + 1, 1, bs + 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = rle_frame(frame, cases[i].claimed, cases[i].nblocks, cases[i].rle_len);
        memset(out, 0xcc, bs);
        int r = gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)n, out);
        if (r != -EIO)
            fail_msg("%s (plain): got %d", cases[i].what, r);
        assert_true(all_zero(out, bs));
        sl = seal_raw(key, UUID_A, bs, 3, GFS_SEGF_ZSTD | GFS_SEGF_SEALED, frame, n, st);
        r = gfs_codec_decode(sealed, 3, GFS_SEGF_ZSTD | GFS_SEGF_SEALED, st, sl, out);
        if (r != -EIO)
            fail_msg("%s (sealed): got %d", cases[i].what, r);
        assert_true(all_zero(out, bs));
    }

    /* A real frame without a content size. */
    uint8_t *in = malloc(bs);
    assert_non_null(in);
    fill(in, bs, P_TEXT, 1);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_non_null(cc);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
    size_t cl = ZSTD_compress2(cc, frame, sizeof(frame), in, bs);
    assert_false(ZSTD_isError(cl));
    ZSTD_freeCCtx(cc);
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)cl, out), -EIO);
    /* The proper frame, then trailing bytes / a second frame. */
    cl = ZSTD_compress(frame, sizeof(frame), in, bs, 3);
    assert_false(ZSTD_isError(cl));
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)cl, out), 0);
    assert_memory_equal(in, out, bs);
    frame[cl] = 0;
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)cl + 1, out),
                     -EIO);
    size_t c2 = ZSTD_compress(frame + cl, sizeof(frame) - cl, "", 0, 3);
    assert_false(ZSTD_isError(c2));
    assert_int_equal(
        gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)(cl + c2), out), -EIO);
    /* Cut short. */
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, frame, (uint32_t)cl - 1, out),
                     -EIO);
    /* Not zstd at all, empty, longer than a block. */
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, in, 100, out), -EIO);
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, in, 0, out), -EIO);
    assert_int_equal(gfs_codec_decode(plain, 0, GFS_SEGF_ZSTD, in, bs, out), -EIO);
    /* Plain blocks of the wrong size. */
    assert_int_equal(gfs_codec_decode(plain, 0, 0, in, bs - 1, out), -EIO);
    assert_int_equal(gfs_codec_decode(plain, 0, 0, st, bs + 1, out), -EIO);
    assert_int_equal(gfs_codec_decode(plain, 0, 0, in, bs, out), 0);
    /* Sealed, not compressed, but the plaintext is not a whole block. */
    sl = seal_raw(key, UUID_A, bs, 3, GFS_SEGF_SEALED, in, bs - 1, st);
    assert_int_equal(gfs_codec_decode(sealed, 3, GFS_SEGF_SEALED, st, sl, out), -EIO);
    sl = seal_raw(key, UUID_A, bs, 3, GFS_SEGF_SEALED, in, bs, st);
    assert_int_equal(gfs_codec_decode(sealed, 3, GFS_SEGF_SEALED, st, sl, out), 0);
    assert_memory_equal(in, out, bs);
    free(in);
    free(out);
    gfs_codec_free(plain);
    gfs_codec_free(sealed);
}

static void test_mac(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN], key2[GFS_KEY_LEN];
    fill_key(key, 7);
    fill_key(key2, 8);
    struct gfs_codec *a = make(4096, 0, key, UUID_A), *a2 = make(131072, 1, key, UUID_B);
    struct gfs_codec *b = make(4096, 0, key2, UUID_A), *u = make(4096, 0, NULL, UUID_A);
    const char msg[] = "segment header bytes";
    uint8_t m1[GFS_MAC_LEN], m2[GFS_MAC_LEN], m3[GFS_MAC_LEN], want[GFS_MAC_LEN], mk[32];
    assert_int_equal(gfs_codec_mac(a, msg, sizeof(msg), m1), 0);
    /* The documented derivation: HMAC(HMAC(data_key, label), bytes). */
    assert_int_equal(gfs_hmac_sha256(key, 32, "glidefs header mac v1", 21, mk), 0);
    assert_int_equal(gfs_hmac_sha256(mk, 32, msg, sizeof(msg), want), 0);
    assert_memory_equal(m1, want, GFS_MAC_LEN);
    /* Depends on the data key only. */
    assert_int_equal(gfs_codec_mac(a2, msg, sizeof(msg), m2), 0);
    assert_memory_equal(m1, m2, GFS_MAC_LEN);
    assert_int_equal(gfs_codec_mac(b, msg, sizeof(msg), m3), 0);
    assert_true(memcmp(m1, m3, GFS_MAC_LEN) != 0);
    assert_int_equal(gfs_codec_mac_verify(a, msg, sizeof(msg), m1), 0);
    assert_int_equal(gfs_codec_mac_verify(b, msg, sizeof(msg), m1), -EBADMSG);
    assert_int_equal(gfs_codec_mac_verify(a, msg, sizeof(msg) - 1, m1), -EBADMSG);
    m1[31] ^= 1;
    assert_int_equal(gfs_codec_mac_verify(a, msg, sizeof(msg), m1), -EBADMSG);
    assert_int_equal(gfs_codec_mac(u, msg, sizeof(msg), m1), -EINVAL);
    assert_int_equal(gfs_codec_mac_verify(u, msg, sizeof(msg), m2), -EINVAL);
    assert_int_equal(gfs_codec_mac(NULL, msg, sizeof(msg), m1), -EINVAL);
    assert_int_equal(gfs_codec_mac(a, "", 0, m1), 0);

    assert_int_equal(gfs_ct_equal("abc", "abc", 3), 1);
    assert_int_equal(gfs_ct_equal("abc", "abd", 3), 0);
    assert_int_equal(gfs_ct_equal("xbc", "abc", 3), 0);
    assert_int_equal(gfs_ct_equal("a", "b", 0), 1);
    gfs_codec_free(a);
    gfs_codec_free(a2);
    gfs_codec_free(b);
    gfs_codec_free(u);
}

static struct gfs_codec *make_gens(uint32_t bs, int compress, const uint32_t *gens, unsigned n)
{
    struct gfs_datakey dk[4];
    assert_true(n <= 4);
    for (unsigned i = 0; i < n; i++) {
        dk[i].gen = gens[i];
        fill_key(dk[i].key, (uint8_t)(7 + gens[i] - 1)); /* generation 1 is fill_key(.., 7) */
    }
    struct gfs_codec_params p = { .block_size = bs, .compress = compress, .keys = dk, .nkeys = n };
    memcpy(p.volume_uuid, UUID_A, 16);
    struct gfs_codec *c = NULL;
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    return c;
}

/* Segment keys: the documented derivation, one key per object name and
 * generation, the legacy block key as generation 0; a payload sealed in one
 * segment does not open under another segment's key (it did with the one
 * block key: same volume, block and version); reseal moves it. */
static void test_segment_keys(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 7);
    struct gfs_codec *c = make(4096, 1, key, UUID_A);
    assert_int_equal(gfs_codec_key_gen(c), 1);
    assert_int_equal(gfs_codec_has_gen(c, 0), 1);
    assert_int_equal(gfs_codec_has_gen(c, 1), 1);
    assert_int_equal(gfs_codec_has_gen(c, 2), 0);
    const char *na = "nbd/vol/seg/0000000000000001-0000000000000001";
    const char *nb = "nbd/vol/seg/0000000000000001-0000000000000002";
    struct gfs_sealkey ka, kb, kl, k2;
    assert_int_equal(gfs_codec_sealkey(c, 1, na, &ka), 0);
    assert_int_equal(gfs_codec_sealkey(c, 1, nb, &kb), 0);
    assert_int_equal(gfs_codec_sealkey(c, 0, NULL, &kl), 0);
    assert_int_equal(gfs_codec_sealkey(c, 2, na, &k2), -ENOKEY);
    /* HMAC(HMAC(data key, "glidefs segment key v2"), "GFSSEGK1" || name) */
    uint8_t base[32], want[32], msg[128];
    assert_int_equal(gfs_hmac_sha256(key, 32, "glidefs segment key v2", 22, base), 0);
    memcpy(msg, "GFSSEGK1", 8);
    memcpy(msg + 8, na, strlen(na));
    assert_int_equal(gfs_hmac_sha256(base, 32, msg, 8 + strlen(na), want), 0);
    assert_memory_equal(ka.k, want, 32);
    assert_int_equal(ka.gen, 1);
    assert_true(memcmp(ka.k, kb.k, 32) != 0 && memcmp(ka.k, kl.k, 32) != 0);
    /* the legacy key is the codec's one block key */
    assert_int_equal(gfs_hmac_sha256(key, 32, "glidefs block key v1", 20, want), 0);
    assert_memory_equal(kl.k, want, 32);

    uint8_t in[4096], out[4096], st[4096 + 64], st2[4096 + 64];
    fill(in, 4096, P_TEXT, 5);
    uint32_t len = 0, flags = 0;
    assert_int_equal(gfs_codec_encode_k(c, &ka, 9, 3, in, st, &len, &flags), 0);
    assert_int_equal(flags, GFS_SEGF_ZSTD | GFS_SEGF_SEALED);
    assert_int_equal(gfs_codec_decode_k(c, &ka, 9, 3, flags, st, len, out), 0);
    assert_memory_equal(in, out, 4096);
    assert_int_equal(gfs_codec_decode_k(c, &kb, 9, 3, flags, st, len, out), -EIO);
    assert_true(all_zero(out, 4096));
    assert_int_equal(gfs_codec_decode_seq(c, 9, 3, flags, st, len, out), -EIO);
    assert_int_equal(gfs_codec_decode_k(c, NULL, 9, 3, flags, st, len, out), -EIO);
    /* reseal: same length and flags, opens under the new key only */
    assert_int_equal(gfs_codec_reseal(c, &ka, &kb, 9, 3, flags, st, len, st2), 0);
    assert_true(memcmp(st, st2, len) != 0);
    assert_int_equal(gfs_codec_decode_k(c, &kb, 9, 3, flags, st2, len, out), 0);
    assert_memory_equal(in, out, 4096);
    assert_int_equal(gfs_codec_decode_k(c, &ka, 9, 3, flags, st2, len, out), -EIO);
    /* the AAD still binds block and version through a reseal */
    assert_int_equal(gfs_codec_reseal(c, &ka, &kb, 10, 3, flags, st, len, st2), -EIO);
    assert_int_equal(gfs_codec_reseal(c, &kb, &ka, 9, 3, flags, st, len, st2), -EIO);
    assert_true(all_zero(st2, len));
    /* in place */
    memcpy(st2, st, len);
    assert_int_equal(gfs_codec_reseal(c, &ka, &kl, 9, 3, flags, st2, len, st2), 0);
    assert_int_equal(gfs_codec_decode_seq(c, 9, 3, flags, st2, len, out), 0);
    assert_memory_equal(in, out, 4096);
    assert_int_equal(gfs_codec_reseal(c, &ka, &kb, 9, 3, GFS_SEGF_ZSTD, st, len, st2), -EINVAL);
    gfs_sealkey_wipe(&ka);
    assert_true(all_zero(ka.k, 32) && ka.gen == 0);
    gfs_sealkey_wipe(&kb);
    gfs_sealkey_wipe(&kl);
    gfs_codec_free(c);
}

/* Generations: new segments and MACs use the newest; MACs of any held
 * generation verify; a codec without generation 1 has no legacy key; a
 * generation it does not hold opens nothing. */
static void test_generations(void **state)
{
    (void)state;
    const uint32_t g12[] = {1, 2}, g2[] = {2}, g21[] = {2, 1}, bad[] = {3, 3}, zero[] = {0};
    struct gfs_codec *c12 = make_gens(4096, 0, g12, 2), *c2 = make_gens(4096, 0, g2, 1);
    struct gfs_codec *c21 = make_gens(4096, 0, g21, 2);
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 7);
    struct gfs_codec *c1 = make(4096, 0, key, UUID_A);
    assert_int_equal(gfs_codec_key_gen(c12), 2);
    assert_int_equal(gfs_codec_key_gen(c21), 2);
    assert_int_equal(gfs_codec_key_gen(c2), 2);
    assert_int_equal(gfs_codec_has_gen(c2, 0), 0);
    assert_int_equal(gfs_codec_has_gen(c2, 1), 0);
    assert_int_equal(gfs_codec_has_gen(c12, 0), 1);
    uint32_t gens[4];
    assert_int_equal(gfs_codec_gens(c21, gens, 4), 2);
    assert_true(gens[0] == 2 && gens[1] == 1);
    struct gfs_sealkey k;
    assert_int_equal(gfs_codec_sealkey(c2, 0, NULL, &k), -ENOKEY);
    uint8_t in[4096], st[4096 + 64], out[4096];
    fill(in, 4096, P_RANDOM, 1);
    uint32_t len, flags;
    assert_int_equal(gfs_codec_encode_seq(c2, 1, 1, in, st, &len, &flags), -ENOKEY);
    /* the same generation's key is the same in every codec holding it */
    struct gfs_sealkey a, b;
    const char *n = "nbd/v/seg/0000000000000002-0000000000000001";
    assert_int_equal(gfs_codec_sealkey(c12, 2, n, &a), 0);
    assert_int_equal(gfs_codec_sealkey(c2, 2, n, &b), 0);
    assert_memory_equal(a.k, b.k, 32);
    assert_int_equal(gfs_codec_encode_k(c12, &a, 4, 4, in, st, &len, &flags), 0);
    assert_int_equal(gfs_codec_decode_k(c2, &b, 4, 4, flags, st, len, out), 0);
    assert_memory_equal(in, out, 4096);
    assert_int_equal(gfs_codec_sealkey(c12, 1, n, &b), 0);
    assert_true(memcmp(a.k, b.k, 32) != 0);
    /* MACs: generation 1's verifies in c12 but not in c2; c12's (gen 2) in both */
    const char msg[] = "manifest bytes";
    uint8_t m1[GFS_MAC_LEN], m12[GFS_MAC_LEN];
    assert_int_equal(gfs_codec_mac(c1, msg, sizeof msg, m1), 0);
    assert_int_equal(gfs_codec_mac(c12, msg, sizeof msg, m12), 0);
    assert_true(memcmp(m1, m12, GFS_MAC_LEN) != 0);
    assert_int_equal(gfs_codec_mac_verify(c12, msg, sizeof msg, m1), 0);
    assert_int_equal(gfs_codec_mac_verify(c21, msg, sizeof msg, m1), 0);
    assert_int_equal(gfs_codec_mac_verify(c2, msg, sizeof msg, m1), -EBADMSG);
    assert_int_equal(gfs_codec_mac_verify(c2, msg, sizeof msg, m12), 0);
    assert_int_equal(gfs_codec_mac_verify(c1, msg, sizeof msg, m12), -EBADMSG);
    /* bad generation lists */
    struct gfs_datakey dk[2] = {{bad[0], {0}}, {bad[1], {0}}};
    struct gfs_codec_params p = { .block_size = 4096, .keys = dk, .nkeys = 2 };
    struct gfs_codec *x = NULL;
    assert_int_equal(gfs_codec_new(&p, &x), -EINVAL);
    dk[0].gen = zero[0];
    p.nkeys = 1;
    assert_int_equal(gfs_codec_new(&p, &x), -EINVAL);
    p.nkeys = 0;
    assert_int_equal(gfs_codec_new(&p, &x), -EINVAL);
    p.nkeys = GFS_CODEC_MAX_GENS + 1;
    assert_int_equal(gfs_codec_new(&p, &x), -EINVAL);
    /* retirement and segments being sealed: a generation with a writer
     * cannot be frozen; a frozen one takes no new writer; undo */
    assert_int_equal(gfs_codec_writer_begin(c12, 1), 0);
    uint32_t was = 99;
    assert_int_equal(gfs_codec_freeze(c12, 1, &was), -EBUSY);
    assert_int_equal(was, 99);
    gfs_codec_writer_end(c12, 1);
    assert_int_equal(gfs_codec_freeze(c12, 2, &was), -EINVAL); /* the newest */
    assert_int_equal(gfs_codec_freeze(c12, 1, &was), 0);
    assert_int_equal(was, 0);
    assert_int_equal(gfs_codec_writer_begin(c12, 1), -ENOKEY);
    assert_int_equal(gfs_codec_writer_begin(c12, 2), 0);
    assert_int_equal(gfs_codec_writer_begin(c12, 7), -ENOKEY);
    gfs_codec_unfreeze(c12, was);
    assert_int_equal(gfs_codec_writer_begin(c12, 1), 0);
    gfs_codec_writer_end(c12, 1);
    gfs_codec_writer_end(c12, 2);
    assert_int_equal(gfs_codec_retire(c12, 2), -EINVAL);
    assert_int_equal(gfs_codec_retire(c12, 1), 0);
    assert_int_equal(gfs_codec_has_gen(c12, 1), 0);
    assert_int_equal(gfs_codec_has_gen(c12, 0), 0);
    assert_int_equal(gfs_codec_gens(c12, gens, 4), 1);
    assert_int_equal(gfs_codec_sealkey(c12, 1, n, &b), -ENOKEY);
    assert_int_equal(gfs_codec_mac_verify(c12, msg, sizeof msg, m1), -EBADMSG); /* gen 1's MAC */
    assert_int_equal(gfs_codec_writer_begin(c12, 1), -ENOKEY);
    /* a generation added later is held and becomes the newest */
    struct gfs_datakey d3 = {.gen = 3};
    memset(d3.key, 3, sizeof d3.key);
    assert_int_equal(gfs_codec_add_gen(c12, &d3), 0);
    assert_int_equal(gfs_codec_key_gen(c12), 3);
    assert_int_equal(gfs_codec_add_gen(c12, &d3), 0); /* again: held already */
    assert_int_equal(gfs_codec_gens(c12, gens, 4), 2);
    gfs_sealkey_wipe(&a);
    gfs_sealkey_wipe(&b);
    gfs_codec_free(c12);
    gfs_codec_free(c2);
    gfs_codec_free(c21);
    gfs_codec_free(c1);
}

struct worker {
    struct gfs_codec *c;
    uint32_t bs;
    unsigned id;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    size_t ms = gfs_codec_max_stored(w->c);
    uint8_t *in = malloc(w->bs), *out = malloc(w->bs), *st = malloc(ms);
    if (!in || !out || !st) {
        w->failures++;
        goto done;
    }
    for (unsigned i = 0; i < 150; i++) {
        uint64_t idx = (uint64_t)w->id << 32 | i;
        fill(in, w->bs, (enum pattern)(i % 3), idx);
        uint32_t len, flags;
        if (gfs_codec_encode_seq(w->c, idx, i, in, st, &len, &flags) != 0 ||
            gfs_codec_decode_seq(w->c, idx, i, flags, st, len, out) != 0 ||
            memcmp(in, out, w->bs) != 0 ||
            gfs_codec_decode_seq(w->c, idx + 1, i, flags, st, len, out) != -EIO)
            w->failures++;
    }
done:
    free(in);
    free(out);
    free(st);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    uint8_t key[GFS_KEY_LEN];
    fill_key(key, 9);
    struct gfs_codec *c = make(65536, 1, key, UUID_A);
    pthread_t th[4];
    struct worker w[4];
    for (unsigned i = 0; i < 4; i++) {
        w[i] = (struct worker){ .c = c, .bs = 65536, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    gfs_codec_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_sealing_hides),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_gcm_known_answer),
        cmocka_unit_test(test_keys_locked),
        cmocka_unit_test(test_hostile_frames),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_segment_keys),
        cmocka_unit_test(test_generations),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
