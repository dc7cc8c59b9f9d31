/*
 * objstore_s3.c — placeholder for the s3:// object store backend. The S3
 * engineer replaces this whole file with the real libcurl + SigV4 client;
 * until then opening an s3:// store fails cleanly.
 */
#include <errno.h>
#include <stdio.h>

#include "objstore.h"

int gfs_objstore_s3_open(const struct glidefs_config *cfg, struct gfs_log *log,
                         struct gfs_objstore **out, char *err, size_t errlen)
{
    (void)cfg;
    (void)log;
    if (out)
        *out = NULL;
    if (err && errlen)
        snprintf(err, errlen, "s3:// store not built yet");
    return -EPROTONOSUPPORT;
}
