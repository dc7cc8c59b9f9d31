/*
 * config.c — the configuration: defaults, the YAML loader, and per-key
 * get/set by dotted name. One table (keys[]) describes every key: its field,
 * how its text is validated and normalised, and how it is printed; the YAML
 * loader and glidefs_config_set() both go through it, so a value is judged the
 * same way wherever it comes from.
 *
 * Loader rules (see also examples/glidefs.yaml):
 *  - libyaml event API, input forced to UTF-8, at most GFS_CONFIG_FILE_MAX
 *    bytes and one document; NUL bytes refused.
 *  - The document must follow the schema: unknown keys, duplicate keys, a
 *    mapping where a value belongs (which also bounds nesting to the schema's
 *    depth), sequences, anchors/aliases (billion laughs) and explicit tags are
 *    all errors. The first error stops the load.
 *  - ${VAR}, ${VAR:-default} (default also when VAR is empty) and $$ (a '$')
 *    are expanded in every scalar value, whatever its quoting; keys are never
 *    expanded. A '$' not followed by '{' or '$' is literal.
 *  - A plain empty value, "~" or "null" is "not set": optional strings become
 *    unset, required ones are an error.
 *  - Integers are decimal digits only (no sign, no 0x, leading zeros are
 *    still decimal), range-checked per key; booleans true/false/yes/no/on/off
 *    in any case; sizes as glidefs_parse_size().
 *  - Errors are one line "NAME:LINE:COL: KEY: what is wrong" (1-based).
 *    Values of secret keys never appear in messages; other values are quoted
 *    with control bytes escaped and cut at 60 bytes. URLs (storage.url,
 *    storage.endpoint) carrying user:password@ are refused without being
 *    echoed, and any other URL is echoed with that part and its query
 *    string masked: a credential pasted into one never reaches a log.
 *  - Returns -EINVAL for bad content, -EFBIG for input over the size limit,
 *    the open()/read() errno for file errors, -ENOMEM.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* GNU strerror_r */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "budget.h"
#include "cleanup.h"
#include "config.h"
#include "s3_names.h"

#define GIB (UINT64_C(1) << 30)
#define MIB (UINT64_C(1) << 20)

/* Longest key component the loader will look up (longer is unknown). */
#define KEY_COMPONENT_MAX 64
#define WHY_MAX 512
#define NODE_ID_MAX 128

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                         */
/* ------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static void put_msg(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Quote a value for an error message: "..." with anything outside printable
 * ASCII (and '"', '\\') escaped, cut after 60 input bytes. Hostile input
 * must not be able to forge lines or terminal escapes in the message. */
static void quote(char *dst, size_t n, const char *v)
{
    size_t o = 0;
    const size_t cut = 60;
    if (n < 8) {
        if (n)
            dst[0] = '\0';
        return;
    }
    dst[o++] = '"';
    size_t i = 0;
    for (; v[i] && i < cut; i++) {
        unsigned char c = (unsigned char)v[i];
        if (o + 8 >= n)
            break;
        if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(dst + o, n - o, "\\x%02x", c);
        else if (c == '"' || c == '\\')
            o += (size_t)snprintf(dst + o, n - o, "\\%c", c);
        else
            dst[o++] = (char)c;
    }
    if (v[i] && o + 5 < n) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o++] = '"';
    dst[o] = '\0';
}

static int has_control(const char *v)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Strict decimal: digits only, no sign, no spaces; overflow -> -ERANGE. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !is_digit(*s))
        return -EINVAL;
    uint64_t v = 0;
    int overflow = 0;
    for (; *s; s++) {
        if (!is_digit(*s))
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
    }
    if (overflow)
        return -ERANGE;
    *out = v;
    return 0;
}

static int ascii_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
        char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b + 32) : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

/* ------------------------------------------------------------------------ */
/* Storage URL, host:port, other value checks                                 */
/* ------------------------------------------------------------------------ */

/* Azure storage accounts: 3-24 of a-z 0-9. */
static int azure_account_valid(const char *a, size_t n)
{
    if (n < 3 || n > 24)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((a[i] >= 'a' && a[i] <= 'z') || is_digit(a[i])))
            return 0;
    return 1;
}

/* Azure containers: 3-63 of a-z 0-9 '-', a letter or digit at both ends, no "--". */
static int azure_container_valid(const char *c, size_t n)
{
    if (n < 3 || n > 63 || c[0] == '-' || c[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!((c[i] >= 'a' && c[i] <= 'z') || is_digit(c[i]) || c[i] == '-'))
            return 0;
        if (c[i] == '-' && i + 1 < n && c[i + 1] == '-')
            return 0;
    }
    return 1;
}

/* AWS's "safe characters" for object keys, plus '/'. */
static int s3_key_char(char c)
{
    return is_alnum(c) || c == '/' || c == '!' || c == '-' || c == '_' || c == '.' || c == '*' ||
           c == '\'' || c == '(' || c == ')';
}

/* Check a path of '/'-separated segments: no empty (except a trailing '/'),
 * "." or ".." segment. Returns the length without trailing slashes, or -1. */
static long path_segments_ok(const char *p, size_t n)
{
    while (n > 0 && p[n - 1] == '/')
        n--;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        size_t seg = j - i;
        if (seg == 0)
            return -1;
        if ((seg == 1 && p[i] == '.') || (seg == 2 && p[i] == '.' && p[i + 1] == '.'))
            return -1;
        i = j + 1;
    }
    return (long)n;
}

#define URL_EXPECT                                                                            \
    "expected s3://bucket[/prefix], azure://account/container[/prefix] or file:///absolute/dir"
#define URL_NO_CREDENTIALS                                                                    \
    "credentials do not belong in a URL (user:password@ is refused and not echoed): use "     \
    "storage.access_key_id and storage.secret_access_key, or AWS_ACCESS_KEY_ID and "          \
    "AWS_SECRET_ACCESS_KEY"

/* A URL's authority: after "//" (or from the start without one) up to the
 * next '/', '?' or '#'. */
static const char *url_authority(const char *v, size_t *len)
{
    const char *a = strstr(v, "//");
    a = a ? a + 2 : v;
    *len = strcspn(a, "/?#");
    return a;
}

/* Does v carry credentials: 1 for user:password@ in its authority, 2 (where
 * the authority can hold no ':' - a bucket) for a ':' alone, KEY:SECRET
 * pasted without the '@'? */
static int url_has_credentials(const char *v, int colon_too)
{
    size_t n;
    const char *a = url_authority(v, &n);
    return memchr(a, '@', n) ? 1 : colon_too && memchr(a, ':', n) ? 2 : 0;
}

/* quote() for a URL, with what may be a credential masked first: the
 * authority's user:password@ part and the query string. */
static void quote_url(char *dst, size_t n, const char *v)
{
    char red[200];
    size_t alen;
    const char *a = url_authority(v, &alen);
    const char *at = NULL;
    for (const char *p = a; p < a + alen; p++)
        if (*p == '@')
            at = p;
    size_t head = (size_t)(a - v);
    const char *rest = at ? at : a;
    const char *q = strchr(rest, '?');
    snprintf(red, sizeof red, "%.*s%s%.*s%s", (int)(head > 80 ? 80 : head), v, at ? "***" : "",
             (int)(q ? (size_t)(q - rest) : strlen(rest)), rest, q ? "?***" : "");
    quote(dst, n, red);
}

