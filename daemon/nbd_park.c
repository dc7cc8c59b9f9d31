/*
 * nbd_park.c — the NBD server's side of a takeover (issue 27; takeover.c
 * drives it, nbd_internal.h has the design): park every connection at a
 * request boundary with nothing in flight, resume them when the takeover
 * fails, describe them (and the listeners) for the successor, end them
 * without touching their sockets once it has them; and in the successor,
 * adopt listeners and connections and start serving them with no handshake.
 */
#include "nbd_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "exports.h"
#include "latency.h"
#include "log.h"
#include "takeover_proto.h"

#define PARK_KICK_MS 2 /* signal readers blocked in recv() again this often */

static void on_takeover_signal(int sig)
{
    (void)sig; /* only there to make recv() return EINTR */
}

void gd_server_set_ctl(struct gd_server *s, int fd, const char *name)
{
    s->ctl_fd = fd;
    snprintf(s->ctl_path, sizeof s->ctl_path, "%s", name);
}

int gd_server_ctl_fd(struct gd_server *s)
{
    return s->ctl_fd;
}

/* The connection's thread, at a request boundary with parking set. */
int nbd_park(struct conn *c)
{
    struct gd_server *s = c->srv;
    {
        /* Every request read so far is answered first (its reply on the
         * socket: requests are freed once sent), so the successor starts
         * between two requests. */
        SCOPED_LOCK(&c->lock);
        while (c->inflight > 0)
            pthread_cond_wait(&c->cond, &c->lock);
    }
    SCOPED_LOCK(&s->lock);
    c->park = PARK_PARKED;
    pthread_cond_broadcast(&s->cond);
    while (c->park == PARK_PARKED)
        pthread_cond_wait(&s->cond, &s->lock);
    int v = c->park;
    c->park = PARK_NONE;
    if (v == PARK_GONE)
        c->handed_over = true;
    return v;
}

/* A reader blocked in recv() for its next header gets the signal; one
 * about to block gets it again at the next round. */
static void kick(struct conn *c)
{
    SCOPED_LOCK(&c->slock);
    if (c->in_recv)
        pthread_kill(c->reader, TAKEOVER_SIGNAL);
}

int gd_server_park(struct gd_server *s, int timeout_ms, char *err, size_t errlen)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_takeover_signal; /* no SA_RESTART: recv() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(TAKEOVER_SIGNAL, &sa, NULL);
    atomic_store_explicit(&s->parking, true, memory_order_release);
    int64_t start = gfs_now_ms();
    int64_t hs_deadline = start + timeout_ms / 2, deadline = start + timeout_ms;
    for (;;) {
        int64_t now = gfs_now_ms();
        int pending = 0;
        uint64_t which = 0;
        const char *why = "";
        {
            SCOPED_LOCK(&s->lock);
            for (struct conn *c = s->conns; c; c = c->next) {
                if (c->finished || c->park == PARK_PARKED)
                    continue;
                pending++;
                which = c->id;
                if (c->in_hs) {
                    why = "in its handshake";
                    if (now >= hs_deadline && !c->evicted) {
                        gd_info("connection %" PRIu64 ": handshake not finished at the "
                                "takeover; cut short (the client may reconnect)", c->id);
                        c->evicted = true;
                        SCOPED_LOCK(&c->wlock);
                        if (c->fd >= 0)
                            shutdown(c->fd, SHUT_RDWR);
                    }
                } else if (c->tls) {
                    why = "a TLS connection closing";
                    if (!c->tls_closing) {
                        /* its reader sees the end, finishes what is in
                         * flight (answered) and closes the session */
                        gd_info("connection %" PRIu64 " from %s: TLS session cannot be handed "
                                "to the new process (GnuTLS cannot export a live session): "
                                "closing it; the client reconnects", c->id, c->peer);
                        c->tls_closing = true;
                        SCOPED_LOCK(&c->wlock);
                        if (c->fd >= 0)
                            shutdown(c->fd, SHUT_RD);
                    }
                } else {
                    why = "requests in flight";
                    kick(c);
                }
            }
        }
        if (pending == 0)
            return 0;
        if (now >= deadline) {
            snprintf(err, errlen, "%d connection(s) not at a request boundary after %d ms "
                     "(connection %" PRIu64 ": %s)", pending, timeout_ms, which, why);
            return -ETIMEDOUT;
        }
        struct timespec ts;
        gfs_timespec_in(&ts, PARK_KICK_MS);
        SCOPED_LOCK(&s->lock);
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
}

