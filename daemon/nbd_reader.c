/*
 * nbd_reader.c — transmission: the reader role (read a request, run the
 * ordinary ones inline, hand the slow ones to the pool), its busy-poll
 * before blocking, and the watchdog that gives the role to a relief thread
 * when a reader is stuck in one request (nbd_internal.h has the design).
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
/* Transmission: the reader role, relief and the watchdog                    */
/* ------------------------------------------------------------------------ */

/* Read and judge one request. Returns 1 with *out set when it is to be
 * executed, 0 when it was answered already (an error reply), -1 when the
 * connection ends (EOF, DISC, or a violation we drop it for), -2 when a
 * relief reader gave up waiting for budget (the header is kept in c->stash
 * for whoever reads next), -3 at a request boundary during a takeover
 * (nothing taken from the read-ahead buffer), -4 (relief only) when the
 * rest of a header is not there yet. */
static int read_request(struct conn *c, struct req **out, bool relief)
{
    struct nbd_request r;
    uint32_t err = 0;
    enum nbd_verdict v;
    if (c->stash) {
        /* A relief reader gave the role back while waiting for budget. */
        c->stash = false;
        r = c->stash_r;
        v = c->stash_v;
        err = c->stash_err;
        goto have_header;
    }
    uint8_t h[NBD_REQUEST_SIZE];
    int rr = nbd_conn_read_header(c, h, sizeof h);
    if (rr == -3 || rr == -4)
        return rr;
    if (rr == 0)
        return -1; /* client closed without DISC */
    if (rr < 0) {
        if (!c->dead)
            gd_info("connection %" PRIu64 ": short read of a request header; dropping", c->id);
        nbd_conn_kill(c);
        return -1;
    }
    if (nbd_decode_request(h, &r) < 0) {
        gd_info("connection %" PRIu64 ": bad request magic 0x%08" PRIx32 "; dropping", c->id,
                nbd_get32(h));
        nbd_conn_kill(c);
        return -1;
    }
    atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
    struct nbd_txn_params params = c->params;
    params.size = glidefs_volume_size(c->vol); /* grows with resize */
    v = nbd_validate_request(&r, &params, &err);
    if (v == NBD_V_DISC)
        return -1;
    if (v == NBD_V_DROP) {
        gd_info("connection %" PRIu64 ": %s of %" PRIu32 " bytes exceeds the maximum "
                "payload; dropping", c->id, nbd_cmd_name(r.type), r.len);
        nbd_conn_kill(c);
        return -1;
    }
have_header:;
    size_t bytes = 0;
    if (v == NBD_V_OK && (r.type == NBD_CMD_WRITE || r.type == NBD_CMD_READ))
        bytes = r.len;
    bool stopping = false, give_up = false, gone = false;
    struct req *q = nbd_req_new(c, bytes, &stopping, relief, &give_up, &gone);
    if (!q && gone)
        return -1; /* the connection was dropped while this waited for budget */
    if (!q && give_up) {
        c->stash = true;
        c->stash_r = r;
        c->stash_v = v;
        c->stash_err = err;
        return -2;
    }
    if (!q) {
        gd_err("connection %" PRIu64 ": out of memory; dropping", c->id);
        nbd_conn_kill(c);
        return -1;
    }
    q->r = r;
    if (v == NBD_V_OK && r.type == NBD_CMD_WRITE && r.len) {
        if (nbd_conn_read(c, q->buf, r.len) != 1) {
            gd_info("connection %" PRIu64 ": short write payload; dropping", c->id);
            nbd_req_free(q);
            nbd_conn_kill(c);
            return -1;
        }
    } else if (nbd_request_has_payload(&r) && r.len) {
        if (nbd_conn_discard(c, r.len) < 0) {
            nbd_req_free(q);
            nbd_conn_kill(c);
            return -1;
        }
    }
    if (stopping) {
        nbd_reply_error(q, NBD_ESHUTDOWN, NULL);
        return 0;
    }
    if (v == NBD_V_ERROR) {
        gd_debug("connection %" PRIu64 ": %s flags 0x%x offset %" PRIu64 " length %" PRIu32
                 " refused: %s", c->id, nbd_cmd_name(r.type), r.flags, r.offset, r.len,
                 nbd_wire_err_text(err));
        nbd_reply_error(q, err, NULL);
        return 0;
    }
    q->job.fn = nbd_run_request;
    *out = q;
    return 1;
}

