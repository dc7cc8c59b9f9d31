/*
 * objstore_util.c — operations over any backend through the objstore
 * interface (objstore.h): a batch delete key by key, for backends without
 * a batch request and for the keys a batch request refused. Below every
 * backend and the opener (objstore.c), which call it.
 */
#include <errno.h>

#include "objstore.h"

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
