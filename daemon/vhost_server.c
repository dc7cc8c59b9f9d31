/*
 * vhost_server.c — the vhost-user-blk listeners and sessions' threads
 * (vhost_server.h): per-export sockets made on request, one accept thread
 * polling all of them, a thread per frontend, the cap on sessions, the
 * forced disconnect and the orderly stop.
 *
 * A session acquires its export when the frontend connects (creating the
 * volume with servers.nbd.auto_create_size if it does not exist, as an NBD
 * GO does) and counts as a client connection until it ends. Its socket
 * stays open until the session thread is joined, so a kick (shutdown(2)
 * under the lock) never hits a reused descriptor.
 */
#include "vhost_server.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "exports.h"
#include "log.h"
#include "ratelog.h"
#include "sockets.h"
#include "vhost_dev.h"

#define MAX_SESSIONS 256      /* frontends at once, all exports */
#define MAX_LISTENERS 4096    /* exports served at once */
#define LOG_EVERY_MS 10000

struct listener {
    struct listener *next;
    char name[GLIDEFS_NAME_MAX + 1];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd;
};

struct session {
    struct session *next;
    struct gd_vhost *v;
    char name[GLIDEFS_NAME_MAX + 1];
    int fd;
    uint64_t id;
    struct gd_export *exp;    /* (lock) set while the session holds it */
    pthread_t th;
    bool finished;            /* (lock) the thread is done: join it */
};

struct gd_vhost {
    const glidefs_config *cfg;
    struct gd_registry *reg;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_mutex_t lock;
    struct listener *ls;
    int nls;
    struct session *ss;
    int nss;
    uint64_t next_id;
    bool stopping;
    int wake_fd;              /* the accept thread: listeners changed, a session ended, stop */
    int stop_fd;              /* the sessions: stop (never reset) */
    pthread_t acceptor;
    bool acceptor_started;
    struct gd_ratelog rl_refuse;
};

static void *session_main(void *arg)
{
    struct session *s = arg;
    struct gd_vhost *v = s->v;
    struct gd_export *e = NULL;
    int rc = gd_export_acquire(v->reg, s->name, 1, &e);
    if (rc < 0) {
        gd_warn("vhost-user %" PRIu64 ": export %s cannot be opened here: %s", s->id, s->name,
                glidefs_strerror(rc));
    } else {
        pthread_mutex_lock(&v->lock);
        s->exp = e;
        pthread_mutex_unlock(&v->lock);
        vu_dev_serve(s->fd, v->stop_fd, s->id, e);
        pthread_mutex_lock(&v->lock);
        s->exp = NULL;
        pthread_mutex_unlock(&v->lock);
        gd_export_release(e, 1);
    }
    pthread_mutex_lock(&v->lock);
    s->finished = true;
    pthread_mutex_unlock(&v->lock);
    eventfd_write(v->wake_fd, 1);
    return NULL;
}

/* Join and free finished sessions (all of them when `all`). */
static void reap(struct gd_vhost *v, bool all)
{
    for (;;) {
        struct session *done = NULL;
        pthread_mutex_lock(&v->lock);
        for (struct session **pp = &v->ss; *pp; pp = &(*pp)->next)
            if ((*pp)->finished || all) {
                done = *pp;
                *pp = done->next;
                v->nss--;
                break;
            }
        pthread_mutex_unlock(&v->lock);
        if (!done)
            return;
        pthread_join(done->th, NULL);
        close(done->fd);
        free(done);
    }
}

static void accept_one(struct gd_vhost *v, int lfd, const char *name)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return; /* EAGAIN, a frontend that went away, out of descriptors: poll again */
    pthread_mutex_lock(&v->lock);
    if (v->stopping || v->nss >= MAX_SESSIONS) {
        unsigned dropped = 0;
        if (!v->stopping && gd_ratelog_ok(&v->rl_refuse, LOG_EVERY_MS, &dropped))
            gd_warn("vhost-user: refused a frontend of export %s: %d sessions already "
                    "(%u more refused since the last line)", name, MAX_SESSIONS, dropped);
        pthread_mutex_unlock(&v->lock);
        close(fd);
        return;
    }
    struct session *s = calloc(1, sizeof *s);
    if (!s) {
        pthread_mutex_unlock(&v->lock);
        close(fd);
        return;
    }
    s->v = v;
    s->fd = fd;
    s->id = ++v->next_id;
    snprintf(s->name, sizeof s->name, "%s", name);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 1024 * 1024);
    if (pthread_create(&s->th, &at, session_main, s) != 0) {
        pthread_attr_destroy(&at);
        pthread_mutex_unlock(&v->lock);
        gd_warn("vhost-user: cannot start a session thread for export %s", name);
        close(fd);
        free(s);
        return;
    }
    pthread_attr_destroy(&at);
    s->next = v->ss;
    v->ss = s;
    v->nss++;
    pthread_mutex_unlock(&v->lock);
}

