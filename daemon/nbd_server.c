/*
 * nbd_server.c — listeners, connections and request execution for glidefsd.
 *
 * Per connection, after the handshake, one thread holds the reader role: it
 * reads request headers (and write payloads), judges each with
 * nbd_validate_request() and runs the ordinary ones (reads, writes, trims of
 * the cache) itself, inline, then writes the reply: a cache hit costs no
 * thread hand-off and no wake-up at all. Requests known to be slow (FLUSH,
 * FUA, CACHE, NO_HOLE zeroes, big payloads) go to the shared worker pool.
 * Whether a read hits the cache is not known before it runs, so a server
 * watchdog (ticking only while requests run) notices a reader that has spent
 * more than a tick in one request (a miss fetching from the store) and gives
 * the reader role to a pool thread ("relief"); the stuck thread finishes its
 * request and steps back, and the relief hands the role back to the
 * connection's thread once that is free again. So a slow request never holds
 * up the ones behind it for more than a tick or two.
 *
 * Before it blocks for the next request, the reader busy-polls the socket
 * for a few microseconds (reader_spin(): a halted vCPU is slow to wake), and
 * stops doing so while it catches nothing.
 *
 * Replies: while more requests are already buffered, the reader holds its
 * replies back ("cork") and sends them together in one sendmsg() when it
 * runs out of buffered requests (or has 32 of them). Sends never block
 * (MSG_DONTWAIT) under the connection's write lock; what the socket does not
 * take goes to the writer thread. So nobody running requests ever waits on a
 * slow client, and replies go out in any order.
 *
 * Memory is bounded: each connection has at most MAX_INFLIGHT requests and
 * servers.nbd.connection_buffer_memory bytes of buffers in flight, and all
 * connections together at most servers.nbd.buffer_memory; readers stop
 * reading while over budget. A connection's first CONN_RESERVE bytes do not
 * wait for the global budget, so clients that do not read their replies can
 * stall only themselves until servers.nbd.reply_timeout_ms drops them.
 *
 * Hostile clients (issue 21): the whole handshake has a deadline
 * (servers.nbd.handshake_timeout_ms, enforced by the accept loop); at most a
 * quarter of the connection cap may be in the handshake, and a newcomer that
 * finds the cap or that quarter full cuts the oldest unfinished handshake
 * short, so clients that trickle bytes cannot lock real ones out. The cap
 * (servers.nbd.max_connections) is kept at most half the open-file limit,
 * and when accept() runs out of descriptors anyway the loop backs off
 * instead of spinning; repeated log lines are rate-limited.
 */
#include "nbd_server.h"

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

#define MAX_INFLIGHT 128                      /* requests per connection */
#define CONN_RESERVE (256u * 1024)            /* in flight per connection without the global budget */
#define EVICT_SLACK 16                        /* connections over the cap while evicted ones close */
#define HS_TICK_MS 100                        /* handshake deadlines are checked this often */
#define ACCEPT_BACKOFF_MIN_MS 20              /* accept() out of descriptors: pause ... */
#define ACCEPT_BACKOFF_MAX_MS 1000            /* ... doubling up to this */
#define LOG_EVERY_MS 10000                    /* one line per kind of refusal this often */
#define SHUTDOWN_GRACE_S 2                    /* for clients to leave after ESHUTDOWN */
#define MAX_EXTENTS 1024                      /* descriptors per BLOCK_STATUS reply */
#define ZERO_CHUNK (1u << 20)
#define THREAD_STACK (1024u * 1024)           /* readers run requests (library calls) too */
#define SOCKET_SNDBUF (4 * 1024 * 1024)
#define INLINE_MAX (256u * 1024)              /* bigger requests go to the pool */
#define WD_TICK_US 1000                       /* reader stuck >= 1 tick gets relief */
#define WD_IDLE_TICKS 200                     /* watchdog sleeps after this many idle ticks */
#define RELIEF_POLL_MS 10                     /* relief reader checks for hand-back */
#define SPIN_MISSES 4                         /* spins in a row that do not pay: back off */
#define SPIN_BACKOFF_MIN 64                   /* waits without spinning after a back-off ... */
#define SPIN_BACKOFF_MAX 8192                 /* ... doubling up to this */
#define SPIN_PROBE 64                         /* paying spins between two probes */
#define CORK_MAX_REPLIES 32
#define CORK_MAX_BYTES (256u * 1024)
#define BATCH 8                               /* reads per pool job when many are queued */
#define REQ_CACHE_MAX 64                      /* spare requests kept per connection */
#define REQ_CACHE_BUF (128u * 1024)           /* ... with buffers up to this size */

