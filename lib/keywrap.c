/*
 * keywrap.c — the password-wrapped data key of keywrap.h: PBKDF2 key
 * derivation (mbedTLS 2.28 pkcs5), AES-256-GCM wrap and unwrap through
 * codec.h's AEAD helpers, rewrap for a password change, and the strict JSON
 * form kept in volume.json.
 *
 * Every secret that passes through a stack buffer here (KEK, data key
 * copies) is wiped with mbedtls_platform_zeroize before returning.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#include "bytes.h"
#include "codec.h"
#include "keywrap.h"
#include "sigv4.h"

#define WRAP_AAD_LEN 24
#define WRAP_AAD2_LEN 36

int gfs_pbkdf2_sha256(const void *password, size_t pwlen, const void *salt, size_t saltlen,
                      uint32_t iterations, uint8_t *out, size_t outlen)
{
    if ((!password && pwlen) || (!salt && saltlen) || !out || iterations == 0 || outlen == 0 ||
        outlen > UINT32_MAX)
        return -EINVAL;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md)
        return -EIO;
    mbedtls_md_context_t ctx;
    mbedtls_md_init(&ctx);
    int r = mbedtls_md_setup(&ctx, md, 1);
    if (r == 0)
        r = mbedtls_pkcs5_pbkdf2_hmac(&ctx, password, pwlen, salt, saltlen, iterations,
                                      (uint32_t)outlen, out);
    mbedtls_md_free(&ctx);
    if (r == MBEDTLS_ERR_MD_ALLOC_FAILED)
        return -ENOMEM;
    return r == 0 ? 0 : -EIO;
}

static int password_ok(const char *pw)
{
    if (!pw)
        return 0;
    size_t n = strnlen(pw, GFS_PASSWORD_MAX + 1);
    return n > 0 && n <= GFS_PASSWORD_MAX;
}

static int iterations_ok(uint32_t it)
{
    return it >= GFS_KDF_ITERATIONS && it <= GFS_KDF_ITERATIONS_MAX;
}

static int keywrap_ok(const struct gfs_keywrap *kw)
{
    return kw && memchr(kw->kdf, '\0', sizeof(kw->kdf)) && strcmp(kw->kdf, GFS_KDF_NAME) == 0 &&
           iterations_ok(kw->iterations);
}

static void wrap_aad(const uint8_t uuid[16], uint8_t aad[WRAP_AAD_LEN])
{
    memcpy(aad, "GFSKEY01", 8);
    memcpy(aad + 8, uuid, 16);
}

static void wrap_aad2(const uint8_t uuid[16], uint32_t gen, uint32_t first, uint32_t newest,
                      uint8_t aad[WRAP_AAD2_LEN])
{
    memcpy(aad, "GFSKEY02", 8);
    memcpy(aad + 8, uuid, 16);
    gfs_le32_put(aad + 24, gen);
    gfs_le32_put(aad + 28, first);
    gfs_le32_put(aad + 32, newest);
}

static int plain_form(const struct gfs_keywrap *kw)
{
    return kw->first_gen <= 1 && kw->nextra == 0;
}

uint32_t gfs_keywrap_first(const struct gfs_keywrap *kw)
{
    return kw->first_gen ? kw->first_gen : 1;
}

uint32_t gfs_keywrap_newest(const struct gfs_keywrap *kw)
{
    return gfs_keywrap_first(kw) + kw->nextra;
}

/* Generations consecutive from first_gen, within the limits. */
static int gens_ok(const struct gfs_keywrap *kw)
{
    if (kw->nextra > GFS_KEYWRAP_MAX_GENS - 1 || gfs_keywrap_first(kw) > UINT32_MAX - 16)
        return 0;
    for (uint32_t i = 0; i < kw->nextra; i++)
        if (kw->extra[i].gen != gfs_keywrap_first(kw) + 1 + i)
            return 0;
    return 1;
}

int gfs_keywrap_kek(const char *password, const struct gfs_keywrap *kw, uint8_t kek[32])
{
    if (!password_ok(password) || !keywrap_ok(kw) || !kek)
        return -EINVAL;
    return gfs_pbkdf2_sha256(password, strlen(password), kw->salt, sizeof(kw->salt),
                             kw->iterations, kek, 32);
}

