/*
 * objstore.c — opening an object store from storage.url: "file://<absolute
 * path>" goes to the file backend (creating the directory if missing),
 * "s3://bucket[/prefix]" to the S3 backend, "azure://account/container
 * [/prefix]" to the Azure Blob backend. Nothing else is accepted.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "objstore.h"
#include "objstore_azure.h"

/* One line into the caller's err buffer, if it gave one. */
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#define FILE_SCHEME "file://"
#define S3_SCHEME "s3://"
#define AZURE_SCHEME "azure://"

static void fsync_parent(const char *path)
{
    CLEANUP_FREE char *parent = strdup(path);
    if (!parent)
        return;
    char *slash = strrchr(parent, '/');
    if (!slash)
        return;
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    CLEANUP_CLOSE int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        fsync(fd);
}

/* mkdir -p of an absolute path; fsyncs the parent of each directory made. */
static int mkdir_p(char *path)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        int r = 0;
        if (mkdir(path, 0700) == 0)
            fsync_parent(path);
        else if (errno != EEXIST)
            r = -errno;
        *p = saved;
        if (r < 0)
            return r;
        if (saved == '\0')
            return 0;
    }
}

static int open_file_url(const char *url, struct gfs_log *log, struct gfs_objstore **out,
                         char *err, size_t errlen)
{
    const char *path = url + strlen(FILE_SCHEME);
    if (path[0] != '/') {
        set_err(err, errlen,
                 "storage.url \"%s\": file:// needs an absolute path (file:///var/lib/glidefs/store)",
                 url);
        return -EINVAL;
    }
    CLEANUP_FREE char *dir = strdup(path);
    if (!dir) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Trailing slashes would only make "a//b" paths. */
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    int r = mkdir_p(dir);
    if (r < 0) {
        char buf[128];
        set_err(err, errlen, "storage.url \"%s\": cannot create directory %s: %s", url, dir,
                 strerror_r(-r, buf, sizeof(buf)));
        return r == -EACCES || r == -EPERM || r == -EROFS ? -EACCES : -EIO;
    }
    return gfs_objstore_file_open(dir, log, out, err, errlen);
}

int gfs_objstore_open(const struct glidefs_config *cfg, struct gfs_log *log,
                      struct gfs_objstore **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!cfg || !out) {
        set_err(err, errlen, "no configuration given for the object store");
        return -EINVAL;
    }
    const char *url = cfg->storage_url;
    if (!url || !url[0]) {
        set_err(err, errlen, "storage.url is not set (s3://bucket/prefix or file:///dir)");
        return -EINVAL;
    }
    if (strncmp(url, FILE_SCHEME, strlen(FILE_SCHEME)) == 0)
        return open_file_url(url, log, out, err, errlen);
    if (strncmp(url, S3_SCHEME, strlen(S3_SCHEME)) == 0)
        return gfs_objstore_s3_open(cfg, log, out, err, errlen);
    if (strncmp(url, AZURE_SCHEME, strlen(AZURE_SCHEME)) == 0)
        return gfs_objstore_azure_open(cfg, log, out, err, errlen);
    /* Name only the scheme: a mistyped URL may carry credentials. */
    const char *sep = strstr(url, "://");
    int slen = sep && sep - url <= 16 ? (int)(sep - url) : 0;
    if (slen)
        set_err(err, errlen,
                 "storage.url: unsupported scheme \"%.*s://\" (use s3://bucket/prefix, "
                 "azure://account/container/prefix or file:///dir)",
                 slen, url);
    else
        set_err(err, errlen,
                 "storage.url: not a URL (use s3://bucket/prefix, "
                 "azure://account/container/prefix or file:///dir)");
    return -EINVAL;
}

int gfs_objstore_del_many(struct gfs_objstore *st, const char *const *keys, size_t n,
                          size_t *failed)
{
    if (failed)
        *failed = 0;
    if (!keys && n)
        return -EINVAL;
    if (st->ops->del_many)
        return st->ops->del_many(st, keys, n, failed);
    return gfs_objstore_del_each(st, keys, n, failed);
}

int gfs_objstore_del_each(struct gfs_objstore *st, const char *const *keys, size_t n,
                          size_t *failed)
{
    int first = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int r = st->ops->del(st, keys[i]);
        if (r == 0)
            continue;
        if (r == -EACCES || r == -ENOENT || r == -EINVAL || r == -ENOMEM) {
            first = r; /* every other key would fail the same way */
            break;
        }
        bad++;
        if (!first)
            first = -EIO;
    }
    if (failed)
        *failed = bad;
    return first;
}
