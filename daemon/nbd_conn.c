/*
 * nbd_conn.c — an NBD connection's life (nbd_internal.h has the design):
 * the listeners and the accept loop (limits, handshake deadlines,
 * eviction, descriptor back-off), the handshake, buffered socket reads,
 * per-request buffers against the connection and server budgets, and the
 * server's create / run / stop.
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

/* A refused client per millisecond must not write a line per millisecond:
 * one line per LOG_EVERY_MS, which says how many were left out. */
static bool ratelog_ok(struct gd_ratelog *rl, unsigned *dropped)
{
    return gd_ratelog_ok(rl, LOG_EVERY_MS, dropped);
}

/* ------------------------------------------------------------------------ */
/* Socket helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Read exactly n bytes. 1 on success, 0 on EOF before the first byte,
 * -1 on error, timeout or a short read. */
static int read_full(struct conn *c, void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = nbd_conn_recv(c, p + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return (r == 0 && got == 0) ? 0 : -1;
    }
    return 1;
}

/* Read and drop n bytes (a payload we will not use). */
static int discard(struct conn *c, uint64_t n)
{
    static __thread uint8_t scratch[16384];
    while (n > 0) {
        size_t k = n < sizeof scratch ? (size_t)n : sizeof scratch;
        if (read_full(c, scratch, k) != 1)
            return -1;
        n -= k;
    }
    return 0;
}

/* Consume n sent bytes from iov[i..cnt): advance the partly sent entry,
 * return the index of the first entry not yet sent in full. */
static int iov_advance(struct iovec *iov, int i, int cnt, size_t n)
{
    while (n > 0 && i < cnt) {
        size_t k = n < iov[i].iov_len ? n : iov[i].iov_len;
        iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
        iov[i].iov_len -= k;
        n -= k;
        if (iov[i].iov_len == 0)
            i++;
    }
    return i;
}

/* Send everything in iov (modified) by deadline_ms (gfs_now_ms), never blocking
 * past it. 0, -1 on a socket error, -ETIMEDOUT when the client did not take
 * it in time. */
int nbd_send_iov_deadline(struct conn *c, struct iovec *iov, int *iovcnt, int64_t deadline_ms)
{
    int i = 0;
    while (i < *iovcnt) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        ssize_t w = nbd_conn_sendv(c, iov + i, *iovcnt - i);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            int64_t left = deadline_ms - gfs_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            struct pollfd p = { .fd = c->fd, .events = POLLOUT };
            if (poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left) < 0 && errno != EINTR)
                return -1;
            continue;
        }
        i = iov_advance(iov, i, *iovcnt, (size_t)w);
    }
    return 0;
}

/* A handshake message: within the handshake deadline. */
static int send_all(struct conn *c, const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };
    int cnt = 1;
    return nbd_send_iov_deadline(c, &iov, &cnt, gfs_now_ms() + c->srv->hs_timeout_ms) < 0 ? -1
                                                                                          : 0;
}

