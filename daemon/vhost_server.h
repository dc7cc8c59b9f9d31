/*
 * vhost_server.h — glidefsd's vhost-user-blk sockets: one listening unix
 * socket per export, servers.vhost_user.dir/NAME.sock, made by the REST API
 * (POST /api/exports/NAME/vhost-user); an accept thread for all of them and
 * a thread per connected frontend (vhost_dev.h). A frontend's session holds
 * the export as a client connection, like an NBD client in transmission:
 * the same volume, lease hand-back when the last client leaves, drain on
 * shutdown. Sockets a glidefsd that did not stop cleanly left in the
 * directory are served again at start (gd_vhost_resume): frontends may be
 * waiting to reconnect.
 */
#ifndef GLIDEFSD_VHOST_SERVER_H
#define GLIDEFSD_VHOST_SERVER_H

#include <stddef.h>

#include "glidefs/glidefs.h"

struct gd_registry;
struct gd_export;
struct gd_vhost;

/* NULL in *out (and 0) when servers.vhost_user.dir is not set. The
 * directory must exist (it is not created). cfg and reg must outlive it.
 * On failure one line in err. */
int gd_vhost_create(const glidefs_config *cfg, struct gd_registry *reg, struct gd_vhost **out,
                    char *err, size_t errlen);

/* Serve again every DIR/NAME.sock an earlier glidefsd left (it did not
 * stop cleanly: its frontends may be waiting to reconnect). Called once
 * glidefsd is sure to run (a failed start would remove them at its
 * gd_vhost_free). v may be NULL. */
void gd_vhost_resume(struct gd_vhost *v);

/* Serve export `name` (a valid name) on DIR/NAME.sock; the path goes to
 * path. Already served: 0 and the same path. -ENOTSUP when v is NULL
 * (vhost-user off), -ESHUTDOWN when stopping, else the listener's error
 * with one line in err. */
int gd_vhost_serve(struct gd_vhost *v, const char *name, char *path, size_t pathlen, char *err,
                   size_t errlen);

/* Disconnect every frontend of export e (a forced delete). v may be NULL. */
void gd_vhost_kick_export(struct gd_vhost *v, struct gd_export *e);

/* Stop: close and remove the sockets, disconnect the frontends, wait for
 * their sessions to end (their exports released). NULL is fine. */
/* How many export sockets are served now (v may be NULL: 0). */
int gd_vhost_sockets(struct gd_vhost *v);
void gd_vhost_stop(struct gd_vhost *v);
void gd_vhost_free(struct gd_vhost *v);

#endif
