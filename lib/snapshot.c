/*
 * snapshot.c — named snapshots (docs/design.md 4.8, 5.9). A snapshot is
 * one small object, nbd/<vol>/snap/<name>, naming the manifest that held
 * the volume's drained state when it was taken. It pins that manifest and
 * every segment the manifest references: compaction and purge leave them
 * alone (pins.c). Also the implicit "@fenced-<epoch>" snapshot a takeover
 * leaves for the node it fenced. Clones are clone.c's.
 */
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "snapobj.h"
#include "volume_internal.h"

/* Take snapshot `name` (internal names may start with '@'). */
int gfs_snapshot_take(glidefs_volume *v, const char *name)
{
    pthread_mutex_lock(&v->lock);
    int owner = v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    if (!owner)
        return -EROFS;
    int r = glidefs_drain(v, -1); /* stores a manifest covering everything */
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    int need_own = v->meta.depth && !v->sv.manifest_epoch && !v->sv.manifest_seq && !v->ckpt.gen;
    pthread_mutex_unlock(&v->lock);
    if (need_own) {
        /* a clone still reading its parent's manifest: store its own (key
         * 0-0 when it has no segments yet), or the snapshot would name none */
        r = gfs_volume_write_manifest_force(v);
        if (r < 0)
            return r;
    }
    pthread_mutex_lock(&v->lock);
    int named = v->sv.manifest_epoch || v->sv.manifest_seq || v->ckpt.gen;
    pthread_mutex_unlock(&v->lock);
    if (named) {
        /* fold: what a snapshot pins is always a base, not a chain */
        r = gfs_volume_write_manifest_base(v);
        if (r < 0)
            return r;
    }
    pthread_mutex_lock(&v->lock);
    char man[40] = "";
    if (v->sv.manifest_epoch || v->sv.manifest_seq || v->ckpt.gen)
        snprintf(man, sizeof man, "%016" PRIx64 "-%016" PRIx64, v->sv.manifest_epoch,
                 v->sv.manifest_seq);
    int covered = v->sv.segs_since_manifest == 0;
    uint64_t size = v->size;
    pthread_mutex_unlock(&v->lock);
    if (!covered)
        return -EAGAIN; /* the writer raced us; the caller may retry */
    json_t *root = json_pack("{s:s, s:o, s:I, s:I}", "name", name, "manifest",
                             man[0] ? json_string(man) : json_null(), "created_ms",
                             (json_int_t)gfs_wall_ms(), "size", (json_int_t)size);
    CLEANUP_FREE char *txt = root ? json_dumps(root, JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!txt)
        return -ENOMEM;
    char key[512];
    if (man[0]) {
        snprintf(key, sizeof key, "nbd/%s/manifest/%s", v->name, man);
        r = gfs_pins_add_manifest(v, key);
        if (r < 0)
            return r;
    }
    snprintf(key, sizeof key, "nbd/%s/snap/%s", v->name, name);
    r = v->store->ops->put(v->store, key, txt, strlen(txt), GFS_PUT_IF_NONE_MATCH, NULL);
    if (r < 0)
        return r;
    gfs_info(&v->log, "%s: snapshot %s taken (manifest %s)", v->name, name, man[0] ? man : "none");
    return gfs_snapshots_load(v);
}

GLIDEFS_API int glidefs_snapshot_create(glidefs_volume *v, const char *name)
{
    if (!name || !glidefs_name_valid(name))
        return -EINVAL;
    return gfs_snapshot_take(v, name);
}

GLIDEFS_API int glidefs_snapshot_list(glidefs_volume *v, glidefs_snapshot_fn fn, void *arg)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/snap/", v->name);
    struct gfs_keylist l = {0};
    int r = v->store->ops->list(v->store, prefix, NULL, gfs_keylist_add, &l);
    for (size_t i = 0; i < l.n && r >= 0; i++) {
        const char *name = strrchr(l.keys[i], '/') + 1;
        if (!glidefs_name_valid(name))
            continue; /* internal ones (a clone's implicit snapshot) */
        struct gfs_snapinfo si;
        if (gfs_snap_read(v->store, v->name, name, &si) == 0)
            r = fn(arg, name, si.created_ms, si.size);
    }
    gfs_keylist_free(&l);
    return r < 0 ? r : 0;
}

GLIDEFS_API int glidefs_snapshot_delete(glidefs_volume *v, const char *name)
{
    if (!name || !glidefs_name_valid(name))
        return -EINVAL;
    pthread_mutex_lock(&v->lock);
    int owner = v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    if (!owner)
        return -EROFS;
    struct gfs_snapinfo si;
    int r = gfs_snap_read(v->store, v->name, name, &si);
    if (r < 0)
        return r;
    r = gfs_snapshot_in_use(v->store, v->name, name);
    if (r < 0)
        return r;
    if (r > 0)
        return -EBUSY;
    char key[512];
    snprintf(key, sizeof key, "nbd/%s/snap/%s", v->name, name);
    r = v->store->ops->del(v->store, key);
    return r < 0 ? r : gfs_snapshots_load(v);
}

/* We just took the write lease from a holder that had not released it
 * (forced, or its heartbeat expired): that node may come back with writes
 * it never uploaded, kept aside, and glidefs_fenced_export rebuilds its view
 * from the store. Hold that view: an implicit snapshot "@fenced-<epoch>" of
 * the state we took over pins its manifest and segments, and compaction
 * keeps that epoch's late segments while it exists, until
 * compaction.fenced_hold_s has passed (compactor.c). Best effort: a failure
 * is logged, the takeover stands. */

int gfs_fence_hold(struct glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    uint64_t e = v->own.took_from_epoch;
    v->own.took_from_epoch = 0;
    pthread_mutex_unlock(&v->lock);
    if (!e || v->snap.fenced_hold_ms <= 0)
        return 0;
    char name[GLIDEFS_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s%" PRIu64, GFS_FENCED_HOLD_PREFIX, e);
    int r = gfs_snapshot_take(v, name);
    if (r == -EEXIST)
        r = 0;
    if (r < 0)
        gfs_warn(&v->log, "%s: cannot hold the data of fenced epoch %" PRIu64
                 " for its node: %s (its kept-aside writes may become unexportable once "
                 "compaction runs)", v->name, e, glidefs_strerror(r));
    else
        gfs_info(&v->log, "%s: holding the view of fenced epoch %" PRIu64 " (snapshot %s)",
                 v->name, e, name);
    return r;
}