void nbd_set_timeout_ms(int fd, int opt, int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

/* Like read_full, but through the connection's read-ahead buffer. Large
 * reads (write payloads) go straight into the destination once the buffered
 * bytes are used up. */
int nbd_conn_read(struct conn *c, void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        if (c->rbuf_pos < c->rbuf_len) {
            size_t k = c->rbuf_len - c->rbuf_pos;
            if (k > n - got)
                k = n - got;
            memcpy(p + got, c->rbuf + c->rbuf_pos, k);
            c->rbuf_pos += k;
            got += k;
            continue;
        }
        if (n - got >= RBUF_SIZE || !c->rbuf) {
            int r = read_full(c, p + got, n - got);
            return r == 1 ? 1 : (r == 0 && got == 0 ? 0 : -1);
        }
        ssize_t r = nbd_conn_recv(c, c->rbuf, RBUF_SIZE, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return (r == 0 && got == 0) ? 0 : -1;
        c->rbuf_pos = 0;
        c->rbuf_len = (size_t)r;
    }
    return 1;
}

/* The connection's own thread is about to block for a header: from now
 * until nbd_recv_end a takeover may interrupt it (TAKEOVER_SIGNAL, nbd_park.c).
 * Relief threads are never signalled: they poll in short slices. */
__thread struct conn *nbd_reader_self;

bool nbd_recv_begin(struct conn *c)
{
    if (nbd_reader_self != c)
        return false;
    SCOPED_LOCK(&c->slock);
    c->in_recv = true;
    return true;
}

void nbd_recv_end(struct conn *c, bool began)
{
    if (!began)
        return;
    SCOPED_LOCK(&c->slock);
    c->in_recv = false;
}

/* A request header: like nbd_conn_read, but a part of one already buffered
 * stays in rbuf (moved to its start) until the rest is here, and a takeover
 * (srv->parking) stops it before anything is taken out: -3, with every byte
 * read from the client and not parsed still in rbuf. TLS connections are
 * never parked (nbd_park.c closes them). A relief thread never blocks here:
 * -4 when the rest of the header is not there yet (it goes back to its
 * polling, which hands the role back; no signal could wake it). */
int nbd_conn_read_header(struct conn *c, void *buf, size_t n)
{
    if (!c->rbuf)
        return nbd_conn_read(c, buf, n);
    bool own = nbd_reader_self == c;
    for (;;) {
        size_t have = c->rbuf_len - c->rbuf_pos;
        if (have >= n) {
            memcpy(buf, c->rbuf + c->rbuf_pos, n);
            c->rbuf_pos += n;
            return 1;
        }
        if (!c->tls && atomic_load_explicit(&c->srv->parking, memory_order_acquire))
            return -3;
        if (c->rbuf_pos > 0) {
            memmove(c->rbuf, c->rbuf + c->rbuf_pos, have);
            c->rbuf_pos = 0;
            c->rbuf_len = have;
        }
        bool began = nbd_recv_begin(c);
        /* (parking may have been set just before in_recv: the takeover
         * signals again until this thread parks) */
        ssize_t r = nbd_conn_recv(c, c->rbuf + have, RBUF_SIZE - have, own ? 0 : MSG_DONTWAIT);
        int e = errno;
        nbd_recv_end(c, began);
        if (r < 0 && e == EINTR)
            continue;
        if (r < 0 && !own && (e == EAGAIN || e == EWOULDBLOCK))
            return -4;
        if (r <= 0) {
            errno = e;
            return (r == 0 && have == 0) ? 0 : -1;
        }
        c->rbuf_len = have + (size_t)r;
    }
}

int nbd_conn_discard(struct conn *c, uint64_t n)
{
    static __thread uint8_t scratch[16384];
    while (n > 0) {
        size_t k = n < sizeof scratch ? (size_t)n : sizeof scratch;
        if (nbd_conn_read(c, scratch, k) != 1)
            return -1;
        n -= k;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Budgets and request lifetime                                              */
/* ------------------------------------------------------------------------ */


/* Wait until this connection and the server can hold `bytes` more. A request
 * always fits once nothing else is in flight, so progress is guaranteed.
 * Called by the reader only. A relief reader (a pool thread) does not wait
 * while the connection's own thread is free: it gives up (*give_up, NULL),
 * so that pool threads never all sit waiting for requests queued behind
 * them on the pool. */
struct req *nbd_req_new(struct conn *c, size_t bytes, bool *stopping, bool relief,
                        bool *give_up, bool *gone)
{
    struct gd_server *s = c->srv;
    struct req *q = NULL;
    bool flushed = false;
    size_t mine;
    {
        SCOPED_LOCK(&c->lock);
        while (c->inflight >= MAX_INFLIGHT ||
               (c->inflight_bytes > 0 && c->inflight_bytes + bytes > s->conn_budget)) {
            if (!flushed) {
                /* Replies we hold back and reads we collected count as in
                 * flight: let them go first. */
                pthread_mutex_unlock(&c->lock);
                nbd_batch_submit(c);
                nbd_conn_flush(c);
                pthread_mutex_lock(&c->lock);
                flushed = true;
                continue;
            }
            if (relief && atomic_load(&c->main_waiting)) {
                *give_up = true;
                return NULL;
            }
            if (atomic_load(&c->killed)) {
                *gone = true; /* dropped (its client took no replies): wait no more */
                return NULL;
            }
            pthread_cond_wait(&c->cond, &c->lock);
        }
        c->inflight++;
        c->inflight_bytes += bytes;
        mine = c->inflight_bytes;
        *stopping = c->stopping;
        if (c->spare) {
            q = c->spare;
            c->spare = q->next_out;
            c->nspare--;
        }
    }
    if (bytes) {
        SCOPED_LOCK(&s->lock);
        /* Within its reserve a connection does not wait for the others:
         * connections whose clients read no replies may hold the whole
         * budget (until servers.nbd.reply_timeout_ms), yet every other
         * client's small requests go on. */
        while (mine > CONN_RESERVE && s->global_bytes > 0 &&
               s->global_bytes + bytes > s->global_budget) {
            if (relief && atomic_load(&c->main_waiting)) {
                *give_up = true;
                break;
            }
            if (atomic_load(&c->killed)) {
                *gone = true; /* a dropped connection must not take budget from live ones */
                break;
            }
            pthread_cond_wait(&s->cond, &s->lock);
        }
        if (!*give_up && !*gone)
            s->global_bytes += bytes;
    }
    if (*give_up || *gone) {
        SCOPED_LOCK(&c->lock);
        c->inflight--;
        c->inflight_bytes -= bytes;
        if (q) {
            q->next_out = c->spare;
            c->spare = q;
            c->nspare++;
        }
        pthread_cond_broadcast(&c->cond);
        return NULL;
    }
    if (q) {
        uint8_t *buf = q->buf;
        size_t cap = q->bufcap;
        memset(q, 0, sizeof *q);
        q->buf = buf;
        q->bufcap = cap;
    } else {
        q = calloc(1, sizeof *q);
    }
    if (q && bytes > q->bufcap) {
        free(q->buf);
        q->bufcap = 0;
        q->buf = malloc(bytes);
        if (!q->buf) {
            free(q);
            q = NULL;
        } else {
            q->bufcap = bytes;
        }
    }
    if (!q) {
        /* Give the budget back; the caller drops the connection. */
        if (bytes) {
            SCOPED_LOCK(&s->lock);
            s->global_bytes -= bytes;
            pthread_cond_broadcast(&s->cond);
        }
        SCOPED_LOCK(&c->lock);
        c->inflight--;
        c->inflight_bytes -= bytes;
        pthread_cond_broadcast(&c->cond);
        return NULL;
    }
    q->c = c;
    q->charged = bytes;
    return q;
}

/* Done with q: give back its budget; keep it for reuse if it is small. */
void nbd_req_free(struct req *q)
{
    struct conn *c = q->c;
    size_t bytes = q->charged;
    if (bytes) {
        SCOPED_LOCK(&c->srv->lock);
        c->srv->global_bytes -= bytes;
        pthread_cond_broadcast(&c->srv->cond);
    }
    SCOPED_LOCK(&c->lock);
    c->inflight--;
    c->inflight_bytes -= bytes;
    pthread_cond_broadcast(&c->cond);
    if (c->nspare < REQ_CACHE_MAX && q->bufcap <= REQ_CACHE_BUF) {
        q->next_out = c->spare;
        c->spare = q;
        c->nspare++;
    } else {
        free(q->buf);
        free(q);
    }
}

/* At the end of the connection (nothing in flight). */
void nbd_conn_free_spares(struct conn *c)
{
    while (c->spare) {
        struct req *q = c->spare;
        c->spare = q->next_out;
        free(q->buf);
        free(q);
    }
    c->nspare = 0;
}

/* Mark the connection dead: replies are dropped and the reader wakes up. */
void nbd_conn_kill_locked(struct conn *c)
{
    if (!c->dead) {
        c->dead = true;
        atomic_store(&c->killed, true);
        shutdown(c->fd, SHUT_RDWR);
        pthread_cond_broadcast(&c->wcond);
    }
}

void nbd_conn_kill(struct conn *c)
{
    SCOPED_LOCK(&c->wlock);
    nbd_conn_kill_locked(c);
}

/* ------------------------------------------------------------------------ */
/* Handshake                                                                 */
/* ------------------------------------------------------------------------ */

static uint32_t hs_resolve(void *ctx, const char *name)
{
    struct conn *c = ctx;
    char canon[GLIDEFS_NAME_MAX + 1];
    return gd_registry_resolve(c->srv->reg, name, canon, sizeof canon) < 0 ? NBD_REP_ERR_UNKNOWN
                                                                          : 0;
}

/* Opening an export (the store may be slow) is the server's time, not the
 * client's: it neither counts against the handshake deadline nor makes the
 * connection a candidate to be cut short. */
static void hs_work(struct conn *c, bool begin)
{
    SCOPED_LOCK(&c->srv->lock);
    int64_t now = gfs_now_ms();
    if (begin) {
        c->hs_busy = true;
        c->hs_busy_since = now;
    } else {
        c->hs_busy = false;
        c->hs_started_ms += now - c->hs_busy_since;
    }
}

/* GO and INFO on an export that could not be opened: the client (qemu
 * prints it) learns why, not just "unknown". */
static uint32_t open_failed(struct nbd_export_info *info, const char *canon, int rc)
{
    snprintf(info->error, sizeof info->error, "export %s cannot be opened here: %s", canon,
             glidefs_strerror(rc));
    return rc == -ESHUTDOWN ? NBD_REP_ERR_SHUTDOWN : NBD_REP_ERR_UNKNOWN;
}

/* What GO and INFO tell of an open export. */
static void export_info(struct nbd_export_info *info, struct gd_export *e, const char *canon)
{
    glidefs_volume *vol = gd_export_volume(e);
    info->size = glidefs_volume_size(vol);
    info->read_only = glidefs_volume_read_only(vol) != 0;
    snprintf(info->canonical, sizeof info->canonical, "%s", canon);
    snprintf(info->description, sizeof info->description, "GlideFS volume %s%s", canon,
             info->read_only ? " (read-only on this node)" : "");
}

static uint32_t hs_open(void *ctx, const char *name, struct nbd_export_info *info, void **handle)
{
    struct conn *c = ctx;
    char canon[GLIDEFS_NAME_MAX + 1];
    int rc = gd_registry_resolve(c->srv->reg, name, canon, sizeof canon);
    if (rc < 0) {
        gd_info("connection %" PRIu64 ": refused export name \"%.64s\"%s", c->id, name,
                name[0] ? " (not a valid name)" : " (empty, and no default_export)");
        return NBD_REP_ERR_UNKNOWN;
    }
    struct gd_export *e = NULL;
    hs_work(c, true);
    rc = gd_export_acquire(c->srv->reg, canon, 0, &e);
    hs_work(c, false);
    if (rc < 0)
        return open_failed(info, canon, rc);
    export_info(info, e, canon);
    *handle = e;
    return 0;
}

/* NBD_OPT_INFO: what GO would give, creating nothing (issue 21: a loop of
 * INFOs on new names made a volume, a lease and a cache directory each). An
 * export open here answers for itself; one that exists only in the store is
 * opened as GO would open it (never created); a name with no volume yet gets
 * the size its first GO will create it with. */
static uint32_t hs_query(void *ctx, const char *name, struct nbd_export_info *info)
{
    struct conn *c = ctx;
    char canon[GLIDEFS_NAME_MAX + 1];
    if (gd_registry_resolve(c->srv->reg, name, canon, sizeof canon) < 0)
        return NBD_REP_ERR_UNKNOWN;
    struct gd_export *e = NULL;
    hs_work(c, true);
    int rc = gd_export_acquire_ex(c->srv->reg, canon, 0, 0, GD_ACQUIRE_OPEN_ONLY, &e);
    int ex = 1;
    if (rc == -ENOENT)
        ex = glidefs_volume_exists(c->srv->cfg, canon);
    if (rc == -ENOENT && ex == 1)
        rc = gd_export_acquire_ex(c->srv->reg, canon, 0, 0, 0, &e); /* 0: must exist */
    hs_work(c, false);
    if (rc == -ENOENT) {
        if (ex < 0) {
            snprintf(info->error, sizeof info->error, "export %.64s: cannot tell whether it "
                     "exists: %s", canon, glidefs_strerror(ex));
            return NBD_REP_ERR_UNKNOWN;
        }
        if (ex == 0) {
            info->size = c->srv->cfg->nbd_auto_create_size;
            info->read_only = false;
            snprintf(info->canonical, sizeof info->canonical, "%s", canon);
            snprintf(info->description, sizeof info->description,
                     "GlideFS volume %s (not created yet: NBD_OPT_GO creates it)", canon);
            return 0;
        }
    }
    if (rc < 0)
        return open_failed(info, canon, rc);
    export_info(info, e, canon);
    gd_export_release(e, 0);
    return 0;
}

static void hs_close(void *ctx, void *handle)
{
    (void)ctx;
    gd_export_release(handle, 0);
}

struct list_ctx {
    void (*emit)(void *arg, const char *name, const char *desc);
    void *arg;
    const char *def;
    bool def_seen;
};

static void list_one(void *arg, const char *name, glidefs_volume *vol, int conns)
{
    struct list_ctx *lc = arg;
    char desc[96];
    snprintf(desc, sizeof desc, "GlideFS volume, %d connection(s)%s", conns,
             glidefs_volume_read_only(vol) ? ", read-only on this node" : "");
    if (lc->def && strcmp(lc->def, name) == 0)
        lc->def_seen = true;
    lc->emit(lc->arg, name, desc);
}

static void hs_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
                    void *arg)
{
    struct conn *c = ctx;
    struct list_ctx lc = { emit, arg, gd_registry_default_export(c->srv->reg), false };
    gd_registry_foreach(c->srv->reg, list_one, &lc);
    if (lc.def && !lc.def_seen && glidefs_name_valid(lc.def))
        emit(arg, lc.def, "GlideFS volume (default export)");
}

static bool hs_shutting_down(void *ctx)
{
    struct conn *c = ctx;
    return atomic_load(&c->srv->shutting_down);
}

static const struct nbd_hs_ops hs_ops = {
    .resolve = hs_resolve,
    .open = hs_open,
    .query = hs_query,
    .close = hs_close,
    .list = hs_list,
    .shutting_down = hs_shutting_down,
};

/* The handshake is over (once): no deadline, never cut short. */
void nbd_hs_end(struct conn *c)
{
    SCOPED_LOCK(&c->srv->lock);
    if (c->in_hs) {
        c->in_hs = false;
        c->srv->nhs--;
    }
}

/* 1: entered transmission; 0: the client ended the session; -1: dropped. */
int nbd_handshake(struct conn *c)
{
    uint8_t greet[NBD_GREETING_SIZE];
    nbd_encode_greeting(greet);
    if (send_all(c, greet, sizeof greet) < 0)
        return -1;
    uint8_t cf[4];
    if (read_full(c, cf, 4) != 1)
        return -1;
    uint32_t cflags = nbd_get32(cf);
    if (nbd_check_client_flags(cflags) < 0) {
        gd_info("connection %" PRIu64 ": unknown client flags 0x%x; dropping", c->id, cflags);
        return -1;
    }

    struct nbd_hs hs;
    nbd_hs_init(&hs, &hs_ops, c, cflags);
    hs.tls_mode = c->srv->tls_mode;
    uint8_t *data = NULL;
    int result = -1;
    bool told_tls = false;
    for (;;) {
        uint8_t oh[NBD_OPTION_HEADER_SIZE];
        uint32_t opt, len;
        if (read_full(c, oh, sizeof oh) != 1)
            break;
        if (nbd_decode_option_header(oh, &opt, &len) < 0) {
            gd_info("connection %" PRIu64 ": bad option magic; dropping", c->id);
            break;
        }
        struct nbd_buf out = { 0 };
        enum nbd_hs_result hr;
        if (len > NBD_MAX_OPTION_LEN) {
            if (discard(c, len) < 0)
                break;
            hr = nbd_hs_option_too_big(&hs, opt, &out);
        } else {
            free(data);
            data = malloc(len ? len : 1);
            if (!data || (len && read_full(c, data, len) != 1))
                break;
            hr = nbd_hs_option(&hs, opt, data, len, &out);
        }
        gd_debug("connection %" PRIu64 ": option %" PRIu32 " (%" PRIu32 " bytes) -> %d", c->id,
                 opt, len, (int)hr);
        if (hs.tls_mode == NBD_TLS_REQUIRE && !hs.tls_active && opt != NBD_OPT_STARTTLS &&
            opt != NBD_OPT_ABORT && !told_tls) {
            told_tls = true;
            gd_info("connection %" PRIu64 " from %s: option %" PRIu32 " refused: TLS is required "
                    "(servers.nbd.tls: require) and the client did not start it", c->id, c->peer,
                    opt);
        }
        if (hr == NBD_HS_GO && !out.oom) {
            /* Before the reply goes out: a client that has it must find the
             * export connected (the REST state, the idle drain). */
            /* atomic: gd_server_kick_export() reads it from another thread */
            atomic_store_explicit(&c->exp, hs.handle, memory_order_release);
            hs.handle = NULL;
            c->vol = gd_export_volume(c->exp);
            c->export_name = gd_export_name(c->exp);
            c->lat = gd_latency_for(c->export_name);
            c->params.structured = hs.structured;
            c->params.meta_allocation = hs.meta_allocation;
            c->params.eflags = nbd_export_flags(hs.info.read_only, hs.structured);
            c->params.size = hs.info.size;
            gd_export_count_conn(c->exp, 1);
            nbd_hs_end(c); /* before the reply: a client that has it is never cut short */
            result = 1;
        }
        int sent = out.oom ? -1 : send_all(c, out.data, out.len);
        nbd_buf_free(&out);
        if (result == 1)
            break; /* a failed send ends the transmission phase, which uncounts it */
        if (sent < 0 || hr == NBD_HS_DROP)
            break;
        if (hr == NBD_HS_STARTTLS) {
            /* The ACK went out in plaintext; the client's ClientHello is next.
             * tls.c logs a failure with the peer. */
            if (gd_tls_session_start(c->srv->tls, c->fd, c->peer, c->id, &c->tls) < 0)
                break;
            hs.tls_active = true;
            continue;
        }
        if (hr == NBD_HS_ABORT) {
            result = 0;
            break;
        }
    }
    free(data);
    nbd_hs_free(&hs);
    return result;
}

/* ------------------------------------------------------------------------ */
/* Listeners and the accept loop                                             */
/* ------------------------------------------------------------------------ */

int gd_server_create(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server **out)
{
    struct gd_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cfg = cfg;
    s->reg = reg;
    s->ctl_fd = -1;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&s->lock, NULL);
    gfs_cond_init(&s->cond);
    if (s->wake_fd < 0) {
        int e = -errno;
        gd_server_free(s);
        return e;
    }
    s->tls_mode = (int)gd_tls_mode_of(cfg->nbd_tls);
    if (s->tls_mode != NBD_TLS_OFF) {
        char err[1024] = "";
        int rc = gd_tls_create(cfg->nbd_tls_certificates, cfg->nbd_tls_psk_file, &s->tls, err,
                               sizeof err);
        if (rc < 0) {
            gd_err("%s", err[0] ? err : strerror(-rc));
            gd_server_free(s);
            return rc;
        }
    }
    s->hs_timeout_ms = cfg->nbd_handshake_timeout_ms > 0 ? cfg->nbd_handshake_timeout_ms : 10000;
    s->reply_timeout_ms = cfg->nbd_reply_timeout_ms > 0 ? cfg->nbd_reply_timeout_ms : 30000;
    s->global_budget = cfg->nbd_buffer_memory ? (size_t)cfg->nbd_buffer_memory : 512u << 20;
    s->conn_budget = cfg->nbd_conn_buffer_memory ? (size_t)cfg->nbd_conn_buffer_memory : 64u << 20;
    /* Every connection is a descriptor; half of the limit stays for the
     * volumes (journal, cache, lock), the store's connections and the REST
     * API, so they do not fail when clients pile up. */
    s->max_conns = cfg->nbd_max_connections > 0 ? cfg->nbd_max_connections : 1024;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)s->max_conns > rl.rlim_cur / 2) {
        int fit = rl.rlim_cur / 2 > 0 ? (int)(rl.rlim_cur / 2) : 1;
        gd_warn("servers.nbd.max_connections: %d lowered to %d: the open-file limit is %llu and "
                "half of it is kept for the volumes, the store and the REST API (raise "
                "LimitNOFILE / ulimit -n)", s->max_conns, fit, (unsigned long long)rl.rlim_cur);
        s->max_conns = fit;
    }
    s->max_hs = s->max_conns / 4 > 4 ? s->max_conns / 4 : (s->max_conns < 4 ? s->max_conns : 4);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->max_spinners = ncpu >= 4 ? (int)(ncpu / 2) : 1;
    s->spin_us = cfg->nbd_busy_poll_us;
    if (s->spin_us <= 0)
        s->max_spinners = 0;
    int rc = gd_pool_create(cfg->nbd_workers > 0 ? cfg->nbd_workers : 16, &s->pool);
    if (rc < 0) {
        gd_server_free(s);
        return rc;
    }
    pthread_mutex_init(&s->wd_lock, NULL);
    gfs_cond_init(&s->wd_cond);
    s->wd_inited = true;
    rc = pthread_create(&s->wd, NULL, nbd_watchdog_main, s);
    if (rc) {
        gd_server_free(s);
        return -rc;
    }
    s->wd_started = true;
    *out = s;
    return 0;
}

