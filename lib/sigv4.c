/*
 * sigv4.c — AWS Signature Version 4 on mbedTLS (SHA-256, HMAC-SHA-256, MD5,
 * base64 through mbedtls/md.h and mbedtls/base64.h, which are the same in
 * mbedTLS 2.28 and 3.x). Owns: URI encoding, canonical query, canonical
 * request, string to sign, signing-key derivation, Authorization header.
 * See sigv4.h for why we sign ourselves instead of using libcurl's signer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "cleanup.h"
#include "sigv4.h"
#include "strbuf.h"

/* ---- hashes ------------------------------------------------------------- */

void gfs_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int gfs_sha256_hex(const void *data, size_t len, char out[GFS_SHA256_HEX_LEN + 1])
{
    uint8_t h[GFS_SHA256_LEN];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md || mbedtls_md(md, data, len, h) != 0)
        return -EIO;
    gfs_hex_encode(h, sizeof(h), out);
    return 0;
}

int gfs_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    uint8_t out[GFS_SHA256_LEN])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md || mbedtls_md_hmac(md, key, keylen, msg, msglen, out) != 0)
        return -EIO;
    return 0;
}

int gfs_md5(const void *data, size_t len, uint8_t out[GFS_MD5_LEN])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_MD5);
    if (!md || mbedtls_md(md, data, len, out) != 0)
        return -EIO;
    return 0;
}

int gfs_base64(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    size_t olen = 0;
    if (mbedtls_base64_encode((unsigned char *)out, outlen, &olen, in, n) != 0)
        return -ERANGE;
    return 0;
}

/* ---- encoding ----------------------------------------------------------- */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

char *gfs_sigv4_uri_encode(const char *s, size_t len, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(3 * len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

struct enc_pair {
    char *name, *value;
};

static int cmp_pair(const void *a, const void *b)
{
    const struct enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

int gfs_sigv4_canonical_query(const struct gfs_sigv4_kv *q, size_t n, char **out)
{
    *out = NULL;
    CLEANUP_FREE struct enc_pair *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *v = q[i].value ? q[i].value : "";
        if (!q[i].name) {
            rc = -EINVAL;
            break;
        }
        p[i].name = gfs_sigv4_uri_encode(q[i].name, strlen(q[i].name), 0);
        p[i].value = gfs_sigv4_uri_encode(v, strlen(v), 0);
        if (!p[i].name || !p[i].value)
            rc = -ENOMEM;
    }
    struct gfs_sbuf b = {0};
    if (rc == 0) {
        qsort(p, n, sizeof(*p), cmp_pair);
        for (size_t i = 0; i < n; i++) {
            if (i)
                gfs_sb_chr(&b, '&');
            gfs_sb_str(&b, p[i].name);
            gfs_sb_chr(&b, '=');
            gfs_sb_str(&b, p[i].value);
        }
        rc = gfs_sb_finish(&b, out);
    }
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].value);
    }
    return rc;
}

/* ---- canonical request -------------------------------------------------- */

/* RFC 7230 token characters: what a header name may hold. */
static int tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int gfs_http_token_ok(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* Append v trimmed, with runs of blanks collapsed to one space. */
static int add_header_value(struct gfs_sbuf *b, const char *v)
{
    int pending_space = 0, started = 0;
    for (; v && *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '\r' || c == '\n' || c == '\0')
            return -EINVAL;
        if (c == ' ' || c == '\t') {
            pending_space = started;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            return -EINVAL;
        if (pending_space)
            gfs_sb_chr(b, ' ');
        pending_space = 0;
        started = 1;
        gfs_sb_chr(b, (char)c);
    }
    return 0;
}

struct lc_header {
    char *name; /* lower-case copy */
    const char *value;
};

int gfs_sigv4_canonical_request(const struct gfs_sigv4_request *r, char **creq,
                                char **signed_headers)
{
    *creq = NULL;
    if (signed_headers)
        *signed_headers = NULL;
    if (!r || !r->method || !*r->method || !r->payload_hash || !r->nheaders)
        return -EINVAL;

    size_t n = r->nheaders;
    CLEANUP_FREE struct lc_header *h = calloc(n, sizeof(*h));
    if (!h)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!gfs_http_token_ok(r->headers[i].name)) {
            rc = -EINVAL;
            break;
        }
        h[i].name = strdup(r->headers[i].name);
        if (!h[i].name) {
            rc = -ENOMEM;
            break;
        }
        for (char *c = h[i].name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        h[i].value = r->headers[i].value;
    }
    /* Insertion sort: stable, so duplicate names keep their order; n is small. */
    for (size_t i = 1; i < n && rc == 0; i++) {
        struct lc_header t = h[i];
        size_t j = i;
        while (j > 0 && strcmp(h[j - 1].name, t.name) > 0) {
            h[j] = h[j - 1];
            j--;
        }
        h[j] = t;
    }

    struct gfs_sbuf b = {0}, sh = {0};
    if (rc == 0) {
        gfs_sb_str(&b, r->method);
        gfs_sb_chr(&b, '\n');
        const char *path = r->path && *r->path ? r->path : "/";
        char *p = gfs_sigv4_uri_encode(path, strlen(path), 1);
        if (!p)
            rc = -ENOMEM;
        else
            gfs_sb_str(&b, p);
        free(p);
        gfs_sb_chr(&b, '\n');
    }
    if (rc == 0) {
        char *q = NULL;
        rc = gfs_sigv4_canonical_query(r->query, r->nquery, &q);
        if (rc == 0)
            gfs_sb_str(&b, q);
        free(q);
        gfs_sb_chr(&b, '\n');
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        int dup = i > 0 && strcmp(h[i - 1].name, h[i].name) == 0;
        if (dup) {
            gfs_sb_chr(&b, ',');
        } else {
            if (i > 0) {
                gfs_sb_chr(&b, '\n');
                gfs_sb_chr(&sh, ';');
            }
            gfs_sb_str(&b, h[i].name);
            gfs_sb_chr(&b, ':');
            gfs_sb_str(&sh, h[i].name);
        }
        rc = add_header_value(&b, h[i].value);
    }
    if (rc == 0) {
        gfs_sb_str(&b, "\n\n");
        if (sh.p)
            gfs_sb_str(&b, sh.p);
        gfs_sb_chr(&b, '\n');
        gfs_sb_str(&b, r->payload_hash);
    }
    for (size_t i = 0; i < n; i++)
        free(h[i].name);
    if (rc != 0) {
        free(b.p);
        free(sh.p);
        return rc;
    }
    rc = gfs_sb_finish(&b, creq);
    if (rc == 0 && signed_headers) {
        rc = gfs_sb_finish(&sh, signed_headers);
        if (rc != 0) {
            free(*creq);
            *creq = NULL;
        }
    } else {
        free(sh.p);
    }
    return rc;
}

