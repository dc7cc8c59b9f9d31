/*
 * takeover.c — both ends of `glidefsd --takeover` (takeover.h): the control
 * socket, the conversation of takeover_proto.h over it (descriptors with
 * SCM_RIGHTS), and the order of things on each side. The old side decides
 * (COMMIT); until then either side may give up and the old one serves on.
 */
#include "takeover.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "exports.h"
#include "fanout.h"
#include "log.h"
#include "nbd_server.h"
#include "sdnotify.h"
#include "sockets.h"
#include "takeover_proto.h"

#define HELLO_TIMEOUT_MS 5000     /* a peer that connects must say who it is */
#define PARK_TIMEOUT_MS 10000     /* connections to reach a request boundary */
#define SUSPEND_TIMEOUT_MS 5000   /* API requests, the scrubber, hand-overs to finish */
#define ACK_TIMEOUT_MS 120000     /* the successor opening every volume */
#define STATE_TIMEOUT_MS 120000   /* the old side parking, flushing and closing */
#define COMMIT_TIMEOUT_MS 30000   /* the old side answers an ACK at once */
#define SEND_TIMEOUT_MS 10000
#define MAINPID_WAIT_MS 2000      /* the successor tells systemd before we exit */

/* An abstract socket (no file: a copy of a live cache dir, which users
 * make, copies no socket, and nothing is left behind by kill -9), named
 * after the cache dir's real path: FNV-1a, 64 bits. */
int gd_takeover_ctl_name(const glidefs_config *cfg, char *out, size_t len)
{
    char *real = realpath(cfg->cache_dir ? cfg->cache_dir : ".", NULL);
    if (!real)
        return -errno;
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = real; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 0x100000001b3ull;
    }
    free(real);
    int n = snprintf(out, len, "@glidefsd-takeover-%016llx", (unsigned long long)h);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The address of name ("@..."): its length for bind/connect. */
static socklen_t ctl_addr(const char *name, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(sa->sun_path, name, n); /* (the name fits: GD_TKO_MAX_PATH) */
    sa->sun_path[0] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

int gd_takeover_listen(const glidefs_config *cfg, struct gd_server *srv, char *err,
                       size_t errlen)
{
    char name[GD_TKO_MAX_PATH + 1];
    int rc = gd_takeover_ctl_name(cfg, name, sizeof name);
    if (rc < 0) {
        snprintf(err, errlen, "cache.dir %s: %s", cfg->cache_dir, strerror(-rc));
        return rc;
    }
    struct sockaddr_un sa;
    socklen_t sl = ctl_addr(name, &sa);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sl) < 0 || listen(fd, 4) < 0) {
        int e = errno;
        snprintf(err, errlen, "takeover control socket %s: %s", name, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    /* (no file mode on an abstract socket: peers of another uid are
     * refused by SO_PEERCRED, on both sides) */
    gd_server_set_ctl(srv, fd, name);
    gd_debug("takeover control socket %s", name);
    return 0;
}

static void set_timeout(int fd, int opt, int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -ECONNRESET : -errno;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The peer runs as us: anyone else must not get our clients' sockets. */
static int same_uid(int fd, pid_t *pid)
{
    struct ucred uc;
    socklen_t l = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0)
        return -errno;
    *pid = uc.pid;
    return uc.uid == geteuid() ? 0 : -EPERM;
}

/* Descriptors in batches: a u32 count, the count in SCM_RIGHTS. */
static int send_fds(int sock, const int *fds, size_t n)
{
    while (n > 0) {
        size_t k = n < GD_TKO_FD_BATCH ? n : GD_TKO_FD_BATCH;
        uint8_t cnt[4] = { (uint8_t)(k >> 24), (uint8_t)(k >> 16), (uint8_t)(k >> 8),
                           (uint8_t)k };
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(GD_TKO_FD_BATCH * sizeof(int))];
        } u;
        memset(&u, 0, sizeof u);
        struct iovec iov = { cnt, sizeof cnt };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                             .msg_controllen = CMSG_SPACE(k * sizeof(int)) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(k * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, k * sizeof(int));
        ssize_t w;
        do
            w = sendmsg(sock, &mh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w != (ssize_t)sizeof cnt)
            return w < 0 ? -errno : -EIO;
        fds += k;
        n -= k;
    }
    return 0;
}

/* The other end: exactly n descriptors, every batch as announced. What was
 * received is closed again on failure. */