static int listen_unix(struct gd_server *s, const char *path, char *err, size_t errlen)
{
    int fd = gd_listen_unix("servers.nbd.unix_socket", path, 128, err, errlen);
    if (fd < 0)
        return fd;
    s->unix_bound = true;
    snprintf(s->unix_path, sizeof s->unix_path, "%s", path);
    s->listen_kind[s->nlisten] = GD_TKO_LISTEN_UNIX;
    s->listen_fds[s->nlisten++] = fd;
    gd_info("listening on unix socket %s", path);
    return 0;
}

static int listen_tcp(struct gd_server *s, const char *spec, char *err, size_t errlen)
{
    char refusal[512], host[256], port[8];
    snprintf(refusal, sizeof refusal, "servers.nbd.tcp is %s, which is not a loopback address, "
             "and servers.nbd.tls is not require: anyone who reaches it reads and writes "
             "every volume. Set servers.nbd.tls: require (with tls_certificates or "
             "tls_psk_file), listen on 127.0.0.1 (or use servers.nbd.unix_socket), or set "
             "servers.nbd.insecure_tcp: true on a network only trusted hosts reach", spec);
    bool allow = s->cfg->nbd_insecure_tcp || s->tls_mode == NBD_TLS_REQUIRE;
    int fd = gd_listen_tcp("servers.nbd.tcp", spec, 128, allow, refusal, NULL,
                           host, port, err, errlen);
    if (fd < 0)
        return fd;
    s->listen_kind[s->nlisten] = GD_TKO_LISTEN_TCP;
    s->listen_fds[s->nlisten++] = fd;
    gd_info("listening on tcp %s port %s", host, port);
    return 0;
}

