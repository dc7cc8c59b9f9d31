/*
 * u64map.h — an open-addressing hash map from uint64_t keys to pointers, for
 * the per-volume indexes (dirty blocks, cached blocks). Not thread-safe: the
 * owner locks.
 */
#ifndef GLIDEFS_U64MAP_H
#define GLIDEFS_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct gfs_u64map {
    uint64_t *keys;
    void **vals;   /* NULL = empty slot; a tombstone is GFS_U64MAP_TOMB */
    size_t cap;    /* power of two, or 0 */
    size_t count;  /* live entries */
    size_t used;   /* live + tombstones */
};

void gfs_u64map_init(struct gfs_u64map *m);
void gfs_u64map_free(struct gfs_u64map *m);
void *gfs_u64map_get(const struct gfs_u64map *m, uint64_t key);
/* Insert or replace; val must not be NULL. -ENOMEM on allocation failure. */
int gfs_u64map_put(struct gfs_u64map *m, uint64_t key, void *val);
/* Remove and return the value, or NULL if absent. */
void *gfs_u64map_del(struct gfs_u64map *m, uint64_t key);

/* Iterate: for (size_t i = 0; gfs_u64map_next(m, &i, &k, &v); ) ... Do not
 * modify the map while iterating. */
int gfs_u64map_next(const struct gfs_u64map *m, size_t *iter, uint64_t *key, void **val);

#endif
