/*
 * azure_batch.h — Blob Batch (POST ...?restype=container&comp=batch) for the
 * azure:// backend's batched deletes: the multipart/mixed request body of up
 * to GFS_AZ_BATCH_MAX Delete Blob subrequests, and the parser of the
 * multipart/mixed answer, one embedded HTTP response per subrequest.
 *
 * The answer faces the network: its size is bounded (GFS_AZ_BATCH_BODY_MAX),
 * the boundary must come from the answer's Content-Type (a token of RFC
 * 2046's characters, at most 70), every line is bounded, each part must be
 * application/http with a status line "HTTP/1.x NNN ...", Content-IDs must
 * be decimal, in range and unique (parts without one are taken in order),
 * and the number of parts must match the subrequests sent, or be one part
 * without Content-ID (a batch refused as a whole). Anything else is
 * -EBADMSG.
 */
#ifndef GLIDEFS_AZURE_BATCH_H
#define GLIDEFS_AZURE_BATCH_H

#include <stddef.h>

#define GFS_AZ_BATCH_MAX 256u                 /* subrequests per batch (Azure's limit) */
#define GFS_AZ_BATCH_BODY_MAX (4u << 20)      /* largest batch answer accepted */
#define GFS_AZ_BATCH_BOUNDARY_MAX 70u

struct gfs_az_batch_sub {
    const char *method;  /* "DELETE" */
    const char *target;  /* request target as sent: "/container/blob[?sas]" */
    const char *const *headers; /* n_headers "Name: value" lines, no CR/LF */
    size_t nheaders;
};

/* The request body for n (1..GFS_AZ_BATCH_MAX) subrequests under boundary
 * (1..70 of [A-Za-z0-9'()+_,-./:=?]). Content-ID i is sub[i]. *out is
 * malloc'd, not NUL-terminated. */
int gfs_az_batch_build(const char *boundary, const struct gfs_az_batch_sub *sub, size_t n,
                       char **out, size_t *outlen);

struct gfs_az_batch_reply {
    int status;    /* HTTP status of the subresponse, 0 if none came */
    char code[64]; /* its x-ms-error-code, "" if none (control characters made '?') */
};

/* Parse the answer to a batch of nreq subrequests: content_type is the
 * answer's Content-Type header. On 0 either every reply[0..nreq) is filled
 * (*whole = NULL), or the store refused the batch as a whole: one part
 * without Content-ID, written to *whole (= &reply[0]) and the rest 0. */
int gfs_az_batch_parse(const char *content_type, const char *body, size_t len, size_t nreq,
                       struct gfs_az_batch_reply *reply, const struct gfs_az_batch_reply **whole);

#endif
