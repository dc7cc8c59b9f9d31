/*
 * takeover_proto.c — encoding and the validating decoder of the takeover
 * messages (takeover_proto.h has the layout). Pure: no I/O, no globals.
 */
#include "takeover_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC_HELLO[8] = { 'G', 'F', 'S', 'T', 'K', 'H', 'I', '1' };
static const char MAGIC_ACK[8] = { 'G', 'F', 'S', 'T', 'K', 'O', 'K', '1' };
static const char MAGIC_COMMIT[8] = { 'G', 'F', 'S', 'T', 'K', 'G', 'O', '1' };
static const char MAGIC_STATE[8] = { 'G', 'F', 'S', 'T', 'K', 'S', 'T', '1' };
static const char MAGIC_DURS[4] = { 'D', 'U', 'R', '1' };
#define DUR_FIXED 17 /* name length, mode, max_unsynced_ms, max_unsynced_bytes */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void fixed_encode(uint8_t out[16], const char magic[8], uint32_t v)
{
    memcpy(out, magic, 8);
    put32(out + 8, GD_TKO_VERSION);
    put32(out + 12, v);
}

static int fixed_decode(const uint8_t in[16], const char magic[8], uint32_t *v)
{
    if (memcmp(in, magic, 8) != 0)
        return -EPROTO;
    if (get32(in + 8) != GD_TKO_VERSION)
        return -EPROTONOSUPPORT;
    *v = get32(in + 12);
    return 0;
}

void gd_tko_encode_hello(uint8_t out[GD_TKO_HELLO_SIZE], uint32_t pid)
{
    fixed_encode(out, MAGIC_HELLO, pid);
}

int gd_tko_decode_hello(const uint8_t in[GD_TKO_HELLO_SIZE], uint32_t *pid)
{
    return fixed_decode(in, MAGIC_HELLO, pid);
}

void gd_tko_encode_ack(uint8_t out[GD_TKO_ACK_SIZE], uint32_t status)
{
    fixed_encode(out, MAGIC_ACK, status);
}

int gd_tko_decode_ack(const uint8_t in[GD_TKO_ACK_SIZE], uint32_t *status)
{
    return fixed_decode(in, MAGIC_ACK, status);
}

void gd_tko_encode_commit(uint8_t out[GD_TKO_ACK_SIZE])
{
    fixed_encode(out, MAGIC_COMMIT, 0);
}

int gd_tko_decode_commit(const uint8_t in[GD_TKO_ACK_SIZE])
{
    uint32_t v;
    int rc = fixed_decode(in, MAGIC_COMMIT, &v);
    return rc < 0 ? rc : v == 0 ? 0 : -EPROTO;
}

/* ------------------------------------------------------------------------ */
/* STATE                                                                     */
/* ------------------------------------------------------------------------ */

static size_t body_size(const struct gd_tko_state *st)
{
    size_t n = 0;
    for (uint32_t i = 0; i < st->nlisten; i++)
        n += 1 + 2 + strlen(st->listen[i].path);
    for (uint32_t i = 0; i < st->nexports; i++)
        n += 1 + strlen(st->exports[i].name) + 4;
    for (uint32_t i = 0; i < st->nconns; i++)
        n += 8 + 8 + 2 + 1 + 4 + 1 + strlen(st->conns[i].peer) + 4 + st->conns[i].pending_len;
    if (st->ndurs > 0)
        n += sizeof MAGIC_DURS + 4;
    for (uint32_t i = 0; i < st->ndurs; i++)
        n += DUR_FIXED + strlen(st->durs[i].name);
    return n;
}

