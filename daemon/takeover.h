/*
 * takeover.h — `glidefsd --takeover` (issue 27): a new glidefsd takes the
 * listening sockets and every live NBD connection from the running one over
 * its control socket (an abstract unix socket named after the cache dir's
 * real path; peers of another uid refused: SO_PEERCRED). The old side parks
 * its connections at a request boundary, flushes every journal and closes its volumes, sends its state
 * and descriptors, and exits once the new side has opened the volumes and
 * adopted everything; any failure before that leaves the old one serving.
 * takeover_proto.h has the messages, nbd_park.c the connections' side.
 */
#ifndef GLIDEFSD_TAKEOVER_H
#define GLIDEFSD_TAKEOVER_H

#include <stddef.h>

#include "glidefs/glidefs.h"

struct gd_registry;
struct gd_server;

/* What main.c does around a hand-off: the REST API cannot be handed over
 * (stage 1), so it stops first and starts again when the takeover fails. */
struct gd_takeover_ops {
    void (*pause_api)(void *arg);
    void (*resume_api)(void *arg);
    void *arg;
    /* before anything is paused: nonzero (and why) refuses the takeover */
    int (*busy)(void *arg, char *why, size_t len);
};

/* The control socket's abstract name, "@glidefsd-takeover-<hash of the
 * cache dir's real path>" ('@' for the leading NUL). 0 or negative errno. */
int gd_takeover_ctl_name(const glidefs_config *cfg, char *out, size_t len);

/* Bind the control socket and give it to the server. 0 or a negative
 * errno with err. */
int gd_takeover_listen(const glidefs_config *cfg, struct gd_server *srv, char *err,
                       size_t errlen);

/* The old process: the control socket is readable (gd_server_serve said
 * GD_SERVE_TAKEOVER). 1: handed over, every connection's thread is gone,
 * the caller exits 0 without draining (the volumes are closed, their
 * journals durable); 0: nothing handed over (a refused or failed
 * successor, logged), serving goes on. */
int gd_takeover_give(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server *srv,
                     int lock_fd, const struct gd_takeover_ops *ops);

/* The new process, instead of the cache-dir lock and the listeners: take
 * everything from the running daemon. 0 with *lock_fd (the cache-dir lock,
 * now shared) and the adopted connections running; or a negative errno
 * with err, after which the caller must exit at once (_exit: nothing it
 * received may be shut down or unlinked) and the old process serves on. */
int gd_takeover_take(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server *srv,
                     int *lock_fd, char *err, size_t errlen);

#endif