static int recv_fds(int sock, int *fds, size_t n, char *err, size_t errlen)
{
    size_t got = 0;
    while (got < n) {
        uint8_t cnt[4];
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(GD_TKO_FD_BATCH * sizeof(int))];
        } u;
        struct iovec iov = { cnt, sizeof cnt };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                             .msg_controllen = sizeof u.buf };
        ssize_t r;
        do
            r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        while (r < 0 && errno == EINTR);
        size_t in = 0;
        int batch[GD_TKO_FD_BATCH];
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                if (in < GD_TKO_FD_BATCH)
                    batch[in++] = fd;
                else
                    close(fd);
            }
        }
        uint32_t want = (uint32_t)cnt[0] << 24 | (uint32_t)cnt[1] << 16 |
                        (uint32_t)cnt[2] << 8 | cnt[3];
        bool bad = r != (ssize_t)sizeof cnt || (mh.msg_flags & MSG_CTRUNC) || want == 0 ||
                   want > GD_TKO_FD_BATCH || want != in || got + in > n;
        if (bad) {
            snprintf(err, errlen, "descriptor batch: %zd bytes, %zu descriptors for %u "
                     "announced, %zu of %zu so far%s", r, in, want, got, n,
                     (mh.msg_flags & MSG_CTRUNC) ? " (truncated)" : "");
            for (size_t i = 0; i < in; i++)
                close(batch[i]);
            for (size_t i = 0; i < got; i++)
                close(fds[i]);
            return -EPROTO;
        }
        memcpy(fds + got, batch, in * sizeof(int));
        got += in;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The old process                                                           */
/* ------------------------------------------------------------------------ */

struct export_list {
    struct gd_tko_export *v;
    uint32_t n, cap;
    bool oom;
};

/* Room for one more element in a list the foreach callbacks fill: doubles
 * *cap from first, never past max (0: no limit). False when there is none. */
static bool list_room(void **v, uint32_t n, uint32_t *cap, size_t elem, uint32_t first,
                      uint32_t max)
{
    if (n < *cap)
        return true;
    uint32_t c = *cap ? *cap * 2 : first;
    if (max && c > max)
        return false;
    void *nv = realloc(*v, (size_t)c * elem);
    if (!nv)
        return false;
    *v = nv;
    *cap = c;
    return true;
}

static void add_export(void *arg, const char *name, unsigned open_flags)
{
    struct export_list *l = arg;
    void *room = l->v;
    if (!list_room(&room, l->n, &l->cap, sizeof *l->v, 16, 0)) {
        l->oom = true;
        return;
    }
    l->v = room;
    snprintf(l->v[l->n].name, sizeof l->v[l->n].name, "%s", name);
    l->v[l->n++].open_flags = open_flags & GLIDEFS_OPEN_READONLY;
}

/* The durability modes set through the REST API: they live in the
 * registry only (until a restart), so they travel with the takeover. */
struct dur_list {
    struct gd_tko_durability *v;
    uint32_t n, cap;
    bool oom;
};

static void add_durability(void *arg, const char *name, const struct glidefs_durability *d)
{
    struct dur_list *l = arg;
    void *room = l->v;
    if (!list_room(&room, l->n, &l->cap, sizeof *l->v, 8, GD_TKO_MAX_DURS)) {
        l->oom = true;
        return;
    }
    l->v = room;
    snprintf(l->v[l->n].name, sizeof l->v[l->n].name, "%s", name);
    l->v[l->n++].d = *d;
}

/* Parked, suspended: send everything, wait for the ACK, COMMIT. 0 once
 * committed, else a negative errno with err (nothing committed). */