/* Requests that are slow by nature go to the pool; the rest run inline
 * (a slow one among them, a cache miss, is caught by the watchdog). */
static bool run_inline(const struct nbd_request *r)
{
    if (r->flags & NBD_CMD_FLAG_FUA)
        return false;
    switch (r->type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
        return r->len <= INLINE_MAX;
    case NBD_CMD_TRIM:
    case NBD_CMD_BLOCK_STATUS:
        return true;
    case NBD_CMD_WRITE_ZEROES:
        return !(r->flags & NBD_CMD_FLAG_NO_HOLE);
    default:
        return false; /* FLUSH, CACHE */
    }
}

/* A FLUSH that is all the connection has to do (queue depth 1: a database
 * committing waits for it before it sends more) runs on the reader too: the
 * pool would cost a thread wake-up (an idle vCPU's, tens of microseconds)
 * on the way in and the reader's sleep on the way out, per FLUSH. A slow
 * disk only delays this client, and the watchdog hands the reader role on
 * after a tick. With anything else buffered or in flight it goes to the
 * pool, so the requests around it are not held up. */
static bool flush_inline(struct conn *c, const struct nbd_request *r)
{
    if (r->type != NBD_CMD_FLUSH || c->rbuf_len - c->rbuf_pos >= NBD_REQUEST_SIZE)
        return false;
    SCOPED_LOCK(&c->lock);
    return c->inflight == 1; /* this FLUSH only */
}

/* A whole request header is in the read-ahead buffer. */
static bool request_buffered(const struct conn *c)
{
    return c->rbuf_len - c->rbuf_pos >= NBD_REQUEST_SIZE;
}

/* Requests in the read-ahead buffer, by bytes: a buffered write payload
 * counts as many requests, on purpose. Reads behind or beside a write then
 * go to the pool and run next to it while it runs inline; counting the
 * headers exactly kept them inline, and a 50/50 random read/write at QD64
 * read 48k IOPS instead of 65k (bench/qd1_ab.sh, SCEN=randrw:64). */
static size_t requests_buffered(const struct conn *c)
{
    return (c->rbuf_len - c->rbuf_pos) / NBD_REQUEST_SIZE;
}

/* A pool job: run a batch of reads, replies sent together at the end. */
static void run_batch(struct gd_job *job)
{
    struct req *q = (struct req *)job;
    while (q) {
        struct req *next = q->batch_next; /* q is gone once replied */
        q->hold = next != NULL;
        nbd_run_request(&q->job);
        q = next;
    }
}

/* Hand the reads collected by the reader to the pool. */
void nbd_batch_submit(struct conn *c)
{
    struct batch *b = &c->batch;
    if (!b->head)
        return;
    b->head->job.fn = run_batch;
    gd_pool_submit(c->srv->pool, &b->head->job);
    *b = (struct batch){ 0 };
}

static void wd_wake(struct gd_server *s)
{
    SCOPED_LOCK(&s->wd_lock);
    atomic_store(&s->wd_asleep, false);
    pthread_cond_signal(&s->wd_cond);
}

/* Take the reader role (after a steal or a hand-back): a new seq, so a CAS
 * by the thread that lost the role cannot succeed. */
static void role_take(struct conn *c)
{
    uint64_t v = atomic_load(&c->rd_state);
    atomic_store(&c->rd_state, ((v >> 2) + 1) << 2 | RD_IDLE);
}

