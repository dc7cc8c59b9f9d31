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
 * every connection and return. */
int gd_server_run(struct gd_server *s, int stop_fd);

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
