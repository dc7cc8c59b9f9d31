/*
 * test_nbd_proto.c — cmocka tests of glidefsd's protocol layer (daemon/
 * nbd_proto.c): the request validator, the errno mapping, extent building,
 * option haggling replies, and a table of hostile client byte streams run
 * through the whole-session driver. No sockets and no volumes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "glidefs/glidefs.h"
#include "nbd_proto.h"

/* ------------------------------------------------------------------------ */
/* A fake export policy                                                      */
/* ------------------------------------------------------------------------ */

#define FAKE_SIZE (1024u * 1024)

struct fake {
    const char *default_export;
    int opens, closes, queries;
    bool shutting_down;
};

static uint32_t fake_resolve(void *ctx, const char *name)
{
    struct fake *f = ctx;
    if (!name[0])
        return f->default_export ? 0 : NBD_REP_ERR_UNKNOWN;
    return glidefs_name_valid(name) ? 0 : NBD_REP_ERR_UNKNOWN;
}

static uint32_t fake_open(void *ctx, const char *name, struct nbd_export_info *info, void **handle)
{
    struct fake *f = ctx;
    uint32_t e = fake_resolve(ctx, name);
    if (e)
        return e;
    if (!name[0])
        name = f->default_export;
    info->size = FAKE_SIZE;
    info->read_only = strncmp(name, "ro", 2) == 0;
    strcpy(info->canonical, name);
    strcpy(info->description, "fake");
    f->opens++;
    *handle = f;
    return 0;
}

/* NBD_OPT_INFO: describes without opening (nothing to close). */
static uint32_t fake_query(void *ctx, const char *name, struct nbd_export_info *info)
{
    struct fake *f = ctx;
    uint32_t e = fake_resolve(ctx, name);
    if (e)
        return e;
    if (!name[0])
        name = f->default_export;
    info->size = FAKE_SIZE;
    info->read_only = strncmp(name, "ro", 2) == 0;
    strcpy(info->canonical, name);
    strcpy(info->description, "fake");
    f->queries++;
    return 0;
}

static void fake_close(void *ctx, void *handle)
{
    struct fake *f = ctx;
    assert_ptr_equal(handle, f);
    f->closes++;
}

static void fake_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
                      void *arg)
{
    (void)ctx;
    emit(arg, "alpha", "first");
    emit(arg, "beta", NULL);
}

static bool fake_shutting_down(void *ctx)
{
    return ((struct fake *)ctx)->shutting_down;
}

static const struct nbd_hs_ops fake_ops = {
    .resolve = fake_resolve,
    .open = fake_open,
    .query = fake_query,
    .close = fake_close,
    .list = fake_list,
    .shutting_down = fake_shutting_down,
};

/* ------------------------------------------------------------------------ */
/* Byte-stream builder                                                       */
/* ------------------------------------------------------------------------ */

struct bb {
    uint8_t d[1 << 16];
    size_t n;
};

static void b_raw(struct bb *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->d);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void b_u16(struct bb *b, uint16_t v) { uint8_t x[2]; nbd_put16(x, v); b_raw(b, x, 2); }
static void b_u32(struct bb *b, uint32_t v) { uint8_t x[4]; nbd_put32(x, v); b_raw(b, x, 4); }
static void b_u64(struct bb *b, uint64_t v) { uint8_t x[8]; nbd_put64(x, v); b_raw(b, x, 8); }

static void b_opt(struct bb *b, uint32_t opt, const void *data, uint32_t len)
{
    b_u64(b, NBD_MAGIC_IHAVEOPT);
    b_u32(b, opt);
    b_u32(b, len);
    if (len)
        b_raw(b, data, len);
}

/* INFO/GO payload for name with the given info requests. */
static void b_go(struct bb *b, uint32_t opt, const char *name, int nreq, const uint16_t *reqs)
{
    struct bb d = { .n = 0 };
    b_u32(&d, (uint32_t)strlen(name));
    b_raw(&d, name, strlen(name));
    b_u16(&d, (uint16_t)nreq);
    for (int i = 0; i < nreq; i++)
        b_u16(&d, reqs[i]);
    b_opt(b, opt, d.d, (uint32_t)d.n);
}

static void b_meta(struct bb *b, uint32_t opt, const char *name, int nq, const char **q)
{
    struct bb d = { .n = 0 };
    b_u32(&d, (uint32_t)strlen(name));
    b_raw(&d, name, strlen(name));
    b_u32(&d, (uint32_t)nq);
    for (int i = 0; i < nq; i++) {
        b_u32(&d, (uint32_t)strlen(q[i]));
        b_raw(&d, q[i], strlen(q[i]));
    }
    b_opt(b, opt, d.d, (uint32_t)d.n);
}

static void b_req(struct bb *b, uint16_t flags, uint16_t type, uint64_t off, uint32_t len)
{
    b_u32(b, NBD_REQUEST_MAGIC);
    b_u16(b, flags);
    b_u16(b, type);
    b_u64(b, 0x1122334455667788ULL);
    b_u64(b, off);
    b_u32(b, len);
}