/* Validate a storage URL and write its normal form into norm. */
static int url_normalize(const char *v, char *norm, size_t nl, char *why, size_t wl)
{
    char q[256];
    quote_url(q, sizeof(q), v);
    int cred = url_has_credentials(v, strncmp(v, "s3://", 5) == 0 ||
                                          strncmp(v, "azure://", 8) == 0);
    if (cred == 1) {
        put_msg(why, wl, URL_NO_CREDENTIALS);
        return -EINVAL;
    }
    if (cred == 2) {
        put_msg(why, wl, "what follows s3:// or azure:// is a bucket or account name, without "
                "':' (not echoed: it may be a credential); an endpoint's port goes in "
                "storage.endpoint, credentials in their own keys");
        return -EINVAL;
    }
    if (has_control(v)) {
        put_msg(why, wl, "%s, got %s", URL_EXPECT, q);
        return -EINVAL;
    }
    if (strncmp(v, "s3://", 5) == 0) {
        const char *b = v + 5;
        const char *slash = strchr(b, '/');
        size_t bl = slash ? (size_t)(slash - b) : strlen(b);
        if (!gfs_s3_bucket_valid(b, bl, 0)) {
            char bq[128], tmp[80];
            snprintf(tmp, sizeof(tmp), "%.*s", (int)(bl > 70 ? 70 : bl), b);
            quote(bq, sizeof(bq), tmp);
            put_msg(why, wl,
                    "invalid S3 bucket name %s (3-63 characters: lowercase letters, digits, "
                    "dots and hyphens, starting and ending with a letter or digit)",
                    bq);
            return -EINVAL;
        }
        const char *pre = slash ? slash + 1 : "";
        size_t pl = strlen(pre);
        for (size_t i = 0; i < pl; i++) {
            if (!s3_key_char(pre[i])) {
                put_msg(why, wl,
                        "invalid character in the S3 key prefix of %s (allowed: letters, "
                        "digits, / ! - _ . * ' ( ))",
                        q);
                return -EINVAL;
            }
        }
        long keep = path_segments_ok(pre, pl);
        if (keep < 0) {
            put_msg(why, wl, "S3 key prefix of %s has an empty, \".\" or \"..\" segment", q);
            return -EINVAL;
        }
        int w = keep > 0 ? snprintf(norm, nl, "s3://%.*s/%.*s", (int)bl, b, (int)keep, pre)
                         : snprintf(norm, nl, "s3://%.*s", (int)bl, b);
        if (w < 0 || (size_t)w >= nl) {
            put_msg(why, wl, "value is too long");
            return -EINVAL;
        }
        return 0;
    }
    if (strncmp(v, "azure://", 8) == 0) {
        /* azure://account/container[/prefix] */
        const char *a = v + 8;
        size_t al = strcspn(a, "/");
        const char *c = a[al] == '/' ? a + al + 1 : a + al;
        size_t cl = strcspn(c, "/");
        if (!azure_account_valid(a, al)) {
            put_msg(why, wl, "invalid Azure storage account name in %s (3-24 lowercase letters "
                    "and digits)", q);
            return -EINVAL;
        }
        if (!azure_container_valid(c, cl)) {
            put_msg(why, wl, "invalid or missing Azure container name in %s (azure://account/"
                    "container: 3-63 lowercase letters, digits and single hyphens, a letter "
                    "or digit at both ends)", q);
            return -EINVAL;
        }
        const char *pre = c[cl] == '/' ? c + cl + 1 : "";
        size_t pl = strlen(pre);
        for (size_t i = 0; i < pl; i++) {
            if (!s3_key_char(pre[i])) {
                put_msg(why, wl,
                        "invalid character in the blob name prefix of %s (allowed: letters, "
                        "digits, / ! - _ . * ' ( ))",
                        q);
                return -EINVAL;
            }
        }
        long keep = path_segments_ok(pre, pl);
        if (keep < 0) {
            put_msg(why, wl, "blob name prefix of %s has an empty, \".\" or \"..\" segment", q);
            return -EINVAL;
        }
        int w = keep > 0 ? snprintf(norm, nl, "azure://%.*s/%.*s/%.*s", (int)al, a, (int)cl, c,
                                    (int)keep, pre)
                         : snprintf(norm, nl, "azure://%.*s/%.*s", (int)al, a, (int)cl, c);
        if (w < 0 || (size_t)w >= nl) {
            put_msg(why, wl, "value is too long");
            return -EINVAL;
        }
        return 0;
    }
    if (strncmp(v, "file://", 7) == 0) {
        const char *p = v + 7;
        if (p[0] != '/') {
            put_msg(why, wl, "file URL must be file:///absolute/dir (no host), got %s", q);
            return -EINVAL;
        }
        long keep = path_segments_ok(p + 1, strlen(p + 1));
        if (keep < 0) {
            put_msg(why, wl, "file URL %s has an empty, \".\" or \"..\" path segment", q);
            return -EINVAL;
        }
        if (keep == 0) {
            put_msg(why, wl, "file URL must name a directory below /, got %s", q);
            return -EINVAL;
        }
        int w = snprintf(norm, nl, "file:///%.*s", (int)keep, p + 1);
        if (w < 0 || (size_t)w >= nl) {
            put_msg(why, wl, "value is too long");
            return -EINVAL;
        }
        return 0;
    }
    put_msg(why, wl, "%s, got %s", URL_EXPECT, q);
    return -EINVAL;
}

int gfs_store_url_parse(const char *url, struct gfs_store_url *out, char *why, size_t whylen)
{
    if (!url || !out) {
        put_msg(why, whylen, "no storage URL");
        return -EINVAL;
    }
    char norm[GFS_CONFIG_VALUE_MAX + 64];
    int r = url_normalize(url, norm, sizeof(norm), why, whylen);
    if (r < 0)
        return r;
    if (strcmp(norm, url) != 0) {
        put_msg(why, whylen, "storage URL is not in normal form (expected %s)", norm);
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    if (strncmp(url, "s3://", 5) == 0) {
        const char *b = url + 5;
        const char *slash = strchr(b, '/');
        size_t bl = slash ? (size_t)(slash - b) : strlen(b);
        out->kind = GFS_STORE_S3;
        memcpy(out->bucket, b, bl); /* bl <= 63, checked by url_normalize */
        out->bucket[bl] = '\0';
        out->path = slash ? slash + 1 : url + strlen(url);
    } else if (strncmp(url, "azure://", 8) == 0) {
        const char *a = url + 8;
        size_t al = strcspn(a, "/"); /* <= 24, checked by url_normalize */
        const char *c = a + al + 1;
        size_t cl = strcspn(c, "/"); /* <= 63 */
        out->kind = GFS_STORE_AZURE;
        memcpy(out->account, a, al);
        out->account[al] = '\0';
        memcpy(out->bucket, c, cl);
        out->bucket[cl] = '\0';
        out->path = c[cl] ? c + cl + 1 : c + cl;
    } else {
        out->kind = GFS_STORE_FILE;
        out->path = url + 7;
    }
    return 0;
}

static int port_parse(const char *s, unsigned *port)
{
    uint64_t v;
    if (strlen(s) > 5 || parse_u64(s, &v) < 0 || v < 1 || v > 65535)
        return -EINVAL;
    *port = (unsigned)v;
    return 0;
}

/* Split host:port forms; host is copied into host[hostlen] (no brackets). */
static int hostport_parse(const char *v, char *host, size_t hostlen, unsigned *port)
{
    const char *h;
    size_t hl;
    const char *ps;
    int v6 = 0;
    if (v[0] && strspn(v, "0123456789") == strlen(v)) {
        h = "127.0.0.1";
        hl = 9;
        ps = v;
    } else if (v[0] == ':') {
        h = "127.0.0.1";
        hl = 9;
        ps = v + 1;
    } else if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = v + 1;
        hl = (size_t)(close - h);
        ps = close + 2;
        v6 = 1;
    } else {
        const char *colon = strrchr(v, ':');
        if (!colon)
            return -EINVAL;
        h = v;
        hl = (size_t)(colon - v);
        ps = colon + 1;
    }
    if (hl == 0 || hl > 253)
        return -EINVAL;
    int has_colon = 0;
    for (size_t i = 0; i < hl; i++) {
        char c = h[i];
        if (v6) {
            if (!(is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                  c == '.'))
                return -EINVAL;
            has_colon |= c == ':';
        } else if (!(is_alnum(c) || c == '.' || c == '-')) {
            return -EINVAL;
        }
    }
    if (v6 && !has_colon)
        return -EINVAL;
    if (port_parse(ps, port) < 0)
        return -EINVAL;
    if (hl + 1 > hostlen)
        return -ERANGE;
    memcpy(host, h, hl);
    host[hl] = '\0';
    return 0;
}

