/*
 * nbd_internal.h — the NBD server's shared state and the functions its
 * files call across: nbd_conn.c (connections), nbd_reader.c (the reader
 * role, relief, watchdog), nbd_exec.c (request execution and replies).
 *
 * Per connection, after the handshake, one thread holds the reader role: it
 * reads request headers (and write payloads), judges each with
 * nbd_validate_request() and runs the ordinary ones (reads, writes, trims of
 * the cache) itself, inline, then writes the reply: a cache hit costs no
 * thread hand-off and no wake-up at all. Requests known to be slow (FLUSH,
 * FUA, CACHE, NO_HOLE zeroes, big payloads) go to the shared worker pool,
 * except a FLUSH that is the connection's only request (queue depth 1).
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
 *
 * Takeover (issue 27, nbd_park.c): the server sets `parking`; each reader
 * stops at its next request boundary (before it parses a header: bytes it
 * read ahead stay in rbuf and travel with the connection), waits until its
 * requests in flight are answered and parks. A reader blocked in recv()
 * for the next header is woken by TAKEOVER_SIGNAL, sent only while it is
 * inside that recv (c->in_recv under c->slock), so no library call ever sees
 * EINTR from it. Parked connections then resume (the takeover failed), or
 * end without touching the socket (handed over: the successor owns it).
 */
#ifndef GLIDEFSD_NBD_INTERNAL_H
#define GLIDEFSD_NBD_INTERNAL_H

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
#include <signal.h>
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
#include "clock.h"
#include "config.h"
#include "exports.h"
#include "latency.h"
#include "log.h"
#include "nbd_proto.h"
#include "ratelog.h"
#include "sockets.h"
#include "takeover_proto.h"
#include "tls.h"
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
#define RBUF_SIZE (64u * 1024)               /* a connection's read-ahead buffer */
#define TAKEOVER_SIGNAL SIGUSR2               /* wakes a reader parked in recv() */

/* conn.park (srv->lock): where a connection stands in a takeover. */
#define PARK_NONE 0      /* serving */
#define PARK_PARKED 1    /* at a request boundary, nothing in flight: waiting */
#define PARK_RESUME 2    /* the takeover failed: serve on */
#define PARK_GONE 3      /* handed over: end without touching the socket */
#define PARK_DROP 4      /* the takeover failed and the export did not reopen: close */

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

/* Every condvar below is made with gfs_cond_init (CLOCK_MONOTONIC); each
 * names its mutex. */
struct conn {
    struct gd_server *srv;
    struct conn *next;          /* server's list */
    int fd;
    uint64_t id;
    char peer[96];
    pthread_t reader;
    /* The TLS session after NBD_OPT_STARTTLS, NULL in plaintext (nbd_io.c). */
    struct gd_tls_session *tls;

    /* Set once the handshake entered transmission; atomic: gd_server_kick_export()
     * reads it from another thread (release/acquire). */
    _Atomic(struct gd_export *) exp;
    glidefs_volume *vol;
    const char *export_name;    /* the registry's copy */
    struct nbd_txn_params params;
    struct gd_latency *lat;     /* this export's latency histograms */

    /* In-flight accounting (lock). */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* (lock) a request finished, the connection dropped */
    unsigned inflight;
    size_t inflight_bytes;
    bool stopping;              /* server shutdown: new requests get ESHUTDOWN */
    struct req *spare;          /* finished requests kept for reuse (no malloc per request) */
    unsigned nspare;

    /* Reply path (wlock). */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;       /* (wlock) replies queued, writer stop */
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
    pthread_cond_t rcond;       /* (rlock) the reader role handed back, relief done */
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

    _Atomic uint64_t requests;  /* relaxed: a count for the log */
    uint64_t reliefs;           /* (rlock) reader role stolen by the watchdog */
    bool finished;              /* reader done; waiting to be joined */
    /* The handshake (srv->lock). */
    bool in_hs;                 /* not in transmission yet */
    bool evicted;               /* handshake cut short (deadline, or room for a newcomer) */
    bool hs_busy;               /* the server is opening an export for it: not its fault */
    int64_t hs_started_ms;      /* moved forward by the time the server was busy */
    int64_t hs_busy_since;

