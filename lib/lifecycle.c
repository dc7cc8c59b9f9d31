/*
 * lifecycle.c — the write lease changing hands on an open volume:
 * glidefs_promote (take it: refresh the map, take, start the syncer, hold
 * the view of a fenced holder) and glidefs_release (drain, stop the
 * syncer, store a manifest, mark the lease released). Opening and closing
 * are volume_open.c's.
 */
#include <errno.h>

#include "cleanup.h"
#include "checkpoint.h"
#include "follow.h"
#include "lease_state.h"
#include "localstate.h"
#include "snapshot.h"
#include "volume_internal.h"

static int promote_locked(glidefs_volume *v, int force)
{
    SCOPED_LOCK(&v->own_lock);
    pthread_mutex_lock(&v->lock);
    int owner = v->owner, ro_open = v->ro_forced, stale = v->fenced && v->dirty.nblocks > 0;
    pthread_mutex_unlock(&v->lock);
    if (owner)
        return 0;
    if (ro_open)
        return -EROFS;
    if (stale) {
        /* writes of the epoch we lost are still in the dirty index: as the
         * writer of a new epoch we would upload them over the newer
         * writer's data. Reopening keeps them aside (fenced-*) first. */
        gfs_err(&v->log, "%s: not promoting: this node was fenced with unsynced writes of its "
                "lost epoch; close and reopen the volume (they are kept aside), then promote",
                v->name);
        return -ESTALE;
    }
    /* a live holder: say so with one read (orchestrators poll promote) */
    struct gfs_lease cur;
    int r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return r;
    if (!force && cur.exists && !cur.released && !gfs_own_lease_ours(v, &cur) &&
        !gfs_lease_expired(&cur, gfs_wall_ms(), v->own.lease_timeout_ms))
        return -EBUSY;
    /* everything the previous writer stored before the hand-over */
    r = gfs_volume_refresh(v);
    if (r == 0)
        r = gfs_volmeta_follow_size(v);
    if (r < 0)
        return r;
    int got, busy;
    r = gfs_own_take(v, force, &got, &busy);
    if (r < 0)
        return r;
    if (busy)
        return -EBUSY;
    r = gfs_local_epoch_write(v->dir, v->epoch);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->own.want_refresh = 0;
    v->st.read_only = 0;
    pthread_mutex_unlock(&v->lock);
    r = gfs_syncer_start(v);
    pthread_cond_broadcast(&v->own.cond); /* heartbeat on the new schedule */
    return r;
}

GLIDEFS_API int glidefs_promote(glidefs_volume *v, unsigned flags)
{
    if (flags & ~GLIDEFS_PROMOTE_FORCE)
        return -EINVAL;
    int r = promote_locked(v, !!(flags & GLIDEFS_PROMOTE_FORCE));
    /* after own_lock is let go: the hold is a snapshot, which may drain */
    if (r == 0)
        gfs_fence_hold(v);
    return r;
}

GLIDEFS_API int glidefs_release(glidefs_volume *v, int64_t timeout_ms)
{
    pthread_mutex_lock(&v->lock);
    int owner = v->owner;
    pthread_mutex_unlock(&v->lock);
    if (!owner)
        return 0;
    int r = glidefs_drain(v, timeout_ms);
    if (r < 0)
        return r;
    SCOPED_LOCK(&v->own_lock);
    /* no write may slip in between the drain and the release */
    pthread_mutex_lock(&v->lock);
    v->read_only = 1;
    int dirty = v->dirty.nblocks > 0;
    pthread_mutex_unlock(&v->lock);
    if (dirty) {
        pthread_mutex_lock(&v->lock);
        v->read_only = 0;
        pthread_mutex_unlock(&v->lock);
        return -EAGAIN;
    }
    gfs_syncer_stop(v);
    r = gfs_volume_write_manifest_handover(v);
    if (r == 0)
        r = gfs_own_release(v);
    if (r < 0) {
        pthread_mutex_lock(&v->lock);
        v->read_only = 0;
        pthread_mutex_unlock(&v->lock);
        gfs_syncer_start(v);
        return r;
    }
    pthread_cond_broadcast(&v->own.cond);
    return 0;
}
