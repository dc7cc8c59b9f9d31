/*
 * azure_batch.c — the Blob Batch request body and the parser of its
 * multipart/mixed answer (see azure_batch.h). Byte-level, bounded parsing:
 * every search is limited to the answer's length, lines to LINE_MAX_LEN,
 * parts to the number of subrequests sent.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "azure_batch.h"
#include "strbuf.h"

#define LINE_MAX_LEN 8192u
#define CT_MAX 512u

/* RFC 2046 bchars, without the space (which may not end a boundary and
 * which no Azure boundary holds). */
static int bchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("'()+_,-./:=?", c));
}

static int boundary_ok(const char *b, size_t n)
{
    if (n == 0 || n > GFS_AZ_BATCH_BOUNDARY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!bchar(b[i]))
            return 0;
    return 1;
}

static int line_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LINE_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* ---- request ------------------------------------------------------------- */

int gfs_az_batch_build(const char *boundary, const struct gfs_az_batch_sub *sub, size_t n,
                       char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!boundary || !boundary_ok(boundary, strlen(boundary)) || !sub || n == 0 ||
        n > GFS_AZ_BATCH_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!sub[i].method || !line_ok(sub[i].method) || strchr(sub[i].method, ' ') ||
            !sub[i].target || sub[i].target[0] != '/' || !line_ok(sub[i].target) ||
            strchr(sub[i].target, ' ') || (sub[i].nheaders && !sub[i].headers))
            return -EINVAL;
        for (size_t h = 0; h < sub[i].nheaders; h++) {
            const char *l = sub[i].headers[h];
            const char *colon = l ? strstr(l, ": ") : NULL;
            if (!l || !line_ok(l) || !colon || colon == l)
                return -EINVAL;
        }
    }
    struct gfs_sbuf b = {0};
    char num[32];
    for (size_t i = 0; i < n; i++) {
        gfs_sb_str(&b, "--");
        gfs_sb_str(&b, boundary);
        gfs_sb_str(&b, "\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                   "Content-ID: ");
        snprintf(num, sizeof num, "%zu", i);
        gfs_sb_str(&b, num);
        gfs_sb_str(&b, "\r\n\r\n");
        gfs_sb_str(&b, sub[i].method);
        gfs_sb_str(&b, " ");
        gfs_sb_str(&b, sub[i].target);
        gfs_sb_str(&b, " HTTP/1.1\r\n");
        for (size_t h = 0; h < sub[i].nheaders; h++) {
            gfs_sb_str(&b, sub[i].headers[h]);
            gfs_sb_str(&b, "\r\n");
        }
        gfs_sb_str(&b, "\r\n");
    }
    gfs_sb_str(&b, "--");
    gfs_sb_str(&b, boundary);
    gfs_sb_str(&b, "--\r\n");
    int r = gfs_sb_finish(&b, out);
    if (r == 0)
        *outlen = b.len;
    return r;
}

/* ---- answer -------------------------------------------------------------- */

/* The boundary parameter of a multipart/mixed Content-Type, into out. */
static int content_type_boundary(const char *ct, char out[GFS_AZ_BATCH_BOUNDARY_MAX + 1])
{
    if (!ct || strlen(ct) > CT_MAX)
        return -EBADMSG;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "multipart/mixed", 15) != 0)
        return -EBADMSG;
    const char *p = ct + 15;
    int found = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ';')
            return -EBADMSG;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t nl = strcspn(p, "=; \t");
        if (p[nl] != '=' || nl == 0)
            return -EBADMSG;
        const char *v = p + nl + 1;
        size_t vl;
        const char *next;
        if (*v == '"') {
            const char *close = strchr(v + 1, '"');
            if (!close)
                return -EBADMSG;
            vl = (size_t)(close - v - 1);
            next = close + 1;
            v++;
        } else {
            vl = strcspn(v, "; \t");
            next = v + vl;
        }
        if (nl == 8 && strncasecmp(p, "boundary", 8) == 0) {
            if (found || !boundary_ok(v, vl))
                return -EBADMSG;
            memcpy(out, v, vl);
            out[vl] = '\0';
            found = 1;
        }
        p = next;
    }
    return found ? 0 : -EBADMSG;
}

/* The line at *p (ending in LF or CRLF, or at end), at most LINE_MAX_LEN;
 * *p moves past it. Returns its length, or -1 if too long. */
static long next_line(const char **p, const char *end, const char **line)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r')
        e--;
    if ((size_t)(e - s) > LINE_MAX_LEN)
        return -1;
    *line = s;
    return (long)(e - s);
}

