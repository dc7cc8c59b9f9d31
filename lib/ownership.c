/*
 * ownership.c — taking, keeping, handing over and losing the write lease of
 * an open volume (lease.h has the object). A read-write volume heartbeats the
 * lease; if the conditional heartbeat finds that another node took it over,
 * the volume is fenced: writes fail with -EROFS, nothing more is uploaded and
 * its unsynced data stays in the journal (kept aside at the next open). A
 * read-only volume follows the store instead: new fences and new segments.
 */
#include "volume_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

#define ACQUIRE_TRIES 8
#define RACE_PAUSE_MS 10      /* after a lost race on the lease, doubling ... */
#define FOLLOW_PAUSE_MAX_MS 30000 /* a read-only volume whose store fails: at most */

/* Lost a race for the lease (or the store said so under contention): a
 * short pause, growing, with jitter, before looking again. */
static void race_pause(int attempt)
{
    int64_t d = (int64_t)RACE_PAUSE_MS << (attempt < 6 ? attempt : 6);
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)gfs_now_ms();
    d = d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
    struct timespec ts = {.tv_sec = d / 1000, .tv_nsec = (d % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* <dir>/epoch: the epoch our journal's records belong to. */
int gfs_own_state_read(struct glidefs_volume *v, uint64_t *epoch)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/epoch", v->dir);
    FILE *f = fopen(path, "re");
    *epoch = 0;
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    unsigned long long e = 0;
    int n = fscanf(f, "%llu", &e);
    fclose(f);
    if (n != 1)
        return -EIO;
    *epoch = e;
    return 0;
}

int gfs_own_state_write(struct glidefs_volume *v)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/epoch", v->dir);
    snprintf(tmp, sizeof tmp, "%s/epoch.tmp", v->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", v->epoch);
    int r = 0;
    if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
        r = -errno ? -errno : -EIO;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r == 0) {
        int dfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return r;
}

/* Become the writer under lease l (already written). Called with v->lock. */
static void become_owner(struct glidefs_volume *v, const struct gfs_lease *l, int same_epoch)
{
    v->lease = *l;
    v->owner = 1;
    v->fenced = 0;
    v->read_only = 0;
    v->epoch = l->epoch;
    v->next_seg_seq = same_epoch ? gfs_volume_last_seq_of(v, l->epoch) + 1 : 1;
}

/* Try to take the lease. *got = 1 when we hold it afterwards. Called with
 * own_lock (or before any thread runs). */
static int take(struct glidefs_volume *v, int force, int *got, int *busy)
{
    *got = *busy = 0;
    for (int attempt = 0; attempt < ACQUIRE_TRIES; attempt++) {
        struct gfs_lease l;
        int r = gfs_lease_read(v->store, v->name, &l);
        if (r < 0)
            return r;
        struct gfs_lease n = l;
        int64_t now = gfs_wall_ms();
        int same_epoch = 0;
        uint64_t took = 0;
        if (!l.exists) {
            /* a volume without a lease (new): epoch 1, or past what the store has */
            memset(&n, 0, sizeof n);
            pthread_mutex_lock(&v->lock);
            n.epoch = v->last_seg_epoch + 1;
            if (v->last_seg_epoch)
                r = gfs_lease_add_fence(&n, v->last_seg_epoch,
                                        gfs_volume_last_seq_of(v, v->last_seg_epoch));
            pthread_mutex_unlock(&v->lock);
            if (r < 0)
                return r;
        } else if (!l.released && strcmp(l.node_id, v->node_id) == 0) {
            same_epoch = 1; /* ours already (we restarted): carry on in the same epoch */
        } else if (l.released || force || gfs_lease_expired(&l, now, v->lease_timeout_ms)) {
            /* Take over: fence the previous epoch at the last segment we know.
             * The caller refreshed the map, so it holds all that epoch wrote
             * before the hand-over. */
            pthread_mutex_lock(&v->lock);
            uint64_t last = gfs_volume_last_seq_of(v, l.epoch);
            pthread_mutex_unlock(&v->lock);
            r = gfs_lease_add_fence(&n, l.epoch, last);
            if (r < 0)
                return r;
            n.epoch = l.epoch + 1;
            if (!l.released) {
                gfs_warn(&v->log, "%s: taking the lease from node %s (%s)", v->name, l.node_id,
                         force ? "forced" : "its heartbeat expired");
                took = l.epoch;
            }
        } else {
            v->lease = l;
            *busy = 1;
            return 0;
        }
        snprintf(n.node_id, sizeof n.node_id, "%s", v->node_id);
        n.heartbeat_ms = now;
        n.released = 0;
        r = gfs_lease_write(v->store, v->name, &n);
        if (r == -ECANCELED || r == -EEXIST) {
            race_pause(attempt); /* it changed under us: look again */
            continue;
        }
        if (r < 0)
            return r;
        pthread_mutex_lock(&v->lock);
        become_owner(v, &n, same_epoch);
        v->took_from_epoch = took;
        pthread_mutex_unlock(&v->lock);
        gfs_info(&v->log, "%s: holding the write lease, epoch %" PRIu64, v->name, n.epoch);
        *got = 1;
        return 0;
    }
    return -EBUSY;
}

int gfs_own_acquire(struct glidefs_volume *v, int want_rw)
{
    int got = 0, busy = 0;
    if (want_rw) {
        int r = take(v, 0, &got, &busy);
        if (r < 0)
            return r;
        if (busy)
            gfs_info(&v->log, "%s: node %s holds the write lease; attaching read-only", v->name,
                     v->lease.node_id);
    } else {
        int r = gfs_lease_read(v->store, v->name, &v->lease);
        if (r < 0)
            return r;
    }
    if (!got) {
        v->owner = 0;
        v->read_only = 1;
        v->want_refresh = 1;
        v->epoch = v->lease.exists ? v->lease.epoch : 0;
    }
    return 0;
}

/* Another node holds the lease now: stop writing, wake whoever waits
 * (lock held). */
static void become_fenced(struct glidefs_volume *v)
{
    v->fenced = 1;
    v->owner = 0;
    v->read_only = 1;
    pthread_cond_broadcast(&v->cond);
    pthread_cond_broadcast(&v->syncer_cond);
}

static void heartbeat(struct glidefs_volume *v)
{
    struct gfs_lease n = v->lease;
    n.heartbeat_ms = gfs_wall_ms();
    int r = gfs_lease_write(v->store, v->name, &n);
    if (r == 0) {
        v->lease = n;
        return;
    }
    if (r != -ECANCELED && r != -EEXIST) {
        gfs_warn(&v->log, "%s: lease heartbeat failed: %s (will retry)", v->name,
                 glidefs_strerror(r));
        return;
    }
    struct gfs_lease cur;
    r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return;
    if (cur.exists && !cur.released && strcmp(cur.node_id, v->node_id) == 0 &&
        cur.epoch == v->lease.epoch) {
        v->lease = cur; /* still ours (our own earlier write landed late) */
        return;
    }
    pthread_mutex_lock(&v->lock);
    become_fenced(v);
    pthread_mutex_unlock(&v->lock);
    gfs_err(&v->log, "%s: fenced: node %s took the write lease (epoch %" PRIu64
            "); writes now fail and unsynced data stays in the journal", v->name,
            cur.exists ? cur.node_id : "?", cur.epoch);
    if (cur.exists)
        v->lease = cur;
}

/* Before deleting anything from the store: are we still the writer? A
 * writer deposed a moment ago learns it only at its next heartbeat, and
 * meanwhile the new writer reads segments we consider dead - dead only
 * because of our late segments, which it ignores. If the lease still names
 * us now, every segment we stored so far is visible to any later taker, so
 * what is dead for us is dead for it: deleting after this check is safe.
 * Not ours: we are fenced (as a heartbeat would find), -EROFS. */
int gfs_own_confirm(struct glidefs_volume *v)
{
    struct gfs_lease cur;
    int r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    uint64_t epoch = v->epoch;
    int ours = cur.exists && !cur.released && strcmp(cur.node_id, v->node_id) == 0 &&
               cur.epoch == epoch;
    if (!ours && v->owner)
        become_fenced(v);
    pthread_mutex_unlock(&v->lock);
    if (ours)
        return 0;
    gfs_err(&v->log, "%s: fenced: node %s holds the write lease (epoch %" PRIu64
            "); deleting nothing, writes now fail and unsynced data stays in the journal",
            v->name, cur.exists ? cur.node_id : "?", cur.epoch);
    return -EROFS;
}

static void *own_main(void *arg)
{
    struct glidefs_volume *v = arg;
    int64_t hb_every = v->lease_timeout_ms / 3;
    int64_t refresh_every = v->lease_timeout_ms / 10;
    if (refresh_every < 100)
        refresh_every = 100;
    if (refresh_every > 1000)
        refresh_every = 1000;
    int64_t size_checked_ms = gfs_now_ms();
    int follow_fails = 0; /* in a row: the next look waits longer */
    pthread_mutex_lock(&v->own_lock);
    while (!v->own_stop) {
        pthread_mutex_lock(&v->lock);
        int owner = v->owner, fenced = v->fenced, refresh = v->want_refresh;
        pthread_mutex_unlock(&v->lock);
        if (owner)
            heartbeat(v);
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
        if (!v->own_stop)
            pthread_cond_timedwait(&v->own_cond, &v->own_lock, &ts);
    }
    pthread_mutex_unlock(&v->own_lock);
    return NULL;
}

int gfs_own_start(struct glidefs_volume *v)
{
    if (v->own_running)
        return 0;
    v->own_stop = 0;
    int r = pthread_create(&v->own_thr, NULL, own_main, v);
    if (r != 0)
        return -r;
    v->own_running = 1;
    return 0;
}

void gfs_own_stop(struct glidefs_volume *v)
{
    if (!v->own_running)
        return;
    pthread_mutex_lock(&v->own_lock);
    v->own_stop = 1;
    pthread_cond_broadcast(&v->own_cond);
    pthread_mutex_unlock(&v->own_lock);
    pthread_join(v->own_thr, NULL);
    v->own_running = 0;
}

/* Mark the lease released (we hold own_lock; the syncer is stopped). */
int gfs_own_release(struct glidefs_volume *v)
{
    struct gfs_lease n = v->lease;
    n.released = 1;
    n.heartbeat_ms = gfs_wall_ms();
    int r = gfs_lease_write(v->store, v->name, &n);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->lease = n;
    v->owner = 0;
    v->read_only = 1;
    v->want_refresh = 1;
    /* Everything is in the store: an empty journal means a later open of an
     * ended epoch here has nothing to keep aside. */
    if (v->dirty.nblocks == 0)
        gfs_journal_reset(&v->journal);
    pthread_mutex_unlock(&v->lock);
    gfs_info(&v->log, "%s: released the write lease (epoch %" PRIu64 ")", v->name, n.epoch);
    return 0;
}

static int promote_locked(glidefs_volume *v, int force)
{
    SCOPED_LOCK(&v->own_lock);
    pthread_mutex_lock(&v->lock);
    int owner = v->owner, ro_open = v->ro_forced;
    pthread_mutex_unlock(&v->lock);
    if (owner)
        return 0;
    if (ro_open)
        return -EROFS;
    /* a live holder: say so with one read (orchestrators poll promote) */
    struct gfs_lease cur;
    int r = gfs_lease_read(v->store, v->name, &cur);
    if (r < 0)
        return r;
    if (!force && cur.exists && !cur.released && strcmp(cur.node_id, v->node_id) != 0 &&
        !gfs_lease_expired(&cur, gfs_wall_ms(), v->lease_timeout_ms))
        return -EBUSY;
    /* everything the previous writer stored before the hand-over */
    r = gfs_volume_refresh(v);
    if (r == 0)
        r = gfs_volmeta_follow_size(v);
    if (r < 0)
        return r;
    int got, busy;
    r = take(v, force, &got, &busy);
    if (r < 0)
        return r;
    if (busy)
        return -EBUSY;
    r = gfs_own_state_write(v);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->want_refresh = 0;
    v->st.read_only = 0;
    pthread_mutex_unlock(&v->lock);
    r = gfs_syncer_start(v);
    pthread_cond_broadcast(&v->own_cond); /* heartbeat on the new schedule */
    return r;
}

GLIDEFS_API int glidefs_promote(glidefs_volume *v, int force)
{
    int r = promote_locked(v, force);
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
    r = gfs_volume_write_manifest(v);
    if (r == 0)
        r = gfs_own_release(v);
    if (r < 0) {
        pthread_mutex_lock(&v->lock);
        v->read_only = 0;
        pthread_mutex_unlock(&v->lock);
        gfs_syncer_start(v);
        return r;
    }
    pthread_cond_broadcast(&v->own_cond);
    return 0;
}