/* Reader state word (conn.rd_state): seq << 2 | one of these. */
#define RD_IDLE 0u       /* reading, or between requests */
#define RD_IN_REQ 1u     /* running a request inline */
#define RD_STOLEN 2u     /* the watchdog gave the role to a relief thread */

struct gd_server;
struct req;

/* Reads collected for one pool job, see reader_loop(). */
struct batch {
    struct req *head, *tail;
    unsigned n;
};

struct conn {
    struct gd_server *srv;
    struct conn *next;          /* server's list */
    int fd;
    uint64_t id;
    char peer[96];
    pthread_t reader;

    /* Set once the handshake entered transmission. */
    struct gd_export *exp;
    glidefs_volume *vol;
    const char *export_name;    /* the registry's copy */
    struct nbd_txn_params params;
    struct gd_latency *lat;     /* this export's latency histograms */

    /* In-flight accounting (lock). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned inflight;
    size_t inflight_bytes;
    bool stopping;              /* server shutdown: new requests get ESHUTDOWN */
    struct req *spare;          /* finished requests kept for reuse (no malloc per request) */
    unsigned nspare;

    /* Reply path (wlock). */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    struct req *outq_head, *outq_tail;
    unsigned outq_n;
    size_t outq_bytes;
    bool corked;                /* the reader holds replies back; see reply_send() */
    bool writer_busy;
    bool writer_stop;
    bool dead;                  /* socket failed or hard disconnect: drop replies */
    atomic_bool killed;         /* = dead, for readers waiting for budget (no wlock) */
    pthread_t writer;
    bool writer_started;

    /* Reader role, see reader_loop(). rd_state is seq << 2 | RD_*: the owner
     * stores it, the watchdog may only CAS RD_IN_REQ -> RD_STOLEN. */
    _Atomic uint64_t rd_state;
    uint64_t wd_seen;           /* watchdog only: rd_state at its last tick */
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    bool rd_stop;               /* transmission over (rlock) */
    atomic_bool main_waiting;   /* the connection's thread lost the role and waits for it */
    bool handback;              /* (rlock) the role is the connection thread's again */
    int relief_refs;            /* (rlock) relief jobs queued or running */
    struct gd_job relief_job;
    /* A request header read by a relief reader that gave up the role. */
    bool stash;
    struct nbd_request stash_r;
    enum nbd_verdict stash_v;
    uint32_t stash_err;

    /* Bytes received ahead of need (owned by whoever holds the reader role):
     * at high queue depths one recv() brings in many request headers. */
    uint8_t *rbuf;
    size_t rbuf_pos, rbuf_len;
    struct batch batch;         /* also the reader role's */

    /* Busy-poll before blocking (the connection's own reader only). */
    unsigned spin_misses;       /* spins in a row that did not pay */
    unsigned spin_skip;         /* waits left to block at once */
    unsigned spin_backoff;      /* the next back-off's length */
    unsigned spin_hits;         /* spins that paid since the last probe */
    int64_t spin_avg_us;        /* how long a paying spin waits, on average */

    uint64_t requests;          /* atomic */
    uint64_t reliefs;           /* (rlock) reader role stolen by the watchdog */
    bool finished;              /* reader done; waiting to be joined */
    /* The handshake (srv->lock). */
    bool in_hs;                 /* not in transmission yet */
    bool evicted;               /* handshake cut short (deadline, or room for a newcomer) */
    bool hs_busy;               /* the server is opening an export for it: not its fault */
    int64_t hs_started_ms;      /* moved forward by the time the server was busy */
    int64_t hs_busy_since;
};

