/*
 * nbd_exec.c — running a request against the volume (the reader inline,
 * or a pool thread) and sending its reply: corked, never blocking on the
 * client, the rest through the connection's writer thread
 * (nbd_internal.h has the design).
 */
#include "nbd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "cleanup.h"
#include "config.h"
#include "exports.h"
#include "latency.h"
#include "log.h"
#include "nbd_proto.h"
#include "sockets.h"
#include "workers.h"

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */
/* ------------------------------------------------------------------------ */

static void free_sent(struct req *done)
{
    while (done) {
        struct req *q = done;
        done = q->next_out;
        nbd_req_free(q);
    }
}

static void outq_pop_locked(struct conn *c, struct req **done)
{
    struct req *q = c->outq_head;
    c->outq_head = q->next_out;
    if (!c->outq_head)
        c->outq_tail = NULL;
    c->outq_n--;
    c->outq_bytes -= q->outlen;
    q->next_out = *done;
    *done = q;
}

/* Send queued replies from the head, as many per sendmsg() as fit, without
 * blocking. Sent (or, on a dead connection, dropped) ones move to *done, for
 * the caller to free after unlocking. wlock held, the writer not busy. */
static void outq_send_locked(struct conn *c, struct req **done)
{
    while (c->outq_head && !c->dead) {
        struct iovec iov[2 * CORK_MAX_REPLIES];
        int n = 0;
        size_t total = 0;
        for (struct req *q = c->outq_head; q && n + 2 <= (int)(sizeof iov / sizeof iov[0]);
             q = q->next_out)
            for (int i = 0; i < q->iovcnt; i++)
                if (q->iov[i].iov_len) {
                    iov[n++] = q->iov[i];
                    total += q->iov[i].iov_len;
                }
        ssize_t w = 0;
        if (n > 0) {
            do
                w = nbd_conn_sendv(c, iov, n);
            while (w < 0 && errno == EINTR);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                nbd_conn_kill_locked(c);
                break;
            }
        }
        size_t left = (size_t)w;
        while (c->outq_head) {
            struct req *q = c->outq_head;
            bool sent = true;
            for (int i = 0; i < q->iovcnt; i++) {
                size_t k = left < q->iov[i].iov_len ? left : q->iov[i].iov_len;
                q->iov[i].iov_base = (uint8_t *)q->iov[i].iov_base + k;
                q->iov[i].iov_len -= k;
                left -= k;
                if (q->iov[i].iov_len)
                    sent = false;
            }
            if (!sent)
                break;
            outq_pop_locked(c, done);
        }
        if ((size_t)w < total)
            return; /* the socket is full: the writer thread goes on */
    }
    while (c->dead && c->outq_head)
        outq_pop_locked(c, done);
}

/* Queue q's reply (q->iov) and send what is queued, never blocking on the
 * client: what the socket does not take goes to the writer thread. Replies
 * leave in queue order, so they never interleave. A reply with q->hold set
 * (the reader has more requests buffered) waits for the next one, up to
 * CORK_MAX_REPLIES / CORK_MAX_BYTES, or until nbd_conn_flush(). */
static void reply_send(struct req *q)
{
    struct conn *c = q->c;
    struct req *done = NULL;
    pthread_mutex_lock(&c->wlock);
    if (c->dead) {
        pthread_mutex_unlock(&c->wlock);
        nbd_req_free(q);
        return;
    }
    q->outlen = 0;
    for (int i = 0; i < q->iovcnt; i++)
        q->outlen += q->iov[i].iov_len;
    q->next_out = NULL;
    if (c->outq_tail)
        c->outq_tail->next_out = q;
    else
        c->outq_head = q;
    c->outq_tail = q;
    c->outq_n++;
    c->outq_bytes += q->outlen;
    if (q->hold && c->outq_n < CORK_MAX_REPLIES && c->outq_bytes < CORK_MAX_BYTES) {
        c->corked = true;
        pthread_mutex_unlock(&c->wlock);
        return;
    }
    c->corked = false;
    if (!c->writer_busy)
        outq_send_locked(c, &done);
    if (c->outq_head)
        pthread_cond_signal(&c->wcond);
    pthread_mutex_unlock(&c->wlock);
    free_sent(done);
}

/* Send the replies held back by the cork. */
void nbd_conn_flush(struct conn *c)
{
    struct req *done = NULL;
    pthread_mutex_lock(&c->wlock);
    if (c->corked) {
        c->corked = false;
        if (!c->writer_busy)
            outq_send_locked(c, &done);
        if (c->outq_head)
            pthread_cond_signal(&c->wcond);
    }
    pthread_mutex_unlock(&c->wlock);
    free_sent(done);
}