static int digits(const char *s, size_t n, uint64_t *out, size_t maxd)
{
    if (n == 0 || n > maxd)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "Name: value" split; the value trimmed. 0, or -1 if no colon. */
static int header_split(const char *l, size_t n, size_t *nl, const char **v, size_t *vl)
{
    const char *colon = memchr(l, ':', n);
    if (!colon || colon == l)
        return -1;
    *nl = (size_t)(colon - l);
    const char *s = colon + 1, *e = l + n;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *v = s;
    *vl = (size_t)(e - s);
    return 0;
}

/* One part, [s, e): MIME headers, blank line, an HTTP response. *cid is the
 * Content-ID or -1. */
static int parse_part(const char *s, const char *e, long long *cid, struct gfs_az_batch_reply *r)
{
    const char *l;
    long n;
    int have_ct = 0;
    *cid = -1;
    memset(r, 0, sizeof(*r));
    for (;;) {
        if (s >= e)
            return -EBADMSG; /* no embedded response */
        if ((n = next_line(&s, e, &l)) < 0)
            return -EBADMSG;
        if (n == 0)
            break;
        size_t nl, vl;
        const char *v;
        if (header_split(l, (size_t)n, &nl, &v, &vl) < 0)
            return -EBADMSG;
        if (nl == 12 && strncasecmp(l, "Content-Type", 12) == 0) {
            if (have_ct++ || vl < 16 || strncasecmp(v, "application/http", 16) != 0 ||
                (vl > 16 && v[16] != ';' && v[16] != ' '))
                return -EBADMSG;
        } else if (nl == 10 && strncasecmp(l, "Content-ID", 10) == 0) {
            uint64_t id;
            if (*cid >= 0 || digits(v, vl, &id, 9) < 0)
                return -EBADMSG;
            *cid = (long long)id;
        }
    }
    if (!have_ct)
        return -EBADMSG;
    /* the status line: HTTP/d.d NNN[ reason] */
    if (s >= e || (n = next_line(&s, e, &l)) < 12 || strncmp(l, "HTTP/", 5) != 0 ||
        l[5] < '0' || l[5] > '9' || l[6] != '.' || l[7] < '0' || l[7] > '9' || l[8] != ' ' ||
        (n > 12 && l[12] != ' '))
        return -EBADMSG;
    uint64_t st;
    if (digits(l + 9, 3, &st, 3) < 0 || st < 100 || st > 599)
        return -EBADMSG;
    r->status = (int)st;
    /* its headers, up to a blank line or the end of the part; the body is not needed */
    while (s < e) {
        if ((n = next_line(&s, e, &l)) < 0)
            return -EBADMSG;
        if (n == 0)
            break;
        size_t nl, vl;
        const char *v;
        if (header_split(l, (size_t)n, &nl, &v, &vl) < 0)
            return -EBADMSG;
        if (nl == 15 && strncasecmp(l, "x-ms-error-code", 15) == 0) {
            if (r->code[0] || vl == 0)
                return -EBADMSG;
            size_t k = vl < sizeof(r->code) - 1 ? vl : sizeof(r->code) - 1;
            for (size_t i = 0; i < k; i++)
                r->code[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
            r->code[k] = '\0';
        }
    }
    return 0;
}

/* The next "\n--B" at or after s (the LF of the line break before a
 * delimiter), or NULL. */
static const char *find_delim(const char *s, const char *end, const char *b, size_t bl)
{
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            return NULL;
        if ((size_t)(end - nl - 1) >= bl + 2 && nl[1] == '-' && nl[2] == '-' &&
            memcmp(nl + 3, b, bl) == 0)
            return nl;
        s = nl + 1;
    }
    return NULL;
}

int gfs_az_batch_parse(const char *content_type, const char *body, size_t len, size_t nreq,
                       struct gfs_az_batch_reply *reply, const struct gfs_az_batch_reply **whole)
{
    if (whole)
        *whole = NULL;
    if (!reply || !whole || nreq == 0 || nreq > GFS_AZ_BATCH_MAX)
        return -EINVAL;
    memset(reply, 0, nreq * sizeof(*reply));
    char b[GFS_AZ_BATCH_BOUNDARY_MAX + 1];
    if (!body || len == 0 || len > GFS_AZ_BATCH_BODY_MAX ||
        content_type_boundary(content_type, b) < 0)
        return -EBADMSG;
    size_t bl = strlen(b);
    const char *end = body + len, *p;
    /* the first delimiter: at the start, or after a preamble */
    if (len >= bl + 2 && body[0] == '-' && body[1] == '-' && memcmp(body + 2, b, bl) == 0)
        p = body;
    else if ((p = find_delim(body, end, b, bl)) != NULL)
        p++;
    else
        return -EBADMSG;
    uint8_t *seen = calloc(nreq, 1);
    if (!seen)
        return -ENOMEM;
    size_t nparts = 0;
    int with_id = -1, rc = 0, closed = 0;
    struct gfs_az_batch_reply first = {0};
    while (rc == 0) {
        p += 2 + bl; /* past "--B" */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            closed = 1; /* the close delimiter; what follows is epilogue */
            break;
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++; /* transport padding */
        if (p < end && *p == '\r')
            p++;
        if (p >= end || *p != '\n') {
            rc = -EBADMSG;
            break;
        }
        p++;
        const char *d = find_delim(p, end, b, bl);
        if (!d) {
            rc = -EBADMSG; /* a part that never ends */
            break;
        }
        const char *pe = d > p && d[-1] == '\r' ? d - 1 : d;
        if (nparts >= nreq) {
            rc = -EBADMSG;
            break;
        }
        long long cid;
        struct gfs_az_batch_reply r;
        if ((rc = parse_part(p, pe, &cid, &r)) != 0)
            break;
        int has = cid >= 0;
        if (with_id < 0)
            with_id = has;
        if (with_id != has || (has && ((unsigned long long)cid >= nreq || seen[cid]))) {
            rc = -EBADMSG;
            break;
        }
        size_t idx = has ? (size_t)cid : nparts;
        seen[idx] = 1;
        reply[idx] = r;
        if (nparts == 0)
            first = r;
        nparts++;
        p = d + 1;
    }
    free(seen);
    if (rc == 0 && (!closed || nparts == 0))
        rc = -EBADMSG;
    if (rc == 0 && nparts != nreq) {
        if (nparts == 1 && with_id == 0) {
            /* the batch refused as a whole */
            memset(reply, 0, nreq * sizeof(*reply));
            reply[0] = first;
            *whole = &reply[0];
        } else {
            rc = -EBADMSG;
        }
    }
    if (rc != 0)
        memset(reply, 0, nreq * sizeof(*reply));
    return rc;
}
