/*
 * rest_json.c — the REST API's JSON: answers ({"error": ...} on failure, the
 * HTTP status for a library error) and request bodies (objects with known
 * fields only, sizes).
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

/* ------------------------------------------------------------------------ */
/* Answers                                                                   */
/* ------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
int rest_fail(struct call *c, unsigned status, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_decref(c->json);
    c->json = json_pack("{s:s}", "error", msg);
    c->status = status;
    return -1;
}

int rest_ok(struct call *c, unsigned status, json_t *j)
{
    if (!j)
        return rest_fail(c, 500, "out of memory");
    json_decref(c->json);
    c->json = j;
    c->status = status;
    return 0;
}

/* The HTTP status for a library or registry error without a better one. */
unsigned rest_status_for(int rc)
{
    switch (rc) {
    case -EINVAL:
        return 400;
    case -EACCES:
    case -EPERM:
        return 403;
    case -ENOENT:
        return 404;
    case -EEXIST:
    case -EBUSY:
    case -EROFS:
    case -EAGAIN:
        return 409;
    case -EIO:
        return 502;
    case -ESHUTDOWN:
        return 503;
    case -ETIMEDOUT:
        return 504;
    case -ENOSPC:
        return 507;
    default:
        return 500;
    }
}

static void add_json_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

/* Queue json (stolen) with status. */
mhd_result rest_send_json(struct MHD_Connection *conn, unsigned status, json_t *j,
                          const char *extra_hdr, const char *extra_val)
{
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        status = 500;
        text = strdup("{\"error\": \"out of memory\"}");
        if (!text)
            return MHD_NO;
    }
    size_t n = strlen(text);
    char *body = realloc(text, n + 2);
    if (!body) {
        free(text);
        return MHD_NO;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n + 1, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    add_json_headers(resp);
    if (extra_hdr)
        MHD_add_response_header(resp, extra_hdr, extra_val);
    mhd_result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

mhd_result rest_send_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                           const char *extra_hdr, const char *extra_val)
{
    return rest_send_json(conn, status, json_pack("{s:s}", "error", msg), extra_hdr, extra_val);
}

/* ------------------------------------------------------------------------ */
/* Request bodies                                                            */
/* ------------------------------------------------------------------------ */

/* Parse the body as a JSON object; rest_fail() 400 unless it is one. */
json_t *rest_body_object(struct call *c)
{
    if (c->len == 0) {
        rest_fail(c, 400, "missing request body: send a JSON object (Content-Type: application/json)");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(c->body, c->len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        rest_fail(c, 400, "malformed JSON in the request body at line %d, column %d: %s", je.line,
                  je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        rest_fail(c, 400, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

/* Refuse fields outside `allowed` (comma-separated). 0 or -1 after rest_fail(). */
int rest_only_fields(struct call *c, json_t *obj, const char *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        (void)val;
        if (!rest_param_allowed(allowed, key)) {
            if (rest_quotable(key))
                return rest_fail(c, 400, "unknown field \"%s\" in the request body (allowed: %s)", key,
                                 allowed);
            return rest_fail(c, 400, "unknown field in the request body (allowed: %s)", allowed);
        }
    }
    return 0;
}

/* One of size_gb (whole GiB), size_bytes, size ("10G", "500GiB"). *have = 0
 * when none is there. 0, or -1 after rest_fail(). */
int rest_body_size(struct call *c, json_t *obj, uint64_t *out, int *have)
{
    json_t *gb = json_object_get(obj, "size_gb");
    json_t *by = json_object_get(obj, "size_bytes");
    json_t *sz = json_object_get(obj, "size");
    int n = !!gb + !!by + !!sz;
    *have = n;
    if (n == 0)
        return 0;
    if (n > 1)
        return rest_fail(c, 400, "give one of size_gb, size_bytes and size, not several");
    uint64_t v = 0;
    if (gb) {
        if (!json_is_integer(gb) || json_integer_value(gb) < 1)
            return rest_fail(c, 400, "size_gb must be a whole number of GiB, at least 1 (use "
                                "size_bytes or size, e.g. \"1536M\", for other sizes)");
        json_int_t g = json_integer_value(gb);
        if (g > (json_int_t)(INT64_MAX >> 30))
            return rest_fail(c, 400, "size_gb is too large");
        v = (uint64_t)g << 30;
    } else if (by) {
        if (!json_is_integer(by) || json_integer_value(by) < 1)
            return rest_fail(c, 400, "size_bytes must be a positive whole number");
        v = (uint64_t)json_integer_value(by);
    } else {
        if (!json_is_string(sz))
            return rest_fail(c, 400, "size must be a string like \"10G\" or \"500GiB\"");
        int rc = glidefs_parse_size(json_string_value(sz), &v);
        if (rc < 0 || v == 0)
            return rest_fail(c, 400, "size: cannot parse %s%s%s: give bytes, or a number with K, M, G, "
                             "T or KiB, MiB, GiB, TiB (powers of 1024)",
                             rest_quotable(json_string_value(sz)) ? "\"" : "the value",
                             rest_quotable(json_string_value(sz)) ? json_string_value(sz) : "",
                             rest_quotable(json_string_value(sz)) ? "\"" : "");
    }
    if (v % GLIDEFS_SECTOR_SIZE)
        return rest_fail(c, 400, "size %" PRIu64 " is not a multiple of %u bytes", v,
                         GLIDEFS_SECTOR_SIZE);
    *out = v;
    return 0;
}

int rest_empty_body(struct call *c)
{
    if (!c->len)
        return 0;
    json_t *j = rest_body_object(c);
    if (!j)
        return -1;
    int bad = rest_only_fields(c, j, "");
    json_decref(j);
    return bad < 0 ? -1 : 0;
}