int gfs_keywrap_open_all(const uint8_t kek[32], const struct gfs_keywrap *kw,
                         const uint8_t uuid[16], struct gfs_datakey *keys, unsigned *n)
{
    if (!kek || !keywrap_ok(kw) || !gens_ok(kw) || !uuid || !keys || !n)
        return -EINVAL;
    uint32_t first = gfs_keywrap_first(kw), newest = gfs_keywrap_newest(kw);
    int plain = plain_form(kw);
    int r = 0;
    for (uint32_t i = 0; i <= kw->nextra && r == 0; i++) {
        const uint8_t *nonce = i ? kw->extra[i - 1].nonce : kw->nonce;
        const uint8_t *wrapped = i ? kw->extra[i - 1].wrapped : kw->wrapped;
        const uint8_t *tag = i ? kw->extra[i - 1].tag : kw->tag;
        uint8_t aad[WRAP_AAD2_LEN];
        size_t alen = WRAP_AAD2_LEN;
        if (plain) {
            wrap_aad(uuid, aad);
            alen = WRAP_AAD_LEN;
        } else {
            wrap_aad2(uuid, first + i, first, newest, aad);
        }
        keys[i].gen = first + i;
        r = gfs_aes256gcm_open(kek, nonce, aad, alen, wrapped, 32, keys[i].key, tag);
        if (r == -EBADMSG)
            r = -EACCES;
    }
    if (r < 0) {
        mbedtls_platform_zeroize(keys, sizeof *keys * (kw->nextra + 1));
        return r;
    }
    *n = kw->nextra + 1;
    return 0;
}

int gfs_keywrap_seal_all(const uint8_t kek[32], const uint8_t uuid[16],
                         const struct gfs_datakey *keys, unsigned n, struct gfs_keywrap *kw)
{
    if (!kek || !uuid || !keys || n == 0 || n > GFS_KEYWRAP_MAX_GENS || !keywrap_ok(kw) ||
        keys[0].gen == 0 || keys[0].gen > UINT32_MAX - 16)
        return -EINVAL;
    for (unsigned i = 1; i < n; i++)
        if (keys[i].gen != keys[0].gen + i)
            return -EINVAL;
    struct gfs_keywrap t = *kw;
    t.first_gen = keys[0].gen;
    t.nextra = n - 1;
    memset(t.extra, 0, sizeof t.extra);
    int plain = plain_form(&t);
    uint32_t first = keys[0].gen, newest = keys[0].gen + n - 1;
    int r = 0;
    for (unsigned i = 0; i < n && r == 0; i++) {
        uint8_t *nonce = i ? t.extra[i - 1].nonce : t.nonce;
        uint8_t *wrapped = i ? t.extra[i - 1].wrapped : t.wrapped;
        uint8_t *tag = i ? t.extra[i - 1].tag : t.tag;
        if (i)
            t.extra[i - 1].gen = keys[i].gen;
        uint8_t aad[WRAP_AAD2_LEN];
        size_t alen = WRAP_AAD2_LEN;
        if (plain) {
            wrap_aad(uuid, aad);
            alen = WRAP_AAD_LEN;
        } else {
            wrap_aad2(uuid, keys[i].gen, first, newest, aad);
        }
        r = gfs_random_bytes(nonce, 12);
        if (r == 0)
            r = gfs_aes256gcm_seal(kek, nonce, aad, alen, keys[i].key, 32, wrapped, tag);
    }
    if (r == 0) {
        if (plain)
            t.first_gen = 0;
        *kw = t;
    }
    return r;
}

/* Seal data_key into kw under password with a fresh salt and nonce. kw is
 * written only on success. */
static int wrap(const char *password, uint32_t iterations, const uint8_t uuid[16],
                const uint8_t data_key[32], struct gfs_keywrap *kw)
{
    struct gfs_keywrap t;
    memset(&t, 0, sizeof(t));
    snprintf(t.kdf, sizeof(t.kdf), "%s", GFS_KDF_NAME);
    t.iterations = iterations; /* the plain form: generation 1 */
    if (gfs_random_bytes(t.salt, sizeof(t.salt)) < 0 ||
        gfs_random_bytes(t.nonce, sizeof(t.nonce)) < 0)
        return -EIO;
    uint8_t kek[GFS_KEY_LEN];
    int r = gfs_pbkdf2_sha256(password, strlen(password), t.salt, sizeof(t.salt), iterations, kek,
                              sizeof(kek));
    if (r == 0) {
        uint8_t aad[WRAP_AAD_LEN];
        wrap_aad(uuid, aad);
        r = gfs_aes256gcm_seal(kek, t.nonce, aad, sizeof(aad), data_key, 32, t.wrapped, t.tag);
    }
    mbedtls_platform_zeroize(kek, sizeof(kek));
    if (r == 0)
        *kw = t;
    return r;
}

