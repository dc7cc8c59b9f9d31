/*
 * wake.c — cold start: the access profile recorded while a volume is
 * served, stored beside it, loaded at the next open and prefetched ahead
 * of the guest; copied to clones (see wake.h, docs/design.md 4.12).
 */
#include "wake.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "readahead.h"
#include "volume_internal.h"

/* the largest object a profile can be */
#define PROFILE_MAX_BYTES ((size_t)GFS_PROFILE_HDR + 8u * GFS_PROFILE_MAX + 4 + GFS_MAC_LEN)

static void profile_key(char *key, size_t len, const char *name)
{
    snprintf(key, len, "nbd/%s/profile", name);
}

int gfs_wake_init(struct glidefs_volume *v, const struct glidefs_config *cfg)
{
    struct gfs_wake_state *w = &v->wake;
    w->enabled = cfg->cache_profile_s > 0 && cfg->cache_profile_mb > 0;
    uint64_t cap = 0;
    if (w->enabled) {
        uint64_t nblk = (v->size + v->bs - 1) / v->bs;
        cap = ((uint64_t)cfg->cache_profile_mb << 20) / v->bs;
        if (cap > nblk)
            cap = nblk;
        if (cap > GFS_PROFILE_MAX)
            cap = GFS_PROFILE_MAX;
    }
    /* a read-only open never stores one: nothing to record */
    if (v->ro_forced)
        cap = 0;
    return gfs_profile_rec_init(&w->rec, (uint32_t)cap, gfs_now_ms(),
                                (int64_t)cfg->cache_profile_s * 1000);
}

void gfs_wake_free(struct glidefs_volume *v)
{
    struct gfs_wake_state *w = &v->wake;
    gfs_profile_rec_free(&w->rec);
    gfs_blkset_free(&w->loaded);
    free(w->mark);
    free(w->prev);
    w->mark = NULL;
    w->prev = NULL;
    w->nloaded = 0;
}

/* read-ahead put profile block b into the cache (lock held) */
static void on_filled(void *arg, uint64_t b)
{
    struct glidefs_volume *v = arg;
    struct gfs_wake_state *w = &v->wake;
    int64_t i = gfs_blkset_get(&w->loaded, b);
    if (i >= 0 && w->mark[i] == 0) {
        w->mark[i] = 1;
        w->unread++;
    }
}

/* On a read-ahead worker, lock not held: GET, check, and hand the profile
 * to read-ahead. Any failure only means a cold start without it. */
static void load_profile(void *arg)
{
    struct glidefs_volume *v = arg;
    char key[GLIDEFS_NAME_MAX + 32];
    profile_key(key, sizeof key, v->name);
    void *buf = NULL;
    size_t len = 0;
    int r = v->store->ops->get(v->store, key, PROFILE_MAX_BYTES, &buf, &len, NULL);
    if (r == -ENOENT) {
        gfs_debug(&v->log, "%s: no access profile to prefetch", v->name);
        return;
    }
    if (r < 0) {
        gfs_warn(&v->log, "%s: cannot read the access profile (cold start without it): %s",
                 v->name, glidefs_strerror(r));
        return;
    }
    uint64_t *bl = NULL, vsize = 0;
    uint32_t n = 0;
    const char *why = NULL;
    r = gfs_profile_decode(buf, len, v->bs, v->codec, &bl, &n, &vsize, &why);
    free(buf);
    if (r < 0) {
        gfs_warn(&v->log, "%s: %s is ignored: %s", v->name, key,
                 why ? why : glidefs_strerror(r));
        return;
    }
    struct gfs_blkset set;
    uint8_t *mark = n ? calloc(n, 1) : NULL;
    uint64_t *prev = n ? malloc((size_t)n * sizeof *prev) : NULL;
    if (n == 0 || !mark || !prev || gfs_blkset_init(&set, n) < 0) {
        free(mark);
        free(prev);
        free(bl);
        return;
    }
    memcpy(prev, bl, (size_t)n * sizeof *prev);
    for (uint32_t i = 0; i < n; i++)
        gfs_blkset_add(&set, bl[i], i);
    pthread_mutex_lock(&v->lock);
    struct gfs_wake_state *w = &v->wake;
    w->loaded = set;
    w->mark = mark;
    w->prev = prev;
    w->nloaded = n;
    /* ra takes bl; blocks past a shrunk volume's end are skipped there */
    gfs_ra_prefetch_start(v->ra, bl, n, &w->loaded, on_filled, v);
    pthread_mutex_unlock(&v->lock);
    gfs_info(&v->log, "%s: prefetching the %" PRIu32 " blocks of its access profile", v->name, n);
}

void gfs_wake_start(struct glidefs_volume *v)
{
    if (!v->wake.enabled || !v->ra)
        return;
    SCOPED_LOCK(&v->lock);
    gfs_ra_run(v->ra, load_profile, v);
}

