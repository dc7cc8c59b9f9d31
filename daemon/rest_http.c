/*
 * rest_http.c — the REST API's HTTP plumbing on libmicrohttpd
 * (rest_internal.h has the request path): the route table and its checks,
 * path splitting and %-decoding, query parameters, the access handler
 * (guard, token, body limits, dispatch), listeners, start and stop.
 */
#include "rest_internal.h"

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
#include "config.h"
#include "exports.h"
#include "log.h"
#include "metrics.h"
#include "nbd_server.h"
#include "tls.h"

/* ------------------------------------------------------------------------ */
/* Paths and query parameters                                                */
/* ------------------------------------------------------------------------ */

/* %-decode in[0..n) into out (NUL-terminated). -1 on a bad escape, "%00",
 * a control character or no room. */
static int pct_decode(const char *in, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)in[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int h = gfs_hexval(in[i + 1]), l = gfs_hexval(in[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            ch = h * 16 + l;
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f)
            return -1;
        if (o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (int)o;
}

/* MHD must not unescape the path: we decode segment by segment. */
static size_t unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* Short, plain ASCII: safe to quote back in an error message. */
bool rest_quotable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 64 || s[n] < 0x21 || s[n] > 0x7e || s[n] == '"' || s[n] == '\\')
            return false;
    return n > 0;
}

typedef int (*handler_fn)(struct call *c);


struct route {
    const char *method;
    const char *pattern;   /* literal segments, at most one "{name}" and, after
                              it, at most one "{snap}" */
    handler_fn fn;
    const char *params;    /* allowed query parameters, comma-separated */
};

/* THE dispatch table. */
static const struct route routes[] = {
    { "GET", "/healthz", rest_h_healthz, "" },
    { "GET", "/metrics", rest_h_prometheus, "" },
    { "GET", "/api/exports", rest_h_list, "" },
    { "POST", "/api/exports", rest_h_create, "" },
    { "GET", "/api/exports/{name}", rest_h_status, "" },
    { "PUT", "/api/exports/{name}", rest_h_resize, "" },
    { "PATCH", "/api/exports/{name}", rest_h_patch, "" },
    { "DELETE", "/api/exports/{name}", rest_h_delete, "force,purge,timeout_s" },
    { "POST", "/api/exports/{name}/drain", rest_h_drain, "timeout_s" },
    { "POST", "/api/exports/{name}/promote", rest_h_promote, "force" },
    { "POST", "/api/exports/{name}/release", rest_h_release, "timeout_s" },
    { "POST", "/api/exports/{name}/compact", rest_h_compact, "" },
    { "POST", "/api/exports/{name}/scrub", rest_h_scrub, "deep,repair,delete_orphans" },
    { "POST", "/api/exports/{name}/rotate-key", rest_h_rotate_key, "" },
    { "GET", "/api/exports/{name}/metrics", rest_h_export_metrics, "" },
    { "POST", "/api/exports/{name}/snapshots", rest_h_snapshot_create, "timeout_s" },
    { "GET", "/api/exports/{name}/snapshots", rest_h_snapshot_list, "" },
    { "DELETE", "/api/exports/{name}/snapshots/{snap}", rest_h_snapshot_delete, "" },
    { "POST", "/api/exports/{name}/fenced/discard", rest_h_fenced_discard, "" },
    { "POST", "/api/exports/{name}/fenced/export", rest_h_fenced_export, "" },
    { "POST", "/api/exports/{name}/vhost-user", rest_h_vhost_user, "" },
};
#define NROUTES (sizeof routes / sizeof routes[0])

struct segs {
    int n;
    const char *p[MAX_SEGMENTS];
    size_t len[MAX_SEGMENTS];
};

/* Split "/a/b/c" into its segments (not decoded). -1: not absolute, an empty
 * segment (except one trailing '/'), or too many. */
static int split_path(const char *path, struct segs *s)
{
    s->n = 0;
    if (path[0] != '/')
        return -1;
    const char *p = path + 1;
    if (!*p)
        return 0; /* "/" */
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0)
            return (!e && s->n > 0) ? 0 : -1;
        if (s->n == MAX_SEGMENTS)
            return -1;
        s->p[s->n] = p;
        s->len[s->n] = len;
        s->n++;
        if (!e)
            return 0;
        p = e + 1;
        if (!*p)
            return 0; /* one trailing '/' */
    }
}

