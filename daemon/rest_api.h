/*
 * rest_api.h — glidefsd's REST API (libmicrohttpd + jansson): export status,
 * create, resize, delete, drain, promote, release, compact, per-export JSON
 * metrics, Prometheus /metrics and /healthz, on servers.api.listen (TCP) and
 * servers.api.unix_socket. See rest_http.c for the routes and README.md
 * "REST API and glidefs-ctl" for the JSON shapes.
 */
#ifndef GLIDEFSD_REST_API_H
#define GLIDEFSD_REST_API_H

#include <stddef.h>

#include "glidefs/glidefs.h"

struct gd_registry;
struct gd_server;
struct gd_rest;
struct gd_vhost;

/* Largest request body accepted (bigger: 413). */
#define GD_REST_MAX_BODY (64u * 1024)

/* Bind the listeners and start serving. cfg, reg and srv must outlive the
 * API. stop_fd (an eventfd, may be -1) becoming readable makes every new
 * request fail with 503 and cuts long drains short, so that SIGTERM is not
 * held up. *out is NULL when the API is disabled (servers.api.listen "" and
 * no unix socket). On failure (bad or non-loopback address without a token,
 * address in use, ...) writes one line naming the problem into err. vhost
 * (may be NULL: off) serves POST /api/exports/NAME/vhost-user and must
 * outlive the API too. */
int gd_rest_start(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server *srv,
                  struct gd_vhost *vhost, int stop_fd, struct gd_rest **out, char *err,
                  size_t errlen);

/* Stop accepting, wait for the requests in progress, close the listeners
 * (and remove the unix socket), free. Call before the registry shuts down:
 * no request may hold an export when it does. NULL is fine. */
void gd_rest_stop(struct gd_rest *r);

/* SIGHUP: read servers.api.tls_certificates again. Connections made after
 * it get the new certificate, open ones keep theirs; on failure (unreadable
 * file, broken key, key not of the certificate) the current one stays and
 * the log says why. NULL or a plain-HTTP API: nothing to do. */
void gd_rest_reload_tls(struct gd_rest *r);

/* SIGHUP: requests from now on need this bearer token (servers.api.token);
 * one in progress keeps the check it made. 1 when that changed it, 0 when
 * it is the token in force already. Removing the token (NULL or "") while
 * one is set is refused, -EPERM: that needs a restart. -ENOENT when the API
 * is off (r NULL). */
int gd_rest_set_token(struct gd_rest *r, const char *token);

#endif
