/*
 * objstore_azure.c — the azure:// object store backend: every op of
 * objstore.h on Azure Blob Storage block blobs, over libcurl, authorized with
 * our Shared Key signer (azure_auth.c) or a SAS token, XML through
 * azure_xml.c (libxml2), batched deletes through azure_batch.c.
 *
 * Mapping: PUT is Put Blob (BlockBlob), or Put Block + Put Block List above
 * a size limit; ranged GET is Get Blob with x-ms-range; HEAD is Get Blob
 * Properties; DELETE is Delete Blob (missing = success); LIST is List Blobs
 * with prefix, marker and maxresults (Azure lists in lexical order and has
 * no start-after: the listing starts at the prefix and skips up to
 * start_after). Conditional PUT: If-None-Match: * answered 409
 * BlobAlreadyExists or 412 is -EEXIST; If-Match: "<etag>" answered 412
 * ConditionNotMet or 404 BlobNotFound is -ECANCELED. ETags are Azure's
 * quoted strings ("0x8D..."), handed out without the quotes.
 *
 * Owns: URL and endpoint handling (host-style for Azure, path-style for an
 * emulator or Azure Stack), credentials (config, else AZURE_STORAGE_*
 * environment; never logged, zeroed on close), request execution with
 * timeouts, retries (the curl handle pool, backoff and retryable curl errors
 * are http_request.c's, shared with s3://), mapping of HTTP/Azure
 * errors to errno, and the checks on answers (Content-MD5 of what was PUT,
 * Content-Range of ranged GETs, list order and prefix).
 *
 * Threads: any number of threads may call the ops at once; each request
 * takes a curl easy handle from the pool (http_request.h; at most
 * storage.max_connections, created lazily, kept for connection reuse); DNS
 * and TLS sessions are shared between handles through a CURLSH with locks.
 *
 * Errors: 403 is -EACCES and 404 ContainerNotFound -ENOENT, at once; 5xx,
 * 429, 408, timeouts, refused or reset connections and cut bodies are
 * retried up to storage.max_retries times (full jitter over 100 ms * 2^n,
 * capped at 5 s; counted in stats.retries, each logged at WARN), then -EIO;
 * certificate failures and other 4xx are -EIO at once, logged with Azure's
 * error code and message. Every request is bounded by storage.timeout_ms
 * (plus a low-speed limit). No network I/O at open: see gfs_azure_check().
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/xmlstring.h>
#include <mbedtls/platform_util.h>

#include "azure_auth.h"
#include "azure_batch.h"
#include "azure_xml.h"
#include "cleanup.h"
#include "config.h"
#include "log.h"
#include "http_request.h"
#include "objstore.h"
#include "objstore_azure.h"
#include "sigv4.h"

#define AZ_VERSION "2021-12-02" /* x-ms-version: Put Blob up to 5000 MiB, Blob Batch */
#define ERR_BODY_MAX (64u * 1024u)
#define PREFIX_MAX 512u
#define CHECK_RETRIES 2
#define SINGLE_PUT_MAX (256u << 20) /* larger objects go as blocks */
#define BLOCK_SIZE (64u << 20)

/* ---- process-wide initialisation ----------------------------------------
 * libcurl and libxml2 each need one global initialisation before threads use
 * them, never undone while another user could still be active: once per
 * process, never cleaned up (both count their users, so the S3 backend
 * doing the same is harmless). */
static pthread_once_t az_global_once = PTHREAD_ONCE_INIT;
static CURLcode az_global_rc = CURLE_FAILED_INIT;

static void az_global_init(void)
{
    az_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    xmlInitParser();
}

/* ---- the store ----------------------------------------------------------- */

struct az_store {
    struct gfs_objstore base; /* first: the generic code casts */
    char *account;
    char *container;
    char *prefix;     /* "" or "some/prefix/" (with the trailing '/') */
    char *origin;     /* "https://host[:port]" */
    char *path_base;  /* "" (host-style) or "/account" (path-style) */
    uint8_t key[GFS_AZ_KEY_MAX]; /* Shared Key; zeroed on close */
    size_t keylen;    /* 0: SAS */
    char *sas;        /* SAS token without '?', or NULL; secret */
    const char *cred; /* where the credential came from, for messages */
    char *ca_bundle;
    char *desc;       /* "azure://account/container/prefix" for messages */
    int tls_verify;
    long timeout_ms;
    int max_retries;
    int max_conns;
    size_t single_max, block_size;
    unsigned max_results;
    atomic_int batch_off;            /* the store refused Blob Batch: single deletes */
    _Atomic uint64_t batch_requests; /* Blob Batch requests sent (tests) */

    struct gfs_curl_pool pool;

    _Atomic uint64_t seq; /* request counter, seeds the backoff jitter */
};

static const struct gfs_objstore_ops az_ops;

static struct az_store *AZ(struct gfs_objstore *st) { return (struct az_store *)st; }

/* ---- one request --------------------------------------------------------- */

enum sink_kind { SINK_DISCARD, SINK_BUFFER, SINK_RANGE };

#define MAX_QUERY 6
#define MAX_XHDR 8

struct az_call {
    /* request */
    const char *method;
    const char *key;          /* store-relative key; NULL: a container-level request */
    struct gfs_az_kv query[MAX_QUERY];
    size_t nquery;
    struct gfs_az_kv xhdr[MAX_XHDR]; /* extra headers, all signed */
    size_t nxhdr;
    const void *body;
    size_t body_len;
    int head;                 /* HEAD: no body expected */
    int retries;              /* retry budget of this call; -1: the store's */
    const char *want_md5;     /* a 2xx answer's Content-MD5, if any, must be this */

    /* response sink */
    enum sink_kind sink;
    size_t max_body;          /* SINK_BUFFER: larger is -EFBIG */
    uint8_t *dst;             /* SINK_RANGE */
    size_t dst_len;
    uint64_t range_off;

    /* response, reset before every attempt */
    long status;
    char etag[72];
    char md5[32];             /* Content-MD5 (base64) */
    char code[64];            /* x-ms-error-code, else the body's Code */
    char ctype[256];          /* Content-Type */
    int have_cl, have_cr;
    int cr_empty;             /* Content-Range "bytes a-(a-1)/total": nothing (Azurite) */
    uint64_t content_length, cr_start, cr_end, cr_total; /* cr_total UINT64_MAX: '*' */
    char request_id[128];
    struct gfs_dynbuf out;
    struct gfs_dynbuf errbody;
    uint64_t pos;
    size_t got;
    int too_big, range_done, range_bad, oom;
    CURLcode cc;
    int maybe_resent;         /* libcurl may have sent it twice itself (see attempt()) */
    struct gfs_az_error azerr;
    int attempts;

    char why[512];            /* final explanation of a failure, safe to log */
};

static void call_reset_response(struct az_call *c)
{
    c->status = 0;
    c->etag[0] = c->md5[0] = c->code[0] = c->ctype[0] = '\0';
    c->have_cl = c->have_cr = c->cr_empty = 0;
    c->content_length = c->cr_start = c->cr_end = c->cr_total = 0;
    c->request_id[0] = '\0';
    c->out.len = 0;
    c->errbody.len = 0;
    c->pos = 0;
    c->got = 0;
    c->too_big = c->range_done = c->range_bad = c->oom = 0;
    c->cc = CURLE_OK;
    c->maybe_resent = 0;
    memset(&c->azerr, 0, sizeof(c->azerr));
    c->why[0] = '\0';
}

static void call_init(struct az_call *c, const char *method, const char *key)
{
    memset(c, 0, sizeof(*c));
    c->method = method;
    c->key = key;
    c->retries = -1;
    c->sink = SINK_DISCARD;
}

static void call_free(struct az_call *c)
{
    free(c->out.p);
    free(c->errbody.p);
    c->out = (struct gfs_dynbuf){0};
    c->errbody = (struct gfs_dynbuf){0};
}

/* "bytes a-b/total" (total may be '*'). */
static int parse_content_range(const char *v, size_t n, struct az_call *c)
{
    if (gfs_parse_content_range(v, n, &c->cr_start, &c->cr_end, &c->cr_total) < 0)
        return -1;
    if (c->cr_end < c->cr_start) {
        /* Azurite answers a range starting at the end with 206 and
         * "bytes size-(size-1)/size" (Azure: 416) */
        c->cr_empty = c->cr_start > 0 && c->cr_end == c->cr_start - 1 &&
                      c->cr_total == c->cr_start;
        return -1;
    }
    return 0;
}

