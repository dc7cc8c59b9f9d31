/*
 * vhost_dev.c — a vhost-user-blk session (vhost_dev.h): reading messages
 * with their descriptors, the request handlers, and the poll loop over the
 * socket and the kick eventfds.
 *
 * Stage 1 design: one thread per session runs everything in order, requests
 * included (a request runs to completion before the next message or kick
 * is looked at), so no request is ever in flight when the frontend changes
 * the memory table or stops a ring (GET_VRING_BASE), and nothing needs a
 * lock. The price is one request at a time per session, whatever the
 * queue depth or the number of queues: parallel execution on the worker
 * pool is stage 2 (daemon/README.md).
 *
 * What is offered: VERSION_1, INDIRECT_DESC, PROTOCOL_FEATURES and the
 * virtio-blk bits of vhost_blk.c; protocol features MQ, REPLY_ACK, CONFIG
 * and INFLIGHT_SHMFD (vhost_inflight.h: a request is marked in the
 * frontend's region before it runs and unmarked after its used entry is
 * out; a restarted glidefsd resubmits the marked ones when the ring starts
 * again), and EVENT_IDX (vhost_vq.c: used_event decides our calls,
 * avail_event is written whenever the ring is found empty). Not offered
 * (so a frontend must not use them): logging (live migration),
 * RESET_DEVICE, memory slots, kick-less polling. A message that breaks the protocol, or one we cannot
 * honour, disconnects the frontend (logged with the reason); SET_CONFIG is
 * refused (the config is read-only) without a disconnect.
 */
#include "vhost_dev.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "exports.h"
#include "log.h"
#include "vhost_blk.h"
#include "vhost_inflight.h"
#include "vhost_mem.h"
#include "vhost_msg.h"
#include "vhost_vq.h"

#define PROTOCOL_OFFERED                                                                           \
    (1ull << VU_PROTOCOL_F_MQ | 1ull << VU_PROTOCOL_F_REPLY_ACK | 1ull << VU_PROTOCOL_F_CONFIG |   \
     1ull << VU_PROTOCOL_F_INFLIGHT_SHMFD)
#define MSG_TIMEOUT_MS 10000  /* the rest of a message once its first byte came */
#define KICK_BUDGET 256       /* requests per queue before the socket is looked at again */

struct vu_dev {
    int fd, stop_fd;
    uint64_t id;
    const char *name;
    struct vu_blk blk;
    struct vu_mem mem;
    struct vu_vq vq[VU_MAX_QUEUES];
    uint64_t features;        /* acked by SET_FEATURES */
    uint64_t proto;           /* acked by SET_PROTOCOL_FEATURES */
    unsigned pending;         /* queues left with work after their budget */
    struct vu_chain *chain;
    struct vu_inflight inflight; /* GET/SET_INFLIGHT_FD's region, if any */
    uint8_t reply[VU_HDR_SIZE + VU_MAX_PAYLOAD];
    size_t reply_len;
    int reply_fd;             /* a descriptor that goes with the reply, -1: none */
    char fault[8];            /* test hook (fault_point), "": off */
    const char *fault_arm;
};