/* A handshake that reaches transmission on `name`. */
static void b_hello(struct bb *b, const char *name, bool structured, bool meta)
{
    b_u32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    if (structured)
        b_opt(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    if (meta) {
        const char *q[] = { "base:allocation" };
        b_meta(b, NBD_OPT_SET_META_CONTEXT, name, 1, q);
    }
    uint16_t r = NBD_INFO_BLOCK_SIZE;
    b_go(b, NBD_OPT_GO, name, 1, &r);
}

/* ------------------------------------------------------------------------ */
/* Validator                                                                 */
/* ------------------------------------------------------------------------ */

struct vcase {
    const char *what;
    bool ro, structured, meta;
    uint16_t type, flags;
    uint64_t off;
    uint32_t len;
    enum nbd_verdict v;
    uint32_t err;
};

#define SZ ((uint64_t)FAKE_SIZE)

static const struct vcase vcases[] = {
    { "read ok", 0, 0, 0, NBD_CMD_READ, 0, 0, 4096, NBD_V_OK, 0 },
    { "read last sector", 0, 0, 0, NBD_CMD_READ, 0, SZ - 512, 512, NBD_V_OK, 0 },
    { "read one sector past end", 0, 0, 0, NBD_CMD_READ, 0, SZ, 512, NBD_V_ERROR, NBD_EINVAL },
    { "read straddling end", 0, 0, 0, NBD_CMD_READ, 0, SZ - 512, 1024, NBD_V_ERROR, NBD_EINVAL },
    { "read zero length at end", 0, 0, 0, NBD_CMD_READ, 0, SZ, 0, NBD_V_OK, 0 },
    { "read zero length past end", 0, 0, 0, NBD_CMD_READ, 0, SZ + 512, 0, NBD_V_ERROR, NBD_EINVAL },
    { "read offset wraps", 0, 0, 0, NBD_CMD_READ, 0, UINT64_MAX - 511, 1024, NBD_V_ERROR, NBD_EINVAL },
    { "read unaligned offset", 0, 0, 0, NBD_CMD_READ, 0, 1, 512, NBD_V_ERROR, NBD_EINVAL },
    { "read unaligned length", 0, 0, 0, NBD_CMD_READ, 0, 0, 100, NBD_V_ERROR, NBD_EINVAL },
    { "read one byte past end", 0, 0, 0, NBD_CMD_READ, 0, SZ, 1, NBD_V_ERROR, NBD_EINVAL },
    { "read ending one byte past end", 0, 0, 0, NBD_CMD_READ, 0, SZ - 511, 512, NBD_V_ERROR, NBD_EINVAL },
    { "write one byte past end", 0, 0, 0, NBD_CMD_WRITE, 0, SZ, 1, NBD_V_ERROR, NBD_ENOSPC },
    { "write unaligned inside", 0, 0, 0, NBD_CMD_WRITE, 0, 512, 1, NBD_V_ERROR, NBD_EINVAL },
    { "read 32 MiB", 0, 0, 0, NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD, NBD_V_ERROR, NBD_EINVAL },
    { "read too big simple", 0, 0, 0, NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 512, NBD_V_ERROR, NBD_EINVAL },
    { "read too big structured", 0, 1, 0, NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 512, NBD_V_ERROR, NBD_EOVERFLOW },
    { "read DF structured", 0, 1, 0, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, NBD_V_OK, 0 },
    { "read DF simple", 0, 0, 0, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, NBD_V_ERROR, NBD_EINVAL },
    { "read FUA accepted", 0, 0, 0, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, NBD_V_OK, 0 },
    { "read NO_HOLE", 0, 0, 0, NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_V_ERROR, NBD_EINVAL },
    { "read unknown flag", 0, 0, 0, NBD_CMD_READ, 0x100, 0, 512, NBD_V_ERROR, NBD_EINVAL },
    { "write ok fua", 0, 0, 0, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 4096, NBD_V_OK, 0 },
    { "write past end", 0, 0, 0, NBD_CMD_WRITE, 0, SZ, 512, NBD_V_ERROR, NBD_ENOSPC },
    { "write one sector", 0, 0, 0, NBD_CMD_WRITE, 0, 0, 512, NBD_V_OK, 0 },
    { "write over max payload", 0, 0, 0, NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD + 1, NBD_V_DROP, 0 },
    { "write huge", 0, 0, 0, NBD_CMD_WRITE, 0, 0, UINT32_MAX, NBD_V_DROP, 0 },
    { "write read-only", 1, 0, 0, NBD_CMD_WRITE, 0, 0, 512, NBD_V_ERROR, NBD_EPERM },
    { "write zero length", 0, 0, 0, NBD_CMD_WRITE, 0, 0, 0, NBD_V_OK, 0 },
    { "trim ok", 0, 0, 0, NBD_CMD_TRIM, 0, 0, 65536, NBD_V_OK, 0 },
    { "trim past end", 0, 0, 0, NBD_CMD_TRIM, 0, SZ - 512, 1024, NBD_V_ERROR, NBD_EINVAL },
    { "trim read-only", 1, 0, 0, NBD_CMD_TRIM, 0, 0, 512, NBD_V_ERROR, NBD_EPERM },
    { "trim bigger than max payload", 0, 0, 0, NBD_CMD_TRIM, 0, 0, (uint32_t)SZ, NBD_V_OK, 0 },
    { "zero no_hole", 0, 0, 0, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_V_OK, 0 },
    { "zero fast", 0, 0, 0, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, NBD_V_OK, 0 },
    { "zero fast no_hole", 0, 0, 0, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_V_ERROR, NBD_ENOTSUP },
    { "zero past end", 0, 0, 0, NBD_CMD_WRITE_ZEROES, 0, SZ, 512, NBD_V_ERROR, NBD_ENOSPC },
    { "zero read-only", 1, 0, 0, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_V_ERROR, NBD_EPERM },
    { "zero REQ_ONE", 0, 0, 0, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_REQ_ONE, 0, 512, NBD_V_ERROR, NBD_EINVAL },
    { "flush ok", 0, 0, 0, NBD_CMD_FLUSH, 0, 0, 0, NBD_V_OK, 0 },
    { "flush ok on read-only", 1, 0, 0, NBD_CMD_FLUSH, 0, 0, 0, NBD_V_OK, 0 },
    { "flush with offset", 0, 0, 0, NBD_CMD_FLUSH, 0, 512, 0, NBD_V_ERROR, NBD_EINVAL },
    { "flush with length", 0, 0, 0, NBD_CMD_FLUSH, 0, 0, 512, NBD_V_ERROR, NBD_EINVAL },
    { "cache ok", 0, 0, 0, NBD_CMD_CACHE, 0, 0, 1 << 20, NBD_V_OK, 0 },
    { "cache read-only", 1, 0, 0, NBD_CMD_CACHE, 0, 0, 512, NBD_V_OK, 0 },
    { "cache past end", 0, 0, 0, NBD_CMD_CACHE, 0, SZ, 512, NBD_V_ERROR, NBD_EINVAL },
    { "block status no meta", 0, 1, 0, NBD_CMD_BLOCK_STATUS, 0, 0, 512, NBD_V_ERROR, NBD_EINVAL },
    { "block status ok", 0, 1, 1, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 512, NBD_V_OK, 0 },
    { "block status zero len", 0, 1, 1, NBD_CMD_BLOCK_STATUS, 0, 0, 0, NBD_V_ERROR, NBD_EINVAL },
    { "block status past end", 0, 1, 1, NBD_CMD_BLOCK_STATUS, 0, SZ - 512, 1024, NBD_V_ERROR, NBD_EINVAL },
    { "disc", 0, 0, 0, NBD_CMD_DISC, 0, 0, 0, NBD_V_DISC, 0 },
    { "resize (unsupported)", 0, 0, 0, 8, 0, 0, 0, NBD_V_ERROR, NBD_EINVAL },
    { "unknown command", 0, 0, 0, 0xffff, 0, 0, 512, NBD_V_ERROR, NBD_EINVAL },
};

static void test_validate(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vcases / sizeof vcases[0]; i++) {
        const struct vcase *c = &vcases[i];
        struct nbd_txn_params p = {
            .size = SZ,
            .eflags = nbd_export_flags(c->ro, c->structured),
            .structured = c->structured,
            .meta_allocation = c->meta,
        };
        struct nbd_request r = { .flags = c->flags, .type = c->type, .cookie = 7,
                                 .offset = c->off, .len = c->len };
        /* "read 32 MiB" is fine by size but out of range of a 1 MiB export. */
        uint32_t err = 12345;
        enum nbd_verdict v = nbd_validate_request(&r, &p, &err);
        if (v != c->v || (v == NBD_V_ERROR && err != c->err))
            fail_msg("%s: verdict %d err %u, want %d err %u", c->what, v, err, c->v, c->err);
    }
}