int gd_server_listen(struct gd_server *s, char *err, size_t errlen)
{
    const char *u = s->cfg->nbd_unix_socket;
    const char *t = s->cfg->nbd_tcp;
    if ((!u || !*u) && (!t || !*t)) {
        snprintf(err, errlen, "no listener: servers.nbd.unix_socket and servers.nbd.tcp are "
                              "both off");
        return -EINVAL;
    }
    int rc;
    if (u && *u && (rc = listen_unix(s, u, err, errlen)) < 0)
        return rc;
    if (t && *t && (rc = listen_tcp(s, t, err, errlen)) < 0)
        return rc;
    return 0;
}

/* Cut c's handshake short: its thread sees the socket end. s->lock held. */
static void hs_evict_locked(struct conn *c)
{
    c->evicted = true;
    SCOPED_LOCK(&c->wlock); /* the thread closes fd under it */
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
}

/* Drop handshakes past servers.nbd.handshake_timeout_ms (a client sending a
 * byte now and then would otherwise keep its slot for ever). */
static void hs_expire(struct gd_server *s)
{
    int64_t now = gfs_now_ms();
    unsigned n = 0;
    uint64_t id = 0;
    {
        SCOPED_LOCK(&s->lock);
        if (s->nhs == 0)
            return;
        for (struct conn *c = s->conns; c; c = c->next)
            if (c->in_hs && !c->evicted && !c->hs_busy &&
                now - c->hs_started_ms >= s->hs_timeout_ms) {
                hs_evict_locked(c);
                id = c->id;
                n++;
            }
    }
    unsigned dropped;
    if (n && ratelog_ok(&s->rl_evict, &dropped))
        gd_info("connection %" PRIu64 "%s: handshake not finished within %d ms "
                "(servers.nbd.handshake_timeout_ms); dropped (%u similar not logged)", id,
                n > 1 ? " and others" : "", s->hs_timeout_ms, dropped + n - 1);
}

