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

#include "codec.h"
#include "keywrap.h"
#include "sigv4.h"

#define WRAP_AAD_LEN 24

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

/* Seal data_key into kw under password with a fresh salt and nonce. kw is
 * written only on success. */
static int wrap(const char *password, uint32_t iterations, const uint8_t uuid[16],
                const uint8_t data_key[32], struct gfs_keywrap *kw)
{
    struct gfs_keywrap t;
    memset(&t, 0, sizeof(t));
    snprintf(t.kdf, sizeof(t.kdf), "%s", GFS_KDF_NAME);
    t.iterations = iterations;
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
    if (!password_ok(password) || !keywrap_ok(kw) || !uuid || !data_key)
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
    if (!password_ok(new_pw) || !iterations_ok(iterations))
        return -EINVAL;
    uint8_t dk[32];
    int r = gfs_keywrap_unwrap(old_pw, kw, uuid, dk);
    if (r == 0)
        r = wrap(new_pw, iterations, uuid, dk, kw);
    mbedtls_platform_zeroize(dk, sizeof(dk));
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
    /* Exactly the known fields: nothing unknown, nothing missing. */
    if (json_object_size(obj) != sizeof(fields) / sizeof(fields[0]))
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
    *kw = t;
    return 0;
}