void gd_server_unpark(struct gd_server *s)
{
    atomic_store_explicit(&s->parking, false, memory_order_release);
    SCOPED_LOCK(&s->lock);
    int n = 0;
    for (struct conn *c = s->conns; c; c = c->next) {
        if (c->park != PARK_PARKED)
            continue;
        /* the export was closed and opened again: a new volume */
        c->vol = gd_export_volume(c->exp);
        if (c->vol) {
            c->park = PARK_RESUME;
            n++;
        } else {
            gd_warn("connection %" PRIu64 ": its export %s did not reopen: closed",
                    c->id, c->export_name);
            c->park = PARK_DROP;
        }
    }
    pthread_cond_broadcast(&s->cond);
    if (n)
        gd_info("takeover failed: %d connection(s) serve on here", n);
}

int gd_server_handoff_state(struct gd_server *s, struct gd_tko_state *st, int *fds)
{
    int nf = 1;
    st->nlisten = 0;
    if (s->nlisten + 1 > GD_TKO_MAX_LISTEN)
        return -E2BIG;
    for (int i = 0; i < s->nlisten; i++) {
        struct gd_tko_listener *l = &st->listen[st->nlisten++];
        l->kind = (uint8_t)s->listen_kind[i];
        snprintf(l->path, sizeof l->path, "%s",
                 s->listen_kind[i] == GD_TKO_LISTEN_UNIX ? s->unix_path : "");
        fds[nf++] = s->listen_fds[i];
    }
    if (s->ctl_fd >= 0) {
        struct gd_tko_listener *l = &st->listen[st->nlisten++];
        l->kind = GD_TKO_LISTEN_CTL;
        snprintf(l->path, sizeof l->path, "%s", s->ctl_path);
        fds[nf++] = s->ctl_fd;
    }
    SCOPED_LOCK(&s->lock);
    st->next_id = s->next_id + 1;
    st->nconns = 0;
    for (struct conn *c = s->conns; c; c = c->next) {
        if (c->park != PARK_PARKED)
            continue;
        struct gd_tko_conn *tc = &st->conns[st->nconns];
        uint32_t idx = 0;
        while (idx < st->nexports && strcmp(st->exports[idx].name, c->export_name) != 0)
            idx++;
        if (idx == st->nexports)
            return -ENOENT; /* cannot be: every parked connection holds its export */
        memset(tc, 0, sizeof *tc);
        tc->id = c->id;
        tc->size = c->params.size;
        tc->eflags = c->params.eflags;
        tc->flags = (uint8_t)((c->params.structured ? GD_TKO_CONN_STRUCTURED : 0) |
                              (c->params.meta_allocation ? GD_TKO_CONN_META_ALLOC : 0));
        tc->export_idx = idx;
        snprintf(tc->peer, sizeof tc->peer, "%s", c->peer);
        tc->pending = c->rbuf ? c->rbuf + c->rbuf_pos : NULL;
        tc->pending_len = c->rbuf ? (uint32_t)(c->rbuf_len - c->rbuf_pos) : 0;
        fds[nf++] = c->fd;
        st->nconns++;
    }
    return 0;
}

/* Parked connections the successor may get (the caller sizes arrays). */
int gd_server_parked_count(struct gd_server *s)
{
    SCOPED_LOCK(&s->lock);
    int n = 0;
    for (struct conn *c = s->conns; c; c = c->next)
        if (c->park == PARK_PARKED)
            n++;
    return n;
}

