/*
 * nbd_proto.c — the NBD wire protocol as pure functions: request decoding and
 * validation, the errno -> NBD error mapping, reply encoders and the option
 * haggling state machine. No sockets, no volumes: the server feeds it bytes
 * and sends what it produces; the unit tests and the fuzz target do the same.
 */
#include "nbd_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nbd_buf_free(struct nbd_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void nbd_buf_append(struct nbd_buf *b, const void *p, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* ------------------------------------------------------------------------ */
/* Transmission                                                              */
/* ------------------------------------------------------------------------ */

int nbd_decode_request(const uint8_t hdr[NBD_REQUEST_SIZE], struct nbd_request *r)
{
    if (nbd_get32(hdr) != NBD_REQUEST_MAGIC)
        return -EPROTO;
    r->flags = nbd_get16(hdr + 4);
    r->type = nbd_get16(hdr + 6);
    r->cookie = nbd_get64(hdr + 8);
    r->offset = nbd_get64(hdr + 16);
    r->len = nbd_get32(hdr + 24);
    return 0;
}

uint16_t nbd_export_flags(bool read_only, bool structured)
{
    /* CAN_MULTI_CONN: every connection to a name shares one volume, and
     * glidefs_flush makes durable every write completed before it on any
     * thread, so a FLUSH (or FUA) on one connection covers writes acknowledged
     * on all of them. Read-only exports trivially qualify. */
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
    if (read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        /* Zeroing never moves more data than the equivalent write (whole
         * blocks become holes), so FAST_ZERO is honest; with NO_HOLE it is
         * as slow as a write and fails fast with ENOTSUP. */
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

static bool is_write_cmd(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

static uint16_t allowed_flags(uint16_t type, uint16_t eflags)
{
    uint16_t f = 0;
    if (eflags & NBD_FLAG_SEND_FUA)
        f |= NBD_CMD_FLAG_FUA; /* valid on every command once advertised */
    switch (type) {
    case NBD_CMD_READ:
        if (eflags & NBD_FLAG_SEND_DF)
            f |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE_ZEROES:
        f |= NBD_CMD_FLAG_NO_HOLE;
        if (eflags & NBD_FLAG_SEND_FAST_ZERO)
            f |= NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        f |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        break;
    }
    return f;
}

enum nbd_verdict nbd_validate_request(const struct nbd_request *r, const struct nbd_txn_params *p,
                                      uint32_t *err)
{
#define FAIL(e) do { *err = (e); return NBD_V_ERROR; } while (0)
    *err = 0;
    switch (r->type) {
    case NBD_CMD_READ: case NBD_CMD_WRITE: case NBD_CMD_FLUSH: case NBD_CMD_TRIM:
    case NBD_CMD_CACHE: case NBD_CMD_WRITE_ZEROES: case NBD_CMD_BLOCK_STATUS:
        break;
    case NBD_CMD_DISC:
        return NBD_V_DISC;
    default:
        FAIL(NBD_EINVAL); /* unknown command: no payload assumed */
    }

    /* A payload we will not buffer cannot be skipped safely in bounded
     * memory and time: the spec lets us treat it as a denial of service. */
    if (r->type == NBD_CMD_WRITE && r->len > NBD_MAX_PAYLOAD)
        return NBD_V_DROP;

    if (is_write_cmd(r->type) && (p->eflags & NBD_FLAG_READ_ONLY))
        FAIL(NBD_EPERM);
    if (r->type == NBD_CMD_TRIM && !(p->eflags & NBD_FLAG_SEND_TRIM))
        FAIL(NBD_EINVAL);
    if (r->type == NBD_CMD_WRITE_ZEROES && !(p->eflags & NBD_FLAG_SEND_WRITE_ZEROES))
        FAIL(NBD_EINVAL);
    if (r->flags & ~allowed_flags(r->type, p->eflags))
        FAIL(NBD_EINVAL);

    switch (r->type) {
    case NBD_CMD_FLUSH:
        if (r->offset != 0 || r->len != 0)
            FAIL(NBD_EINVAL);
        return NBD_V_OK;
    case NBD_CMD_BLOCK_STATUS:
        if (!p->structured || !p->meta_allocation)
            FAIL(NBD_EINVAL);
        /* A reply needs at least one non-empty extent within the request. */
        if (r->len == 0)
            FAIL(NBD_EINVAL);
        break;
    case NBD_CMD_READ:
        /* A simple reply cannot exceed the maximum payload; with structured
         * replies the spec allows rejecting large reads up front. */
        if (r->len > NBD_MAX_PAYLOAD)
            FAIL(p->structured ? NBD_EOVERFLOW : NBD_EINVAL);
        break;
    case NBD_CMD_WRITE_ZEROES:
        /* NO_HOLE means really writing zeroes: no faster than a write. */
        if ((r->flags & NBD_CMD_FLAG_FAST_ZERO) && (r->flags & NBD_CMD_FLAG_NO_HOLE))
            FAIL(NBD_ENOTSUP);
        break;
    default:
        break;
    }

    /* Range before alignment: anything reaching past the end is out of
     * range (writes: ENOSPC), however it is aligned. */
    if (r->offset > p->size || r->len > p->size - r->offset)
        FAIL(r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
                                                                          : NBD_EINVAL);
    if (r->offset % NBD_MIN_BLOCK || r->len % NBD_MIN_BLOCK)
        FAIL(NBD_EINVAL);
    return NBD_V_OK;
#undef FAIL
}

uint32_t nbd_errno_to_wire(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return 0;
    case EPERM: case EROFS: case EACCES:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL: case ERANGE:
        return NBD_EINVAL;
    case ENOSPC: case EDQUOT: case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

const char *nbd_cmd_name(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ: return "READ";
    case NBD_CMD_WRITE: return "WRITE";
    case NBD_CMD_DISC: return "DISC";
    case NBD_CMD_FLUSH: return "FLUSH";
    case NBD_CMD_TRIM: return "TRIM";
    case NBD_CMD_CACHE: return "CACHE";
    case NBD_CMD_WRITE_ZEROES: return "WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "BLOCK_STATUS";
    default: return "UNKNOWN";
    }
}

size_t nbd_encode_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_SIZE], uint64_t cookie, uint32_t err)
{
    nbd_put32(out, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(out + 4, err);
    nbd_put64(out + 8, cookie);
    return NBD_SIMPLE_REPLY_SIZE;
}

size_t nbd_encode_chunk_header(uint8_t out[NBD_STRUCTURED_REPLY_SIZE], uint64_t cookie,
                               uint16_t flags, uint16_t type, uint32_t payload_len)
{
    nbd_put32(out, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(out + 4, flags);
    nbd_put16(out + 6, type);
    nbd_put64(out + 8, cookie);
    nbd_put32(out + 16, payload_len);
    return NBD_STRUCTURED_REPLY_SIZE;
}

size_t nbd_encode_error_chunk(uint8_t *out, uint64_t cookie, uint32_t err, const char *msg)
{
    size_t mlen = msg ? strnlen(msg, NBD_MAX_ERRMSG) : 0;
    size_t n = nbd_encode_chunk_header(out, cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                                       (uint32_t)(6 + mlen));
    nbd_put32(out + n, err ? err : NBD_EIO); /* an error chunk's error is never 0 */
    nbd_put16(out + n + 4, (uint16_t)mlen);
    if (mlen)
        memcpy(out + n + 6, msg, mlen);
    return n + 6 + mlen;
}

bool nbd_extent_add(struct nbd_extent *ex, size_t *n, size_t max, uint64_t len, uint32_t flags)
{
    while (len > 0) {
        if (*n > 0 && ex[*n - 1].flags == flags && ex[*n - 1].len < UINT32_MAX - NBD_MIN_BLOCK) {
            /* Merge, keeping extent lengths multiples of the minimum block. */
            uint64_t room = ((uint64_t)UINT32_MAX - ex[*n - 1].len) & ~(uint64_t)(NBD_MIN_BLOCK - 1);
            uint64_t take = len < room ? len : room;
            ex[*n - 1].len += (uint32_t)take;
            len -= take;
            continue;
        }
        if (*n >= max)
            return false;
        uint64_t cap = (uint64_t)UINT32_MAX & ~(uint64_t)(NBD_MIN_BLOCK - 1);
        uint64_t take = len < cap ? len : cap;
        ex[*n].len = (uint32_t)take;
        ex[*n].flags = flags;
        (*n)++;
        len -= take;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Handshake                                                                 */
/* ------------------------------------------------------------------------ */

void nbd_encode_greeting(uint8_t out[NBD_GREETING_SIZE])
{
    nbd_put64(out, NBD_MAGIC_INIT);
    nbd_put64(out + 8, NBD_MAGIC_IHAVEOPT);
    nbd_put16(out + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

int nbd_check_client_flags(uint32_t cflags)
{
    /* Unknown bits, or bits we did not offer: the spec says drop. */
    return (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) ? -EPROTO : 0;
}

int nbd_decode_option_header(const uint8_t hdr[NBD_OPTION_HEADER_SIZE], uint32_t *opt,
                             uint32_t *len)
{
    if (nbd_get64(hdr) != NBD_MAGIC_IHAVEOPT)
        return -EPROTO;
    *opt = nbd_get32(hdr + 8);
    *len = nbd_get32(hdr + 12);
    return 0;
}

void nbd_hs_init(struct nbd_hs *hs, const struct nbd_hs_ops *ops, void *ctx, uint32_t cflags)
{
    memset(hs, 0, sizeof(*hs));
    hs->ops = ops;
    hs->ctx = ctx;
    hs->cflags = cflags;
}

void nbd_hs_free(struct nbd_hs *hs)
{
    free(hs->meta_export);
    hs->meta_export = NULL;
    if (hs->handle) {
        hs->ops->close(hs->ctx, hs->handle);
        hs->handle = NULL;
    }
}

static void opt_reply(struct nbd_buf *out, uint32_t opt, uint32_t type, const void *data,
                      uint32_t len)
{
    uint8_t h[20];
    nbd_put64(h, NBD_MAGIC_OPT_REPLY);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, type);
    nbd_put32(h + 16, len);
    nbd_buf_append(out, h, sizeof h);
    nbd_buf_append(out, data, len);
}

static void opt_error(struct nbd_buf *out, uint32_t opt, uint32_t type, const char *msg)
{
    opt_reply(out, opt, type, msg, (uint32_t)strlen(msg));
}

static const char *rep_err_text(uint32_t code)
{
    switch (code) {
    case NBD_REP_ERR_UNKNOWN: return "no such export, or export name not allowed";
    case NBD_REP_ERR_POLICY: return "refused by server policy";
    case NBD_REP_ERR_SHUTDOWN: return "server is shutting down";
    case NBD_REP_ERR_INVALID: return "malformed option";
    case NBD_REP_ERR_TOO_BIG: return "option too large";
    case NBD_REP_ERR_UNSUP: return "option not supported";
    case NBD_REP_ERR_TLS_REQD: return "TLS is required: negotiate NBD_OPT_STARTTLS first";
    default: return "export could not be opened";
    }
}

/* A cursor over option data. */
struct rd {
    const uint8_t *p;
    uint32_t left;
    bool bad;
};

static uint32_t rd32(struct rd *r)
{
    if (r->bad || r->left < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v = nbd_get32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint16_t rd16(struct rd *r)
{
    if (r->bad || r->left < 2) {
        r->bad = true;
        return 0;
    }
    uint16_t v = nbd_get16(r->p);
    r->p += 2;
    r->left -= 2;
    return v;
}

/* Copy a string of len bytes out as a C string, flagging embedded NULs.
 * Strings longer than NBD_MAX_STRING break the protocol (bad), except names
 * (too_long given): those are skipped and flagged, to be refused by name. */
static char *rdstr(struct rd *r, uint32_t len, bool *has_nul, bool *too_long)
{
    if (r->bad || len > r->left || (len > NBD_MAX_STRING && !too_long)) {
        r->bad = true;
        return NULL;
    }
    if (len > NBD_MAX_STRING) {
        *too_long = true;
        r->p += len;
        r->left -= len;
        len = 0;
    }
    char *s = malloc((size_t)len + 1);
    if (!s) {
        r->bad = true;
        return NULL;
    }
    memcpy(s, r->p, len);
    s[len] = '\0';
    if (has_nul)
        *has_nul = memchr(s, '\0', len) != NULL;
    r->p += len;
    r->left -= len;
    return s;
}

static void info_export(struct nbd_buf *out, uint32_t opt, const struct nbd_export_info *info,
                        bool structured)
{
    uint8_t d[12];
    nbd_put16(d, NBD_INFO_EXPORT);
    nbd_put64(d + 2, info->size);
    nbd_put16(d + 10, nbd_export_flags(info->read_only, structured));
    opt_reply(out, opt, NBD_REP_INFO, d, sizeof d);
}

static void info_string(struct nbd_buf *out, uint32_t opt, uint16_t type, const char *s)
{
    size_t n = strlen(s);
    uint8_t *d = malloc(2 + n);
    if (!d) {
        out->oom = true;
        return;
    }
    nbd_put16(d, type);
    memcpy(d + 2, s, n);
    opt_reply(out, opt, NBD_REP_INFO, d, (uint32_t)(2 + n));
    free(d);
}

static enum nbd_hs_result opt_info_go(struct nbd_hs *hs, uint32_t opt, const uint8_t *data,
                                      uint32_t len, struct nbd_buf *out)
{
    struct rd r = { data, len, false };
    uint32_t namelen = rd32(&r);
    bool nul = false, too_long = false;
    char *name = rdstr(&r, namelen, &nul, &too_long);
    uint16_t nreq = rd16(&r);
    bool want_name = false, want_desc = false, want_bs = false;
    for (uint16_t i = 0; i < nreq && !r.bad; i++) {
        switch (rd16(&r)) {
        case NBD_INFO_NAME: want_name = true; break;
        case NBD_INFO_DESCRIPTION: want_desc = true; break;
        case NBD_INFO_BLOCK_SIZE: want_bs = true; break;
        default: break; /* unknown requests are ignored */
        }
    }
    if (r.bad || r.left != 0) {
        free(name);
        opt_error(out, opt, NBD_REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO request");
        return NBD_HS_CONTINUE;
    }
    if (nul || too_long) {
        free(name);
        opt_error(out, opt, NBD_REP_ERR_UNKNOWN, nul ? "export name contains NUL"
                                                     : "export name too long");
        return NBD_HS_CONTINUE;
    }

    struct nbd_export_info info;
    memset(&info, 0, sizeof info);
    void *handle = NULL;
    /* INFO is a question: it must not create the export GO would create. */
    bool query = opt == NBD_OPT_INFO && hs->ops->query;
    uint32_t e = query ? hs->ops->query(hs->ctx, name, &info)
                       : hs->ops->open(hs->ctx, name, &info, &handle);
    if (e != 0) {
        free(name);
        info.error[sizeof info.error - 1] = '\0';
        opt_error(out, opt, e, info.error[0] ? info.error : rep_err_text(e));
        return NBD_HS_CONTINUE;
    }

    info_export(out, opt, &info, hs->structured);
    /* Always say what we enforce: min 512 is stricter than the default 1. */
    uint8_t bs[14];
    nbd_put16(bs, NBD_INFO_BLOCK_SIZE);
    nbd_put32(bs + 2, NBD_MIN_BLOCK);
    nbd_put32(bs + 6, NBD_PREF_BLOCK);
    nbd_put32(bs + 10, NBD_MAX_PAYLOAD);
    opt_reply(out, opt, NBD_REP_INFO, bs, sizeof bs);
    if (want_name)
        info_string(out, opt, NBD_INFO_NAME, info.canonical);
    if (want_desc)
        info_string(out, opt, NBD_INFO_DESCRIPTION, info.description);
    opt_reply(out, opt, NBD_REP_ACK, NULL, 0);

    if (opt == NBD_OPT_INFO) {
        if (!query)
            hs->ops->close(hs->ctx, handle);
        free(name);
        return NBD_HS_CONTINUE;
    }
    /* Contexts count only if they were set for the export we go to. */
    if (hs->meta_allocation && (!hs->meta_export || strcmp(hs->meta_export, name) != 0))
        hs->meta_allocation = false;
    free(name);
    hs->handle = handle;
    hs->info = info;
    hs->block_size_agreed = want_bs;
    return NBD_HS_GO;
}

static enum nbd_hs_result opt_export_name(struct nbd_hs *hs, const uint8_t *data, uint32_t len,
                                          struct nbd_buf *out)
{
    /* No error reply exists for this option: any refusal is a hard close. */
    if (len > NBD_MAX_STRING || memchr(data, '\0', len) || hs->ops->shutting_down(hs->ctx))
        return NBD_HS_DROP;
    char *name = malloc((size_t)len + 1);
    if (!name)
        return NBD_HS_DROP;
    memcpy(name, data, len);
    name[len] = '\0';
    struct nbd_export_info info;
    memset(&info, 0, sizeof info);
    void *handle = NULL;
    if (hs->ops->open(hs->ctx, name, &info, &handle) != 0) {
        free(name);
        return NBD_HS_DROP;
    }
    uint8_t d[10 + 124];
    memset(d, 0, sizeof d);
    nbd_put64(d, info.size);
    nbd_put16(d + 8, nbd_export_flags(info.read_only, hs->structured));
    nbd_buf_append(out, d, (hs->cflags & NBD_FLAG_C_NO_ZEROES) ? 10 : sizeof d);
    if (hs->meta_allocation && (!hs->meta_export || strcmp(hs->meta_export, name) != 0))
        hs->meta_allocation = false;
    free(name);
    hs->handle = handle;
    hs->info = info;
    hs->block_size_agreed = false;
    return NBD_HS_GO;
}

struct list_emit {
    struct nbd_buf *out;
    uint32_t opt;
};

static void list_one(void *arg, const char *name, const char *desc)
{
    struct list_emit *le = arg;
    size_t n = strlen(name), dn = desc ? strnlen(desc, NBD_MAX_STRING) : 0;
    if (n > NBD_MAX_STRING)
        return;
    /* NBD_REP_SERVER: name length, name, then a human-readable description. */
    uint8_t *d = malloc(4 + n + dn);
    if (!d) {
        le->out->oom = true;
        return;
    }
    nbd_put32(d, (uint32_t)n);
    memcpy(d + 4, name, n);
    if (dn)
        memcpy(d + 4 + n, desc, dn);
    opt_reply(le->out, le->opt, NBD_REP_SERVER, d, (uint32_t)(4 + n + dn));
    free(d);
}

static void meta_reply(struct nbd_buf *out, uint32_t opt, uint32_t id, const char *ctxname)
{
    size_t n = strlen(ctxname);
    uint8_t d[64];
    nbd_put32(d, id);
    memcpy(d + 4, ctxname, n);
    opt_reply(out, opt, NBD_REP_META_CONTEXT, d, (uint32_t)(4 + n));
}

static enum nbd_hs_result opt_meta_context(struct nbd_hs *hs, uint32_t opt, const uint8_t *data,
                                           uint32_t len, struct nbd_buf *out)
{
    bool set = opt == NBD_OPT_SET_META_CONTEXT;
    if (set) {
        /* SET replaces the selection even when it fails. */
        hs->meta_allocation = false;
        free(hs->meta_export);
        hs->meta_export = NULL;
        if (!hs->structured) {
            opt_error(out, opt, NBD_REP_ERR_INVALID,
                      "NBD_OPT_SET_META_CONTEXT needs structured replies first");
            return NBD_HS_CONTINUE;
        }
    }
    struct rd r = { data, len, false };
    uint32_t namelen = rd32(&r);
    bool nul = false, too_long = false;
    char *name = rdstr(&r, namelen, &nul, &too_long);
    uint32_t nq = rd32(&r);
    bool match = nq == 0 && !set; /* no query lists everything; selects nothing */
    for (uint32_t i = 0; i < nq && !r.bad; i++) {
        uint32_t qlen = rd32(&r);
        char *q = rdstr(&r, qlen, NULL, NULL);
        if (!q)
            break;
        if (strcmp(q, "base:allocation") == 0 || (!set && strcmp(q, "base:") == 0))
            match = true;
        /* Anything else (other namespaces, unknown leaves) is ignored. */
        free(q);
    }
    if (r.bad || r.left != 0) {
        free(name);
        opt_error(out, opt, NBD_REP_ERR_INVALID, "malformed meta context request");
        return NBD_HS_CONTINUE;
    }
    if (nul || too_long) {
        free(name);
        opt_error(out, opt, NBD_REP_ERR_UNKNOWN, nul ? "export name contains NUL"
                                                     : "export name too long");
        return NBD_HS_CONTINUE;
    }
    /* The name must be one GO would accept; checked without opening it. */
    uint32_t e = hs->ops->resolve(hs->ctx, name);
    if (e != 0) {
        free(name);
        opt_error(out, opt, e, rep_err_text(e));
        return NBD_HS_CONTINUE;
    }
    if (match) {
        meta_reply(out, opt, set ? NBD_META_ID_BASE_ALLOCATION : 0, "base:allocation");
        if (set) {
            hs->meta_allocation = true;
            hs->meta_export = name;
            name = NULL;
        }
    }
    free(name);
    opt_reply(out, opt, NBD_REP_ACK, NULL, 0);
    return NBD_HS_CONTINUE;
}

/* NBD_OPT_STARTTLS: ACK, and forget what was negotiated in plaintext (the
 * spec: nothing from before TLS carries over). */
static enum nbd_hs_result opt_starttls(struct nbd_hs *hs, uint32_t len, struct nbd_buf *out)
{
    uint32_t opt = NBD_OPT_STARTTLS;
    if (hs->tls_mode == NBD_TLS_OFF) {
        opt_error(out, opt, NBD_REP_ERR_UNSUP, "TLS is not configured on this server");
        return NBD_HS_CONTINUE;
    }
    if (len != 0) {
        opt_error(out, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
        return NBD_HS_CONTINUE;
    }
    if (hs->tls_active) {
        opt_error(out, opt, NBD_REP_ERR_INVALID, "TLS is already negotiated");
        return NBD_HS_CONTINUE;
    }
    hs->structured = false;
    hs->meta_allocation = false;
    free(hs->meta_export);
    hs->meta_export = NULL;
    opt_reply(out, opt, NBD_REP_ACK, NULL, 0);
    return NBD_HS_STARTTLS;
}

/* Under servers.nbd.tls: require, before TLS, options other than STARTTLS
 * and ABORT get NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which has no error
 * reply, a hard close). */
static bool tls_refused(struct nbd_hs *hs, uint32_t opt, struct nbd_buf *out,
                        enum nbd_hs_result *hr)
{
    if (hs->tls_mode != NBD_TLS_REQUIRE || hs->tls_active || opt == NBD_OPT_STARTTLS ||
        opt == NBD_OPT_ABORT)
        return false;
    if (opt == NBD_OPT_EXPORT_NAME) {
        *hr = NBD_HS_DROP;
        return true;
    }
    opt_error(out, opt, NBD_REP_ERR_TLS_REQD, rep_err_text(NBD_REP_ERR_TLS_REQD));
    *hr = NBD_HS_CONTINUE;
    return true;
}

enum nbd_hs_result nbd_hs_option(struct nbd_hs *hs, uint32_t opt, const uint8_t *data,
                                 uint32_t len, struct nbd_buf *out)
{
    if (++hs->options_seen > NBD_MAX_OPTIONS)
        return NBD_HS_DROP; /* endless haggling: treat as denial of service */

    enum nbd_hs_result hr;
    if (tls_refused(hs, opt, out, &hr))
        return hr;
    if (opt == NBD_OPT_EXPORT_NAME)
        return opt_export_name(hs, data, len, out);
    if (opt == NBD_OPT_ABORT) {
        /* Data on ABORT is ignored, as the spec asks. */
        opt_reply(out, opt, NBD_REP_ACK, NULL, 0);
        return NBD_HS_ABORT;
    }
    if (opt == NBD_OPT_STARTTLS)
        return opt_starttls(hs, len, out);
    if (hs->ops->shutting_down(hs->ctx)) {
        opt_error(out, opt, NBD_REP_ERR_SHUTDOWN, rep_err_text(NBD_REP_ERR_SHUTDOWN));
        return NBD_HS_CONTINUE;
    }

    switch (opt) {
    case NBD_OPT_LIST: {
        if (len != 0) {
            opt_error(out, opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
            return NBD_HS_CONTINUE;
        }
        struct list_emit le = { out, opt };
        hs->ops->list(hs->ctx, list_one, &le);
        opt_reply(out, opt, NBD_REP_ACK, NULL, 0);
        return NBD_HS_CONTINUE;
    }
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info_go(hs, opt, data, len, out);
    case NBD_OPT_STRUCTURED_REPLY:
        if (len != 0) {
            opt_error(out, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
            return NBD_HS_CONTINUE;
        }
        hs->structured = true;
        opt_reply(out, opt, NBD_REP_ACK, NULL, 0);
        return NBD_HS_CONTINUE;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return opt_meta_context(hs, opt, data, len, out);
    default:
        /* EXTENDED_HEADERS and anything unknown: 32-bit headers only. */
        opt_error(out, opt, NBD_REP_ERR_UNSUP, rep_err_text(NBD_REP_ERR_UNSUP));
        return NBD_HS_CONTINUE;
    }
}

enum nbd_hs_result nbd_hs_option_too_big(struct nbd_hs *hs, uint32_t opt, struct nbd_buf *out)
{
    if (++hs->options_seen > NBD_MAX_OPTIONS)
        return NBD_HS_DROP;
    enum nbd_hs_result hr;
    if (tls_refused(hs, opt, out, &hr))
        return hr;
    if (opt == NBD_OPT_EXPORT_NAME)
        return NBD_HS_DROP;
    if (opt == NBD_OPT_ABORT) {
        opt_reply(out, opt, NBD_REP_ACK, NULL, 0);
        return NBD_HS_ABORT;
    }
    switch (opt) {
    case NBD_OPT_LIST: case NBD_OPT_INFO: case NBD_OPT_GO: case NBD_OPT_STRUCTURED_REPLY:
    case NBD_OPT_LIST_META_CONTEXT: case NBD_OPT_SET_META_CONTEXT:
        if (opt == NBD_OPT_SET_META_CONTEXT) {
            hs->meta_allocation = false;
            free(hs->meta_export);
            hs->meta_export = NULL;
        }
        opt_error(out, opt, NBD_REP_ERR_TOO_BIG, rep_err_text(NBD_REP_ERR_TOO_BIG));
        return NBD_HS_CONTINUE;
    default:
        opt_error(out, opt, NBD_REP_ERR_UNSUP, rep_err_text(NBD_REP_ERR_UNSUP));
        return NBD_HS_CONTINUE;
    }
}