/* Room for one more connection? Real clients finish their handshake in
 * milliseconds; when the cap, or the share of it handshakes may take, is
 * full, the oldest unfinished handshake makes room. So clients that trickle
 * bytes cannot lock out the ones that speak NBD (a newcomer is cut short
 * only after max_hs later arrivals), and connections in transmission are
 * never pushed out. s->lock held. */
static bool admit_locked(struct gd_server *s, char *why, size_t whylen)
{
    int64_t now = gfs_now_ms();
    int live = 0, hs = 0;
    struct conn *oldest = NULL;
    for (struct conn *c = s->conns; c; c = c->next) {
        if (c->evicted || c->finished)
            continue;
        live++;
        if (!c->in_hs)
            continue;
        hs++;
        if (c->hs_busy)
            continue;
        if (!oldest || c->hs_started_ms < oldest->hs_started_ms)
            oldest = c;
    }
    if (live < s->max_conns && hs < s->max_hs)
        return true;
    if (oldest && s->nconns < s->max_conns + EVICT_SLACK) {
        hs_evict_locked(oldest);
        snprintf(why, whylen, "connection %" PRIu64 ": handshake unfinished after %" PRId64
                 " ms cut short to make room (%d connections, %d in the handshake)", oldest->id,
                 now - oldest->hs_started_ms, live, hs);
        return true;
    }
    snprintf(why, whylen, "%d connections (servers.nbd.max_connections: %d), %d of them in "
             "the handshake", live, s->max_conns, hs);
    return false;
}