    /* Takeover (nbd_park.c). */
    pthread_mutex_t slock;
    bool in_recv;               /* (slock) the connection's thread blocks for a header */
    int park;                   /* (srv->lock) PARK_* */
    bool handed_over;           /* ended by PARK_GONE (the reader's own) */
    bool adopted;               /* came from a predecessor: no handshake */
    bool tls_closing;           /* (srv->lock) TLS cannot be handed over: closing */
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

/* Its condvars, like the connection's, run on CLOCK_MONOTONIC. */
struct gd_server {
    const glidefs_config *cfg;
    struct gd_registry *reg;
    struct gd_pool *pool;
    struct gd_tls *tls;         /* credentials, NULL when servers.nbd.tls is off */
    int tls_mode;               /* NBD_TLS_* */
    int listen_fds[8];
    int listen_kind[8];         /* GD_TKO_LISTEN_UNIX or _TCP (takeover_proto.h) */
    int nlisten;
    int ctl_fd;                 /* the takeover control socket, -1: none */
    char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* its "@name" */
    atomic_bool parking;        /* a takeover: readers park at their next boundary */
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool unix_bound;
    int wake_fd;                /* eventfd: a connection finished */
    atomic_bool shutting_down;
    atomic_int spinners;        /* readers busy-polling now, at most max_spinners */
    int max_spinners;           /* 0: no busy-polling */
    int spin_us;

    /* Watchdog, see nbd_watchdog_main(). */
    pthread_t wd;
    bool wd_started;
    bool wd_inited;
    pthread_mutex_t wd_lock;
    pthread_cond_t wd_cond;     /* (wd_lock) wakes the sleeping watchdog */
    bool wd_stop;
    atomic_bool wd_asleep;

    pthread_mutex_t lock;       /* conns list, counters, global budget */
    pthread_cond_t cond;        /* (lock) connections finished, budget freed */
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
    struct gd_ratelog rl_accept, rl_refuse, rl_evict;
};

/* nbd_io.c: recv(2) / sendmsg(2, MSG_DONTWAIT) / poll(2) for POLLIN on the
 * connection, through its TLS session when it has one */
ssize_t nbd_conn_recv(struct conn *c, void *buf, size_t n, int flags);
ssize_t nbd_conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt);
int nbd_conn_poll_in(struct conn *c, int timeout_ms);

/* nbd_conn.c */
int nbd_send_iov_deadline(struct conn *c, struct iovec *iov, int *iovcnt, int64_t deadline_ms);
void nbd_set_timeout_ms(int fd, int opt, int ms);
int nbd_conn_read(struct conn *c, void *buf, size_t n);
int nbd_conn_read_header(struct conn *c, void *buf, size_t n);
/* The connection whose own thread this is (set by nbd_reader_main; pool
 * threads have none): only that thread may be signalled out of recv(). */
extern __thread struct conn *nbd_reader_self;
bool nbd_recv_begin(struct conn *c);
void nbd_recv_end(struct conn *c, bool began);
void nbd_conn_init_locks(struct conn *c);
void nbd_conn_free(struct conn *c);
/* Take every connection off the list, join its reader and free it (each
 * must be ending by itself: shut down, parked or finished). */
void nbd_conns_reap(struct gd_server *s);
int nbd_conn_discard(struct conn *c, uint64_t n);
struct req *nbd_req_new(struct conn *c, size_t bytes, bool *stopping, bool relief,
                        bool *give_up, bool *gone);
void nbd_req_free(struct req *q);
void nbd_conn_free_spares(struct conn *c);
void nbd_conn_kill_locked(struct conn *c);
void nbd_conn_kill(struct conn *c);
int nbd_handshake(struct conn *c);
void nbd_hs_end(struct conn *c);

/* nbd_exec.c */
void nbd_conn_flush(struct conn *c);
void *nbd_writer_main(void *arg);
const char *nbd_wire_err_text(uint32_t e);
void nbd_reply_error(struct req *q, uint32_t err, const char *why);
void nbd_run_request(struct gd_job *job);

/* nbd_park.c */
int nbd_park(struct conn *c);

/* nbd_reader.c */
void nbd_batch_submit(struct conn *c);
void *nbd_watchdog_main(void *arg);
void nbd_transmission(struct conn *c);
void *nbd_reader_main(void *arg);

#endif