enum { H_OK = 0, H_REFUSED = 1, H_BROKEN = -1 };

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* An eventfd from the frontend, made non-blocking: neither a kick we read
 * nor a call we write may ever block the session on a descriptor the
 * frontend chose (QEMU's are non-blocking already). */
static int set_notifier(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    return fd;
}

static int send_reply(struct vu_dev *d)
{
    size_t off = 0;
    if (d->reply_fd >= 0) {
        /* the descriptor rides with the first byte */
        union {
            char b[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } cbuf;
        memset(&cbuf, 0, sizeof cbuf);
        struct iovec iov = { d->reply, d->reply_len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
                             .msg_controllen = sizeof cbuf.b };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &d->reply_fd, sizeof(int));
        ssize_t w;
        do
            w = sendmsg(d->fd, &mh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        close_fd(&d->reply_fd);
        if (w <= 0)
            return -1;
        off = (size_t)w;
    }
    while (off < d->reply_len) {
        ssize_t w = send(d->fd, d->reply + off, d->reply_len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Read one message: header with its descriptors, then the payload. 1: got
 * one, 0: the frontend hung up cleanly, -1: broken (fds closed). */
static int read_msg(struct vu_dev *d, uint8_t *buf, size_t *len, int *fds, int *nfds)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = { buf, VU_HDR_SIZE };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
                         .msg_controllen = sizeof cbuf.b };
    ssize_t n;
    do
        n = recvmsg(d->fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    bool too_many = false;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (*nfds < VU_MAX_FDS)
                fds[(*nfds)++] = f;
            else {
                close(f);
                too_many = true;
            }
        }
    }
    if (n == 0 && *nfds == 0)
        return 0;
    if (n != VU_HDR_SIZE || too_many || (mh.msg_flags & MSG_CTRUNC)) {
        if (n > 0 || *nfds)
            gd_warn("vhost-user %" PRIu64 " (export %s): %s; disconnecting", d->id, d->name,
                    n < 0 ? strerror(errno)
                          : n != VU_HDR_SIZE ? "short message header"
                                             : "too many descriptors with a message");
        for (int i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return -1;
    }
    uint32_t size;
    memcpy(&size, buf + 8, 4);
    if (size > VU_MAX_PAYLOAD) {
        gd_warn("vhost-user %" PRIu64 " (export %s): a %" PRIu32 "-byte payload (at most %d); "
                "disconnecting", d->id, d->name, size, VU_MAX_PAYLOAD);
        for (int i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return -1;
    }
    size_t got = 0;
    while (got < size) {
        /* recv(), not recvmsg(): descriptors sent with the payload are dropped
         * by the kernel (MSG_CTRUNC), never installed here. */
        ssize_t r = recv(d->fd, buf + VU_HDR_SIZE + got, size - got, MSG_WAITALL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            gd_warn("vhost-user %" PRIu64 " (export %s): payload cut short; disconnecting",
                    d->id, d->name);
            for (int i = 0; i < *nfds; i++)
                close(fds[i]);
            *nfds = 0;
            return -1;
        }
        got += (size_t)r;
    }
    *len = VU_HDR_SIZE + size;
    return 1;
}

static void stop_queue(struct vu_vq *q)
{
    q->started = false;
    close_fd(&q->kick_fd);
    /* Heads not yet resubmitted stay marked: the next start finds them. */
    q->inflight = NULL;
    q->nresubmit = q->resubmit_next = 0;
}

static bool any_started(const struct vu_dev *d)
{
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
        if (d->vq[i].started)
            return true;
    return false;
}

/* A ring starts: with inflight tracking when it was negotiated and the
 * frontend gave a region (QEMU always does); then the heads a previous
 * backend left in flight are queued for resubmission. */
static int start_tracking(struct vu_dev *d, unsigned qi, const char **why)
{
    struct vu_vq *q = &d->vq[qi];
    q->inflight = NULL;
    q->nresubmit = q->resubmit_next = 0;
    if (!(d->proto & (1ull << VU_PROTOCOL_F_INFLIGHT_SHMFD)) || !d->inflight.base)
        return 0;
    uint8_t *qr = vu_inflight_queue(&d->inflight, qi);
    if (!qr) {
        *why = "a ring that has no block in the inflight region";
        return -1;
    }
    int done = -1;
    int n = vu_vq_resume(q, qr, d->inflight.qsize, &done, why);
    if (n < 0)
        return -1;
    if (done >= 0)
        gd_info("vhost-user %" PRIu64 " (export %s): queue %u: head %d was on the used ring "
                "but still marked in flight (a backend died in between): completed, not run "
                "again", d->id, d->name, qi, done);
    if (n > 0)
        gd_info("vhost-user %" PRIu64 " (export %s): queue %u: resubmitting %d in-flight "
                "request(s) from before the reconnect", d->id, d->name, qi, n);
    return 0;
}

static void reset_queues(struct vu_dev *d)
{
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
        struct vu_vq *q = &d->vq[i];
        close_fd(&q->kick_fd);
        close_fd(&q->call_fd);
        close_fd(&q->err_fd);
        vu_vq_init(q);
    }
}

/* Test hook (tests/guest/test_guest.py vhostcrash): with
 * GLIDEFSD_VHOST_FAULT=KIND:FILE, glidefsd dies at once, as if killed
 * there, at point KIND of the first request after FILE appears: "mark"
 * (taken and marked in flight, not run), "used" (its used entry
 * published, the mark not yet cleared). */
static void fault_init(struct vu_dev *d)
{
    const char *f = getenv("GLIDEFSD_VHOST_FAULT");
    const char *colon = f ? strchr(f, ':') : NULL;
    if (!colon || (size_t)(colon - f) >= sizeof d->fault)
        return;
    memcpy(d->fault, f, (size_t)(colon - f));
    d->fault[colon - f] = 0;
    d->fault_arm = colon + 1;
}

static void fault_point(const struct vu_dev *d, const char *kind)
{
    if (d->fault[0] && strcmp(d->fault, kind) == 0 && access(d->fault_arm, F_OK) == 0) {
        gd_warn("vhost-user %" PRIu64 ": GLIDEFSD_VHOST_FAULT=%s: exiting here", d->id, kind);
        _exit(3);
    }
}

/* Run what is available on queue qi. -1: the ring is broken. */
static int process(struct vu_dev *d, unsigned qi)
{
    struct vu_vq *q = &d->vq[qi];
    d->pending &= ~(1u << qi);
    if (!q->started || !q->enabled || !q->desc)
        return 0;
    bool indirect = d->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
    unsigned done = 0;
    int rc = 0;
    for (;;) {
        if (done == KICK_BUDGET) {
            d->pending |= 1u << qi;
            break;
        }
        const char *why = "";
        int r = vu_vq_pop(q, &d->mem, indirect, d->chain, &why);
        if (r < 0) {
            gd_warn("vhost-user %" PRIu64 " (export %s): queue %u: %s; disconnecting", d->id,
                    d->name, qi, why);
            rc = -1;
            break;
        }
        if (r == 0)
            break;
        uint32_t used = 0;
        fault_point(d, "mark");
        if (vu_blk_run(&d->blk, d->chain, &used) < 0) {
            gd_warn("vhost-user %" PRIu64 " (export %s): queue %u: a request without a "
                    "writable status byte; disconnecting", d->id, d->name, qi);
            rc = -1;
            break;
        }
        vu_vq_push(q, d->chain->head, used);
        fault_point(d, "used");
        vu_vq_done(q, d->chain->head);
        done++;
    }
    /* After a reconnect the guest may not have been told of used entries
     * the previous backend published: one interrupt more is harmless. */
    if (done || (q->resumed && q->call_fd >= 0)) {
        q->resumed = false;
        vu_vq_notify(q);
    }
    if (rc < 0 && q->err_fd >= 0)
        eventfd_write(q->err_fd, 1);
    return rc;
}

/* After a new memory table: a running ring must still be inside it; one
 * that is not running is left unmapped until its next SET_VRING_ADDR. */
static int remap_queues(struct vu_dev *d)
{
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
        if (vu_vq_map(&d->vq[i], &d->mem) < 0 && d->vq[i].started)
            return -1;
    return 0;
}

/* One validated message. fds[] entries a handler keeps are set to -1. */
static int handle(struct vu_dev *d, const struct vu_msg *m, int *fds, const char **why)
{
    uint64_t offered = vu_blk_features(&d->blk);
    switch (m->request) {
    case VU_GET_FEATURES:
        d->reply_len = vu_reply_u64(d->reply, m->request, offered);
        return H_OK;
    case VU_SET_FEATURES:
        if (m->p.u64 & ~offered) {
            *why = "features that were not offered";
            return H_BROKEN;
        }
        d->features = m->p.u64;
        for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
            if (d->vq[i].started &&
                d->vq[i].event_idx != !!(d->features & (1ull << VIRTIO_RING_F_EVENT_IDX))) {
                *why = "EVENT_IDX switched on a running ring";
                return H_BROKEN;
            }
            d->vq[i].event_idx = d->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
        }
        if (remap_queues(d) < 0) {
            *why = "ring addresses outside the memory table (with the event fields)";
            return H_BROKEN;
        }
        /* Without protocol features, rings start enabled (the spec). */
        if (!(d->features & (1ull << VU_F_PROTOCOL_FEATURES)))
            for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
                d->vq[i].enabled = true;
        return H_OK;
    case VU_GET_PROTOCOL_FEATURES:
        d->reply_len = vu_reply_u64(d->reply, m->request, PROTOCOL_OFFERED);
        return H_OK;
    case VU_SET_PROTOCOL_FEATURES:
        if (m->p.u64 & ~PROTOCOL_OFFERED) {
            *why = "protocol features that were not offered";
            return H_BROKEN;
        }
        d->proto = m->p.u64;
        return H_OK;
    case VU_SET_OWNER:
    case VU_RESET_OWNER:
        return H_OK;
    case VU_GET_QUEUE_NUM:
        d->reply_len = vu_reply_u64(d->reply, m->request, VU_MAX_QUEUES);
        return H_OK;
    case VU_SET_MEM_TABLE: {
        struct vu_mem nm;
        char buf[160];
        int rc = vu_mem_map(&nm, m, fds, buf, sizeof buf);
        if (rc < 0) {
            gd_warn("vhost-user %" PRIu64 " (export %s): memory table: %s", d->id, d->name, buf);
            *why = "a memory table that cannot be mapped";
            return H_BROKEN;
        }
        vu_mem_unmap(&d->mem);
        d->mem = nm;
        if (remap_queues(d) < 0) {
            *why = "a memory table that leaves out a running ring";
            return H_BROKEN;
        }
        return H_OK;
    }
    case VU_SET_VRING_NUM: {
        struct vu_vq *q = &d->vq[m->p.state.index];
        if (q->started) {
            *why = "a ring size change on a running ring";
            return H_BROKEN;
        }
        q->num = m->p.state.num;
        /* The addresses that go with it may come next (SET_VRING_ADDR
         * checks them): until then the ring is unmapped if it no longer fits. */
        (void)vu_vq_map(q, &d->mem);
        return H_OK;
    }
    case VU_SET_VRING_ADDR: {
        struct vu_vq *q = &d->vq[m->p.addr.index];
        if (q->started) {
            *why = "a ring address change on a running ring";
            return H_BROKEN;
        }
        q->desc_uva = m->p.addr.desc;
        q->avail_uva = m->p.addr.avail;
        q->used_uva = m->p.addr.used;
        q->have_addr = true;
        if (q->num == 0 || vu_vq_map(q, &d->mem) < 0 || !q->desc) {
            *why = "ring addresses outside the memory table (or no ring size)";
            return H_BROKEN;
        }
        return H_OK;
    }
    case VU_SET_VRING_BASE: {
        struct vu_vq *q = &d->vq[m->p.state.index];
        if (q->started) {
            *why = "a ring base change on a running ring";
            return H_BROKEN;
        }
        q->last_avail = (uint16_t)m->p.state.num;
        q->used_idx = (uint16_t)m->p.state.num;
        q->signalled_valid = false;
        return H_OK;
    }
    case VU_GET_VRING_BASE: {
        struct vu_vq *q = &d->vq[m->p.state.index];
        stop_queue(q);
        d->reply_len = vu_reply_state(d->reply, m->request, m->p.state.index, q->last_avail);
        return H_OK;
    }
    case VU_SET_VRING_KICK: {
        unsigned qi = (unsigned)(m->p.u64 & VU_VRING_IDX_MASK);
        struct vu_vq *q = &d->vq[qi];
        if (m->p.u64 & VU_VRING_NOFD) {
            *why = "a ring without a kick descriptor (polling is not supported)";
            return H_BROKEN;
        }
        close_fd(&q->kick_fd);
        q->kick_fd = set_notifier(fds[0]);
        fds[0] = -1;
        if (!q->started) {
            if (start_tracking(d, qi, why) < 0)
                return H_BROKEN;
            gd_info("vhost-user %" PRIu64 " (export %s): queue %u started (%u entries, event "
                    "index %s, inflight tracking %s)", d->id, d->name, qi, q->num,
                    q->event_idx ? "on" : "off", q->inflight ? "on" : "off");
        }
        q->started = true;
        /* the guest may have queued requests already */
        return process(d, qi) < 0 ? H_BROKEN : H_OK;
    }
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR: {
        struct vu_vq *q = &d->vq[m->p.u64 & VU_VRING_IDX_MASK];
        int *slot = m->request == VU_SET_VRING_CALL ? &q->call_fd : &q->err_fd;
        close_fd(slot);
        if (!(m->p.u64 & VU_VRING_NOFD)) {
            *slot = set_notifier(fds[0]);
            fds[0] = -1;
        }
        return H_OK;
    }
    case VU_SET_VRING_ENABLE: {
        if (!(d->features & (1ull << VU_F_PROTOCOL_FEATURES))) {
            *why = "SET_VRING_ENABLE without protocol features";
            return H_BROKEN;
        }
        struct vu_vq *q = &d->vq[m->p.state.index];
        q->enabled = m->p.state.num != 0;
        return process(d, m->p.state.index) < 0 ? H_BROKEN : H_OK;
    }
    case VU_GET_CONFIG: {
        uint8_t cfg[VU_CONFIG_MAX];
        vu_blk_config(&d->blk, cfg);
        d->reply_len = vu_reply_config(d->reply, m->p.config.offset, m->p.config.size,
                                       m->p.config.flags, cfg + m->p.config.offset);
        return H_OK;
    }
    case VU_SET_CONFIG:
        return H_REFUSED; /* nothing in our config is writable */
    case VU_GET_INFLIGHT_FD:
    case VU_SET_INFLIGHT_FD: {
        if (!(d->proto & (1ull << VU_PROTOCOL_F_INFLIGHT_SHMFD))) {
            *why = "inflight tracking was not negotiated";
            return H_BROKEN;
        }
        /* Running rings point into the region. */
        if (any_started(d)) {
            *why = "an inflight region change while rings run";
            return H_BROKEN;
        }
        struct vu_inflight nf;
        char buf[160];
        int rc, fd = -1;
        if (m->request == VU_GET_INFLIGHT_FD)
            rc = vu_inflight_new(&nf, m->p.inflight.num_queues, m->p.inflight.queue_size, &fd,
                                 buf, sizeof buf);
        else
            rc = vu_inflight_map(&nf, m, fds[0], buf, sizeof buf);
        if (rc < 0) {
            gd_warn("vhost-user %" PRIu64 " (export %s): inflight region: %s", d->id, d->name,
                    buf);
            *why = "an inflight region that cannot be made or mapped";
            return H_BROKEN;
        }
        vu_inflight_unmap(&d->inflight);
        d->inflight = nf;
        if (m->request == VU_GET_INFLIGHT_FD) {
            d->reply_len = vu_reply_inflight(d->reply, nf.map_len, 0, (uint16_t)nf.nq,
                                             (uint16_t)nf.qsize);
            d->reply_fd = fd;
        }
        return H_OK;
    }
    default:
        *why = "a request that was not negotiated";
        return H_BROKEN;
    }
}

static int on_message(struct vu_dev *d)
{
    uint8_t buf[VU_HDR_SIZE + VU_MAX_PAYLOAD];
    int fds[VU_MAX_FDS];
    int nfds = 0;
    size_t len = 0;
    int r = read_msg(d, buf, &len, fds, &nfds);
    if (r <= 0) {
        if (r == 0)
            gd_info("vhost-user %" PRIu64 " (export %s): frontend disconnected", d->id, d->name);
        return -1;
    }
    struct vu_msg m;
    const char *why = "";
    int rc = vu_msg_parse(buf, len, nfds, &m, &why);
    if (rc < 0) {
        uint32_t req;
        memcpy(&req, buf, 4);
        gd_warn("vhost-user %" PRIu64 " (export %s): bad message %" PRIu32 " (%s): %s; "
                "disconnecting", d->id, d->name, req, vu_request_name(req), why);
    } else {
        d->reply_len = 0;
        int h = handle(d, &m, fds, &why);
        if (h == H_BROKEN) {
            gd_warn("vhost-user %" PRIu64 " (export %s): %s: %s; disconnecting", d->id, d->name,
                    vu_request_name(m.request), why);
            rc = -1;
        } else {
            if (!vu_msg_has_reply(m.request) && (m.flags & VU_FLAG_NEED_REPLY) &&
                (d->proto & (1ull << VU_PROTOCOL_F_REPLY_ACK)))
                d->reply_len = vu_reply_u64(d->reply, m.request, h == H_OK ? 0 : 1);
            if (d->reply_len && send_reply(d) < 0)
                rc = -1;
        }
    }
    close_fd(&d->reply_fd);
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

void vu_dev_serve(int fd, int stop_fd, uint64_t id, struct gd_export *e)
{
    struct vu_dev *d = calloc(1, sizeof *d);
    struct vu_chain *chain = malloc(sizeof *chain);
    if (!d || !chain) {
        gd_err("vhost-user %" PRIu64 ": out of memory", id);
        free(d);
        free(chain);
        return;
    }
    d->fd = fd;
    d->stop_fd = stop_fd;
    d->id = id;
    d->name = gd_export_name(e);
    d->chain = chain;
    d->reply_fd = -1;
    fault_init(d);
    glidefs_volume *vol = gd_export_volume(e);
    d->blk.vol = vol;
    d->blk.size = glidefs_volume_size(vol) & ~511ull;
    d->blk.ro = glidefs_volume_read_only(vol) != 0;
    d->blk.num_queues = VU_MAX_QUEUES;
    snprintf(d->blk.serial, sizeof d->blk.serial, "%s", d->name);
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
        vu_vq_init(&d->vq[i]);
    struct timeval tv = { MSG_TIMEOUT_MS / 1000, (MSG_TIMEOUT_MS % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    gd_info("vhost-user %" PRIu64 " (export %s): frontend connected%s", id, d->name,
            d->blk.ro ? " (read-only on this node)" : "");

    for (;;) {
        struct pollfd pf[2 + VU_MAX_QUEUES];
        unsigned qi_of[2 + VU_MAX_QUEUES] = { 0 };
        int n = 0;
        pf[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
        pf[n++] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
        for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
            if (d->vq[i].started && d->vq[i].enabled && d->vq[i].kick_fd >= 0) {
                qi_of[n] = i;
                pf[n++] = (struct pollfd){ .fd = d->vq[i].kick_fd, .events = POLLIN };
            }
        int pr = poll(pf, (nfds_t)n, d->pending ? 0 : -1);
        if (pr < 0 && errno != EINTR) {
            gd_err("vhost-user %" PRIu64 ": poll: %s", id, strerror(errno));
            break;
        }
        if (pr < 0)
            continue;
        if (pf[1].revents)
            break;
        if (pf[0].revents) {
            if (on_message(d) < 0)
                break;
            /* The message may have closed a kick descriptor (and its number
             * been reused): poll again with the current ones. */
            continue;
        }
        bool broken = false;
        for (int k = 2; k < n && !broken; k++)
            if (pf[k].revents) {
                /* Non-blocking (set_notifier): a kick descriptor that is not
                 * an eventfd (a file at its end, a hung-up pipe) would
                 * otherwise keep poll() spinning. */
                uint64_t v;
                ssize_t r = read(pf[k].fd, &v, sizeof v);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    gd_warn("vhost-user %" PRIu64 " (export %s): queue %u: its kick descriptor "
                            "is not a working eventfd; disconnecting", id, d->name, qi_of[k]);
                    broken = true;
                }
                d->pending |= 1u << qi_of[k];
            }
        for (unsigned i = 0; i < VU_MAX_QUEUES && !broken; i++)
            if (d->pending & (1u << i))
                broken = process(d, i) < 0;
        if (broken)
            break;
    }
    reset_queues(d);
    vu_mem_unmap(&d->mem);
    vu_inflight_unmap(&d->inflight);
    free(chain);
    free(d);
}
