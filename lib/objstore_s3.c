/*
 * objstore_s3.c — the s3:// object store backend: every op of objstore.h
 * over libcurl against AWS S3 or any S3-compatible service, signed with our
 * SigV4 signer (sigv4.c, mbedTLS), XML through s3_xml.c (libxml2).
 *
 * Owns: URL and endpoint handling (storage.addressing: virtual-hosted or
 * path-style, see gfs_s3_use_virtual), the region (a store that answers
 * with the bucket's real region - 301 PermanentRedirect, x-amz-bucket-region,
 * AuthorizationHeaderMalformed - is signed for that region from then on,
 * the request retried once), request execution with timeouts, retries
 * (the curl handle pool, backoff and retryable curl errors are
 * http_request.c's, shared with azure://), mapping of HTTP/S3 errors to errno,
 * x-amz-checksum-crc32c on PUT (storage.checksum), and the checks on answers
 * (ETag == MD5 of what was PUT, the echoed CRC-32C, Content-Range of ranged
 * GETs, list order). Credentials come from s3_creds.c (the chain, refresh;
 * never logged); a key refused as expired is fetched anew and the request
 * signed again, once.
 *
 * Threads: any number of threads may call the ops at once; each request
 * takes a curl easy handle from the pool (http_request.h; at most
 * storage.max_connections, created lazily, kept for connection reuse); DNS
 * and TLS sessions are shared between handles through a CURLSH with locks.
 *
 * Errors: 403 is -EACCES and 404 NoSuchBucket -ENOENT, at once; 5xx (but
 * 501 Not Implemented), 429, 400 RequestTimeout, 409 OperationAborted /
 * ConditionalRequestConflict, timeouts, refused or reset connections and cut
 * bodies are retried up to storage.max_retries times (full jitter over
 * 100 ms * 2^n, capped at 5 s; counted in stats.retries, each logged at
 * WARN), then -EIO; certificate failures and other 4xx are -EIO at once,
 * logged with S3's Code and Message. A 500 on a conditional PUT is looked
 * into instead of retried (see s3_put_etag).
 * Every request is bounded by storage.timeout_ms (plus a low-speed limit), so
 * no call hangs forever. No network I/O at open: see gfs_s3_check().
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
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/xmlstring.h>
#include <mbedtls/platform_util.h>

#include "cleanup.h"
#include "config.h"
#include "crc32c.h"
#include "log.h"
#include "http_request.h"
#include "objstore.h"
#include "objstore_s3.h"
#include "s3_creds.h"
#include "s3_creds_parse.h"
#include "s3_names.h"
#include "s3_xml.h"
#include "sigv4.h"

#define ERR_BODY_MAX (64u * 1024u) /* error bodies kept for parsing */
#define PREFIX_MAX 512u
#define CHECK_RETRIES 2            /* start-up check: fail fast */
#define MAX_REGION_SWITCHES 4      /* a store that keeps naming other regions is wrong */

/* ---- process-wide initialisation ----------------------------------------
 * The only mutable static state in the backend: libcurl and libxml2 each need
 * one global initialisation before threads use them, and neither may be
 * undone while another user could still be active, so it is done once per
 * process (pthread_once) and never cleaned up. */
static pthread_once_t s3_global_once = PTHREAD_ONCE_INIT;
static CURLcode s3_global_rc = CURLE_FAILED_INIT;

static void s3_global_init(void)
{
    s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    xmlInitParser();
}

/* ---- the store ----------------------------------------------------------- */

/* Where requests go and how they are signed. Immutable: a region learned
 * from the store makes a new one (requests in flight keep theirs); all are
 * freed at close. */
struct s3_target {
    char *origin;     /* "https://host[:port]" */
    char *host;       /* Host header value */
    char *path_base;  /* "" (virtual-hosted) or "/bucket" (path-style) */
    char *region;
    struct s3_target *older;
};

enum { CRC_OFF, CRC_AUTO, CRC_ON };

struct s3_store {
    struct gfs_objstore base; /* first: the generic code casts */
    char *bucket;
    char *prefix;     /* "" or "some/prefix/" (with the trailing '/') */
    char *ep_scheme;  /* storage.endpoint's "http"/"https"; NULL: AWS's own host names */
    char *ep_host;    /* storage.endpoint's host[:port] */
    int virtual_host; /* requests go to BUCKET.host (gfs_s3_use_virtual) */
    pthread_mutex_t target_lock;
    _Atomic(struct s3_target *) target; /* replaced under target_lock */
    int region_switches;
    struct gfs_s3_creds *creds;
    char *ca_bundle;
    char *desc;       /* "s3://bucket/prefix" for messages */
    int tls_verify;
    int crc_mode;     /* storage.checksum: CRC_OFF / CRC_AUTO / CRC_ON */
    atomic_int crc_refused; /* auto: the store refused the header; PUTs go without it */
    atomic_int crc_state;   /* GFS_S3_CRC_*: what the store was seen to do */
    long timeout_ms;
    int max_retries;
    int max_conns;

    struct gfs_curl_pool pool;

    _Atomic uint64_t seq; /* request counter, seeds the backoff jitter */
    /* 1 once this store was seen to compare If-Match with the stored ETag
     * without its quotes (Ceph RGW 16): If-Match then goes out bare */
    atomic_int if_match_bare;
    /* 1 once a store refused DeleteObjects (501 NotImplemented and kin): single deletes */
    atomic_int no_batch_delete;
};

static const struct gfs_objstore_ops s3_ops;
static void target_free(struct s3_target *t);

static struct s3_store *S3(struct gfs_objstore *st) { return (struct s3_store *)st; }

/* ---- one request --------------------------------------------------------- */

enum sink_kind { SINK_DISCARD, SINK_BUFFER, SINK_RANGE };

#define MAX_QUERY 6
#define MAX_XHDR 6

struct s3_call {
    /* request */
    const char *method;
    const char *key;          /* store-relative key; NULL: a bucket-level request */
    struct gfs_sigv4_kv query[MAX_QUERY];
    size_t nquery;
    struct gfs_sigv4_kv xhdr[MAX_XHDR]; /* extra headers, all signed */
    size_t nxhdr;
    const void *body;
    size_t body_len;
    int head;                 /* HEAD: no body expected */
    int retries;              /* retry budget of this call */
    const char *want_etag;    /* 2xx must carry this ETag (hex MD5), else retried */
    int final_500;            /* a 500 is an answer, not retried (conditional PUTs) */
    char crc_sent[16];        /* x-amz-checksum-crc32c sent (base64), "" none */

    /* response sink */
    enum sink_kind sink;
    size_t max_body;          /* SINK_BUFFER: larger is -EFBIG */
    uint8_t *dst;             /* SINK_RANGE */
    size_t dst_len;
    uint64_t range_off;

    /* response, reset before every attempt */
    long status;
    char etag[72];
    int have_cl, have_cr;
    uint64_t content_length, cr_start, cr_end, cr_total; /* cr_total UINT64_MAX: '*' */
    char request_id[128];
    struct gfs_dynbuf out;        /* SINK_BUFFER body */
    struct gfs_dynbuf errbody;    /* body of a non-2xx answer */
    uint64_t pos;             /* SINK_RANGE: bytes of body seen */
    size_t got;               /* SINK_RANGE: bytes stored into dst */
    int too_big, range_done, range_bad, oom;
    int etag_not_md5;         /* SSE-KMS / SSE-C: S3's ETag is not the MD5 */
    CURLcode cc;              /* transport result of the last attempt */
    struct gfs_s3_error s3err;
    int have_s3err;
    int attempts;             /* attempts made */
    int maybe_resent;         /* libcurl may have sent it twice itself (see attempt()) */
    char hdr_region[40];      /* x-amz-bucket-region of the answer */
    char crc_echo[16];        /* x-amz-checksum-crc32c of the answer */
    int region_switched;      /* this call made the store learn its region */
    int renewed;              /* this call had its expired keys replaced */
    int no_creds;             /* no valid credentials to sign with (why says) */
    char akid[GFS_CREDS_AKID_MAX + 1]; /* the access key id of the last attempt */

    /* final explanation of a failure, safe to log (no secrets) */
    char why[768];
};

static void call_reset_response(struct s3_call *c)
{
    c->status = 0;
    c->etag[0] = '\0';
    c->have_cl = c->have_cr = 0;
    c->content_length = c->cr_start = c->cr_end = c->cr_total = 0;
    c->request_id[0] = '\0';
    c->out.len = 0;
    c->errbody.len = 0;
    c->pos = 0;
    c->got = 0;
    c->too_big = c->range_done = c->range_bad = c->oom = 0;
    c->etag_not_md5 = 0;
    c->cc = CURLE_OK;
    memset(&c->s3err, 0, sizeof(c->s3err));
    c->have_s3err = 0;
    c->why[0] = '\0';
    c->hdr_region[0] = '\0';
    c->crc_echo[0] = '\0';
    c->no_creds = 0;
}

static void call_free(struct s3_call *c)
{
    free(c->out.p);
    free(c->errbody.p);
    c->out = (struct gfs_dynbuf){0};
    c->errbody = (struct gfs_dynbuf){0};
}