/* A header value into dst for logging: control characters made '?', cut. */
static void copy_printable(char *dst, size_t cap, const char *v, size_t vl)
{
    size_t k = vl < cap - 1 ? vl : cap - 1;
    for (size_t i = 0; i < k; i++)
        dst[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
    dst[k] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct az_call *c = arg;
    size_t n = size * nitems, len = n;
    while (len && (data[len - 1] == '\r' || data[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue, say): forget the previous headers */
        c->etag[0] = c->md5[0] = c->code[0] = c->ctype[0] = '\0';
        c->have_cl = c->have_cr = c->cr_empty = 0;
        c->request_id[0] = '\0';
        const char *sp = memchr(data, ' ', len);
        c->status = 0;
        if (sp && data + len - sp >= 4) {
            long s = 0;
            for (int i = 1; i <= 3; i++) {
                char ch = sp[i];
                if (ch < '0' || ch > '9') {
                    s = 0;
                    break;
                }
                s = s * 10 + (ch - '0');
            }
            c->status = s;
        }
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
    if (nl == 4 && strncasecmp(data, "ETag", 4) == 0) {
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v++;
            vl -= 2;
        }
        /* an ETag we would send back in If-Match: printable, no quotes */
        int ok = vl > 0 && vl < sizeof(c->etag);
        for (size_t i = 0; ok && i < vl; i++)
            ok = (unsigned char)v[i] > 0x20 && v[i] != 0x7f && v[i] != '"';
        if (ok) {
            memcpy(c->etag, v, vl);
            c->etag[vl] = '\0';
        } else {
            c->etag[0] = '\0';
        }
    } else if (nl == 11 && strncasecmp(data, "Content-MD5", 11) == 0) {
        if (vl < sizeof(c->md5))
            copy_printable(c->md5, sizeof(c->md5), v, vl);
    } else if (nl == 14 && strncasecmp(data, "Content-Length", 14) == 0) {
        c->have_cl = gfs_parse_u64_str(v, vl, &c->content_length) == 0;
    } else if (nl == 13 && strncasecmp(data, "Content-Range", 13) == 0) {
        c->have_cr = parse_content_range(v, vl, c) == 0;
    } else if (nl == 12 && strncasecmp(data, "Content-Type", 12) == 0) {
        copy_printable(c->ctype, sizeof(c->ctype), v, vl);
    } else if (nl == 15 && strncasecmp(data, "x-ms-error-code", 15) == 0) {
        copy_printable(c->code, sizeof(c->code), v, vl);
    } else if (nl == 15 && strncasecmp(data, "x-ms-request-id", 15) == 0) {
        copy_printable(c->request_id, sizeof(c->request_id), v, vl);
    }
    return n;
}

/* Returning less than n aborts the transfer (CURLE_WRITE_ERROR); the flags
 * say why, so the caller can tell a deliberate stop from a failure. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct az_call *c = arg;
    size_t n = size * nmemb;
    if (c->status < 200 || c->status > 299) {
        size_t room = ERR_BODY_MAX > c->errbody.len ? ERR_BODY_MAX - c->errbody.len : 0;
        size_t k = n < room ? n : room;
        if (k && gfs_dyn_add(&c->errbody, data, k) != 0) {
            c->oom = 1;
            return 0;
        }
        return n;
    }
    if (c->sink == SINK_DISCARD)
        return n;
    if (c->sink == SINK_BUFFER) {
        if ((c->have_cl && c->content_length > c->max_body) || c->out.len + n > c->max_body) {
            c->too_big = 1;
            return 0;
        }
        if (gfs_dyn_add(&c->out, data, n) != 0) {
            c->oom = 1;
            return 0;
        }
        return n;
    }
    /* SINK_RANGE */
    if (c->status == 206) {
        if (c->got + n > c->dst_len) {
            c->range_bad = 1;
            return 0;
        }
        memcpy(c->dst + c->got, data, n);
        c->got += n;
        return n;
    }
    /* 200: the server ignored the range and sends the whole blob; keep our
     * part and stop once we have it. */
    uint64_t want_lo = c->range_off, want_hi = c->range_off + c->dst_len;
    uint64_t lo = c->pos, hi = c->pos + n;
    if (hi > want_lo && lo < want_hi) {
        uint64_t a = lo > want_lo ? lo : want_lo;
        uint64_t b = hi < want_hi ? hi : want_hi;
        memcpy(c->dst + (a - want_lo), data + (a - lo), (size_t)(b - a));
        c->got = (size_t)(b - want_lo);
    }
    c->pos = hi;
    if (c->pos >= want_hi) {
        c->range_done = 1;
        return 0;
    }
    return n;
}

/* A key (or, allow_prefix, a listing prefix) the backend will send: no
 * control characters, valid UTF-8, within Azure's 1024 bytes with the store
 * prefix, and no "." or ".." segment (URL processing would fold them). */
static int key_ok(const struct az_store *st, const char *key, int allow_prefix)
{
    if (!key)
        return allow_prefix;
    size_t n = strlen(key);
    if ((!allow_prefix && n == 0) || key[0] == '/' || strlen(st->prefix) + n > GFS_AZ_NAME_MAX)
        return 0;
    for (size_t i = 0, seg = 0; i <= n; i++) {
        if (i == n || key[i] == '/') {
            size_t sl = i - seg;
            if ((i < n || !allow_prefix) &&
                ((sl == 1 && key[seg] == '.') || (sl == 2 && key[seg] == '.' && key[seg + 1] == '.')))
                return 0;
            seg = i + 1;
        } else if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f) {
            return 0;
        }
    }
    return xmlCheckUTF8((const xmlChar *)key) != 0;
}

/* The request path as sent (percent-encoded): [/account]/container[/prefix+key]. */
static char *request_path(const struct az_store *st, const char *key)
{
    char *raw = NULL;
    int rc = key ? asprintf(&raw, "%s/%s/%s%s", st->path_base, st->container, st->prefix, key)
                 : asprintf(&raw, "%s/%s", st->path_base, st->container);
    if (rc < 0)
        return NULL;
    char *enc = gfs_sigv4_uri_encode(raw, strlen(raw), 1);
    free(raw);
    return enc;
}

static int build_target(const struct az_store *st, const struct az_call *c, char **url,
                        char **path)
{
    *url = NULL;
    if (!(*path = request_path(st, c->key)))
        return -ENOMEM;
    struct gfs_sigv4_kv q[MAX_QUERY];
    for (size_t i = 0; i < c->nquery; i++)
        q[i] = (struct gfs_sigv4_kv){c->query[i].name, c->query[i].value};
    CLEANUP_FREE char *query = NULL;
    if (gfs_sigv4_canonical_query(q, c->nquery, &query) != 0) {
        free(*path);
        *path = NULL;
        return -ENOMEM;
    }
    const char *sas = st->sas ? st->sas : "";
    if (asprintf(url, "%s%s%s%s%s%s", st->origin, *path, *query || *sas ? "?" : "", query,
                 *query && *sas ? "&" : "", sas) < 0) {
        *url = NULL;
        free(*path);
        *path = NULL;
        return -ENOMEM;
    }
    return 0;
}

enum attempt_result { ATT_DONE, ATT_RETRY, ATT_FAIL };

static int append_header(struct curl_slist **list, const char *name, const char *value)
{
    CLEANUP_FREE char *line = NULL;
    if (asprintf(&line, "%s: %s", name, value ? value : "") < 0) {
        line = NULL;
        return -ENOMEM;
    }
    struct curl_slist *t = curl_slist_append(*list, line);
    if (!t)
        return -ENOMEM;
    *list = t;
    return 0;
}

