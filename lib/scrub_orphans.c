/*
 * scrub_orphans.c — segment objects nothing keeps, found by a scrub
 * (scrub_orphans.h).
 */
#include "scrub_orphans.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compactor.h"
#include "segment.h"
#include "volume_internal.h"

void gfs_orphans_begin(struct glidefs_volume *v, struct gfs_orphans *o)
{
    o->known_epoch = v->sv.last_seg_epoch;
    o->known_seq = v->sv.last_seg_seq;
    snprintf(o->prefix, sizeof o->prefix, "nbd/%s/seg/", v->name);
}

int gfs_orphans_consider(struct gfs_orphans *o, const char *key, uint64_t size)
{
    /* exactly <prefix><16 hex>-<16 hex>: no deeper path, no other volume
     * (a name that merely starts like ours has another prefix), no other
     * spelling of the numbers */
    size_t pl = strlen(o->prefix);
    uint64_t e, q;
    if (!o->prefix[0] || strncmp(key, o->prefix, pl) != 0 || strlen(key + pl) != 33 ||
        gfs_parse_epoch_seq(key + pl, &e, &q) < 0 || e == 0 || e > GFS_EPOCH_MASK || q == 0)
        return 0;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        struct gfs_orphan *n = realloc(o->o, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        o->o = n;
        o->cap = cap;
    }
    char *k = strdup(key);
    if (!k)
        return -ENOMEM;
    o->o[o->n++] = (struct gfs_orphan){k, size, e, q};
    return 0;
}

void gfs_orphans_settle(struct glidefs_volume *v, struct gfs_orphans *o)
{
    size_t k = 0;
    for (size_t i = 0; i < o->n; i++) {
        struct gfs_orphan *c = &o->o[i];
        /* after the newest segment known before the listing, and counting:
         * it may have been in flight when listed (then committed, and
         * perhaps compacted away since); the next scrub judges it */
        int was_new = gfs_view_seg_counts(&v->sv, c->epoch, c->seq) &&
                      (c->epoch > o->known_epoch ||
                       (c->epoch == o->known_epoch && c->seq > o->known_seq));
        int orphan = !was_new && gfs_view_seg_garbage(&v->sv, c->epoch, c->seq) &&
                     !gfs_held_epoch(v, c->epoch) &&
                     !gfs_pinned(v, gfs_ep(v->meta.depth, c->epoch), c->seq);
        if (orphan)
            o->o[k++] = *c;
        else
            free(c->key);
    }
    o->n = k;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Forget deleted keys that compaction's garbage list also holds (lock
 * held), so that it does not count them again. */
static void unlist_garbage(struct glidefs_volume *v, const struct gfs_orphans *o,
                           const uint8_t *done)
{
    if (!v->sv.ngarbage)
        return;
    const char **gone = malloc(o->n * sizeof *gone);
    if (!gone)
        return; /* compaction deletes them again: harmless */
    size_t ng = 0;
    for (size_t j = 0; j < o->n; j++)
        if (done[j])
            gone[ng++] = o->o[j].key;
    qsort(gone, ng, sizeof *gone, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < v->sv.ngarbage; i++) {
        const char *g = v->sv.garbage[i];
        if (ng && bsearch(&g, gone, ng, sizeof *gone, cmp_str))
            free(v->sv.garbage[i]);
        else
            v->sv.garbage[k++] = v->sv.garbage[i];
    }
    v->sv.ngarbage = k;
    free(gone);
}

int gfs_orphans_delete(struct glidefs_volume *v, struct gfs_orphans *o, uint8_t *done)
{
    if (!o->n)
        return 0;
    /* compaction's rule wants a manifest stored since open (one that names
     * none of them): store one as compaction would */
    pthread_mutex_lock(&v->lock);
    int need = !v->ckpt.gen && v->sv.last_seg_epoch && v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    if (need) {
        int r = gfs_volume_write_manifest_force(v);
        if (r < 0)
            return r;
    }
    char **keys = malloc(o->n * sizeof *keys);
    if (!keys)
        return -ENOMEM;
    for (size_t i = 0; i < o->n; i++)
        keys[i] = o->o[i].key;
    pthread_mutex_lock(&v->lock);
    int r = gfs_compact_drop_garbage(v, keys, o->n, 0, done);
    if (r > 0)
        unlist_garbage(v, o, done);
    pthread_mutex_unlock(&v->lock);
    free(keys);
    return r;
}

void gfs_orphans_free(struct gfs_orphans *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->o[i].key);
    free(o->o);
    o->o = NULL;
    o->n = o->cap = 0;
}
