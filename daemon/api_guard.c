/*
 * api_guard.c — who may talk to the REST API, and for how long: the browser
 * checks (Host, Origin, Sec-Fetch-Site, Content-Type) and the connection
 * guard (deadlines, connection caps, pushing out slow connections). See
 * api_guard.h for the rules.
 *
 * The guard keeps its own list of a listener's connections (libmicrohttpd's
 * socket context), each in one phase: receiving a request, handling it (the
 * handler runs), sending the answer. libmicrohttpd reports a connection
 * closed before it closes the socket, so shutdown() on a listed connection
 * never hits a reused descriptor; a connection's own thread then sees the
 * socket end and closes it.
 */
#include "api_guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>

#include "cleanup.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "ratelog.h"

#define GUARD_SLACK 16       /* pushed-out connections still closing */
#define GUARD_LOG_EVERY_MS 10000

enum phase { PH_RECEIVING, PH_HANDLING, PH_SENDING };

struct gconn {
    struct gconn *next, *prev;
    struct gd_api_guard *g;
    int fd;
    uint8_t ip[16];    /* the client's address as IPv6 (v4 mapped) ... */
    bool has_ip;       /* ... when it has one (not on a unix socket) */
    enum phase phase;
    int64_t since_ms;  /* the phase began */
    bool evicted;
};

struct gd_api_guard {
    bool tcp;
    char listen_host[256];  /* lower case, no brackets */
    char *allowed;          /* servers.api.allowed_hosts (normalised: "a,b"), or NULL */
    int max, max_per_client, timeout_ms;
    pthread_mutex_t lock;
    struct gconn *head;
    int n;                  /* listed, pushed-out ones included */
    struct gd_ratelog log_rl;
};

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

int gd_api_guard_create(const glidefs_config *cfg, bool tcp, const char *listen_host,
                        struct gd_api_guard **out)
{
    struct gd_api_guard *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->tcp = tcp;
    snprintf(g->listen_host, sizeof g->listen_host, "%s", listen_host ? listen_host : "");
    lower(g->listen_host);
    if (cfg->api_allowed_hosts && cfg->api_allowed_hosts[0]) {
        g->allowed = strdup(cfg->api_allowed_hosts);
        if (!g->allowed) {
            free(g);
            return -ENOMEM;
        }
    }
    g->max = cfg->api_max_connections > 0 ? cfg->api_max_connections : 64;
    g->max_per_client = cfg->api_max_connections_per_client > 0
                            ? cfg->api_max_connections_per_client : 32;
    g->timeout_ms = cfg->api_request_timeout_ms > 0 ? cfg->api_request_timeout_ms : 10000;
    pthread_mutex_init(&g->lock, NULL);
    *out = g;
    return 0;
}

void gd_api_guard_free(struct gd_api_guard *g)
{
    if (!g)
        return;
    while (g->head) {
        struct gconn *c = g->head;
        g->head = c->next;
        free(c);
    }
    pthread_mutex_destroy(&g->lock);
    free(g->allowed);
    free(g);
}

unsigned gd_api_guard_mhd_limit(const struct gd_api_guard *g)
{
    return (unsigned)g->max + GUARD_SLACK;
}

/* The client's address as 16 bytes (IPv4 as ::ffff:a.b.c.d). */
static bool addr_key(const struct sockaddr *sa, uint8_t key[16])
{
    if (sa && sa->sa_family == AF_INET) {
        static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        memcpy(key, pfx, 12);
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

/* One line per GUARD_LOG_EVERY_MS at most. g->lock held. */
static bool log_ok(struct gd_api_guard *g, unsigned *dropped)
{
    return gd_ratelog_ok(&g->log_rl, GUARD_LOG_EVERY_MS, dropped);
}

static void evict_locked(struct gconn *c)
{
    c->evicted = true;
    shutdown(c->fd, SHUT_RDWR);
}

mhd_result gd_api_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    struct gd_api_guard *g = cls;
    uint8_t key[16];
    bool has_ip = addr_key(addr, key);
    int64_t now = gfs_now_ms();
    SCOPED_LOCK(&g->lock);
    int live = 0, mine = 0;
    struct gconn *oldest = NULL, *oldest_mine = NULL;
    for (struct gconn *c = g->head; c; c = c->next) {
        if (c->evicted)
            continue;
        live++;
        bool same = has_ip && c->has_ip && memcmp(c->ip, key, 16) == 0;
        mine += same;
        if (c->phase == PH_HANDLING)
            continue;
        if (!oldest || c->since_ms < oldest->since_ms)
            oldest = c;
        if (same && (!oldest_mine || c->since_ms < oldest_mine->since_ms))
            oldest_mine = c;
    }
    bool per = has_ip && mine >= g->max_per_client;
    if (!per && live < g->max)
        return MHD_YES;
    struct gconn *victim = per ? oldest_mine : oldest;
    unsigned dropped;
    if (victim && g->n < g->max + GUARD_SLACK) {
        if (log_ok(g, &dropped))
            gd_info("REST API: a connection %s for %" PRId64 " ms pushed out to make room (%d "
                    "connections%s; %u similar not logged)",
                    victim->phase == PH_SENDING ? "sending its answer" : "receiving a request",
                    now - victim->since_ms, live, per ? ", the client's limit" : "", dropped);
        evict_locked(victim);
        return MHD_YES;
    }
    if (log_ok(g, &dropped))
        gd_warn("REST API: connection refused: %d connections (servers.api.max_connections%s), "
                "all busy (%u similar not logged)", live,
                per ? "_per_client reached" : "", dropped);
    return MHD_NO;
}

void gd_api_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode toe)
{
    struct gd_api_guard *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct gconn *c = calloc(1, sizeof *c);
        if (!c)
            return; /* untracked: no deadline, but nothing breaks */
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!fi) {
            free(c);
            return;
        }
        c->g = g;
        c->fd = fi->connect_fd;
        c->has_ip = ai && addr_key(ai->client_addr, c->ip);
        c->phase = PH_RECEIVING;
        c->since_ms = gfs_now_ms();
        SCOPED_LOCK(&g->lock);
        c->next = g->head;
        if (g->head)
            g->head->prev = c;
        g->head = c;
        g->n++;
        *socket_context = c;
        return;
    }
    struct gconn *c = *socket_context;
    if (!c)
        return;
    SCOPED_LOCK(&g->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g->n--;
    free(c);
    *socket_context = NULL;
}

