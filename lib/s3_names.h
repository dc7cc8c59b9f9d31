/*
 * s3_names.h — the rule for S3 bucket names, one function for config.c
 * (storage.url as it is set) and the s3:// backend (at open).
 */
#ifndef GLIDEFS_S3_NAMES_H
#define GLIDEFS_S3_NAMES_H

#include <stddef.h>

/* Is b[0..n) a bucket name S3 accepts for the addressing style in use?
 *  - virtual-hosted (path_style 0: AWS, the bucket is a DNS label): 3-63
 *    of a-z 0-9 . -, a letter or digit at each end, no "..", not an IPv4
 *    address;
 *  - path-style (a custom storage.endpoint: MinIO, Ceph RGW, ...): the
 *    legacy rule, 3-63 of A-Z a-z 0-9 . - _, starting with a letter or
 *    digit.
 * config.c checks storage.url before it can know the endpoint, so it
 * applies the virtual-hosted rule, which every style accepts. */
int gfs_s3_bucket_valid(const char *b, size_t n, int path_style);

#endif
