/*
 * rest_internal.h — the REST API's shared state and the functions its
 * files call across: rest_http.c (HTTP plumbing), rest_json.c (answers,
 * request bodies), rest_handlers.c (the handlers). The REST API runs on
 * libmicrohttpd (a thread per connection, so a long drain never holds up
 * other requests) with jansson.
 *
 * Every request goes the same way, before anything touches an export:
 *   1. shutting down -> 503; a foreign Host, Origin or Sec-Fetch-Site -> 403
 *      (api_guard.c: web pages are not clients); bearer token
 *      (servers.api.token) -> 401; Content-Length over GD_REST_MAX_BODY ->
 *      413 (bodies sent without a length are cut off the same way while
 *      they arrive); a body that is not Content-Type: application/json -> 415;
 *   2. the raw path is split at '/', each segment %-decoded on its own (MHD's
 *      own unescaping is switched off, so "%2F" cannot make a new segment;
 *      "%00" and bad escapes -> 400) and matched against the one route table
 *      in rest_http.c (checked at start-up): no path -> 404; the {name} and {snap}
 *      segments must pass glidefs_name_valid -> else 400; a path without a
 *      route for the method -> 405 with Allow; query parameters the route
 *      does not know -> 400;
 *   3. the handler: JSON bodies must be objects with known fields only.
 * Every answer is JSON ({"error": "..."} on failure) except /metrics.
 *
 * Exports: GET endpoints (status, metrics) report exports open on this node
 * and never open one (opening takes the write lease); drain, resize,
 * promote, compact, delete, fenced/export, fenced/discard and the snapshot
 * endpoints open an export that
 * exists in the store but is not open, like a connecting client would, and
 * the registry closes it again once idle.
 *
 * Snapshots and clones (lib/snapshot.c): a snapshot drains and names a
 * manifest; a clone (POST /api/exports with "clone_of") is a GET and two
 * small PUTs whatever the parent's size, and is then opened here like a
 * created export. The API checks that the
 * child does not exist before glidefs_clone() writes anything, and creates
 * clones one at a time on this node (clone_lock), because glidefs_clone()
 * writes the parent's children/<child> marker before it learns that the
 * child exists.
 */
#ifndef GLIDEFSD_REST_INTERNAL_H
#define GLIDEFSD_REST_INTERNAL_H

#include "rest_api.h"
#include "sockets.h"
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "api_guard.h"
#include "cleanup.h"
#include "clock.h"
#include "fsutil.h"
#include "config.h"
#include "exports.h"
#include "log.h"
#include "metrics.h"
#include "nbd_server.h"
#include "vhost_server.h"

#ifndef GLIDEFSD_VERSION
#define GLIDEFSD_VERSION "0.0.0"
#endif

#define MAX_SEGMENTS 8
#define MAX_SEGMENT 256              /* decoded bytes per path segment */
/* An oversized body sent without a length can only be answered (413) once it
 * is all in (MHD takes no response mid-upload): read and drop up to this
 * much of it, then hang up. */
#define MAX_DISCARD (32u * 1024 * 1024)
#define DRAIN_SLICE_MS 500           /* drains look at the stop flag this often */
#define DELETE_DRAIN_DEFAULT_S 60
#define RELEASE_DRAIN_DEFAULT_S 30
#define MAX_TIMEOUT_S 86400
#define API_IDLE_TIMEOUT_S 60         /* libmicrohttpd's own, behind api_guard.c's deadlines */
#define GUARD_TICK_MS 100

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

/* A drain in progress through the API: the export shows state "draining". */
struct drain_mark {
    struct drain_mark *next;
    char name[GLIDEFS_NAME_MAX + 1];
    int count;
    uint64_t dirty_at_start;
    int64_t started_ms; /* wall clock */
};

struct gd_rest {
    const glidefs_config *cfg;
    struct gd_registry *reg;
    struct gd_server *srv;
    struct gd_vhost *vhost;     /* NULL: vhost-user off */
    struct MHD_Daemon *mhd[2];
    struct gd_api_guard *guard[2]; /* of mhd[i] */
    int nmhd;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool unix_bound;
    _Atomic(const char *) token; /* NULL: no authentication; SIGHUP may swap it */
    char **tokens;              /* tokens set by gd_rest_set_token, freed at stop (a
                                   request may still compare against an older one) */
    size_t ntokens;
    atomic_bool stopping;
    int stop_fd;                /* the daemon's, not ours */
    int wake_fd;                /* ours: ends the watcher */
    pthread_t watcher;
    bool watcher_started;
    pthread_mutex_t lock;       /* drains */
    struct drain_mark *drains;
    pthread_mutex_t clone_lock; /* one clone at a time: exists check + glidefs_clone */
    struct gd_tls *tls;         /* servers.api.tls_certificates: HTTPS on the TCP listener */
};

/* Per request (MHD's con_cls). */
struct req_ctx {
    char *body;
    size_t len, cap;
    size_t discarded;
    bool too_big;
    bool answered;  /* a response went out before the body was read */
};

/* What a handler fills in. */
struct call {
    struct gd_rest *r;
    struct MHD_Connection *conn;
    const char *method;
    const char *name;           /* the validated {name}, or NULL */
    const char *snap;           /* the validated {snap}, or NULL */
    const char *body;
    size_t len;
    unsigned status;
    json_t *json;               /* the answer (owned) */
    char *text;                 /* or a text answer (owned, malloc'd) */
    size_t text_len;
    const char *content_type;
    char location[160];
};

/* rest_http.c */
bool rest_quotable(const char *s);
bool rest_param_allowed(const char *list, const char *key);
int rest_param_bool(struct call *c, const char *key, bool *out);
int rest_param_seconds(struct call *c, const char *key, int64_t *out);

/* rest_json.c */
__attribute__((format(printf, 3, 4)))
int rest_fail(struct call *c, unsigned status, const char *fmt, ...);
int rest_ok(struct call *c, unsigned status, json_t *j);
unsigned rest_status_for(int rc);
mhd_result rest_send_json(struct MHD_Connection *conn, unsigned status, json_t *j,
                          const char *extra_hdr, const char *extra_val);
mhd_result rest_send_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                           const char *extra_hdr, const char *extra_val);
json_t *rest_body_object(struct call *c);
int rest_only_fields(struct call *c, json_t *obj, const char *allowed);
/* No body, or an empty JSON object: 0; anything else answered (400): -1. */
int rest_empty_body(struct call *c);
int rest_body_size(struct call *c, json_t *obj, uint64_t *out, int *have);

/* rest_handlers.c */
void rest_drain_mark(struct gd_rest *r, const char *name, uint64_t dirty);
int rest_h_healthz(struct call *c);
int rest_h_prometheus(struct call *c);
int rest_h_list(struct call *c);
int rest_h_create(struct call *c);
int rest_h_status(struct call *c);
int rest_h_export_metrics(struct call *c);
int rest_h_resize(struct call *c);
int rest_h_patch(struct call *c);
int rest_h_rotate_key(struct call *c);
int rest_h_drain(struct call *c);
int rest_h_promote(struct call *c);
int rest_h_release(struct call *c);
int rest_h_compact(struct call *c);
int rest_h_scrub(struct call *c);
int rest_h_fenced_discard(struct call *c);
int rest_h_fenced_export(struct call *c);
int rest_h_snapshot_create(struct call *c);
int rest_h_snapshot_list(struct call *c);
int rest_h_snapshot_delete(struct call *c);
int rest_h_delete(struct call *c);
int rest_h_vhost_user(struct call *c);

#endif