static void *accept_main(void *arg)
{
    struct gd_vhost *v = arg;
    struct pollfd *pf = NULL;
    char (*names)[GLIDEFS_NAME_MAX + 1] = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&v->lock);
        if (v->stopping) {
            pthread_mutex_unlock(&v->lock);
            break;
        }
        size_t need = (size_t)v->nls + 1;
        if (need > cap) {
            struct pollfd *np = realloc(pf, need * sizeof *pf);
            if (np)
                pf = np;
            char(*nn)[GLIDEFS_NAME_MAX + 1] = realloc(names, need * sizeof *names);
            if (nn)
                names = nn;
            if (np && nn)
                cap = need;
        }
        size_t n = 0;
        if (cap)
            pf[n++] = (struct pollfd){ .fd = v->wake_fd, .events = POLLIN };
        for (struct listener *l = v->ls; l && n < cap; l = l->next) {
            memcpy(names[n], l->name, sizeof names[n]);
            pf[n++] = (struct pollfd){ .fd = l->fd, .events = POLLIN };
        }
        pthread_mutex_unlock(&v->lock);
        if (n == 0) {
            /* out of memory for the poll set: try again shortly */
            struct pollfd w = { .fd = v->wake_fd, .events = POLLIN };
            poll(&w, 1, 100);
            continue;
        }
        if (poll(pf, (nfds_t)n, -1) < 0)
            continue;
        if (pf[0].revents) {
            eventfd_t x;
            eventfd_read(v->wake_fd, &x);
            reap(v, false);
            continue; /* the listener set may have changed: its fds too */
        }
        for (size_t i = 1; i < n; i++)
            if (pf[i].revents)
                accept_one(v, pf[i].fd, names[i]);
    }
    free(pf);
    free(names);
    return NULL;
}

/* Sockets an earlier glidefsd left in the directory: it ended without
 * its orderly stop (which removes them: SIGKILL, a crash, the OOM killer),
 * so frontends may be waiting to reconnect (QEMU's chardev reconnect=)
 * with their inflight regions (vhost_inflight.h). Serve each such export
 * again on its path; one still answered by a running server, or that is
 * no socket named after a valid export, is left alone. */
static void resume_sockets(struct gd_vhost *v)
{
    DIR *dir = opendir(v->dir);
    if (!dir)
        return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t n = strlen(de->d_name);
        if (n <= 5 || strcmp(de->d_name + n - 5, ".sock") != 0 || n - 5 > GLIDEFS_NAME_MAX)
            continue;
        char name[GLIDEFS_NAME_MAX + 1];
        memcpy(name, de->d_name, n - 5);
        name[n - 5] = 0;
        struct stat st;
        char p[sizeof(((struct sockaddr_un *)0)->sun_path)];
        int k = snprintf(p, sizeof p, "%s/%s", v->dir, de->d_name);
        if (!glidefs_name_valid(name) || k < 0 || (size_t)k >= sizeof p || lstat(p, &st) < 0 ||
            !S_ISSOCK(st.st_mode))
            continue;
        char path[sizeof p], err[256] = "";
        if (gd_vhost_serve(v, name, path, sizeof path, err, sizeof err) < 0)
            gd_warn("vhost-user: export %s: its socket %s is left from an earlier glidefsd, "
                    "not served again: %s", name, p, err);
        else
            gd_info("vhost-user: export %s: serving its socket again (left by a glidefsd that "
                    "did not stop cleanly: its frontends may reconnect)", name);
    }
    closedir(dir);
}

