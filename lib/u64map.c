/*
 * u64map.c — open-addressing (linear probing) hash map uint64_t -> pointer.
 * Tombstones keep probe chains intact after deletes; the table is rebuilt when
 * live entries plus tombstones pass 70% of capacity.
 */
#include "u64map.h"

#include <errno.h>
#include <stdlib.h>

static char tomb_marker;
#define TOMB ((void *)&tomb_marker)

static inline size_t hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (size_t)k;
}

void gfs_u64map_init(struct gfs_u64map *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->count = m->used = 0;
}

void gfs_u64map_free(struct gfs_u64map *m)
{
    free(m->keys);
    free(m->vals);
    gfs_u64map_init(m);
}

void *gfs_u64map_get(const struct gfs_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = hash64(key) & mask;; i = (i + 1) & mask) {
        void *v = m->vals[i];
        if (!v)
            return NULL;
        if (v != TOMB && m->keys[i] == key)
            return v;
    }
}

static int rehash(struct gfs_u64map *m, size_t newcap)
{
    uint64_t *keys = malloc(newcap * sizeof *keys);
    void **vals = calloc(newcap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -ENOMEM;
    }
    size_t mask = newcap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        void *v = m->vals[j];
        if (!v || v == TOMB)
            continue;
        size_t i = hash64(m->keys[j]) & mask;
        while (vals[i])
            i = (i + 1) & mask;
        keys[i] = m->keys[j];
        vals[i] = v;
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = newcap;
    m->used = m->count;
    return 0;
}

int gfs_u64map_put(struct gfs_u64map *m, uint64_t key, void *val)
{
    if ((m->used + 1) * 10 >= m->cap * 7) {
        size_t newcap = m->cap ? m->cap : 16;
        while ((m->count + 1) * 10 >= newcap * 5)
            newcap *= 2;
        int r = rehash(m, newcap);
        if (r < 0)
            return r;
    }
    size_t mask = m->cap - 1;
    size_t tomb = SIZE_MAX;
    for (size_t i = hash64(key) & mask;; i = (i + 1) & mask) {
        void *v = m->vals[i];
        if (!v) {
            if (tomb != SIZE_MAX)
                i = tomb;
            else
                m->used++;
            m->keys[i] = key;
            m->vals[i] = val;
            m->count++;
            return 0;
        }
        if (v == TOMB) {
            if (tomb == SIZE_MAX)
                tomb = i;
        } else if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
    }
}

void *gfs_u64map_del(struct gfs_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = hash64(key) & mask;; i = (i + 1) & mask) {
        void *v = m->vals[i];
        if (!v)
            return NULL;
        if (v != TOMB && m->keys[i] == key) {
            m->vals[i] = TOMB;
            m->count--;
            return v;
        }
    }
}

int gfs_u64map_next(const struct gfs_u64map *m, size_t *iter, uint64_t *key, void **val)
{
    for (size_t i = *iter; i < m->cap; i++) {
        void *v = m->vals[i];
        if (v && v != TOMB) {
            if (key)
                *key = m->keys[i];
            if (val)
                *val = v;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
