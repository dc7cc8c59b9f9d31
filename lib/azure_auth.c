/*
 * azure_auth.c — Azure Storage Shared Key signing and SAS token checks (see
 * azure_auth.h) on mbedTLS (HMAC-SHA256 through sigv4.c's helper, base64).
 * Owns: the string to sign of the Blob service (version 2009-09-19 and
 * later), canonicalized headers and resource, the Authorization header
 * value, the x-ms-date format, account-key and SAS-token validation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "azure_auth.h"
#include "cleanup.h"
#include "sigv4.h"
#include "strbuf.h"

/* ---- checks -------------------------------------------------------------- */

int gfs_az_account_ok(const char *s, size_t n)
{
    if (!s || n < 3 || n > GFS_AZ_ACCOUNT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* A value both readings of "replace linear whitespace with one space" leave
 * alone: printable, no tab, no blank at either end, no two blanks in a row. */
static int value_ok(const char *v)
{
    if (!v)
        return 1;
    size_t n = strlen(v);
    if (n && (v[0] == ' ' || v[n - 1] == ' '))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f || (c == ' ' && v[i + 1] == ' '))
            return 0;
    }
    return 1;
}

static int is_xms(const char *name) { return strncasecmp(name, "x-ms-", 5) == 0; }

static void lower_into(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] - 'A' + 'a' : src[i]);
    dst[i] = '\0';
}

/* ---- canonicalized headers ----------------------------------------------- */

struct lkv {
    char *name; /* lower-cased */
    const char *value;
};

static int cmp_lkv(const void *a, const void *b)
{
    const struct lkv *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static void free_lkv(struct lkv *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].name);
    free(p);
}

int gfs_az_canonical_headers(const struct gfs_az_kv *h, size_t n, char **out)
{
    *out = NULL;
    if (n && !h)
        return -EINVAL;
    struct lkv *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!gfs_http_token_ok(h[i].name) || !value_ok(h[i].value)) {
            rc = -EINVAL;
            break;
        }
        if (!is_xms(h[i].name))
            continue;
        size_t nl = strlen(h[i].name);
        if (!(p[k].name = malloc(nl + 1))) {
            rc = -ENOMEM;
            break;
        }
        lower_into(p[k].name, h[i].name, nl + 1);
        p[k].value = h[i].value ? h[i].value : "";
        k++;
    }
    struct gfs_sbuf b = {0};
    if (rc == 0) {
        qsort(p, k, sizeof(*p), cmp_lkv);
        for (size_t i = 0; i < k && rc == 0; i++) {
            if (i && strcmp(p[i].name, p[i - 1].name) == 0)
                rc = -EINVAL; /* "each header may appear only once" */
            gfs_sb_str(&b, p[i].name);
            gfs_sb_chr(&b, ':');
            gfs_sb_str(&b, p[i].value);
            gfs_sb_chr(&b, '\n');
        }
    }
    free_lkv(p, k);
    if (rc != 0) {
        free(b.p);
        return rc;
    }
    return gfs_sb_finish(&b, out);
}

/* ---- canonicalized resource ---------------------------------------------- */

int gfs_az_canonical_resource(const char *account, const char *path,
                              const struct gfs_az_kv *q, size_t n, char **out)
{
    *out = NULL;
    if (!account || !gfs_az_account_ok(account, strlen(account)) || !path || path[0] != '/' ||
        (n && !q))
        return -EINVAL;
    for (const char *s = path; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '?' || *s == '#')
            return -EINVAL; /* the path as sent: encoded, no query */
    struct lkv *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    size_t k = 0;
    int rc = 0;
    for (; k < n && rc == 0; k++) {
        const char *v = q[k].value ? q[k].value : "";
        if (!q[k].name || !*q[k].name) {
            rc = -EINVAL;
            break;
        }
        for (const char *s = q[k].name; *s && rc == 0; s++)
            if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ':')
                rc = -EINVAL;
        for (const char *s = v; *s && rc == 0; s++)
            if ((unsigned char)*s < 0x20 || *s == 0x7f)
                rc = -EINVAL;
        if (rc)
            break;
        size_t nl = strlen(q[k].name);
        if (!(p[k].name = malloc(nl + 1))) {
            rc = -ENOMEM;
            break;
        }
        lower_into(p[k].name, q[k].name, nl + 1);
        p[k].value = v;
    }
    struct gfs_sbuf b = {0};
    if (rc == 0) {
        qsort(p, k, sizeof(*p), cmp_lkv);
        gfs_sb_chr(&b, '/');
        gfs_sb_str(&b, account);
        gfs_sb_str(&b, path);
        for (size_t i = 0; i < k; i++) {
            if (i && strcmp(p[i].name, p[i - 1].name) == 0) {
                gfs_sb_chr(&b, ','); /* values of one name, sorted, comma-separated */
            } else {
                gfs_sb_chr(&b, '\n');
                gfs_sb_str(&b, p[i].name);
                gfs_sb_chr(&b, ':');
            }
            gfs_sb_str(&b, p[i].value);
        }
    }
    free_lkv(p, k);
    if (rc != 0) {
        free(b.p);
        return rc;
    }
    return gfs_sb_finish(&b, out);
}

/* ---- string to sign ------------------------------------------------------ */

static const char *const standard[] = {
    "Content-Encoding", "Content-Language", "Content-Length", "Content-MD5",
    "Content-Type", "Date", "If-Modified-Since", "If-Match", "If-None-Match",
    "If-Unmodified-Since", "Range",
};