int gd_tko_encode_state(const struct gd_tko_state *st, uint8_t **out, size_t *outlen)
{
    if (st->nlisten > GD_TKO_MAX_LISTEN || st->nconns > GD_TKO_MAX_CONNS ||
        st->nexports > GD_TKO_MAX_EXPORTS || st->ndurs > GD_TKO_MAX_DURS)
        return -EINVAL;
    for (uint32_t i = 0; i < st->ndurs; i++)
        if (strlen(st->durs[i].name) > GLIDEFS_NAME_MAX)
            return -EINVAL;
    for (uint32_t i = 0; i < st->nlisten; i++)
        if (strlen(st->listen[i].path) > GD_TKO_MAX_PATH)
            return -EINVAL;
    for (uint32_t i = 0; i < st->nexports; i++)
        if (strlen(st->exports[i].name) > GLIDEFS_NAME_MAX)
            return -EINVAL;
    for (uint32_t i = 0; i < st->nconns; i++)
        if (st->conns[i].pending_len > GD_TKO_MAX_PENDING || strlen(st->conns[i].peer) > 95)
            return -EINVAL;
    size_t body = body_size(st);
    if (body > GD_TKO_MAX_BODY)
        return -EINVAL;
    uint8_t *b = malloc(GD_TKO_HDR_SIZE + body);
    if (!b)
        return -ENOMEM;
    memcpy(b, MAGIC_STATE, 8);
    put32(b + 8, GD_TKO_VERSION);
    put32(b + 12, (uint32_t)body);
    put32(b + 16, gd_tko_nfds(st));
    put32(b + 20, st->nlisten);
    put32(b + 24, st->nconns);
    put32(b + 28, st->nexports);
    put64(b + 32, st->next_id);
    uint8_t *p = b + GD_TKO_HDR_SIZE;
    for (uint32_t i = 0; i < st->nlisten; i++) {
        size_t n = strlen(st->listen[i].path);
        *p++ = st->listen[i].kind;
        put16(p, (uint16_t)n);
        memcpy(p + 2, st->listen[i].path, n);
        p += 2 + n;
    }
    for (uint32_t i = 0; i < st->nexports; i++) {
        size_t n = strlen(st->exports[i].name);
        *p++ = (uint8_t)n;
        memcpy(p, st->exports[i].name, n);
        put32(p + n, st->exports[i].open_flags);
        p += n + 4;
    }
    for (uint32_t i = 0; i < st->nconns; i++) {
        const struct gd_tko_conn *c = &st->conns[i];
        size_t n = strlen(c->peer);
        put64(p, c->id);
        put64(p + 8, c->size);
        put16(p + 16, c->eflags);
        p[18] = c->flags;
        put32(p + 19, c->export_idx);
        p[23] = (uint8_t)n;
        memcpy(p + 24, c->peer, n);
        p += 24 + n;
        put32(p, c->pending_len);
        if (c->pending_len)
            memcpy(p + 4, c->pending, c->pending_len);
        p += 4 + c->pending_len;
    }
    if (st->ndurs > 0) {
        memcpy(p, MAGIC_DURS, sizeof MAGIC_DURS);
        put32(p + 4, st->ndurs);
        p += sizeof MAGIC_DURS + 4;
    }
    for (uint32_t i = 0; i < st->ndurs; i++) {
        const struct gd_tko_durability *du = &st->durs[i];
        size_t n = strlen(du->name);
        *p++ = (uint8_t)n;
        memcpy(p, du->name, n);
        put32(p + n, du->d.mode);
        put32(p + n + 4, du->d.max_unsynced_ms);
        put64(p + n + 8, du->d.max_unsynced_bytes);
        p += n + 16;
    }
    *out = b;
    *outlen = GD_TKO_HDR_SIZE + body;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EPROTO;
}

int gd_tko_decode_header(const uint8_t hdr[GD_TKO_HDR_SIZE], uint32_t *body_len, uint32_t *nfds,
                         char *err, size_t errlen)
{
    if (memcmp(hdr, MAGIC_STATE, 8) != 0)
        return fail(err, errlen, "not a takeover state message (bad magic)");
    if (get32(hdr + 8) != GD_TKO_VERSION)
        return fail(err, errlen, "takeover protocol version %u, this build speaks %u",
                    get32(hdr + 8), GD_TKO_VERSION);
    uint32_t body = get32(hdr + 12), nl = get32(hdr + 20), nc = get32(hdr + 24),
             ne = get32(hdr + 28), nf = get32(hdr + 16);
    if (body > GD_TKO_MAX_BODY)
        return fail(err, errlen, "state body of %u bytes (at most %u)", body, GD_TKO_MAX_BODY);
    if (nl > GD_TKO_MAX_LISTEN || nc > GD_TKO_MAX_CONNS || ne > GD_TKO_MAX_EXPORTS)
        return fail(err, errlen, "state counts out of range: %u listeners, %u connections, %u "
                    "exports", nl, nc, ne);
    if (nf != 1 + nl + nc)
        return fail(err, errlen, "state announces %u descriptors for %u listeners and %u "
                    "connections", nf, nl, nc);
    *body_len = body;
    *nfds = nf;
    return 0;
}