/* "bytes a-b/total" (total may be '*'). */
static int parse_content_range(const char *v, size_t n, struct s3_call *c)
{
    if (gfs_parse_content_range(v, n, &c->cr_start, &c->cr_end, &c->cr_total) < 0)
        return -1;
    if (c->cr_end < c->cr_start)
        return -1;
    return 0;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct s3_call *c = arg;
    size_t n = size * nitems, len = n;
    while (len && (data[len - 1] == '\r' || data[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue, say): forget the previous headers */
        c->etag[0] = '\0';
        c->have_cl = c->have_cr = 0;
        c->etag_not_md5 = 0;
        c->request_id[0] = '\0';
        c->hdr_region[0] = '\0';
        c->crc_echo[0] = '\0';
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
        if (vl < sizeof(c->etag)) {
            memcpy(c->etag, v, vl);
            c->etag[vl] = '\0';
        } else {
            c->etag[0] = '\0';
        }
    } else if (nl == 14 && strncasecmp(data, "Content-Length", 14) == 0) {
        c->have_cl = gfs_parse_u64_str(v, vl, &c->content_length) == 0;
    } else if (nl == 13 && strncasecmp(data, "Content-Range", 13) == 0) {
        c->have_cr = parse_content_range(v, vl, c) == 0;
    } else if (nl == 28 && strncasecmp(data, "x-amz-server-side-encryption", 28) == 0) {
        c->etag_not_md5 = vl >= 7 && strncmp(v, "aws:kms", 7) == 0;
    } else if (nl == 47 &&
               strncasecmp(data, "x-amz-server-side-encryption-customer-algorithm", 47) == 0) {
        c->etag_not_md5 = 1;
    } else if (nl == 19 && strncasecmp(data, "x-amz-bucket-region", 19) == 0) {
        /* kept only when it looks like a region: the client acts on it */
        int ok = vl > 0 && vl <= 32;
        for (size_t i = 0; ok && i < vl; i++)
            ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-';
        if (ok) {
            memcpy(c->hdr_region, v, vl);
            c->hdr_region[vl] = '\0';
        }
    } else if (nl == 21 && strncasecmp(data, "x-amz-checksum-crc32c", 21) == 0) {
        size_t k = vl < sizeof(c->crc_echo) - 1 ? vl : sizeof(c->crc_echo) - 1;
        for (size_t i = 0; i < k; i++)
            c->crc_echo[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
        c->crc_echo[k] = '\0';
    } else if (nl == 16 && strncasecmp(data, "x-amz-request-id", 16) == 0) {
        size_t k = vl < sizeof(c->request_id) - 1 ? vl : sizeof(c->request_id) - 1;
        for (size_t i = 0; i < k; i++)
            c->request_id[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
        c->request_id[k] = '\0';
    }
    return n;
}

/* Returning less than n aborts the transfer (CURLE_WRITE_ERROR); the flags
 * say why, so the caller can tell a deliberate stop from a failure. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *c = arg;
    size_t n = size * nmemb;
    if (c->status < 200 || c->status > 299) {
        /* error answer: keep the start of it for the XML error parser */
        size_t room = ERR_BODY_MAX > c->errbody.len ? ERR_BODY_MAX - c->errbody.len : 0;
        size_t k = n < room ? n : room;
        if (k && gfs_dyn_add(&c->errbody, data, k) != 0) {
            c->oom = 1;
            return 0;
        }
        return n;
    }
    if (c->sink == SINK_DISCARD)
        return n; /* PUT/DELETE answers: nothing we need */
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
            c->range_bad = 1; /* more than we asked for */
            return 0;
        }
        memcpy(c->dst + c->got, data, n);
        c->got += n;
        return n;
    }
    /* 200: the server ignored the Range and sends the whole object; keep the
     * part we asked for and stop once we have it. */
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