void gfs_wake_note_read(struct glidefs_volume *v, uint64_t fb, uint64_t lb)
{
    struct gfs_wake_state *w = &v->wake;
    if (!w->rec.done) {
        gfs_profile_rec_note(&w->rec, fb, lb, gfs_now_ms());
        v->st.profile_blocks_recorded = w->rec.n;
    }
    if (!w->nloaded || w->stopped)
        return;
    /* Following? A run of GFS_WAKE_OFF_RUN block reads in a row outside the
     * profile: the guest does something else now, so fetch no more (what
     * is in flight, at most the in-flight cap, still lands). */
    for (uint64_t b = fb; b <= lb && b < fb + GFS_WAKE_OFF_RUN; b++) {
        int64_t i = gfs_blkset_get(&w->loaded, b);
        if (i >= 0) {
            w->off_run = 0;
            if ((uint32_t)i > w->guest_max)
                w->guest_max = (uint32_t)i;
        } else {
            w->off_run++;
        }
    }
    if (w->off_run >= GFS_WAKE_OFF_RUN) {
        w->stopped = 1;
        gfs_ra_prefetch_stop(v->ra);
        gfs_info(&v->log, "%s: the guest stopped following its access profile at block %" PRIu32
                 " of %" PRIu32 ": prefetch stopped", v->name, w->guest_max, w->nloaded);
    }
}

void gfs_wake_cache_hit(struct glidefs_volume *v, uint64_t b)
{
    struct gfs_wake_state *w = &v->wake;
    if (!w->unread)
        return;
    int64_t i = gfs_blkset_get(&w->loaded, b);
    if (i >= 0 && w->mark[i] == 1) {
        w->mark[i] = 2;
        w->unread--;
        v->st.prefetch_hits++;
    }
}

void gfs_wake_read_done(struct glidefs_volume *v)
{
    if (atomic_load_explicit(&v->wake.first_read_ms, memory_order_relaxed))
        return;
    int64_t zero = 0, t = gfs_now_ms() - v->opened_ms;
    atomic_compare_exchange_strong(&v->wake.first_read_ms, &zero, t > 0 ? t : 1);
}

int gfs_wake_save(struct glidefs_volume *v)
{
    struct gfs_wake_state *w = &v->wake;
    pthread_mutex_lock(&v->lock);
    uint32_t n = w->rec.n;
    /* only the writer stores it (a follower's reads are not the guest's
     * boot), and only when this session recorded something new */
    if (!v->owner || v->fenced || n == 0 || n == w->saved_n) {
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (n == w->nloaded && memcmp(w->rec.blocks, w->prev, (size_t)n * sizeof *w->prev) == 0) {
        w->saved_n = n; /* the store holds this very list */
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    CLEANUP_FREE uint64_t *bl = malloc((size_t)n * sizeof *bl);
    if (bl)
        memcpy(bl, w->rec.blocks, (size_t)n * sizeof *bl);
    uint64_t size = v->size;
    pthread_mutex_unlock(&v->lock);
    if (!bl)
        return -ENOMEM;
    CLEANUP_FREE uint8_t *obj = NULL;
    size_t len = 0;
    int r = gfs_profile_encode(bl, n, size, v->bs, v->codec, &obj, &len);
    char key[GLIDEFS_NAME_MAX + 32];
    profile_key(key, sizeof key, v->name);
    if (r == 0)
        r = v->store->ops->put(v->store, key, obj, len, 0, NULL);
    if (r < 0) {
        gfs_warn(&v->log, "%s: storing the access profile failed: %s", v->name,
                 glidefs_strerror(r));
        return r;
    }
    pthread_mutex_lock(&v->lock);
    if (n > w->saved_n)
        w->saved_n = n;
    pthread_mutex_unlock(&v->lock);
    gfs_debug(&v->log, "%s: stored an access profile of %" PRIu32 " blocks", v->name, n);
    return 0;
}

int gfs_wake_copy_profile(struct gfs_objstore *store, struct gfs_log *log, const char *from,
                          const char *to)
{
    char key[GLIDEFS_NAME_MAX + 32];
    profile_key(key, sizeof key, from);
    void *buf = NULL;
    size_t len = 0;
    int r = store->ops->get(store, key, PROFILE_MAX_BYTES, &buf, &len, NULL);
    if (r == -ENOENT)
        return 0;
    if (r == 0) {
        /* the same data identity (seals, MACs): the bytes verify as the child's */
        profile_key(key, sizeof key, to);
        r = store->ops->put(store, key, buf, len, 0, NULL);
    }
    free(buf);
    if (r < 0)
        gfs_warn(log, "%s: copying the access profile to clone %s failed (it starts cold): %s",
                 from, to, glidefs_strerror(r));
    return r;
}