int gfs_sigv4_string_to_sign(const char *amz_date, const char *scope, const char *creq,
                             char **out)
{
    *out = NULL;
    char hash[GFS_SHA256_HEX_LEN + 1];
    int rc = gfs_sha256_hex(creq, strlen(creq), hash);
    if (rc != 0)
        return rc;
    struct gfs_sbuf b = {0};
    gfs_sb_str(&b, "AWS4-HMAC-SHA256\n");
    gfs_sb_str(&b, amz_date);
    gfs_sb_chr(&b, '\n');
    gfs_sb_str(&b, scope);
    gfs_sb_chr(&b, '\n');
    gfs_sb_str(&b, hash);
    return gfs_sb_finish(&b, out);
}

int gfs_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                          const char *service, uint8_t key[GFS_SHA256_LEN])
{
    size_t slen = strlen(secret);
    CLEANUP_FREE char *k0 = malloc(slen + 5);
    if (!k0)
        return -ENOMEM;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen + 1);
    uint8_t k1[GFS_SHA256_LEN], k2[GFS_SHA256_LEN], k3[GFS_SHA256_LEN];
    int rc = gfs_hmac_sha256(k0, slen + 4, date8, strlen(date8), k1);
    if (rc == 0)
        rc = gfs_hmac_sha256(k1, sizeof(k1), region, strlen(region), k2);
    if (rc == 0)
        rc = gfs_hmac_sha256(k2, sizeof(k2), service, strlen(service), k3);
    if (rc == 0)
        rc = gfs_hmac_sha256(k3, sizeof(k3), "aws4_request", 12, key);
    /* Key material must not linger in freed memory or on the stack. */
    mbedtls_platform_zeroize(k0, slen + 4);
    mbedtls_platform_zeroize(k1, sizeof(k1));
    mbedtls_platform_zeroize(k2, sizeof(k2));
    mbedtls_platform_zeroize(k3, sizeof(k3));
    return rc;
}

static int amz_date_ok(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return 0;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return 0;
    return 1;
}

/* The credential scope must not carry '/' or control characters. */
static int scope_part_ok(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s <= 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int gfs_sigv4_authorization(const struct gfs_sigv4_signer *s, const struct gfs_sigv4_request *r,
                            const char *amz_date, char **out)
{
    *out = NULL;
    if (!s || !scope_part_ok(s->access_key_id) || !s->secret_access_key ||
        !scope_part_ok(s->region) || !scope_part_ok(s->service) || !amz_date_ok(amz_date))
        return -EINVAL;

    char date8[9];
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    char scope[256];
    int n = snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date8, s->region,
                     s->service);
    if (n < 0 || (size_t)n >= sizeof(scope))
        return -EINVAL;

    CLEANUP_FREE char *creq = NULL;
    CLEANUP_FREE char *signed_headers = NULL;
    CLEANUP_FREE char *sts = NULL;
    int rc = gfs_sigv4_canonical_request(r, &creq, &signed_headers);
    if (rc == 0)
        rc = gfs_sigv4_string_to_sign(amz_date, scope, creq, &sts);
    if (rc != 0)
        return rc;

    uint8_t key[GFS_SHA256_LEN], sig[GFS_SHA256_LEN];
    rc = gfs_sigv4_signing_key(s->secret_access_key, date8, s->region, s->service, key);
    if (rc == 0)
        rc = gfs_hmac_sha256(key, sizeof(key), sts, strlen(sts), sig);
    mbedtls_platform_zeroize(key, sizeof(key));
    if (rc != 0)
        return rc;
    char sighex[GFS_SHA256_HEX_LEN + 1];
    gfs_hex_encode(sig, sizeof(sig), sighex);

    struct gfs_sbuf b = {0};
    gfs_sb_str(&b, "AWS4-HMAC-SHA256 Credential=");
    gfs_sb_str(&b, s->access_key_id);
    gfs_sb_chr(&b, '/');
    gfs_sb_str(&b, scope);
    gfs_sb_str(&b, ", SignedHeaders=");
    gfs_sb_str(&b, signed_headers);
    gfs_sb_str(&b, ", Signature=");
    gfs_sb_str(&b, sighex);
    return gfs_sb_finish(&b, out);
}

int gfs_sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return -EINVAL;
    if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -EINVAL;
    return 0;
}
