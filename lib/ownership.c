/*
 * ownership.c — the ownership thread of an open volume (ownership.h): it
 * heartbeats the write lease while we hold it (lease_state.c decides) and,
 * while we do not, follows the store (follow.c): new fences and new
 * segments, and now and then volume.json for a resize. A store that keeps
 * failing is looked at less and less often.
 */
#include "ownership.h"

#include <pthread.h>

#include "follow.h"
#include "lease_state.h"
#include "volume_internal.h"

#define FOLLOW_PAUSE_MAX_MS 30000 /* a read-only volume whose store fails: at most */

static void *own_main(void *arg)
{
    struct glidefs_volume *v = arg;
    int64_t hb_every = v->own.lease_timeout_ms / 3;
    int64_t refresh_every = v->own.lease_timeout_ms / 10;
    if (refresh_every < 100)
        refresh_every = 100;
    if (refresh_every > 1000)
        refresh_every = 1000;
    int64_t size_checked_ms = gfs_now_ms();
    int follow_fails = 0; /* in a row: the next look waits longer */
    pthread_mutex_lock(&v->own_lock);
    while (!v->own.stop) {
        pthread_mutex_lock(&v->lock);
        int owner = v->owner, fenced = v->fenced;
        int refresh = v->own.want_refresh && !v->own.nofollow;
        pthread_mutex_unlock(&v->lock);
        if (owner)
            gfs_own_heartbeat(v);
        else if (refresh && !fenced) {
            int r = gfs_volume_refresh(v);
            /* a resize by the writer shows only in volume.json: look now
             * and then (one GET), so a new client here sees the new size */
            int64_t now = gfs_now_ms();
            if (r == 0 && now - size_checked_ms >= 10 * refresh_every) {
                size_checked_ms = now;
                r = gfs_volmeta_follow_size(v);
            }
            if (r < 0 && !follow_fails++)
                gfs_warn(&v->log, "%s: following the store failed: %s (trying again, less "
                         "and less often)", v->name, glidefs_strerror(r));
            else if (r == 0 && follow_fails) {
                gfs_info(&v->log, "%s: following the store again after %d failure(s)", v->name,
                         follow_fails);
                follow_fails = 0;
            }
        }
        int64_t wait = owner ? hb_every : refresh_every;
        for (int i = 0; !owner && i < follow_fails && wait < FOLLOW_PAUSE_MAX_MS; i++)
            wait *= 2;
        if (wait > FOLLOW_PAUSE_MAX_MS && !owner)
            wait = FOLLOW_PAUSE_MAX_MS;
        struct timespec ts;
        gfs_timespec_in(&ts, wait);
        if (!v->own.stop)
            pthread_cond_timedwait(&v->own.cond, &v->own_lock, &ts);
    }
    pthread_mutex_unlock(&v->own_lock);
    return NULL;
}

int gfs_own_start(struct glidefs_volume *v)
{
    if (v->own.running)
        return 0;
    v->own.stop = 0;
    int r = pthread_create(&v->own.thr, NULL, own_main, v);
    if (r != 0)
        return -r;
    v->own.running = 1;
    return 0;
}

void gfs_own_stop(struct glidefs_volume *v)
{
    if (!v->own.running)
        return;
    pthread_mutex_lock(&v->own_lock);
    v->own.stop = 1;
    pthread_cond_broadcast(&v->own.cond);
    pthread_mutex_unlock(&v->own_lock);
    pthread_join(v->own.thr, NULL);
    v->own.running = 0;
}