void *nbd_writer_main(void *arg)
{
    struct conn *c = arg;
    pthread_mutex_lock(&c->wlock);
    for (;;) {
        while (!c->writer_stop && (!c->outq_head || c->corked))
            pthread_cond_wait(&c->wcond, &c->wlock);
        if (!c->outq_head)
            break; /* stopping and nothing left */
        struct req *q = NULL;
        outq_pop_locked(c, &q);
        bool dead = c->dead;
        c->writer_busy = true;
        pthread_mutex_unlock(&c->wlock);
        /* A client that does not take a reply within the deadline is gone
         * or hostile: its buffers go back to the budget. */
        int rc = dead ? 0 : nbd_send_iov_deadline(c, q->iov, &q->iovcnt,
                                                  gfs_now_ms() + c->srv->reply_timeout_ms);
        nbd_req_free(q);
        pthread_mutex_lock(&c->wlock);
        if (rc < 0) {
            if (!c->dead && rc == -ETIMEDOUT)
                gd_info("connection %" PRIu64 ": client took no reply for %d ms "
                        "(servers.nbd.reply_timeout_ms); dropping it", c->id,
                        c->srv->reply_timeout_ms);
            else if (!c->dead)
                gd_info("connection %" PRIu64 ": client stopped reading replies; dropping it",
                        c->id);
            nbd_conn_kill_locked(c);
            /* Its reader may be waiting for budget: it gives up now. */
            pthread_mutex_unlock(&c->wlock);
            {
                SCOPED_LOCK(&c->srv->lock);
                pthread_cond_broadcast(&c->srv->cond);
            }
            {
                SCOPED_LOCK(&c->lock);
                pthread_cond_broadcast(&c->cond);
            }
            pthread_mutex_lock(&c->wlock);
        }
        c->writer_busy = false;
    }
    pthread_mutex_unlock(&c->wlock);
    return NULL;
}

const char *nbd_wire_err_text(uint32_t e)
{
    switch (e) {
    case NBD_EPERM: return "export is read-only";
    case NBD_EIO: return "input/output error";
    case NBD_ENOMEM: return "out of memory";
    case NBD_EINVAL: return "invalid request (command, flags, alignment or range)";
    case NBD_ENOSPC: return "write beyond the end of the export";
    case NBD_EOVERFLOW: return "request larger than the maximum payload";
    case NBD_ENOTSUP: return "a NO_HOLE zero is not faster than a write";
    case NBD_ESHUTDOWN: return "server is shutting down";
    default: return "error";
    }
}

/* Build an error reply into q (no payload). */
void nbd_reply_error(struct req *q, uint32_t err, const char *why)
{
    struct conn *c = q->c;
    q->hold = false; /* errors are rare: no need to hold them back */
    if (c->params.structured) {
        char msg[NBD_MAX_ERRMSG + 1];
        snprintf(msg, sizeof msg, "%s: %s", nbd_cmd_name(q->r.type), why ? why : nbd_wire_err_text(err));
        size_t n = nbd_encode_error_chunk(q->hdr, q->r.cookie, err, msg);
        q->iov[0] = (struct iovec){ q->hdr, n };
    } else {
        q->iov[0] = (struct iovec){ q->hdr, nbd_encode_simple_reply(q->hdr, q->r.cookie, err) };
    }
    q->iovcnt = 1;
    reply_send(q);
}

static void reply_ok(struct req *q)
{
    q->iov[0] = (struct iovec){ q->hdr, nbd_encode_simple_reply(q->hdr, q->r.cookie, 0) };
    q->iovcnt = 1;
    reply_send(q);
}

static void reply_read(struct req *q)
{
    struct conn *c = q->c;
    if (!c->params.structured) {
        q->iov[0] = (struct iovec){ q->hdr, nbd_encode_simple_reply(q->hdr, q->r.cookie, 0) };
        q->iov[1] = (struct iovec){ q->buf, q->r.len };
        q->iovcnt = q->r.len ? 2 : 1;
    } else if (q->r.len == 0) {
        /* Nothing to describe: a lone NONE chunk ends the reply. */
        size_t n = nbd_encode_chunk_header(q->hdr, q->r.cookie, NBD_REPLY_FLAG_DONE,
                                           NBD_REPLY_TYPE_NONE, 0);
        q->iov[0] = (struct iovec){ q->hdr, n };
        q->iovcnt = 1;
    } else {
        /* One data chunk, final: the data is all in memory, so no error can
         * follow it (and NBD_CMD_FLAG_DF is satisfied). */
        size_t n = nbd_encode_chunk_header(q->hdr, q->r.cookie, NBD_REPLY_FLAG_DONE,
                                           NBD_REPLY_TYPE_OFFSET_DATA, 8 + q->r.len);
        nbd_put64(q->hdr + n, q->r.offset);
        q->iov[0] = (struct iovec){ q->hdr, n + 8 };
        q->iov[1] = (struct iovec){ q->buf, q->r.len };
        q->iovcnt = 2;
    }
    reply_send(q);
}