bool rest_param_allowed(const char *list, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == kl && strncmp(p, key, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

/* Route table sanity, once at start-up. */
static int check_routes(char *err, size_t errlen)
{
    static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };
    for (size_t i = 0; i < NROUTES; i++) {
        const struct route *rt = &routes[i];
        bool m = false;
        for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
            m = m || strcmp(rt->method, methods[k]) == 0;
        struct segs s;
        int names = 0, snaps = 0;
        if (m && rt->fn && split_path(rt->pattern, &s) == 0 && s.n > 0) {
            for (int k = 0; k < s.n; k++)
                if (s.len[k] == 6 && strncmp(s.p[k], "{name}", 6) == 0)
                    names++;
                else if (s.len[k] == 6 && strncmp(s.p[k], "{snap}", 6) == 0)
                    snaps += names == 1 ? 1 : 99; /* only after {name} */
                else if (memchr(s.p[k], '{', s.len[k]) || memchr(s.p[k], '%', s.len[k]))
                    names = 99;
        } else {
            names = 99;
        }
        if (snaps > 1)
            names = 99;
        for (size_t j = 0; j < i && names <= 1; j++)
            if (strcmp(routes[j].method, rt->method) == 0 &&
                strcmp(routes[j].pattern, rt->pattern) == 0)
                names = 99;
        if (names > 1) {
            snprintf(err, errlen, "internal error: bad REST route %s %s", rt->method, rt->pattern);
            return -EINVAL;
        }
    }
    return 0;
}

/* Does the decoded path match the pattern? Sets *name_idx to the {name}
 * segment and *snap_idx to the {snap} segment (or -1). */
static bool route_matches(const struct route *rt, const struct segs *path,
                          char dec[][MAX_SEGMENT + 1], int *name_idx, int *snap_idx)
{
    struct segs pat;
    if (split_path(rt->pattern, &pat) < 0 || pat.n != path->n)
        return false;
    *name_idx = -1;
    *snap_idx = -1;
    for (int k = 0; k < pat.n; k++) {
        if (pat.len[k] == 6 && strncmp(pat.p[k], "{name}", 6) == 0) {
            *name_idx = k;
            continue;
        }
        if (pat.len[k] == 6 && strncmp(pat.p[k], "{snap}", 6) == 0) {
            *snap_idx = k;
            continue;
        }
        if (strlen(dec[k]) != pat.len[k] || strncmp(dec[k], pat.p[k], pat.len[k]) != 0)
            return false;
    }
    return true;
}

struct arg_check {
    const char *allowed;
    char bad[80];
    int nbad;
};

static mhd_result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    struct arg_check *a = cls;
    if (!key || !rest_param_allowed(a->allowed, key)) {
        if (a->nbad++ == 0)
            snprintf(a->bad, sizeof a->bad, "%s", key && rest_quotable(key) ? key : "");
    }
    return MHD_YES;
}

/* Query parameter `key`, decoded into buf. 1 found (an empty value for
 * "?key"), 0 absent, -1 malformed. */
static int get_param(struct call *c, const char *key, char *buf, size_t len)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, key);
    if (!v) {
        /* "?force" without a value: MHD stores the key with a NULL value */
        if (MHD_lookup_connection_value_n(c->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), NULL,
                                          NULL) == MHD_YES) {
            buf[0] = '\0';
            return 1;
        }
        return 0;
    }
    return pct_decode(v, strlen(v), buf, len) < 0 ? -1 : 1;
}