/* One attempt: sign, send, receive. On ATT_FAIL, *err holds the errno. */
static enum attempt_result attempt(struct az_store *st, struct az_call *c, CURL *h,
                                   const char *url, const char *path, int *err)
{
    char date[30], clen[24];
    if (gfs_az_date(time(NULL), date) != 0) {
        *err = -EIO;
        return ATT_FAIL;
    }
    /* The header set: signed and sent from the same array. */
    struct gfs_az_kv hdr[3 + MAX_XHDR];
    size_t nh = 0;
    hdr[nh++] = (struct gfs_az_kv){"x-ms-date", date};
    hdr[nh++] = (struct gfs_az_kv){"x-ms-version", AZ_VERSION};
    int has_body = c->body || strcmp(c->method, "PUT") == 0 || strcmp(c->method, "POST") == 0;
    if (has_body) {
        snprintf(clen, sizeof clen, "%zu", c->body_len);
        hdr[nh++] = (struct gfs_az_kv){"Content-Length", clen};
    }
    for (size_t i = 0; i < c->nxhdr; i++)
        hdr[nh++] = c->xhdr[i];

    CLEANUP_FREE char *authz = NULL;
    if (st->keylen) {
        struct gfs_az_request r = {
            .method = c->method, .path = path, .query = c->query, .nquery = c->nquery,
            .headers = hdr, .nheaders = nh,
        };
        int rc = gfs_az_authorization(st->account, st->key, st->keylen, &r, &authz);
        if (rc != 0) {
            snprintf(c->why, sizeof(c->why), "cannot sign the request (%s)", strerror(-rc));
            *err = rc;
            return ATT_FAIL;
        }
    }
    struct curl_slist *list = NULL;
    int rc = 0;
    for (size_t i = 0; i < nh && rc == 0; i++)
        rc = append_header(&list, hdr[i].name, hdr[i].value);
    if (rc == 0 && authz)
        rc = append_header(&list, "Authorization", authz);
    if (rc == 0)
        rc = gfs_http_no_expect(&list);
    if (rc != 0) {
        curl_slist_free_all(list);
        *err = -ENOMEM;
        return ATT_FAIL;
    }

    struct gfs_http_xfer x = {.url = url, .headers = list, .share = st->pool.share,
                              .timeout_ms = st->timeout_ms, .tls_verify = st->tls_verify,
                              .ca_bundle = st->ca_bundle, .on_header = on_header,
                              .on_body = on_body, .arg = c, .method = c->method,
                              .head = c->head, .body = c->body, .body_len = c->body_len};
    x.has_body = has_body;
    call_reset_response(c);
    gfs_http_perform(h, &x);
    CURLcode cc = x.cc;
    c->cc = cc;
    if (x.maybe_resent)
        c->maybe_resent = 1;
    curl_slist_free_all(list);
    if (x.status)
        c->status = x.status;

    if (c->oom) {
        *err = -ENOMEM;
        return ATT_FAIL;
    }
    if (c->too_big) {
        snprintf(c->why, sizeof(c->why), "object larger than the %zu bytes allowed",
                 c->max_body);
        *err = -EFBIG;
        return ATT_FAIL;
    }
    if (c->range_bad) {
        snprintf(c->why, sizeof(c->why), "server sent more than the %zu bytes asked for",
                 c->dst_len);
        *err = -EIO;
        return ATT_FAIL;
    }
    if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && c->range_done)) {
        snprintf(c->why, sizeof(c->why), "%s%s%s", curl_easy_strerror(cc),
                 *x.err ? ": " : "", x.err);
        c->why[strcspn(c->why, "\r\n")] = '\0';
        *err = -EIO;
        return gfs_curl_retryable(cc) ? ATT_RETRY : ATT_FAIL;
    }

    if (c->status < 200 || c->status > 299) {
        int have_body_err = c->errbody.len &&
                            gfs_az_xml_parse_error(c->errbody.p, c->errbody.len, &c->azerr,
                                                   st->base.log) == 0;
        /* the header names the error even on HEAD, which has no body */
        if (!c->code[0] && have_body_err)
            snprintf(c->code, sizeof(c->code), "%s", c->azerr.code);
        snprintf(c->why, sizeof(c->why), "HTTP %ld%s%s%s%s%s%s%s", c->status,
                 c->code[0] ? " " : "", c->code,
                 have_body_err && c->azerr.message[0] ? ": " : "",
                 have_body_err ? c->azerr.message : "",
                 c->request_id[0] ? " (request id " : "", c->request_id,
                 c->request_id[0] ? ")" : "");
        if (c->status >= 500 || c->status == 429 || c->status == 408)
            return ATT_RETRY;
        return ATT_DONE; /* a final answer the op interprets */
    }
    /* Azure checked the body against our Content-MD5; the answer's checks
     * that it kept what it checked. */
    if (c->want_md5 && c->md5[0] && strcmp(c->md5, c->want_md5) != 0) {
        snprintf(c->why, sizeof(c->why), "stored Content-MD5 %s is not the MD5 %s of the body",
                 c->md5, c->want_md5);
        return ATT_RETRY;
    }
    return ATT_DONE;
}

/* Run c with retries. 0 when an HTTP answer came (c->status tells which),
 * else a negative errno with c->why explaining. */
static int az_exec(struct az_store *st, struct az_call *c, const char *opname)
{
    CLEANUP_FREE char *url = NULL;
    CLEANUP_FREE char *path = NULL;
    int rc = build_target(st, c, &url, &path);
    if (rc != 0)
        return rc;
    uint64_t seq = atomic_fetch_add_explicit(&st->seq, 1, memory_order_relaxed) + 1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t rng = (seq * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)now.tv_nsec ^
                   ((uint64_t)now.tv_sec << 32) ^ (uint64_t)(uintptr_t)c;
    if (!rng)
        rng = 1;
    CURL *h = gfs_curl_pool_get(&st->pool);
    if (!h)
        return -ENOMEM;
    int budget = c->retries >= 0 ? c->retries : st->max_retries;
    for (int i = 0;; i++) {
        int err = 0;
        c->attempts = i + 1;
        enum attempt_result ar = attempt(st, c, h, url, path, &err);
        if (ar == ATT_DONE) {
            rc = 0;
            break;
        }
        if (ar == ATT_FAIL) {
            rc = err ? err : -EIO;
            break;
        }
        if (i >= budget) {
            rc = -EIO;
            break;
        }
        long ms = gfs_backoff_ms(&rng, i);
        gfs_stat_add(&st->base.stats.retries, 1);
        gfs_warn(st->base.log, "azure: %s %s: %s; retry %d/%d in %ld ms", opname,
                 c->key ? c->key : st->desc, c->why, i + 1, budget, ms);
        gfs_sleep_ms(ms);
    }
    gfs_curl_pool_put(&st->pool, h);
    return rc;
}

static int status_ok(const struct az_call *c) { return c->status >= 200 && c->status <= 299; }

static int code_is(const struct az_call *c, const char *code) { return strcmp(c->code, code) == 0; }

/* Map the final answer of a call that is not a success to an errno, and log. */
static int az_fail(struct az_store *st, struct az_call *c, const char *opname, int rc)
{
    const char *what = c->key ? c->key : st->desc;
    if (rc == 0) {
        if (c->status == 403) {
            gfs_err(st->base.log, "azure: %s %s: access denied by %s: %s (check %s)", opname,
                    what, st->desc, c->why, st->cred);
            rc = -EACCES;
        } else if (c->status == 404 && code_is(c, "ContainerNotFound")) {
            gfs_err(st->base.log, "azure: %s %s: container '%s' does not exist in account '%s' "
                    "at %s: %s", opname, what, st->container, st->account, st->origin, c->why);
            rc = -ENOENT;
        } else {
            gfs_err(st->base.log, "azure: %s %s on %s: %s", opname, what, st->desc, c->why);
            rc = -EIO;
        }
    } else if (rc != -EFBIG) {
        gfs_err(st->base.log, "azure: %s %s on %s failed after %d attempt(s): %s", opname, what,
                st->desc, c->attempts, c->why[0] ? c->why : strerror(-rc));
        if (rc != -ENOMEM && rc != -EINVAL)
            rc = -EIO;
    }
    gfs_stat_add(&st->base.stats.errors, 1);
    return rc;
}

/* ---- ops ----------------------------------------------------------------- */