static void accept_one(struct gd_server *s, int lfd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
    unsigned dropped;
    if (fd < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            /* The pending client stays in the backlog: polling again at once
             * would spin. Pause, longer each time while it lasts. */
            s->accept_backoff_ms = s->accept_backoff_ms ? s->accept_backoff_ms * 2
                                                        : ACCEPT_BACKOFF_MIN_MS;
            if (s->accept_backoff_ms > ACCEPT_BACKOFF_MAX_MS)
                s->accept_backoff_ms = ACCEPT_BACKOFF_MAX_MS;
            s->accept_pause_until = gfs_now_ms() + s->accept_backoff_ms;
            if (ratelog_ok(&s->rl_accept, &dropped))
                gd_warn("accept: %s: not accepting for %d ms (open-file limit; %u similar "
                        "not logged)", strerror(e), s->accept_backoff_ms, dropped);
        } else if (e != EAGAIN && e != EINTR && e != ECONNABORTED &&
                   ratelog_ok(&s->rl_accept, &dropped)) {
            gd_warn("accept: %s (%u similar not logged)", strerror(e), dropped);
        }
        return;
    }
    s->accept_backoff_ms = 0;
    char peer[96] = "unix";
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char h[64] = "?", p[16] = "?";
        getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p, sizeof p,
                    NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(peer, sizeof peer, "%s:%s", h, p);
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    nbd_conn_init_locks(c);
    char why[200] = "";
    bool admitted;
    {
        SCOPED_LOCK(&s->lock);
        admitted = admit_locked(s, why, sizeof why);
        if (admitted) {
            c->id = ++s->next_id;
            c->in_hs = true;
            c->hs_started_ms = gfs_now_ms();
            s->nhs++;
            c->next = s->conns;
            s->conns = c;
            s->nconns++;
        }
    }
    if (!admitted) {
        close(fd);
        nbd_conn_free(c);
        if (ratelog_ok(&s->rl_refuse, &dropped))
            gd_warn("refusing connection from %s: %s (%u similar not logged)", peer, why,
                    dropped);
        return;
    }
    if (why[0] && ratelog_ok(&s->rl_evict, &dropped))
        gd_info("%s (%u similar not logged)", why, dropped);
    gd_debug("connection %" PRIu64 ": from %s", c->id, peer);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int e = pthread_create(&c->reader, &attr, nbd_reader_main, c);
    pthread_attr_destroy(&attr);
    if (e) {
        gd_err("cannot start connection thread: %s", strerror(e));
        SCOPED_LOCK(&s->lock);
        for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        s->nconns--;
        s->nhs--;
        close(fd);
        nbd_conn_free(c);
    }
}