int gfs_az_string_to_sign(const char *account, const struct gfs_az_request *r, char **out)
{
    *out = NULL;
    if (!r || !r->method || !gfs_http_token_ok(r->method) || (r->nheaders && !r->headers))
        return -EINVAL;
    const char *vals[sizeof(standard) / sizeof(standard[0])] = {0};
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!gfs_http_token_ok(r->headers[i].name) || !value_ok(r->headers[i].value))
            return -EINVAL;
        for (size_t s = 0; s < sizeof(standard) / sizeof(standard[0]); s++) {
            if (strcasecmp(r->headers[i].name, standard[s]) != 0)
                continue;
            if (vals[s])
                return -EINVAL; /* sent twice: which one is signed? */
            vals[s] = r->headers[i].value ? r->headers[i].value : "";
        }
    }
    CLEANUP_FREE char *ch = NULL;
    CLEANUP_FREE char *cr = NULL;
    int rc = gfs_az_canonical_headers(r->headers, r->nheaders, &ch);
    if (rc == 0)
        rc = gfs_az_canonical_resource(account, r->path, r->query, r->nquery, &cr);
    if (rc != 0)
        return rc;
    struct gfs_sbuf b = {0};
    gfs_sb_str(&b, r->method);
    gfs_sb_chr(&b, '\n');
    for (size_t s = 0; s < sizeof(standard) / sizeof(standard[0]); s++) {
        const char *v = vals[s] ? vals[s] : "";
        /* version 2015-02-21 and later: a zero Content-Length is signed as "" */
        if (s == 2 && strcmp(v, "0") == 0)
            v = "";
        gfs_sb_str(&b, v);
        gfs_sb_chr(&b, '\n');
    }
    gfs_sb_str(&b, ch);
    gfs_sb_str(&b, cr);
    return gfs_sb_finish(&b, out);
}

int gfs_az_authorization(const char *account, const uint8_t *key, size_t keylen,
                         const struct gfs_az_request *r, char **out)
{
    *out = NULL;
    if (!key || keylen == 0 || keylen > GFS_AZ_KEY_MAX)
        return -EINVAL;
    CLEANUP_FREE char *sts = NULL;
    int rc = gfs_az_string_to_sign(account, r, &sts);
    if (rc != 0)
        return rc;
    uint8_t mac[GFS_SHA256_LEN];
    char b64[64];
    if ((rc = gfs_hmac_sha256(key, keylen, sts, strlen(sts), mac)) != 0 ||
        (rc = gfs_base64(mac, sizeof(mac), b64, sizeof(b64))) != 0)
        return rc;
    mbedtls_platform_zeroize(mac, sizeof(mac));
    if (asprintf(out, "SharedKey %s:%s", account, b64) < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ---- dates, keys, SAS ---------------------------------------------------- */

int gfs_az_date(time_t t, char out[30])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11 || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -EINVAL;
    /* by hand, not strftime: the C locale's names whatever the process's locale */
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return 0;
}

int gfs_az_key_decode(const char *b64, uint8_t key[GFS_AZ_KEY_MAX], size_t *keylen)
{
    *keylen = 0;
    if (!b64)
        return -EINVAL;
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0 || n > 4 * ((GFS_AZ_KEY_MAX + 2) / 3))
        return -EINVAL;
    uint8_t tmp[GFS_AZ_KEY_MAX + 3];
    size_t olen = 0;
    if (mbedtls_base64_decode(tmp, sizeof(tmp), &olen, (const unsigned char *)b64, n) != 0 ||
        olen == 0 || olen > GFS_AZ_KEY_MAX) {
        mbedtls_platform_zeroize(tmp, sizeof(tmp));
        return -EINVAL;
    }
    /* canonical only: mbedTLS skips blanks and newlines; a key with any is a paste error */
    char again[4 * ((GFS_AZ_KEY_MAX + 2) / 3) + 1];
    int ok = gfs_base64(tmp, olen, again, sizeof(again)) == 0 && strcmp(again, b64) == 0;
    if (ok) {
        memcpy(key, tmp, olen);
        *keylen = olen;
    }
    mbedtls_platform_zeroize(tmp, sizeof(tmp));
    mbedtls_platform_zeroize(again, sizeof(again));
    return ok ? 0 : -EINVAL;
}

static int hexd(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* What a SAS query may hold: unreserved characters, %XX escapes, and the
 * separators the portal and the CLI leave unescaped. */
static int sas_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~%=&+/:,", c));
}

int gfs_az_sas_normalize(const char *sas, char **out)
{
    *out = NULL;
    if (!sas)
        return -EINVAL;
    if (sas[0] == '?')
        sas++;
    size_t n = strlen(sas);
    if (n == 0 || n > GFS_AZ_SAS_MAX)
        return -EINVAL;
    int have_sig = 0, have_sv = 0;
    for (size_t i = 0; i < n;) {
        size_t pl = strcspn(sas + i, "&");
        const char *p = sas + i;
        const char *eq = memchr(p, '=', pl);
        if (pl == 0 || !eq || eq == p)
            return -EINVAL; /* empty pair or no name=value */
        for (size_t j = 0; j < pl; j++) {
            if (!sas_char(p[j]))
                return -EINVAL;
            if (p[j] == '%' && (j + 2 >= pl || !hexd(p[j + 1]) || !hexd(p[j + 2])))
                return -EINVAL;
        }
        size_t nl = (size_t)(eq - p);
        have_sig |= nl == 3 && strncmp(p, "sig", 3) == 0 && eq + 1 < p + pl;
        have_sv |= nl == 2 && strncmp(p, "sv", 2) == 0 && eq + 1 < p + pl;
        i += pl;
        if (i < n) {
            i++; /* the '&' */
            if (i == n)
                return -EINVAL; /* trailing '&' */
        }
    }
    if (!have_sig || !have_sv)
        return -EINVAL;
    if (!(*out = strdup(sas)))
        return -ENOMEM;
    return 0;
}