static int az_head(struct gfs_objstore *gst, const char *key, struct gfs_obj_info *info)
{
    struct az_store *st = AZ(gst);
    if (!key_ok(st, key, 0))
        return -EINVAL;
    struct az_call c;
    call_init(&c, "HEAD", key);
    c.head = 1;
    int rc = az_exec(st, &c, "HEAD");
    gfs_stat_add(&st->base.stats.heads, 1);
    if (rc == 0 && c.status == 404 && !code_is(&c, "ContainerNotFound")) {
        call_free(&c);
        return -ENOENT;
    }
    if (rc == 0 && status_ok(&c) && !c.have_cl) {
        snprintf(c.why, sizeof(c.why), "Get Blob Properties answer without Content-Length");
        c.status = 502;
    }
    if (rc != 0 || !status_ok(&c)) {
        rc = az_fail(st, &c, "HEAD", rc);
        call_free(&c);
        return rc;
    }
    if (info) {
        info->size = c.content_length;
        snprintf(info->etag, sizeof(info->etag), "%s", c.etag);
    }
    call_free(&c);
    return 0;
}

/* After a conditional PUT was refused: did an earlier send of ours store the
 * object, its answer lost? Then the blob's Content-MD5 (the service computes
 * it for Put Blob; we set it for Put Block List) is ours. The ETag is handed
 * back via etag_out. 1 yes, 0 no (another blob, or none), or an error when
 * the HEAD cannot tell: a refusal is then not reported as a lost race. */
static int our_put_landed(struct az_store *st, const char *key, const char *md5b64,
                          char *etag_out)
{
    struct az_call c;
    call_init(&c, "HEAD", key);
    c.head = 1;
    int rc = az_exec(st, &c, "HEAD");
    gfs_stat_add(&st->base.stats.heads, 1);
    if (rc != 0 || (c.status != 200 && c.status != 404)) {
        rc = az_fail(st, &c, "HEAD", rc);
        call_free(&c);
        return rc < 0 ? rc : -EIO;
    }
    int ours = c.status == 200 && c.md5[0] && strcmp(c.md5, md5b64) == 0;
    if (ours && etag_out)
        snprintf(etag_out, 72, "%s", c.etag);
    call_free(&c);
    return ours;
}

static int md5_b64(const void *buf, size_t len, char out[32])
{
    uint8_t md5[GFS_MD5_LEN];
    int rc = gfs_md5(buf ? buf : "", len, md5);
    return rc ? rc : gfs_base64(md5, sizeof(md5), out, 32);
}

/* Stage the blocks of buf (Put Block, each with its Content-MD5) and fill
 * ids[] with their base64 ids. The ids carry a random nonce: blocks staged
 * by another writer of the same blob can never be committed as ours. */
static int put_blocks(struct az_store *st, const char *key, const uint8_t *buf, size_t len,
                      char **ids, size_t nblocks)
{
    uint8_t nonce[8];
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
        return -EIO;
    char nhex[17];
    gfs_hex_encode(nonce, sizeof nonce, nhex);
    for (size_t i = 0; i < nblocks; i++) {
        char raw[40], id[64], md5[32];
        int n = snprintf(raw, sizeof raw, "gfs-%s-%08zu", nhex, i);
        if (gfs_base64((const uint8_t *)raw, (size_t)n, id, sizeof id) != 0 ||
            !(ids[i] = strdup(id)))
            return -ENOMEM;
        size_t off = i * st->block_size;
        size_t bl = len - off < st->block_size ? len - off : st->block_size;
        int rc = md5_b64(buf + off, bl, md5);
        if (rc != 0)
            return rc;
        struct az_call c;
        call_init(&c, "PUT", key);
        c.body = buf + off;
        c.body_len = bl;
        c.want_md5 = md5;
        c.query[c.nquery++] = (struct gfs_az_kv){"comp", "block"};
        c.query[c.nquery++] = (struct gfs_az_kv){"blockid", id};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-MD5", md5};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-Type", "application/octet-stream"};
        rc = az_exec(st, &c, "PUT-BLOCK");
        gfs_stat_add(&st->base.stats.puts, 1);
        if (rc != 0 || !status_ok(&c)) {
            rc = az_fail(st, &c, "PUT-BLOCK", rc);
            call_free(&c);
            return rc;
        }
        call_free(&c);
    }
    return 0;
}

/* PUT with Content-MD5 (Azure checks the body); the answer's Content-MD5,
 * when it carries one, must be the body's. Conditional PUTs: If-None-Match: *
 * answered 409 BlobAlreadyExists or 412 is -EEXIST; If-Match answered 412
 * or 404 BlobNotFound (nothing to match) is -ECANCELED. */
static int az_put_etag(struct gfs_objstore *gst, const char *key, const void *buf, size_t len,
                       unsigned flags, const char *if_match_etag, char etag_out[72])
{
    struct az_store *st = AZ(gst);
    if (!key_ok(st, key, 0) || (!buf && len) || (flags & ~GFS_PUT_IF_NONE_MATCH) ||
        ((flags & GFS_PUT_IF_NONE_MATCH) && if_match_etag))
        return -EINVAL;
    char quoted[80];
    if (if_match_etag) {
        size_t el = strlen(if_match_etag);
        if (el == 0 || el > 70 || strpbrk(if_match_etag, "\"\r\n"))
            return -EINVAL;
        snprintf(quoted, sizeof(quoted), "\"%s\"", if_match_etag);
    }
    char md5[32];
    int rc = md5_b64(buf, len, md5);
    if (rc != 0)
        return rc;

    size_t nblocks = len > st->single_max ? (len + st->block_size - 1) / st->block_size : 0;
    if (nblocks > GFS_AZ_BLOCKS_MAX)
        return -EFBIG;
    char **ids = NULL;
    CLEANUP_FREE char *list = NULL;
    size_t list_len = 0;
    char list_md5[32];
    struct az_call c;
    call_init(&c, "PUT", key);
    if (nblocks) {
        /* above the single-put limit: stage blocks, commit them in one
         * Put Block List carrying the conditions (the commit is atomic) */
        if (!(ids = calloc(nblocks, sizeof(*ids))))
            return -ENOMEM;
        rc = put_blocks(st, key, buf, len, ids, nblocks);
        if (rc == 0)
            rc = gfs_az_xml_build_block_list((const char *const *)ids, nblocks, &list, &list_len);
        if (rc == 0)
            rc = md5_b64(list, list_len, list_md5);
        for (size_t i = 0; i < nblocks; i++)
            free(ids[i]);
        free(ids);
        if (rc != 0)
            return rc;
        c.body = list;
        c.body_len = list_len;
        c.want_md5 = list_md5;
        c.query[c.nquery++] = (struct gfs_az_kv){"comp", "blocklist"};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-MD5", list_md5};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-Type", "application/xml"};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"x-ms-blob-content-md5", md5};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"x-ms-blob-content-type", "application/octet-stream"};
    } else {
        c.body = buf;
        c.body_len = len;
        c.want_md5 = md5;
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"x-ms-blob-type", "BlockBlob"};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-MD5", md5};
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-Type", "application/octet-stream"};
    }
    if (flags & GFS_PUT_IF_NONE_MATCH)
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"If-None-Match", "*"};
    else if (if_match_etag)
        c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"If-Match", quoted};
    const char *op = nblocks ? "PUT-BLOCKLIST" : "PUT";
    rc = az_exec(st, &c, op);
    gfs_stat_add(&st->base.stats.puts, 1);
    if (rc == 0 && status_ok(&c)) {
        gfs_stat_add(&st->base.stats.put_bytes, len);
        if (!c.etag[0]) {
            /* the next conditional write needs it: no ETag, no success */
            snprintf(c.why, sizeof(c.why), "answer %ld without an ETag", c.status);
            c.status = 502;
            rc = az_fail(st, &c, op, 0);
            call_free(&c);
            return rc;
        }
        if (etag_out)
            snprintf(etag_out, 72, "%s", c.etag);
        call_free(&c);
        return 0;
    }
    int refused_inm = (flags & GFS_PUT_IF_NONE_MATCH) &&
                      (c.status == 412 || (c.status == 409 && code_is(&c, "BlobAlreadyExists")));
    int refused_im = if_match_etag &&
                     (c.status == 412 || (c.status == 404 && code_is(&c, "BlobNotFound")));
    if (rc == 0 && (refused_inm || refused_im)) {
        /* If-None-Match: only when it may have been sent twice (retried by
         * us, or by libcurl on a new connection: a creator may write the
         * same bytes twice and must hear that the second found the first);
         * If-Match: always (the blob is read anyway, and a proxy between us
         * and the store may have sent it twice). */
        int resent = c.attempts > 1 || c.maybe_resent;
        call_free(&c);
        int ours = refused_im || resent ? our_put_landed(st, key, md5, etag_out) : 0;
        if (ours < 0)
            return ours;
        if (ours)
            return 0;
        return refused_inm ? -EEXIST : -ECANCELED;
    }
    rc = az_fail(st, &c, op, rc);
    call_free(&c);
    return rc;
}