/* ?key=true|false|1|0|yes|no (or just ?key). 0, or -1 after rest_fail(). */
int rest_param_bool(struct call *c, const char *key, bool *out)
{
    char v[16];
    *out = false;
    int g = get_param(c, key, v, sizeof v);
    if (g == 0)
        return 0;
    if (g > 0 && (!v[0] || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"))) {
        *out = true;
        return 0;
    }
    if (g > 0 && (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")))
        return 0;
    return rest_fail(c, 400, "query parameter %s must be true or false", key);
}

/* ?key=N seconds, 1..MAX_TIMEOUT_S. *out unchanged when absent. */
int rest_param_seconds(struct call *c, const char *key, int64_t *out)
{
    char v[32];
    int g = get_param(c, key, v, sizeof v);
    if (g == 0)
        return 0;
    char *end = NULL;
    errno = 0;
    long long n = g > 0 && v[0] >= '0' && v[0] <= '9' ? strtoll(v, &end, 10) : -1;
    if (g < 0 || n < 1 || n > MAX_TIMEOUT_S || errno || (end && *end))
        return rest_fail(c, 400, "query parameter %s must be a whole number of seconds from 1 to %d",
                         key, MAX_TIMEOUT_S);
    *out = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The access handler                                                        */
/* ------------------------------------------------------------------------ */

static bool token_ok(struct gd_rest *r, struct MHD_Connection *conn)
{
    const char *token = atomic_load(&r->token);
    if (!token)
        return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t a = strlen(h), b = strlen(token);
    /* constant time over the token's length */
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++)
        diff |= (unsigned char)((i < a ? (unsigned char)h[i] : 0) ^ (unsigned char)token[i]);
    return diff == 0;
}

/* Route, validate and run one request whose body is complete. */
static mhd_result dispatch(struct gd_rest *r, struct MHD_Connection *conn, const char *url,
                           const char *method, struct req_ctx *ctx)
{
    struct segs path;
    char dec[MAX_SEGMENTS][MAX_SEGMENT + 1];
    bool bad_escape = false;
    if (split_path(url, &path) < 0)
        return rest_send_error(conn, 404, "no such endpoint (see README.md, \"REST API and "
                               "glidefs-ctl\")", NULL, NULL);
    for (int k = 0; k < path.n; k++)
        if (pct_decode(path.p[k], path.len[k], dec[k], sizeof dec[k]) < 0) {
            bad_escape = true;
            dec[k][0] = '\0';
        }
    /* HEAD is GET without the body (MHD drops it). */
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    const struct route *hit = NULL;
    char allow[64] = "";
    int name_idx = -1, snap_idx = -1;
    for (size_t i = 0; i < NROUTES; i++) {
        int ni, si;
        if (!route_matches(&routes[i], &path, dec, &ni, &si))
            continue;
        name_idx = ni;
        snap_idx = si;
        if (strcmp(routes[i].method, m) == 0)
            hit = &routes[i];
        size_t l = strlen(allow);
        snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "", routes[i].method);
    }
    if (!allow[0])
        return rest_send_error(conn, bad_escape ? 400 : 404,
                               bad_escape ? "malformed %-escape in the path"
                                     : "no such endpoint (see README.md, \"REST API and "
                                       "glidefs-ctl\")", NULL, NULL);
    if (bad_escape && (name_idx < 0 || dec[name_idx][0]) && (snap_idx < 0 || dec[snap_idx][0]))
        return rest_send_error(conn, 400, "malformed %-escape in the path", NULL, NULL);
    const char *name = NULL, *snap = NULL;
    if (name_idx >= 0) {
        name = dec[name_idx];
        if (!glidefs_name_valid(name)) {
            char msg[200];
            snprintf(msg, sizeof msg, "invalid export name: names are 1 to %d characters of "
                     "A-Z a-z 0-9 . _ -, not starting with '.'", GLIDEFS_NAME_MAX);
            return rest_send_error(conn, 400, msg, NULL, NULL);
        }
    }
    if (snap_idx >= 0) {
        snap = dec[snap_idx];
        if (!glidefs_name_valid(snap)) {
            char msg[200];
            snprintf(msg, sizeof msg, "invalid snapshot name: names are 1 to %d characters of "
                     "A-Z a-z 0-9 . _ -, not starting with '.'", GLIDEFS_NAME_MAX);
            return rest_send_error(conn, 400, msg, NULL, NULL);
        }
    }
    if (!hit) {
        char msg[160];
        snprintf(msg, sizeof msg, "method not allowed here; allowed: %s", allow);
        return rest_send_error(conn, 405, msg, "Allow", allow);
    }
    struct arg_check ac = { .allowed = hit->params };
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, check_arg, &ac);
    if (ac.nbad) {
        char msg[240];
        snprintf(msg, sizeof msg, "unknown query parameter%s%s%s (allowed here: %s)",
                 ac.bad[0] ? " \"" : "", ac.bad, ac.bad[0] ? "\"" : "",
                 hit->params[0] ? hit->params : "none");
        return rest_send_error(conn, 400, msg, NULL, NULL);
    }

    struct call c = {
        .r = r, .conn = conn, .method = m, .name = name, .snap = snap,
        .body = ctx->body ? ctx->body : "", .len = ctx->len, .status = 500,
    };
    hit->fn(&c);
    if (c.status >= 500)
        gd_warn("api: %s %s -> %u", method, hit->pattern, c.status);
    else
        gd_debug("api: %s %s%s%s -> %u", method, hit->pattern, name ? " " : "", name ? name : "",
                 c.status);
    if (c.text) {
        json_decref(c.json);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(c.text_len, c.text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(c.text);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", c.content_type);
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        mhd_result ret = MHD_queue_response(conn, c.status, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (!c.json)
        c.json = json_pack("{s:s}", "error", "out of memory");
    return rest_send_json(conn, c.status, c.json, c.location[0] ? "Location" : NULL,
                          c.location[0] ? c.location : NULL);
}

static mhd_result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)version;
    struct gd_rest *r = cls;
    struct req_ctx *ctx = *con_cls;
    if (!ctx) {
        /* Headers are in: answer what needs no body at once. */
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx;
        if (atomic_load(&r->stopping)) {
            ctx->answered = true;
            gd_api_guard_answered(conn);
            return rest_send_error(conn, 503, "glidefsd is shutting down", "Connection", "close");
        }
        unsigned gst = 0;
        const char *refused = gd_api_guard_check(conn, &gst);
        if (refused && gst == 403) {
            ctx->answered = true;
            gd_api_guard_answered(conn);
            gd_debug("api: %s %s refused: %s", method, url, refused);
            return rest_send_error(conn, gst, refused, "Connection", "close");
        }
        if (!token_ok(r, conn)) {
            ctx->answered = true;
            gd_api_guard_answered(conn);
            return rest_send_error(conn, 401, "missing or wrong API token: send \"Authorization: "
                                   "Bearer TOKEN\" with servers.api.token (glidefs-ctl: --token or "
                                   "GLIDEFS_TOKEN)", "WWW-Authenticate", "Bearer");
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || *end || n > GD_REST_MAX_BODY) {
                ctx->answered = true;
                gd_api_guard_answered(conn);
                char msg[96];
                snprintf(msg, sizeof msg, "request body too large (the limit is %u bytes)",
                         GD_REST_MAX_BODY);
                return rest_send_error(conn, 413, msg, "Connection", "close");
            }
        }
        if (refused) {
            ctx->answered = true;
            gd_api_guard_answered(conn);
            return rest_send_error(conn, gst, refused, "Connection", "close");
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->answered)
            return MHD_YES;
        if (ctx->too_big || ctx->len + n > GD_REST_MAX_BODY) {
            ctx->too_big = true;
            ctx->discarded += n;
            return ctx->discarded > MAX_DISCARD ? MHD_NO : MHD_YES;
        }
        if (ctx->len + n + 1 > ctx->cap) {
            size_t cap = ctx->cap ? ctx->cap : 1024;
            while (cap < ctx->len + n + 1)
                cap *= 2;
            char *b = realloc(ctx->body, cap);
            if (!b)
                return MHD_NO;
            ctx->body = b;
            ctx->cap = cap;
        }
        memcpy(ctx->body + ctx->len, upload_data, n);
        ctx->len += n;
        ctx->body[ctx->len] = '\0';
        return MHD_YES;
    }
    if (ctx->answered)
        return MHD_YES;
    ctx->answered = true;
    if (ctx->too_big) {
        gd_api_guard_answered(conn);
        char msg[96];
        snprintf(msg, sizeof msg, "request body too large (the limit is %u bytes)",
                 GD_REST_MAX_BODY);
        return rest_send_error(conn, 413, msg, "Connection", "close");
    }
    /* The request is all in: no deadline while it runs. */
    if (!gd_api_guard_handling(conn))
        return MHD_NO; /* pushed out or past its deadline meanwhile */
    mhd_result ret = dispatch(r, conn, url, method, ctx);
    gd_api_guard_answered(conn);
    return ret;
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    gd_api_guard_request_done(conn);
    struct req_ctx *ctx = *con_cls;
    if (ctx) {
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    gd_debug("api: libmicrohttpd: %s", msg);
}

/* ------------------------------------------------------------------------ */
/* Listeners                                                                 */
/* ------------------------------------------------------------------------ */

/* servers.api.listen: "host:port", "[v6]:port" or ":port" (loopback). */
static int listen_tcp(struct gd_rest *r, const char *spec, int *out, char host[256], char *err,
                      size_t errlen)
{
    char refusal[512], port[8];
    snprintf(refusal, sizeof refusal, "servers.api.listen is %s, which is not a loopback "
             "address, and servers.api.token is not set: refusing to serve the API "
             "to the network without a token. Set servers.api.token, or listen on "
             "127.0.0.1", spec);
    int fd = gd_listen_tcp("servers.api.listen", spec, 64, r->token != NULL, refusal,
                           " (set servers.api.listen to a free address, or \"\" to turn the "
                           "REST API off)", host, port, err, errlen);
    if (fd < 0)
        return fd;
    gd_info("REST API listening on %s://%s%s%s:%s/%s", r->tls ? "https" : "http",
            strchr(host, ':') ? "[" : "", host,
            strchr(host, ':') ? "]" : "", port, r->token ? " (token required)" : "");
    *out = fd;
    return 0;
}

static int listen_unix(struct gd_rest *r, const char *path, int *out, char *err, size_t errlen)
{
    int fd = gd_listen_unix("servers.api.unix_socket", path, 64, err, errlen);
    if (fd < 0)
        return fd;
    r->unix_bound = true;
    snprintf(r->unix_path, sizeof r->unix_path, "%s", path);
    gd_info("REST API listening on unix socket %s%s", path,
            r->token ? " (token required)" : "");
    *out = fd;
    return 0;
}

/* tcp: Host headers are checked against host (servers.api.listen's). */
static int start_mhd(struct gd_rest *r, int fd, bool tcp, const char *host, char *err,
                     size_t errlen)
{
    struct gd_api_guard *g = NULL;
    if (gd_api_guard_create(r->cfg, tcp, host, &g) < 0) {
        close(fd);
        snprintf(err, errlen, "REST API: out of memory");
        return -ENOMEM;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    /* HTTPS on TCP with servers.api.tls_certificates (the unix socket stays
     * plain); the certificate is asked for per handshake, so SIGHUP's reload
     * reaches the next connection (libmicrohttpd >= 0.9.x, GnuTLS >= 3.0) */
    gnutls_certificate_retrieve_function2 *retrieve = gd_tls_rest_retrieve;
    struct MHD_OptionItem tls[] = {
        { MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)(uintptr_t)retrieve },
        { MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" },
        { MHD_OPTION_END, 0, NULL },
    };
    bool https = tcp && r->tls;
    if (https)
        flags |= MHD_USE_TLS;
    else
        tls[0].option = MHD_OPTION_END;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, gd_api_guard_accept, g, access_handler, r,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)NULL, /* first, or MHD complains */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_NOTIFY_COMPLETED, request_done, (void *)r,
        MHD_OPTION_NOTIFY_CONNECTION, gd_api_guard_notify, (void *)g,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, (void *)NULL,
        MHD_OPTION_CONNECTION_LIMIT, gd_api_guard_mhd_limit(g),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_IDLE_TIMEOUT_S,
        MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
    if (!d) {
        close(fd);
        gd_api_guard_free(g);
        snprintf(err, errlen, "cannot start the REST API server (libmicrohttpd)");
        return -EIO;
    }
    r->guard[r->nmhd] = g;
    r->mhd[r->nmhd++] = d; /* MHD closes fd when it stops */
    return 0;
}

/* Turns SIGTERM (stop_fd readable) into "stopping" at once; meanwhile
 * drops connections past their deadlines (api_guard.c). */
static void *watcher_main(void *arg)
{
    struct gd_rest *r = arg;
    struct pollfd p[2] = { { .fd = r->wake_fd, .events = POLLIN },
                           { .fd = r->stop_fd, .events = POLLIN } };
    for (;;) {
        int n = poll(p, r->stop_fd >= 0 ? 2 : 1, GUARD_TICK_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (n > 0 && (p[0].revents || (r->stop_fd >= 0 && p[1].revents))))
            break;
        for (int i = 0; i < r->nmhd; i++)
            gd_api_guard_tick(r->guard[i]);
    }
    atomic_store(&r->stopping, true);
    return NULL;
}

int gd_rest_start(const glidefs_config *cfg, struct gd_registry *reg, struct gd_server *srv,
                  struct gd_vhost *vhost, int stop_fd, struct gd_rest **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    const char *listen_spec = cfg->api_listen;
    const char *unix_path = cfg->api_unix_socket;
    bool tcp = listen_spec && *listen_spec;
    bool ux = unix_path && *unix_path;
    if (!tcp && !ux) {
        gd_info("REST API off (servers.api.listen is \"\" and no servers.api.unix_socket)");
        return 0;
    }
    int rc = check_routes(err, errlen);
    if (rc < 0)
        return rc;
    struct gd_rest *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->cfg = cfg;
    r->reg = reg;
    r->srv = srv;
    r->vhost = vhost;
    r->stop_fd = stop_fd;
    r->token = cfg->api_token && *cfg->api_token ? cfg->api_token : NULL;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->clone_lock, NULL);
    r->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (r->wake_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "REST API: eventfd: %s", strerror(errno));
        gd_rest_stop(r);
        return rc;
    }
    if (tcp && cfg->api_tls_certificates && *cfg->api_tls_certificates &&
        (rc = gd_tls_rest_create(cfg->api_tls_certificates, &r->tls, err, errlen)) < 0) {
        gd_rest_stop(r);
        return rc;
    }
    int fd = -1;
    char host[256] = "";
    if (tcp && ((rc = listen_tcp(r, listen_spec, &fd, host, err, errlen)) < 0 ||
                (rc = start_mhd(r, fd, true, host, err, errlen)) < 0)) {
        gd_rest_stop(r);
        return rc;
    }
    if (ux && ((rc = listen_unix(r, unix_path, &fd, err, errlen)) < 0 ||
               (rc = start_mhd(r, fd, false, NULL, err, errlen)) < 0)) {
        gd_rest_stop(r);
        return rc;
    }
    rc = pthread_create(&r->watcher, NULL, watcher_main, r);
    if (rc) {
        snprintf(err, errlen, "REST API: cannot start a thread: %s", strerror(rc));
        gd_rest_stop(r);
        return -rc;
    }
    r->watcher_started = true;
    *out = r;
    return 0;
}