static int key_ok(const struct s3_store *st, const char *key, int allow_empty)
{
    if (!key)
        return allow_empty;
    size_t n = strlen(key);
    if ((!allow_empty && n == 0) || key[0] == '/' || strlen(st->prefix) + n > GFS_S3_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return 0;
    return xmlCheckUTF8((const xmlChar *)key) != 0;
}

static const struct s3_target *target_of(const struct s3_store *st)
{
    return atomic_load_explicit(&st->target, memory_order_acquire);
}

/* Build URL and signing path of c for target t. */
static int build_target(const struct s3_store *st, const struct s3_target *t,
                        const struct s3_call *c, char **url, char **path)
{
    *url = *path = NULL;
    int rc;
    if (c->key)
        rc = asprintf(path, "%s/%s%s", t->path_base, st->prefix, c->key);
    else
        rc = asprintf(path, "%s", *t->path_base ? t->path_base : "/");
    if (rc < 0) {
        *path = NULL;
        return -ENOMEM;
    }
    CLEANUP_FREE char *epath = gfs_sigv4_uri_encode(*path, strlen(*path), 1);
    CLEANUP_FREE char *query = NULL;
    if (!epath || gfs_sigv4_canonical_query(c->query, c->nquery, &query) != 0) {
        free(*path);
        *path = NULL;
        return -ENOMEM;
    }
    rc = asprintf(url, "%s%s%s%s", t->origin, epath, *query ? "?" : "", query);
    if (rc < 0) {
        *url = NULL;
        free(*path);
        *path = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int etag_is(const char *etag, const char *md5hex)
{
    return strlen(etag) == 32 && strncasecmp(etag, md5hex, 32) == 0;
}

/* ATT_AGAIN: send it again at once, without counting a retry (the store
 * named its region, or refused expired keys: both at most once a call). */
enum attempt_result { ATT_DONE, ATT_RETRY, ATT_FAIL, ATT_AGAIN };

static int switch_region(struct s3_store *st, const struct s3_target *t, const char *region,
                         const char *why);

static void keys_putp(struct gfs_s3_keys **k) { gfs_s3_keys_put(*k); }

/* After an answer that is not a success: does it name the bucket's region
 * (301 PermanentRedirect or 307 with x-amz-bucket-region, 400
 * AuthorizationHeaderMalformed with <Region>), and is it another one? */
static const char *region_hint(const struct s3_call *c, const struct s3_target *t)
{
    const char *code = c->have_s3err ? c->s3err.code : "";
    const char *r = c->hdr_region[0] ? c->hdr_region : c->have_s3err ? c->s3err.region : "";
    if (!*r || strcmp(r, t->region) == 0)
        return NULL;
    if (c->status == 301 || c->status == 307 ||
        (c->status == 400 && strcmp(code, "AuthorizationHeaderMalformed") == 0))
        return r;
    return NULL;
}

/* One attempt: sign, send, receive. On ATT_FAIL, *err holds the errno. */
static enum attempt_result attempt(struct s3_store *st, const struct s3_target *t,
                                   struct s3_call *c, CURL *h, const char *url,
                                   const char *path, const char *payload_hash, int *err)
{
    char amz_date[17];
    if (gfs_sigv4_amz_date(time(NULL), amz_date) != 0) {
        *err = -EIO;
        return ATT_FAIL;
    }
    /* the keys of this moment, held until the answer is judged */
    __attribute__((cleanup(keys_putp))) struct gfs_s3_keys *keys = NULL;
    char cwhy[700];
    int rc = gfs_s3_creds_get(st->creds, &keys, cwhy, sizeof(cwhy));
    if (rc != 0) {
        snprintf(c->why, sizeof(c->why), "%s", cwhy);
        c->no_creds = 1;
        *err = rc;
        return ATT_FAIL;
    }
    snprintf(c->akid, sizeof(c->akid), "%s", keys->akid);
    /* The signed header set; the same array is sent, so what is signed is
     * what goes on the wire. */
    struct gfs_sigv4_kv hdr[4 + MAX_XHDR];
    size_t nh = 0;
    hdr[nh++] = (struct gfs_sigv4_kv){"Host", t->host};
    hdr[nh++] = (struct gfs_sigv4_kv){"x-amz-content-sha256", payload_hash};
    hdr[nh++] = (struct gfs_sigv4_kv){"x-amz-date", amz_date};
    if (keys->token)
        hdr[nh++] = (struct gfs_sigv4_kv){"x-amz-security-token", keys->token};
    for (size_t i = 0; i < c->nxhdr; i++)
        hdr[nh++] = c->xhdr[i];

    struct gfs_sigv4_request r = {
        .method = c->method, .path = path, .query = c->query, .nquery = c->nquery,
        .headers = hdr, .nheaders = nh, .payload_hash = payload_hash,
    };
    struct gfs_sigv4_signer signer = {
        .access_key_id = keys->akid, .secret_access_key = keys->secret, .region = t->region,
        .service = "s3",
    };
    CLEANUP_FREE char *authz = NULL;
    rc = gfs_sigv4_authorization(&signer, &r, amz_date, &authz);
    if (rc != 0) {
        snprintf(c->why, sizeof(c->why), "cannot sign the request (%s)", strerror(-rc));
        *err = rc;
        return ATT_FAIL;
    }

    struct curl_slist *list = NULL, *tmp;
    int oom = 0;
    for (size_t i = 0; i < nh && !oom; i++) {
        CLEANUP_FREE char *line = NULL;
        if (asprintf(&line, "%s: %s", hdr[i].name, hdr[i].value ? hdr[i].value : "") < 0) {
            line = NULL;
            oom = 1;
            break;
        }
        if (!(tmp = curl_slist_append(list, line)))
            oom = 1;
        else
            list = tmp;
    }
    if (!oom && gfs_http_no_expect(&list) < 0)
        oom = 1;
    if (!oom) {
        CLEANUP_FREE char *line = NULL;
        if (asprintf(&line, "Authorization: %s", authz) < 0) {
            line = NULL;
            oom = 1;
        } else if (!(tmp = curl_slist_append(list, line))) {
            oom = 1;
        } else {
            list = tmp;
        }
    }
    if (oom) {
        mbedtls_platform_zeroize(authz, strlen(authz));
        curl_slist_free_all(list);
        *err = -ENOMEM;
        return ATT_FAIL;
    }

    struct gfs_http_xfer x = {.url = url, .headers = list, .share = st->pool.share,
                              .timeout_ms = st->timeout_ms, .tls_verify = st->tls_verify,
                              .ca_bundle = st->ca_bundle, .on_header = on_header,
                              .on_body = on_body, .arg = c, .method = c->method,
                              .head = c->head, .body = c->body, .body_len = c->body_len};
    x.has_body = c->body || strcmp(c->method, "PUT") == 0 || strcmp(c->method, "POST") == 0;
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
        /* strip the newline some curl messages end with */
        c->why[strcspn(c->why, "\r\n")] = '\0';
        *err = -EIO;
        return gfs_curl_retryable(cc) ? ATT_RETRY : ATT_FAIL;
    }

    if (c->status < 200 || c->status > 299) {
        if (c->errbody.len)
            c->have_s3err = gfs_s3_xml_parse_error(c->errbody.p, c->errbody.len, &c->s3err,
                                                   st->base.log) == 0;
        const char *code = c->have_s3err ? c->s3err.code : "";
        snprintf(c->why, sizeof(c->why), "HTTP %ld%s%s%s%s%s%s", c->status, *code ? " " : "",
                 code, c->have_s3err && *c->s3err.message ? ": " : "",
                 c->have_s3err ? c->s3err.message : "",
                 (c->have_s3err && *c->s3err.request_id) || *c->request_id ? " (request id " : "",
                 c->have_s3err && *c->s3err.request_id ? c->s3err.request_id : c->request_id);
        if ((c->have_s3err && *c->s3err.request_id) || *c->request_id) {
            size_t l = strlen(c->why);
            if (l + 1 < sizeof(c->why)) {
                c->why[l] = ')';
                c->why[l + 1] = '\0';
            }
        }
        const char *region = region_hint(c, t);
        if (region && !c->region_switched) {
            c->region_switched = 1;
            if (switch_region(st, t, region, c->why) == 0)
                return ATT_AGAIN;
        }
        if ((c->status == 400 || c->status == 403) && !c->renewed &&
            (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "TokenRefreshRequired") == 0)) {
            /* our clock or the issuer's: the store has the last word */
            c->renewed = 1;
            if (gfs_s3_creds_expired(st->creds, keys))
                return ATT_AGAIN;
        }
        if ((c->status >= 500 && c->status != 501) || c->status == 429 ||
            (c->status == 400 && strcmp(code, "RequestTimeout") == 0) ||
            (c->status == 409 && (strcmp(code, "OperationAborted") == 0 ||
                                  strcmp(code, "ConditionalRequestConflict") == 0)))
            return ATT_RETRY;
        return ATT_DONE; /* a final answer the op interprets */
    }
    /* S3 already checked the body against Content-MD5; the ETag check catches
     * a store that kept something else. SSE-KMS and SSE-C ETags are not MD5s. */
    if (c->want_etag && !c->etag_not_md5 && !etag_is(c->etag, c->want_etag)) {
        snprintf(c->why, sizeof(c->why), "stored ETag \"%.40s\" is not the MD5 %s of the body",
                 c->etag, c->want_etag);
        return ATT_RETRY;
    }
    /* a store that checked our CRC-32C says which it computed: the same */
    if (c->crc_sent[0] && c->crc_echo[0] && strcmp(c->crc_sent, c->crc_echo) != 0) {
        snprintf(c->why, sizeof(c->why), "the store computed CRC-32C %s of the body, not %s",
                 c->crc_echo, c->crc_sent);
        return ATT_RETRY;
    }
    return ATT_DONE;
}

/* Run c with retries. 0 when an HTTP answer came (c->status tells which),
 * else a negative errno with c->why explaining. */
static int s3_exec(struct s3_store *st, struct s3_call *c, const char *opname)
{
    CLEANUP_FREE char *url = NULL;
    CLEANUP_FREE char *path = NULL;
    const struct s3_target *t = target_of(st);
    int rc = build_target(st, t, c, &url, &path);
    if (rc != 0)
        return rc;
    char payload_hash[GFS_SHA256_HEX_LEN + 1];
    if ((rc = gfs_sha256_hex(c->body ? c->body : "", c->body_len, payload_hash)) != 0)
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
        enum attempt_result ar = attempt(st, t, c, h, url, path, payload_hash, &err);
        if (ar == ATT_AGAIN) {
            /* a new region (target) or new keys: at once, not a retry */
            free(url);
            free(path);
            url = path = NULL;
            t = target_of(st);
            if ((rc = build_target(st, t, c, &url, &path)) != 0)
                break;
            i--;
            continue;
        }
        if (ar == ATT_DONE) {
            rc = 0;
            break;
        }
        if (ar == ATT_FAIL) {
            rc = err ? err : -EIO;
            break;
        }
        if (c->final_500 && c->status == 500) {
            rc = 0; /* the caller looks at the store before trying again */
            break;
        }
        if (i >= budget) {
            rc = -EIO;
            break;
        }
        long ms = gfs_backoff_ms(&rng, i);
        gfs_stat_add(&st->base.stats.retries, 1);
        gfs_warn(st->base.log, "s3: %s %s: %s; retry %d/%d in %ld ms", opname,
                 c->key ? c->key : st->desc, c->why, i + 1, budget, ms);
        gfs_sleep_ms(ms);
    }
    gfs_curl_pool_put(&st->pool, h);
    return rc;
}

/* Map the final answer of a call that is not a success to an errno, and log. */
/* What to do about a transport failure that is no network trouble. */
static const char *tls_hint(CURLcode cc)
{
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
        return " (the endpoint's certificate is not trusted here, or does not name its host: "
               "storage.ca_bundle, or AWS_CA_BUNDLE, names the CA file of a private CA)";
    case CURLE_SSL_CONNECT_ERROR:
        return " (TLS handshake failed: is the endpoint https?)";
    default:
        return "";
    }
}

static int s3_fail(struct s3_store *st, struct s3_call *c, const char *opname, int rc)
{
    const char *what = c->key ? c->key : st->desc;
    const struct s3_target *t = target_of(st);
    if (rc == 0) {
        const char *code = c->have_s3err ? c->s3err.code : "";
        if (c->status == 403) {
            gfs_err(st->base.log, "s3: %s %s: access denied by %s: %s%s", opname, what, st->desc,
                    c->why,
                    strcmp(code, "RequestTimeTooSkewed") == 0
                        ? " (check the clock of this node)"
                        : " (check the credentials: see \"Credentials\" in glidefs.yaml(5))");
            rc = -EACCES;
        } else if (c->status == 404 && strcmp(code, "NoSuchBucket") == 0) {
            gfs_err(st->base.log, "s3: %s %s: bucket '%s' does not exist at %s: %s", opname,
                    what, st->bucket, t->origin, c->why);
            rc = -ENOENT;
        } else if (c->status == 301 || c->status == 307) {
            gfs_err(st->base.log, "s3: %s %s on %s: %s%s%s: the bucket is not at %s (region %s): "
                    "set storage.region to the bucket's region%s", opname, what, st->desc,
                    c->why, c->s3err.endpoint[0] ? "; it names endpoint " : "",
                    c->s3err.endpoint, t->origin, t->region,
                    st->ep_host ? ", and storage.endpoint to that region's (or leave it unset)"
                                : "");
            rc = -EIO;
        } else {
            gfs_err(st->base.log, "s3: %s %s on %s: %s", opname, what, st->desc, c->why);
            rc = -EIO;
        }
    } else if (c->no_creds && rc != -ENOMEM) {
        gfs_err(st->base.log, "s3: %s %s on %s: %s", opname, what, st->desc, c->why);
        rc = -EACCES;
    } else if (rc != -EFBIG) {
        gfs_err(st->base.log, "s3: %s %s on %s failed after %d attempt(s): %s%s", opname, what,
                st->desc, c->attempts, c->why[0] ? c->why : strerror(-rc), tls_hint(c->cc));
        if (rc != -ENOMEM && rc != -EINVAL)
            rc = -EIO;
    }
    gfs_stat_add(&st->base.stats.errors, 1);
    return rc;
}