static int az_put(struct gfs_objstore *gst, const char *key, const void *buf, size_t len,
                  unsigned flags, const char *if_match_etag)
{
    return az_put_etag(gst, key, buf, len, flags, if_match_etag, NULL);
}

static int az_get_range(struct gfs_objstore *gst, const char *key, uint64_t offset, size_t len,
                        void *buf, size_t *got)
{
    struct az_store *st = AZ(gst);
    if (got)
        *got = 0;
    if (!key_ok(st, key, 0) || len == 0 || !buf || !got || offset > UINT64_MAX - len)
        return -EINVAL;
    char range[64];
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
    struct az_call c;
    call_init(&c, "GET", key);
    c.sink = SINK_RANGE;
    c.dst = buf;
    c.dst_len = len;
    c.range_off = offset;
    c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"x-ms-range", range};
    int rc = az_exec(st, &c, "GET");
    gfs_stat_add(&st->base.stats.gets, 1);
    if (rc == 0 && (c.status == 416 || /* offset at or past the end */
                    (c.status == 206 && c.cr_empty && c.cr_start == offset && c.got == 0))) {
        call_free(&c);
        return 0;
    }
    if (rc == 0 && c.status == 404 && !code_is(&c, "ContainerNotFound")) {
        call_free(&c);
        return -ENOENT;
    }
    struct gfs_range_answer a = {c.status, c.have_cr, c.have_cl, c.cr_start, c.cr_end,
                                 c.cr_total, c.content_length, c.pos, c.got};
    if (rc == 0 && gfs_range_answer_check(&a, offset, len, range, c.why, sizeof(c.why)) < 0)
        c.status = 502; /* not the range asked for */
    if (rc != 0 || (c.status != 200 && c.status != 206)) {
        rc = az_fail(st, &c, "GET", rc);
        call_free(&c);
        return rc;
    }
    *got = c.got;
    gfs_stat_add(&st->base.stats.get_bytes, c.got);
    call_free(&c);
    return 0;
}

static int az_get(struct gfs_objstore *gst, const char *key, size_t max_len, void **out,
                  size_t *outlen, struct gfs_obj_info *info)
{
    struct az_store *st = AZ(gst);
    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!key_ok(st, key, 0) || !out || !outlen)
        return -EINVAL;
    struct az_call c;
    call_init(&c, "GET", key);
    c.sink = SINK_BUFFER;
    c.max_body = max_len;
    int rc = az_exec(st, &c, "GET");
    gfs_stat_add(&st->base.stats.gets, 1);
    if (rc == -EFBIG) {
        call_free(&c);
        return -EFBIG;
    }
    if (rc == 0 && c.status == 404 && !code_is(&c, "ContainerNotFound")) {
        call_free(&c);
        return -ENOENT;
    }
    if (rc == 0 && c.status == 200 && c.have_cl && c.content_length != c.out.len) {
        snprintf(c.why, sizeof(c.why), "GET answer of %zu bytes, Content-Length %" PRIu64,
                 c.out.len, c.content_length);
        c.status = 502;
    }
    if (rc != 0 || c.status != 200) {
        rc = az_fail(st, &c, "GET", rc);
        call_free(&c);
        return rc;
    }
    if (!c.out.p && !(c.out.p = malloc(1))) {
        call_free(&c);
        return -ENOMEM;
    }
    if (info) {
        info->size = c.out.len;
        snprintf(info->etag, sizeof(info->etag), "%s", c.etag);
    }
    gfs_stat_add(&st->base.stats.get_bytes, c.out.len);
    *out = c.out.p;
    *outlen = c.out.len;
    c.out.p = NULL;
    call_free(&c);
    return 0;
}

static int az_del(struct gfs_objstore *gst, const char *key)
{
    struct az_store *st = AZ(gst);
    if (!key_ok(st, key, 0))
        return -EINVAL;
    struct az_call c;
    call_init(&c, "DELETE", key);
    /* a blob with snapshots cannot be deleted alone (409 SnapshotsPresent) */
    c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"x-ms-delete-snapshots", "include"};
    int rc = az_exec(st, &c, "DELETE");
    gfs_stat_add(&st->base.stats.deletes, 1);
    gfs_stat_add(&st->base.stats.delete_requests, 1);
    if (rc == 0 && (status_ok(&c) || (c.status == 404 && !code_is(&c, "ContainerNotFound")))) {
        call_free(&c);
        return 0; /* deleting a missing blob is success */
    }
    rc = az_fail(st, &c, "DELETE", rc);
    call_free(&c);
    return rc;
}

/* One List Blobs page. Names and markers are full blob names. */
static int list_page(struct az_store *st, struct az_call *c, const char *full_prefix,
                     const char *marker, const char *maxres, int retries,
                     struct gfs_az_list_page *page)
{
    call_init(c, "GET", NULL);
    c->retries = retries;
    c->sink = SINK_BUFFER;
    c->max_body = GFS_AZ_XML_MAX;
    c->query[c->nquery++] = (struct gfs_az_kv){"restype", "container"};
    c->query[c->nquery++] = (struct gfs_az_kv){"comp", "list"};
    c->query[c->nquery++] = (struct gfs_az_kv){"maxresults", maxres};
    if (*full_prefix)
        c->query[c->nquery++] = (struct gfs_az_kv){"prefix", full_prefix};
    if (marker)
        c->query[c->nquery++] = (struct gfs_az_kv){"marker", marker};
    int rc = az_exec(st, c, "LIST");
    gfs_stat_add(&st->base.stats.lists, 1);
    if (rc == -EFBIG) {
        snprintf(c->why, sizeof(c->why), "listing page larger than %u bytes", GFS_AZ_XML_MAX);
        rc = -EIO;
    }
    if (rc != 0 || c->status != 200)
        return rc;
    rc = gfs_az_xml_parse_list(c->out.p, c->out.len, page, st->base.log);
    if (rc == -EBADMSG) {
        snprintf(c->why, sizeof(c->why), "malformed EnumerationResults (%zu bytes)", c->out.len);
        c->status = 502;
        return 0;
    }
    return rc;
}

static int az_list(struct gfs_objstore *gst, const char *prefix, const char *start_after,
                   gfs_list_cb cb, void *arg)
{
    struct az_store *st = AZ(gst);
    if (!cb || !key_ok(st, prefix, 1) || (start_after && !key_ok(st, start_after, 1)))
        return -EINVAL;
    CLEANUP_FREE char *full_prefix = NULL;
    CLEANUP_FREE char *full_after = NULL;
    if (asprintf(&full_prefix, "%s%s", st->prefix, prefix ? prefix : "") < 0) {
        full_prefix = NULL;
        return -ENOMEM;
    }
    if (start_after && *start_after &&
        asprintf(&full_after, "%s%s", st->prefix, start_after) < 0) {
        full_after = NULL;
        return -ENOMEM;
    }
    char maxres[16];
    snprintf(maxres, sizeof maxres, "%u", st->max_results);
    size_t plen = strlen(st->prefix), fplen = strlen(full_prefix);
    CLEANUP_FREE char *marker = NULL;
    CLEANUP_FREE char *last = NULL; /* last name seen: order check */
    for (;;) {
        struct az_call c;
        struct gfs_az_list_page page = {0};
        int rc = list_page(st, &c, full_prefix, marker, maxres, -1, &page);
        if (rc != 0 || c.status != 200) {
            rc = az_fail(st, &c, "LIST", rc);
            call_free(&c);
            return rc;
        }
        call_free(&c);
        for (size_t i = 0; i < page.n; i++) {
            const char *k = page.entries[i].name;
            if (strncmp(k, full_prefix, fplen) != 0 || (last && strcmp(k, last) <= 0)) {
                gfs_err(st->base.log, "azure: LIST %s: the store listed '%.200s' %s", st->desc,
                        k, last && strcmp(k, last) <= 0 ? "out of order" : "outside the prefix");
                gfs_stat_add(&st->base.stats.errors, 1);
                gfs_az_list_page_clear(&page);
                return -EIO;
            }
            free(last);
            if (!(last = strdup(k))) {
                gfs_az_list_page_clear(&page);
                return -ENOMEM;
            }
            /* no start-after in List Blobs: skip up to it */
            if (full_after && strcmp(k, full_after) <= 0)
                continue;
            int r = cb(arg, k + plen, page.entries[i].size);
            if (r != 0) {
                gfs_az_list_page_clear(&page);
                return r;
            }
        }
        if (!page.next_marker) {
            gfs_az_list_page_clear(&page);
            return 0;
        }
        if (marker && strcmp(marker, page.next_marker) == 0) {
            gfs_err(st->base.log, "azure: LIST %s: the store answered the same NextMarker "
                    "twice", st->desc);
            gfs_stat_add(&st->base.stats.errors, 1);
            gfs_az_list_page_clear(&page);
            return -EIO;
        }
        free(marker);
        marker = page.next_marker;
        page.next_marker = NULL;
        gfs_az_list_page_clear(&page);
    }
}

