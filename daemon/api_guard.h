/*
 * api_guard.h — who may talk to the REST API, and for how long (issue 21,
 * items 4 and 5). rest_http.c asks it about every request before anything
 * else, and hands it libmicrohttpd's accept-policy and connection hooks.
 *
 * Browsers: a page the operator opens can send requests to 127.0.0.1, and a
 * DNS-rebinding page can even read the answers. So a Host that is not the
 * listen address, an address literal, "localhost" or one of
 * servers.api.allowed_hosts is refused (TCP only); so is a request whose
 * Origin is present and not the API's own, or whose Sec-Fetch-Site says
 * another site sent it; and a request with a body must say Content-Type:
 * application/json (a page cannot send that cross-origin without a CORS
 * preflight, which the API never grants).
 *
 * Slow clients: receiving a request (from the connection's start or the end
 * of the previous request) and sending its answer each have
 * servers.api.request_timeout_ms, however often bytes trickle in; running
 * the request has no limit (a drain may take minutes). A listener takes
 * servers.api.max_connections, a client address (TCP)
 * servers.api.max_connections_per_client; a newcomer that finds either full
 * pushes out the oldest connection (of that client, for the per-client cap)
 * that is only receiving or sending, so connections that never finish a
 * request cannot keep /healthz from answering: a real request arrives in
 * one packet and is being handled long before the newcomers that follow it
 * make it the oldest. Each listener (TCP, unix socket) has its own guard
 * and limits.
 */
#ifndef GLIDEFSD_API_GUARD_H
#define GLIDEFSD_API_GUARD_H

#include <microhttpd.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "glidefs/glidefs.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

struct gd_api_guard;

/* One per listener. tcp: check Host against listen_host (the configured
 * host of servers.api.listen). 0 or -ENOMEM. */
int gd_api_guard_create(const glidefs_config *cfg, bool tcp, const char *listen_host,
                        struct gd_api_guard **out);
/* After the listener's MHD daemon has stopped. */
void gd_api_guard_free(struct gd_api_guard *g);

/* The connection limit to give libmicrohttpd: the guard's own plus room for
 * pushed-out connections still closing. */
unsigned gd_api_guard_mhd_limit(const struct gd_api_guard *g);

/* libmicrohttpd hooks; cls is the guard. */
mhd_result gd_api_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void gd_api_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode toe);

/* Headers are in: NULL if the request may go on, else why not (static text)
 * and the status to answer with (403, 415). */
const char *gd_api_guard_check(struct MHD_Connection *conn, unsigned *status);

/* The request is complete and its handler starts: no deadline until it has
 * answered. false if the connection was pushed out meanwhile (drop it). */
bool gd_api_guard_handling(struct MHD_Connection *conn);
/* An answer is queued: sending it has a deadline. */
void gd_api_guard_answered(struct MHD_Connection *conn);
/* The request is over: waiting for the next one has a deadline. */
void gd_api_guard_request_done(struct MHD_Connection *conn);

/* Close connections past their deadline. Call a few times a second. */
void gd_api_guard_tick(struct gd_api_guard *g);

#endif