int gfs_hostport_split(const char *hp, char *host, size_t hostlen, uint16_t *port)
{
    if (!hp || !host || !port)
        return -EINVAL;
    unsigned p;
    int r = hostport_parse(hp, host, hostlen, &p);
    if (r < 0)
        return r;
    *port = (uint16_t)p;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The key table                                                              */
/* ------------------------------------------------------------------------ */

enum {
    KF_SECRET = 1u << 0,   /* never shown: get gives "***", errors do not echo */
    KF_REQUIRED = 1u << 1, /* a string that must not be empty */
    KF_EMPTY_OFF = 1u << 2,/* empty/null stores "" (meaning "disabled") instead of NULL */
    KF_MULT512 = 1u << 3,  /* size must be a multiple of 512 */
};

struct keydef;
typedef int (*set_fn)(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                      int is_null, char *why, size_t wl);
typedef int (*get_fn)(const struct keydef *kd, const struct glidefs_config *cfg, char *buf,
                      size_t bl);
/* Validate a non-empty string value, writing its stored form into norm. */
typedef int (*check_fn)(const struct keydef *kd, const char *v, char *norm, size_t nl,
                        char *why, size_t wl);

struct keydef {
    const char *key;
    set_fn set;
    get_fn get;
    size_t off;
    int64_t min, max;
    unsigned flags;
    check_fn check;
    const char *conflicts; /* another key setting the same field */
};

#define FIELD(cfg, kd, type) ((type *)(void *)((char *)(cfg) + (kd)->off))
#define CFIELD(cfg, kd, type) ((const type *)(const void *)((const char *)(cfg) + (kd)->off))

static int copy_norm(const char *v, char *norm, size_t nl)
{
    size_t n = strlen(v);
    if (n + 1 > nl)
        return -EINVAL;
    memcpy(norm, v, n + 1);
    return 0;
}

static int check_path(const struct keydef *kd, const char *v, char *norm, size_t nl, char *why,
                      size_t wl)
{
    if (has_control(v)) {
        put_msg(why, wl, "must not contain control characters");
        return -EINVAL;
    }
    return copy_norm(v, norm, nl);
}

static int check_abs_path(const struct keydef *kd, const char *v, char *norm, size_t nl,
                          char *why, size_t wl)
{
    if (v[0] != '/') {
        put_msg(why, wl, "must be an absolute path");
        return -EINVAL;
    }
    return check_path(kd, v, norm, nl, why, wl);
}

static int check_socket_path(const struct keydef *kd, const char *v, char *norm, size_t nl,
                             char *why, size_t wl)
{
    int r = check_path(kd, v, norm, nl, why, wl);
    if (r < 0)
        return r;
    /* sizeof(sockaddr_un.sun_path) is 108 on Linux, including the NUL. */
    if (strlen(v) > 107) {
        put_msg(why, wl, "is longer than 107 bytes (the limit for a unix socket path)");
        return -EINVAL;
    }
    return 0;
}

static int check_url(const struct keydef *kd, const char *v, char *norm, size_t nl, char *why,
                     size_t wl)
{
    return url_normalize(v, norm, nl, why, wl);
}

static int check_endpoint(const struct keydef *kd, const char *v, char *norm, size_t nl,
                          char *why, size_t wl)
{
    char q[256];
    quote_url(q, sizeof(q), v);
    if (url_has_credentials(v, 0)) {
        put_msg(why, wl, URL_NO_CREDENTIALS);
        return -EINVAL;
    }
    size_t skip = strncmp(v, "http://", 7) == 0 ? 7 : strncmp(v, "https://", 8) == 0 ? 8 : 0;
    int ok = skip > 0 && v[skip] != '\0' && v[skip] != '/';
    for (const char *p = v; ok && *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            ok = 0;
    if (!ok) {
        put_msg(why, wl, "expected http://host[:port] or https://host[:port], got %s", q);
        return -EINVAL;
    }
    size_t n = strlen(v);
    while (n > skip && v[n - 1] == '/')
        n--;
    if (n + 1 > nl)
        return -EINVAL;
    memcpy(norm, v, n);
    norm[n] = '\0';
    return 0;
}

static int check_region(const struct keydef *kd, const char *v, char *norm, size_t nl, char *why,
                        size_t wl)
{
    size_t n = strlen(v);
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = is_alnum(v[i]) || v[i] == '-' || v[i] == '_' || v[i] == '.';
    if (!ok) {
        char q[256];
        quote(q, sizeof(q), v);
        put_msg(why, wl, "invalid region %s (1-64 letters, digits, '-', '_' or '.')", q);
        return -EINVAL;
    }
    return copy_norm(v, norm, nl);
}

/* Credentials and tokens travel in HTTP headers: printable ASCII, no spaces.
 * Never echoed: some of them are secrets. */
static int check_token(const struct keydef *kd, const char *v, char *norm, size_t nl, char *why,
                       size_t wl)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            put_msg(why, wl, "must be printable ASCII without spaces");
            return -EINVAL;
        }
    }
    return copy_norm(v, norm, nl);
}

/* servers.api.allowed_hosts: host names (or address literals) separated by
 * commas or spaces, stored lower case, comma-separated. */
static int check_host_list(const struct keydef *kd, const char *v, char *norm, size_t nl,
                           char *why, size_t wl)
{
    size_t o = 0;
    const char *p = v;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == 0)
            break;
        int ok = n <= 253;
        for (size_t i = 0; ok && i < n; i++)
            ok = is_alnum(p[i]) || p[i] == '.' || p[i] == '-' || p[i] == ':' || p[i] == '[' ||
                 p[i] == ']';
        if (!ok) {
            char q[256];
            quote(q, sizeof(q), v);
            put_msg(why, wl, "expected host names separated by commas, got %s", q);
            return -EINVAL;
        }
        if (o + n + 2 > nl)
            return -EINVAL;
        if (o)
            norm[o++] = ',';
        for (size_t i = 0; i < n; i++)
            norm[o++] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
        p += n;
    }
    norm[o] = '\0';
    return 0;
}

static int check_password(const struct keydef *kd, const char *v, char *norm, size_t nl,
                          char *why, size_t wl)
{
    if (has_control(v)) {
        put_msg(why, wl, "must not contain control characters");
        return -EINVAL;
    }
    return copy_norm(v, norm, nl);
}

static int check_compression(const struct keydef *kd, const char *v, char *norm, size_t nl,
                             char *why, size_t wl)
{
    if (strcmp(v, "none") != 0 && strcmp(v, "zstd") != 0) {
        char q[256];
        quote(q, sizeof(q), v);
        put_msg(why, wl, "expected none or zstd, got %s", q);
        return -EINVAL;
    }
    return copy_norm(v, norm, nl);
}

/* One of a few words (storage.addressing, storage.checksum). */
static int check_word(const char *v, const char *const *words, const char *expect, char *norm,
                      size_t nl, char *why, size_t wl)
{
    for (; *words; words++)
        if (strcmp(v, *words) == 0)
            return copy_norm(v, norm, nl);
    char q[256];
    quote(q, sizeof(q), v);
    put_msg(why, wl, "expected %s, got %s", expect, q);
    return -EINVAL;
}

static int check_addressing(const struct keydef *kd, const char *v, char *norm, size_t nl,
                            char *why, size_t wl)
{
    (void)kd;
    static const char *const w[] = {"auto", "path", "virtual", NULL};
    return check_word(v, w, "auto, path or virtual", norm, nl, why, wl);
}

static int check_tls_mode(const struct keydef *kd, const char *v, char *norm, size_t nl,
                          char *why, size_t wl)
{
    (void)kd;
    static const char *const w[] = {"off", "on", "require", NULL};
    return check_word(v, w, "off, on or require", norm, nl, why, wl);
}

static int check_checksum(const struct keydef *kd, const char *v, char *norm, size_t nl,
                          char *why, size_t wl)
{
    (void)kd;
    static const char *const w[] = {"auto", "on", "off", NULL};
    return check_word(v, w, "auto, on or off", norm, nl, why, wl);
}

static int check_durability(const struct keydef *kd, const char *v, char *norm, size_t nl,
                            char *why, size_t wl)
{
    (void)kd;
    static const char *const w[] = {"local", "store", NULL};
    return check_word(v, w, "local or store", norm, nl, why, wl);
}