static void call_init(struct s3_call *c, const char *method, const char *key)
{
    memset(c, 0, sizeof(*c));
    c->method = method;
    c->key = key;
    c->retries = -1;
    c->sink = SINK_DISCARD;
}

static int status_ok(const struct s3_call *c) { return c->status >= 200 && c->status <= 299; }

static const char *code_of(const struct s3_call *c) { return c->have_s3err ? c->s3err.code : ""; }

/* ---- ops ----------------------------------------------------------------- */

static int s3_head(struct gfs_objstore *gst, const char *key, struct gfs_obj_info *info)
{
    struct s3_store *st = S3(gst);
    if (!key_ok(st, key, 0))
        return -EINVAL;
    struct s3_call c;
    call_init(&c, "HEAD", key);
    c.head = 1;
    int rc = s3_exec(st, &c, "HEAD");
    gfs_stat_add(&st->base.stats.heads, 1);
    if (rc == 0 && c.status == 404) {
        /* HEAD answers carry no body: a missing bucket looks like a missing key */
        call_free(&c);
        return -ENOENT;
    }
    if (rc == 0 && status_ok(&c) && !c.have_cl) {
        snprintf(c.why, sizeof(c.why), "HEAD answer without Content-Length");
        c.status = 502;
    }
    if (rc != 0 || !status_ok(&c)) {
        rc = s3_fail(st, &c, "HEAD", rc);
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

/* After a conditional PUT answered 412: did an attempt of ours store the
 * object (its answer was lost, maybe in a proxy that re-sent it)? Then the
 * object's ETag is the MD5 of our body. 1 yes, 0 no, or the HEAD's error
 * when it cannot tell (a refusal is not reported as a lost race then). */
static int our_put_landed(struct s3_store *st, const char *key, const char *md5hex)
{
    struct gfs_obj_info info;
    int r = s3_head(&st->base, key, &info);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? r : etag_is(info.etag, md5hex);
}

/* Between two conditional PUTs that s3_exec did not retry itself. */
static void put_pause(struct s3_store *st, const char *key, int round, const char *why)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t seq = atomic_fetch_add_explicit(&st->seq, 1, memory_order_relaxed) + 1;
    uint64_t rng = (seq * 0x9E3779B97F4A7C15ULL) ^
                   (uint64_t)now.tv_nsec;
    if (!rng)
        rng = 1;
    long ms = gfs_backoff_ms(&rng, round);
    gfs_stat_add(&st->base.stats.retries, 1);
    gfs_warn(st->base.log, "s3: PUT %s: %s; retry %d/%d in %ld ms", key, why, round + 1,
             st->max_retries, ms);
    gfs_sleep_ms(ms);
}

int gfs_s3_crc32c_b64(const void *buf, size_t len, char out[16])
{
    uint32_t crc = gfs_crc32c(0, buf ? buf : "", len);
    uint8_t be[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                     (uint8_t)crc};
    return gfs_base64(be, sizeof(be), out, 16);
}

/* Does this refusal of a PUT that carried x-amz-checksum-crc32c look like
 * a store that does not know the header (rather than a bad request)? */
static int crc_refusal(const struct s3_call *c)
{
    const char *code = code_of(c);
    if (!c->crc_sent[0] || (c->status != 400 && c->status != 501))
        return 0;
    return c->status == 501 || !*code || strcmp(code, "InvalidArgument") == 0 ||
           strcmp(code, "InvalidRequest") == 0 || strcmp(code, "NotImplemented") == 0 ||
           strcmp(code, "InvalidHeader") == 0 || strcmp(code, "UnsupportedHeader") == 0;
}

/* What a successful PUT showed about the store's checksums (logged once). */
static void crc_learn(struct s3_store *st, const struct s3_call *c)
{
    if (!c->crc_sent[0])
        return;
    int seen = c->crc_echo[0] ? GFS_S3_CRC_VERIFIED : GFS_S3_CRC_IGNORED;
    int old = atomic_exchange_explicit(&st->crc_state, seen, memory_order_relaxed);
    if (old == seen || old == GFS_S3_CRC_VERIFIED)
        return;
    if (seen == GFS_S3_CRC_VERIFIED)
        gfs_info(st->base.log, "s3: %s checks the CRC-32C of each PUT (x-amz-checksum-crc32c)",
                 st->desc);
    else
        gfs_info(st->base.log, "s3: %s accepts x-amz-checksum-crc32c without answering it: it "
                 "may not check it (Ceph RGW 16 does not); Content-MD5 still guards each PUT",
                 st->desc);
}

/* One PUT attempt (with s3_exec's retries). If-Match goes out quoted (RFC
 * 7232, what AWS documents) unless bare. */
static int put_call(struct s3_store *st, struct s3_call *c, const char *key, const void *buf,
                    size_t len, unsigned flags, const char *if_match_etag, int bare,
                    const char *md5hex, const char *md5b64, const char *crc, char quoted[80])
{
    call_init(c, "PUT", key);
    c->body = buf;
    c->body_len = len;
    c->want_etag = md5hex;
    c->xhdr[c->nxhdr++] = (struct gfs_sigv4_kv){"Content-MD5", md5b64};
    c->xhdr[c->nxhdr++] = (struct gfs_sigv4_kv){"Content-Type", "application/octet-stream"};
    if (crc) {
        /* AWS checks it and stores it with the object (a whole-object CRC-32C) */
        snprintf(c->crc_sent, sizeof(c->crc_sent), "%s", crc);
        c->xhdr[c->nxhdr++] = (struct gfs_sigv4_kv){"x-amz-checksum-crc32c", c->crc_sent};
    }
    if (flags & GFS_PUT_IF_NONE_MATCH) {
        c->xhdr[c->nxhdr++] = (struct gfs_sigv4_kv){"If-None-Match", "*"};
    } else if (if_match_etag) {
        snprintf(quoted, 80, bare ? "%s" : "\"%s\"", if_match_etag);
        c->xhdr[c->nxhdr++] = (struct gfs_sigv4_kv){"If-Match", quoted};
    }
    c->final_500 = (flags & GFS_PUT_IF_NONE_MATCH) || if_match_etag;
    int rc = s3_exec(st, c, "PUT");
    gfs_stat_add(&st->base.stats.puts, 1);
    return rc;
}

/* PUT with Content-MD5 (S3 checks the body) and x-amz-content-sha256 (signed);
 * the answer's ETag must be the body's MD5. Conditional PUTs: If-None-Match: *
 * answered 412 is -EEXIST; If-Match answered 412, or 404 NoSuchKey (nothing
 * to match), is -ECANCELED. What real stores do besides:
 *  - Ceph RGW 16 compares If-Match with the stored ETag without stripping
 *    its quotes, so the RFC form always fails: after a 412 the object's ETag
 *    is read, and if it is the one we named, the PUT goes again with the bare
 *    ETag; once that works, this store gets bare ETags from then on.
 *  - RGW answers the loser of two racing conditional PUTs 500, not 412: a
 *    500 on a conditional PUT is not retried blindly; the object is read, and
 *    if the condition no longer holds that is the lost race (-EEXIST,
 *    -ECANCELED; or success, when the object is ours). */
static int s3_put_etag(struct gfs_objstore *gst, const char *key, const void *buf, size_t len,
                       unsigned flags, const char *if_match_etag, char etag_out[72])
{
    struct s3_store *st = S3(gst);
    if (!key_ok(st, key, 0) || (!buf && len) || (flags & ~GFS_PUT_IF_NONE_MATCH) ||
        ((flags & GFS_PUT_IF_NONE_MATCH) && if_match_etag))
        return -EINVAL;
    if (if_match_etag) {
        size_t el = strlen(if_match_etag);
        if (el == 0 || el > 70 || strpbrk(if_match_etag, "\"\r\n"))
            return -EINVAL;
    }

    uint8_t md5[GFS_MD5_LEN];
    char md5hex[2 * GFS_MD5_LEN + 1], md5b64[32];
    int rc = gfs_md5(buf ? buf : "", len, md5);
    if (rc == 0)
        rc = gfs_base64(md5, sizeof(md5), md5b64, sizeof(md5b64));
    if (rc != 0)
        return rc;
    gfs_hex_encode(md5, sizeof(md5), md5hex);

    char crc[16] = "";
    int send_crc = st->crc_mode == CRC_ON ||
                   (st->crc_mode == CRC_AUTO &&
                    !atomic_load_explicit(&st->crc_refused, memory_order_relaxed));
    if (send_crc && (rc = gfs_s3_crc32c_b64(buf, len, crc)) != 0)
        return rc;
    int crc_dropped = 0; /* auto: the store refused the header; this PUT goes without */

    char quoted[80];
    int try_bare = 0; /* this round tries the bare If-Match (not yet known to work) */
    for (int round = 0;; round++) {
        int bare = try_bare || atomic_load_explicit(&st->if_match_bare, memory_order_relaxed);
        struct s3_call c;
        rc = put_call(st, &c, key, buf, len, flags, if_match_etag, bare, md5hex, md5b64,
                      send_crc && !crc_dropped ? crc : NULL, quoted);
        if (rc == 0 && st->crc_mode == CRC_AUTO && !crc_dropped && crc_refusal(&c)) {
            /* maybe the header it does not know: once more without it */
            crc_dropped = 1;
            gfs_info(st->base.log, "s3: PUT %s: %s; sending it again without "
                     "x-amz-checksum-crc32c", key, c.why);
            call_free(&c);
            round--;
            continue;
        }
        if (rc == 0 && status_ok(&c) && crc_dropped &&
            !atomic_exchange_explicit(&st->crc_refused, 1, memory_order_relaxed)) {
            atomic_store_explicit(&st->crc_state, GFS_S3_CRC_REFUSED, memory_order_relaxed);
            gfs_warn(st->base.log, "s3: %s refuses x-amz-checksum-crc32c on PUT: PUTs go "
                     "without it from now on (Content-MD5 still guards each; "
                     "storage.checksum: off says so up front)", st->desc);
        }
        if (rc == 0 && status_ok(&c)) {
            gfs_stat_add(&st->base.stats.put_bytes, len);
            if (etag_out)
                snprintf(etag_out, 72, "%s", c.etag[0] ? c.etag : md5hex);
            crc_learn(st, &c);
            call_free(&c);
            if (try_bare) {
                atomic_store_explicit(&st->if_match_bare, 1, memory_order_relaxed);
                gfs_warn(st->base.log, "s3: %s compares If-Match with the stored ETag without "
                         "its quotes (as Ceph RGW does): sending the bare ETag from now on",
                         st->desc);
            }
            return 0;
        }
        if (rc == 0 && c.final_500 && c.status == 500) {
            /* lost a race (RGW), or a plain failure: what is there now? */
            struct gfs_obj_info info;
            int hr = s3_head(&st->base, key, &info);
            if (hr == 0 && etag_is(info.etag, md5hex)) {
                call_free(&c);
                gfs_stat_add(&st->base.stats.put_bytes, len);
                if (etag_out)
                    snprintf(etag_out, 72, "%s", md5hex);
                return 0; /* ours landed */
            }
            if (hr < 0 && hr != -ENOENT) {
                call_free(&c);
                return hr;
            }
            if ((flags & GFS_PUT_IF_NONE_MATCH) && hr == 0) {
                call_free(&c);
                return -EEXIST;
            }
            if (if_match_etag && (hr == -ENOENT || strcmp(info.etag, if_match_etag) != 0)) {
                call_free(&c);
                return -ECANCELED;
            }
            if (round >= st->max_retries) {
                rc = s3_fail(st, &c, "PUT", 0);
                call_free(&c);
                return rc;
            }
            put_pause(st, key, round, c.why);
            call_free(&c);
            continue; /* the condition still holds: the 500 was a failure */
        }
        /* A refused condition: did our PUT land after all (an earlier attempt
         * whose answer was lost)? Then the object holds exactly our bytes.
         * If-None-Match: only when it may have been sent twice (retried by
         * us, or by libcurl on a new connection: a creator may write the
         * same bytes twice and must hear that the second found the first);
         * If-Match: always (the object is read anyway, and a proxy between
         * us and the store may have sent it twice). */
        if (rc == 0 && (flags & GFS_PUT_IF_NONE_MATCH) && c.status == 412) {
            int resent = c.attempts > 1 || c.maybe_resent;
            call_free(&c);
            int ours = resent ? our_put_landed(st, key, md5hex) : 0;
            if (ours < 0)
                return ours;
            if (ours) {
                if (etag_out)
                    snprintf(etag_out, 72, "%s", md5hex);
                return 0;
            }
            return -EEXIST;
        }
        if (rc == 0 && if_match_etag &&
            (c.status == 412 || (c.status == 404 && strcmp(code_of(&c), "NoSuchKey") == 0))) {
            int status = (int)c.status;
            call_free(&c);
            struct gfs_obj_info info;
            int hr = s3_head(&st->base, key, &info);
            if (hr == 0 && etag_is(info.etag, md5hex)) {
                if (etag_out)
                    snprintf(etag_out, 72, "%s", md5hex);
                return 0; /* ours landed; its answer was lost */
            }
            if (status == 412 && !bare && hr == 0 && strcmp(info.etag, if_match_etag) == 0) {
                try_bare = 1; /* refused although it matches: try the bare ETag */
                continue;
            }
            if (hr < 0 && hr != -ENOENT)
                return hr; /* cannot tell whether ours landed */
            return -ECANCELED;
        }
        rc = s3_fail(st, &c, "PUT", rc);
        call_free(&c);
        return rc;
    }
}

int gfs_s3_if_match_bare(const struct gfs_objstore *gst)
{
    if (!gfs_objstore_is_s3(gst))
        return 0;
    const struct s3_store *st = (const struct s3_store *)gst;
    return atomic_load_explicit(&st->if_match_bare, memory_order_relaxed);
}

static int s3_put(struct gfs_objstore *gst, const char *key, const void *buf, size_t len,
                  unsigned flags, const char *if_match_etag)
{
    return s3_put_etag(gst, key, buf, len, flags, if_match_etag, NULL);
}

static int s3_get_range(struct gfs_objstore *gst, const char *key, uint64_t offset, size_t len,
                        void *buf, size_t *got)
{
    struct s3_store *st = S3(gst);
    if (got)
        *got = 0;
    if (!key_ok(st, key, 0) || len == 0 || !buf || !got || offset > UINT64_MAX - len)
        return -EINVAL;
    char range[64];
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
    struct s3_call c;
    call_init(&c, "GET", key);
    c.sink = SINK_RANGE;
    c.dst = buf;
    c.dst_len = len;
    c.range_off = offset;
    c.xhdr[c.nxhdr++] = (struct gfs_sigv4_kv){"Range", range};
    int rc = s3_exec(st, &c, "GET");
    gfs_stat_add(&st->base.stats.gets, 1);
    if (rc == 0 && c.status == 416) { /* offset at or past the end */
        call_free(&c);
        return 0;
    }
    if (rc == 0 && c.status == 404 && strcmp(code_of(&c), "NoSuchBucket") != 0) {
        call_free(&c);
        return -ENOENT;
    }
    struct gfs_range_answer a = {c.status, c.have_cr, c.have_cl, c.cr_start, c.cr_end,
                                 c.cr_total, c.content_length, c.pos, c.got};
    if (rc == 0 && gfs_range_answer_check(&a, offset, len, range, c.why, sizeof(c.why)) < 0)
        c.status = 502; /* not the range asked for */
    if (rc != 0 || (c.status != 200 && c.status != 206)) {
        rc = s3_fail(st, &c, "GET", rc);
        call_free(&c);
        return rc;
    }
    *got = c.got;
    gfs_stat_add(&st->base.stats.get_bytes, c.got);
    call_free(&c);
    return 0;
}

static int s3_get(struct gfs_objstore *gst, const char *key, size_t max_len, void **out,
                  size_t *outlen, struct gfs_obj_info *info)
{
    struct s3_store *st = S3(gst);
    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!key_ok(st, key, 0) || !out || !outlen)
        return -EINVAL;
    struct s3_call c;
    call_init(&c, "GET", key);
    c.sink = SINK_BUFFER;
    c.max_body = max_len;
    int rc = s3_exec(st, &c, "GET");
    gfs_stat_add(&st->base.stats.gets, 1);
    if (rc == -EFBIG) {
        call_free(&c);
        return -EFBIG;
    }
    if (rc == 0 && c.status == 404 && strcmp(code_of(&c), "NoSuchBucket") != 0) {
        call_free(&c);
        return -ENOENT;
    }
    if (rc != 0 || c.status != 200) {
        rc = s3_fail(st, &c, "GET", rc);
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

static int s3_del(struct gfs_objstore *gst, const char *key)
{
    struct s3_store *st = S3(gst);
    if (!key_ok(st, key, 0))
        return -EINVAL;
    struct s3_call c;
    call_init(&c, "DELETE", key);
    int rc = s3_exec(st, &c, "DELETE");
    gfs_stat_add(&st->base.stats.deletes, 1);
    gfs_stat_add(&st->base.stats.delete_requests, 1);
    if (rc == 0 && (status_ok(&c) ||
                    (c.status == 404 && strcmp(code_of(&c), "NoSuchBucket") != 0))) {
        call_free(&c);
        return 0; /* deleting a missing key is success, as on S3 */
    }
    rc = s3_fail(st, &c, "DELETE", rc);
    call_free(&c);
    return rc;
}

/* One ListObjectsV2 page. Keys and tokens are full object keys. */
static int list_page(struct s3_store *st, struct s3_call *c, const char *full_prefix,
                     const char *start_after, const char *token, const char *max_keys,
                     int retries, struct gfs_s3_list_page *page)
{
    call_init(c, "GET", NULL);
    c->retries = retries;
    c->sink = SINK_BUFFER;
    c->max_body = GFS_S3_XML_MAX;
    c->query[c->nquery++] = (struct gfs_sigv4_kv){"list-type", "2"};
    c->query[c->nquery++] = (struct gfs_sigv4_kv){"max-keys", max_keys};
    c->query[c->nquery++] = (struct gfs_sigv4_kv){"prefix", full_prefix};
    if (token)
        c->query[c->nquery++] = (struct gfs_sigv4_kv){"continuation-token", token};
    else if (start_after)
        c->query[c->nquery++] = (struct gfs_sigv4_kv){"start-after", start_after};
    int rc = s3_exec(st, c, "LIST");
    gfs_stat_add(&st->base.stats.lists, 1);
    if (rc == -EFBIG) {
        snprintf(c->why, sizeof(c->why), "listing page larger than %u bytes", GFS_S3_XML_MAX);
        rc = -EIO;
    }
    if (rc != 0 || c->status != 200)
        return rc;
    rc = gfs_s3_xml_parse_list(c->out.p, c->out.len, page, st->base.log);
    if (rc == -EBADMSG) {
        snprintf(c->why, sizeof(c->why), "malformed ListBucketResult (%zu bytes)", c->out.len);
        c->status = 502;
        return 0;
    }
    return rc;
}

static int s3_list(struct gfs_objstore *gst, const char *prefix, const char *start_after,
                   gfs_list_cb cb, void *arg)
{
    struct s3_store *st = S3(gst);
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
    size_t plen = strlen(st->prefix), fplen = strlen(full_prefix);
    CLEANUP_FREE char *token = NULL;
    CLEANUP_FREE char *last = NULL; /* last key delivered: order check */
    for (;;) {
        struct s3_call c;
        struct gfs_s3_list_page page = {0};
        int rc = list_page(st, &c, full_prefix, full_after, token, "1000", -1, &page);
        if (rc != 0 || c.status != 200) {
            rc = s3_fail(st, &c, "LIST", rc);
            call_free(&c);
            return rc;
        }
        for (size_t i = 0; i < page.n; i++) {
            const char *k = page.entries[i].key;
            if (strlen(k) == plen && strcmp(k, st->prefix) == 0)
                continue; /* a "folder" object named like the store prefix: not a key */
            int bad = strncmp(k, full_prefix, fplen) != 0 || strlen(k) <= plen ||
                      (last && strcmp(k, last) <= 0) ||
                      (full_after && strcmp(k, full_after) <= 0);
            if (bad) {
                snprintf(c.why, sizeof(c.why),
                         "listing returned key \"%.200s\" out of order or outside prefix", k);
                c.status = 502;
                gfs_s3_list_page_clear(&page);
                rc = s3_fail(st, &c, "LIST", 0);
                call_free(&c);
                return rc;
            }
            free(last);
            last = TAKE_PTR(page.entries[i].key);
            int r = cb(arg, last + plen, page.entries[i].size);
            if (r != 0) {
                gfs_s3_list_page_clear(&page);
                call_free(&c);
                return r;
            }
        }
        call_free(&c);
        if (!page.truncated) {
            gfs_s3_list_page_clear(&page);
            return 0;
        }
        if (token && strcmp(token, page.next_token) == 0) {
            gfs_err(st->base.log, "s3: LIST %s: the server repeated its continuation token",
                    st->desc);
            gfs_s3_list_page_clear(&page);
            gfs_stat_add(&st->base.stats.errors, 1);
            return -EIO;
        }
        free(token);
        token = TAKE_PTR(page.next_token);
        gfs_s3_list_page_clear(&page);
    }
}

static void s3_destroy(struct gfs_objstore *gst)
{
    struct s3_store *st = S3(gst);
    if (!st)
        return;
    gfs_curl_pool_destroy(&st->pool);
    pthread_mutex_destroy(&st->target_lock);
    gfs_s3_creds_free(st->creds);
    target_free(atomic_load_explicit(&st->target, memory_order_relaxed));
    free(st->bucket);
    free(st->prefix);
    free(st->ep_scheme);
    free(st->ep_host);
    free(st->ca_bundle);
    free(st->desc);
    free(st);
}

static int s3_del_many(struct gfs_objstore *gst, const char *const *keys, size_t n,
                       size_t *failed);

static const struct gfs_objstore_ops s3_ops = {
    .put = s3_put,
    .put_etag = s3_put_etag,
    .get_range = s3_get_range,
    .get = s3_get,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .destroy = s3_destroy,
    .del_many = s3_del_many,
};

int gfs_objstore_is_s3(const struct gfs_objstore *st) { return st && st->ops == &s3_ops; }

/* ---- extras -------------------------------------------------------------- */

int gfs_s3_check(struct gfs_objstore *gst, char *err, size_t errlen)
{
    if (!gfs_objstore_is_s3(gst)) {
        if (err && errlen)
            snprintf(err, errlen, "not an s3:// store");
        return -EINVAL;
    }
    struct s3_store *st = S3(gst);
    int retries = st->max_retries < CHECK_RETRIES ? st->max_retries : CHECK_RETRIES;
    struct s3_call c;
    struct gfs_s3_list_page page = {0};
    int rc = list_page(st, &c, st->prefix, NULL, NULL, "1", retries, &page);
    gfs_s3_list_page_clear(&page);
    const char *code = code_of(&c);
    const char *origin = target_of(st)->origin;
    char line[2048];
    if (rc == 0 && c.status == 200) {
        call_free(&c);
        return 0;
    }
    if (rc != 0 && c.no_creds) {
        snprintf(line, sizeof(line), "%s: %s", st->desc, c.why);
        rc = rc == -ENOMEM ? rc : -EACCES;
    } else if (rc != 0 && !gfs_curl_retryable(c.cc) && c.cc != CURLE_OK) {
        snprintf(line, sizeof(line),
                 "%s: TLS or protocol failure with the S3 endpoint %s: %s (storage.ca_bundle, "
                 "or AWS_CA_BUNDLE, names the CA file of a private CA)", st->desc, origin,
                 c.why);
        rc = -EPROTO; /* configuration: no retry mends it */
    } else if (rc != 0) {
        snprintf(line, sizeof(line), "%s: cannot reach the S3 endpoint %s: %s", st->desc,
                 origin, c.why[0] ? c.why : strerror(-rc));
        rc = -EIO;
    } else if (c.status == 403) {
        snprintf(line, sizeof(line),
                 "%s: %s refused the credentials of access key id %s (from %s): %s", st->desc,
                 origin, c.akid, gfs_s3_creds_describe(st->creds), c.why);
        rc = -EACCES;
    } else if (c.status == 404 && strcmp(code, "NoSuchBucket") == 0) {
        snprintf(line, sizeof(line), "%s: bucket '%s' does not exist at %s (%s)", st->desc,
                 st->bucket, origin, c.why);
        rc = -ENOENT;
    } else if (c.status == 301 || c.status == 307) {
        snprintf(line, sizeof(line), "%s: the bucket is not at %s (region %s): %s%s%s; set "
                 "storage.region to the bucket's region", st->desc, origin,
                 target_of(st)->region, c.why, c.s3err.endpoint[0] ? "; it names endpoint " : "",
                 c.s3err.endpoint);
        rc = -EPROTO;
    } else {
        snprintf(line, sizeof(line), "%s: unexpected answer from %s: %s", st->desc, origin,
                 c.why);
        /* a 4xx other than a timeout or throttling is about the request:
         * asking again will not change it */
        rc = c.status >= 400 && c.status < 500 && c.status != 408 && c.status != 429 ? -EPROTO
                                                                                    : -EIO;
    }
    gfs_err(st->base.log, "s3: %s", line);
    if (err && errlen)
        snprintf(err, errlen, "%s", line);
    call_free(&c);
    return rc;
}

/* A store without DeleteObjects (GCS's XML API, some gateways): 501
 * NotImplemented, or 405 / 400 with that code. */
static int batch_unsupported(const struct s3_call *c)
{
    const char *code = code_of(c);
    return c->status == 501 || c->status == 405 || strcmp(code, "NotImplemented") == 0 ||
           strcmp(code, "MethodNotAllowed") == 0;
}

/* One DeleteObjects request. 1 (nothing done) when the store lacks it. */
static int delete_chunk(struct s3_store *st, const char *const *keys, size_t n, size_t *failed)
{
    CLEANUP_FREE char **full = calloc(n, sizeof(*full));
    if (!full)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (asprintf(&full[i], "%s%s", st->prefix, keys[i]) < 0) {
            full[i] = NULL;
            rc = -ENOMEM;
        }
    CLEANUP_FREE char *body = NULL;
    size_t blen = 0;
    if (rc == 0)
        rc = gfs_s3_xml_build_delete((const char *const *)full, n, &body, &blen);
    for (size_t i = 0; i < n; i++)
        free(full[i]);
    if (rc != 0)
        return rc;

    /* S3 refuses a DeleteObjects request without Content-MD5 (or a
     * x-amz-checksum-* header): it guards the list of keys to delete. */
    uint8_t md5[GFS_MD5_LEN];
    char md5b64[32];
    if ((rc = gfs_md5(body, blen, md5)) != 0 ||
        (rc = gfs_base64(md5, sizeof(md5), md5b64, sizeof(md5b64))) != 0)
        return rc;
    struct s3_call c;
    call_init(&c, "POST", NULL);
    c.body = body;
    c.body_len = blen;
    c.sink = SINK_BUFFER;
    c.max_body = GFS_S3_XML_MAX;
    c.query[c.nquery++] = (struct gfs_sigv4_kv){"delete", ""};
    c.xhdr[c.nxhdr++] = (struct gfs_sigv4_kv){"Content-MD5", md5b64};
    c.xhdr[c.nxhdr++] = (struct gfs_sigv4_kv){"Content-Type", "application/xml"};
    rc = s3_exec(st, &c, "DELETE-BATCH");
    gfs_stat_add(&st->base.stats.delete_requests, 1);
    if (rc == 0 && batch_unsupported(&c)) {
        call_free(&c);
        return 1;
    }
    gfs_stat_add(&st->base.stats.deletes, n);
    if (rc != 0 || c.status != 200) {
        rc = s3_fail(st, &c, "DELETE-BATCH", rc);
        call_free(&c);
        return rc;
    }
    struct gfs_s3_delete_result res;
    rc = gfs_s3_xml_parse_delete_result(c.out.p, c.out.len, &res, st->base.log);
    call_free(&c);
    if (rc != 0) {
        gfs_err(st->base.log, "s3: DELETE-BATCH on %s: malformed DeleteResult", st->desc);
        gfs_stat_add(&st->base.stats.errors, 1);
        return -EIO;
    }
    if (res.errors) {
        gfs_err(st->base.log, "s3: DELETE-BATCH on %s: %zu of %zu keys not deleted, first %s: %s %s",
                st->desc, res.errors, n, res.first_error_key, res.first_error.code,
                res.first_error.message);
        *failed += res.errors;
        gfs_stat_add(&st->base.stats.errors, 1);
        return -EIO;
    }
    return 0;
}

/* ops->del_many (a test may wrap the ops table: no gfs_objstore_is_s3 here) */
static int s3_del_many(struct gfs_objstore *gst, const char *const *keys, size_t n,
                       size_t *failed)
{
    size_t nfailed = 0;
    if (failed)
        *failed = 0;
    if (!keys && n)
        return -EINVAL;
    struct s3_store *st = S3(gst);
    for (size_t i = 0; i < n; i++)
        if (!key_ok(st, keys[i], 0))
            return -EINVAL;
    int first = 0;
    for (size_t off = 0; off < n; off += GFS_S3_DELETE_MAX_KEYS) {
        size_t k = n - off < GFS_S3_DELETE_MAX_KEYS ? n - off : GFS_S3_DELETE_MAX_KEYS;
        int rc = 1;
        if (!atomic_load_explicit(&st->no_batch_delete, memory_order_relaxed))
            rc = delete_chunk(st, keys + off, k, &nfailed);
        if (rc == 1) {
            if (!atomic_exchange_explicit(&st->no_batch_delete, 1, memory_order_relaxed))
                gfs_warn(st->base.log, "s3: %s does not implement DeleteObjects: deleting "
                         "one object per request from now on", st->desc);
            size_t bad = 0;
            rc = gfs_objstore_del_each(gst, keys + off, k, &bad);
            nfailed += bad;
        }
        if (rc == -EACCES || rc == -ENOENT || rc == -ENOMEM) {
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

int gfs_s3_delete_batch(struct gfs_objstore *gst, const char *const *keys, size_t n,
                        size_t *failed)
{
    if (failed)
        *failed = 0;
    if (!gfs_objstore_is_s3(gst))
        return -EINVAL;
    return s3_del_many(gst, keys, n, failed);
}

/* ---- open ---------------------------------------------------------------- */

/* s3://bucket[/prefix]: bucket and a normalised prefix ("" or "a/b/"). */
static int parse_s3_url(const char *url, int path_style, char **bucket, char **prefix, char *err,
                        size_t errlen)
{
    *bucket = *prefix = NULL;
    if (!url || strncmp(url, "s3://", 5) != 0) {
        snprintf(err, errlen, "storage.url must start with s3://");
        return -EINVAL;
    }
    const char *b = url + 5;
    size_t bl = strcspn(b, "/");
    if (!gfs_s3_bucket_valid(b, bl, path_style)) {
        snprintf(err, errlen,
                 "storage.url: bad bucket name (3-63 characters of %s)",
                 path_style ? "A-Z a-z 0-9 . - _" : "a-z 0-9 . -");
        return -EINVAL;
    }
    const char *p = b + bl;
    while (*p == '/')
        p++;
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    if (pl > PREFIX_MAX) {
        snprintf(err, errlen, "storage.url: prefix longer than %u bytes", PREFIX_MAX);
        return -EINVAL;
    }
    /* no empty, "." or ".." segments, no control characters, valid UTF-8 */
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
    *bucket = strndup(b, bl);
    if (pl) {
        if (asprintf(prefix, "%.*s/", (int)pl, p) < 0)
            *prefix = NULL;
    } else {
        *prefix = strdup("");
    }
    if (!*bucket || !*prefix) {
        free(*bucket);
        free(*prefix);
        *bucket = *prefix = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!xmlCheckUTF8((const xmlChar *)*prefix)) {
        free(*bucket);
        free(*prefix);
        *bucket = *prefix = NULL;
        snprintf(err, errlen, "storage.url: the prefix is not valid UTF-8");
        return -EINVAL;
    }
    return 0;
}

/* http(s)://host[:port][/]: origin and Host header. No user info, path,
 * query or fragment (credentials in a URL would end up in logs). */
static int parse_endpoint(const char *ep, char **origin, char **host, char *err, size_t errlen)
{
    *origin = *host = NULL;
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
    const char *tail = rest + hl;
    if (hl == 0 || (*tail && strcmp(tail, "/") != 0)) {
        snprintf(err, errlen, "storage.endpoint must be scheme://host[:port] without a path");
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
    *host = strndup(rest, hl);
    *origin = strndup(ep, (size_t)(tail - ep));
    if (!*host || !*origin) {
        free(*host);
        free(*origin);
        *origin = *host = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* ---- addressing and region ------------------------------------------------ */

/* A bucket name that can be a DNS label sequence under the endpoint's host:
 * lower-case letters, digits, '-' and '.', a letter or digit at both ends and
 * around each '.', not shaped like an IPv4 address. */
static int bucket_dns_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return 0;
    int all_ip = 1, dots = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = b[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '-' && ch != '.')
            return 0;
        if (ch == '.') {
            dots++;
            if (i == 0 || i + 1 == n || b[i - 1] == '.' || b[i - 1] == '-' || b[i + 1] == '-')
                return 0;
        } else if (!(ch >= '0' && ch <= '9')) {
            all_ip = 0;
        }
    }
    if (b[0] == '-' || b[n - 1] == '-')
        return 0;
    return !(all_ip && dots == 3);
}

/* host[:port] without the port; [v6] stays bracketed. */
static void host_only(const char *hostport, char *out, size_t outlen)
{
    size_t n = strlen(hostport);
    if (hostport[0] == '[') {
        const char *e = strchr(hostport, ']');
        n = e ? (size_t)(e - hostport) + 1 : n;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (colon)
            n = (size_t)(colon - hostport);
    }
    snprintf(out, outlen, "%.*s", (int)n, hostport);
}

static int host_is_ip(const char *h)
{
    if (h[0] == '[')
        return 1;
    for (; *h; h++)
        if (!((*h >= '0' && *h <= '9') || *h == '.'))
            return 0;
    return 1;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcasecmp(s + n - k, suffix) == 0;
}

int gfs_s3_use_virtual(const char *mode, const char *bucket, const char *endpoint_host,
                       int https, char *err, size_t errlen)
{
    char host[300] = "";
    if (endpoint_host)
        host_only(endpoint_host, host, sizeof(host));
    int dns = bucket_dns_ok(bucket), dots = strchr(bucket, '.') != NULL;
    if (!mode || !*mode || strcmp(mode, "auto") == 0) {
        /* AWS's own endpoints (none given, or *.amazonaws.com[.cn]): virtual-hosted,
         * AWS's default, unless the bucket cannot be a host name there (a name
         * with dots does not match the wildcard certificate under https);
         * any other endpoint (MinIO, Ceph RGW, an address, a test server):
         * path-style, which every S3-compatible store serves */
        int aws = !endpoint_host || (!host_is_ip(host) && (ends_with_ci(host, ".amazonaws.com") ||
                                                           ends_with_ci(host, ".amazonaws.com.cn")));
        return aws && dns && !(https && dots);
    }
    if (strcmp(mode, "path") == 0)
        return 0;
    if (strcmp(mode, "virtual") != 0) {
        snprintf(err, errlen, "storage.addressing must be auto, path or virtual");
        return -EINVAL;
    }
    if (endpoint_host && (host_is_ip(host) || !strchr(host, '.'))) {
        /* no BUCKET.10.0.0.1; "localhost" has no parent domain either (s3.localhost does) */
        snprintf(err, errlen, "storage.addressing: virtual needs storage.endpoint to be a host "
                 "name with a domain (BUCKET.%s is no host name): use path or auto", host);
        return -EINVAL;
    }
    if (!dns) {
        snprintf(err, errlen, "storage.addressing: virtual needs a bucket name that is a DNS "
                 "name (lower-case letters, digits, '-', '.'); '%s' is not: use path or auto",
                 bucket);
        return -EINVAL;
    }
    if (https && dots) {
        snprintf(err, errlen, "storage.addressing: virtual with the bucket name '%s' (dots) "
                 "over https: the endpoint's wildcard certificate cannot match it; use path "
                 "or auto", bucket);
        return -EINVAL;
    }
    return 1;
}

static int region_ok(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return 0;
    return 1;
}

static void target_free(struct s3_target *t)
{
    while (t) {
        struct s3_target *o = t->older;
        free(t->origin);
        free(t->host);
        free(t->path_base);
        free(t->region);
        free(t);
        t = o;
    }
}

/* The target for region: AWS's host names for that region when no endpoint
 * was given, else the endpoint (only the signing region changes). */
static struct s3_target *target_new(const struct s3_store *st, const char *region)
{
    struct s3_target *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    const char *scheme = st->ep_scheme ? st->ep_scheme : "https";
    char base[400];
    if (st->ep_host)
        snprintf(base, sizeof(base), "%s", st->ep_host);
    else
        snprintf(base, sizeof(base), "s3.%s.amazonaws.com%s", region,
                 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
    int ok;
    if (st->virtual_host) {
        ok = asprintf(&t->host, "%s.%s", st->bucket, base) >= 0;
        t->path_base = strdup("");
    } else {
        ok = (t->host = strdup(base)) != NULL;
        if (asprintf(&t->path_base, "/%s", st->bucket) < 0)
            t->path_base = NULL;
    }
    if (!ok)
        t->host = NULL;
    if (t->host && asprintf(&t->origin, "%s://%s", scheme, t->host) < 0)
        t->origin = NULL;
    t->region = strdup(region);
    if (!t->host || !t->path_base || !t->origin || !t->region) {
        target_free(t);
        return NULL;
    }
    return t;
}

/* The store named region as the bucket's: sign for it (and, on AWS's own
 * host names, go to its endpoint) from now on. 0 when a request may be sent
 * again at once (switched, by us or by another thread); -1 when not. */
static int switch_region(struct s3_store *st, const struct s3_target *t, const char *region,
                         const char *why)
{
    if (!region_ok(region))
        return -1;
    pthread_mutex_lock(&st->target_lock);
    int rc = 0;
    /* under target_lock: no store can race this load */
    struct s3_target *cur = atomic_load_explicit(&st->target, memory_order_relaxed);
    if (cur != t) {
        /* another request switched already */
    } else if (st->region_switches >= MAX_REGION_SWITCHES) {
        rc = -1;
    } else {
        struct s3_target *n = target_new(st, region);
        if (!n) {
            rc = -1;
        } else {
            n->older = cur;
            atomic_store_explicit(&st->target, n, memory_order_release);
            st->region_switches++;
            gfs_warn(st->base.log, "s3: %s is in region %s, not %s (the store answered: %s): "
                     "signing for %s%s%s from now on; set storage.region: %s", st->desc,
                     region, t->region, why, region, st->ep_host ? "" : " at ",
                     st->ep_host ? "" : n->origin, region);
        }
    }
    pthread_mutex_unlock(&st->target_lock);
    return rc;
}

const char *gfs_s3_region(const struct gfs_objstore *gst)
{
    if (!gfs_objstore_is_s3(gst))
        return NULL;
    return target_of((const struct s3_store *)gst)->region;
}

const char *gfs_s3_host(const struct gfs_objstore *gst)
{
    if (!gfs_objstore_is_s3(gst))
        return NULL;
    return target_of((const struct s3_store *)gst)->host;
}

int gfs_s3_checksum_state(const struct gfs_objstore *gst)
{
    if (!gfs_objstore_is_s3(gst))
        return -EINVAL;
    return atomic_load_explicit(&((const struct s3_store *)gst)->crc_state, memory_order_relaxed);
}

int gfs_objstore_s3_open(const struct glidefs_config *cfg, struct gfs_log *log,
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
        snprintf(err, errlen, "s3 store: missing config");
        return -EINVAL;
    }
    pthread_once(&s3_global_once, s3_global_init);
    if (s3_global_rc != CURLE_OK) {
        snprintf(err, errlen, "s3 store: libcurl initialisation failed: %s",
                 curl_easy_strerror(s3_global_rc));
        return -EIO;
    }

    struct s3_store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    st->base.ops = &s3_ops;
    st->base.log = log;
    gfs_curl_pool_init(&st->pool);
    pthread_mutex_init(&st->target_lock, NULL);

    int rc = parse_s3_url(cfg->storage_url, cfg->storage_endpoint && *cfg->storage_endpoint,
                          &st->bucket, &st->prefix, err, errlen);
    if (rc != 0)
        goto fail;

    const char *region = cfg->storage_region && *cfg->storage_region ? cfg->storage_region
                                                                       : "us-east-1";
    if (!region_ok(region)) {
        snprintf(err, errlen, "storage.region '%.40s' is not a region name (a-z 0-9 -)", region);
        rc = -EINVAL;
        goto fail;
    }

    int https = 1;
    if (cfg->storage_endpoint && *cfg->storage_endpoint) {
        /* custom endpoint (MinIO, Ceph RGW, R2, a test server, or an AWS one) */
        char *origin = NULL;
        rc = parse_endpoint(cfg->storage_endpoint, &origin, &st->ep_host, err, errlen);
        if (rc != 0)
            goto fail;
        https = strncasecmp(origin, "https:", 6) == 0;
        free(origin);
        if (!(st->ep_scheme = strdup(https ? "https" : "http"))) {
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    rc = gfs_s3_use_virtual(cfg->storage_addressing, st->bucket, st->ep_host, https, err, errlen);
    if (rc < 0)
        goto fail;
    st->virtual_host = rc;
    struct s3_target *t0 = target_new(st, region);
    atomic_init(&st->target, t0);
    if (!t0) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }

    const char *cs = cfg->storage_checksum && *cfg->storage_checksum ? cfg->storage_checksum
                                                                       : "auto";
    if (strcmp(cs, "auto") == 0)
        st->crc_mode = CRC_AUTO;
    else if (strcmp(cs, "on") == 0)
        st->crc_mode = CRC_ON;
    else if (strcmp(cs, "off") == 0)
        st->crc_mode = CRC_OFF;
    else {
        snprintf(err, errlen, "storage.checksum must be auto, on or off");
        rc = -EINVAL;
        goto fail;
    }
    atomic_init(&st->crc_state, st->crc_mode == CRC_OFF ? GFS_S3_CRC_OFF : GFS_S3_CRC_UNKNOWN);

    /* the CA file: storage.ca_bundle, else AWS_CA_BUNDLE as the AWS tools read it */
    const char *ca = cfg->storage_ca_bundle && *cfg->storage_ca_bundle ? cfg->storage_ca_bundle
                                                                         : getenv("AWS_CA_BUNDLE");
    if (ca && *ca && !(st->ca_bundle = strdup(ca))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    st->tls_verify = cfg->storage_tls_verify ? 1 : 0;

    struct gfs_s3_creds_opts co = {
        .akid = cfg->storage_access_key_id, .secret = cfg->storage_secret_access_key,
        .token = cfg->storage_session_token, .region = region, .ca_bundle = st->ca_bundle,
        .tls_verify = st->tls_verify, .refresh_ahead_s = cfg->storage_credential_refresh_s,
        .log = log,
    };
    rc = gfs_s3_creds_new(&co, &st->creds, err, errlen);
    if (rc != 0)
        goto fail;
    st->timeout_ms = cfg->storage_timeout_ms > 0 ? cfg->storage_timeout_ms : 30000;
    st->max_retries = cfg->storage_max_retries >= 0 ? cfg->storage_max_retries : 8;
    if (st->max_retries > 100)
        st->max_retries = 100;
    st->max_conns = cfg->storage_max_connections > 0 ? cfg->storage_max_connections : 8;
    if (st->max_conns > 1024)
        st->max_conns = 1024;
    if (*st->prefix) {
        if (asprintf(&st->desc, "s3://%s/%.*s", st->bucket, (int)strlen(st->prefix) - 1,
                     st->prefix) < 0)
            st->desc = NULL;
    } else if (asprintf(&st->desc, "s3://%s", st->bucket) < 0) {
        st->desc = NULL;
    }
    if (!st->desc || gfs_curl_pool_start(&st->pool, st->max_conns) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }

    const struct s3_target *t = target_of(st);
    if (!st->tls_verify && strncasecmp(t->origin, "https:", 6) == 0)
        gfs_warn(log, "s3: TLS certificate verification is off for %s", t->origin);
    gfs_info(log, "s3: store %s at %s (%s-style, region %s, %d connections, timeout %ld ms, "
             "%d retries, CRC-32C %s%s%s)", st->desc, t->origin,
             st->virtual_host ? "virtual-host" : "path", t->region, st->max_conns,
             st->timeout_ms, st->max_retries, cs, st->ca_bundle ? ", CA file " : "",
             st->ca_bundle ? st->ca_bundle : "");
    *out = &st->base;
    return 0;

fail:
    s3_destroy(&st->base);
    return rc;
}
