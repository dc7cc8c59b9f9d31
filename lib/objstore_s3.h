/*
 * objstore_s3.h — what the s3:// backend offers beyond the objstore
 * interface (objstore.h): the start-up check with a one-line diagnosis, and
 * batched deletes (DeleteObjects).
 */
#ifndef GLIDEFS_OBJSTORE_S3_H
#define GLIDEFS_OBJSTORE_S3_H

#include <stddef.h>

#include "objstore.h"

/* 1 if st was opened by gfs_objstore_s3_open. */
int gfs_objstore_is_s3(const struct gfs_objstore *st);

/* Check that the store answers: lists the store's prefix (one key, a few
 * retries only). gfs_objstore_s3_open does no network I/O; a daemon calls
 * this (or the generic list) before it serves. On failure writes one line
 * into err naming the problem, never a secret:
 *   -EACCES  credentials refused (InvalidAccessKeyId, SignatureDoesNotMatch,
 *            AccessDenied, RequestTimeTooSkewed ...)
 *   -ENOENT  the bucket does not exist (NoSuchBucket)
 *   -EIO     endpoint unreachable, TLS failure, any other answer
 *   -EINVAL  st is not an S3 store */
int gfs_s3_check(struct gfs_objstore *st, char *err, size_t errlen);

/* 1 once st was found to compare If-Match with the stored ETag without its
 * quotes (Ceph RGW 16: the RFC form "etag" never matches) and now sends the
 * bare ETag; 0 before that, on other stores, or for a non-S3 store. Found by
 * the first conditional PUT refused although the ETag it named is stored. */
int gfs_s3_if_match_bare(const struct gfs_objstore *st);

/* Delete up to 1000 keys (store-relative, like every objstore key) with one
 * DeleteObjects request; more keys are sent as several requests. S3 requires
 * a Content-MD5 header on DeleteObjects: it is computed here over the XML
 * body. Missing keys count as deleted. Returns 0 when every key is gone;
 * -EIO when S3 refused some of them (*failed, if non-NULL, says how many;
 * the first refusal is logged with its key and S3 error code); -EACCES,
 * -ENOENT (no bucket), -EINVAL (bad key) as for single deletes. A store
 * that answers DeleteObjects "not implemented" (501, or 405 / 400 with
 * NotImplemented or MethodNotAllowed) gets single DELETEs instead, from
 * then on (logged once). The backend's ops->del_many does the same. */
int gfs_s3_delete_batch(struct gfs_objstore *st, const char *const *keys, size_t n,
                        size_t *failed);

#endif