int gfs_keywrap_create(const char *password, uint32_t iterations, const uint8_t uuid[16],
                       uint8_t data_key[32], struct gfs_keywrap *kw)
{
    if (!password_ok(password) || !iterations_ok(iterations) || !uuid || !data_key || !kw)
        return -EINVAL;
    uint8_t dk[32];
    int r = gfs_random_bytes(dk, sizeof(dk));
    if (r == 0)
        r = wrap(password, iterations, uuid, dk, kw);
    if (r == 0)
        memcpy(data_key, dk, sizeof(dk));
    mbedtls_platform_zeroize(dk, sizeof(dk));
    return r;
}

int gfs_keywrap_unwrap(const char *password, const struct gfs_keywrap *kw, const uint8_t uuid[16],
                       uint8_t data_key[32])
{
    if (!password_ok(password) || !keywrap_ok(kw) || !uuid || !data_key || !plain_form(kw))
        return -EINVAL;
    uint8_t kek[GFS_KEY_LEN], dk[32];
    int r = gfs_pbkdf2_sha256(password, strlen(password), kw->salt, sizeof(kw->salt),
                              kw->iterations, kek, sizeof(kek));
    if (r == 0) {
        uint8_t aad[WRAP_AAD_LEN];
        wrap_aad(uuid, aad);
        r = gfs_aes256gcm_open(kek, kw->nonce, aad, sizeof(aad), kw->wrapped, sizeof(kw->wrapped),
                               dk, kw->tag);
        if (r == -EBADMSG)
            r = -EACCES;
    }
    if (r == 0)
        memcpy(data_key, dk, sizeof(dk));
    mbedtls_platform_zeroize(kek, sizeof(kek));
    mbedtls_platform_zeroize(dk, sizeof(dk));
    return r;
}

int gfs_keywrap_rewrap(const char *old_pw, const char *new_pw, uint32_t iterations,
                       const uint8_t uuid[16], struct gfs_keywrap *kw)
{
    if (!password_ok(new_pw) || !iterations_ok(iterations) || !kw)
        return -EINVAL;
    struct gfs_datakey keys[GFS_KEYWRAP_MAX_GENS];
    uint8_t kek[GFS_KEY_LEN];
    unsigned n = 0;
    int r = gfs_keywrap_kek(old_pw, kw, kek);
    if (r == 0)
        r = gfs_keywrap_open_all(kek, kw, uuid, keys, &n);
    struct gfs_keywrap t = *kw;
    t.iterations = iterations;
    if (r == 0)
        r = gfs_random_bytes(t.salt, sizeof t.salt);
    if (r == 0)
        r = gfs_keywrap_kek(new_pw, &t, kek);
    if (r == 0)
        r = gfs_keywrap_seal_all(kek, uuid, keys, n, &t);
    if (r == 0)
        *kw = t;
    mbedtls_platform_zeroize(kek, sizeof kek);
    mbedtls_platform_zeroize(keys, sizeof keys);
    return r;
}

/* ---- JSON ---- */

static json_t *b64_json(const uint8_t *in, size_t n)
{
    char buf[64];
    if (gfs_base64(in, n, buf, sizeof(buf)) < 0)
        return NULL;
    return json_string(buf);
}

/* Decode a JSON string holding exactly n bytes in canonical padded base64. */
static int b64_exact(const json_t *v, uint8_t *out, size_t n)
{
    if (!json_is_string(v))
        return -EINVAL;
    const char *s = json_string_value(v);
    size_t slen = json_string_length(v);
    size_t want = 4 * ((n + 2) / 3);
    if (slen != want || strlen(s) != slen)
        return -EINVAL; /* also refuses embedded NULs */
    uint8_t tmp[48];
    size_t olen = 0;
    if (n > sizeof(tmp) ||
        mbedtls_base64_decode(tmp, n, &olen, (const unsigned char *)s, slen) != 0 || olen != n)
        return -EINVAL;
    /* Only the canonical spelling (no stray bits in the padding). */
    char again[72];
    if (gfs_base64(tmp, n, again, sizeof(again)) < 0 || strcmp(again, s) != 0)
        return -EINVAL;
    memcpy(out, tmp, n);
    return 0;
}