/* ------------------------------------------------------------------------ */
/* Request execution (the reader inline, or pool threads)                    */
/* ------------------------------------------------------------------------ */

static uint8_t zero_chunk[ZERO_CHUNK]; /* never written: the NO_HOLE source */

static int do_zero_no_hole(glidefs_volume *vol, uint64_t off, uint64_t len, bool fua)
{
    /* NO_HOLE asks for allocated zeroes, so write real ones. */
    while (len > 0) {
        size_t k = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
        int rc = glidefs_pwrite(vol, zero_chunk, k, off, 0);
        if (rc < 0)
            return rc;
        off += k;
        len -= k;
    }
    return fua ? glidefs_flush(vol) : 0;
}

static int do_block_status(struct req *q)
{
    struct conn *c = q->c;
    size_t max = (q->r.flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS;
    struct nbd_extent ex[MAX_EXTENTS];
    size_t n = 0;
    uint64_t pos = q->r.offset, end = q->r.offset + q->r.len;
    while (pos < end) {
        int hole = 0;
        int64_t got = glidefs_block_status(c->vol, pos, end - pos, &hole);
        if (got < 0)
            return (int)got;
        if (got == 0)
            return -EIO; /* the library promised progress */
        if ((uint64_t)got > end - pos)
            got = (int64_t)(end - pos);
        if (!nbd_extent_add(ex, &n, max, (uint64_t)got, hole ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0))
            break;
        pos += (uint64_t)got;
    }
    size_t plen = 4 + 8 * n;
    uint8_t *p = malloc(NBD_STRUCTURED_REPLY_SIZE + plen);
    if (!p)
        return -ENOMEM;
    nbd_encode_chunk_header(p, q->r.cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
                            (uint32_t)plen);
    nbd_put32(p + NBD_STRUCTURED_REPLY_SIZE, NBD_META_ID_BASE_ALLOCATION);
    for (size_t i = 0; i < n; i++) {
        nbd_put32(p + NBD_STRUCTURED_REPLY_SIZE + 4 + 8 * i, ex[i].len);
        nbd_put32(p + NBD_STRUCTURED_REPLY_SIZE + 8 + 8 * i, ex[i].flags);
    }
    free(q->buf);
    q->buf = p;
    q->bufcap = NBD_STRUCTURED_REPLY_SIZE + plen;
    q->iov[0] = (struct iovec){ p, NBD_STRUCTURED_REPLY_SIZE + plen };
    q->iovcnt = 1;
    return 0;
}

void nbd_run_request(struct gd_job *job)
{
    struct req *q = (struct req *)job;
    struct conn *c = q->c;
    glidefs_volume *vol = c->vol;
    const struct nbd_request *r = &q->r;
    bool fua = r->flags & NBD_CMD_FLAG_FUA;
    unsigned wflags = fua ? GLIDEFS_WRITE_FUA : 0;
    int rc = 0;
    uint64_t lat_t0 = gd_latency_start();

    switch (r->type) {
    case NBD_CMD_READ:
        if (r->len)
            rc = glidefs_pread(vol, q->buf, r->len, r->offset);
        if (rc == 0) {
            gd_latency_end(c->lat, r->type, lat_t0);
            reply_read(q);
            return;
        }
        break;
    case NBD_CMD_WRITE:
        if (r->len)
            rc = glidefs_pwrite(vol, q->buf, r->len, r->offset, wflags);
        break;
    case NBD_CMD_FLUSH:
        rc = glidefs_flush(vol);
        break;
    case NBD_CMD_TRIM:
        if (r->len)
            rc = glidefs_trim(vol, r->offset, r->len, wflags);
        break;
    case NBD_CMD_WRITE_ZEROES:
        if (r->len == 0)
            break;
        if (r->flags & NBD_CMD_FLAG_NO_HOLE)
            rc = do_zero_no_hole(vol, r->offset, r->len, fua);
        else
            rc = glidefs_write_zeroes(vol, r->offset, r->len, wflags);
        break;
    case NBD_CMD_CACHE:
        if (r->len)
            rc = glidefs_prefetch(vol, r->offset, r->len);
        break;
    case NBD_CMD_BLOCK_STATUS:
        rc = do_block_status(q);
        if (rc == 0) {
            gd_latency_end(c->lat, r->type, lat_t0);
            reply_send(q);
            return;
        }
        break;
    default:
        rc = -EINVAL; /* the validator lets no other type through */
        break;
    }
    gd_latency_end(c->lat, r->type, lat_t0);
    if (rc < 0) {
        gd_debug("connection %" PRIu64 ": %s offset %" PRIu64 " length %" PRIu32 ": %s", c->id,
                 nbd_cmd_name(r->type), r->offset, r->len, glidefs_strerror(rc));
        nbd_reply_error(q, nbd_errno_to_wire(rc), glidefs_strerror(rc));
        return;
    }
    reply_ok(q);
}