static void az_destroy(struct gfs_objstore *gst)
{
    struct az_store *st = AZ(gst);
    if (!st)
        return;
    gfs_curl_pool_destroy(&st->pool);
    mbedtls_platform_zeroize(st->key, sizeof(st->key));
    if (st->sas) {
        mbedtls_platform_zeroize(st->sas, strlen(st->sas));
        free(st->sas);
    }
    free(st->account);
    free(st->container);
    free(st->prefix);
    free(st->origin);
    free(st->path_base);
    free(st->ca_bundle);
    free(st->desc);
    free(st);
}

/* ---- start-up check ------------------------------------------------------ */

int gfs_objstore_is_azure(const struct gfs_objstore *st)
{
    return st && st->ops == &az_ops;
}

int gfs_azure_check(struct gfs_objstore *gst, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!gfs_objstore_is_azure(gst))
        return -EINVAL;
    struct az_store *st = AZ(gst);
    struct az_call c;
    struct gfs_az_list_page page = {0};
    int rc = list_page(st, &c, st->prefix, NULL, "1", CHECK_RETRIES, &page);
    gfs_az_list_page_clear(&page);
    char line[768];
    if (rc == 0 && c.status == 200) {
        gfs_info(st->base.log, "azure: %s answers at %s", st->desc, st->origin);
        call_free(&c);
        return 0;
    }
    if (rc != 0 && c.cc != CURLE_OK && !gfs_curl_retryable(c.cc) && c.cc != CURLE_OUT_OF_MEMORY) {
        snprintf(line, sizeof(line),
                 "%s: TLS or protocol failure with the Azure endpoint %s: %s (storage.ca_bundle "
                 "names a CA file for a private CA)", st->desc, st->origin, c.why);
        rc = -EPROTO; /* configuration: no retry mends it */
    } else if (rc != 0) {
        snprintf(line, sizeof(line), "%s: cannot reach the Azure endpoint %s: %s", st->desc,
                 st->origin, c.why[0] ? c.why : strerror(-rc));
        rc = -EIO;
    } else if (c.status == 403) {
        snprintf(line, sizeof(line), "%s: %s refused the credentials for account '%s' (%s): %s",
                 st->desc, st->origin, st->account, st->cred, c.why);
        rc = -EACCES;
    } else if (c.status == 404 && code_is(&c, "ContainerNotFound")) {
        snprintf(line, sizeof(line), "%s: container '%s' does not exist in account '%s' at %s (%s)",
                 st->desc, st->container, st->account, st->origin, c.why);
        rc = -ENOENT;
    } else if (c.status == 404 && (code_is(&c, "ResourceNotFound") ||
                                   code_is(&c, "AccountNotFound"))) {
        snprintf(line, sizeof(line), "%s: %s does not know the account '%s' (%s)", st->desc,
                 st->origin, st->account, c.why);
        rc = -ENOENT;
    } else {
        snprintf(line, sizeof(line), "%s: unexpected answer from %s: %s", st->desc, st->origin,
                 c.why);
        /* a 4xx other than a timeout or throttling is about the request:
         * asking again will not change it */
        rc = c.status >= 400 && c.status < 500 && c.status != 408 && c.status != 429 ? -EPROTO
                                                                                    : -EIO;
    }
    gfs_err(st->base.log, "azure: %s", line);
    if (err && errlen)
        snprintf(err, errlen, "%s", line);
    call_free(&c);
    return rc;
}

/* ---- batched deletes ----------------------------------------------------- */

/* Is the answer to a batch request a refusal of Blob Batch itself? */
static int batch_unsupported(long status, const char *code)
{
    if (status == 501 || status == 405)
        return 1;
    if (status == 404)
        return strcmp(code, "ContainerNotFound") != 0;
    return status == 400 && strcmp(code, "ExceedsMaxBatchRequestCount") != 0;
}

static int delete_chunk(struct az_store *st, const char *const *keys, size_t n, size_t *failed,
                        int *unsupported)
{
    *unsupported = 0;
    char date[30];
    if (gfs_az_date(time(NULL), date) != 0)
        return -EIO;
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return -EIO;
    char boundary[48] = "batch_";
    gfs_hex_encode(rnd, sizeof rnd, boundary + 6);
    char datel[48];
    snprintf(datel, sizeof datel, "x-ms-date: %s", date);

    struct gfs_az_batch_sub *sub = calloc(n, sizeof(*sub));
    char **targets = calloc(n, sizeof(*targets));
    char **auths = calloc(n, sizeof(*auths));
    const char **lines = calloc(3 * n, sizeof(*lines));
    int rc = sub && targets && auths && lines ? 0 : -ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        CLEANUP_FREE char *path = request_path(st, keys[i]);
        if (!path) {
            rc = -ENOMEM;
            break;
        }
        /* each subrequest is authorized on its own: signed, or carrying the SAS */
        if (asprintf(&targets[i], "%s%s%s", path, st->sas ? "?" : "", st->sas ? st->sas : "") < 0) {
            targets[i] = NULL;
            rc = -ENOMEM;
            break;
        }
        size_t nl = 0;
        lines[3 * i + nl++] = datel;
        lines[3 * i + nl++] = "Content-Length: 0";
        if (st->keylen) {
            struct gfs_az_kv h[2] = {{"x-ms-date", date}, {"Content-Length", "0"}};
            struct gfs_az_request r = {.method = "DELETE", .path = path, .headers = h,
                                       .nheaders = 2};
            CLEANUP_FREE char *a = NULL;
            if ((rc = gfs_az_authorization(st->account, st->key, st->keylen, &r, &a)) != 0)
                break;
            if (asprintf(&auths[i], "Authorization: %s", a) < 0) {
                auths[i] = NULL;
                rc = -ENOMEM;
                break;
            }
            lines[3 * i + nl++] = auths[i];
        }
        sub[i] = (struct gfs_az_batch_sub){"DELETE", targets[i], &lines[3 * i], nl};
    }
    CLEANUP_FREE char *body = NULL;
    size_t blen = 0;
    if (rc == 0)
        rc = gfs_az_batch_build(boundary, sub, n, &body, &blen);
    for (size_t i = 0; targets && auths && i < n; i++) {
        free(targets[i]);
        free(auths[i]);
    }
    free(sub);
    free(targets);
    free(auths);
    free(lines);
    if (rc != 0)
        return rc;

    char ctype[80];
    snprintf(ctype, sizeof ctype, "multipart/mixed; boundary=%s", boundary);
    struct az_call c;
    call_init(&c, "POST", NULL);
    c.body = body;
    c.body_len = blen;
    c.sink = SINK_BUFFER;
    c.max_body = GFS_AZ_BATCH_BODY_MAX;
    c.query[c.nquery++] = (struct gfs_az_kv){"restype", "container"};
    c.query[c.nquery++] = (struct gfs_az_kv){"comp", "batch"};
    c.xhdr[c.nxhdr++] = (struct gfs_az_kv){"Content-Type", ctype};
    rc = az_exec(st, &c, "DELETE-BATCH");
    atomic_fetch_add_explicit(&st->batch_requests, 1, memory_order_relaxed);
    gfs_stat_add(&st->base.stats.delete_requests, 1);
    if (rc == 0 && !status_ok(&c) && batch_unsupported(c.status, c.code)) {
        gfs_warn(st->base.log, "azure: %s refuses Blob Batch (%s): deleting one blob per "
                 "request from now on", st->desc, c.why);
        *unsupported = 1;
        call_free(&c);
        return 0;
    }
    gfs_stat_add(&st->base.stats.deletes, n);
    if (rc != 0 || c.status != 202) {
        rc = az_fail(st, &c, "DELETE-BATCH", rc);
        call_free(&c);
        return rc;
    }
    struct gfs_az_batch_reply *rep = calloc(n, sizeof(*rep));
    if (!rep) {
        call_free(&c);
        return -ENOMEM;
    }
    const struct gfs_az_batch_reply *whole = NULL;
    rc = gfs_az_batch_parse(c.ctype, c.out.p, c.out.len, n, rep, &whole);
    call_free(&c);
    if (rc == -EBADMSG) {
        gfs_err(st->base.log, "azure: DELETE-BATCH on %s: malformed batch answer", st->desc);
        gfs_stat_add(&st->base.stats.errors, 1);
        rc = -EIO;
    }
    if (rc == 0 && whole) {
        if (batch_unsupported(whole->status, whole->code)) {
            gfs_warn(st->base.log, "azure: %s refuses Blob Batch (HTTP %d %s): deleting one "
                     "blob per request from now on", st->desc, whole->status, whole->code);
            *unsupported = 1;
        } else {
            gfs_err(st->base.log, "azure: DELETE-BATCH on %s refused: HTTP %d %s", st->desc,
                    whole->status, whole->code);
            gfs_stat_add(&st->base.stats.errors, 1);
            rc = whole->status == 403 ? -EACCES
                 : strcmp(whole->code, "ContainerNotFound") == 0 ? -ENOENT : -EIO;
        }
    }
    size_t bad = 0, first = n;
    int hard = 0;
    for (size_t i = 0; rc == 0 && !whole && i < n; i++) {
        const struct gfs_az_batch_reply *r = &rep[i];
        if ((r->status >= 200 && r->status <= 299) ||
            (r->status == 404 && strcmp(r->code, "BlobNotFound") == 0))
            continue;
        if (r->status == 403)
            hard = hard ? hard : -EACCES;
        else if (r->status == 404 && strcmp(r->code, "ContainerNotFound") == 0)
            hard = hard ? hard : -ENOENT;
        if (first == n)
            first = i;
        bad++;
    }
    if (rc == 0 && bad) {
        gfs_err(st->base.log, "azure: DELETE-BATCH on %s: %zu of %zu blobs not deleted, first "
                "%s: HTTP %d %s", st->desc, bad, n, keys[first], rep[first].status,
                rep[first].code);
        gfs_stat_add(&st->base.stats.errors, 1);
        *failed += bad;
        rc = hard ? hard : -EIO;
    }
    free(rep);
    return rc;
}