void gd_rest_stop(struct gd_rest *r)
{
    if (!r)
        return;
    atomic_store(&r->stopping, true);
    if (r->watcher_started) {
        uint64_t one = 1;
        ssize_t w = write(r->wake_fd, &one, sizeof one);
        (void)w;
        pthread_join(r->watcher, NULL);
    }
    /* Waits for the handlers: drains stop within DRAIN_SLICE_MS. */
    for (int i = 0; i < r->nmhd; i++) {
        MHD_stop_daemon(r->mhd[i]);
        gd_api_guard_free(r->guard[i]);
    }
    if (r->unix_bound)
        unlink(r->unix_path);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    while (r->drains) {
        struct drain_mark *d = r->drains;
        r->drains = d->next;
        free(d);
    }
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->clone_lock);
    gd_tls_free(r->tls); /* after MHD_stop_daemon: no handshake asks for it any more */
    for (size_t i = 0; i < r->ntokens; i++)
        free(r->tokens[i]);
    free(r->tokens);
    free(r);
}

int gd_rest_set_token(struct gd_rest *r, const char *token)
{
    if (!r)
        return -ENOENT;
    const char *cur = atomic_load(&r->token);
    if (!token || !*token)
        return cur ? -EPERM : 0;
    if (cur && strcmp(cur, token) == 0)
        return 0;
    pthread_mutex_lock(&r->lock);
    char **list = realloc(r->tokens, (r->ntokens + 1) * sizeof *list);
    char *copy = list ? strdup(token) : NULL;
    if (list)
        r->tokens = list;
    if (copy) {
        r->tokens[r->ntokens++] = copy;
        atomic_store(&r->token, copy);
    }
    pthread_mutex_unlock(&r->lock);
    return copy ? 1 : -ENOMEM;
}

void gd_rest_reload_tls(struct gd_rest *r)
{
    if (!r || !r->tls)
        return;
    char err[1024] = "";
    int rc = gd_tls_reload(r->tls, err, sizeof err);
    if (rc < 0)
        gd_err("SIGHUP: REST API TLS certificate not reloaded, the current one stays: %s",
               err[0] ? err : strerror(-rc));
    else
        gd_info("SIGHUP: REST API TLS certificate reloaded; new connections use it");
}
