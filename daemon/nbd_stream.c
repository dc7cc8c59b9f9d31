/*
 * nbd_stream.c — runs a whole client byte stream through the protocol layer
 * the way the server's reader does (flags, options, then requests and their
 * payloads), without sockets. The unit tests' hostile-stream table and the
 * fuzz target use it; the server itself does the same steps over a socket.
 */
#include "nbd_proto.h"

#include <string.h>

struct cursor {
    const uint8_t *p;
    size_t left;
};

/* 1 ok, 0 clean end (nothing left), -1 short. */
static int take(struct cursor *c, size_t n, const uint8_t **out)
{
    if (c->left == 0 && n > 0)
        return 0;
    if (c->left < n)
        return -1;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return 1;
}

static uint32_t last_reply_type(const struct nbd_buf *b)
{
    /* Walk the option replies; report the last one's type. */
    size_t off = 0;
    uint32_t type = 0;
    while (off + 20 <= b->len && nbd_get64(b->data + off) == NBD_MAGIC_OPT_REPLY) {
        type = nbd_get32(b->data + off + 12);
        off += 20 + nbd_get32(b->data + off + 16);
    }
    return type;
}

void nbd_stream_run(const uint8_t *data, size_t len, const struct nbd_hs_ops *ops, void *ctx,
                    struct nbd_stream_result *res)
{
    memset(res, 0, sizeof *res);
    struct cursor c = { data, len };
    const uint8_t *p;
    int t = take(&c, 4, &p);
    if (t <= 0) {
        res->end = t == 0 ? NBD_END_EOF : NBD_END_DROP;
        return;
    }
    if (nbd_check_client_flags(nbd_get32(p)) < 0) {
        res->end = NBD_END_DROP;
        return;
    }
    struct nbd_hs hs;
    nbd_hs_init(&hs, ops, ctx, nbd_get32(p));
    for (;;) {
        t = take(&c, NBD_OPTION_HEADER_SIZE, &p);
        if (t <= 0) {
            res->end = t == 0 ? NBD_END_EOF : NBD_END_DROP;
            nbd_hs_free(&hs);
            return;
        }
        uint32_t opt, olen;
        if (nbd_decode_option_header(p, &opt, &olen) < 0) {
            res->end = NBD_END_DROP;
            nbd_hs_free(&hs);
            return;
        }
        struct nbd_buf out = { 0 };
        enum nbd_hs_result hr;
        const uint8_t *od = NULL;
        if (olen > 0 && (c.left < olen)) {
            res->end = NBD_END_DROP; /* short option data */
            nbd_hs_free(&hs);
            return;
        }
        if (olen > NBD_MAX_OPTION_LEN) {
            c.p += olen;
            c.left -= olen;
            hr = nbd_hs_option_too_big(&hs, opt, &out);
        } else {
            if (olen)
                take(&c, olen, &od);
            hr = nbd_hs_option(&hs, opt, od ? od : (const uint8_t *)"", olen, &out);
        }
        res->options++;
        res->reply_bytes += out.len;
        if (out.len)
            res->last_rep = last_reply_type(&out);
        nbd_buf_free(&out);
        if (hr == NBD_HS_DROP) {
            res->end = NBD_END_DROP;
            nbd_hs_free(&hs);
            return;
        }
        if (hr == NBD_HS_ABORT) {
            res->end = NBD_END_ABORT;
            nbd_hs_free(&hs);
            return;
        }
        if (hr == NBD_HS_GO)
            break;
    }

    res->transmission = true;
    struct nbd_txn_params params = {
        .size = hs.info.size,
        .eflags = nbd_export_flags(hs.info.read_only, hs.structured),
        .structured = hs.structured,
        .meta_allocation = hs.meta_allocation,
    };
    for (;;) {
        t = take(&c, NBD_REQUEST_SIZE, &p);
        if (t <= 0) {
            res->end = t == 0 ? NBD_END_EOF : NBD_END_DROP;
            break;
        }
        struct nbd_request r;
        if (nbd_decode_request(p, &r) < 0) {
            res->end = NBD_END_DROP;
            break;
        }
        res->requests++;
        uint32_t err = 0;
        enum nbd_verdict v = nbd_validate_request(&r, &params, &err);
        if (v == NBD_V_DISC) {
            res->end = NBD_END_DISC;
            break;
        }
        if (v == NBD_V_DROP) {
            res->end = NBD_END_DROP;
            break;
        }
        if (nbd_request_has_payload(&r) && r.len) {
            if (c.left < r.len) {
                res->end = NBD_END_DROP;
                break;
            }
            c.p += r.len;
            c.left -= r.len;
        }
        if (v == NBD_V_ERROR) {
            res->errors++;
            res->last_error = err;
        } else {
            res->ok++;
        }
    }
    nbd_hs_free(&hs);
}