static int node_id_valid(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > NODE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!(is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

static int check_node_id(const struct keydef *kd, const char *v, char *norm, size_t nl,
                         char *why, size_t wl)
{
    if (!node_id_valid(v)) {
        char q[256];
        quote(q, sizeof(q), v);
        put_msg(why, wl, "invalid node id %s (1-128 letters, digits, '.', '_', ':', '@' or '-')",
                q);
        return -EINVAL;
    }
    return copy_norm(v, norm, nl);
}

static int check_hostport(const struct keydef *kd, const char *v, char *norm, size_t nl,
                          char *why, size_t wl)
{
    char host[256];
    unsigned port;
    if (hostport_parse(v, host, sizeof(host), &port) < 0) {
        char q[256];
        quote(q, sizeof(q), v);
        put_msg(why, wl, "expected host:port, :port or port (port 1..65535), got %s", q);
        return -EINVAL;
    }
    int w = strchr(host, ':') ? snprintf(norm, nl, "[%s]:%u", host, port)
                              : snprintf(norm, nl, "%s:%u", host, port);
    return (w < 0 || (size_t)w >= nl) ? -EINVAL : 0;
}

static int check_name(const struct keydef *kd, const char *v, char *norm, size_t nl, char *why,
                      size_t wl)
{
    if (!glidefs_name_valid(v)) {
        char q[256];
        quote(q, sizeof(q), v);
        put_msg(why, wl,
                "invalid export name %s (1-128 letters, digits, '.', '_' or '-', not starting "
                "with '.')",
                q);
        return -EINVAL;
    }
    return copy_norm(v, norm, nl);
}

/* --- setters ------------------------------------------------------------ */

static int set_string(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                      int is_null, char *why, size_t wl)
{
    char *nv = NULL;
    if (is_null || !v || v[0] == '\0') {
        if (kd->flags & KF_REQUIRED) {
            put_msg(why, wl, "must not be empty");
            return -EINVAL;
        }
        if (kd->flags & KF_EMPTY_OFF) {
            nv = strdup("");
            if (!nv)
                return -ENOMEM;
        }
    } else {
        if (strlen(v) > GFS_CONFIG_VALUE_MAX) {
            put_msg(why, wl, "value is too long (more than %u bytes)", GFS_CONFIG_VALUE_MAX);
            return -EINVAL;
        }
        char norm[GFS_CONFIG_VALUE_MAX + 64];
        int r = kd->check ? kd->check(kd, v, norm, sizeof(norm), why, wl)
                          : copy_norm(v, norm, sizeof(norm));
        if (r < 0)
            return r;
        nv = strdup(norm);
        if (!nv)
            return -ENOMEM;
    }
    char **f = FIELD(cfg, kd, char *);
    free(*f);
    *f = nv;
    return 0;
}

/* node_id: empty means "the default" (host name / machine id), so a config
 * can say node_id: ${GLIDEFS_NODE_ID:-} and still be right on every node. */
static char *default_node_id(void);
static char *legacy_node_id(void);
static int set_node_id(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                       int is_null, char *why, size_t wl)
{
    if (!is_null && v && v[0]) {
        int r = set_string(kd, cfg, v, 0, why, wl);
        if (r == 0) {
            /* set explicitly: older builds wrote this same name into leases */
            free(cfg->node_id_legacy);
            cfg->node_id_legacy = NULL;
        }
        return r;
    }
    char *nv = default_node_id();
    if (!nv)
        return -ENOMEM;
    free(cfg->node_id);
    cfg->node_id = nv;
    if (!cfg->node_id_legacy && !(cfg->node_id_legacy = legacy_node_id()))
        return -ENOMEM;
    return 0;
}

static int set_int(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                   int is_null, char *why, size_t wl)
{
    uint64_t n;
    if (is_null || parse_u64(v, &n) < 0 || n < (uint64_t)kd->min || n > (uint64_t)kd->max) {
        char q[256];
        if (is_null || !v)
            snprintf(q, sizeof(q), "an empty value");
        else
            quote(q, sizeof(q), v);
        put_msg(why, wl, "expected an integer %lld..%lld, got %s", (long long)kd->min,
                (long long)kd->max, q);
        return -EINVAL;
    }
    *FIELD(cfg, kd, int) = (int)n;
    return 0;
}

/* A non-negative decimal like 0.023 (prices); no exponents, no signs. */
static int set_price(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                     int is_null, char *why, size_t wl)
{
    int ok = !is_null && v && *v && strlen(v) <= 32;
    int dots = 0;
    for (const char *p = v; ok && *p; p++) {
        if (*p == '.')
            dots++;
        else if (*p < '0' || *p > '9')
            ok = 0;
    }
    if (ok && (dots > 1 || v[0] == '.'))
        ok = 0;
    if (!ok) {
        char q[256];
        if (is_null || !v)
            snprintf(q, sizeof(q), "an empty value");
        else
            quote(q, sizeof(q), v);
        put_msg(why, wl, "expected a price like 0.023, got %s", q);
        return -EINVAL;
    }
    *FIELD(cfg, kd, double) = strtod(v, NULL);
    return 0;
}

static int set_bool(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                    int is_null, char *why, size_t wl)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    if (!is_null && v) {
        for (size_t i = 0; i < 3; i++) {
            if (ascii_ieq(v, yes[i])) {
                *FIELD(cfg, kd, int) = 1;
                return 0;
            }
            if (ascii_ieq(v, no[i])) {
                *FIELD(cfg, kd, int) = 0;
                return 0;
            }
        }
    }
    char q[256];
    if (is_null || !v)
        snprintf(q, sizeof(q), "an empty value");
    else
        quote(q, sizeof(q), v);
    put_msg(why, wl, "expected true/false/yes/no/on/off, got %s", q);
    return -EINVAL;
}

static int set_gib(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                   int is_null, char *why, size_t wl)
{
    uint64_t n;
    if (is_null || parse_u64(v, &n) < 0 || n < (uint64_t)kd->min || n > (uint64_t)kd->max) {
        char q[256];
        if (is_null || !v)
            snprintf(q, sizeof(q), "an empty value");
        else
            quote(q, sizeof(q), v);
        put_msg(why, wl, "expected a whole number of GiB %lld..%lld, got %s",
                (long long)kd->min, (long long)kd->max, q);
        return -EINVAL;
    }
    *FIELD(cfg, kd, uint64_t) = n * GIB;
    return 0;
}

#define SIZE_EXPECT "expected a size (bytes, or a number with K, M, G, T, KiB, MiB, GiB or TiB)"

static int set_size(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                    int is_null, char *why, size_t wl)
{
    uint64_t n = 0;
    char q[256];
    if (is_null || !v)
        snprintf(q, sizeof(q), "an empty value");
    else
        quote(q, sizeof(q), v);
    int r = (is_null || !v) ? -EINVAL : glidefs_parse_size(v, &n);
    if (r == -ERANGE) {
        put_msg(why, wl, "size %s is too large", q);
        return -EINVAL;
    }
    if (r < 0) {
        put_msg(why, wl, "%s, got %s", SIZE_EXPECT, q);
        return -EINVAL;
    }
    if (n < (uint64_t)kd->min) {
        put_msg(why, wl, "must be at least %lld bytes, got %s", (long long)kd->min, q);
        return -EINVAL;
    }
    if (n > (uint64_t)kd->max) {
        put_msg(why, wl, "must be at most %lld bytes, got %s", (long long)kd->max, q);
        return -EINVAL;
    }
    if ((kd->flags & KF_MULT512) && n % 512 != 0) {
        put_msg(why, wl, "must be a multiple of 512 bytes, got %s", q);
        return -EINVAL;
    }
    *FIELD(cfg, kd, uint64_t) = n;
    return 0;
}

static int set_block_size(const struct keydef *kd, struct glidefs_config *cfg, const char *v,
                          int is_null, char *why, size_t wl)
{
    uint64_t n = 0;
    if (is_null || !v || glidefs_parse_size(v, &n) < 0 || n < 4096 || n > 4 * MIB ||
        (n & (n - 1)) != 0) {
        char q[256];
        if (is_null || !v)
            snprintf(q, sizeof(q), "an empty value");
        else
            quote(q, sizeof(q), v);
        put_msg(why, wl, "expected a power of two from 4K to 4M, got %s", q);
        return -EINVAL;
    }
    *FIELD(cfg, kd, uint32_t) = (uint32_t)n;
    return 0;
}

/* --- getters ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static int put_out(char *buf, size_t bl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, bl, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= bl) ? -ERANGE : 0;
}

static int get_string(const struct keydef *kd, const struct glidefs_config *cfg, char *buf,
                      size_t bl)
{
    const char *s = *CFIELD(cfg, kd, char *);
    if (!s)
        s = "";
    if ((kd->flags & KF_SECRET) && s[0])
        s = "***";
    return put_out(buf, bl, "%s", s);
}

static int get_int(const struct keydef *kd, const struct glidefs_config *cfg, char *buf, size_t bl)
{
    return put_out(buf, bl, "%d", *CFIELD(cfg, kd, int));
}

static int get_bool(const struct keydef *kd, const struct glidefs_config *cfg, char *buf,
                    size_t bl)
{
    return put_out(buf, bl, "%s", *CFIELD(cfg, kd, int) ? "true" : "false");
}

/* Whole GiB, rounded down when the size was set in finer units. */
static int get_gib(const struct keydef *kd, const struct glidefs_config *cfg, char *buf, size_t bl)
{
    return put_out(buf, bl, "%llu", (unsigned long long)(*CFIELD(cfg, kd, uint64_t) / GIB));
}

static int get_bytes(const struct keydef *kd, const struct glidefs_config *cfg, char *buf,
                     size_t bl)
{
    return put_out(buf, bl, "%llu", (unsigned long long)*CFIELD(cfg, kd, uint64_t));
}

static int get_u32(const struct keydef *kd, const struct glidefs_config *cfg, char *buf, size_t bl)
{
    return put_out(buf, bl, "%u", (unsigned)*CFIELD(cfg, kd, uint32_t));
}

static int get_price(const struct keydef *kd, const struct glidefs_config *cfg, char *buf,
                     size_t bl)
{
    return put_out(buf, bl, "%.6g", *CFIELD(cfg, kd, double));
}

#define OFF(f) offsetof(struct glidefs_config, f)
#define K_STR(k, f, fl, chk) {k, set_string, get_string, OFF(f), 0, 0, fl, chk, NULL}
#define K_INT(k, f, lo, hi) {k, set_int, get_int, OFF(f), lo, hi, 0, NULL, NULL}
#define K_BOOL(k, f) {k, set_bool, get_bool, OFF(f), 0, 1, 0, NULL, NULL}
#define K_GIB(k, f, lo, hi, other) {k, set_gib, get_gib, OFF(f), lo, hi, 0, NULL, other}
#define K_SIZE(k, f, lo, hi, fl, other) {k, set_size, get_bytes, OFF(f), lo, hi, fl, NULL, other}

/* Upper bound for GiB keys and size keys: 1 PiB. */
#define GIB_MAX 1048576
#define SIZE_MAX_BYTES ((int64_t)1 << 50)

static const struct keydef keys[] = {
    K_STR("cache.dir", cache_dir, KF_REQUIRED, check_path),
    K_GIB("cache.disk_size_gb", cache_disk_size, 1, GIB_MAX, "cache.disk_size"),
    K_SIZE("cache.disk_size", cache_disk_size, (int64_t)MIB, SIZE_MAX_BYTES, 0,
           "cache.disk_size_gb"),
    K_INT("cache.readahead_kb", cache_readahead_kb, 0, 1048576),
    K_INT("cache.profile_s", cache_profile_s, 0, 86400),
    K_INT("cache.profile_mb", cache_profile_mb, 0, 32768),
    K_BOOL("cache.keep_on_close", cache_keep_on_close),
    K_STR("storage.url", storage_url, KF_REQUIRED, check_url),
    K_STR("storage.endpoint", storage_endpoint, 0, check_endpoint),
    K_STR("storage.region", storage_region, KF_REQUIRED, check_region),
    K_STR("storage.access_key_id", storage_access_key_id, 0, check_token),
    K_STR("storage.secret_access_key", storage_secret_access_key, KF_SECRET, check_token),
    K_STR("storage.session_token", storage_session_token, KF_SECRET, check_token),
    K_STR("storage.azure_account_key", storage_azure_account_key, KF_SECRET, check_token),
    K_STR("storage.azure_sas_token", storage_azure_sas_token, KF_SECRET, check_token),
    K_STR("storage.ca_bundle", storage_ca_bundle, 0, check_path),
    K_BOOL("storage.tls_verify", storage_tls_verify),
    K_INT("storage.max_connections", storage_max_connections, 1, 256),
    K_INT("storage.timeout_ms", storage_timeout_ms, 100, 3600000),
    K_INT("storage.max_retries", storage_max_retries, 0, 100),
    K_INT("storage.startup_wait_s", storage_startup_wait_s, 0, 86400),
    K_STR("storage.addressing", storage_addressing, KF_REQUIRED, check_addressing),
    K_STR("storage.checksum", storage_checksum, KF_REQUIRED, check_checksum),
    K_INT("storage.credential_refresh_s", storage_credential_refresh_s, 1, 43200),
    K_STR("storage.encryption_password", encryption_password, KF_SECRET, check_password),
    K_STR("storage.compression", compression, KF_REQUIRED, check_compression),
    K_INT("storage.compression_level", compression_level, 1, 19),
    K_BOOL("storage.unsafe_accept_split_brain_on_lax_store", storage_unsafe_lax_takeover),
    K_STR("storage.durability", storage_durability, KF_REQUIRED, check_durability),
    K_INT("storage.max_unsynced_s", storage_max_unsynced_s, 0, 86400),
    K_SIZE("storage.max_unsynced_bytes", storage_max_unsynced_bytes, 0, SIZE_MAX_BYTES, 0, NULL),
    {"node_id", set_node_id, get_string, OFF(node_id), 0, 0, 0, check_node_id, NULL},
    K_INT("servers.shutdown_timeout_s", shutdown_timeout_s, 0, 86400),
    K_INT("servers.lease_timeout_ms", lease_timeout_ms, 100, 3600000),
    K_BOOL("servers.allow_core_dumps", allow_core_dumps),
    K_STR("servers.nbd.unix_socket", nbd_unix_socket, KF_EMPTY_OFF, check_socket_path),
    K_STR("servers.nbd.tcp", nbd_tcp, 0, check_hostport),
    K_GIB("servers.nbd.auto_create_size_gb", nbd_auto_create_size, 1, GIB_MAX,
          "servers.nbd.auto_create_size"),
    K_SIZE("servers.nbd.auto_create_size", nbd_auto_create_size, 512, SIZE_MAX_BYTES, KF_MULT512,
           "servers.nbd.auto_create_size_gb"),
    K_INT("servers.nbd.blocks_per_batch", blocks_per_batch, 1, 4096),
    K_INT("servers.nbd.sync_delay_ms", sync_delay_ms, 0, 3600000),
    K_INT("servers.nbd.max_dirty_age_ms", max_dirty_age_ms, 0, 86400000),
    K_INT("servers.nbd.upload_parallel", upload_parallel, 1, 64),
    {"servers.nbd.block_size", set_block_size, get_u32, OFF(block_size), 4096, 4 * (int64_t)MIB,
     0, NULL, NULL},
    K_STR("servers.nbd.default_export", nbd_default_export, 0, check_name),
    K_INT("servers.nbd.workers", nbd_workers, 1, 1024),
    K_INT("servers.nbd.busy_poll_us", nbd_busy_poll_us, 0, 1000),
    K_BOOL("servers.nbd.insecure_tcp", nbd_insecure_tcp),
    K_STR("servers.nbd.tls", nbd_tls, 0, check_tls_mode),
    K_STR("servers.nbd.tls_certificates", nbd_tls_certificates, 0, check_abs_path),
    K_STR("servers.nbd.tls_psk_file", nbd_tls_psk_file, 0, check_abs_path),
    K_INT("servers.nbd.max_connections", nbd_max_connections, 1, 65536),
    K_INT("servers.nbd.handshake_timeout_ms", nbd_handshake_timeout_ms, 100, 3600000),
    K_INT("servers.nbd.reply_timeout_ms", nbd_reply_timeout_ms, 100, 3600000),
    K_SIZE("servers.nbd.buffer_memory", nbd_buffer_memory, (int64_t)MIB, SIZE_MAX_BYTES, 0, NULL),
    K_SIZE("servers.nbd.connection_buffer_memory", nbd_conn_buffer_memory, (int64_t)MIB,
           SIZE_MAX_BYTES, 0, NULL),
    K_STR("servers.vhost_user.dir", vhost_user_dir, 0, check_abs_path),
    K_STR("servers.api.listen", api_listen, KF_EMPTY_OFF, check_hostport),
    K_STR("servers.api.unix_socket", api_unix_socket, 0, check_socket_path),
    K_STR("servers.api.token", api_token, KF_SECRET, check_token),
    K_STR("servers.api.tls_certificates", api_tls_certificates, 0, check_abs_path),
    K_STR("servers.api.export_dir", api_export_dir, 0, check_abs_path),
    K_STR("servers.api.allowed_hosts", api_allowed_hosts, 0, check_host_list),
    K_INT("servers.api.max_connections", api_max_connections, 1, 4096),
    K_INT("servers.api.max_connections_per_client", api_max_connections_per_client, 1, 4096),
    K_INT("servers.api.request_timeout_ms", api_request_timeout_ms, 100, 3600000),
    K_INT("compaction.min_live_pct", compaction_min_live_pct, 0, 100),
    K_INT("compaction.interval_s", compaction_interval_s, 0, 86400),
    K_INT("compaction.rate_mb_s", compaction_rate_mb_s, 1, 100000),
    K_INT("compaction.grace_ms", compaction_grace_ms, 0, 3600000),
    K_INT("compaction.keep_manifests", compaction_keep_manifests, 1, 100),
    K_INT("compaction.max_stored_pct", compaction_max_stored_pct, 0, 100000),
    K_INT("compaction.fenced_hold_s", compaction_fenced_hold_s, 0, 31536000),
    K_INT("scrub.interval_h", scrub_interval_h, 0, 87600),
    K_INT("scrub.interval_s", scrub_interval_s, 0, 315360000),
    K_BOOL("scrub.deep", scrub_deep),
    K_INT("scrub.max_mb_per_s", scrub_max_mb_per_s, 1, 100000),
    K_INT("scrub.max_gets_per_s", scrub_max_gets_per_s, 1, 100000),
    {"cost.storage_gb_month", set_price, get_price, OFF(cost_storage_gb_month), 0, 0, 0, NULL,
     NULL},
    {"cost.put_per_1000", set_price, get_price, OFF(cost_put_per_1000), 0, 0, 0, NULL, NULL},
    {"cost.get_per_1000", set_price, get_price, OFF(cost_get_per_1000), 0, 0, 0, NULL, NULL},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Mappings of the schema. Every key above lives directly in one of these
 * (or at the top level). */
static const char *const sections[] = {"cache", "storage", "servers", "servers.nbd",
                                       "servers.api", "servers.vhost_user", "compaction", "cost", "scrub"};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

static int find_key(const char *k)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].key, k) == 0)
            return (int)i;
    return -1;
}