static struct gconn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

static void set_phase(struct MHD_Connection *conn, enum phase ph)
{
    struct gconn *c = conn_of(conn);
    if (!c)
        return;
    SCOPED_LOCK(&c->g->lock);
    c->phase = ph;
    c->since_ms = gfs_now_ms();
}

bool gd_api_guard_handling(struct MHD_Connection *conn)
{
    struct gconn *c = conn_of(conn);
    if (!c)
        return true;
    SCOPED_LOCK(&c->g->lock);
    if (c->evicted)
        return false;
    c->phase = PH_HANDLING;
    c->since_ms = gfs_now_ms();
    return true;
}

void gd_api_guard_answered(struct MHD_Connection *conn)
{
    set_phase(conn, PH_SENDING);
}

void gd_api_guard_request_done(struct MHD_Connection *conn)
{
    set_phase(conn, PH_RECEIVING);
}

void gd_api_guard_tick(struct gd_api_guard *g)
{
    int64_t now = gfs_now_ms();
    SCOPED_LOCK(&g->lock);
    unsigned n = 0;
    for (struct gconn *c = g->head; c; c = c->next)
        if (!c->evicted && c->phase != PH_HANDLING && now - c->since_ms >= g->timeout_ms) {
            evict_locked(c);
            n++;
        }
    unsigned dropped;
    if (n && log_ok(g, &dropped))
        gd_info("REST API: %u connection(s) dropped: no whole request or answer within %d ms "
                "(servers.api.request_timeout_ms; %u similar not logged)", n, g->timeout_ms,
                dropped);
}

/* ------------------------------------------------------------------------ */
/* Browser checks                                                            */
/* ------------------------------------------------------------------------ */

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && memcmp(p, name, n) == 0)
            return true;
        p += k;
        if (*p == ',')
            p++;
    }
    return false;
}

/* The Host header (host[:port]) names this API: an address literal (a page
 * of that origin is the API's own), localhost, the listen host or an
 * allowed name. A DNS-rebinding page sends its own name. */
static bool host_allowed(const struct gd_api_guard *g, const char *hdr)
{
    char name[256];
    const char *port;
    if (hdr[0] == '[') {
        const char *rb = strchr(hdr, ']');
        if (!rb || (size_t)(rb - hdr - 1) >= sizeof name)
            return false;
        memcpy(name, hdr + 1, (size_t)(rb - hdr - 1));
        name[rb - hdr - 1] = '\0';
        port = rb + 1;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, name, &a6) != 1)
            return false;
    } else {
        size_t k = strcspn(hdr, ":");
        if (k == 0 || k >= sizeof name)
            return false;
        memcpy(name, hdr, k);
        name[k] = '\0';
        port = hdr + k;
    }
    if (port[0] == ':') {
        port++;
        if (!port[0] || strspn(port, "0123456789") != strlen(port))
            return false;
    } else if (port[0]) {
        return false;
    }
    lower(name);
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (hdr[0] == '[' || inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1)
        return true;
    return strcmp(name, "localhost") == 0 || strcmp(name, g->listen_host) == 0 ||
           in_list(g->allowed, name);
}

static bool is_json_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    char next = ct[sizeof want - 1];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

const char *gd_api_guard_check(struct MHD_Connection *conn, unsigned *status)
{
    struct gconn *c = conn_of(conn);
    const struct gd_api_guard *g = c ? c->g : NULL;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    *status = 403;
    if (g && g->tcp && host && !host_allowed(g, host))
        return "the Host header names neither this API's address, localhost nor a name in "
               "servers.api.allowed_hosts: refused (a web page on another site, through DNS "
               "rebinding?). Add the name to servers.api.allowed_hosts if it is yours";
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin && !(host && strncasecmp(origin, "http://", 7) == 0 &&
                    strcasecmp(origin + 7, host) == 0))
        return "cross-origin request refused: the API does not answer web pages of other "
               "origins (the Origin header is not this API's own)";
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (site && (strcasecmp(site, "cross-site") == 0 || strcasecmp(site, "same-site") == 0))
        return "cross-site request refused: the API does not answer web pages of other sites "
               "(Sec-Fetch-Site)";
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    bool body = te != NULL || (cl && strspn(cl, "0") != strlen(cl));
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (body && (!ct || !is_json_type(ct))) {
        *status = 415;
        return "a request body must be JSON, sent with \"Content-Type: application/json\"";
    }
    return NULL;
}
