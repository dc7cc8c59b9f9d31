/*
 * s3_creds_parse.c — parsing and validation of what the S3 credential
 * sources answer (see s3_creds_parse.h): INI shared files, IMDS / container
 * JSON (jansson), IAM role names, ISO-8601 expiry times. Pure functions:
 * no I/O, no clock (the caller passes now), no logging.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm */
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <mbedtls/platform_util.h>

#include "s3_creds_parse.h"

#define INI_LINE_MAX (16u * 1024u)

__attribute__((format(printf, 3, 4)))
static void put_why(char *why, size_t wl, const char *fmt, ...)
{
    if (!why || !wl)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, wl, fmt, ap);
    va_end(ap);
}

static void free_secret(char **s)
{
    if (*s) {
        mbedtls_platform_zeroize(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void gfs_creds_parsed_clear(struct gfs_creds_parsed *p)
{
    if (!p)
        return;
    free(p->akid);
    free_secret(&p->secret);
    free_secret(&p->token);
    memset(p, 0, sizeof(*p));
}

/* ---- field checks --------------------------------------------------------- */

static int all_in(const char *s, int (*ok)(unsigned char))
{
    for (; *s; s++)
        if (!ok((unsigned char)*s))
            return 0;
    return 1;
}

static int alnum_ch(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
static int graph_ch(unsigned char c) { return c > 0x20 && c < 0x7f; }
static int loose_akid_ch(unsigned char c) { return c > 0x20 && c != 0x7f && c != '/'; }
static int no_ctl_ch(unsigned char c) { return c >= 0x20 && c != 0x7f; }

int gfs_creds_check(const struct gfs_creds_parsed *p, int strict, int64_t now_ms, char *why,
                    size_t wl)
{
    if (!p || !p->akid || !*p->akid) {
        put_why(why, wl, "no access key id");
        return -EINVAL;
    }
    if (!p->secret || !*p->secret) {
        put_why(why, wl, "no secret access key");
        return -EINVAL;
    }
    size_t al = strlen(p->akid), sl = strlen(p->secret);
    if (al > GFS_CREDS_AKID_MAX || (strict && al < 16) ||
        !all_in(p->akid, strict ? alnum_ch : loose_akid_ch)) {
        put_why(why, wl, "the access key id is malformed (%zu bytes)", al);
        return -EINVAL;
    }
    if (sl > GFS_CREDS_SECRET_MAX || !all_in(p->secret, strict ? graph_ch : no_ctl_ch)) {
        put_why(why, wl, "the secret access key is malformed (%zu bytes)", sl);
        return -EINVAL;
    }
    if (p->token) {
        size_t tl = strlen(p->token);
        if (tl == 0 || tl > GFS_CREDS_TOKEN_MAX ||
            !all_in(p->token, strict ? graph_ch : no_ctl_ch)) {
            put_why(why, wl, "the session token is malformed (%zu bytes)", tl);
            return -EINVAL;
        }
    } else if (strict) {
        put_why(why, wl, "no session token");
        return -EINVAL;
    }
    if (strict && p->expires_ms <= 0) {
        put_why(why, wl, "no expiry time");
        return -EINVAL;
    }
    if (p->expires_ms > 0 && p->expires_ms <= now_ms) {
        put_why(why, wl, "the credentials expired %lld s ago",
                (long long)((now_ms - p->expires_ms) / 1000));
        return -EINVAL;
    }
    return 0;
}

/* ---- ISO-8601 ------------------------------------------------------------- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int gfs_creds_parse_time(const char *s, size_t n, int64_t *ms)
{
    /* YYYY-MM-DDTHH:MM:SS = 19 bytes */
    int Y, M, D, h, m, sec;
    if (!s || n < 20 || n > 40 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':' || digits(s, 4, &Y) || digits(s + 5, 2, &M) ||
        digits(s + 8, 2, &D) || digits(s + 11, 2, &h) || digits(s + 14, 2, &m) ||
        digits(s + 17, 2, &sec))
        return -EINVAL;
    size_t i = 19;
    int frac_ms = 0;
    if (s[i] == '.') {
        size_t k = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, k++) {
            if (k < 3)
                frac_ms = frac_ms * 10 + (s[i] - '0');
        }
        if (k == 0 || k > 9)
            return -EINVAL;
        for (; k < 3; k++)
            frac_ms *= 10;
    }
    size_t rest = n - i;
    if (!((rest == 1 && (s[i] == 'Z' || s[i] == 'z')) ||
          (rest == 6 && memcmp(s + i, "+00:00", 6) == 0)))
        return -EINVAL;
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (Y < 1970 || Y > 9999 || M < 1 || M > 12 || D < 1 || D > mdays[M - 1] ||
        (M == 2 && D == 29 && !leap) || h > 23 || m > 59 || sec > 60)
        return -EINVAL;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                    .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ms = (int64_t)t * 1000 + frac_ms;
    return 0;
}

/* ---- JSON (IMDS, container endpoint) --------------------------------------- */

/* A string member: present, a JSON string without NUL, at most max bytes. */
static int json_field(json_t *root, const char *name, size_t max, char **out, char *why,
                      size_t wl)
{
    json_t *v = json_object_get(root, name);
    if (!v) {
        put_why(why, wl, "no \"%s\" in the answer", name);
        return -EBADMSG;
    }
    if (!json_is_string(v)) {
        put_why(why, wl, "\"%s\" is not a string", name);
        return -EBADMSG;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n != strlen(s) || n == 0 || n > max) {
        put_why(why, wl, "\"%s\" is empty, too long or holds a NUL (%zu bytes)", name, n);
        return -EBADMSG;
    }
    *out = strndup(s, n);
    return *out ? 0 : -ENOMEM;
}

int gfs_creds_parse_json(const char *buf, size_t len, int64_t now_ms,
                         struct gfs_creds_parsed *out, char *why, size_t wl)
{
    memset(out, 0, sizeof(*out));
    if (!buf || len == 0 || len > GFS_CREDS_ANSWER_MAX) {
        put_why(why, wl, "answer empty or larger than %u bytes", GFS_CREDS_ANSWER_MAX);
        return -EBADMSG;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        put_why(why, wl, "the answer is not a JSON object");
        json_decref(root);
        return -EBADMSG;
    }
    int rc = 0;
    json_t *code = json_object_get(root, "Code");
    if (code && (!json_is_string(code) || strcmp(json_string_value(code), "Success") != 0)) {
        char c[64] = "";
        if (json_is_string(code)) {
            snprintf(c, sizeof(c), "%s", json_string_value(code));
            for (char *p = c; *p; p++)
                if (!alnum_ch((unsigned char)*p))
                    *p = '?';
        }
        put_why(why, wl, "the answer says Code \"%s\", not Success", c);
        rc = -EBADMSG;
    }
    char *exp = NULL;
    if (rc == 0)
        rc = json_field(root, "AccessKeyId", GFS_CREDS_AKID_MAX, &out->akid, why, wl);
    if (rc == 0)
        rc = json_field(root, "SecretAccessKey", GFS_CREDS_SECRET_MAX, &out->secret, why, wl);
    if (rc == 0)
        rc = json_field(root, "Token", GFS_CREDS_TOKEN_MAX, &out->token, why, wl);
    if (rc == 0)
        rc = json_field(root, "Expiration", 40, &exp, why, wl);
    if (rc == 0 && gfs_creds_parse_time(exp, strlen(exp), &out->expires_ms) != 0) {
        put_why(why, wl, "\"Expiration\" is not an ISO-8601 UTC time");
        rc = -EBADMSG;
    }
    free(exp);
    json_decref(root); /* jansson does not zero its copies; ours are what we keep */
    if (rc == 0)
        rc = gfs_creds_check(out, 1, now_ms, why, wl);
    if (rc != 0)
        gfs_creds_parsed_clear(out);
    return rc == -EINVAL ? -EBADMSG : rc;
}

/* ---- IMDS role list ------------------------------------------------------- */

static int role_ch(unsigned char c)
{
    return alnum_ch(c) || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' ||
           c == '_' || c == '-';
}

int gfs_creds_role_name(const char *buf, size_t len, char *out, size_t outlen)
{
    if (!buf || !out || outlen == 0)
        return -EINVAL;
    out[0] = '\0';
    size_t n = 0;
    while (n < len && buf[n] != '\n' && buf[n] != '\r')
        n++;
    if (n == 0 || n > GFS_CREDS_ROLE_MAX || n >= outlen)
        return -EBADMSG;
    for (size_t i = 0; i < n; i++)
        if (!role_ch((unsigned char)buf[i]))
            return -EBADMSG;
    memcpy(out, buf, n);
    out[n] = '\0';
    return 0;
}

/* ---- INI (shared credentials and config files) ----------------------------- */

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static void trim(const char **s, size_t *n)
{
    while (*n && is_ws(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_ws((*s)[*n - 1]))
        (*n)--;
}

/* Does the section header text h (trimmed) name profile in this file kind? */
static int section_is(const char *h, size_t hn, const char *profile, int config_file)
{
    size_t pl = strlen(profile);
    if (!config_file || strcmp(profile, "default") == 0) {
        if (hn == pl && memcmp(h, profile, pl) == 0)
            return 1;
        if (!config_file)
            return 0;
    }
    /* config file: "profile NAME" (any run of blanks between) */
    if (hn < 8 || memcmp(h, "profile", 7) != 0 || !is_ws(h[7]))
        return 0;
    const char *r = h + 7;
    size_t rn = hn - 7;
    trim(&r, &rn);
    return rn == pl && memcmp(r, profile, pl) == 0;
}

static const char *const unsupported_keys[] = {
    "role_arn", "source_profile", "credential_source", "credential_process",
    "web_identity_token_file", "sso_session", "sso_start_url", "sso_account_id",
    "sso_role_name",
};

static void note_unsupported(struct gfs_ini_profile *out, const char *k)
{
    size_t have = strlen(out->unsupported);
    if (strstr(out->unsupported, k))
        return;
    snprintf(out->unsupported + have, sizeof(out->unsupported) - have, "%s%s",
             have ? ", " : "", k);
}

int gfs_creds_parse_ini(const char *buf, size_t len, const char *profile, int config_file,
                        struct gfs_ini_profile *out, char *why, size_t wl)
{
    memset(out, 0, sizeof(*out));
    if (!profile || !*profile || (!buf && len))
        return -EINVAL;
    if (len > GFS_CREDS_FILE_MAX) {
        put_why(why, wl, "larger than %u bytes", GFS_CREDS_FILE_MAX);
        return -EBADMSG;
    }
    if (len && memchr(buf, '\0', len)) {
        put_why(why, wl, "holds a NUL byte");
        return -EBADMSG;
    }
    int in_section = 0, in_ours = 0, seen_ours = 0;
    char **last_ours = NULL; /* our key the previous line set: no continuation allowed */
    int rc = 0;
    size_t lineno = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        const char *line = buf + pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n && line[n - 1] == '\r')
            n--;
        if (n > INI_LINE_MAX) {
            put_why(why, wl, "line %zu is longer than %u bytes", lineno, INI_LINE_MAX);
            rc = -EBADMSG;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f) {
                put_why(why, wl, "line %zu holds a control character", lineno);
                rc = -EBADMSG;
                break;
            }
        if (rc)
            break;
        const char *t = line;
        size_t tn = n;
        int indented = tn && is_ws(t[0]);
        trim(&t, &tn);
        if (tn == 0 || t[0] == '#' || t[0] == ';')
            continue; /* blank line or comment */
        if (indented && in_section) {
            /* a continuation (e.g. "s3 =" sub-keys): part of the previous value */
            if (last_ours) {
                put_why(why, wl, "line %zu continues a credential value onto another line",
                        lineno);
                rc = -EBADMSG;
            }
            continue;
        }
        last_ours = NULL;
        if (t[0] == '[') {
            if (t[tn - 1] != ']' || tn < 3) {
                put_why(why, wl, "line %zu: a section header must be [name]", lineno);
                rc = -EBADMSG;
                break;
            }
            const char *h = t + 1;
            size_t hn = tn - 2;
            trim(&h, &hn);
            if (hn == 0 || memchr(h, '[', hn) || memchr(h, ']', hn)) {
                put_why(why, wl, "line %zu: a section header must be [name]", lineno);
                rc = -EBADMSG;
                break;
            }
            in_section = 1;
            in_ours = section_is(h, hn, profile, config_file);
            if (in_ours && seen_ours) {
                put_why(why, wl, "line %zu: the profile's section appears twice", lineno);
                rc = -EBADMSG;
                break;
            }
            seen_ours |= in_ours;
            continue;
        }
        if (!in_section) {
            put_why(why, wl, "line %zu is outside any [section]", lineno);
            rc = -EBADMSG;
            break;
        }
        size_t k = 0;
        while (k < tn && t[k] != '=' && t[k] != ':')
            k++;
        if (k == tn || k == 0) {
            put_why(why, wl, "line %zu is not \"name = value\"", lineno);
            rc = -EBADMSG;
            break;
        }
        if (!in_ours)
            continue;
        const char *key = t;
        size_t kn = k;
        trim(&key, &kn);
        const char *val = t + k + 1;
        size_t vn = tn - k - 1;
        trim(&val, &vn);
        char **field = NULL;
        if (kn == 17 && strncasecmp(key, "aws_access_key_id", 17) == 0)
            field = &out->keys.akid;
        else if (kn == 21 && strncasecmp(key, "aws_secret_access_key", 21) == 0)
            field = &out->keys.secret;
        else if (kn == 17 && strncasecmp(key, "aws_session_token", 17) == 0)
            field = &out->keys.token;
        if (field) {
            if (*field) {
                put_why(why, wl, "line %zu: %.*s is given twice", lineno, (int)kn, key);
                rc = -EBADMSG;
                break;
            }
            if (!(*field = strndup(val, vn))) {
                rc = -ENOMEM;
                break;
            }
            if (vn)
                last_ours = field;
            continue;
        }
        for (size_t u = 0; u < sizeof(unsupported_keys) / sizeof(unsupported_keys[0]); u++)
            if (strlen(unsupported_keys[u]) == kn && strncasecmp(key, unsupported_keys[u], kn) == 0)
                note_unsupported(out, unsupported_keys[u]);
    }
    if (rc != 0) {
        gfs_creds_parsed_clear(&out->keys);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->found = seen_ours;
    /* an empty value is no value (aws_session_token = ) */
    if (out->keys.token && !*out->keys.token)
        free_secret(&out->keys.token);
    return 0;
}
