/*
 * http_fetch.c — one bounded HTTP request with libcurl (see http_fetch.h).
 * Owns: the curl options every credential fetch needs (protocols, timeouts,
 * no redirects, no signals, the proxy rule, TLS verification) and the
 * bounded answer buffer. The caller has initialised libcurl (the s3://
 * backend does it once per process before any store exists).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <mbedtls/platform_util.h>

#include "http_fetch.h"
#include "http_request.h"

struct sink {
    char *p;
    size_t len, cap, max;
    int too_big, oom;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    if (s->len + n > s->max) {
        s->too_big = 1;
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = malloc(cap);
        if (!p) {
            s->oom = 1;
            return 0;
        }
        if (s->p) {
            memcpy(p, s->p, s->len);
            mbedtls_platform_zeroize(s->p, s->cap); /* it may hold a secret */
            free(s->p);
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
    return n;
}

void gfs_http_resp_clear(struct gfs_http_resp *r)
{
    if (!r)
        return;
    if (r->body) {
        mbedtls_platform_zeroize(r->body, r->len);
        free(r->body);
    }
    memset(r, 0, sizeof(*r));
}

int gfs_http_fetch(const struct gfs_http_req *q, struct gfs_http_resp *r)
{
    memset(r, 0, sizeof(*r));
    if (!q || !q->url || !q->method || (q->nheaders && !q->headers))
        return -EINVAL;
    struct curl_slist *list = NULL;
    int rc = 0;
    for (size_t i = 0; i < q->nheaders && rc == 0; i++) {
        if (strpbrk(q->headers[i], "\r\n")) {
            rc = -EINVAL; /* no header injection through a token file */
            break;
        }
        struct curl_slist *t = curl_slist_append(list, q->headers[i]);
        if (!t)
            rc = -ENOMEM;
        else
            list = t;
    }
    /* no "Expect: 100-continue" round trip, no Accept we did not ask for */
    if (rc == 0)
        rc = gfs_http_no_expect(&list);
    CURL *h = rc == 0 ? curl_easy_init() : NULL;
    if (rc == 0 && !h)
        rc = -ENOMEM;
    if (rc != 0) {
        curl_slist_free_all(list);
        snprintf(r->err, sizeof(r->err), "%s", strerror(-rc));
        return rc;
    }
    struct sink s = {.max = q->max_body};
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, q->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->timeout_ms > 0 ? q->timeout_ms : 5000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, q->timeout_ms > 0 ? q->timeout_ms : 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    if (q->no_proxy)
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* "" turns the proxy off, env included */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, q->tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, q->tls_verify ? 2L : 0L);
    if (q->ca_bundle)
        curl_easy_setopt(h, CURLOPT_CAINFO, q->ca_bundle);
    if (strcmp(q->method, "GET") == 0) {
        /* the default */
    } else if (strcmp(q->method, "POST") == 0 || strcmp(q->method, "PUT") == 0) {
        if (strcmp(q->method, "PUT") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else {
        curl_easy_cleanup(h);
        curl_slist_free_all(list);
        return -EINVAL;
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_cleanup(h);
    curl_slist_free_all(list);
    if (!s.p && !s.oom && !(s.p = calloc(1, 1)))
        s.oom = 1;
    r->body = s.p;
    r->len = s.len;
    if (s.oom) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return -ENOMEM;
    }
    if (s.too_big) {
        snprintf(r->err, sizeof(r->err), "answer larger than %zu bytes", q->max_body);
        return -EFBIG;
    }
    if (cc != CURLE_OK) {
        snprintf(r->err, sizeof(r->err), "%s%s%s", curl_easy_strerror(cc), *cerr ? ": " : "",
                 cerr);
        r->err[strcspn(r->err, "\r\n")] = '\0';
        r->status = 0;
        return -EIO;
    }
    return 0;
}