static void test_export_flags(void **state)
{
    (void)state;
    uint16_t rw = nbd_export_flags(false, true);
    uint16_t ro = nbd_export_flags(true, false);
    assert_true(rw & NBD_FLAG_HAS_FLAGS);
    assert_false(rw & NBD_FLAG_READ_ONLY);
    assert_true(rw & NBD_FLAG_SEND_TRIM);
    assert_true(rw & NBD_FLAG_SEND_WRITE_ZEROES);
    assert_true(rw & NBD_FLAG_SEND_DF);
    assert_true(rw & NBD_FLAG_CAN_MULTI_CONN);
    assert_true(ro & NBD_FLAG_READ_ONLY);
    assert_false(ro & NBD_FLAG_SEND_TRIM);
    assert_false(ro & NBD_FLAG_SEND_WRITE_ZEROES);
    assert_false(ro & NBD_FLAG_SEND_FAST_ZERO);
    assert_false(ro & NBD_FLAG_SEND_DF);
    assert_false(rw & NBD_FLAG_ROTATIONAL);
}

static void test_errno_map(void **state)
{
    (void)state;
    assert_int_equal(nbd_errno_to_wire(0), 0);
    assert_int_equal(nbd_errno_to_wire(-EROFS), NBD_EPERM);
    assert_int_equal(nbd_errno_to_wire(-EPERM), NBD_EPERM);
    assert_int_equal(nbd_errno_to_wire(-EIO), NBD_EIO);
    assert_int_equal(nbd_errno_to_wire(-EINVAL), NBD_EINVAL);
    assert_int_equal(nbd_errno_to_wire(-ENOSPC), NBD_ENOSPC);
    assert_int_equal(nbd_errno_to_wire(-EDQUOT), NBD_ENOSPC);
    assert_int_equal(nbd_errno_to_wire(-EFBIG), NBD_ENOSPC);
    assert_int_equal(nbd_errno_to_wire(-ENOMEM), NBD_ENOMEM);
    assert_int_equal(nbd_errno_to_wire(-EOVERFLOW), NBD_EOVERFLOW);
    assert_int_equal(nbd_errno_to_wire(-ENOTSUP), NBD_ENOTSUP);
    assert_int_equal(nbd_errno_to_wire(-ESHUTDOWN), NBD_ESHUTDOWN);
    assert_int_equal(nbd_errno_to_wire(-ETIMEDOUT), NBD_EIO);
    assert_int_equal(nbd_errno_to_wire(-EBADMSG), NBD_EIO);
    assert_int_equal(nbd_errno_to_wire(EROFS), NBD_EPERM); /* positive too */
}

static void test_extents(void **state)
{
    (void)state;
    struct nbd_extent ex[4];
    size_t n = 0;
    assert_true(nbd_extent_add(ex, &n, 4, 4096, 0));
    assert_true(nbd_extent_add(ex, &n, 4, 4096, 0)); /* merges */
    assert_int_equal(n, 1);
    assert_int_equal(ex[0].len, 8192);
    assert_true(nbd_extent_add(ex, &n, 4, 512, NBD_STATE_HOLE | NBD_STATE_ZERO));
    assert_int_equal(n, 2);
    /* A run longer than 32 bits splits into 512-aligned pieces. */
    n = 0;
    assert_true(nbd_extent_add(ex, &n, 4, (uint64_t)8 << 30, 3));
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ex[i].len % 512, 0);
    assert_int_equal((uint64_t)ex[0].len + ex[1].len + ex[2].len, (uint64_t)8 << 30);
    /* REQ_ONE: one slot; a different status does not fit. */
    n = 0;
    assert_true(nbd_extent_add(ex, &n, 1, 512, 0));
    assert_false(nbd_extent_add(ex, &n, 1, 512, 3));
    assert_int_equal(n, 1);
}