struct req {
    struct gd_job job;          /* first: the pool hands us back this pointer */
    struct conn *c;
    struct nbd_request r;
    uint8_t *buf;               /* write payload, read data, or block-status chunk */
    size_t bufcap;
    size_t charged;             /* bytes counted against the budgets */
    bool hold;                  /* the reader has more requests: cork this reply */
    struct req *batch_next;     /* see reader_loop() */
    struct req *next_out;
    size_t outlen;              /* reply bytes, for the cork's limit */
    uint8_t hdr[NBD_STRUCTURED_REPLY_SIZE + 8 + 6 + NBD_MAX_ERRMSG];
    struct iovec iov[2];
    int iovcnt;
};

struct gd_server {
    const glidefs_config *cfg;
    struct gd_registry *reg;
    struct gd_pool *pool;
    int listen_fds[8];
    int nlisten;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool unix_bound;
    int wake_fd;                /* eventfd: a connection finished */
    atomic_bool shutting_down;
    atomic_int spinners;        /* readers busy-polling now, at most max_spinners */
    int max_spinners;           /* 0: no busy-polling */
    int spin_us;

    /* Watchdog, see watchdog_main(). */
    pthread_t wd;
    bool wd_started;
    bool wd_inited;
    pthread_mutex_t wd_lock;
    pthread_cond_t wd_cond;
    bool wd_stop;
    atomic_bool wd_asleep;

    pthread_mutex_t lock;       /* conns list, counters, global budget */
    pthread_cond_t cond;
    struct conn *conns;
    int nconns;
    int nhs;                    /* connections in their handshake */
    uint64_t next_id;
    size_t global_bytes;

    /* Limits, from the config (see the top of the file). */
    int max_conns;
    int max_hs;
    int hs_timeout_ms;
    int reply_timeout_ms;
    size_t global_budget;
    size_t conn_budget;

    /* The accept loop's own. */
    int64_t accept_pause_until; /* out of descriptors: not accepting until then */
    int accept_backoff_ms;
    struct ratelog { int64_t next_ms; unsigned dropped; } rl_accept, rl_refuse, rl_evict;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A refused client per millisecond must not write a line per millisecond:
 * one line per LOG_EVERY_MS, which says how many were left out. */
static bool ratelog_ok(struct ratelog *rl, unsigned *dropped)
{
    int64_t now = mono_ms();
    if (now < rl->next_ms) {
        rl->dropped++;
        return false;
    }
    *dropped = rl->dropped;
    rl->dropped = 0;
    rl->next_ms = now + LOG_EVERY_MS;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Socket helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Read exactly n bytes. 1 on success, 0 on EOF before the first byte,
 * -1 on error, timeout or a short read. */
static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
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
static int discard(int fd, uint64_t n)
{
    static __thread uint8_t scratch[16384];
    while (n > 0) {
        size_t k = n < sizeof scratch ? (size_t)n : sizeof scratch;
        if (read_full(fd, scratch, k) != 1)
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

/* Blocking send of everything in iov (modified). 0 or -1. */
static int send_iov_blocking(int fd, struct iovec *iov, int *iovcnt)
{
    int i = 0;
    while (i < *iovcnt) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        struct msghdr mh = { .msg_iov = iov + i, .msg_iovlen = (size_t)(*iovcnt - i) };
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        i = iov_advance(iov, i, *iovcnt, (size_t)w);
    }
    return 0;
}

/* Send everything in iov (modified) by deadline_ms (mono_ms), never blocking
 * past it. 0, -1 on a socket error, -ETIMEDOUT when the client did not take
 * it in time. */
static int send_iov_deadline(int fd, struct iovec *iov, int *iovcnt, int64_t deadline_ms)
{
    int i = 0;
    while (i < *iovcnt) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        struct msghdr mh = { .msg_iov = iov + i, .msg_iovlen = (size_t)(*iovcnt - i) };
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            int64_t left = deadline_ms - mono_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left) < 0 && errno != EINTR)
                return -1;
            continue;
        }
        i = iov_advance(iov, i, *iovcnt, (size_t)w);
    }
    return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };
    int cnt = 1;
    return send_iov_blocking(fd, &iov, &cnt);
}

