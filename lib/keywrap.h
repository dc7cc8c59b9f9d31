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
 *
 * Generations (issue 25: data-key rotation). A rotated volume holds data
 * keys of consecutive generations first .. newest (at most
 * GFS_KEYWRAP_MAX_GENS): the top-level wrap is generation `first`, and
 *   "gen": first, "keys": [{"gen": first+1, "nonce", "wrapped_key", "tag"}, ...]
 * (both optional, present only in this form; "keys" in generation order)
 * hold the rest. Every wrap of this form is sealed under the same KEK with
 *   "GFSKEY02" || uuid || gen u32 || first u32 || newest u32
 * as additional data, so the set is bound together: a wrap put back after
 * its generation was retired, or a changed "gen", does not open. The plain
 * form is exactly generation 1 with the "GFSKEY01" additional data above.
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

#define GFS_KEYWRAP_MAX_GENS 16

/* One more generation's wrap. */
struct gfs_keywrap_gen {
    uint32_t gen;
    uint8_t nonce[12];
    uint8_t wrapped[32];
    uint8_t tag[16];
};

struct gfs_keywrap {
    char kdf[32];          /* GFS_KDF_NAME */
    uint32_t iterations;   /* GFS_KDF_ITERATIONS .. GFS_KDF_ITERATIONS_MAX */
    uint8_t salt[16];
    uint8_t nonce[12];
    uint8_t wrapped[32];   /* the sealed data key of generation first_gen */
    uint8_t tag[16];
    uint32_t first_gen;    /* 0 or 1 with nextra 0: the plain form (generation 1) */
    uint32_t nextra;       /* generations first_gen+1 .. first_gen+nextra follow */
    struct gfs_keywrap_gen extra[GFS_KEYWRAP_MAX_GENS - 1];
};

struct gfs_datakey;

/* The first and newest generation kw holds. */
uint32_t gfs_keywrap_first(const struct gfs_keywrap *kw);
uint32_t gfs_keywrap_newest(const struct gfs_keywrap *kw);

/* The key-encryption key of kw's salt and iterations. -EINVAL, -EIO. */
int gfs_keywrap_kek(const char *password, const struct gfs_keywrap *kw, uint8_t kek[32]);

/* Every generation's data key, oldest first, into keys (room for
 * GFS_KEYWRAP_MAX_GENS); *n how many. -EACCES if any wrap fails to open
 * (wrong password, tampering, another uuid), -EINVAL malformed. */
int gfs_keywrap_open_all(const uint8_t kek[32], const struct gfs_keywrap *kw,
                         const uint8_t uuid[16], struct gfs_datakey *keys, unsigned *n);

/* Seal n data keys of consecutive generations (oldest first) into kw under
 * kek, keeping kw's kdf, iterations and salt (which kek must be made from):
 * the plain form for generation 1 alone, else the generations form. Fresh
 * nonces. kw is changed only on success. -EINVAL, -EIO. */
int gfs_keywrap_seal_all(const uint8_t kek[32], const uint8_t uuid[16],
                         const struct gfs_datakey *keys, unsigned n, struct gfs_keywrap *kw);

/* Make a random data key (returned in data_key) and its wrap under password.
 * -EINVAL (empty or over-long password, iterations out of range), -EIO. */
int gfs_keywrap_create(const char *password, uint32_t iterations, const uint8_t uuid[16],
                       uint8_t data_key[32], struct gfs_keywrap *kw);

/* Recover the data key of a plain (generation 1 only) wrap; -EINVAL for the
 * generations form. -EACCES on a wrong password (or a wrap that was
 * tampered with, or belongs to another uuid), -EINVAL on a malformed kw or
 * password, -EIO. data_key is written only on success. */
int gfs_keywrap_unwrap(const char *password, const struct gfs_keywrap *kw, const uint8_t uuid[16],
                       uint8_t data_key[32]);

/* Re-wrap the same data keys (every generation) under new_pw (new salt and
 * nonces, iterations as given). -EACCES when old_pw is wrong; kw is changed
 * only on success. */
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