static int find_section(const char *k)
{
    for (size_t i = 0; i < NSECTIONS; i++)
        if (strcmp(sections[i], k) == 0)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Defaults and lifetime                                                      */
/* ------------------------------------------------------------------------ */

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t lead = strspn(s, " \t\r\n");
    if (lead)
        memmove(s, s + lead, n - lead + 1);
}

static char *machine_id(void)
{
    char buf[NODE_ID_MAX + 2];
    int fd CLEANUP_CLOSE = open("/etc/machine-id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n > 0) {
            buf[n] = '\0';
            trim(buf);
            if (node_id_valid(buf))
                return strdup(buf);
        }
    }
    return NULL;
}

static char *host_name(void)
{
    char host[256];
    if (gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        trim(host);
        if (node_id_valid(host))
            return strdup(host);
    }
    return NULL;
}

/* The host name (what a human calls the machine), else /etc/machine-id,
 * else a fixed name. It need not be unique: the write lease tells writers
 * apart by the cache dir's instance id (ownership.c). */
static char *default_node_id(void)
{
    char *id = host_name();
    if (!id)
        id = machine_id();
    return id ? id : strdup("glidefs-node");
}

/* What builds before the instance id defaulted to. */
static char *legacy_node_id(void)
{
    char *id = machine_id();
    if (!id)
        id = host_name();
    return id ? id : strdup("glidefs-node");
}

int gfs_config_diff(const struct glidefs_config *a, const struct glidefs_config *b,
                    void (*changed)(void *arg, const char *key), void *arg)
{
    int n = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const struct keydef *kd = &keys[i];
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = keys[j].off == kd->off;
        if (seen)
            continue; /* another name of a setting already compared */
        int differs;
        if (kd->get == get_string) {
            /* the fields themselves: a secret reads as "***" through get */
            const char *x = *CFIELD(a, kd, char *), *y = *CFIELD(b, kd, char *);
            differs = strcmp(x ? x : "", y ? y : "") != 0;
        } else {
            char x[GFS_CONFIG_VALUE_MAX + 1], y[GFS_CONFIG_VALUE_MAX + 1];
            int rx = kd->get(kd, a, x, sizeof x), ry = kd->get(kd, b, y, sizeof y);
            differs = rx != ry || (rx >= 0 && strcmp(x, y) != 0);
        }
        if (differs) {
            n++;
            if (changed)
                changed(arg, kd->key);
        }
    }
    return n;
}

