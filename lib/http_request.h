/*
 * http_request.h — the request plumbing the s3:// and azure:// backends
 * share below their protocols (objstore_s3.c, objstore_azure.c): a pool of
 * curl handles over one DNS and TLS-session cache, a growable response
 * buffer, which curl errors are worth a retry, full-jitter backoff, and the
 * numbers of a Content-Range header. Signing, URLs, status codes and
 * bodies stay with each backend.
 */
#ifndef GLIDEFS_HTTP_REQUEST_H
#define GLIDEFS_HTTP_REQUEST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

/* At most max handles live; a caller waits for an idle one beyond that. */
struct gfs_curl_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* (lock) a handle came back; CLOCK_MONOTONIC */
    CURL **idle;
    int nidle, nlive, max;
    CURLSH *share;            /* DNS and TLS sessions, shared by every handle */
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
};

/* The locks only: call first, so gfs_curl_pool_destroy is safe from then on. */
void gfs_curl_pool_init(struct gfs_curl_pool *p);
/* Room for max handles and the share: 0 or -ENOMEM. */
int gfs_curl_pool_start(struct gfs_curl_pool *p, int max);
/* An idle handle, else a new one while fewer than max live (NULL: out of
 * memory), else wait for one. Hand it back with gfs_curl_pool_put. */
CURL *gfs_curl_pool_get(struct gfs_curl_pool *p);
void gfs_curl_pool_put(struct gfs_curl_pool *p, CURL *h);
void gfs_curl_pool_destroy(struct gfs_curl_pool *p);

/* A response body as it arrives, kept NUL-terminated. */
struct gfs_dynbuf {
    char *p;
    size_t len, cap;
};
/* 0 or -ENOMEM (b keeps what it had). */
int gfs_dyn_add(struct gfs_dynbuf *b, const void *data, size_t n);

/* 0: the request cannot succeed by sending it again (bad URL, TLS
 * verification or set-up, out of memory); 1: timeouts, refused or reset
 * connections, DNS, partial bodies and the rest. */
int gfs_curl_retryable(CURLcode cc);

/* Full-jitter backoff: uniform in [0, min(5 s, 100 ms * 2^attempt)), from
 * the xorshift64* state *rng (never 0). */
long gfs_backoff_ms(uint64_t *rng, int attempt);
/* Sleep ms, through signals. */
void gfs_sleep_ms(long ms);

/* One transfer on a pooled handle: the options both backends set, and
 * what comes back besides the body and headers (those go to the
 * callbacks). */
struct gfs_http_xfer {
    const char *url;
    struct curl_slist *headers;
    CURLSH *share;
    long timeout_ms;          /* whole request; connect at most 10 s of it */
    int tls_verify;
    const char *ca_bundle;    /* NULL: the system's */
    curl_write_callback on_header, on_body;
    void *arg;                /* for both callbacks */
    const char *method;
    int head;                 /* HEAD: no body expected */
    int has_body;             /* send body (POSTFIELDS; PUT and POST) */
    const void *body;
    size_t body_len;
    /* results */
    CURLcode cc;
    long status;              /* 0: no answer */
    int maybe_resent;         /* libcurl may have sent it twice (see gfs_http_perform) */
    char err[CURL_ERROR_SIZE];
};
/* Append "Expect:" and "Accept:" (empty: libcurl sends neither, so no
 * 100-continue round trip and no Accept we did not ask for). 0 or -ENOMEM
 * (*list keeps what it had). */
int gfs_http_no_expect(struct curl_slist **list);
/* Reset h (its connection cache stays: keep-alive), set x up and run it. */
void gfs_http_perform(CURL *h, struct gfs_http_xfer *x);

/* The numbers of a ranged GET's answer, as the header callback saw them. */
struct gfs_range_answer {
    long status;              /* 206 or 200 (the store ignored Range) */
    int have_cr, have_cl;
    uint64_t cr_start, cr_end, cr_total, content_length;
    uint64_t pos;             /* body bytes seen */
    size_t got;               /* bytes kept of the range asked */
};
/* -1 with why written when a 206 or 200 answer to "bytes=offset-(offset
 * +len-1)" (range, for the message) does not hold what was asked; else 0
 * (other statuses are the caller's). */
int gfs_range_answer_check(const struct gfs_range_answer *a, uint64_t offset, size_t len,
                           const char *range, char *why, size_t whylen);

/* n decimal digits, no sign, no overflow: 0, else -1. */
int gfs_parse_u64_str(const char *s, size_t n, uint64_t *out);
/* "bytes a-b/total" ('*' total: UINT64_MAX): 0, else -1. end < start is
 * returned as sent: the caller judges it. */
int gfs_parse_content_range(const char *v, size_t n, uint64_t *start, uint64_t *end,
                            uint64_t *total);

#endif