static int del_each(struct az_store *st, const char *const *keys, size_t n, size_t *failed)
{
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int r = az_del(&st->base, keys[i]);
        if (r == 0)
            continue;
        if (r == -EACCES || r == -ENOENT || r == -EINVAL || r == -ENOMEM) {
            first = r; /* every other key would fail the same way */
            break;
        }
        (*failed)++;
        if (!first)
            first = -EIO;
    }
    return first;
}

int gfs_azure_delete_batch(struct gfs_objstore *gst, const char *const *keys, size_t n,
                           size_t *failed)
{
    size_t nfailed = 0;
    if (failed)
        *failed = 0;
    if (!gfs_objstore_is_azure(gst) || (!keys && n))
        return -EINVAL;
    struct az_store *st = AZ(gst);
    for (size_t i = 0; i < n; i++)
        if (!key_ok(st, keys[i], 0))
            return -EINVAL;
    int first = 0;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < GFS_AZ_BATCH_MAX ? n - off : GFS_AZ_BATCH_MAX;
        int rc, unsupported = 0;
        if (k == 1 || atomic_load_explicit(&st->batch_off, memory_order_relaxed)) {
            rc = del_each(st, keys + off, k, &nfailed);
        } else {
            rc = delete_chunk(st, keys + off, k, &nfailed, &unsupported);
            if (unsupported) {
                atomic_store_explicit(&st->batch_off, 1, memory_order_relaxed);
                continue; /* the same keys again, one by one */
            }
        }
        off += k;
        if (rc == -EACCES || rc == -ENOENT || rc == -ENOMEM || rc == -EINVAL) {
            first = rc;
            break;
        }
        if (rc && !first)
            first = rc;
    }
    if (failed)
        *failed = nfailed;
    return first;
}

void gfs_azure_set_limits(struct gfs_objstore *gst, size_t single_max, size_t block_size,
                          unsigned max_results)
{
    if (!gfs_objstore_is_azure(gst))
        return;
    struct az_store *st = AZ(gst);
    if (single_max)
        st->single_max = single_max;
    if (block_size)
        st->block_size = block_size;
    if (max_results)
        st->max_results = max_results > GFS_AZ_LIST_MAX ? GFS_AZ_LIST_MAX : max_results;
}

uint64_t gfs_azure_batch_requests(const struct gfs_objstore *gst)
{
    if (!gfs_objstore_is_azure(gst))
        return 0;
    const struct az_store *st = (const struct az_store *)gst;
    return atomic_load_explicit(&st->batch_requests, memory_order_relaxed);
}

/* ops->del_many (objstore.h): compaction and purge delete through Blob Batch. */
static int az_del_many(struct gfs_objstore *st, const char *const *keys, size_t n,
                       size_t *failed)
{
    return gfs_azure_delete_batch(st, keys, n, failed);
}

static const struct gfs_objstore_ops az_ops = {
    .put = az_put,
    .put_etag = az_put_etag,
    .get_range = az_get_range,
    .get = az_get,
    .head = az_head,
    .del = az_del,
    .list = az_list,
    .destroy = az_destroy,
    .del_many = az_del_many,
};

/* ---- open ---------------------------------------------------------------- */

/* Azure container names: 3-63 of a-z 0-9 '-', starting and ending with a
 * letter or digit, no "--". */
static int container_ok(const char *s, size_t n)
{
    if (n < 3 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return 0;
        if (ch == '-' && s[i + 1] == '-')
            return 0;
    }
    return 1;
}

/* azure://account/container[/prefix]: its parts, the prefix normalised
 * ("" or "a/b/"). */
static int parse_az_url(const char *url, struct az_store *st, char *err, size_t errlen)
{
    if (!url || strncmp(url, "azure://", 8) != 0) {
        snprintf(err, errlen, "storage.url must start with azure://");
        return -EINVAL;
    }
    const char *a = url + 8;
    size_t al = strcspn(a, "/");
    if (!gfs_az_account_ok(a, al)) {
        snprintf(err, errlen, "storage.url: bad storage account name (3-24 of a-z 0-9)");
        return -EINVAL;
    }
    const char *c = a + al;
    if (*c == '/')
        c++;
    size_t cl = strcspn(c, "/");
    if (!container_ok(c, cl)) {
        snprintf(err, errlen, "storage.url: bad container name (azure://account/container: "
                 "3-63 of a-z 0-9 -, no \"--\", a letter or digit at both ends)");
        return -EINVAL;
    }
    const char *p = c + cl;
    while (*p == '/')
        p++;
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    if (pl > PREFIX_MAX) {
        snprintf(err, errlen, "storage.url: prefix longer than %u bytes", PREFIX_MAX);
        return -EINVAL;
    }
    for (size_t i = 0, seg = 0; i <= pl; i++) {
        if (i == pl || p[i] == '/') {
            size_t sl = i - seg;
            if ((sl == 0 && pl) || (sl == 1 && p[seg] == '.') ||
                (sl == 2 && p[seg] == '.' && p[seg + 1] == '.')) {
                snprintf(err, errlen, "storage.url: empty, '.' or '..' segment in the prefix");
                return -EINVAL;
            }
            seg = i + 1;
        } else if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
            snprintf(err, errlen, "storage.url: control character in the prefix");
            return -EINVAL;
        }
    }
    st->account = strndup(a, al);
    st->container = strndup(c, cl);
    if (pl) {
        if (asprintf(&st->prefix, "%.*s/", (int)pl, p) < 0)
            st->prefix = NULL;
    } else {
        st->prefix = strdup("");
    }
    if (!st->account || !st->container || !st->prefix) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!xmlCheckUTF8((const xmlChar *)st->prefix)) {
        snprintf(err, errlen, "storage.url: the prefix is not valid UTF-8");
        return -EINVAL;
    }
    return 0;
}

