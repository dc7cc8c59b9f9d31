/*
 * objstore_util.c — operations over any backend through the objstore
 * interface (objstore.h): a batch delete key by key, for backends without
 * a batch request and for the keys a batch request refused; collecting the
 * keys a list returns. Below every backend and the opener (objstore.c),
 * which call it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

int gfs_keylist_add(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct gfs_keylist *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **nk = realloc(l->keys, nc * sizeof *nk);
        if (!nk)
            return -ENOMEM;
        l->keys = nk;
        l->cap = nc;
    }
    l->keys[l->n] = strdup(key);
    return l->keys[l->n++] ? 0 : -ENOMEM;
}

void gfs_keylist_free(struct gfs_keylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    l->keys = NULL;
    l->n = l->cap = 0;
}