void gfs_config_clear(struct glidefs_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].get == get_string) {
            char **f = FIELD(cfg, &keys[i], char *);
            free(*f);
            *f = NULL;
        }
    }
    gfs_budget_unref(cfg->budget); /* open volumes keep theirs */
    free(cfg->node_id_legacy);
    memset(cfg, 0, sizeof(*cfg));
}

int gfs_config_init_defaults(struct glidefs_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->cache_dir = strdup("/var/cache/glidefs");
    cfg->cache_disk_size = 100 * GIB;
    cfg->cache_readahead_kb = 16384;
    cfg->cache_profile_s = 60;
    cfg->cache_keep_on_close = 1;
    cfg->cache_profile_mb = 256;
    cfg->storage_url = strdup("file:///var/lib/glidefs/store");
    cfg->storage_region = strdup("us-east-1");
    cfg->storage_tls_verify = 1;
    cfg->storage_max_connections = 8;
    cfg->storage_timeout_ms = 30000;
    cfg->storage_max_retries = 8;
    cfg->storage_startup_wait_s = 60;
    cfg->storage_addressing = strdup("auto");
    cfg->storage_checksum = strdup("auto");
    cfg->storage_credential_refresh_s = 300;
    cfg->compression = strdup("none");
    cfg->storage_durability = strdup("local");
    cfg->compression_level = 3;
    cfg->node_id = default_node_id();
    cfg->node_id_legacy = legacy_node_id();
    cfg->shutdown_timeout_s = 300;
    cfg->nbd_unix_socket = strdup("/var/run/glidefs.sock");
    cfg->nbd_auto_create_size = 500 * GIB;
    cfg->blocks_per_batch = 25;
    cfg->sync_delay_ms = 8000;
    cfg->max_dirty_age_ms = 60000;
    cfg->upload_parallel = 4;
    cfg->block_size = 131072;
    cfg->nbd_workers = 16;
    cfg->nbd_busy_poll_us = 50;
    cfg->nbd_max_connections = 1024;
    cfg->nbd_handshake_timeout_ms = 10000;
    cfg->nbd_reply_timeout_ms = 30000;
    cfg->nbd_buffer_memory = 512 * MIB;
    cfg->nbd_conn_buffer_memory = 64 * MIB;
    cfg->api_listen = strdup("127.0.0.1:8080");
    cfg->api_max_connections = 64;
    cfg->api_max_connections_per_client = 32;
    cfg->api_request_timeout_ms = 10000;
    cfg->lease_timeout_ms = 30000;
    cfg->compaction_min_live_pct = 75;
    cfg->compaction_interval_s = 300;
    cfg->compaction_rate_mb_s = 32;
    /* readers that still look for a deleted segment (followers, a slow GET)
     * find where the block went; waiting only keeps the dead bytes stored */
    cfg->compaction_grace_ms = 0;
    cfg->compaction_keep_manifests = 2;
    cfg->compaction_max_stored_pct = 110;
    cfg->compaction_fenced_hold_s = 604800; /* a week to export what a fenced node kept */
    cfg->scrub_deep = 1;
    cfg->scrub_max_mb_per_s = 16;
    cfg->scrub_max_gets_per_s = 50;
    cfg->cost_storage_gb_month = 0.023;
    cfg->cost_put_per_1000 = 0.005;
    cfg->cost_get_per_1000 = 0.0004;
    cfg->log.fn = NULL;
    cfg->log.arg = NULL;
    cfg->log.max_level = GLIDEFS_LOG_INFO;
    if (gfs_budget_new(&cfg->budget) < 0)
        cfg->budget = NULL;
    if (!cfg->cache_dir || !cfg->storage_url || !cfg->storage_region || !cfg->compression ||
        !cfg->storage_addressing || !cfg->storage_checksum || !cfg->storage_durability ||
        !cfg->node_id || !cfg->node_id_legacy || !cfg->nbd_unix_socket || !cfg->api_listen ||
        !cfg->budget) {
        gfs_config_clear(cfg);
        return -ENOMEM;
    }
    return 0;
}

glidefs_config *glidefs_config_new(void)
{
    glidefs_config *cfg = malloc(sizeof(*cfg));
    if (!cfg)
        return NULL;
    if (gfs_config_init_defaults(cfg) < 0) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

void glidefs_config_free(glidefs_config *cfg)
{
    if (!cfg)
        return;
    gfs_config_clear(cfg);
    free(cfg);
}

void glidefs_config_set_log(glidefs_config *cfg, glidefs_log_fn fn, void *arg, int max_level)
{
    if (!cfg)
        return;
    cfg->log.fn = fn;
    cfg->log.arg = arg;
    cfg->log.max_level = max_level;
}

/* ------------------------------------------------------------------------ */
/* Per-key get/set                                                            */
/* ------------------------------------------------------------------------ */

int glidefs_config_set(glidefs_config *cfg, const char *key, const char *value, char *err,
                       size_t errlen)
{
    if (!cfg || !key) {
        put_msg(err, errlen, "invalid argument");
        return -EINVAL;
    }
    int i = find_key(key);
    if (i < 0) {
        char q[256];
        quote(q, sizeof(q), key);
        put_msg(err, errlen, "unknown key %s", q);
        return -ENOENT;
    }
    char why[WHY_MAX];
    why[0] = '\0';
    int r = keys[i].set(&keys[i], cfg, value, value == NULL, why, sizeof(why));
    if (r == -ENOMEM)
        put_msg(err, errlen, "%s: out of memory", keys[i].key);
    else if (r < 0)
        put_msg(err, errlen, "%s: %s", keys[i].key, why);
    return r;
}

int glidefs_config_get(const glidefs_config *cfg, const char *key, char *buf, size_t buflen)
{
    if (!cfg || !key || !buf)
        return -EINVAL;
    int i = find_key(key);
    if (i < 0)
        return -ENOENT;
    return keys[i].get(&keys[i], cfg, buf, buflen);
}

/* ------------------------------------------------------------------------ */
/* The YAML loader                                                            */
/* ------------------------------------------------------------------------ */

struct yctx {
    yaml_parser_t parser;
    const char *name;
    const unsigned char *buf;
    size_t len;
    struct glidefs_config *cfg;
    char *err;
    size_t errlen;
    unsigned key_line[NKEYS]; /* 1-based line where a key was set; 0 = not yet */
    unsigned sec_line[NSECTIONS];
};

struct pos {
    size_t line, col; /* 1-based */
};

static struct pos mark_pos(yaml_mark_t m)
{
    return (struct pos){m.line + 1, m.column + 1};
}

/* Line/column (1-based, column in characters) of a byte offset, counting
 * line breaks the way libyaml does (\n, \r\n, lone \r). */
static struct pos offset_pos(const unsigned char *buf, size_t len, size_t off)
{
    struct pos p = {1, 1};
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        unsigned char c = buf[i];
        if (c == '\n' || (c == '\r' && !(i + 1 < len && buf[i + 1] == '\n'))) {
            p.line++;
            p.col = 1;
        } else if (c == '\r') {
            /* first half of \r\n: the \n ends the line */
        } else if ((c & 0xc0) != 0x80) {
            p.col++;
        }
    }
    return p;
}

__attribute__((format(printf, 4, 5)))
static int yerr(struct yctx *c, struct pos p, const char *key, const char *fmt, ...)
{
    char what[WHY_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (key)
        put_msg(c->err, c->errlen, "%s:%zu:%zu: %s: %s", c->name, p.line, p.col, key, what);
    else
        put_msg(c->err, c->errlen, "%s:%zu:%zu: %s", c->name, p.line, p.col, what);
    return -EINVAL;
}

/* The byte at a libyaml mark (line/column, column in characters), or -1. */
static int char_at(const unsigned char *buf, size_t len, yaml_mark_t m)
{
    size_t i = 0, line = 0;
    while (i < len && line < m.line) {
        if (buf[i] == '\n' || (buf[i] == '\r' && !(i + 1 < len && buf[i + 1] == '\n')))
            line++;
        i++;
    }
    for (size_t col = 0; i < len && col < m.column; i++)
        if (i + 1 >= len || (buf[i + 1] & 0xc0) != 0x80)
            col++;
    return i < len ? buf[i] : -1;
}

static int parser_error(struct yctx *c)
{
    yaml_parser_t *p = &c->parser;
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        put_msg(c->err, c->errlen, "%s: out of memory", c->name);
        return -ENOMEM;
    case YAML_READER_ERROR: {
        struct pos ps = offset_pos(c->buf, c->len, p->problem_offset);
        if (p->problem_value != -1)
            return yerr(c, ps, NULL, "bad input: %s (byte 0x%02x)",
                        p->problem ? p->problem : "unreadable", (unsigned)p->problem_value & 0xff);
        return yerr(c, ps, NULL, "bad input: %s", p->problem ? p->problem : "unreadable");
    }
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
        if (p->problem && strcmp(p->problem, "found character that cannot start any token") == 0 &&
            char_at(c->buf, c->len, p->problem_mark) == '\t')
            return yerr(c, mark_pos(p->problem_mark), NULL,
                        "syntax error: tab character (YAML indentation must use spaces)");
        if (p->context)
            return yerr(c, mark_pos(p->problem_mark), NULL,
                        "syntax error: %s (%s at line %zu, column %zu)",
                        p->problem ? p->problem : "malformed YAML", p->context,
                        p->context_mark.line + 1, p->context_mark.column + 1);
        return yerr(c, mark_pos(p->problem_mark), NULL, "syntax error: %s",
                    p->problem ? p->problem : "malformed YAML");
    default:
        return yerr(c, (struct pos){1, 1}, NULL, "syntax error: %s",
                    p->problem ? p->problem : "malformed YAML");
    }
}

