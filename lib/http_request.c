/*
 * http_request.c — the request plumbing the s3:// and azure:// backends
 * share (see http_request.h): curl handle pool and share, response buffer,
 * retry classification, backoff, Content-Range.
 */
#include "http_request.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000

/* ---- curl handle pool ---------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    (void)h;
    (void)access;
    struct gfs_curl_pool *p = arg;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&p->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    (void)h;
    struct gfs_curl_pool *p = arg;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&p->share_locks[data]);
}

void gfs_curl_pool_init(struct gfs_curl_pool *p)
{
    pthread_mutex_init(&p->lock, NULL);
    gfs_cond_init(&p->cond);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&p->share_locks[i], NULL);
}

int gfs_curl_pool_start(struct gfs_curl_pool *p, int max)
{
    p->max = max;
    p->idle = calloc((size_t)max, sizeof(*p->idle));
    p->share = curl_share_init();
    if (!p->idle || !p->share)
        return -ENOMEM;
    curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(p->share, CURLSHOPT_USERDATA, p);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 0;
}

CURL *gfs_curl_pool_get(struct gfs_curl_pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->nidle == 0 && p->nlive >= p->max)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->nidle > 0) {
        CURL *h = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->lock);
        return h;
    }
    p->nlive++;
    pthread_mutex_unlock(&p->lock);
    CURL *h = curl_easy_init();
    if (!h) {
        pthread_mutex_lock(&p->lock);
        p->nlive--;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    return h;
}

void gfs_curl_pool_put(struct gfs_curl_pool *p, CURL *h)
{
    pthread_mutex_lock(&p->lock);
    p->idle[p->nidle++] = h;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void gfs_curl_pool_destroy(struct gfs_curl_pool *p)
{
    for (int i = 0; i < p->nidle; i++)
        curl_easy_cleanup(p->idle[i]);
    free(p->idle);
    if (p->share)
        curl_share_cleanup(p->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&p->share_locks[i]);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

/* ---- response buffer ------------------------------------------------------ */

int gfs_dyn_add(struct gfs_dynbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* ---- retries --------------------------------------------------------------- */

int gfs_curl_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
        return 0;
    default:
        return 1; /* timeouts, refused/reset connections, DNS, partial bodies ... */
    }
}

long gfs_backoff_ms(uint64_t *rng, int attempt)
{
    long ceiling = BACKOFF_BASE_MS;
    for (int i = 0; i < attempt && ceiling < BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > BACKOFF_CAP_MS)
        ceiling = BACKOFF_CAP_MS;
    /* xorshift64* */
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return (long)((x * 2685821657736338717ULL) % (uint64_t)ceiling);
}

void gfs_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- one transfer ------------------------------------------------------------ */

int gfs_http_no_expect(struct curl_slist **list)
{
    static const char *const fixed[] = {"Expect:", "Accept:"};
    for (size_t i = 0; i < 2; i++) {
        struct curl_slist *t = curl_slist_append(*list, fixed[i]);
        if (!t)
            return -ENOMEM;
        *list = t;
    }
    return 0;
}

void gfs_http_perform(CURL *h, struct gfs_http_xfer *x)
{
    x->err[0] = '\0';
    /* A connection kept from an earlier transfer: if it dies under this
     * request before an answer, libcurl sends the request again on a new
     * one by itself, inside this one attempt - a PUT may then land twice
     * (the second copy of a conditional PUT is refused by the first). */
    curl_socket_t kept = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &kept) != CURLE_OK)
        kept = CURL_SOCKET_BAD;
    curl_easy_reset(h); /* keeps the connection cache: keep-alive survives */
    curl_easy_setopt(h, CURLOPT_URL, x->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SHARE, x->share);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->err);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* never rewrite "/./" or "/../" in keys */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     x->timeout_ms < 10000 ? x->timeout_ms : 10000L);
    /* a connection that moves nothing for half the timeout is dead */
    long low_speed_s = x->timeout_ms / 2000;
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, low_speed_s > 0 ? low_speed_s : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, x->tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, x->tls_verify ? 2L : 0L);
    if (x->ca_bundle)
        curl_easy_setopt(h, CURLOPT_CAINFO, x->ca_bundle);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, x->on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x->arg);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, x->on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x->arg);
    if (x->head) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (x->has_body) {
        if (strcmp(x->method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, x->body ? (const char *)x->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    } else if (strcmp(x->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method);
    }

    x->cc = curl_easy_perform(h);
    long nconn = 0;
    x->maybe_resent = kept != CURL_SOCKET_BAD &&
                      curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK &&
                      nconn > 0; /* it had one, yet connected anew */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    x->status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->status);
}

int gfs_range_answer_check(const struct gfs_range_answer *a, uint64_t offset, size_t len,
                           const char *range, char *why, size_t whylen)
{
    if (a->status == 206) {
        /* the range we got must be the one we asked for */
        uint64_t n = a->have_cr ? a->cr_end - a->cr_start + 1 : 0;
        if (!a->have_cr || a->cr_start != offset || n > len || n != a->got ||
            (a->cr_total != UINT64_MAX && (a->cr_end >= a->cr_total ||
                                           (n < len && a->cr_end + 1 != a->cr_total)))) {
            snprintf(why, whylen,
                     "206 answer does not match the range asked (%s; Content-Range %s "
                     "%" PRIu64 "-%" PRIu64 "/%" PRIu64 ", %zu bytes received)",
                     range, a->have_cr ? "" : "missing", a->cr_start, a->cr_end, a->cr_total,
                     a->got);
            return -1;
        }
    } else if (a->status == 200) {
        /* the whole object came (Range ignored): the body sink kept our part */
        uint64_t size = a->have_cl ? a->content_length : a->pos;
        size_t want = offset >= size ? 0 : (size - offset < len ? (size_t)(size - offset) : len);
        if (a->got != want) {
            snprintf(why, whylen, "200 answer to a ranged GET holds %zu bytes of the %zu expected",
                     a->got, want);
            return -1;
        }
    }
    return 0;
}

/* ---- header numbers -------------------------------------------------------- */

int gfs_parse_u64_str(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int gfs_parse_content_range(const char *v, size_t n, uint64_t *start, uint64_t *end,
                            uint64_t *total)
{
    if (n < 6 || strncasecmp(v, "bytes ", 6) != 0)
        return -1;
    const char *p = v + 6, *e = v + n;
    const char *dash = memchr(p, '-', (size_t)(e - p));
    if (!dash)
        return -1;
    const char *slash = memchr(dash, '/', (size_t)(e - dash));
    if (!slash)
        return -1;
    if (gfs_parse_u64_str(p, (size_t)(dash - p), start) ||
        gfs_parse_u64_str(dash + 1, (size_t)(slash - dash - 1), end))
        return -1;
    if (e - slash == 2 && slash[1] == '*')
        *total = UINT64_MAX;
    else if (gfs_parse_u64_str(slash + 1, (size_t)(e - slash - 1), total))
        return -1;
    return 0;
}