void gd_server_handed_over(struct gd_server *s)
{
    atomic_store(&s->shutting_down, true);
    /* The successor serves on these descriptors: close ours, remove no path. */
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    s->nlisten = 0;
    s->unix_bound = false;
    if (s->ctl_fd >= 0)
        close(s->ctl_fd);
    s->ctl_fd = -1;
    {
        SCOPED_LOCK(&s->lock);
        for (struct conn *c = s->conns; c; c = c->next)
            if (c->park == PARK_PARKED)
                c->park = PARK_GONE;
        pthread_cond_broadcast(&s->cond);
    }
    /* Every connection was parked or finished: they all end by themselves
     * (no shutdown() here: the sockets live on in the successor). */
    nbd_conns_reap(s);
}

/* ------------------------------------------------------------------------ */
/* The successor                                                             */
/* ------------------------------------------------------------------------ */

static int sock_int(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) < 0)
        return -1;
    return v;
}

static int sock_family(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
        return -1;
    return ss.ss_family;
}

static int check_listener(struct gd_server *s, const struct gd_tko_listener *l, int fd,
                          const char *ctl_path, char *err, size_t errlen)
{
    const char *u = s->cfg->nbd_unix_socket, *t = s->cfg->nbd_tcp;
    int fam = sock_family(fd);
    if (sock_int(fd, SO_TYPE) != SOCK_STREAM || sock_int(fd, SO_ACCEPTCONN) != 1) {
        snprintf(err, errlen, "listener descriptor %d is not a listening stream socket", fd);
        return -EPROTO;
    }
    switch (l->kind) {
    case GD_TKO_LISTEN_UNIX:
        if (fam != AF_UNIX || !u || strcmp(u, l->path) != 0) {
            snprintf(err, errlen, "the running daemon listens on unix socket %s, this "
                     "configuration on %s: changing servers.nbd.unix_socket needs a restart",
                     l->path, u && *u ? u : "none");
            return -EINVAL;
        }
        return 0;
    case GD_TKO_LISTEN_TCP:
        if ((fam != AF_INET && fam != AF_INET6) || !t || !*t) {
            snprintf(err, errlen, "the running daemon listens on TCP, this configuration "
                     "does not (servers.nbd.tcp): that change needs a restart");
            return -EINVAL;
        }
        return 0;
    default:
        if (fam != AF_UNIX || strcmp(l->path, ctl_path) != 0) {
            snprintf(err, errlen, "control socket %s is not %s", l->path, ctl_path);
            return -EPROTO;
        }
        return 0;
    }
}