/* Replace *ev with the next event (freeing the previous one). */
static int next_event(struct yctx *c, yaml_event_t *ev)
{
    yaml_event_delete(ev);
    if (!yaml_parser_parse(&c->parser, ev))
        return parser_error(c);
    return 0;
}

static void event_cleanup(yaml_event_t *ev) { yaml_event_delete(ev); }
#define CLEANUP_EVENT __attribute__((cleanup(event_cleanup)))

static const char *event_kind(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_SCALAR_EVENT: return "a scalar";
    case YAML_ALIAS_EVENT: return "an alias";
    default: return "something else";
    }
}

/* Refuse anchors, aliases and explicit tags on a node event. */
static int check_node(struct yctx *c, const yaml_event_t *ev, const char *key)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return yerr(c, mark_pos(ev->start_mark), key, "YAML anchors and aliases are not allowed");
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    default:
        return 0;
    }
    if (anchor)
        return yerr(c, mark_pos(ev->start_mark), key, "YAML anchors and aliases are not allowed");
    if (tag)
        return yerr(c, mark_pos(ev->start_mark), key, "YAML tags are not allowed");
    return 0;
}

static int scalar_is_null(const yaml_event_t *ev, const char *text)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            k++;
    return k;
}

/* Position of byte off of a scalar's value: exact when the scalar sits on one
 * line without escapes (its source width equals its text width), else the
 * scalar's start. */