void nbd_conn_init_locks(struct conn *c)
{
    pthread_mutex_init(&c->lock, NULL);
    gfs_cond_init(&c->cond);
    pthread_mutex_init(&c->wlock, NULL);
    gfs_cond_init(&c->wcond);
    pthread_mutex_init(&c->rlock, NULL);
    gfs_cond_init(&c->rcond);
    pthread_mutex_init(&c->slock, NULL);
}

void nbd_conn_free(struct conn *c)
{
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->wlock);
    pthread_cond_destroy(&c->wcond);
    pthread_mutex_destroy(&c->rlock);
    pthread_cond_destroy(&c->rcond);
    pthread_mutex_destroy(&c->slock);
    free(c);
}

/* Join connections whose reader has finished. */
static void reap(struct gd_server *s)
{
    for (;;) {
        struct conn *dead = NULL;
        {
            SCOPED_LOCK(&s->lock);
            for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
                if ((*pp)->finished) {
                    dead = *pp;
                    *pp = dead->next;
                    s->nconns--;
                    break;
                }
        }
        if (!dead)
            return;
        pthread_join(dead->reader, NULL);
        nbd_conn_free(dead);
    }
}

int gd_server_serve(struct gd_server *s, int stop_fd)
{
    struct pollfd pfd[11];
    for (;;) {
        int n = 0;
        pfd[n++] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
        /* (-1 when there is no control socket: poll skips it) */
        pfd[n++] = (struct pollfd){ .fd = s->ctl_fd, .events = POLLIN };
        int64_t now = gfs_now_ms();
        bool paused = now < s->accept_pause_until;
        int timeout = paused ? (int)(s->accept_pause_until - now) : -1;
        bool hs;
        {
            SCOPED_LOCK(&s->lock);
            hs = s->nhs > 0;
        }
        if (hs && (timeout < 0 || timeout > HS_TICK_MS))
            timeout = HS_TICK_MS;
        for (int i = 0; i < s->nlisten && !paused; i++)
            pfd[n++] = (struct pollfd){ .fd = s->listen_fds[i], .events = POLLIN };
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            gd_err("poll: %s", strerror(errno));
            return GD_SERVE_STOP;
        }
        if (pfd[0].revents)
            return GD_SERVE_STOP;
        if (pfd[1].revents) {
            uint64_t v;
            ssize_t r = read(s->wake_fd, &v, sizeof v);
            (void)r;
            reap(s);
        }
        if (pfd[2].revents & POLLIN)
            return GD_SERVE_TAKEOVER;
        hs_expire(s);
        for (int i = 3; i < n; i++)
            if (pfd[i].revents & POLLIN)
                accept_one(s, pfd[i].fd);
    }
}