int gd_server_adopt(struct gd_server *s, const struct gd_tko_state *st, const int *fds,
                    struct gd_export **exps, char *err, size_t errlen)
{
    bool have_unix = false, have_tcp = false;
    const char *u = s->cfg->nbd_unix_socket, *t = s->cfg->nbd_tcp;
    for (uint32_t i = 0; i < st->nlisten; i++) {
        const struct gd_tko_listener *l = &st->listen[i];
        int fd = fds[1 + i];
        int rc = check_listener(s, l, fd, s->ctl_path, err, errlen);
        if (rc < 0)
            return rc;
        if (l->kind == GD_TKO_LISTEN_CTL) {
            s->ctl_fd = fd;
            continue;
        }
        if ((l->kind == GD_TKO_LISTEN_UNIX && have_unix) ||
            (l->kind == GD_TKO_LISTEN_TCP && have_tcp)) {
            snprintf(err, errlen, "two listeners of one kind");
            return -EPROTO;
        }
        if (l->kind == GD_TKO_LISTEN_UNIX) {
            have_unix = true;
            s->unix_bound = true;
            snprintf(s->unix_path, sizeof s->unix_path, "%s", l->path);
        } else {
            have_tcp = true;
        }
        s->listen_kind[s->nlisten] = l->kind;
        s->listen_fds[s->nlisten++] = fd;
    }
    if (have_unix != (u && *u) || have_tcp != (t && *t)) {
        snprintf(err, errlen, "this configuration listens on %s%s%s, the running daemon on "
                 "%s%s%s: changing servers.nbd.unix_socket or tcp needs a restart",
                 u && *u ? "unix " : "", u && *u && t && *t ? "and " : "", t && *t ? "tcp" : "",
                 have_unix ? "unix " : "", have_unix && have_tcp ? "and " : "",
                 have_tcp ? "tcp" : "");
        return -EINVAL;
    }
    for (uint32_t i = 0; i < st->nconns; i++) {
        const struct gd_tko_conn *tc = &st->conns[i];
        int fd = fds[1 + st->nlisten + i];
        if (sock_int(fd, SO_TYPE) != SOCK_STREAM || sock_int(fd, SO_ACCEPTCONN) != 0) {
            snprintf(err, errlen, "connection %" PRIu64 ": descriptor is not a connected "
                     "stream socket", tc->id);
            return -EPROTO;
        }
        struct gd_export *e = NULL;
        int rc = gd_export_acquire_ex(s->reg, st->exports[tc->export_idx].name, 0, 0,
                                      GD_ACQUIRE_OPEN_ONLY, &e);
        if (rc < 0 || e != exps[tc->export_idx]) {
            snprintf(err, errlen, "connection %" PRIu64 ": export %s is not open here",
                     tc->id, st->exports[tc->export_idx].name);
            if (rc == 0)
                gd_export_release(e, 0);
            return rc < 0 ? rc : -EPROTO;
        }
        struct conn *c = calloc(1, sizeof *c);
        uint8_t *rbuf = malloc(RBUF_SIZE);
        if (!c || !rbuf) {
            free(c);
            free(rbuf);
            gd_export_release(e, 0);
            return -ENOMEM;
        }
        c->srv = s;
        c->fd = fd;
        c->id = tc->id;
        c->adopted = true;
        snprintf(c->peer, sizeof c->peer, "%s", tc->peer);
        nbd_conn_init_locks(c);
        atomic_store_explicit(&c->exp, e, memory_order_release);
        c->vol = gd_export_volume(e);
        c->export_name = gd_export_name(e);
        c->lat = gd_latency_for(c->export_name);
        c->params.structured = (tc->flags & GD_TKO_CONN_STRUCTURED) != 0;
        c->params.meta_allocation = (tc->flags & GD_TKO_CONN_META_ALLOC) != 0;
        c->params.eflags = tc->eflags;
        c->params.size = tc->size;
        c->rbuf = rbuf;
        if (tc->pending_len)
            memcpy(rbuf, tc->pending, tc->pending_len);
        c->rbuf_len = tc->pending_len;
        gd_export_count_conn(e, 1);
        SCOPED_LOCK(&s->lock); /* (nothing runs yet: for the list only) */
        c->next = s->conns;
        s->conns = c;
        s->nconns++;
    }
    SCOPED_LOCK(&s->lock);
    s->next_id = st->next_id;
    return 0;
}

void gd_server_start_adopted(struct gd_server *s)
{
    struct conn *failed = NULL;
    {
        SCOPED_LOCK(&s->lock);
        for (struct conn **pp = &s->conns; *pp;) {
            struct conn *c = *pp;
            if (!c->adopted || c->finished) {
                pp = &c->next;
                continue;
            }
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setstacksize(&attr, THREAD_STACK);
            int e = pthread_create(&c->reader, &attr, nbd_reader_main, c);
            pthread_attr_destroy(&attr);
            if (!e) {
                pp = &c->next;
                continue;
            }
            gd_err("connection %" PRIu64 ": cannot start its thread: %s; closed", c->id,
                   strerror(e));
            *pp = c->next;
            s->nconns--;
            c->next = failed;
            failed = c;
        }
    }
    while (failed) {
        struct conn *c = failed;
        failed = c->next;
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
        gd_export_count_conn(c->exp, -1);
        gd_export_release(c->exp, 0);
        free(c->rbuf);
        nbd_conn_free(c);
    }
}
