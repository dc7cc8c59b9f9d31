/*
 * sigv4.h — AWS Signature Version 4 (header-signed requests) and the hash
 * helpers it needs, on mbedTLS. Pure functions of their arguments: no I/O, no
 * clock (the caller passes the date), so every step has known-answer tests
 * (tests/unit/test_sigv4.c, AWS's published vectors).
 *
 * Why our own signer and not libcurl's CURLOPT_AWS_SIGV4: curl 7.88 signs the
 * URL verbatim (the caller must already emit the canonical path and query),
 * does not hash the payload for us, and cannot be unit-tested step by step.
 * Here the same canonical strings are used to build the URL and to sign it,
 * so what is sent is what is signed.
 *
 * Strings returned through char ** are malloc'd; the caller frees them.
 * Functions return 0 or a negative errno (-ENOMEM, -EINVAL).
 */
#ifndef GLIDEFS_SIGV4_H
#define GLIDEFS_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define GFS_SHA256_LEN 32
#define GFS_SHA256_HEX_LEN 64
#define GFS_MD5_LEN 16
/* sha256 of the empty string, the payload hash of a request without a body */
#define GFS_SHA256_EMPTY_HEX "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void gfs_hex_encode(const uint8_t *in, size_t n, char *out);
/* 1 if s is a non-empty RFC 7230 token (what a header name or a method may be). */
int gfs_http_token_ok(const char *s);
/* SHA-256 of data as 64 lower-case hex digits (out: 65 bytes). */
int gfs_sha256_hex(const void *data, size_t len, char out[GFS_SHA256_HEX_LEN + 1]);
int gfs_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    uint8_t out[GFS_SHA256_LEN]);
int gfs_md5(const void *data, size_t len, uint8_t out[GFS_MD5_LEN]);
/* Standard base64 (with padding) of n bytes into out (outlen >= 4*ceil(n/3)+1). */
int gfs_base64(const uint8_t *in, size_t n, char *out, size_t outlen);

/* URI-encode as SigV4 (and S3) define it: A-Z a-z 0-9 - . _ ~ stay, every
 * other byte becomes %XX with upper-case hex; '/' stays only if keep_slash.
 * Returns a malloc'd string, or NULL when out of memory. */
char *gfs_sigv4_uri_encode(const char *s, size_t len, int keep_slash);

/* A name/value pair: a query parameter (decoded, not yet encoded) or a header. */
struct gfs_sigv4_kv {
    const char *name;
    const char *value; /* NULL is the same as "" */
};

/* Canonical query string of decoded pairs: each name and value encoded
 * (keep_slash = 0, so '/' is %2F), sorted by encoded name then value, joined
 * as "a=1&b=&c=3" (an empty value still gets '='). The same string is used in
 * the URL, so the server decodes exactly what was signed. "" when n == 0. */
int gfs_sigv4_canonical_query(const struct gfs_sigv4_kv *q, size_t n, char **out);

struct gfs_sigv4_request {
    const char *method;                   /* "GET", "PUT", ... */
    const char *path;                     /* decoded path, "/bucket/key"; "" means "/" */
    const struct gfs_sigv4_kv *query;     /* decoded query parameters */
    size_t nquery;
    /* Every header to sign, names in any case, must include host and
     * x-amz-date. Values are trimmed and runs of spaces collapsed; a CR or LF
     * in a value or a bad header name is -EINVAL (no header injection).
     * Duplicate names are joined with ',' in the given order. */
    const struct gfs_sigv4_kv *headers;
    size_t nheaders;
    const char *payload_hash;             /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
};

/* Step 1: the canonical request, and the SignedHeaders list ("host;x-amz-date"). */
int gfs_sigv4_canonical_request(const struct gfs_sigv4_request *r, char **creq,
                                char **signed_headers);

/* Step 2: "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(creq)>". */
int gfs_sigv4_string_to_sign(const char *amz_date, const char *scope, const char *creq,
                             char **out);

/* Step 3: kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date8), region), service),
 * "aws4_request"). date8 is "YYYYMMDD". */
int gfs_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                          const char *service, uint8_t key[GFS_SHA256_LEN]);

struct gfs_sigv4_signer {
    const char *access_key_id;
    const char *secret_access_key; /* never copied into any output */
    const char *region;
    const char *service;           /* "s3" */
};

/* All steps: the value of the Authorization header for request r signed at
 * amz_date ("YYYYMMDDTHHMMSSZ", which must also be r's x-amz-date header). */
int gfs_sigv4_authorization(const struct gfs_sigv4_signer *s, const struct gfs_sigv4_request *r,
                            const char *amz_date, char **out);

/* t as "YYYYMMDDTHHMMSSZ" (UTC). */
int gfs_sigv4_amz_date(time_t t, char out[17]);

#endif
