/*
 * objstore_s3.h — what the s3:// backend offers beyond the objstore
 * interface (objstore.h): the start-up check with a one-line diagnosis,
 * batched deletes (DeleteObjects), the addressing rule, and what the store
 * was seen to do (region, checksums) for tests and reports.
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
 * that refuses DeleteObjects (501, or 405 / 400 with the code
 * NotImplemented or MethodNotAllowed) gets single DELETEs instead, from
 * then on (logged once). The backend's ops->del_many does the same. */
int gfs_s3_delete_batch(struct gfs_objstore *st, const char *const *keys, size_t n,
                        size_t *failed);

/* storage.addressing for bucket at endpoint_host ("host[:port]" of
 * storage.endpoint, NULL for AWS's own host names) over https or not:
 * 1 virtual-hosted (BUCKET.host, path /KEY), 0 path-style (host, path
 * /BUCKET/KEY), -EINVAL with err when mode cannot work.
 *   auto (default, also NULL or ""): virtual-hosted for AWS (no endpoint, or
 *     one under amazonaws.com or amazonaws.com.cn) when the bucket name is a
 *     DNS name and, under https, has no dots (the wildcard certificate
 *     *.s3.REGION.amazonaws.com matches one label only); path-style
 *     otherwise, and for every other endpoint (MinIO, Ceph RGW, addresses).
 *   path: always path-style.
 *   virtual: always virtual-hosted; refused for an endpoint that is an
 *     address or a name without a domain, a bucket name that is no DNS
 *     name, or one with dots under https. */
int gfs_s3_use_virtual(const char *mode, const char *bucket, const char *endpoint_host,
                       int https, char *err, size_t errlen);

/* The region requests are signed for now (storage.region, or what the
 * store answered since), the Host they go to; NULL for a non-S3 store. */
const char *gfs_s3_region(const struct gfs_objstore *st);
const char *gfs_s3_host(const struct gfs_objstore *st);

/* x-amz-checksum-crc32c: base64 of the big-endian CRC-32C of len bytes
 * (out: 16 bytes, "AAAAAA==" form). 0 or -EINVAL. */
int gfs_s3_crc32c_b64(const void *buf, size_t len, char out[16]);

/* What PUTs with x-amz-checksum-crc32c showed (storage.checksum). */
#define GFS_S3_CRC_UNKNOWN 0  /* no PUT answered yet */
#define GFS_S3_CRC_VERIFIED 1 /* the store answered with the same CRC: it checks */
#define GFS_S3_CRC_IGNORED 2  /* accepted without answering it: it may not check */
#define GFS_S3_CRC_REFUSED 3  /* refused the header (auto): PUTs go without it */
#define GFS_S3_CRC_OFF 4      /* storage.checksum: off */
int gfs_s3_checksum_state(const struct gfs_objstore *st);

#endif