static int hand_off(int cfd, struct gd_registry *reg, struct gd_server *srv, int lock_fd,
                    int *nconns, char *err, size_t errlen)
{
    struct export_list el = { 0 };
    gd_registry_foreach_suspended(reg, add_export, &el);
    struct dur_list dl = { 0 };
    gd_registry_foreach_durability(reg, add_durability, &dl);
    int parked = gd_server_parked_count(srv);
    struct gd_tko_state st;
    memset(&st, 0, sizeof st);
    st.exports = el.v;
    st.nexports = el.n;
    st.durs = dl.v;
    st.ndurs = dl.n;
    st.conns = calloc((size_t)parked + 1, sizeof *st.conns);
    int *fds = calloc((size_t)parked + 2 + GD_TKO_MAX_LISTEN, sizeof *fds);
    uint8_t *msg = NULL;
    size_t len = 0;
    int rc = el.oom || dl.oom || !st.conns || !fds ? -ENOMEM : 0;
    if (rc == 0) {
        fds[0] = lock_fd;
        rc = gd_server_handoff_state(srv, &st, fds);
    }
    if (rc == 0)
        rc = gd_tko_encode_state(&st, &msg, &len);
    if (rc < 0)
        snprintf(err, errlen, "cannot describe the state: %s", strerror(-rc));
    set_timeout(cfd, SO_SNDTIMEO, SEND_TIMEOUT_MS);
    if (rc == 0 && (rc = write_full(cfd, msg, len)) < 0)
        snprintf(err, errlen, "sending the state: %s", strerror(-rc));
    if (rc == 0 && (rc = send_fds(cfd, fds, gd_tko_nfds(&st))) < 0)
        snprintf(err, errlen, "sending the descriptors: %s", strerror(-rc));
    *nconns = (int)st.nconns;
    free(msg);
    free(fds);
    free(st.conns);
    free(el.v);
    free(dl.v);
    if (rc < 0)
        return rc;
    uint8_t ack[GD_TKO_ACK_SIZE];
    uint32_t status = 1;
    set_timeout(cfd, SO_RCVTIMEO, ACK_TIMEOUT_MS);
    rc = read_full(cfd, ack, sizeof ack);
    if (rc < 0) {
        snprintf(err, errlen, "no acknowledgement from the new process (%s)",
                 rc == -ECONNRESET ? "it exited or closed the socket"
                 : rc == -EAGAIN ? "timed out" : strerror(-rc));
        return rc;
    }
    if (gd_tko_decode_ack(ack, &status) < 0 || status != 0) {
        snprintf(err, errlen, "the new process did not acknowledge (status %u)", status);
        return -EPROTO;
    }
    /* The point of no return: from here on this process serves nothing. */
    uint8_t commit[GD_TKO_ACK_SIZE];
    gd_tko_encode_commit(commit);
    rc = write_full(cfd, commit, sizeof commit);
    if (rc < 0) {
        gd_err("takeover: the new process acknowledged but cannot be told to go on (%s): "
               "this process stops anyway (it has closed its volumes)", strerror(-rc));
        return 0;
    }
    /* It closes the socket once systemd knows it as the main process
     * (MAINPID=): exiting before that would end the unit. */
    set_timeout(cfd, SO_RCVTIMEO, MAINPID_WAIT_MS);
    uint8_t b;
    while (recv(cfd, &b, 1, 0) > 0)
        ;
    return 0;
}

int gd_takeover_give(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server *srv,
                     int lock_fd, const struct gd_takeover_ops *ops)
{
    (void)cfg;
    int cfd = accept4(gd_server_ctl_fd(srv), NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0)
        return 0;
    pid_t pid = 0;
    int rc = same_uid(cfd, &pid);
    if (rc < 0) {
        gd_warn("takeover control socket: refused a peer (pid %ld): %s", (long)pid,
                rc == -EPERM ? "another user" : strerror(-rc));
        close(cfd);
        return 0;
    }
    uint8_t hello[GD_TKO_HELLO_SIZE];
    uint32_t hpid = 0;
    set_timeout(cfd, SO_RCVTIMEO, HELLO_TIMEOUT_MS);
    rc = read_full(cfd, hello, sizeof hello);
    if (rc == 0)
        rc = gd_tko_decode_hello(hello, &hpid);
    if (rc < 0) {
        gd_warn("takeover control socket: process %ld did not say hello properly (%s); "
                "ignored", (long)pid, rc == -EPROTONOSUPPORT ? "another protocol version"
                                                               : strerror(-rc));
        close(cfd);
        return 0;
    }
    int64_t t0 = gfs_now_ms();
    char err[512] = "";
    if (ops && ops->busy && ops->busy(ops->arg, err, sizeof err)) {
        close(cfd); /* the successor sees the end before COMMIT and exits */
        gd_err("takeover by process %ld refused: %s; this process serves on", (long)pid, err);
        return 0;
    }
    gd_info("takeover: process %ld asks for the sockets: parking every connection at a request "
            "boundary", (long)pid);
    if (ops && ops->pause_api)
        ops->pause_api(ops->arg);
    bool suspended = false;
    rc = gd_server_park(srv, PARK_TIMEOUT_MS, err, sizeof err);
    if (rc == 0) {
        rc = gd_registry_suspend(reg, SUSPEND_TIMEOUT_MS, err, sizeof err);
        suspended = rc == 0;
    }
    int nconns = 0;
    if (rc == 0)
        rc = hand_off(cfd, reg, srv, lock_fd, &nconns, err, sizeof err);
    if (rc == 0) {
        gd_info("takeover: %d connection(s) and the listeners handed to process %ld in %" PRId64
                " ms; this process exits", nconns, (long)pid, gfs_now_ms() - t0);
        gd_server_handed_over(srv);
        close(cfd);
        return 1;
    }
    close(cfd); /* a successor still waiting for COMMIT sees the end and exits */
    gd_err("takeover by process %ld failed: %s; this process serves on", (long)pid, err);
    if (suspended)
        gd_registry_resume(reg);
    gd_server_unpark(srv);
    if (ops && ops->resume_api)
        ops->resume_api(ops->arg);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The new process                                                           */
/* ------------------------------------------------------------------------ */

/* Test hook (tests/nbd/test_takeover.py): GLIDEFSD_TAKEOVER_FAULT names a
 * point where the new process dies at once, as if killed there. */
static void fault_point(const char *name)
{
    const char *f = getenv("GLIDEFSD_TAKEOVER_FAULT");
    if (f && strcmp(f, name) == 0) {
        gd_warn("takeover: GLIDEFSD_TAKEOVER_FAULT=%s: exiting here", name);
        _exit(3);
    }
}

/* The cache-dir lock we were sent is <cache.dir>/.lock, and it is locked. */
static int check_lock_fd(const glidefs_config *cfg, int fd, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", cfg->cache_dir ? cfg->cache_dir : ".");
    struct stat a, b;
    if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || !S_ISREG(a.st_mode) || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
        snprintf(err, errlen, "the descriptor sent as the cache-dir lock is not %s", path);
        return -EPROTO;
    }
    /* (ours now, shared: taking it again on the same open file succeeds) */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "the cache-dir lock sent is not held: %s", strerror(errno));
        return -EPROTO;
    }
    return 0;
}

