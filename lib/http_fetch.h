/*
 * http_fetch.h — one small HTTP request with libcurl, for the credential
 * sources of the s3:// backend (s3_creds.c: EC2 instance metadata, the
 * ECS/EKS container endpoint, STS). Not for object traffic: no pool, no
 * retries (the caller decides), no redirects followed, http and https only,
 * every request bounded in time and in the size of the answer it keeps.
 */
#ifndef GLIDEFS_HTTP_FETCH_H
#define GLIDEFS_HTTP_FETCH_H

#include <stddef.h>

struct gfs_http_req {
    const char *method;               /* "GET", "PUT", "POST" */
    const char *url;
    const char *const *headers;       /* "Name: value" lines, no CR/LF (-EINVAL) */
    size_t nheaders;
    const char *body;                 /* may be NULL */
    size_t body_len;
    long timeout_ms;                  /* whole request; also the connect timeout */
    size_t max_body;                  /* a longer answer is -EFBIG */
    int no_proxy;                     /* never through an HTTP proxy (link-local endpoints) */
    const char *ca_bundle;            /* https: CA file, NULL: the system's */
    int tls_verify;                   /* 0 only when the operator said so */
};

struct gfs_http_resp {
    long status;                      /* 0 when no answer came */
    char *body;                       /* malloc'd, NUL-terminated (len excludes it) */
    size_t len;
    char err[256];                    /* why, when the call fails: never holds a header value */
};

/* 0 when an HTTP answer came (any status; resp->status says which), else
 * -EIO (connection, TLS, timeout: resp->err says which), -EFBIG, -ENOMEM,
 * -EINVAL. resp->body is set in both cases (maybe empty); free it with
 * gfs_http_resp_clear, which zeroes it first (answers may hold secrets). */
int gfs_http_fetch(const struct gfs_http_req *req, struct gfs_http_resp *resp);
void gfs_http_resp_clear(struct gfs_http_resp *resp);

#endif
