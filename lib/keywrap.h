/*
 * keywrap.h — a volume's data key wrapped by its password, and the
 * "encryption" object of volume.json that carries it.
 *
 * The data key is 32 random bytes made once per volume; it is what the block
 * codec (codec.h) derives its keys from, so it never changes. What is stored
 * is the data key sealed with AES-256-GCM under a key-encryption key
 *   KEK = PBKDF2-HMAC-SHA256(password, salt, iterations, 32 bytes)
 * with a random 16-byte salt, a random 12-byte nonce, and
 * "GFSKEY01" || volume uuid as additional data (a wrapped key copied into
 * another volume's volume.json does not open). Changing the password (rewrap) re-seals the same data key
 * under a new salt and nonce: no block is rewritten.
 *
 * A wrong password fails the GCM tag: -EACCES, with nothing else learnt and
 * nothing written. The iteration count is stored so it can be raised later;
 * it is never below GFS_KDF_ITERATIONS (OWASP's 2023 figure for
 * PBKDF2-HMAC-SHA256), nor above GFS_KDF_ITERATIONS_MAX (so a hostile
 * volume.json cannot make an open take hours).
 *
 * JSON form (every field required, nothing else allowed; base64 is standard
 * with padding, and must be exactly the canonical encoding of its length):
 *   { "cipher": "aes-256-gcm", "kdf": "pbkdf2-sha256", "iterations": 600000,
 *     "salt": "<16 bytes>", "nonce": "<12 bytes>", "wrapped_key": "<32 bytes>",
 *     "tag": "<16 bytes>" }
 */
#ifndef GLIDEFS_KEYWRAP_H
#define GLIDEFS_KEYWRAP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define GFS_KDF_NAME "pbkdf2-sha256"
#define GFS_KEYWRAP_CIPHER "aes-256-gcm"
#define GFS_KDF_ITERATIONS 600000u
#define GFS_KDF_ITERATIONS_MAX 10000000u
/* Longest password accepted, in bytes. */
#define GFS_PASSWORD_MAX 1024u

struct gfs_keywrap {
    char kdf[32];          /* GFS_KDF_NAME */
    uint32_t iterations;   /* GFS_KDF_ITERATIONS .. GFS_KDF_ITERATIONS_MAX */
    uint8_t salt[16];
    uint8_t nonce[12];
    uint8_t wrapped[32];   /* the sealed data key */
    uint8_t tag[16];
};

/* Make a random data key (returned in data_key) and its wrap under password.
 * -EINVAL (empty or over-long password, iterations out of range), -EIO. */
int gfs_keywrap_create(const char *password, uint32_t iterations, const uint8_t uuid[16],
                       uint8_t data_key[32], struct gfs_keywrap *kw);

/* Recover the data key. -EACCES on a wrong password (or a wrap that was
 * tampered with, or belongs to another uuid), -EINVAL on a malformed kw or
 * password, -EIO. data_key is written only on success. */
int gfs_keywrap_unwrap(const char *password, const struct gfs_keywrap *kw, const uint8_t uuid[16],
                       uint8_t data_key[32]);

/* Re-wrap the same data key under new_pw (new salt and nonce, iterations as
 * given). -EACCES when old_pw is wrong; kw is changed only on success. */
int gfs_keywrap_rewrap(const char *old_pw, const char *new_pw, uint32_t iterations,
                       const uint8_t uuid[16], struct gfs_keywrap *kw);

/* The JSON object above (new reference), or NULL when out of memory or kw
 * is malformed. */
json_t *gfs_keywrap_to_json(const struct gfs_keywrap *kw);
/* Parse and validate it. -EINVAL on anything malformed. */
int gfs_keywrap_from_json(const json_t *obj, struct gfs_keywrap *kw);

/* PBKDF2-HMAC-SHA256 (RFC 8018), any iteration count >= 1: the KDF itself,
 * exposed for known-answer tests. 0, -EINVAL, -ENOMEM, -EIO. */
int gfs_pbkdf2_sha256(const void *password, size_t pwlen, const void *salt, size_t saltlen,
                      uint32_t iterations, uint8_t *out, size_t outlen);

#endif
