/*
 * clone.c — clones (docs/design.md 4.8): a new volume whose volume.json
 * names its lineage (ancestors, root first) and its parent's snapshot
 * manifest as its base; it shares the ancestors' segments and writes only
 * to its own prefix. Creating one is three small PUTs whatever the
 * parent's size; the child's volume.json is written last, with
 * If-None-Match, so a crash leaves either no clone or a complete one. Its
 * map is flat (manifests record each segment's origin), so reads never
 * walk the chain. The parent's access profile (wake.h) is copied to the
 * clone after it exists.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fsutil.h"
#include "snapobj.h"
#include "snapshot.h"
#include "volume_internal.h"

GLIDEFS_API int glidefs_volume_lineage(glidefs_volume *v, char names[][GLIDEFS_NAME_MAX + 1],
                                       int max, char *snapshot, size_t snaplen)
{
    SCOPED_LOCK(&v->lock);
    int n = (int)v->meta.depth;
    for (int i = 0; i < n && i < max; i++)
        snprintf(names[i], GLIDEFS_NAME_MAX + 1, "%s", v->meta.lineage[i]);
    if (snapshot && snaplen)
        snprintf(snapshot, snaplen, "%s", n ? v->meta.parent_snapshot : "");
    return n;
}

GLIDEFS_API int glidefs_clone(glidefs_volume *parent, const char *snapshot, const char *child)
{
    if (!child || !glidefs_name_valid(child) || strcmp(child, parent->name) == 0 ||
        (snapshot && !glidefs_name_valid(snapshot)))
        return -EINVAL;
    if (parent->meta.depth + 1 > GFS_MAX_DEPTH)
        return -EMLINK;
    char snap[GLIDEFS_NAME_MAX + 8];
    char key[512];
    int r;
    /* the child must not exist (a tombstone counts): refuse before writing anything */
    snprintf(key, sizeof key, "nbd/%s/volume.json", child);
    struct gfs_obj_info info;
    r = parent->store->ops->head(parent->store, key, &info);
    if (r == 0)
        return -EEXIST;
    if (r != -ENOENT)
        return r;
    if (snapshot) {
        snprintf(snap, sizeof snap, "%s", snapshot);
    } else {
        /* of the current flushed state: an implicit snapshot only this clone
         * uses; one left by a crashed attempt (or a deleted clone of the same
         * name) is stale, so take it anew */
        snprintf(snap, sizeof snap, "@clone-%s", child);
        snprintf(key, sizeof key, "nbd/%s/snap/%s", parent->name, snap);
        r = parent->store->ops->del(parent->store, key);
        if (r == 0)
            r = gfs_snapshot_take(parent, snap);
        if (r < 0)
            return r;
    }
    struct gfs_snapinfo si;
    r = gfs_snap_read(parent->store, parent->name, snap, &si);
    if (r < 0)
        return r == -ENOENT ? -ENOENT : r;

    struct gfs_volmeta *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    pthread_mutex_lock(&parent->lock);
    *m = parent->meta;
    pthread_mutex_unlock(&parent->lock);
    /* a new identity; the data identity (seals, MACs, key wrap) stays the root's */
    if (gfs_uuid_new(m->uuid) < 0) {
        free(m);
        return -EIO;
    }
    gfs_uuid_format(m->uuid, m->uuid_str);
    snprintf(m->lineage[m->depth], sizeof m->lineage[m->depth], "%s", parent->name);
    m->depth++;
    m->size = si.size;
    m->created_ms = gfs_wall_ms();
    snprintf(m->parent_snapshot, sizeof m->parent_snapshot, "%s", snap);
    snprintf(m->base_manifest, sizeof m->base_manifest, "%s", si.manifest);
    CLEANUP_FREE char *txt = gfs_volmeta_text(m, 0);
    free(m);
    if (!txt)
        return -ENOMEM;

    /* the parent learns of the child first: a crash here leaves only a marker
     * (the child does not exist, so a marker of that name is stale) */
    json_t *mk = json_pack("{s:s, s:I}", "snapshot", snap, "created_ms",
                           (json_int_t)gfs_wall_ms());
    CLEANUP_FREE char *mtxt = mk ? json_dumps(mk, JSON_SORT_KEYS) : NULL;
    json_decref(mk);
    if (!mtxt)
        return -ENOMEM;
    snprintf(key, sizeof key, "nbd/%s/children/%s", parent->name, child);
    r = parent->store->ops->put(parent->store, key, mtxt, strlen(mtxt), 0, NULL);
    if (r < 0)
        return r;
    snprintf(key, sizeof key, "nbd/%s/volume.json", child);
    r = parent->store->ops->put(parent->store, key, txt, strlen(txt), GFS_PUT_IF_NONE_MATCH, NULL);
    if (r < 0)
        return r;
    gfs_info(&parent->log, "%s: cloned into %s from snapshot %s", parent->name, child, snap);
    /* the clone boots like its parent: it starts with the parent's access
     * profile (refined by its own first wake). Advisory: a clone without
     * one only starts cold */
    gfs_wake_copy_profile(parent->store, &parent->log, parent->name, child);
    return 0;
}