static void set_timeout_ms(int fd, int opt, int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

#define RBUF_SIZE (64u * 1024)

/* Like read_full, but through the connection's read-ahead buffer. Large
 * reads (write payloads) go straight into the destination once the buffered
 * bytes are used up. */
static int conn_read(struct conn *c, void *buf, size_t n)
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
            int r = read_full(c->fd, p + got, n - got);
            return r == 1 ? 1 : (r == 0 && got == 0 ? 0 : -1);
        }
        ssize_t r = recv(c->fd, c->rbuf, RBUF_SIZE, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return (r == 0 && got == 0) ? 0 : -1;
        c->rbuf_pos = 0;
        c->rbuf_len = (size_t)r;
    }
    return 1;
}

static int conn_discard(struct conn *c, uint64_t n)
{
    static __thread uint8_t scratch[16384];
    while (n > 0) {
        size_t k = n < sizeof scratch ? (size_t)n : sizeof scratch;
        if (conn_read(c, scratch, k) != 1)
            return -1;
        n -= k;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Budgets and request lifetime                                              */
/* ------------------------------------------------------------------------ */

static void conn_flush(struct conn *c);
static void batch_submit(struct conn *c);

/* Wait until this connection and the server can hold `bytes` more. A request
 * always fits once nothing else is in flight, so progress is guaranteed.
 * Called by the reader only. A relief reader (a pool thread) does not wait
 * while the connection's own thread is free: it gives up (*give_up, NULL),
 * so that pool threads never all sit waiting for requests queued behind
 * them on the pool. */
static struct req *req_new(struct conn *c, size_t bytes, bool *stopping, bool relief,
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
                batch_submit(c);
                conn_flush(c);
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
static void req_free(struct req *q)
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
static void conn_free_spares(struct conn *c)
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
static void conn_kill_locked(struct conn *c)
{
    if (!c->dead) {
        c->dead = true;
        atomic_store(&c->killed, true);
        shutdown(c->fd, SHUT_RDWR);
        pthread_cond_broadcast(&c->wcond);
    }
}

static void conn_kill(struct conn *c)
{
    SCOPED_LOCK(&c->wlock);
    conn_kill_locked(c);
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */
/* ------------------------------------------------------------------------ */

static void free_sent(struct req *done)
{
    while (done) {
        struct req *q = done;
        done = q->next_out;
        req_free(q);
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
            struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
            do
                w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
            while (w < 0 && errno == EINTR);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                conn_kill_locked(c);
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
 * CORK_MAX_REPLIES / CORK_MAX_BYTES, or until conn_flush(). */
static void reply_send(struct req *q)
{
    struct conn *c = q->c;
    struct req *done = NULL;
    pthread_mutex_lock(&c->wlock);
    if (c->dead) {
        pthread_mutex_unlock(&c->wlock);
        req_free(q);
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
static void conn_flush(struct conn *c)
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

static void *writer_main(void *arg)
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
        int rc = dead ? 0 : send_iov_deadline(c->fd, q->iov, &q->iovcnt,
                                               mono_ms() + c->srv->reply_timeout_ms);
        req_free(q);
        pthread_mutex_lock(&c->wlock);
        if (rc < 0) {
            if (!c->dead && rc == -ETIMEDOUT)
                gd_info("connection %" PRIu64 ": client took no reply for %d ms "
                        "(servers.nbd.reply_timeout_ms); dropping it", c->id,
                        c->srv->reply_timeout_ms);
            else if (!c->dead)
                gd_info("connection %" PRIu64 ": client stopped reading replies; dropping it",
                        c->id);
            conn_kill_locked(c);
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

static const char *wire_err_text(uint32_t e)
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
static void reply_error(struct req *q, uint32_t err, const char *why)
{
    struct conn *c = q->c;
    q->hold = false; /* errors are rare: no need to hold them back */
    if (c->params.structured) {
        char msg[NBD_MAX_ERRMSG + 1];
        snprintf(msg, sizeof msg, "%s: %s", nbd_cmd_name(q->r.type), why ? why : wire_err_text(err));
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

static void run_request(struct gd_job *job)
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
        reply_error(q, nbd_errno_to_wire(rc), glidefs_strerror(rc));
        return;
    }
    reply_ok(q);
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
    int64_t now = mono_ms();
    if (begin) {
        c->hs_busy = true;
        c->hs_busy_since = now;
    } else {
        c->hs_busy = false;
        c->hs_started_ms += now - c->hs_busy_since;
    }
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
    if (rc < 0) {
        /* the client (qemu prints it) learns why, not just "unknown" */
        snprintf(info->error, sizeof info->error, "export %s cannot be opened here: %s", canon,
                 glidefs_strerror(rc));
        return rc == -ESHUTDOWN ? NBD_REP_ERR_SHUTDOWN : NBD_REP_ERR_UNKNOWN;
    }
    glidefs_volume *vol = gd_export_volume(e);
    info->size = glidefs_volume_size(vol);
    info->read_only = glidefs_volume_read_only(vol) != 0;
    snprintf(info->canonical, sizeof info->canonical, "%s", canon);
    snprintf(info->description, sizeof info->description, "GlideFS volume %s%s", canon,
             info->read_only ? " (read-only on this node)" : "");
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
    if (rc < 0) {
        snprintf(info->error, sizeof info->error, "export %s cannot be opened here: %s", canon,
                 glidefs_strerror(rc));
        return rc == -ESHUTDOWN ? NBD_REP_ERR_SHUTDOWN : NBD_REP_ERR_UNKNOWN;
    }
    glidefs_volume *vol = gd_export_volume(e);
    info->size = glidefs_volume_size(vol);
    info->read_only = glidefs_volume_read_only(vol) != 0;
    snprintf(info->canonical, sizeof info->canonical, "%s", canon);
    snprintf(info->description, sizeof info->description, "GlideFS volume %s%s", canon,
             info->read_only ? " (read-only on this node)" : "");
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
static void hs_end(struct conn *c)
{
    SCOPED_LOCK(&c->srv->lock);
    if (c->in_hs) {
        c->in_hs = false;
        c->srv->nhs--;
    }
}

/* 1: entered transmission; 0: the client ended the session; -1: dropped. */
static int handshake(struct conn *c)
{
    uint8_t greet[NBD_GREETING_SIZE];
    nbd_encode_greeting(greet);
    if (send_all(c->fd, greet, sizeof greet) < 0)
        return -1;
    uint8_t cf[4];
    if (read_full(c->fd, cf, 4) != 1)
        return -1;
    uint32_t cflags = nbd_get32(cf);
    if (nbd_check_client_flags(cflags) < 0) {
        gd_info("connection %" PRIu64 ": unknown client flags 0x%x; dropping", c->id, cflags);
        return -1;
    }

    struct nbd_hs hs;
    nbd_hs_init(&hs, &hs_ops, c, cflags);
    uint8_t *data = NULL;
    int result = -1;
    for (;;) {
        uint8_t oh[NBD_OPTION_HEADER_SIZE];
        uint32_t opt, len;
        if (read_full(c->fd, oh, sizeof oh) != 1)
            break;
        if (nbd_decode_option_header(oh, &opt, &len) < 0) {
            gd_info("connection %" PRIu64 ": bad option magic; dropping", c->id);
            break;
        }
        struct nbd_buf out = { 0 };
        enum nbd_hs_result hr;
        if (len > NBD_MAX_OPTION_LEN) {
            if (discard(c->fd, len) < 0)
                break;
            hr = nbd_hs_option_too_big(&hs, opt, &out);
        } else {
            free(data);
            data = malloc(len ? len : 1);
            if (!data || (len && read_full(c->fd, data, len) != 1))
                break;
            hr = nbd_hs_option(&hs, opt, data, len, &out);
        }
        gd_debug("connection %" PRIu64 ": option %" PRIu32 " (%" PRIu32 " bytes) -> %d", c->id,
                 opt, len, (int)hr);
        if (hr == NBD_HS_GO && !out.oom) {
            /* Before the reply goes out: a client that has it must find the
             * export connected (the REST state, the idle drain). */
            /* atomic: gd_server_kick_export() reads it from another thread */
            __atomic_store_n(&c->exp, hs.handle, __ATOMIC_RELEASE);
            hs.handle = NULL;
            c->vol = gd_export_volume(c->exp);
            c->export_name = gd_export_name(c->exp);
            c->lat = gd_latency_for(c->export_name);
            c->params.structured = hs.structured;
            c->params.meta_allocation = hs.meta_allocation;
            c->params.eflags = nbd_export_flags(hs.info.read_only, hs.structured);
            c->params.size = hs.info.size;
            gd_export_count_conn(c->exp, 1);
            hs_end(c); /* before the reply: a client that has it is never cut short */
            result = 1;
        }
        int sent = out.oom ? -1 : send_all(c->fd, out.data, out.len);
        nbd_buf_free(&out);
        if (result == 1)
            break; /* a failed send ends the transmission phase, which uncounts it */
        if (sent < 0 || hr == NBD_HS_DROP)
            break;
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
/* Transmission: the reader role, relief and the watchdog                    */
/* ------------------------------------------------------------------------ */

/* Read and judge one request. Returns 1 with *out set when it is to be
 * executed, 0 when it was answered already (an error reply), -1 when the
 * connection ends (EOF, DISC, or a violation we drop it for), -2 when a
 * relief reader gave up waiting for budget (the header is kept in c->stash
 * for whoever reads next). */
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
    int rr = conn_read(c, h, sizeof h);
    if (rr == 0)
        return -1; /* client closed without DISC */
    if (rr < 0) {
        if (!c->dead)
            gd_info("connection %" PRIu64 ": short read of a request header; dropping", c->id);
        conn_kill(c);
        return -1;
    }
    if (nbd_decode_request(h, &r) < 0) {
        gd_info("connection %" PRIu64 ": bad request magic 0x%08" PRIx32 "; dropping", c->id,
                nbd_get32(h));
        conn_kill(c);
        return -1;
    }
    __atomic_add_fetch(&c->requests, 1, __ATOMIC_RELAXED);
    struct nbd_txn_params params = c->params;
    params.size = glidefs_volume_size(c->vol); /* grows with resize */
    v = nbd_validate_request(&r, &params, &err);
    if (v == NBD_V_DISC)
        return -1;
    if (v == NBD_V_DROP) {
        gd_info("connection %" PRIu64 ": %s of %" PRIu32 " bytes exceeds the maximum "
                "payload; dropping", c->id, nbd_cmd_name(r.type), r.len);
        conn_kill(c);
        return -1;
    }
have_header:;
    size_t bytes = 0;
    if (v == NBD_V_OK && (r.type == NBD_CMD_WRITE || r.type == NBD_CMD_READ))
        bytes = r.len;
    bool stopping = false, give_up = false, gone = false;
    struct req *q = req_new(c, bytes, &stopping, relief, &give_up, &gone);
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
        conn_kill(c);
        return -1;
    }
    q->r = r;
    if (v == NBD_V_OK && r.type == NBD_CMD_WRITE && r.len) {
        if (conn_read(c, q->buf, r.len) != 1) {
            gd_info("connection %" PRIu64 ": short write payload; dropping", c->id);
            req_free(q);
            conn_kill(c);
            return -1;
        }
    } else if (nbd_request_has_payload(&r) && r.len) {
        if (conn_discard(c, r.len) < 0) {
            req_free(q);
            conn_kill(c);
            return -1;
        }
    }
    if (stopping) {
        reply_error(q, NBD_ESHUTDOWN, NULL);
        return 0;
    }
    if (v == NBD_V_ERROR) {
        gd_debug("connection %" PRIu64 ": %s flags 0x%x offset %" PRIu64 " length %" PRIu32
                 " refused: %s", c->id, nbd_cmd_name(r.type), r.flags, r.offset, r.len,
                 wire_err_text(err));
        reply_error(q, err, NULL);
        return 0;
    }
    q->job.fn = run_request;
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
        run_request(&q->job);
        q = next;
    }
}

/* Hand the reads collected by the reader to the pool. */
static void batch_submit(struct conn *c)
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
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int64_t t0 = clock_us(CLOCK_MONOTONIC);
        if (poll(&pfd, 1, -1) == 1 && clock_us(CLOCK_MONOTONIC) - t0 < c->spin_avg_us)
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
        r = recv(c->fd, c->rbuf, RBUF_SIZE, MSG_DONTWAIT);
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
            batch_submit(c);
            conn_flush(c); /* about to wait for the client: send what we hold */
            if (is_main) {
                reader_spin(c);
            } else {
                /* A relief thread must not sit in recv() for an idle client
                 * once the connection's own thread is free again. */
                for (;;) {
                    if (relief_hand_back(c))
                        return; /* (the batch is empty here) */
                    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                    if (poll(&pfd, 1, RELIEF_POLL_MS) != 0)
                        break;
                }
            }
        } else if (!is_main && atomic_load(&c->main_waiting)) {
            /* (the batch goes first: once handed back, the role's state is
             * the other thread's) */
            batch_submit(c);
            if (relief_hand_back(c))
                return;
        }
        struct req *q = NULL;
        int r = read_request(c, &q, !is_main);
        if (r == -2) {
            /* Waiting for budget, and the connection's thread is free. */
            batch_submit(c);
            if (relief_hand_back(c))
                return;
            continue;
        }
        if (r < 0) {
            batch_submit(c);
            conn_flush(c);
            SCOPED_LOCK(&c->rlock);
            c->rd_stop = true;
            pthread_cond_broadcast(&c->rcond);
            return;
        }
        if (r == 0)
            continue;
        if (!run_inline(&q->r)) {
            gd_pool_submit(s->pool, &q->job);
            continue;
        }
        /* A write with more requests waiting goes to the pool: writes cost
         * the library far more CPU than reads (the journal), so running
         * them in parallel pays for the hand-off. */
        if (q->r.type == NBD_CMD_WRITE && request_buffered(c)) {
            batch_submit(c);
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
                batch_submit(c);
            continue;
        }
        batch_submit(c);
        q->hold = request_buffered(c);
        uint64_t v = atomic_load(&c->rd_state);
        uint64_t busy = ((v >> 2) + 1) << 2 | RD_IN_REQ;
        atomic_store(&c->rd_state, busy);
        if (atomic_load(&s->wd_asleep))
            wd_wake(s);
        run_request(&q->job);
        uint64_t expect = busy;
        if (!atomic_compare_exchange_strong(&c->rd_state, &expect, busy & ~(uint64_t)3)) {
            /* Stolen: a relief thread reads now. Our reply may have been
             * held back after the steal released the cork: send it. */
            conn_flush(c);
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
static void *watchdog_main(void *arg)
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
static void transmission(struct conn *c)
{
    c->rbuf = malloc(RBUF_SIZE); /* without it, reads are unbuffered */
    /* Room for a full queue of replies, so they rarely wait for the writer
     * thread (the kernel caps this at net.core.wmem_max). */
    int sndbuf = SOCKET_SNDBUF;
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    set_timeout_ms(c->fd, SO_RCVTIMEO, 0);
    set_timeout_ms(c->fd, SO_SNDTIMEO, c->srv->reply_timeout_ms);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int e = pthread_create(&c->writer, &attr, writer_main, c);
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

static void *reader_main(void *arg)
{
    struct conn *c = arg;
    struct gd_server *s = c->srv;
    /* Per call; the accept loop enforces the deadline of the whole handshake. */
    set_timeout_ms(c->fd, SO_RCVTIMEO, s->hs_timeout_ms);
    set_timeout_ms(c->fd, SO_SNDTIMEO, s->hs_timeout_ms);
    int hs = handshake(c);
    hs_end(c);
    if (hs == 1) {
        gd_info("connection %" PRIu64 ": export %s (%" PRIu64 " bytes%s%s%s)", c->id,
                c->export_name, c->params.size,
                (c->params.eflags & NBD_FLAG_READ_ONLY) ? ", read-only" : "",
                c->params.structured ? ", structured replies" : "",
                c->params.meta_allocation ? ", base:allocation" : "");
        transmission(c);
        /* The spec: handle every outstanding request before closing. */
        conn_wait_idle(c);
        {
            SCOPED_LOCK(&c->wlock);
            c->writer_stop = true;
            pthread_cond_broadcast(&c->wcond);
        }
        if (c->writer_started)
            pthread_join(c->writer, NULL);
        conn_free_spares(c);
        gd_export_count_conn(c->exp, -1);
        gd_export_release(c->exp, 0);
        __atomic_store_n(&c->exp, NULL, __ATOMIC_RELEASE);
        gd_info("connection %" PRIu64 ": closed after %" PRIu64 " requests (%" PRIu64
                " slow inline ones handed over)", c->id,
                __atomic_load_n(&c->requests, __ATOMIC_RELAXED), c->reliefs);
    } else {
        gd_debug("connection %" PRIu64 ": ended during handshake", c->id);
    }
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
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (s->wake_fd < 0) {
        int e = -errno;
        gd_server_free(s);
        return e;
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
    pthread_cond_init(&s->wd_cond, NULL);
    s->wd_inited = true;
    rc = pthread_create(&s->wd, NULL, watchdog_main, s);
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
    s->listen_fds[s->nlisten++] = fd;
    gd_info("listening on unix socket %s", path);
    return 0;
}

static int listen_tcp(struct gd_server *s, const char *spec, char *err, size_t errlen)
{
    char refusal[512], host[256], port[8];
    snprintf(refusal, sizeof refusal, "servers.nbd.tcp is %s, which is not a loopback address: "
             "NBD has no authentication and no TLS yet, so anyone who reaches it "
             "reads and writes every volume. Listen on 127.0.0.1 (or use "
             "servers.nbd.unix_socket), or set servers.nbd.insecure_tcp: true on a "
             "network only trusted hosts reach", spec);
    int fd = gd_listen_tcp("servers.nbd.tcp", spec, 128, s->cfg->nbd_insecure_tcp, refusal, NULL,
                           host, port, err, errlen);
    if (fd < 0)
        return fd;
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
    int64_t now = mono_ms();
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
    int64_t now = mono_ms();
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
            s->accept_pause_until = mono_ms() + s->accept_backoff_ms;
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
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_mutex_init(&c->wlock, NULL);
    pthread_cond_init(&c->wcond, NULL);
    pthread_mutex_init(&c->rlock, NULL);
    pthread_cond_init(&c->rcond, NULL);
    char why[200] = "";
    bool admitted;
    {
        SCOPED_LOCK(&s->lock);
        admitted = admit_locked(s, why, sizeof why);
        if (admitted) {
            c->id = ++s->next_id;
            c->in_hs = true;
            c->hs_started_ms = mono_ms();
            s->nhs++;
            c->next = s->conns;
            s->conns = c;
            s->nconns++;
        }
    }
    if (!admitted) {
        close(fd);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->wlock);
        pthread_cond_destroy(&c->wcond);
        pthread_mutex_destroy(&c->rlock);
        pthread_cond_destroy(&c->rcond);
        free(c);
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
    int e = pthread_create(&c->reader, &attr, reader_main, c);
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
        free(c);
    }
}

static void conn_free(struct conn *c)
{
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->wlock);
    pthread_cond_destroy(&c->wcond);
    pthread_mutex_destroy(&c->rlock);
    pthread_cond_destroy(&c->rcond);
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
        conn_free(dead);
    }
}

int gd_server_run(struct gd_server *s, int stop_fd)
{
    struct pollfd pfd[10];
    for (;;) {
        int n = 0;
        pfd[n++] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
        int64_t now = mono_ms();
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
            break;
        }
        if (pfd[0].revents)
            break;
        if (pfd[1].revents) {
            uint64_t v;
            ssize_t r = read(s->wake_fd, &v, sizeof v);
            (void)r;
            reap(s);
        }
        hs_expire(s);
        for (int i = 2; i < n; i++)
            if (pfd[i].revents & POLLIN)
                accept_one(s, pfd[i].fd);
    }

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
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += SHUTDOWN_GRACE_S;
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
        conn_free(c);
    }
    gd_info("all connections closed");
    return 0;
}

void gd_server_kick_export(void *server, struct gd_export *e)
{
    struct gd_server *s = server;
    SCOPED_LOCK(&s->lock);
    for (struct conn *c = s->conns; c; c = c->next) {
        SCOPED_LOCK(&c->wlock);
        if (__atomic_load_n(&c->exp, __ATOMIC_ACQUIRE) == e && !c->finished) {
            gd_info("connection %" PRIu64 ": disconnected (export %s removed through the API)",
                    c->id, gd_export_name(e));
            conn_kill_locked(c);
        }
    }
}

void gd_server_free(struct gd_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    if (s->unix_bound)
        unlink(s->unix_path);
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
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