static void test_encoders(void **state)
{
    (void)state;
    uint8_t b[NBD_STRUCTURED_REPLY_SIZE + 6 + NBD_MAX_ERRMSG];
    assert_int_equal(nbd_encode_simple_reply(b, 0xabcdef, NBD_EPERM), 16);
    assert_int_equal(nbd_get32(b), NBD_SIMPLE_REPLY_MAGIC);
    assert_int_equal(nbd_get32(b + 4), NBD_EPERM);
    assert_int_equal(nbd_get64(b + 8), 0xabcdef);
    size_t n = nbd_encode_error_chunk(b, 9, NBD_EINVAL, "bad");
    assert_int_equal(n, 20 + 6 + 3);
    assert_int_equal(nbd_get32(b), NBD_STRUCTURED_REPLY_MAGIC);
    assert_int_equal(nbd_get16(b + 4), NBD_REPLY_FLAG_DONE);
    assert_int_equal(nbd_get16(b + 6), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(nbd_get32(b + 16), 9);
    assert_int_equal(nbd_get32(b + 20), NBD_EINVAL);
    assert_int_equal(nbd_get16(b + 24), 3);
    /* An error chunk never carries error 0. */
    nbd_encode_error_chunk(b, 9, 0, NULL);
    assert_int_equal(nbd_get32(b + 20), NBD_EIO);
    uint8_t g[NBD_GREETING_SIZE];
    nbd_encode_greeting(g);
    assert_true(nbd_get64(g) == NBD_MAGIC_INIT);
    assert_true(nbd_get64(g + 8) == NBD_MAGIC_IHAVEOPT);
    assert_int_equal(nbd_get16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

/* ------------------------------------------------------------------------ */
/* Option haggling                                                           */
/* ------------------------------------------------------------------------ */

/* Replies found in an output buffer. */
struct reps {
    int n;
    uint32_t type[32];
    uint32_t len[32];
    const uint8_t *data[32];
};

static void parse_reps(const struct nbd_buf *b, uint32_t opt, struct reps *r)
{
    memset(r, 0, sizeof *r);
    size_t off = 0;
    while (off < b->len) {
        assert_true(off + 20 <= b->len);
        assert_true(nbd_get64(b->data + off) == NBD_MAGIC_OPT_REPLY);
        assert_int_equal(nbd_get32(b->data + off + 8), opt);
        assert_true(r->n < 32);
        r->type[r->n] = nbd_get32(b->data + off + 12);
        r->len[r->n] = nbd_get32(b->data + off + 16);
        r->data[r->n] = b->data + off + 20;
        off += 20 + r->len[r->n];
        assert_true(off <= b->len);
        r->n++;
    }
}

static enum nbd_hs_result run_opt(struct nbd_hs *hs, uint32_t opt, const struct bb *payload,
                                  struct nbd_buf *out)
{
    /* payload holds a full option (header + data) from b_opt/b_go/b_meta. */
    uint32_t o, len;
    assert_int_equal(nbd_decode_option_header(payload->d, &o, &len), 0);
    assert_int_equal(o, opt);
    return nbd_hs_option(hs, opt, payload->d + 16, len, out);
}

static void test_hs_info_go(void **state)
{
    (void)state;
    struct fake f = { .default_export = "dflt" };
    struct nbd_hs hs;
    nbd_hs_init(&hs, &fake_ops, &f, NBD_FLAG_C_FIXED_NEWSTYLE);
    struct nbd_buf out = { 0 };
    struct reps r;

    /* INFO with name, description and block size requested. */
    struct bb b = { .n = 0 };
    uint16_t reqs[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE, 999 };
    b_go(&b, NBD_OPT_INFO, "", 4, reqs);
    assert_int_equal(run_opt(&hs, NBD_OPT_INFO, &b, &out), NBD_HS_CONTINUE);
    parse_reps(&out, NBD_OPT_INFO, &r);
    assert_int_equal(r.type[r.n - 1], NBD_REP_ACK);
    bool saw_export = false, saw_bs = false, saw_name = false, saw_desc = false;
    for (int i = 0; i < r.n - 1; i++) {
        assert_int_equal(r.type[i], NBD_REP_INFO);
        switch (nbd_get16(r.data[i])) {
        case NBD_INFO_EXPORT:
            saw_export = true;
            assert_int_equal(r.len[i], 12);
            assert_int_equal(nbd_get64(r.data[i] + 2), FAKE_SIZE);
            assert_int_equal(nbd_get16(r.data[i] + 10), nbd_export_flags(false, false));
            break;
        case NBD_INFO_BLOCK_SIZE:
            saw_bs = true;
            assert_int_equal(r.len[i], 14);
            assert_int_equal(nbd_get32(r.data[i] + 2), 512);
            assert_int_equal(nbd_get32(r.data[i] + 6), 4096);
            assert_int_equal(nbd_get32(r.data[i] + 10), 32 << 20);
            break;
        case NBD_INFO_NAME:
            saw_name = true;
            assert_int_equal(r.len[i], 2 + 4);
            assert_memory_equal(r.data[i] + 2, "dflt", 4);
            break;
        case NBD_INFO_DESCRIPTION:
            saw_desc = true;
            break;
        default:
            fail_msg("unexpected info type");
        }
    }
    assert_true(saw_export && saw_bs && saw_name && saw_desc);
    assert_int_equal(f.queries, 1);
    assert_int_equal(f.opens, 0); /* INFO opens (creates) nothing: issue 21 item 9 */
    assert_int_equal(f.closes, 0);
    nbd_buf_free(&out);

    /* Structured replies, then GO: DF is advertised. */
    b.n = 0;
    b_opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(run_opt(&hs, NBD_OPT_STRUCTURED_REPLY, &b, &out), NBD_HS_CONTINUE);
    parse_reps(&out, NBD_OPT_STRUCTURED_REPLY, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.type[0], NBD_REP_ACK);
    nbd_buf_free(&out);

    b.n = 0;
    b_go(&b, NBD_OPT_GO, "vm1", 0, NULL);
    assert_int_equal(run_opt(&hs, NBD_OPT_GO, &b, &out), NBD_HS_GO);
    parse_reps(&out, NBD_OPT_GO, &r);
    assert_int_equal(r.type[r.n - 1], NBD_REP_ACK);
    assert_int_equal(nbd_get16(r.data[0]), NBD_INFO_EXPORT);
    assert_true(nbd_get16(r.data[0] + 10) & NBD_FLAG_SEND_DF);
    assert_non_null(hs.handle);
    assert_false(hs.block_size_agreed);
    assert_string_equal(hs.info.canonical, "vm1");
    nbd_buf_free(&out);
    nbd_hs_free(&hs); /* releases the unclaimed handle */
    assert_int_equal(f.opens, 1);
    assert_int_equal(f.closes, 1);
}

static void test_hs_refusals(void **state)
{
    (void)state;
    struct fake f = { .default_export = NULL };
    struct nbd_hs hs;
    nbd_hs_init(&hs, &fake_ops, &f, NBD_FLAG_C_FIXED_NEWSTYLE);
    struct nbd_buf out = { 0 };
    struct reps r;
    struct bb b;
    static const char *const bad[] = { "", ".hidden", "a/b", "../x", "sp ace", "x\xff" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b.n = 0;
        b_go(&b, NBD_OPT_GO, bad[i], 0, NULL);
        assert_int_equal(run_opt(&hs, NBD_OPT_GO, &b, &out), NBD_HS_CONTINUE);
        parse_reps(&out, NBD_OPT_GO, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.type[0], NBD_REP_ERR_UNKNOWN);
        nbd_buf_free(&out);
    }
    assert_int_equal(f.opens, 0); /* refused before anything was opened */

    /* Unknown and unsupported options: UNSUP, and the session goes on. */
    uint32_t unsup[] = { NBD_OPT_STARTTLS, NBD_OPT_EXTENDED_HEADERS, 4, 12, 0xdeadbeef };
    for (size_t i = 0; i < sizeof unsup / sizeof unsup[0]; i++) {
        b.n = 0;
        b_opt(&b, unsup[i], "xyz", 3);
        assert_int_equal(run_opt(&hs, unsup[i], &b, &out), NBD_HS_CONTINUE);
        parse_reps(&out, unsup[i], &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.type[0], NBD_REP_ERR_UNSUP);
        nbd_buf_free(&out);
    }

    /* LIST with data is invalid; without, lists and ACKs. */
    b.n = 0;
    b_opt(&b, NBD_OPT_LIST, "x", 1);
    run_opt(&hs, NBD_OPT_LIST, &b, &out);
    parse_reps(&out, NBD_OPT_LIST, &r);
    assert_int_equal(r.type[0], NBD_REP_ERR_INVALID);
    nbd_buf_free(&out);
    b.n = 0;
    b_opt(&b, NBD_OPT_LIST, NULL, 0);
    run_opt(&hs, NBD_OPT_LIST, &b, &out);
    parse_reps(&out, NBD_OPT_LIST, &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.type[0], NBD_REP_SERVER);
    assert_int_equal(nbd_get32(r.data[0]), 5);
    assert_memory_equal(r.data[0] + 4, "alpha", 5);
    assert_memory_equal(r.data[0] + 9, "first", 5);
    assert_int_equal(r.len[1], 4 + 4);
    assert_int_equal(r.type[2], NBD_REP_ACK);
    nbd_buf_free(&out);

    /* SET_META_CONTEXT before structured replies: invalid. */
    const char *q[] = { "base:allocation" };
    b.n = 0;
    b_meta(&b, NBD_OPT_SET_META_CONTEXT, "vm", 1, q);
    run_opt(&hs, NBD_OPT_SET_META_CONTEXT, &b, &out);
    parse_reps(&out, NBD_OPT_SET_META_CONTEXT, &r);
    assert_int_equal(r.type[0], NBD_REP_ERR_INVALID);
    nbd_buf_free(&out);

    /* Shutting down: SHUTDOWN for options, ACK for ABORT. */
    f.shutting_down = true;
    b.n = 0;
    b_go(&b, NBD_OPT_GO, "vm", 0, NULL);
    run_opt(&hs, NBD_OPT_GO, &b, &out);
    parse_reps(&out, NBD_OPT_GO, &r);
    assert_int_equal(r.type[0], NBD_REP_ERR_SHUTDOWN);
    nbd_buf_free(&out);
    b.n = 0;
    b_opt(&b, NBD_OPT_ABORT, NULL, 0);
    assert_int_equal(run_opt(&hs, NBD_OPT_ABORT, &b, &out), NBD_HS_ABORT);
    parse_reps(&out, NBD_OPT_ABORT, &r);
    assert_int_equal(r.type[0], NBD_REP_ACK);
    nbd_buf_free(&out);
    nbd_hs_free(&hs);
}

static void test_hs_meta(void **state)
{
    (void)state;
    struct fake f = { 0 };
    struct nbd_hs hs;
    nbd_hs_init(&hs, &fake_ops, &f, NBD_FLAG_C_FIXED_NEWSTYLE);
    struct nbd_buf out = { 0 };
    struct reps r;
    struct bb b = { .n = 0 };
    b_opt(&b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    run_opt(&hs, NBD_OPT_STRUCTURED_REPLY, &b, &out);
    nbd_buf_free(&out);

    /* LIST with no query, with "base:" and with an unknown namespace. */
    struct { int nq; const char *q[2]; int contexts; } lc[] = {
        { 0, { NULL }, 1 },
        { 1, { "base:" }, 1 },
        { 1, { "qemu:dirty-bitmap:x" }, 0 },
        { 2, { "base:allocation", "base:" }, 1 },
        { 1, { "base:nope" }, 0 },
    };
    for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++) {
        b.n = 0;
        b_meta(&b, NBD_OPT_LIST_META_CONTEXT, "vm", lc[i].nq, lc[i].q);
        run_opt(&hs, NBD_OPT_LIST_META_CONTEXT, &b, &out);
        parse_reps(&out, NBD_OPT_LIST_META_CONTEXT, &r);
        assert_int_equal(r.n, lc[i].contexts + 1);
        assert_int_equal(r.type[r.n - 1], NBD_REP_ACK);
        if (lc[i].contexts) {
            assert_int_equal(r.type[0], NBD_REP_META_CONTEXT);
            assert_int_equal(r.len[0], 4 + 15);
            assert_memory_equal(r.data[0] + 4, "base:allocation", 15);
        }
        nbd_buf_free(&out);
    }
    assert_false(hs.meta_allocation); /* LIST selects nothing */

    /* SET with "base:" alone selects nothing; with the full name, id 1. */
    const char *q1[] = { "base:" };
    b.n = 0;
    b_meta(&b, NBD_OPT_SET_META_CONTEXT, "vm", 1, q1);
    run_opt(&hs, NBD_OPT_SET_META_CONTEXT, &b, &out);
    parse_reps(&out, NBD_OPT_SET_META_CONTEXT, &r);
    assert_int_equal(r.n, 1);
    assert_false(hs.meta_allocation);
    nbd_buf_free(&out);
    const char *q2[] = { "base:allocation" };
    b.n = 0;
    b_meta(&b, NBD_OPT_SET_META_CONTEXT, "vm", 1, q2);
    run_opt(&hs, NBD_OPT_SET_META_CONTEXT, &b, &out);
    parse_reps(&out, NBD_OPT_SET_META_CONTEXT, &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.type[0], NBD_REP_META_CONTEXT);
    assert_int_equal(nbd_get32(r.data[0]), NBD_META_ID_BASE_ALLOCATION);
    assert_true(hs.meta_allocation);
    nbd_buf_free(&out);

    /* Bad export name in SET: refused, and the selection is gone. */
    b.n = 0;
    b_meta(&b, NBD_OPT_SET_META_CONTEXT, "../x", 1, q2);
    run_opt(&hs, NBD_OPT_SET_META_CONTEXT, &b, &out);
    parse_reps(&out, NBD_OPT_SET_META_CONTEXT, &r);
    assert_int_equal(r.type[0], NBD_REP_ERR_UNKNOWN);
    assert_false(hs.meta_allocation);
    nbd_buf_free(&out);

    /* Selected for "vm", GO to "other": not active there. */
    b.n = 0;
    b_meta(&b, NBD_OPT_SET_META_CONTEXT, "vm", 1, q2);
    run_opt(&hs, NBD_OPT_SET_META_CONTEXT, &b, &out);
    nbd_buf_free(&out);
    b.n = 0;
    b_go(&b, NBD_OPT_GO, "other", 0, NULL);
    assert_int_equal(run_opt(&hs, NBD_OPT_GO, &b, &out), NBD_HS_GO);
    assert_false(hs.meta_allocation);
    nbd_buf_free(&out);
    nbd_hs_free(&hs);
    assert_int_equal(f.opens, f.closes);
}

static void test_hs_export_name(void **state)
{
    (void)state;
    struct fake f = { 0 };
    struct nbd_hs hs;
    nbd_hs_init(&hs, &fake_ops, &f, NBD_FLAG_C_FIXED_NEWSTYLE);
    struct nbd_buf out = { 0 };
    assert_int_equal(nbd_hs_option(&hs, NBD_OPT_EXPORT_NAME, (const uint8_t *)"vm", 2, &out),
                     NBD_HS_GO);
    assert_int_equal(out.len, 8 + 2 + 124); /* zeroes: client did not ask NO_ZEROES */
    assert_int_equal(nbd_get64(out.data), FAKE_SIZE);
    nbd_buf_free(&out);
    nbd_hs_free(&hs);

    nbd_hs_init(&hs, &fake_ops, &f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    assert_int_equal(nbd_hs_option(&hs, NBD_OPT_EXPORT_NAME, (const uint8_t *)"ro-x", 4, &out),
                     NBD_HS_GO);
    assert_int_equal(out.len, 10);
    assert_true(nbd_get16(out.data + 8) & NBD_FLAG_READ_ONLY);
    nbd_buf_free(&out);
    nbd_hs_free(&hs);

    /* No error reply exists for EXPORT_NAME: a bad name is a hard close. */
    nbd_hs_init(&hs, &fake_ops, &f, 0);
    assert_int_equal(nbd_hs_option(&hs, NBD_OPT_EXPORT_NAME, (const uint8_t *)"a/b", 3, &out),
                     NBD_HS_DROP);
    assert_int_equal(out.len, 0);
    nbd_hs_free(&hs);
    assert_int_equal(nbd_check_client_flags(3), 0);
    assert_int_equal(nbd_check_client_flags(4), -EPROTO);
}

/* ------------------------------------------------------------------------ */
/* Hostile byte streams                                                      */
/* ------------------------------------------------------------------------ */

struct hostile {
    const char *name;
    void (*build)(struct bb *b);
    enum nbd_stream_end end;
    bool transmission;
    uint32_t last_error; /* when non-zero: the last refused request's error */
    uint32_t last_rep;   /* when non-zero: the last option reply type */
};

static void h_empty(struct bb *b) { (void)b; }
static void h_short_flags(struct bb *b) { b_raw(b, "\0\0\1", 3); }
static void h_bad_flags(struct bb *b) { b_u32(b, 0xffffffff); }
static void h_bad_opt_magic(struct bb *b)
{
    b_u32(b, 1);
    b_u64(b, 0x4141414141414141ULL);
    b_u32(b, NBD_OPT_LIST);
    b_u32(b, 0);
}
static void h_short_opt_header(struct bb *b) { b_u32(b, 1); b_u64(b, NBD_MAGIC_IHAVEOPT); b_u32(b, 3); }
static void h_short_opt_data(struct bb *b)
{
    b_u32(b, 1);
    b_u64(b, NBD_MAGIC_IHAVEOPT);
    b_u32(b, NBD_OPT_GO);
    b_u32(b, 100);
    b_raw(b, "abc", 3);
}
static void h_huge_opt_len(struct bb *b)
{
    b_u32(b, 1);
    b_u64(b, NBD_MAGIC_IHAVEOPT);
    b_u32(b, NBD_OPT_INFO);
    b_u32(b, 0xffffffff);
}
static void h_export_name_bad(struct bb *b) { b_u32(b, 1); b_opt(b, NBD_OPT_EXPORT_NAME, "../../etc", 9); }
static void h_export_name_nul(struct bb *b) { b_u32(b, 1); b_opt(b, NBD_OPT_EXPORT_NAME, "vm\0x", 4); }
static void h_export_name_long(struct bb *b)
{
    static char name[5000];
    memset(name, 'a', sizeof name);
    b_u32(b, 1);
    b_opt(b, NBD_OPT_EXPORT_NAME, name, sizeof name);
}
static void h_go_namelen_overflow(struct bb *b)
{
    b_u32(b, 1);
    uint8_t d[10];
    nbd_put32(d, 0xffffffff);
    memcpy(d + 4, "vmvm", 4);
    nbd_put16(d + 8, 0);
    b_opt(b, NBD_OPT_GO, d, sizeof d);
}
static void h_go_nreq_mismatch(struct bb *b)
{
    b_u32(b, 1);
    uint8_t d[4 + 2 + 2 + 2];
    nbd_put32(d, 2);
    memcpy(d + 4, "vm", 2);
    nbd_put16(d + 6, 5); /* claims 5 requests, carries 1 */
    nbd_put16(d + 8, NBD_INFO_NAME);
    b_opt(b, NBD_OPT_GO, d, sizeof d);
}
static void h_go_trailing(struct bb *b)
{
    b_u32(b, 1);
    uint8_t d[4 + 2 + 2 + 3];
    nbd_put32(d, 2);
    memcpy(d + 4, "vm", 2);
    nbd_put16(d + 6, 0);
    memcpy(d + 8, "xyz", 3);
    b_opt(b, NBD_OPT_GO, d, sizeof d);
}
static void h_go_bad_name(struct bb *b) { b_u32(b, 1); b_go(b, NBD_OPT_GO, "bad/name", 0, NULL); }
static void h_go_long_name(struct bb *b)
{
    static char name[5001];
    memset(name, 'a', 5000);
    b_u32(b, 1);
    b_go(b, NBD_OPT_GO, name, 1, (const uint16_t[]){ NBD_INFO_NAME });
}
static void h_go_empty_no_default(struct bb *b) { b_u32(b, 1); b_go(b, NBD_OPT_GO, "", 0, NULL); }
static void h_info_nul(struct bb *b)
{
    b_u32(b, 1);
    uint8_t d[4 + 3 + 2];
    nbd_put32(d, 3);
    memcpy(d + 4, "v\0m", 3);
    nbd_put16(d + 7, 0);
    b_opt(b, NBD_OPT_INFO, d, sizeof d);
}
static void h_meta_query_overflow(struct bb *b)
{
    b_u32(b, 1);
    b_opt(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    uint8_t d[4 + 2 + 4 + 4 + 4];
    nbd_put32(d, 2);
    memcpy(d + 4, "vm", 2);
    nbd_put32(d + 6, 1);
    nbd_put32(d + 10, 0x7fffffff);
    memcpy(d + 14, "base", 4);
    b_opt(b, NBD_OPT_SET_META_CONTEXT, d, sizeof d);
}
static void h_meta_many_queries(struct bb *b)
{
    b_u32(b, 1);
    b_opt(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    uint8_t d[4 + 2 + 4];
    nbd_put32(d, 2);
    memcpy(d + 4, "vm", 2);
    nbd_put32(d + 6, 0xffffffff); /* count without queries */
    b_opt(b, NBD_OPT_LIST_META_CONTEXT, d, sizeof d);
}
static void h_list_with_data(struct bb *b) { b_u32(b, 1); b_opt(b, NBD_OPT_LIST, "zz", 2); }
static void h_unknown_opts(struct bb *b)
{
    b_u32(b, 1);
    b_opt(b, NBD_OPT_STARTTLS, NULL, 0);
    b_opt(b, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    b_opt(b, 0x12345678, "junk", 4);
}
static void h_option_flood(struct bb *b)
{
    b_u32(b, 1);
    for (int i = 0; i < 300; i++)
        b_opt(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
}
static void h_abort(struct bb *b) { b_u32(b, 1); b_opt(b, NBD_OPT_ABORT, "ignored", 7); }
static void h_req_bad_magic(struct bb *b)
{
    b_hello(b, "vm", false, false);
    b_u32(b, 0x25609514);
    b_raw(b, "0123456789012345678901234", 24);
}
static void h_req_short_header(struct bb *b) { b_hello(b, "vm", false, false); b_raw(b, "\x25\x60\x95\x13\0\0", 6); }
static void h_write_huge(struct bb *b) { b_hello(b, "vm", false, false); b_req(b, 0, NBD_CMD_WRITE, 0, 0xffffffff); }
static void h_write_short_payload(struct bb *b)
{
    b_hello(b, "vm", false, false);
    b_req(b, 0, NBD_CMD_WRITE, 0, 4096);
    b_raw(b, "abcd", 4);
}
static void h_read_past_end(struct bb *b) { b_hello(b, "vm", false, false); b_req(b, 0, NBD_CMD_READ, FAKE_SIZE, 512); }
static void h_write_past_end(struct bb *b)
{
    static uint8_t payload[512];
    b_hello(b, "vm", false, false);
    b_req(b, 0, NBD_CMD_WRITE, FAKE_SIZE, 512);
    b_raw(b, payload, sizeof payload);
    b_req(b, 0, NBD_CMD_FLUSH, 0, 0); /* the payload was consumed: still in sync */
}
static void h_offset_wrap(struct bb *b) { b_hello(b, "vm", false, false); b_req(b, 0, NBD_CMD_TRIM, 0xfffffffffffffe00ULL, 1024); }
static void h_unknown_cmd(struct bb *b)
{
    b_hello(b, "vm", false, false);
    b_req(b, 0, 0x4242, 0, 0);
    b_req(b, 0, NBD_CMD_READ, 0, 512); /* the session goes on */
    b_req(b, 0x8000, NBD_CMD_READ, 0, 512);
}
static void h_block_status_no_meta(struct bb *b) { b_hello(b, "vm", true, false); b_req(b, 0, NBD_CMD_BLOCK_STATUS, 0, 512); }
static void h_read_too_big(struct bb *b) { b_hello(b, "vm", true, false); b_req(b, 0, NBD_CMD_READ, 0, 64u << 20); }
static void h_ro_write(struct bb *b)
{
    static uint8_t payload[1024];
    b_hello(b, "ro-vm", false, false);
    b_req(b, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 0, 1024);
    b_raw(b, payload, sizeof payload);
}
static void h_ro_trim(struct bb *b) { b_hello(b, "ro-vm", true, true); b_req(b, 0, NBD_CMD_TRIM, 0, 512); }
static void h_disc_then_junk(struct bb *b)
{
    b_hello(b, "vm", true, true);
    b_req(b, 0, NBD_CMD_BLOCK_STATUS, 0, 512);
    b_req(b, 0, NBD_CMD_DISC, 0, 0);
    b_raw(b, "garbage after disc", 18);
}
static void h_export_name_then_requests(struct bb *b)
{
    b_u32(b, 0); /* old client: no fixed newstyle */
    b_opt(b, NBD_OPT_EXPORT_NAME, "vm", 2);
    b_req(b, 0, NBD_CMD_READ, 0, 512);
    b_req(b, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, 0, 0);
}

static const struct hostile hostile[] = {
    { "empty", h_empty, NBD_END_EOF, false, 0, 0 },
    { "short client flags", h_short_flags, NBD_END_DROP, false, 0, 0 },
    { "unknown client flags", h_bad_flags, NBD_END_DROP, false, 0, 0 },
    { "bad option magic", h_bad_opt_magic, NBD_END_DROP, false, 0, 0 },
    { "short option header", h_short_opt_header, NBD_END_DROP, false, 0, 0 },
    { "short option data", h_short_opt_data, NBD_END_DROP, false, 0, 0 },
    { "4 GiB option length", h_huge_opt_len, NBD_END_DROP, false, 0, 0 },
    { "EXPORT_NAME bad name", h_export_name_bad, NBD_END_DROP, false, 0, 0 },
    { "EXPORT_NAME with NUL", h_export_name_nul, NBD_END_DROP, false, 0, 0 },
    { "EXPORT_NAME 5000 bytes", h_export_name_long, NBD_END_DROP, false, 0, 0 },
    { "GO name length overflow", h_go_namelen_overflow, NBD_END_EOF, false, 0, NBD_REP_ERR_INVALID },
    { "GO request count mismatch", h_go_nreq_mismatch, NBD_END_EOF, false, 0, NBD_REP_ERR_INVALID },
    { "GO trailing bytes", h_go_trailing, NBD_END_EOF, false, 0, NBD_REP_ERR_INVALID },
    { "GO bad name", h_go_bad_name, NBD_END_EOF, false, 0, NBD_REP_ERR_UNKNOWN },
    { "GO 5000-byte name", h_go_long_name, NBD_END_EOF, false, 0, NBD_REP_ERR_UNKNOWN },
    { "GO empty name, no default", h_go_empty_no_default, NBD_END_EOF, false, 0, NBD_REP_ERR_UNKNOWN },
    { "INFO name with NUL", h_info_nul, NBD_END_EOF, false, 0, NBD_REP_ERR_UNKNOWN },
    { "SET_META query length overflow", h_meta_query_overflow, NBD_END_EOF, false, 0, NBD_REP_ERR_INVALID },
    { "LIST_META 2^32 queries", h_meta_many_queries, NBD_END_EOF, false, 0, NBD_REP_ERR_INVALID },
    { "LIST with data", h_list_with_data, NBD_END_EOF, false, 0, NBD_REP_ERR_INVALID },
    { "unknown options", h_unknown_opts, NBD_END_EOF, false, 0, NBD_REP_ERR_UNSUP },
    { "option flood", h_option_flood, NBD_END_DROP, false, 0, 0 },
    { "ABORT with data", h_abort, NBD_END_ABORT, false, 0, NBD_REP_ACK },
    { "request bad magic", h_req_bad_magic, NBD_END_DROP, true, 0, 0 },
    { "request short header", h_req_short_header, NBD_END_DROP, true, 0, 0 },
    { "WRITE 4 GiB", h_write_huge, NBD_END_DROP, true, 0, 0 },
    { "WRITE short payload", h_write_short_payload, NBD_END_DROP, true, 0, 0 },
    { "READ past end", h_read_past_end, NBD_END_EOF, true, NBD_EINVAL, 0 },
    { "WRITE past end, payload skipped", h_write_past_end, NBD_END_EOF, true, NBD_ENOSPC, 0 },
    { "TRIM offset wraps", h_offset_wrap, NBD_END_EOF, true, NBD_EINVAL, 0 },
    { "unknown command and flag", h_unknown_cmd, NBD_END_EOF, true, NBD_EINVAL, 0 },
    { "BLOCK_STATUS without context", h_block_status_no_meta, NBD_END_EOF, true, NBD_EINVAL, 0 },
    { "READ 64 MiB structured", h_read_too_big, NBD_END_EOF, true, NBD_EOVERFLOW, 0 },
    { "WRITE to read-only", h_ro_write, NBD_END_EOF, true, NBD_EPERM, 0 },
    { "TRIM to read-only", h_ro_trim, NBD_END_EOF, true, NBD_EPERM, 0 },
    { "DISC then garbage", h_disc_then_junk, NBD_END_DISC, true, 0, 0 },
    { "EXPORT_NAME old client", h_export_name_then_requests, NBD_END_EOF, true, 0, 0 },
};

static void test_hostile_streams(void **state)
{
    (void)state;
    static struct bb b;
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        const struct hostile *h = &hostile[i];
        struct fake f = { 0 };
        b.n = 0;
        h->build(&b);
        struct nbd_stream_result res;
        nbd_stream_run(b.d, b.n, &fake_ops, &f, &res);
        if (res.end != h->end || res.transmission != h->transmission)
            fail_msg("%s: end %d transmission %d, want %d %d", h->name, res.end,
                     res.transmission, h->end, h->transmission);
        if (h->last_error && res.last_error != h->last_error)
            fail_msg("%s: last error %u, want %u", h->name, res.last_error, h->last_error);
        if (h->last_rep && res.last_rep != h->last_rep)
            fail_msg("%s: last reply 0x%x, want 0x%x", h->name, res.last_rep, h->last_rep);
        if (f.opens != f.closes)
            fail_msg("%s: %d opens, %d closes", h->name, f.opens, f.closes);
    }
}

/* Every prefix of a valid session ends cleanly or is dropped: never a crash,
 * never a leaked export. */
static void test_truncations(void **state)
{
    (void)state;
    static struct bb b;
    b.n = 0;
    b_hello(&b, "vm", true, true);
    static uint8_t payload[4096];
    b_req(&b, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 4096, sizeof payload);
    b_raw(&b, payload, sizeof payload);
    b_req(&b, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 0, 8192);
    b_req(&b, 0, NBD_CMD_DISC, 0, 0);
    for (size_t n = 0; n <= b.n; n++) {
        struct fake f = { 0 };
        struct nbd_stream_result res;
        nbd_stream_run(b.d, n, &fake_ops, &f, &res);
        assert_int_equal(f.opens, f.closes);
        if (n == b.n) {
            assert_int_equal(res.end, NBD_END_DISC);
            assert_int_equal(res.ok, 2);
            assert_int_equal(res.errors, 0);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_export_flags),
        cmocka_unit_test(test_errno_map),
        cmocka_unit_test(test_extents),
        cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_hs_info_go),
        cmocka_unit_test(test_hs_refusals),
        cmocka_unit_test(test_hs_meta),
        cmocka_unit_test(test_hs_export_name),
        cmocka_unit_test(test_hostile_streams),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