int gd_vhost_create(const glidefs_config *cfg, struct gd_registry *reg, struct gd_vhost **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->vhost_user_dir || !cfg->vhost_user_dir[0])
        return 0;
    struct stat st;
    if (stat(cfg->vhost_user_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "servers.vhost_user.dir: %s is not a directory",
                 cfg->vhost_user_dir);
        return -ENOTDIR;
    }
    struct gd_vhost *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    v->cfg = cfg;
    v->reg = reg;
    snprintf(v->dir, sizeof v->dir, "%s", cfg->vhost_user_dir);
    pthread_mutex_init(&v->lock, NULL);
    v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    v->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->wake_fd < 0 || v->stop_fd < 0 ||
        pthread_create(&v->acceptor, NULL, accept_main, v) != 0) {
        snprintf(err, errlen, "vhost-user: cannot start: %s", strerror(errno));
        if (v->wake_fd >= 0)
            close(v->wake_fd);
        if (v->stop_fd >= 0)
            close(v->stop_fd);
        pthread_mutex_destroy(&v->lock);
        free(v);
        return -ENOMEM;
    }
    v->acceptor_started = true;
    gd_info("vhost-user-blk sockets in %s", v->dir);
    *out = v;
    return 0;
}

void gd_vhost_resume(struct gd_vhost *v)
{
    if (v)
        resume_sockets(v);
}

int gd_vhost_serve(struct gd_vhost *v, const char *name, char *path, size_t pathlen, char *err,
                   size_t errlen)
{
    if (!v) {
        snprintf(err, errlen, "vhost-user is off (set servers.vhost_user.dir)");
        return -ENOTSUP;
    }
    char p[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int k = snprintf(p, sizeof p, "%s/%s.sock", v->dir, name);
    if (k < 0 || (size_t)k >= sizeof p) {
        snprintf(err, errlen, "the socket path %s/%s.sock is longer than %zu bytes", v->dir, name,
                 sizeof p - 1);
        return -ENAMETOOLONG;
    }
    pthread_mutex_lock(&v->lock);
    if (v->stopping) {
        pthread_mutex_unlock(&v->lock);
        snprintf(err, errlen, "glidefsd is shutting down");
        return -ESHUTDOWN;
    }
    for (struct listener *l = v->ls; l; l = l->next)
        if (strcmp(l->name, name) == 0) {
            pthread_mutex_unlock(&v->lock);
            snprintf(path, pathlen, "%s", l->path);
            return 0;
        }
    if (v->nls >= MAX_LISTENERS) {
        pthread_mutex_unlock(&v->lock);
        snprintf(err, errlen, "%d exports are served over vhost-user already", MAX_LISTENERS);
        return -EMFILE;
    }
    struct listener *l = calloc(1, sizeof *l);
    int fd = l ? gd_listen_unix("servers.vhost_user.dir", p, 16, err, errlen) : -ENOMEM;
    if (fd < 0) {
        pthread_mutex_unlock(&v->lock);
        free(l);
        return fd;
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->path, sizeof l->path, "%s", p);
    l->fd = fd;
    l->next = v->ls;
    v->ls = l;
    v->nls++;
    pthread_mutex_unlock(&v->lock);
    eventfd_write(v->wake_fd, 1);
    gd_info("vhost-user: export %s on %s", name, p);
    snprintf(path, pathlen, "%s", p);
    return 0;
}

void gd_vhost_kick_export(struct gd_vhost *v, struct gd_export *e)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->lock);
    for (struct session *s = v->ss; s; s = s->next)
        if (s->exp == e && !s->finished)
            shutdown(s->fd, SHUT_RDWR);
    pthread_mutex_unlock(&v->lock);
}

int gd_vhost_sockets(struct gd_vhost *v)
{
    if (!v)
        return 0;
    pthread_mutex_lock(&v->lock);
    int n = v->nls;
    pthread_mutex_unlock(&v->lock);
    return n;
}

void gd_vhost_stop(struct gd_vhost *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->lock);
    bool was = v->stopping;
    v->stopping = true;
    pthread_mutex_unlock(&v->lock);
    if (was)
        return;
    eventfd_write(v->wake_fd, 1);
    eventfd_write(v->stop_fd, 1);
    if (v->acceptor_started)
        pthread_join(v->acceptor, NULL);
    v->acceptor_started = false;
    struct listener *l = v->ls;
    v->ls = NULL;
    v->nls = 0;
    while (l) {
        struct listener *next = l->next;
        close(l->fd);
        unlink(l->path);
        free(l);
        l = next;
    }
    /* Sessions see stop_fd (between requests) and end. */
    reap(v, true);
}

void gd_vhost_free(struct gd_vhost *v)
{
    if (!v)
        return;
    gd_vhost_stop(v);
    close(v->wake_fd);
    close(v->stop_fd);
    pthread_mutex_destroy(&v->lock);
    free(v);
}
