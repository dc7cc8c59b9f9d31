/*
 * test_keywrap.c — the password-wrapped data key: known-answer tests for
 * PBKDF2-HMAC-SHA256 (RFC 7914 section 11 and the widely published
 * "password"/"salt" vectors) and AES-256-GCM (McGrew & Viega, "The
 * Galois/Counter Mode of Operation", test cases 13-16), wrap/unwrap round
 * trip, wrong password and wrong volume (-EACCES), rewrap keeping the data
 * key, parameter checks, the JSON round trip and a table of hostile JSON.
 *
 * Real wraps cost a full PBKDF2 at >= 600,000 iterations (a fraction of a
 * second each), so the wrap tests share one created wrap and keep the number
 * of derivations small.
 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "codec.h"
#include "keywrap.h"

static size_t unhex(const char *s, uint8_t *out, size_t max)
{
    size_t n = strlen(s) / 2;
    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void test_pbkdf2_kat(void **state)
{
    (void)state;
    static const struct {
        const char *pw, *salt;
        uint32_t iterations;
        const char *dk;
    } v[] = {
        /* RFC 7914, section 11 */
        { "passwd", "salt", 1,
          "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
          "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783" },
        { "Password", "NaCl", 80000,
          "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
          "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d" },
        /* RFC 6070's inputs with HMAC-SHA256 */
        { "password", "salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b" },
        { "password", "salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43" },
        { "password", "salt", 4096,
          "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a" },
        { "passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096,
          "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9" },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t want[64], got[65];
        size_t n = unhex(v[i].dk, want, sizeof(want));
        got[n] = 0xa5;
        assert_int_equal(gfs_pbkdf2_sha256(v[i].pw, strlen(v[i].pw), v[i].salt,
                                           strlen(v[i].salt), v[i].iterations, got, n),
                         0);
        assert_memory_equal(got, want, n);
        assert_int_equal(got[n], 0xa5); /* nothing past outlen */
    }
    uint8_t out[32];
    assert_int_equal(gfs_pbkdf2_sha256("pw", 2, "salt", 4, 0, out, 32), -EINVAL);
    assert_int_equal(gfs_pbkdf2_sha256("pw", 2, "salt", 4, 1, out, 0), -EINVAL);
    assert_int_equal(gfs_pbkdf2_sha256("pw", 2, "salt", 4, 1, NULL, 32), -EINVAL);
}

static void test_gcm_kat(void **state)
{
    (void)state;
    static const char *k_feff = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    static const char *p_4blk =
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    static const char *c_4blk =
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
    static const struct {
        const char *name, *key, *iv, *aad, *pt, *ct, *tag;
        size_t len; /* plaintext bytes used (test case 16 drops the last 4) */
    } v[] = {
        { "TC13", "0000000000000000000000000000000000000000000000000000000000000000",
          "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b", 0 },
        { "TC14", "0000000000000000000000000000000000000000000000000000000000000000",
          "000000000000000000000000", "", "00000000000000000000000000000000",
          "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919", 16 },
        { "TC15", NULL, "cafebabefacedbaddecaf888", "", NULL, NULL,
          "b094dac5d93471bdec1a502270e3cc6c", 64 },
        { "TC16", NULL, "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
          NULL, NULL, "76fc6ece0f4e1768cddf8853bb2d551b", 60 },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t key[32], iv[12], aad[32], pt[64], ct[64], tag[16];
        uint8_t got[64], gtag[16], back[64];
        unhex(v[i].key ? v[i].key : k_feff, key, sizeof(key));
        assert_int_equal(unhex(v[i].iv, iv, sizeof(iv)), 12);
        size_t alen = unhex(v[i].aad, aad, sizeof(aad));
        unhex(v[i].pt ? v[i].pt : p_4blk, pt, sizeof(pt));
        unhex(v[i].ct ? v[i].ct : c_4blk, ct, sizeof(ct));
        unhex(v[i].tag, tag, sizeof(tag));
        size_t n = v[i].len;
        assert_int_equal(gfs_aes256gcm_seal(key, iv, alen ? aad : NULL, alen, pt, n, got, gtag),
                         0);
        if (memcmp(got, ct, n) != 0 || memcmp(gtag, tag, 16) != 0)
            fail_msg("%s: seal mismatch", v[i].name);
        assert_int_equal(gfs_aes256gcm_open(key, iv, alen ? aad : NULL, alen, ct, n, back, tag),
                         0);
        assert_memory_equal(back, pt, n);
        /* A flipped tag bit, ciphertext bit or AAD bit: refused, output wiped. */
        gtag[15] ^= 0x80;
        memset(back, 0xcc, sizeof(back));
        assert_int_equal(gfs_aes256gcm_open(key, iv, aad, alen, ct, n, back, gtag), -EBADMSG);
        for (size_t j = 0; j < n; j++)
            assert_int_equal(back[j], 0);
        if (n) {
            ct[n / 2] ^= 1;
            assert_int_equal(gfs_aes256gcm_open(key, iv, aad, alen, ct, n, back, tag), -EBADMSG);
            ct[n / 2] ^= 1;
        }
        if (alen) {
            aad[0] ^= 1;
            assert_int_equal(gfs_aes256gcm_open(key, iv, aad, alen, ct, n, back, tag), -EBADMSG);
        }
        /* In place. */
        memcpy(got, pt, n);
        assert_int_equal(gfs_aes256gcm_seal(key, iv, NULL, 0, got, n, got, gtag), 0);
        assert_int_equal(gfs_aes256gcm_open(key, iv, NULL, 0, got, n, got, gtag), 0);
        assert_memory_equal(got, pt, n);
    }
}

