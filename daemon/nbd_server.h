/*
 * nbd_server.h — glidefsd's NBD server: the unix-socket and TCP listeners,
 * one connection per client (handshake, then a reader thread that runs cache
 * hits inline and hands slow requests to the shared worker pool, replies
 * written under a per-connection lock), and the orderly stop on SIGTERM.
 * Implemented in nbd_conn.c, nbd_reader.c and nbd_exec.c (nbd_internal.h);
 * the listening sockets come from sockets.c.
 */
#ifndef GLIDEFSD_NBD_SERVER_H
#define GLIDEFSD_NBD_SERVER_H

#include <stdbool.h>

#include "glidefs/glidefs.h"

struct gd_registry;
struct gd_server;

/* cfg and reg must outlive the server. 0 or negative errno. */
int gd_server_create(const glidefs_config *cfg, struct gd_registry *reg,
                     struct gd_server **out);

/* Bind the listeners from the config (servers.nbd.unix_socket, servers.nbd.tcp).
 * On failure writes one line naming the problem into err. */
int gd_server_listen(struct gd_server *s, char *err, size_t errlen);

/* Accept and serve until stop_fd becomes readable; then stop accepting,
 * answer new requests with ESHUTDOWN, let in-flight requests finish, close
 * every connection and return. (gd_server_serve, then gd_server_stop.) */
int gd_server_run(struct gd_server *s, int stop_fd);

/* Accept and serve until stop_fd becomes readable (GD_SERVE_STOP) or a
 * successor knocks on the takeover control socket (GD_SERVE_TAKEOVER: call
 * gd_takeover_give, then serve again or not). */
#define GD_SERVE_STOP 0
#define GD_SERVE_TAKEOVER 1
int gd_server_serve(struct gd_server *s, int stop_fd);
/* The orderly stop after gd_server_serve (SIGTERM). */
void gd_server_stop(struct gd_server *s);

/* Takeover (nbd_park.c; takeover.c drives it). */
struct gd_export;
/* The control socket's listening fd (-1: adopted later) and its abstract
 * name ("@..."). */
void gd_server_set_ctl(struct gd_server *s, int fd, const char *name);
int gd_server_ctl_fd(struct gd_server *s);
/* Stop every connection at a request boundary with nothing in flight,
 * within timeout_ms: handshakes get half of it, then are cut short; TLS
 * connections are closed (a GnuTLS session cannot move). 0, or -ETIMEDOUT
 * with err naming a connection that did not park (call gd_server_unpark). */
int gd_server_park(struct gd_server *s, int timeout_ms, char *err, size_t errlen);
/* The takeover failed: parked connections serve on, on their export's
 * volume as reopened (dropped when it did not reopen). */
void gd_server_unpark(struct gd_server *s);
/* What the successor needs: the listeners (and the control socket) and the
 * parked connections, in st (exports filled by the caller first) with their
 * descriptors in fds (st's order, after fds[0], which the caller sets). */
struct gd_tko_state;
int gd_server_parked_count(struct gd_server *s);
int gd_server_handoff_state(struct gd_server *s, struct gd_tko_state *st, int *fds);
/* The successor has everything: parked connections end without touching
 * their sockets, the listeners are closed (not unlinked), and this returns
 * once every connection's thread is joined. */
void gd_server_handed_over(struct gd_server *s);
/* Successor: take the listeners and connections of st (fds as received;
 * exps[i] a reference to st->exports[i], taken over by each connection
 * that uses it). Checks them against the config. 0, or a negative errno
 * with err. Nothing runs until gd_server_start_adopted. */
int gd_server_adopt(struct gd_server *s, const struct gd_tko_state *st, const int *fds,
                    struct gd_export **exps, char *err, size_t errlen);
void gd_server_start_adopted(struct gd_server *s);

/* Hard-disconnect every client in transmission on export e (the REST API's
 * forced delete); their readers then finish and release e. server is a
 * struct gd_server (void * to fit gd_export_remove's kick callback). */
struct gd_export;
void gd_server_kick_export(void *server, struct gd_export *e);

/* SIGHUP: load the TLS credentials again (servers.nbd.tls_certificates,
 * tls_psk_file). New connections get them, connected clients keep theirs;
 * on failure the old ones stay (logged). Nothing when TLS is off. */
void gd_server_reload_tls(struct gd_server *s);

void gd_server_free(struct gd_server *s);

#endif