/* A bounds-checked reader over the body. */
struct rd {
    const uint8_t *p, *end;
};

static bool take(struct rd *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

/* A string of n bytes without NULs into dst (cap bytes with its NUL). */
static bool take_str(struct rd *r, size_t n, char *dst, size_t cap)
{
    const uint8_t *s;
    if (n >= cap || !take(r, n, &s) || memchr(s, 0, n))
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

int gd_tko_decode_state(const uint8_t *buf, size_t len, struct gd_tko_state *st, char *err,
                        size_t errlen)
{
    memset(st, 0, sizeof *st);
    if (len < GD_TKO_HDR_SIZE)
        return fail(err, errlen, "state message of %zu bytes is shorter than its header", len);
    uint32_t body, nfds;
    int rc = gd_tko_decode_header(buf, &body, &nfds, err, errlen);
    if (rc < 0)
        return rc;
    if ((size_t)body != len - GD_TKO_HDR_SIZE)
        return fail(err, errlen, "state body is %zu bytes, its header says %u",
                    len - GD_TKO_HDR_SIZE, body);
    st->nlisten = get32(buf + 20);
    st->nconns = get32(buf + 24);
    st->nexports = get32(buf + 28);
    st->next_id = get64(buf + 32);
    /* every entry takes bytes: counts the body cannot hold are refused
     * before anything is allocated for them */
    if ((uint64_t)st->nexports * 6 + (uint64_t)st->nconns * 28 + st->nlisten * 3u > body)
        return fail(err, errlen, "state counts do not fit its %u-byte body", body);
    st->exports = calloc(st->nexports ? st->nexports : 1, sizeof *st->exports);
    st->conns = calloc(st->nconns ? st->nconns : 1, sizeof *st->conns);
    if (!st->exports || !st->conns)
        return -ENOMEM;
    struct rd r = { buf + GD_TKO_HDR_SIZE, buf + len };
    const uint8_t *p;
    bool ctl = false;
    for (uint32_t i = 0; i < st->nlisten; i++) {
        struct gd_tko_listener *l = &st->listen[i];
        if (!take(&r, 3, &p))
            return fail(err, errlen, "listener %u: truncated", i);
        l->kind = p[0];
        size_t n = (size_t)p[1] << 8 | p[2];
        if (l->kind > GD_TKO_LISTEN_CTL)
            return fail(err, errlen, "listener %u: unknown kind %u", i, l->kind);
        if (!take_str(&r, n, l->path, sizeof l->path))
            return fail(err, errlen, "listener %u: bad path (%zu bytes)", i, n);
        if ((l->kind == GD_TKO_LISTEN_TCP) != (n == 0) ||
            (l->kind == GD_TKO_LISTEN_UNIX && l->path[0] != '/') ||
            (l->kind == GD_TKO_LISTEN_CTL && l->path[0] != '@'))
            return fail(err, errlen, "listener %u: kind %u with path \"%.40s\"", i, l->kind,
                        l->path);
        if (l->kind == GD_TKO_LISTEN_CTL) {
            if (ctl)
                return fail(err, errlen, "two control listeners");
            ctl = true;
        }
    }
    for (uint32_t i = 0; i < st->nexports; i++) {
        struct gd_tko_export *e = &st->exports[i];
        if (!take(&r, 1, &p))
            return fail(err, errlen, "export %u: truncated", i);
        size_t n = p[0];
        if (!take_str(&r, n, e->name, sizeof e->name) || !glidefs_name_valid(e->name))
            return fail(err, errlen, "export %u: not a valid export name", i);
        if (!take(&r, 4, &p))
            return fail(err, errlen, "export %u: truncated", i);
        e->open_flags = get32(p);
        if (e->open_flags & ~(uint32_t)GLIDEFS_OPEN_READONLY)
            return fail(err, errlen, "export %s: unknown open flags 0x%x", e->name,
                        e->open_flags);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(st->exports[j].name, e->name) == 0)
                return fail(err, errlen, "export %s listed twice", e->name);
    }
    for (uint32_t i = 0; i < st->nconns; i++) {
        struct gd_tko_conn *c = &st->conns[i];
        if (!take(&r, 24, &p))
            return fail(err, errlen, "connection %u: truncated", i);
        c->id = get64(p);
        c->size = get64(p + 8);
        c->eflags = (uint16_t)((unsigned)p[16] << 8 | p[17]);
        c->flags = p[18];
        c->export_idx = get32(p + 19);
        size_t n = p[23];
        if (!take_str(&r, n, c->peer, sizeof c->peer))
            return fail(err, errlen, "connection %u: bad peer", i);
        if (c->id == 0 || c->id >= st->next_id)
            return fail(err, errlen, "connection id %llu not in 1..%llu",
                        (unsigned long long)c->id, (unsigned long long)st->next_id);
        for (uint32_t j = 0; j < i; j++)
            if (st->conns[j].id == c->id)
                return fail(err, errlen, "connection id %llu twice", (unsigned long long)c->id);
        if (c->flags & ~GD_TKO_CONN_FLAGS)
            return fail(err, errlen, "connection %llu: unknown flags 0x%x",
                        (unsigned long long)c->id, c->flags);
        if ((c->flags & GD_TKO_CONN_META_ALLOC) && !(c->flags & GD_TKO_CONN_STRUCTURED))
            return fail(err, errlen, "connection %llu: base:allocation without structured "
                        "replies", (unsigned long long)c->id);
        if (c->export_idx >= st->nexports)
            return fail(err, errlen, "connection %llu: export %u of %u",
                        (unsigned long long)c->id, c->export_idx, st->nexports);
        if (c->size == 0 || c->size % 512)
            return fail(err, errlen, "connection %llu: size %llu", (unsigned long long)c->id,
                        (unsigned long long)c->size);
        if (!(c->eflags & 1u)) /* NBD_FLAG_HAS_FLAGS is always set */
            return fail(err, errlen, "connection %llu: transmission flags 0x%x",
                        (unsigned long long)c->id, c->eflags);
        if (!take(&r, 4, &p))
            return fail(err, errlen, "connection %llu: truncated", (unsigned long long)c->id);
        c->pending_len = get32(p);
        if (c->pending_len > GD_TKO_MAX_PENDING || !take(&r, c->pending_len, &c->pending))
            return fail(err, errlen, "connection %llu: %u pending bytes",
                        (unsigned long long)c->id, c->pending_len);
    }
    if (r.p == r.end)
        return 0; /* no durability set through the API (or a stage-1 sender) */
    if (!take(&r, sizeof MAGIC_DURS + 4, &p) || memcmp(p, MAGIC_DURS, sizeof MAGIC_DURS) != 0)
        return fail(err, errlen, "%zu bytes after the last connection", (size_t)(r.end - r.p));
    st->ndurs = get32(p + sizeof MAGIC_DURS);
    if (st->ndurs == 0 || st->ndurs > GD_TKO_MAX_DURS ||
        (uint64_t)st->ndurs * (DUR_FIXED + 1) > (uint64_t)(r.end - r.p))
        return fail(err, errlen, "%u durability entries in %zu bytes", st->ndurs,
                    (size_t)(r.end - r.p));
    st->durs = calloc(st->ndurs, sizeof *st->durs);
    if (!st->durs)
        return -ENOMEM;
    for (uint32_t i = 0; i < st->ndurs; i++) {
        struct gd_tko_durability *du = &st->durs[i];
        if (!take(&r, 1, &p))
            return fail(err, errlen, "durability %u: truncated", i);
        size_t n = p[0];
        if (!take_str(&r, n, du->name, sizeof du->name) || !glidefs_name_valid(du->name))
            return fail(err, errlen, "durability %u: not a valid export name", i);
        if (!take(&r, 16, &p))
            return fail(err, errlen, "durability of %s: truncated", du->name);
        du->d.mode = get32(p);
        du->d.max_unsynced_ms = get32(p + 4);
        du->d.max_unsynced_bytes = get64(p + 8);
        if (du->d.mode != GLIDEFS_DURABILITY_LOCAL && du->d.mode != GLIDEFS_DURABILITY_STORE)
            return fail(err, errlen, "durability of %s: unknown mode %u", du->name, du->d.mode);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(st->durs[j].name, du->name) == 0)
                return fail(err, errlen, "durability of %s listed twice", du->name);
    }
    if (r.p != r.end)
        return fail(err, errlen, "%zu bytes after the last durability entry",
                    (size_t)(r.end - r.p));
    return 0;
}

void gd_tko_state_free(struct gd_tko_state *st)
{
    free(st->exports);
    free(st->conns);
    free(st->durs);
    st->exports = NULL;
    st->conns = NULL;
    st->durs = NULL;
}