json_t *gfs_keywrap_to_json(const struct gfs_keywrap *kw)
{
    if (!keywrap_ok(kw))
        return NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "cipher", json_string(GFS_KEYWRAP_CIPHER));
    bad |= json_object_set_new(o, "kdf", json_string(kw->kdf));
    bad |= json_object_set_new(o, "iterations", json_integer((json_int_t)kw->iterations));
    bad |= json_object_set_new(o, "salt", b64_json(kw->salt, sizeof(kw->salt)));
    bad |= json_object_set_new(o, "nonce", b64_json(kw->nonce, sizeof(kw->nonce)));
    bad |= json_object_set_new(o, "wrapped_key", b64_json(kw->wrapped, sizeof(kw->wrapped)));
    bad |= json_object_set_new(o, "tag", b64_json(kw->tag, sizeof(kw->tag)));
    if (!plain_form(kw)) {
        if (!gens_ok(kw)) {
            json_decref(o);
            return NULL;
        }
        bad |= json_object_set_new(o, "gen", json_integer((json_int_t)kw->first_gen));
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < kw->nextra; i++) {
            const struct gfs_keywrap_gen *g = &kw->extra[i];
            json_t *e = json_object();
            int b = !e;
            if (e) {
                b |= json_object_set_new(e, "gen", json_integer((json_int_t)g->gen));
                b |= json_object_set_new(e, "nonce", b64_json(g->nonce, sizeof g->nonce));
                b |= json_object_set_new(e, "wrapped_key", b64_json(g->wrapped, sizeof g->wrapped));
                b |= json_object_set_new(e, "tag", b64_json(g->tag, sizeof g->tag));
            }
            bad |= b | json_array_append_new(a, e);
        }
        bad |= json_object_set_new(o, "keys", a);
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int str_is(const json_t *v, const char *want)
{
    return json_is_string(v) && json_string_length(v) == strlen(want) &&
           strcmp(json_string_value(v), want) == 0;
}

int gfs_keywrap_from_json(const json_t *obj, struct gfs_keywrap *kw)
{
    static const char *const fields[] = { "cipher", "kdf",         "iterations", "salt",
                                          "nonce",  "wrapped_key", "tag" };
    if (!json_is_object(obj) || !kw)
        return -EINVAL;
    /* Exactly the known fields: nothing unknown, nothing missing ("gen" and
     * "keys" together, or neither) */
    const json_t *jgen = json_object_get(obj, "gen"), *jkeys = json_object_get(obj, "keys");
    if (!jgen != !jkeys)
        return -EINVAL;
    if (json_object_size(obj) != sizeof(fields) / sizeof(fields[0]) + (jgen ? 2u : 0u))
        return -EINVAL;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!json_object_get(obj, fields[i]))
            return -EINVAL;

    struct gfs_keywrap t;
    memset(&t, 0, sizeof(t));
    if (!str_is(json_object_get(obj, "cipher"), GFS_KEYWRAP_CIPHER) ||
        !str_is(json_object_get(obj, "kdf"), GFS_KDF_NAME))
        return -EINVAL;
    snprintf(t.kdf, sizeof(t.kdf), "%s", GFS_KDF_NAME);
    const json_t *it = json_object_get(obj, "iterations");
    if (!json_is_integer(it))
        return -EINVAL;
    json_int_t n = json_integer_value(it);
    if (n < (json_int_t)GFS_KDF_ITERATIONS || n > (json_int_t)GFS_KDF_ITERATIONS_MAX)
        return -EINVAL;
    t.iterations = (uint32_t)n;
    if (b64_exact(json_object_get(obj, "salt"), t.salt, sizeof(t.salt)) < 0 ||
        b64_exact(json_object_get(obj, "nonce"), t.nonce, sizeof(t.nonce)) < 0 ||
        b64_exact(json_object_get(obj, "wrapped_key"), t.wrapped, sizeof(t.wrapped)) < 0 ||
        b64_exact(json_object_get(obj, "tag"), t.tag, sizeof(t.tag)) < 0)
        return -EINVAL;
    if (jgen) {
        if (!json_is_integer(jgen) || json_integer_value(jgen) < 1 ||
            json_integer_value(jgen) > (json_int_t)UINT32_MAX - 16 || !json_is_array(jkeys) ||
            json_array_size(jkeys) > GFS_KEYWRAP_MAX_GENS - 1)
            return -EINVAL;
        t.first_gen = (uint32_t)json_integer_value(jgen);
        t.nextra = (uint32_t)json_array_size(jkeys);
        if (t.first_gen == 1 && t.nextra == 0)
            return -EINVAL; /* that is the plain form, written without them */
        for (uint32_t i = 0; i < t.nextra; i++) {
            const json_t *e = json_array_get(jkeys, i);
            struct gfs_keywrap_gen *g = &t.extra[i];
            const json_t *eg = json_object_get(e, "gen");
            if (!json_is_object(e) || json_object_size(e) != 4 || !json_is_integer(eg) ||
                json_integer_value(eg) != (json_int_t)t.first_gen + 1 + i ||
                b64_exact(json_object_get(e, "nonce"), g->nonce, sizeof g->nonce) < 0 ||
                b64_exact(json_object_get(e, "wrapped_key"), g->wrapped, sizeof g->wrapped) < 0 ||
                b64_exact(json_object_get(e, "tag"), g->tag, sizeof g->tag) < 0)
                return -EINVAL;
            g->gen = t.first_gen + 1 + i;
        }
    }
    *kw = t;
    return 0;
}