/* Give the role back to the connection's thread if it waits for it. */
static bool relief_hand_back(struct conn *c)
{
    if (!atomic_load(&c->main_waiting))
        return false;
    SCOPED_LOCK(&c->rlock);
    if (!atomic_load(&c->main_waiting))
        return false;
    atomic_store(&c->main_waiting, false);
    c->handback = true;
    pthread_cond_broadcast(&c->rcond);
    return true;
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Nothing is buffered or in flight, the client has all our replies: before
 * blocking in recv(), poll the socket for up to spin_us
 * (servers.nbd.busy_poll_us). A client at queue depth 1 sends its next
 * request a few microseconds after our reply reaches it; if this thread
 * blocks meanwhile, its CPU goes idle, and on a VM an idle vCPU is halted:
 * waking it for the next request costs tens of microseconds, more than the
 * request itself. A spin only pays if it caught the request and
 * kept its CPU to itself all along (else something else wanted this CPU —
 * perhaps the client itself — and spinning took it from them). Spins that
 * do not pay back off: after SPIN_MISSES in a row, the next
 * SPIN_BACKOFF_MIN.. waits block at once, doubling up to SPIN_BACKOFF_MAX
 * while it stays so. Every SPIN_PROBE paying spins, one wait blocks instead
 * (a probe): if blocking brought the request sooner than spinning does (the
 * scheduler put us next to the client, say), spinning backs off too. At
 * most max_spinners readers spin at a time.
 */
static void spin_back_off(struct conn *c)
{
    c->spin_misses = 0;
    c->spin_hits = 0;
    if (c->spin_backoff < SPIN_BACKOFF_MIN)
        c->spin_backoff = SPIN_BACKOFF_MIN;
    c->spin_skip = c->spin_backoff;
    if (c->spin_backoff < SPIN_BACKOFF_MAX)
        c->spin_backoff *= 2;
}

static void reader_spin(struct conn *c)
{
    struct gd_server *s = c->srv;
    if (s->max_spinners == 0)
        return; /* servers.nbd.busy_poll_us: 0 */
    if (c->rbuf_pos != c->rbuf_len || !c->rbuf)
        return; /* part of a header is here: the rest is on its way */
    if (c->tls && gd_tls_pending(c->tls))
        return; /* TLS holds decrypted bytes: the read that follows finds them */
    {
        /* Requests still running (in the pool): their replies, not us,
         * make the client send more, and the pool needs the CPUs. */
        SCOPED_LOCK(&c->lock);
        if (c->inflight > 0)
            return;
    }
    if (c->spin_skip > 0) {
        c->spin_skip--;
        return;
    }
    if (c->spin_hits >= SPIN_PROBE) {
        c->spin_hits = 0;
        int64_t t0 = clock_us(CLOCK_MONOTONIC);
        if (atomic_load(&s->parking))
            return; /* a takeover: the read that follows parks */
        bool began = nbd_recv_begin(c); /* a takeover may interrupt the wait */
        int pr = nbd_conn_poll_in(c, -1);
        nbd_recv_end(c, began);
        if (pr == 1 && clock_us(CLOCK_MONOTONIC) - t0 < c->spin_avg_us)
            spin_back_off(c);
        return; /* (the read that follows finds the request) */
    }
    if (atomic_fetch_add(&s->spinners, 1) >= s->max_spinners) {
        atomic_fetch_sub(&s->spinners, 1);
        return;
    }
    int64_t cpu0 = clock_us(CLOCK_THREAD_CPUTIME_ID);
    int64_t t0 = clock_us(CLOCK_MONOTONIC);
    ssize_t r;
    do
        r = nbd_conn_recv(c, c->rbuf, RBUF_SIZE, MSG_DONTWAIT);
    while (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) &&
           clock_us(CLOCK_MONOTONIC) < t0 + s->spin_us);
    atomic_fetch_sub(&s->spinners, 1);
    if (r > 0) {
        c->rbuf_pos = 0;
        c->rbuf_len = (size_t)r;
    }
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return; /* EOF or an error: the blocking read that follows sees it again */
    /* on the CPU for at least 3/4 of the spin: nobody else wanted it */
    int64_t cpu = clock_us(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    int64_t took = clock_us(CLOCK_MONOTONIC) - t0;
    if (r > 0 && 4 * cpu >= 3 * took) {
        c->spin_misses = 0;
        c->spin_backoff = SPIN_BACKOFF_MIN;
        c->spin_avg_us = c->spin_hits++ ? (3 * c->spin_avg_us + took) / 4 : took;
        return;
    }
    if (++c->spin_misses >= SPIN_MISSES)
        spin_back_off(c);
}

/*
 * The reader role: read a request, run it inline or queue it on the pool,
 * repeat. Returns when the connection ends (rd_stop set) or the role was
 * lost: stolen by the watchdog while this thread ran a slow request, or (a
 * relief thread, is_main false) handed back to the connection's thread.
 */
static void reader_loop(struct conn *c, bool is_main)
{
    struct gd_server *s = c->srv;
    struct batch *b = &c->batch;
    for (;;) {
        if (!request_buffered(c)) {
            nbd_batch_submit(c);
            nbd_conn_flush(c); /* about to wait for the client: send what we hold */
            if (is_main) {
                reader_spin(c);
            } else {
                /* A relief thread must not sit in recv() for an idle client
                 * once the connection's own thread is free again. */
                for (;;) {
                    if (relief_hand_back(c))
                        return; /* (the batch is empty here) */
                    if (nbd_conn_poll_in(c, RELIEF_POLL_MS) != 0)
                        break;
                }
            }
        } else if (!is_main && atomic_load(&c->main_waiting)) {
            /* (the batch goes first: once handed back, the role's state is
             * the other thread's) */
            nbd_batch_submit(c);
            if (relief_hand_back(c))
                return;
        }
        struct req *q = NULL;
        int r = read_request(c, &q, !is_main);
        if (r == -2) {
            /* Waiting for budget, and the connection's thread is free. */
            nbd_batch_submit(c);
            if (relief_hand_back(c))
                return;
            continue;
        }
        if (r == -4)
            continue; /* a relief reader waits in its polling loop instead */
        if (r == -3) {
            /* A takeover, at a request boundary: what we hold goes out,
             * then the connection's own thread parks (a relief thread
             * gives it the role: pool threads must stay free to finish
             * the requests in flight). */
            nbd_batch_submit(c);
            nbd_conn_flush(c);
            if (!is_main) {
                while (!relief_hand_back(c)) {
                    struct timespec ts = { 0, 1000000L };
                    nanosleep(&ts, NULL);
                }
                return;
            }
            if (nbd_park(c) == PARK_RESUME)
                continue;
            SCOPED_LOCK(&c->rlock); /* handed over, or its export is gone */
            c->rd_stop = true;
            pthread_cond_broadcast(&c->rcond);
            return;
        }
        if (r < 0) {
            nbd_batch_submit(c);
            nbd_conn_flush(c);
            SCOPED_LOCK(&c->rlock);
            c->rd_stop = true;
            pthread_cond_broadcast(&c->rcond);
            return;
        }
        if (r == 0)
            continue;
        if (!run_inline(&q->r) && !flush_inline(c, &q->r)) {
            gd_pool_submit(s->pool, &q->job);
            continue;
        }
        /* A write with more requests waiting goes to the pool: writes cost
         * the library far more CPU than reads (the journal), so running
         * them in parallel pays for the hand-off. */
        if (q->r.type == NBD_CMD_WRITE && request_buffered(c)) {
            nbd_batch_submit(c);
            gd_pool_submit(s->pool, &q->job);
            continue;
        }
        /* Many reads queued up: hand them to the pool in batches, so the
         * other CPUs help, at one wake-up per BATCH requests. The last
         * ones (and everything at low queue depths) run right here. */
        if (q->r.type == NBD_CMD_READ && requests_buffered(c) >= 2 * BATCH) {
            q->batch_next = NULL;
            if (b->tail)
                b->tail->batch_next = q;
            else
                b->head = q;
            b->tail = q;
            if (++b->n >= BATCH)
                nbd_batch_submit(c);
            continue;
        }
        nbd_batch_submit(c);
        q->hold = request_buffered(c);
        uint64_t v = atomic_load(&c->rd_state);
        uint64_t busy = ((v >> 2) + 1) << 2 | RD_IN_REQ;
        atomic_store(&c->rd_state, busy);
        if (atomic_load(&s->wd_asleep))
            wd_wake(s);
        nbd_run_request(&q->job);
        uint64_t expect = busy;
        if (!atomic_compare_exchange_strong(&c->rd_state, &expect, busy & ~(uint64_t)3)) {
            /* Stolen: a relief thread reads now. Our reply may have been
             * held back after the steal released the cork: send it. */
            nbd_conn_flush(c);
            return;
        }
    }
}

/* A pool job: take over the reader role the watchdog stole. */
static void relief_main(struct gd_job *job)
{
    struct conn *c = (struct conn *)((char *)job - offsetof(struct conn, relief_job));
    bool run = false;
    {
        SCOPED_LOCK(&c->rlock);
        if (!c->rd_stop && atomic_load(&c->main_waiting)) {
            /* The connection's thread is free already: it reads. */
            atomic_store(&c->main_waiting, false);
            c->handback = true;
            pthread_cond_broadcast(&c->rcond);
        } else if (!c->rd_stop) {
            run = true;
        }
    }
    if (run) {
        role_take(c);
        reader_loop(c, false);
    }
    SCOPED_LOCK(&c->rlock);
    c->relief_refs--;
    pthread_cond_broadcast(&c->rcond);
}

/* The watchdog found c's reader in the same request for a whole tick. */
static void wd_steal(struct gd_server *s, struct conn *c, uint64_t v)
{
    {
        SCOPED_LOCK(&c->rlock);
        if (c->rd_stop || !atomic_compare_exchange_strong(&c->rd_state, &v,
                                                          (v & ~(uint64_t)3) | RD_STOLEN))
            return;
        c->relief_refs++;
        c->reliefs++;
        gd_latency_relief(c->lat); /* per export, for the metrics */
        c->relief_job.fn = relief_main;
        gd_pool_submit(s->pool, &c->relief_job);
    }
    /* Replies the stuck reader held back go out now. */
    SCOPED_LOCK(&c->wlock);
    if (c->corked) {
        c->corked = false;
        if (c->outq_head)
            pthread_cond_signal(&c->wcond);
    }
}

/* One tick: true if some reader is running a request. */
static bool wd_scan(struct gd_server *s)
{
    bool active = false;
    SCOPED_LOCK(&s->lock);
    for (struct conn *c = s->conns; c; c = c->next) {
        uint64_t v = atomic_load(&c->rd_state);
        if ((v & 3) == RD_IN_REQ) {
            active = true;
            if (v == c->wd_seen)
                wd_steal(s, c, v);
        }
        c->wd_seen = v;
    }
    return active;
}

/*
 * The server's watchdog: every WD_TICK_US it looks at each connection's
 * reader; one found in the same inline request as at the previous tick is
 * relieved (wd_steal). After WD_IDLE_TICKS ticks without any request
 * running it sleeps until a reader starts one (wd_asleep; the reader stores
 * its state before it looks at wd_asleep, the watchdog stores wd_asleep
 * before its last scan, so one of them sees the other).
 */
void *nbd_watchdog_main(void *arg)
{
    struct gd_server *s = arg;
    unsigned idle = 0;
    pthread_mutex_lock(&s->wd_lock);
    while (!s->wd_stop) {
        if (idle >= WD_IDLE_TICKS) {
            atomic_store(&s->wd_asleep, true);
            pthread_mutex_unlock(&s->wd_lock);
            bool active = wd_scan(s);
            pthread_mutex_lock(&s->wd_lock);
            while (!active && !s->wd_stop && atomic_load(&s->wd_asleep))
                pthread_cond_wait(&s->wd_cond, &s->wd_lock);
            atomic_store(&s->wd_asleep, false);
            idle = 0;
            continue;
        }
        pthread_mutex_unlock(&s->wd_lock);
        struct timespec ts = { 0, WD_TICK_US * 1000L };
        nanosleep(&ts, NULL);
        bool active = wd_scan(s);
        idle = active ? 0 : idle + 1;
        pthread_mutex_lock(&s->wd_lock);
    }
    pthread_mutex_unlock(&s->wd_lock);
    return NULL;
}

/* The connection's thread: the reader until the role is stolen, then back
 * again when the relief hands it back; returns when transmission ends and
 * no relief job refers to c any more. */
static void conn_reader(struct conn *c)
{
    for (;;) {
        reader_loop(c, true);
        atomic_store(&c->main_waiting, true);
        {
            /* A relief reader waiting for budget gives up now. */
            SCOPED_LOCK(&c->lock);
            pthread_cond_broadcast(&c->cond);
        }
        {
            SCOPED_LOCK(&c->srv->lock);
            pthread_cond_broadcast(&c->srv->cond);
        }
        SCOPED_LOCK(&c->rlock);
        if (!c->rd_stop) {
            while (!c->handback && !c->rd_stop)
                pthread_cond_wait(&c->rcond, &c->rlock);
        }
        atomic_store(&c->main_waiting, false);
        if (c->handback) {
            c->handback = false;
            role_take(c);
            continue;
        }
        while (c->relief_refs > 0)
            pthread_cond_wait(&c->rcond, &c->rlock);
        return;
    }
}

/* Serves requests until DISC, EOF or a protocol violation. */
void nbd_transmission(struct conn *c)
{
    if (!c->rbuf) /* (an adopted connection brings its own, with bytes in it) */
        c->rbuf = malloc(RBUF_SIZE); /* without it, reads are unbuffered */
    /* Room for a full queue of replies, so they rarely wait for the writer
     * thread (the kernel caps this at net.core.wmem_max). */
    int sndbuf = SOCKET_SNDBUF;
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    nbd_set_timeout_ms(c->fd, SO_RCVTIMEO, 0);
    nbd_set_timeout_ms(c->fd, SO_SNDTIMEO, c->srv->reply_timeout_ms);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int e = pthread_create(&c->writer, &attr, nbd_writer_main, c);
    pthread_attr_destroy(&attr);
    if (e) {
        gd_err("connection %" PRIu64 ": cannot start writer thread: %s", c->id, strerror(e));
        return;
    }
    c->writer_started = true;
    conn_reader(c);
    free(c->rbuf);
    c->rbuf = NULL;
}

static void conn_wait_idle(struct conn *c)
{
    SCOPED_LOCK(&c->lock);
    while (c->inflight > 0)
        pthread_cond_wait(&c->cond, &c->lock);
}

void *nbd_reader_main(void *arg)
{
    struct conn *c = arg;
    struct gd_server *s = c->srv;
    nbd_reader_self = c;
    /* Per call; the accept loop enforces the deadline of the whole handshake. */
    int hs = 1;
    if (!c->adopted) {
        nbd_set_timeout_ms(c->fd, SO_RCVTIMEO, s->hs_timeout_ms);
        nbd_set_timeout_ms(c->fd, SO_SNDTIMEO, s->hs_timeout_ms);
        hs = nbd_handshake(c);
        nbd_hs_end(c);
    }
    if (hs == 1) {
        gd_info("connection %" PRIu64 ": export %s (%" PRIu64 " bytes%s%s%s)%s", c->id,
                c->export_name, c->params.size,
                (c->params.eflags & NBD_FLAG_READ_ONLY) ? ", read-only" : "",
                c->params.structured ? ", structured replies" : "",
                c->params.meta_allocation ? ", base:allocation" : "",
                c->adopted ? ", taken over from the previous process" : "");
        nbd_transmission(c);
        /* The spec: handle every outstanding request before closing. */
        conn_wait_idle(c);
        {
            SCOPED_LOCK(&c->wlock);
            c->writer_stop = true;
            pthread_cond_broadcast(&c->wcond);
        }
        if (c->writer_started)
            pthread_join(c->writer, NULL);
        nbd_conn_free_spares(c);
        gd_export_count_conn(c->exp, -1);
        gd_export_release(c->exp, 0);
        atomic_store_explicit(&c->exp, NULL, memory_order_release);
        gd_info("connection %" PRIu64 ": %s after %" PRIu64 " requests (%" PRIu64
                " slow inline ones handed over)", c->id,
                c->handed_over ? "handed to the new process" : "closed",
                atomic_load_explicit(&c->requests, memory_order_relaxed), c->reliefs);
    } else {
        gd_debug("connection %" PRIu64 ": ended during handshake", c->id);
    }
    /* Nobody else uses the session any more (writer joined, no relief). */
    gd_tls_session_end(c->tls);
    c->tls = NULL;
    {
        /* Under wlock: the shutdown path may be calling shutdown() on it. */
        SCOPED_LOCK(&c->wlock);
        close(c->fd);
        c->fd = -1;
    }
    SCOPED_LOCK(&s->lock);
    c->finished = true;
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one);
    (void)w;
    pthread_cond_broadcast(&s->cond);
    return NULL;
}