static int host_is_ip_or_local(const char *h, size_t n)
{
    if (n && h[0] == '[')
        return 1; /* IPv6 literal */
    size_t hl = n;
    const char *colon = memchr(h, ':', n);
    if (colon)
        hl = (size_t)(colon - h);
    if (hl == 9 && strncasecmp(h, "localhost", 9) == 0)
        return 1;
    for (size_t i = 0; i < hl; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.'))
            return 0;
    return hl > 0;
}

/* storage.endpoint: http(s)://host[:port][/account]. */
static int parse_endpoint(const char *ep, struct az_store *st, char *err, size_t errlen)
{
    const char *rest;
    if (strncasecmp(ep, "http://", 7) == 0)
        rest = ep + 7;
    else if (strncasecmp(ep, "https://", 8) == 0)
        rest = ep + 8;
    else {
        snprintf(err, errlen, "storage.endpoint must start with http:// or https://");
        return -EINVAL;
    }
    size_t hl = strcspn(rest, "/?#");
    if (hl == 0) {
        snprintf(err, errlen, "storage.endpoint: no host");
        return -EINVAL;
    }
    for (size_t i = 0; i < hl; i++) {
        unsigned char ch = (unsigned char)rest[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '@' || ch == '\\') {
            snprintf(err, errlen,
                     "storage.endpoint: bad character in host (no user info allowed)");
            return -EINVAL;
        }
    }
    const char *tail = rest + hl;
    size_t tl = strlen(tail);
    while (tl && tail[tl - 1] == '/')
        tl--;
    int path_style;
    if (tl == 0) {
        path_style = host_is_ip_or_local(rest, hl);
    } else if (tail[0] == '/' && tl - 1 == strlen(st->account) &&
               strncmp(tail + 1, st->account, tl - 1) == 0) {
        path_style = 1;
    } else {
        snprintf(err, errlen, "storage.endpoint for azure:// must be scheme://host[:port] or, "
                 "path-style, scheme://host[:port]/%s (the URL's account)", st->account);
        return -EINVAL;
    }
    st->origin = strndup(ep, (size_t)(tail - ep));
    if (path_style) {
        if (asprintf(&st->path_base, "/%s", st->account) < 0)
            st->path_base = NULL;
    } else {
        st->path_base = strdup("");
    }
    if (!st->origin || !st->path_base) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static const char *env(const char *name)
{
    const char *e = getenv(name);
    return e && *e ? e : NULL;
}

/* The credential: config first, then the environment (see objstore_azure.h). */
static int pick_credentials(const struct glidefs_config *cfg, struct az_store *st, char *err,
                            size_t errlen)
{
    const char *key = cfg->storage_azure_account_key && *cfg->storage_azure_account_key
                          ? cfg->storage_azure_account_key : NULL;
    const char *sas = cfg->storage_azure_sas_token && *cfg->storage_azure_sas_token
                          ? cfg->storage_azure_sas_token : NULL;
    if (key && sas) {
        snprintf(err, errlen, "azure store: set storage.azure_account_key or "
                 "storage.azure_sas_token, not both");
        return -EINVAL;
    }
    const char *key_what = "storage.azure_account_key", *sas_what = "storage.azure_sas_token";
    if (!key && !sas) {
        const char *acct = env("AZURE_STORAGE_ACCOUNT");
        sas = env("AZURE_STORAGE_SAS_TOKEN");
        key = sas ? NULL : env("AZURE_STORAGE_KEY");
        key_what = "AZURE_STORAGE_KEY";
        sas_what = "AZURE_STORAGE_SAS_TOKEN";
        if ((key || sas) && acct && strcmp(acct, st->account) != 0) {
            /* a credential of another account would only be refused, confusingly */
            snprintf(err, errlen, "azure store: AZURE_STORAGE_ACCOUNT names another account "
                     "than storage.url's '%s': its %s is not used (unset them or set "
                     "storage.azure_account_key / storage.azure_sas_token)", st->account,
                     sas ? "AZURE_STORAGE_SAS_TOKEN" : "AZURE_STORAGE_KEY");
            return -EINVAL;
        }
    }
    if (key) {
        if (gfs_az_key_decode(key, st->key, &st->keylen) != 0) {
            snprintf(err, errlen, "azure store: %s is not an account key (base64, as the "
                     "portal or `az storage account keys list` shows it)", key_what);
            return -EINVAL;
        }
        st->cred = key_what;
        return 0;
    }
    if (sas) {
        int rc = gfs_az_sas_normalize(sas, &st->sas);
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "out of memory");
            return rc;
        }
        if (rc != 0) {
            snprintf(err, errlen, "azure store: %s is not a SAS token (name=value pairs joined "
                     "by '&', with sv= and sig=)", sas_what);
            return -EINVAL;
        }
        st->cred = sas_what;
        return 0;
    }
    snprintf(err, errlen, "azure store: no credentials: set storage.azure_account_key or "
             "storage.azure_sas_token, or AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN");
    return -EINVAL;
}

int gfs_objstore_azure_open(const struct glidefs_config *cfg, struct gfs_log *log,
                            struct gfs_objstore **out, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    err[0] = '\0';
    if (out)
        *out = NULL;
    if (!cfg || !out) {
        snprintf(err, errlen, "azure store: missing config");
        return -EINVAL;
    }
    pthread_once(&az_global_once, az_global_init);
    if (az_global_rc != CURLE_OK) {
        snprintf(err, errlen, "azure store: libcurl initialisation failed: %s",
                 curl_easy_strerror(az_global_rc));
        return -EIO;
    }
    struct az_store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    st->base.ops = &az_ops;
    st->base.log = log;
    gfs_curl_pool_init(&st->pool);

    int rc = parse_az_url(cfg->storage_url, st, err, errlen);
    if (rc == 0) {
        if (cfg->storage_endpoint && *cfg->storage_endpoint) {
            rc = parse_endpoint(cfg->storage_endpoint, st, err, errlen);
        } else {
            if (asprintf(&st->origin, "https://%s.blob.core.windows.net", st->account) < 0)
                st->origin = NULL;
            st->path_base = strdup("");
            if (!st->origin || !st->path_base) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
            }
        }
    }
    if (rc == 0)
        rc = pick_credentials(cfg, st, err, errlen);
    if (rc != 0)
        goto fail;
    if (cfg->storage_ca_bundle && *cfg->storage_ca_bundle &&
        !(st->ca_bundle = strdup(cfg->storage_ca_bundle))) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    st->tls_verify = cfg->storage_tls_verify ? 1 : 0;
    st->timeout_ms = cfg->storage_timeout_ms > 0 ? cfg->storage_timeout_ms : 30000;
    st->max_retries = cfg->storage_max_retries >= 0 ? cfg->storage_max_retries : 8;
    if (st->max_retries > 100)
        st->max_retries = 100;
    st->max_conns = cfg->storage_max_connections > 0 ? cfg->storage_max_connections : 8;
    if (st->max_conns > 1024)
        st->max_conns = 1024;
    st->single_max = SINGLE_PUT_MAX;
    st->block_size = BLOCK_SIZE;
    st->max_results = GFS_AZ_LIST_MAX;
    if (*st->prefix) {
        if (asprintf(&st->desc, "azure://%s/%s/%.*s", st->account, st->container,
                     (int)strlen(st->prefix) - 1, st->prefix) < 0)
            st->desc = NULL;
    } else if (asprintf(&st->desc, "azure://%s/%s", st->account, st->container) < 0) {
        st->desc = NULL;
    }
    if (!st->desc || gfs_curl_pool_start(&st->pool, st->max_conns) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }

    if (!st->tls_verify && strncasecmp(st->origin, "https:", 6) == 0)
        gfs_warn(log, "azure: TLS certificate verification is off for %s", st->origin);
    gfs_info(log, "azure: store %s at %s (%s-style, %s, %d connections, timeout %ld ms, "
             "%d retries)", st->desc, st->origin, *st->path_base ? "path" : "host",
             st->keylen ? "Shared Key" : "SAS", st->max_conns, st->timeout_ms, st->max_retries);
    *out = &st->base;
    return 0;

fail:
    az_destroy(&st->base);
    return rc;
}