/* The successor's opens, one export per job (fanout.h). */
#define OPEN_THREADS 8
struct open_all {
    struct gd_registry *reg;
    const struct gd_tko_state *st;
    struct gd_export **exps;
    int *rc;
};

static void open_one(void *arg, uint32_t i)
{
    struct open_all *oa = arg;
    oa->rc[i] = gd_export_acquire_ex(oa->reg, oa->st->exports[i].name, 0, 0,
                                     oa->st->exports[i].open_flags, &oa->exps[i]);
}

int gd_takeover_take(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server *srv,
                     int *lock_fd, char *err, size_t errlen)
{
    char path[GD_TKO_MAX_PATH + 1];
    int rc = gd_takeover_ctl_name(cfg, path, sizeof path);
    if (rc < 0) {
        snprintf(err, errlen, "cache.dir %s: %s", cfg->cache_dir, strerror(-rc));
        return rc;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    struct sockaddr_un sa;
    socklen_t sl = ctl_addr(path, &sa);
    if (connect(s, (struct sockaddr *)&sa, sl) < 0) {
        int e = errno;
        snprintf(err, errlen, "no running glidefsd to take over with cache dir %s (%s: %s)",
                 cfg->cache_dir, path, strerror(e));
        close(s);
        return -e;
    }
    pid_t pid = 0;
    rc = same_uid(s, &pid);
    if (rc < 0) {
        snprintf(err, errlen, "%s belongs to process %ld of another user", path, (long)pid);
        close(s);
        return rc;
    }
    gd_info("takeover: asking process %ld for its sockets", (long)pid);
    uint8_t hello[GD_TKO_HELLO_SIZE];
    gd_tko_encode_hello(hello, (uint32_t)getpid());
    set_timeout(s, SO_SNDTIMEO, SEND_TIMEOUT_MS);
    set_timeout(s, SO_RCVTIMEO, STATE_TIMEOUT_MS);
    uint8_t hdr[GD_TKO_HDR_SIZE];
    uint32_t body = 0, nfds = 0;
    if ((rc = write_full(s, hello, sizeof hello)) < 0 ||
        (rc = read_full(s, hdr, sizeof hdr)) < 0) {
        snprintf(err, errlen, "process %ld did not send its state (%s; its log says why)",
                 (long)pid, rc == -ECONNRESET ? "it closed the socket" : strerror(-rc));
        close(s);
        return rc;
    }
    if ((rc = gd_tko_decode_header(hdr, &body, &nfds, err, errlen)) < 0) {
        close(s);
        return rc;
    }
    uint8_t *msg = malloc(GD_TKO_HDR_SIZE + (size_t)body);
    int *fds = calloc(nfds, sizeof *fds);
    struct gd_tko_state st;
    memset(&st, 0, sizeof st);
    if (!msg || !fds) {
        snprintf(err, errlen, "out of memory");
        close(s);
        return -ENOMEM;
    }
    memcpy(msg, hdr, sizeof hdr);
    if ((rc = read_full(s, msg + GD_TKO_HDR_SIZE, body)) < 0) {
        snprintf(err, errlen, "state cut short: %s", strerror(-rc));
        close(s);
        return rc;
    }
    if ((rc = gd_tko_decode_state(msg, GD_TKO_HDR_SIZE + (size_t)body, &st, err, errlen)) < 0 ||
        (rc = recv_fds(s, fds, nfds, err, errlen)) < 0 ||
        (rc = check_lock_fd(cfg, fds[0], err, errlen)) < 0) {
        close(s);
        return rc;
    }
    fault_point("received");
    /* Durability set through the API first: each volume gets it as it opens. */
    for (uint32_t i = 0; i < st.ndurs; i++) {
        rc = gd_registry_set_durability(reg, st.durs[i].name, &st.durs[i].d);
        if (rc < 0) {
            snprintf(err, errlen, "durability of export %s: %s", st.durs[i].name,
                     glidefs_strerror(rc));
            close(s);
            return rc;
        }
        gd_info("takeover: export %s keeps the durability set through the API (%s)",
                st.durs[i].name,
                st.durs[i].d.mode == GLIDEFS_DURABILITY_STORE ? "store" : "local");
    }
    /* The volumes, as the old process had them (same cache dir: the same
     * writer, so each lease carries over). */
    struct gd_export **exps = calloc(st.nexports ? st.nexports : 1, sizeof *exps);
    if (!exps) {
        snprintf(err, errlen, "out of memory");
        close(s);
        return -ENOMEM;
    }
    int64_t t0 = gfs_now_ms();
    struct open_all oa = { reg, &st, exps, calloc(st.nexports ? st.nexports : 1, sizeof(int)) };
    if (!oa.rc) {
        free(exps);
        snprintf(err, errlen, "out of memory");
        close(s);
        return -ENOMEM;
    }
    /* side by side: each open waits mostly on its own synced writes */
    gd_fanout(st.nexports, OPEN_THREADS, open_one, &oa);
    for (uint32_t i = 0; i < st.nexports; i++) {
        if (oa.rc[i] < 0) {
            rc = oa.rc[i];
            snprintf(err, errlen, "export %s does not open here: %s", st.exports[i].name,
                     glidefs_strerror(rc));
            for (uint32_t j = 0; j < st.nexports; j++)
                if (oa.rc[j] == 0)
                    gd_export_release(exps[j], 0);
            free(oa.rc);
            free(exps);
            close(s);
            return rc;
        }
    }
    free(oa.rc);
    gd_info("takeover: %u export(s) opened in %" PRId64 " ms", st.nexports, gfs_now_ms() - t0);
    fault_point("opened");
    gd_server_set_ctl(srv, -1, path); /* adopted below */
    if ((rc = gd_server_adopt(srv, &st, fds, exps, err, errlen)) < 0) {
        close(s);
        return rc;
    }
    for (uint32_t i = 0; i < st.nexports; i++)
        gd_export_release(exps[i], 0); /* each connection holds its own */
    free(exps);
    fault_point("adopted");
    uint8_t ack[GD_TKO_ACK_SIZE];
    gd_tko_encode_ack(ack, 0);
    set_timeout(s, SO_RCVTIMEO, COMMIT_TIMEOUT_MS);
    if ((rc = write_full(s, ack, sizeof ack)) < 0 || (rc = read_full(s, ack, sizeof ack)) < 0 ||
        (rc = gd_tko_decode_commit(ack)) < 0) {
        snprintf(err, errlen, "process %ld did not confirm the hand-off (%s): it serves on",
                 (long)pid, rc == -ECONNRESET ? "it gave up" : strerror(-rc));
        close(s);
        return rc;
    }
    /* Under systemd (Type=notify, NotifyAccess=all) this is the service now;
     * the old process waits for the close below before it exits. */
    char note[64];
    snprintf(note, sizeof note, "MAINPID=%ld\nREADY=1", (long)getpid());
    gd_sd_notify(note);
    close(s);
    gd_server_start_adopted(srv);
    gd_info("takeover: serving %u connection(s) taken from process %ld", st.nconns, (long)pid);
    *lock_fd = fds[0];
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fds[0], 0) < 0 || pwrite(fds[0], line, (size_t)len, 0) != len)
        gd_warn("cannot write the pid into the cache-dir lock file: %s", strerror(errno));
    gd_tko_state_free(&st);
    free(msg);
    free(fds);
    return 0;
}