static struct pos scalar_offset_pos(const yaml_event_t *ev, size_t off)
{
    struct pos p = mark_pos(ev->start_mark);
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    size_t q = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? 0
               : (ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                  ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
                   ? 1
                   : SIZE_MAX;
    if (q == SIZE_MAX || ev->start_mark.line != ev->end_mark.line)
        return p;
    if (ev->end_mark.column - ev->start_mark.column != utf8_chars(v, len) + 2 * q)
        return p;
    p.col += q + utf8_chars(v, off);
    return p;
}

static int is_var_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int is_var_char(char c) { return is_var_start(c) || is_digit(c); }

/* Expand ${VAR}, ${VAR:-default} and $$ in s[0..len). On error returns
 * -EINVAL with the offset of the offending '$' in *bad and a reason in why. */
static int expand_env(const char *s, size_t len, char **out, size_t *bad, char *why, size_t wl)
{
    char *o = malloc(GFS_CONFIG_VALUE_MAX + 1);
    if (!o)
        return -ENOMEM;
    size_t n = 0;
#define EMIT(p, k)                                                                              \
    do {                                                                                        \
        if (n + (k) > GFS_CONFIG_VALUE_MAX) {                                                   \
            free(o);                                                                            \
            *bad = 0;                                                                           \
            put_msg(why, wl, "value is too long after ${} expansion (more than %u bytes)",      \
                    GFS_CONFIG_VALUE_MAX);                                                      \
            return -EINVAL;                                                                     \
        }                                                                                       \
        memcpy(o + n, (p), (k));                                                                \
        n += (k);                                                                               \
    } while (0)

    size_t i = 0;
    while (i < len) {
        if (s[i] != '$' || i + 1 >= len || (s[i + 1] != '$' && s[i + 1] != '{')) {
            EMIT(s + i, 1);
            i++;
            continue;
        }
        if (s[i + 1] == '$') {
            EMIT("$", 1);
            i += 2;
            continue;
        }
        /* ${ */
        size_t start = i;
        size_t j = i + 2;
        if (j >= len || !is_var_start(s[j])) {
            free(o);
            *bad = start;
            put_msg(why, wl, "bad ${...}: expected ${NAME} or ${NAME:-default}");
            return -EINVAL;
        }
        while (j < len && is_var_char(s[j]))
            j++;
        size_t name_len = j - (i + 2);
        const char *def = NULL;
        size_t def_len = 0;
        if (j < len && s[j] == '}') {
            j++;
        } else if (j + 1 < len && s[j] == ':' && s[j + 1] == '-') {
            def = s + j + 2;
            const char *close = memchr(def, '}', len - (j + 2));
            if (!close) {
                free(o);
                *bad = start;
                put_msg(why, wl, "unterminated ${ (missing '}')");
                return -EINVAL;
            }
            def_len = (size_t)(close - def);
            j = (size_t)(close - s) + 1;
        } else if (j >= len) {
            free(o);
            *bad = start;
            put_msg(why, wl, "unterminated ${ (missing '}')");
            return -EINVAL;
        } else {
            free(o);
            *bad = start;
            put_msg(why, wl, "bad ${...}: expected ${NAME} or ${NAME:-default}");
            return -EINVAL;
        }
        if (name_len > 128) {
            free(o);
            *bad = start;
            put_msg(why, wl, "environment variable name is too long");
            return -EINVAL;
        }
        char name[129];
        memcpy(name, s + i + 2, name_len);
        name[name_len] = '\0';
        const char *val = getenv(name);
        if (def && (!val || !val[0])) {
            EMIT(def, def_len);
        } else if (!val) {
            free(o);
            *bad = start;
            put_msg(why, wl, "environment variable %s is not set", name);
            return -EINVAL;
        } else {
            size_t vl = strlen(val);
            EMIT(val, vl);
        }
        i = j;
    }
#undef EMIT
    o[n] = '\0';
    *out = o;
    return 0;
}

static int apply_scalar(struct yctx *c, const struct keydef *kd, const yaml_event_t *ev)
{
    const char *raw = (const char *)ev->data.scalar.value;
    size_t rawlen = ev->data.scalar.length;
    struct pos vp = mark_pos(ev->start_mark);
    if (memchr(raw, '\0', rawlen))
        return yerr(c, vp, kd->key, "value contains a NUL character");
    if (rawlen > GFS_CONFIG_VALUE_MAX)
        return yerr(c, vp, kd->key, "value is too long (more than %u bytes)",
                    GFS_CONFIG_VALUE_MAX);

    char why[WHY_MAX];
    why[0] = '\0';
    size_t bad = 0;
    CLEANUP_FREE char *val = NULL;
    int r = expand_env(raw, rawlen, &val, &bad, why, sizeof(why));
    if (r == -ENOMEM) {
        put_msg(c->err, c->errlen, "%s: out of memory", c->name);
        return r;
    }
    if (r < 0)
        return yerr(c, scalar_offset_pos(ev, bad), kd->key, "%s", why);

    r = kd->set(kd, c->cfg, val, scalar_is_null(ev, val), why, sizeof(why));
    if (r == -ENOMEM) {
        put_msg(c->err, c->errlen, "%s: out of memory", c->name);
        return r;
    }
    if (r < 0)
        return yerr(c, vp, kd->key, "%s", why);
    return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > KEY_COMPONENT_MAX || lb > KEY_COMPONENT_MAX)
        return SIZE_MAX;
    size_t row[KEY_COMPONENT_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *last_component(const char *k)
{
    const char *d = strrchr(k, '.');
    return d ? d + 1 : k;
}

static int same_parent(const char *full, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (pl == 0)
        return strchr(full, '.') == NULL;
    return strncmp(full, prefix, pl) == 0 && full[pl] == '.' && !strchr(full + pl + 1, '.');
}

/* A guess for a misspelt or misplaced key, or NULL. */
static const char *suggest(const char *prefix, const char *key)
{
    /* Right name, wrong place. */
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(last_component(keys[i].key), key) == 0)
            return keys[i].key;
    for (size_t i = 0; i < NSECTIONS; i++)
        if (strcmp(last_component(sections[i]), key) == 0)
            return sections[i];
    /* Typo among the siblings. */
    if (strlen(key) < 3)
        return NULL;
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NKEYS + NSECTIONS; i++) {
        const char *k = i < NKEYS ? keys[i].key : sections[i - NKEYS];
        if (!same_parent(k, prefix))
            continue;
        size_t d = edit_distance(key, last_component(k));
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    return best;
}

static int parse_mapping(struct yctx *c, const char *prefix);

/* The value of section `full` (index si): a mapping, or null for empty. */
static int parse_section_value(struct yctx *c, const char *full)
{
    yaml_event_t ev CLEANUP_EVENT = {0};
    int r = next_event(c, &ev);
    if (r < 0)
        return r;
    r = check_node(c, &ev, full);
    if (r < 0)
        return r;
    if (ev.type == YAML_MAPPING_START_EVENT)
        return parse_mapping(c, full);
    if (ev.type == YAML_SCALAR_EVENT && scalar_is_null(&ev, (const char *)ev.data.scalar.value))
        return 0;
    return yerr(c, mark_pos(ev.start_mark), full, "expected a mapping, got %s", event_kind(&ev));
}

static int parse_mapping(struct yctx *c, const char *prefix)
{
    yaml_event_t ev CLEANUP_EVENT = {0};
    for (;;) {
        int r = next_event(c, &ev);
        if (r < 0)
            return r;
        if (ev.type == YAML_MAPPING_END_EVENT)
            return 0;
        const char *where = prefix[0] ? prefix : NULL;
        r = check_node(c, &ev, where);
        if (r < 0)
            return r;
        struct pos kp = mark_pos(ev.start_mark);
        if (ev.type != YAML_SCALAR_EVENT)
            return yerr(c, kp, where, "expected a key name, got %s", event_kind(&ev));

        const char *key = (const char *)ev.data.scalar.value;
        size_t klen = ev.data.scalar.length;
        char shown[256];
        quote(shown, sizeof(shown), key);
        if (klen == 0 || klen > KEY_COMPONENT_MAX || memchr(key, '\0', klen) ||
            strchr(key, '.')) {
            /* "cache.dir: x" is a common slip: say how to write it. */
            char dotted[sizeof("servers.nbd") + KEY_COMPONENT_MAX + 2];
            snprintf(dotted, sizeof(dotted), "%s%s%s", prefix, prefix[0] ? "." : "", key);
            if (klen <= KEY_COMPONENT_MAX && !memchr(key, '\0', klen) &&
                (find_key(dotted) >= 0 || find_section(dotted) >= 0))
                return yerr(c, kp, where, "unknown key %s (dotted names must be written as "
                            "nested mappings)", shown);
            return yerr(c, kp, where, "unknown key %s", shown);
        }
        char full[sizeof("servers.nbd") + KEY_COMPONENT_MAX + 2];
        snprintf(full, sizeof(full), "%s%s%s", prefix, prefix[0] ? "." : "", key);

        int ki = find_key(full);
        int si = ki < 0 ? find_section(full) : -1;
        if (ki < 0 && si < 0) {
            /* Only known-safe characters reach the message unquoted. */
            int plain = 1;
            for (const char *p = key; *p; p++)
                if (!is_var_char(*p) && *p != '-')
                    plain = 0;
            const char *hint = suggest(prefix, key);
            char hintbuf[128] = "";
            if (hint)
                snprintf(hintbuf, sizeof(hintbuf), " (did you mean %s?)", hint);
            if (plain)
                return yerr(c, kp, full, "unknown key%s", hintbuf);
            return yerr(c, kp, where, "unknown key %s%s", shown, hintbuf);
        }
        if (ki >= 0) {
            const struct keydef *kd = &keys[ki];
            if (c->key_line[ki])
                return yerr(c, kp, kd->key, "duplicate key (first set at line %u)",
                            c->key_line[ki]);
            if (kd->conflicts) {
                int oi = find_key(kd->conflicts);
                if (oi >= 0 && c->key_line[oi])
                    return yerr(c, kp, kd->key, "conflicts with %s (line %u); set only one",
                                kd->conflicts, c->key_line[oi]);
            }
            c->key_line[ki] = (unsigned)kp.line;
            r = next_event(c, &ev);
            if (r < 0)
                return r;
            r = check_node(c, &ev, kd->key);
            if (r < 0)
                return r;
            if (ev.type != YAML_SCALAR_EVENT)
                return yerr(c, mark_pos(ev.start_mark), kd->key,
                            "expected a single value, got %s", event_kind(&ev));
            r = apply_scalar(c, kd, &ev);
            if (r < 0)
                return r;
        } else {
            if (c->sec_line[si])
                return yerr(c, kp, sections[si], "duplicate key (first set at line %u)",
                            c->sec_line[si]);
            c->sec_line[si] = (unsigned)kp.line;
            yaml_event_delete(&ev);
            r = parse_section_value(c, sections[si]);
            if (r < 0)
                return r;
        }
    }
}

static int parse_stream(struct yctx *c)
{
    yaml_event_t ev CLEANUP_EVENT = {0};
    int r = next_event(c, &ev); /* STREAM-START */
    if (r < 0)
        return r;
    r = next_event(c, &ev);
    if (r < 0)
        return r;
    if (ev.type == YAML_STREAM_END_EVENT)
        return 0; /* empty file: all defaults */
    if (ev.type != YAML_DOCUMENT_START_EVENT)
        return yerr(c, mark_pos(ev.start_mark), NULL, "syntax error: expected a document");

    r = next_event(c, &ev);
    if (r < 0)
        return r;
    r = check_node(c, &ev, NULL);
    if (r < 0)
        return r;
    if (ev.type == YAML_MAPPING_START_EVENT) {
        r = parse_mapping(c, "");
        if (r < 0)
            return r;
    } else if (!(ev.type == YAML_SCALAR_EVENT &&
                 scalar_is_null(&ev, (const char *)ev.data.scalar.value))) {
        return yerr(c, mark_pos(ev.start_mark), NULL,
                    "expected a mapping (cache:, storage:, servers:, node_id:) at the top "
                    "level, got %s",
                    event_kind(&ev));
    }

    r = next_event(c, &ev); /* DOCUMENT-END */
    if (r < 0)
        return r;
    r = next_event(c, &ev);
    if (r < 0)
        return r;
    if (ev.type == YAML_DOCUMENT_START_EVENT)
        return yerr(c, mark_pos(ev.start_mark), NULL, "only one YAML document is allowed");
    if (ev.type != YAML_STREAM_END_EVENT)
        return yerr(c, mark_pos(ev.start_mark), NULL, "syntax error: expected the end");
    return 0;
}

static int parse_common(const char *yaml, size_t len, const char *name, glidefs_config **out,
                        char *err, size_t errlen)
{
    if (len > GFS_CONFIG_FILE_MAX) {
        put_msg(err, errlen, "%s: larger than the %u-byte limit for a config file", name,
                GFS_CONFIG_FILE_MAX);
        return -EFBIG;
    }
    const unsigned char *buf = (const unsigned char *)(yaml ? yaml : "");
    const unsigned char *nul = memchr(buf, '\0', len);
    if (nul) {
        struct pos p = offset_pos(buf, len, (size_t)(nul - buf));
        put_msg(err, errlen, "%s:%zu:%zu: bad input: NUL byte", name, p.line, p.col);
        return -EINVAL;
    }

    glidefs_config *cfg = glidefs_config_new();
    if (!cfg) {
        put_msg(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    struct yctx *c = calloc(1, sizeof(*c));
    if (!c) {
        glidefs_config_free(cfg);
        put_msg(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    c->name = name;
    c->buf = buf;
    c->len = len;
    c->cfg = cfg;
    c->err = err;
    c->errlen = errlen;
    if (!yaml_parser_initialize(&c->parser)) {
        free(c);
        glidefs_config_free(cfg);
        put_msg(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&c->parser, buf, len);
    yaml_parser_set_encoding(&c->parser, YAML_UTF8_ENCODING);
    int r = parse_stream(c);
    yaml_parser_delete(&c->parser);
    free(c);
    if (r < 0) {
        glidefs_config_free(cfg);
        return r;
    }
    if (err && errlen)
        err[0] = '\0';
    *out = cfg;
    return 0;
}

int glidefs_config_parse(const char *yaml, size_t len, const char *name, glidefs_config **out,
                         char *err, size_t errlen)
{
    if (!name)
        name = "<config>";
    if (!out || (!yaml && len > 0)) {
        put_msg(err, errlen, "%s: invalid argument", name);
        return -EINVAL;
    }
    *out = NULL;
    return parse_common(yaml, len, name, out, err, errlen);
}

int glidefs_config_load(const char *path, glidefs_config **out, char *err, size_t errlen)
{
    if (!path || !out) {
        put_msg(err, errlen, "invalid argument");
        return -EINVAL;
    }
    *out = NULL;
    char eb[128];
    int fd CLEANUP_CLOSE = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        put_msg(err, errlen, "%s: cannot open: %s", path, strerror_r(e, eb, sizeof(eb)));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        put_msg(err, errlen, "%s: cannot read: %s", path, strerror_r(EISDIR, eb, sizeof(eb)));
        return -EISDIR;
    }
    /* Read at most one byte past the limit: enough to know it is too big,
     * whatever kind of file (or pipe) this is. */
    CLEANUP_FREE char *buf = malloc(GFS_CONFIG_FILE_MAX + 1);
    if (!buf) {
        put_msg(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t n = 0;
    while (n < GFS_CONFIG_FILE_MAX + 1) {
        ssize_t k = read(fd, buf + n, GFS_CONFIG_FILE_MAX + 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            put_msg(err, errlen, "%s: cannot read: %s", path, strerror_r(e, eb, sizeof(eb)));
            return -e;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    return parse_common(buf, n, path, out, err, errlen);
}