int gd_server_run(struct gd_server *s, int stop_fd)
{
    while (gd_server_serve(s, stop_fd) == GD_SERVE_TAKEOVER)
        gd_warn("a takeover knocked, but this caller cannot hand over");
    gd_server_stop(s);
    return 0;
}

void nbd_conns_reap(struct gd_server *s)
{
    for (;;) {
        struct conn *c;
        {
            SCOPED_LOCK(&s->lock);
            c = s->conns;
            if (c) {
                s->conns = c->next;
                s->nconns--;
            }
        }
        if (!c)
            break;
        pthread_join(c->reader, NULL);
        nbd_conn_free(c);
    }
}

void gd_server_stop(struct gd_server *s)
{
    /* Stop accepting. */
    atomic_store(&s->shutting_down, true);
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    s->nlisten = 0;
    if (s->unix_bound) {
        unlink(s->unix_path);
        s->unix_bound = false;
    }
    /* Nobody waits in the registry any more (a handshake waiting for a
     * lease hand-over would hold up the joins below). */
    gd_registry_stop_clients(s->reg);
    /* New requests now get ESHUTDOWN; wait for the ones in flight. */
    int nc;
    {
        SCOPED_LOCK(&s->lock);
        nc = s->nconns;
        for (struct conn *c = s->conns; c; c = c->next) {
            SCOPED_LOCK(&c->lock);
            c->stopping = true;
        }
    }
    gd_info("shutting down: no new connections; finishing requests on %d connection(s)", nc);
    for (;;) {
        struct conn *busy = NULL;
        {
            SCOPED_LOCK(&s->lock);
            for (struct conn *c = s->conns; c && !busy; c = c->next) {
                SCOPED_LOCK(&c->lock);
                if (c->inflight > 0)
                    busy = c;
            }
            if (busy) {
                /* Bounded wait, then look again (reply senders signal c->cond). */
                pthread_mutex_lock(&busy->lock);
            }
        }
        if (!busy)
            break;
        while (busy->inflight > 0)
            pthread_cond_wait(&busy->cond, &busy->lock);
        pthread_mutex_unlock(&busy->lock);
    }
    /* Clients told ESHUTDOWN must disconnect themselves; give them a moment
     * (replying ESHUTDOWN to anything they still send), then hard-disconnect
     * what is left (the reader threads then finish). */
    {
        struct timespec dl;
        gfs_timespec_in(&dl, SHUTDOWN_GRACE_S * 1000);
        SCOPED_LOCK(&s->lock);
        for (;;) {
            bool open = false;
            for (struct conn *c = s->conns; c; c = c->next)
                if (!c->finished)
                    open = true;
            if (!open || pthread_cond_timedwait(&s->cond, &s->lock, &dl) == ETIMEDOUT)
                break;
        }
    }
    {
        SCOPED_LOCK(&s->lock);
        for (struct conn *c = s->conns; c; c = c->next) {
            SCOPED_LOCK(&c->wlock);
            if (c->fd >= 0 && !c->finished)
                shutdown(c->fd, SHUT_RDWR);
        }
    }
    nbd_conns_reap(s);
    gd_info("all connections closed");
}

void gd_server_kick_export(void *server, struct gd_export *e)
{
    struct gd_server *s = server;
    SCOPED_LOCK(&s->lock);
    for (struct conn *c = s->conns; c; c = c->next) {
        SCOPED_LOCK(&c->wlock);
        if (atomic_load_explicit(&c->exp, memory_order_acquire) == e && !c->finished) {
            gd_info("connection %" PRIu64 ": disconnected (export %s removed through the API)",
                    c->id, gd_export_name(e));
            nbd_conn_kill_locked(c);
        }
    }
}

void gd_server_reload_tls(struct gd_server *s)
{
    if (!s->tls)
        return;
    char err[1024] = "";
    int rc = gd_tls_reload(s->tls, err, sizeof err);
    if (rc < 0)
        gd_err("SIGHUP: NBD TLS credentials not reloaded, the old ones stay: %s",
               err[0] ? err : strerror(-rc));
    else
        gd_info("SIGHUP: NBD TLS credentials reloaded; new connections use them");
}

void gd_server_free(struct gd_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    if (s->unix_bound)
        unlink(s->unix_path);
    if (s->ctl_fd >= 0)
        close(s->ctl_fd);
    if (s->wd_started) {
        {
            SCOPED_LOCK(&s->wd_lock);
            s->wd_stop = true;
            pthread_cond_signal(&s->wd_cond);
        }
        pthread_join(s->wd, NULL);
    }
    if (s->wd_inited) {
        pthread_mutex_destroy(&s->wd_lock);
        pthread_cond_destroy(&s->wd_cond);
    }
    gd_pool_destroy(s->pool);
    gd_tls_free(s->tls);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