/* One real wrap, shared by the tests below (each derivation costs). */
static const uint8_t UUID1[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
static const uint8_t UUID2[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13 };

struct fixture {
    struct gfs_keywrap kw;
    uint8_t dk[32];
};

static int setup_wrap(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    if (gfs_keywrap_create("correct horse battery staple", GFS_KDF_ITERATIONS, UUID1, f->dk,
                           &f->kw) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_wrap(void **state)
{
    free(*state);
    return 0;
}

static void test_wrap_unwrap(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(f->kw.kdf, GFS_KDF_NAME);
    assert_int_equal(f->kw.iterations, GFS_KDF_ITERATIONS);
    static const uint8_t zero[32];
    assert_true(memcmp(f->dk, zero, 32) != 0);
    /* The wrap is not the key. */
    assert_true(memcmp(f->kw.wrapped, f->dk, 32) != 0);

    uint8_t dk[32];
    assert_int_equal(gfs_keywrap_unwrap("correct horse battery staple", &f->kw, UUID1, dk), 0);
    assert_memory_equal(dk, f->dk, 32);
    /* Wrong password, or the wrap moved into another volume: -EACCES, and
     * the output untouched. */
    memset(dk, 0x77, sizeof(dk));
    assert_int_equal(gfs_keywrap_unwrap("correct horse battery stapl3", &f->kw, UUID1, dk),
                     -EACCES);
    assert_int_equal(gfs_keywrap_unwrap("correct horse battery staple", &f->kw, UUID2, dk),
                     -EACCES);
    for (int i = 0; i < 32; i++)
        assert_int_equal(dk[i], 0x77);

    /* Malformed input is refused before any derivation. */
    struct gfs_keywrap bad = f->kw;
    bad.iterations = GFS_KDF_ITERATIONS - 1;
    assert_int_equal(gfs_keywrap_unwrap("x", &bad, UUID1, dk), -EINVAL);
    bad = f->kw;
    bad.iterations = GFS_KDF_ITERATIONS_MAX + 1;
    assert_int_equal(gfs_keywrap_unwrap("x", &bad, UUID1, dk), -EINVAL);
    bad = f->kw;
    snprintf(bad.kdf, sizeof(bad.kdf), "pbkdf2-sha1");
    assert_int_equal(gfs_keywrap_unwrap("x", &bad, UUID1, dk), -EINVAL);
    bad = f->kw;
    memset(bad.kdf, 'a', sizeof(bad.kdf)); /* no terminator */
    assert_int_equal(gfs_keywrap_unwrap("x", &bad, UUID1, dk), -EINVAL);
    assert_int_equal(gfs_keywrap_unwrap("", &f->kw, UUID1, dk), -EINVAL);
    assert_int_equal(gfs_keywrap_unwrap(NULL, &f->kw, UUID1, dk), -EINVAL);
    assert_int_equal(gfs_keywrap_unwrap("x", NULL, UUID1, dk), -EINVAL);
    char *longpw = malloc(GFS_PASSWORD_MAX + 2);
    assert_non_null(longpw);
    memset(longpw, 'p', GFS_PASSWORD_MAX + 1);
    longpw[GFS_PASSWORD_MAX + 1] = '\0';
    assert_int_equal(gfs_keywrap_unwrap(longpw, &f->kw, UUID1, dk), -EINVAL);
    struct gfs_keywrap kw2;
    assert_int_equal(gfs_keywrap_create(longpw, GFS_KDF_ITERATIONS, UUID1, dk, &kw2), -EINVAL);
    free(longpw);
    assert_int_equal(gfs_keywrap_create("pw", GFS_KDF_ITERATIONS - 1, UUID1, dk, &kw2), -EINVAL);
    assert_int_equal(gfs_keywrap_create("pw", 1000, UUID1, dk, &kw2), -EINVAL);
    assert_int_equal(gfs_keywrap_create("", GFS_KDF_ITERATIONS, UUID1, dk, &kw2), -EINVAL);
    assert_int_equal(gfs_keywrap_rewrap("x", "y", 1000, UUID1, &kw2), -EINVAL);
}

static void test_rewrap(void **state)
{
    struct fixture *f = *state;
    struct gfs_keywrap kw = f->kw;
    /* Wrong old password: -EACCES and kw unchanged. */
    assert_int_equal(gfs_keywrap_rewrap("nope", "new pw", GFS_KDF_ITERATIONS, UUID1, &kw),
                     -EACCES);
    assert_memory_equal(&kw, &f->kw, sizeof(kw));
    assert_int_equal(gfs_keywrap_rewrap("correct horse battery staple", "new pw",
                                        GFS_KDF_ITERATIONS + 1, UUID1, &kw),
                     0);
    assert_int_equal(kw.iterations, GFS_KDF_ITERATIONS + 1);
    assert_true(memcmp(kw.salt, f->kw.salt, sizeof(kw.salt)) != 0);
    assert_true(memcmp(kw.nonce, f->kw.nonce, sizeof(kw.nonce)) != 0);
    assert_true(memcmp(kw.wrapped, f->kw.wrapped, sizeof(kw.wrapped)) != 0);
    uint8_t dk[32];
    assert_int_equal(gfs_keywrap_unwrap("new pw", &kw, UUID1, dk), 0);
    assert_memory_equal(dk, f->dk, 32); /* the same data key: no data rewritten */
    assert_int_equal(gfs_keywrap_unwrap("correct horse battery staple", &kw, UUID1, dk),
                     -EACCES);
}

static json_t *good_json(const struct gfs_keywrap *kw)
{
    json_t *o = gfs_keywrap_to_json(kw);
    assert_non_null(o);
    return o;
}

static void test_json_round_trip(void **state)
{
    struct fixture *f = *state;
    json_t *o = good_json(&f->kw);
    assert_string_equal(json_string_value(json_object_get(o, "kdf")), "pbkdf2-sha256");
    assert_string_equal(json_string_value(json_object_get(o, "cipher")), "aes-256-gcm");
    assert_int_equal(json_integer_value(json_object_get(o, "iterations")), 600000);
    assert_int_equal(json_string_length(json_object_get(o, "salt")), 24);
    assert_int_equal(json_string_length(json_object_get(o, "nonce")), 16);
    assert_int_equal(json_string_length(json_object_get(o, "wrapped_key")), 44);
    assert_int_equal(json_string_length(json_object_get(o, "tag")), 24);
    /* Through text and back. */
    char *txt = json_dumps(o, JSON_SORT_KEYS);
    assert_non_null(txt);
    json_error_t err;
    json_t *back = json_loads(txt, 0, &err);
    assert_non_null(back);
    struct gfs_keywrap kw;
    memset(&kw, 0xff, sizeof(kw));
    assert_int_equal(gfs_keywrap_from_json(back, &kw), 0);
    assert_string_equal(kw.kdf, f->kw.kdf);
    assert_int_equal(kw.iterations, f->kw.iterations);
    assert_memory_equal(kw.salt, f->kw.salt, 16);
    assert_memory_equal(kw.nonce, f->kw.nonce, 12);
    assert_memory_equal(kw.wrapped, f->kw.wrapped, 32);
    assert_memory_equal(kw.tag, f->kw.tag, 16);
    free(txt);
    json_decref(back);
    json_decref(o);
    /* A malformed struct does not serialize. */
    struct gfs_keywrap bad = f->kw;
    bad.iterations = 5;
    assert_null(gfs_keywrap_to_json(&bad));
    assert_null(gfs_keywrap_to_json(NULL));
}

/* Each case edits a good object; all must be -EINVAL. */
struct json_case {
    const char *what;
    const char *field; /* NULL: see op */
    const char *value; /* JSON text of the new value; NULL: delete the field */
};

static const struct json_case json_cases[] = {
    { "no cipher", "cipher", NULL },
    { "no kdf", "kdf", NULL },
    { "no iterations", "iterations", NULL },
    { "no salt", "salt", NULL },
    { "no nonce", "nonce", NULL },
    { "no wrapped_key", "wrapped_key", NULL },
    { "no tag", "tag", NULL },
    { "unknown field", "comment", "\"hello\"" },
    { "other cipher", "cipher", "\"aes-128-gcm\"" },
    { "cipher not a string", "cipher", "1" },
    { "cipher with NUL", "cipher", "\"aes-256-gcm\\u0000x\"" },
    { "other kdf", "kdf", "\"pbkdf2-sha1\"" },
    { "kdf prefix", "kdf", "\"pbkdf2\"" },
    { "kdf uppercase", "kdf", "\"PBKDF2-SHA256\"" },
    { "kdf null", "kdf", "null" },
    { "iterations too low", "iterations", "599999" },
    { "iterations way too low", "iterations", "1" },
    { "iterations zero", "iterations", "0" },
    { "iterations negative", "iterations", "-600000" },
    { "iterations too high", "iterations", "10000001" },
    { "iterations 2^32+600000", "iterations", "4295567296" },
    { "iterations huge", "iterations", "9223372036854775807" },
    { "iterations real", "iterations", "600000.0" },
    { "iterations string", "iterations", "\"600000\"" },
    { "iterations bool", "iterations", "true" },
    { "salt short", "salt", "\"AAAAAAAAAAAAAAAAAAAA\"" },             /* 15 bytes */
    { "salt long", "salt", "\"AAAAAAAAAAAAAAAAAAAAAAAA\"" },          /* 18 bytes */
    { "salt no padding", "salt", "\"AAAAAAAAAAAAAAAAAAAAAA\"" },
    { "salt non-canonical", "salt", "\"AAAAAAAAAAAAAAAAAAAAAB==\"" }, /* stray bits */
    { "salt bad char", "salt", "\"AAAAAAAAAAAAAAAAAAAA*A==\"" },
    { "salt url-safe alphabet", "salt", "\"AAAAAAAAAAAAAAAAAAAA-_==\"" },
    { "salt with space", "salt", "\"AAAAAAAAAA AAAAAAAAAAA==\"" },
    { "salt with newline", "salt", "\"AAAAAAAAAAAAAAAAAAAAAA==\\n\"" },
    { "salt padding inside", "salt", "\"AAAAAAAAAAAAAAAAAAAA==AA\"" },
    { "salt with NUL", "salt", "\"AAAAAAAAAAAAAAAAAAAAAA=\\u0000\"" },
    { "salt empty", "salt", "\"\"" },
    { "salt number", "salt", "16" },
    { "salt array", "salt", "[1,2,3]" },
    { "nonce 16 bytes", "nonce", "\"AAAAAAAAAAAAAAAAAAAAAA==\"" },
    { "nonce 11 bytes", "nonce", "\"AAAAAAAAAAAAAAA=\"" },
    { "wrapped_key 31 bytes", "wrapped_key", "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\"" },
    { "wrapped_key 33 bytes", "wrapped_key", "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"" },
    { "tag 12 bytes", "tag", "\"AAAAAAAAAAAAAAAA\"" },
    { "tag null", "tag", "null" },
};

static void test_json_hostile(void **state)
{
    struct fixture *f = *state;
    struct gfs_keywrap kw;
    for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
        const struct json_case *c = &json_cases[i];
        json_t *o = good_json(&f->kw);
        if (c->value) {
            json_error_t err;
            json_t *v = json_loads(c->value, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
            if (!v)
                fail_msg("case \"%s\": bad test JSON: %s", c->what, err.text);
            assert_int_equal(json_object_set_new(o, c->field, v), 0);
        } else {
            assert_int_equal(json_object_del(o, c->field), 0);
        }
        memset(&kw, 0x33, sizeof(kw));
        int r = gfs_keywrap_from_json(o, &kw);
        if (r != -EINVAL)
            fail_msg("case \"%s\": got %d", c->what, r);
        /* nothing half-written */
        for (size_t j = 0; j < sizeof(kw); j++)
            assert_int_equal(((uint8_t *)&kw)[j], 0x33);
        json_decref(o);
    }
    /* Not an object at all. */
    static const char *not_objects[] = { "null", "[]", "\"x\"", "600000", "{}" };
    for (size_t i = 0; i < sizeof(not_objects) / sizeof(not_objects[0]); i++) {
        json_error_t err;
        json_t *v = json_loads(not_objects[i], JSON_DECODE_ANY, &err);
        assert_non_null(v);
        assert_int_equal(gfs_keywrap_from_json(v, &kw), -EINVAL);
        json_decref(v);
    }
    assert_int_equal(gfs_keywrap_from_json(NULL, &kw), -EINVAL);
    json_t *o = good_json(&f->kw);
    assert_int_equal(gfs_keywrap_from_json(o, NULL), -EINVAL);
    /* Control: the untouched object parses, and canonical values with other
     * bytes are fine too. */
    assert_int_equal(gfs_keywrap_from_json(o, &kw), 0);
    json_object_set_new(o, "salt", json_string("AAECAwQFBgcICQoLDA0ODw=="));
    json_object_set_new(o, "iterations", json_integer(10000000));
    assert_int_equal(gfs_keywrap_from_json(o, &kw), 0);
    assert_int_equal(kw.salt[15], 15);
    assert_int_equal(kw.iterations, 10000000);
    json_decref(o);
}

/* Generations: open_all/seal_all, the generations form in JSON, the set
 * bound together by the additional data (a changed first generation, a
 * wrap carried over from another set, the plain form's wrap re-labelled),
 * retirement, a password change across generations. */
static void test_generations(void **state)
{
    struct fixture *f = *state;
    const char *pw = "correct horse battery staple";
    uint8_t kek[32];
    assert_int_equal(gfs_keywrap_kek(pw, &f->kw, kek), 0);
    struct gfs_datakey k[GFS_KEYWRAP_MAX_GENS];
    unsigned n = 0;
    assert_int_equal(gfs_keywrap_open_all(kek, &f->kw, UUID1, k, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].gen, 1);
    assert_memory_equal(k[0].key, f->dk, 32);
    assert_int_equal(gfs_keywrap_first(&f->kw), 1);
    assert_int_equal(gfs_keywrap_newest(&f->kw), 1);

    /* rotate: generations 1 and 2 */
    k[1].gen = 2;
    memset(k[1].key, 0x77, 32);
    struct gfs_keywrap two = f->kw;
    assert_int_equal(gfs_keywrap_seal_all(kek, UUID1, k, 2, &two), 0);
    assert_int_equal(gfs_keywrap_first(&two), 1);
    assert_int_equal(gfs_keywrap_newest(&two), 2);
    assert_memory_equal(two.salt, f->kw.salt, 16); /* same KEK */
    assert_int_equal(gfs_keywrap_unwrap(pw, &two, UUID1, k[5].key), -EINVAL); /* not plain */
    json_t *o = gfs_keywrap_to_json(&two);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "gen")), 1);
    assert_int_equal(json_array_size(json_object_get(o, "keys")), 1);
    struct gfs_keywrap back;
    assert_int_equal(gfs_keywrap_from_json(o, &back), 0);
    struct gfs_datakey got[GFS_KEYWRAP_MAX_GENS];
    assert_int_equal(gfs_keywrap_open_all(kek, &back, UUID1, got, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(got[0].key, f->dk, 32);
    assert_memory_equal(got[1].key, k[1].key, 32);
    assert_int_equal(got[1].gen, 2);
    assert_int_equal(gfs_keywrap_open_all(kek, &back, UUID2, got, &n), -EACCES);

    /* the set is bound: generation 1's wrap of {1,2} does not open as the
     * plain form, nor as the first of another set */
    struct gfs_keywrap t = two;
    t.nextra = 0;
    t.first_gen = 0;
    assert_int_equal(gfs_keywrap_open_all(kek, &t, UUID1, got, &n), -EACCES);
    t = two;
    t.first_gen = 2;
    t.extra[0].gen = 3;
    assert_int_equal(gfs_keywrap_open_all(kek, &t, UUID1, got, &n), -EACCES);

    /* retire generation 1: {2} alone, in the generations form */
    struct gfs_keywrap ret = two;
    assert_int_equal(gfs_keywrap_seal_all(kek, UUID1, k + 1, 1, &ret), 0);
    assert_int_equal(gfs_keywrap_first(&ret), 2);
    assert_int_equal(gfs_keywrap_newest(&ret), 2);
    json_t *r = gfs_keywrap_to_json(&ret);
    assert_int_equal(json_integer_value(json_object_get(r, "gen")), 2);
    assert_int_equal(gfs_keywrap_from_json(r, &back), 0);
    assert_int_equal(gfs_keywrap_open_all(kek, &back, UUID1, got, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(got[0].gen, 2);
    /* putting the retired generation back: its old wrap (sealed as the
     * first of {1,2}) next to the current wrap of 2 (sealed as the only
     * one): generation 2's additional data no longer matches */
    json_t *rr = gfs_keywrap_to_json(&ret);
    json_object_set_new(rr, "gen", json_integer(1));
    json_t *e2 = json_pack("{s:i, s:O, s:O, s:O}", "gen", 2, "nonce", json_object_get(rr, "nonce"),
                           "wrapped_key", json_object_get(rr, "wrapped_key"), "tag",
                           json_object_get(rr, "tag"));
    json_array_append_new(json_object_get(rr, "keys"), e2);
    json_object_set(rr, "nonce", json_object_get(o, "nonce"));
    json_object_set(rr, "wrapped_key", json_object_get(o, "wrapped_key"));
    json_object_set(rr, "tag", json_object_get(o, "tag"));
    assert_int_equal(gfs_keywrap_from_json(rr, &back), 0);
    assert_int_equal(gfs_keywrap_open_all(kek, &back, UUID1, got, &n), -EACCES);
    json_decref(rr);
    json_decref(r);

    /* hostile forms */
    json_t *h = json_deep_copy(o);
    json_object_del(h, "keys");
    assert_int_equal(gfs_keywrap_from_json(h, &back), -EINVAL); /* gen without keys */
    json_decref(h);
    h = json_deep_copy(o);
    json_array_clear(json_object_get(h, "keys"));
    assert_int_equal(gfs_keywrap_from_json(h, &back), -EINVAL); /* gen 1, no more: plain form */
    json_object_set_new(h, "gen", json_integer(0));
    assert_int_equal(gfs_keywrap_from_json(h, &back), -EINVAL);
    json_decref(h);
    h = json_deep_copy(o);
    json_object_set_new(json_array_get(json_object_get(h, "keys"), 0), "gen", json_integer(3));
    assert_int_equal(gfs_keywrap_from_json(h, &back), -EINVAL); /* not consecutive */
    json_decref(h);
    h = json_deep_copy(o);
    json_object_set_new(json_array_get(json_object_get(h, "keys"), 0), "x", json_integer(3));
    assert_int_equal(gfs_keywrap_from_json(h, &back), -EINVAL); /* unknown field */
    json_decref(h);
    h = json_deep_copy(o);
    for (int i = 0; i < GFS_KEYWRAP_MAX_GENS; i++)
        json_array_append(json_object_get(h, "keys"),
                          json_array_get(json_object_get(o, "keys"), 0));
    assert_int_equal(gfs_keywrap_from_json(h, &back), -EINVAL); /* too many */
    json_decref(h);
    /* seal_all refuses gaps and a generation 0 */
    k[1].gen = 3;
    assert_int_equal(gfs_keywrap_seal_all(kek, UUID1, k, 2, &t), -EINVAL);
    k[0].gen = 0;
    assert_int_equal(gfs_keywrap_seal_all(kek, UUID1, k, 1, &t), -EINVAL);
    k[0].gen = 1;
    k[1].gen = 2;

    /* a password change carries every generation */
    struct gfs_keywrap pc = two;
    assert_int_equal(gfs_keywrap_rewrap(pw, "new one", GFS_KDF_ITERATIONS, UUID1, &pc), 0);
    assert_true(memcmp(pc.salt, two.salt, 16) != 0);
    uint8_t kek2[32];
    assert_int_equal(gfs_keywrap_kek("new one", &pc, kek2), 0);
    assert_int_equal(gfs_keywrap_open_all(kek2, &pc, UUID1, got, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(got[0].key, f->dk, 32);
    assert_memory_equal(got[1].key, k[1].key, 32);
    assert_int_equal(gfs_keywrap_open_all(kek, &pc, UUID1, got, &n), -EACCES);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pbkdf2_kat),
        cmocka_unit_test(test_gcm_kat),
        cmocka_unit_test(test_wrap_unwrap),
        cmocka_unit_test(test_rewrap),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_hostile),
        cmocka_unit_test(test_generations),
    };
    /* One wrap for the whole group: derivations are deliberately slow. */
    return cmocka_run_group_tests(tests, setup_wrap, teardown_wrap);
}
