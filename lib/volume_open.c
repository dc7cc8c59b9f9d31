/*
 * volume_open.c — opening a volume (with crash recovery: the journal
 * replayed over the map, or kept aside when its epoch is over) and closing
 * it. Open is the only place that starts the volume's threads: read-ahead,
 * the syncer (while we hold the lease), the ownership thread, and the
 * hold a takeover leaves for the node it fenced. Close stops them, flushes
 * the journal and hands the lease back when nothing is left to upload.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_park.h"
#include "checkpoint.h"
#include "cleanup.h"
#include "dirty_handoff.h"
#include "fsutil.h"
#include "identity.h"
#include "lease_state.h"
#include "localstate.h"
#include "readahead.h"
#include "snapshot.h"
#include "volume_internal.h"

struct replay_ctx {
    glidefs_volume *v;
    int64_t now;
    int stale;          /* the journal's epoch is over: count records, apply none */
    uint64_t records;
};

static int replay_record(void *arg, const struct gfs_jrec *rec, struct gfs_jfile *jf,
                         uint64_t data_off)
{
    struct replay_ctx *c = arg;
    glidefs_volume *v = c->v;
    c->records++;
    if (c->stale)
        return 0; /* seqs of another epoch say nothing about what the store holds */
    if (rec->offset > v->size || rec->length > v->size - rec->offset) {
        gfs_warn(&v->log, "%s: journal record seq %" PRIu64 " lies past the end of the volume; ignored",
                 v->name, rec->seq);
        return 0;
    }
    uint64_t first_b = rec->offset / v->bs, last_b = (rec->offset + rec->length - 1) / v->bs;
    for (uint64_t b = first_b; b <= last_b; b++) {
        /* already folded into what the store holds for this block? */
        struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
        if (e.seg != GFS_BM_NONE && e.write_seq >= rec->seq)
            continue;
        uint64_t bstart = b * v->bs;
        uint64_t lo = rec->offset > bstart ? rec->offset : bstart;
        uint64_t hi = rec->offset + rec->length < bstart + v->bs ? rec->offset + rec->length
                                                                 : bstart + v->bs;
        struct gfs_dirty_block *db = gfs_dirty_touch(&v->dirty, b, c->now);
        if (!db)
            return -ENOMEM;
        struct gfs_ext x = {
            .start = (uint32_t)((lo - bstart) / 512),
            .count = (uint32_t)((hi - lo) / 512),
            .flags = rec->type == GFS_JREC_ZERO ? GFS_EXT_ZERO : 0,
            .seq = rec->seq,
            .jf = jf,
            .data_off = rec->type == GFS_JREC_WRITE ? data_off + (lo - rec->offset) : 0,
        };
        int r = gfs_dirty_insert(&v->dirty, db, &x);
        if (r < 0)
            return r;
    }
    return 0;
}

static void journal_acct(void *arg, int64_t delta)
{
    glidefs_volume *v = arg;
    gfs_budget_journal_add(&v->bmem, delta);
}

/* The journal in <dir>/journal, its files charged to the node's budget. */
static int journal_open(glidefs_volume *v, const char *path)
{
    int r = gfs_journal_init(&v->journal, path, gfs_budget_jfile_size(v->bud), &v->log);
    v->journal.acct = journal_acct;
    v->journal.acct_arg = v;
    return r;
}


/* The budget evicts from this volume (lock held: by the caller if the budget
 * acts for this volume, else taken with trylock by the budget). */
static uint64_t budget_evict(void *arg, uint64_t bytes)
{
    glidefs_volume *v = arg;
    uint64_t have = v->cache.bytes;
    return gfs_cache_shrink(&v->cache, have > bytes ? have - bytes : 0);
}

/* Another volume waits for journal room: upload now (gfs_budget_pressure). */
static void budget_kick(void *arg)
{
    glidefs_volume *v = arg;
    pthread_cond_broadcast(&v->sync.cond); /* no lock: it also wakes once a second */
}

/* A journal of an ended epoch goes aside (localstate.h), and a new, empty
 * one takes its place. */
static int set_journal_aside(glidefs_volume *v, uint64_t old_epoch)
{
    char from[4200], to[4300];
    snprintf(from, sizeof from, "%s/journal", v->dir);
    gfs_local_aside_path(v->dir, old_epoch, to, sizeof to);
    char who[200];
    gfs_lease_who(&v->sv.lease, who, sizeof who);
    gfs_err(&v->log, "%s: the journal (%" PRIu64 " bytes) was written under epoch %" PRIu64
            " by a writer the lease no longer names (it is now epoch %" PRIu64 " of %s): kept "
            "aside in %s, not uploaded", v->name, v->journal.bytes, old_epoch, v->sv.lease.epoch,
            who, to);
    gfs_dirty_free(&v->dirty);
    gfs_dirty_init(&v->dirty);
    v->dirty.fr = &v->fr;
    gfs_journal_destroy(&v->journal);
    int r = gfs_local_set_aside(v->dir, to);
    return r < 0 ? r : journal_open(v, from);
}

/* microseconds on the monotonic clock: the open's and close's phases are
 * logged (debug) so that a takeover's pause can be taken apart */
static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static double ms_between(int64_t a, int64_t b)
{
    return (double)(b - a) / 1000.0;
}

static void volume_free(glidefs_volume *v)
{
    gfs_ra_destroy(v->ra);
    v->ra = NULL;
    gfs_wake_free(v); /* after read-ahead: its workers report prefetched blocks */
    if (v->created_dir && v->failed_open && v->dir)
        gfs_local_unmake(v->dir); /* nothing of a volume that does not exist stays behind */
    /* under the lock: the budget may be evicting from it for another volume */
    int64_t t0 = now_us();
    pthread_mutex_lock(&v->lock);
    uint64_t parked = gfs_cache_park(v);
    pthread_mutex_unlock(&v->lock);
    int64_t t_park = now_us();
    gfs_dirty_free(&v->dirty); /* before the journal: extents point at its files */
    gfs_journal_destroy(&v->journal);
    gfs_debug(&v->log, "%s: cache park %.2f ms, dirty index and journal freed in %.2f ms",
              v->name, ms_between(t0, t_park), ms_between(t_park, now_us()));
    /* its share goes back to the node's other volumes; a kept cache stays
     * counted, as parked (never both: leave first) */
    gfs_budget_leave(&v->bmem);
    if (parked)
        gfs_budget_park(v->bud, v->dir, parked, gfs_cache_park_drop);
    gfs_budget_unref(v->bud);
    gfs_view_free(&v->sv);
    gfs_objstore_close(v->store);
    gfs_objstore_close(v->own.probe_store);
    if (v->own.wrec_fd >= 0)
        close(v->own.wrec_fd);
    gfs_codec_free(v->codec);
    gfs_snapshots_free(v);
    if (v->lockfd >= 0)
        close(v->lockfd);
    pthread_mutex_destroy(&v->lock);
    gfs_ckpt_free(&v->ckpt);
    pthread_mutex_destroy(&v->ckpt.lock);
    pthread_mutex_destroy(&v->own_lock);
    pthread_cond_destroy(&v->own.cond);
    pthread_cond_destroy(&v->cond);
    pthread_cond_destroy(&v->sync.cond);
    gfs_fr_free(&v->fr); /* last: closing the cache and the dirty index use it */
    free(v->dir);
    free(v);
}

static int volume_setup(glidefs_volume *v, const glidefs_config *cfg, unsigned flags,
                        uint64_t create_size)
{
    char err[256] = "";
    int64_t t_start = now_us();
    int r = gfs_mkdir_p(cfg->cache_dir, 0700, 0);
    if (r < 0) {
        gfs_err(&v->log, "cannot create cache dir %s: %s", cfg->cache_dir, strerror(-r));
        return r;
    }
    /* the writer identity of this cache dir (identity.h) */
    r = gfs_instance_get(cfg->cache_dir, &v->log, v->own.instance);
    if (r < 0)
        return r;
    r = gfs_local_open(cfg->cache_dir, v->name, &v->dir, &v->created_dir, &v->lockfd);
    if (r < 0 && v->lockfd >= 0)
        gfs_err(&v->log, "%s: cache dir %s is in use by another process", v->name, v->dir);
    if (r < 0)
        return r;
    char path[4096];
    r = gfs_objstore_open(cfg, &v->log, &v->store, err, sizeof err);
    if (r < 0) {
        gfs_err(&v->log, "%s: %s", v->name, err);
        return r;
    }
    if (!v->ro_forced) {
        /* the conditional-write probe before a takeover gets its own handle */
        r = gfs_objstore_open(cfg, &v->log, &v->own.probe_store, err, sizeof err);
        if (r < 0) {
            gfs_err(&v->log, "%s: %s", v->name, err);
            return r;
        }
    }
    /* what this cache dir last wrote into the lease (made at the first write) */
    r = gfs_wrec_open(v->dir, 0, &v->own.wrec_fd);
    if (r == 0 && gfs_wrec_read(v->own.wrec_fd, &v->own.wrec) == 0)
        v->own.wrec_valid = 1;
    else if (r < 0 && r != -ENOENT)
        return r;
    v->own.wrec_cur_landed = 0; /* until the lease shows it did */
    int64_t t_local = now_us();
    r = gfs_volmeta_load(v, cfg, !!(flags & GLIDEFS_OPEN_CREATE),
                         !!(flags & GLIDEFS_OPEN_EXCLUSIVE), create_size);
    if (r < 0)
        return r;
    v->bs = v->meta.block_size;
    v->spb = v->bs / 512;
    /* the segment table counts a segment's bytes in 32 bits (blockmap.h) */
    if ((uint64_t)v->sync.blocks_per_batch * v->bs > (UINT64_C(1) << 31))
        v->sync.blocks_per_batch = (uint32_t)((UINT64_C(1) << 31) / v->bs);
    v->size = v->meta.size;
    r = gfs_view_init(&v->sv, v->name, &v->log, v->store, v->codec, &v->meta, v->size);
    if (r < 0)
        return r;
    r = gfs_fr_init(&v->fr, (v->size + v->bs - 1) / v->bs, v->spb);
    if (r < 0)
        return r;
    v->sv.bm.fr = &v->fr;
    v->dirty.fr = &v->fr;
    int64_t t_meta = now_us();
    /* the lease's fences decide which segments count, so read it first */
    r = gfs_lease_read(v->store, v->name, &v->sv.lease);
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot read the lease: %s", v->name, glidefs_strerror(r));
        return r;
    }
    int64_t t_lease_read = now_us();
    r = gfs_view_load(&v->sv);
    if (r < 0)
        return r == -ENOKEY ? -EIO : r; /* a segment under a key volume.json does not hold */
    int64_t t_map = now_us();
    gfs_volume_seq_past_map(v);
    /* the epoch the journal's records were written under */
    r = gfs_local_epoch_read(v->dir, &v->own.local_epoch);
    if (r < 0)
        return r;
    /* Take the lease (or attach read-only) before the journal is looked at:
     * leftover dirty data is uploaded only by the lease holder of its epoch. */
    r = gfs_own_acquire(v, !(flags & GLIDEFS_OPEN_READONLY));
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot take the write lease: %s", v->name, glidefs_strerror(r));
        return r;
    }

    int64_t t_acquire = now_us();
    /* journal: its file size and how much of it may be dirty are the node
     * budget's (budget.h) */
    snprintf(path, sizeof path, "%s/journal", v->dir);
    r = journal_open(v, path);
    if (r < 0)
        return r;
    uint64_t local_epoch = v->own.local_epoch;
    /* Is the journal ours to continue? Only if this cache dir resumed the
     * lease it held when the journal was written (or reads it read-only
     * while still holding it): lease_state.c decided. */
    int ours = v->own.journal_ours;
    struct replay_ctx rc = {v, gfs_now_ms(), !ours, 0};
    uint64_t max_seq = 0;
    /* the last close's dirty index, if it still holds: no replay */
    r = gfs_didx_adopt(v, &max_seq);
    v->didx_adopted = r == 1;
    if (r == 0)
        r = gfs_journal_recover(&v->journal, replay_record, &rc, &max_seq);
    v->replayed_records = rc.records;
    if (r < 0) {
        gfs_err(&v->log, "%s: journal recovery failed: %s", v->name, strerror(-r));
        return r;
    }
    if (rc.stale && rc.records && v->ro_forced) {
        /* a read-only open never moves anything aside */
        gfs_warn(&v->log, "%s: ignoring a journal of ended epoch %" PRIu64 " (read-only open)",
                 v->name, local_epoch);
    } else if (rc.stale && rc.records) {
        /* Written under an epoch that is over: another writer may have stored
         * newer data since, so merging would be wrong. Keep it aside. */
        r = set_journal_aside(v, local_epoch);
        if (r < 0)
            return r;
    } else if (v->dirty.nblocks && !v->didx_adopted) {
        gfs_info(&v->log, "%s: recovered %" PRIu64 " dirty blocks from the journal", v->name,
                 v->dirty.nblocks);
    }
    int64_t t_replayed = now_us();
    if (v->owner) {
        r = gfs_local_epoch_write(v->dir, v->epoch);
        if (r < 0)
            return r;
    }
    v->fenced_bytes = gfs_local_fenced_bytes(v->dir);
    if (max_seq >= v->next_seq)
        v->next_seq = max_seq + 1;
    if (v->next_seq == 0)
        v->next_seq = 1;

    int64_t t_journal = now_us();
    snprintf(path, sizeof path, "%s/cache.dat", v->dir);
    /* room for the whole budget: a volume alone may use all of it */
    uint64_t slots = gfs_budget_total(v->bud) / v->bs;
    if (slots > UINT32_MAX)
        slots = UINT32_MAX;
    v->keep_cache = cfg->cache_keep_on_close;
    /* what the last close here kept, if the map still points at it */
    r = gfs_cache_unpark(v, cfg->cache_dir, path, (uint32_t)slots);
    if (r < 0)
        return r;
    int64_t t_end = now_us();
    gfs_debug(&v->log, "%s: open phases (ms): local dir %.2f, volume.json %.2f, lease read %.2f, "
              "map %.2f, lease take %.2f, journal %.2f (%" PRIu64 " records replayed), epoch file "
              "%.2f, cache %.2f", v->name, ms_between(t_start, t_local),
              ms_between(t_local, t_meta), ms_between(t_meta, t_lease_read),
              ms_between(t_lease_read, t_map), ms_between(t_map, t_acquire),
              ms_between(t_acquire, t_replayed), rc.records, ms_between(t_replayed, t_journal),
              ms_between(t_journal, t_end));
    return 0;
}

GLIDEFS_API int glidefs_volume_open(const glidefs_config *cfg, const char *name,
                                    uint64_t create_size, unsigned flags, glidefs_volume **out)
{
    if (!cfg || !name || !out)
        return -EINVAL;
    *out = NULL;
    if (!glidefs_name_valid(name))
        return -EINVAL;
    if ((flags & GLIDEFS_OPEN_NOFOLLOW) && !(flags & GLIDEFS_OPEN_READONLY))
        return -EINVAL;
    if ((flags & GLIDEFS_OPEN_CREATE) &&
        (create_size == 0 || create_size % 512 || create_size > GLIDEFS_MAX_VOLUME_SIZE))
        return -EINVAL;
    if (!cfg->cache_dir || !cfg->storage_url)
        return -EINVAL;
    glidefs_volume *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    snprintf(v->name, sizeof v->name, "%s", name);
    v->lockfd = -1;
    v->log = cfg->log;
    v->journal.dirfd = -1;
    v->cache.fd = -1;
    pthread_mutex_init(&v->lock, NULL);
    pthread_mutex_init(&v->ckpt.lock, NULL);
    pthread_mutex_init(&v->own_lock, NULL);
    gfs_cond_init(&v->cond);
    gfs_cond_init(&v->sync.cond);
    gfs_cond_init(&v->own.cond);
    v->sync.blocks_per_batch = cfg->blocks_per_batch > 0 ? (uint32_t)cfg->blocks_per_batch : 25;
    v->sync.upload_parallel = cfg->upload_parallel > 0 ? (uint32_t)cfg->upload_parallel : 4;
    v->sync.drain_parallel =
        cfg->storage_max_connections > 0 ? (uint32_t)cfg->storage_max_connections : 8;
    v->sync.delay_ms = cfg->sync_delay_ms >= 0 ? cfg->sync_delay_ms : 8000;
    v->sync.max_dirty_age_ms = cfg->max_dirty_age_ms > 0 ? cfg->max_dirty_age_ms : 60000;
    if (v->sync.max_dirty_age_ms < v->sync.delay_ms)
        v->sync.max_dirty_age_ms = v->sync.delay_ms;
    v->sync.durability = cfg->storage_durability && strcmp(cfg->storage_durability, "store") == 0
                             ? GLIDEFS_DURABILITY_STORE
                             : GLIDEFS_DURABILITY_LOCAL;
    v->sync.max_unsynced_ms = (int64_t)cfg->storage_max_unsynced_s * 1000;
    v->sync.max_unsynced_bytes = cfg->storage_max_unsynced_bytes;
    v->ro_forced = !!(flags & GLIDEFS_OPEN_READONLY);
    v->own.nofollow = !!(flags & GLIDEFS_OPEN_NOFOLLOW);
    v->read_only = 1; /* until the lease is ours */
    v->next_seq = 1;
    snprintf(v->own.node_id, sizeof v->own.node_id, "%s", cfg->node_id ? cfg->node_id : "node");
    snprintf(v->own.node_id_legacy, sizeof v->own.node_id_legacy, "%s",
             cfg->node_id_legacy ? cfg->node_id_legacy : "");
    v->own.wrec_fd = -1;
    v->own.unsafe_lax = cfg->storage_unsafe_lax_takeover;
    v->own.probe_state = atomic_load_explicit(&cfg->probe_state, memory_order_acquire);
    v->own.probe_wall_ms = atomic_load_explicit(&cfg->probe_wall_ms, memory_order_acquire);
    v->own.lease_timeout_ms = cfg->lease_timeout_ms > 0 ? cfg->lease_timeout_ms : 30000;
    v->comp.min_live_pct = cfg->compaction_min_live_pct;
    v->comp.interval_ms = (int64_t)cfg->compaction_interval_s * 1000;
    v->comp.rate_bps =
        (uint64_t)(cfg->compaction_rate_mb_s > 0 ? cfg->compaction_rate_mb_s : 32) << 20;
    v->comp.grace_ms = cfg->compaction_grace_ms;
    v->comp.max_stored_pct = cfg->compaction_max_stored_pct;
    v->snap.fenced_hold_ms = (int64_t)cfg->compaction_fenced_hold_s * 1000;
    v->comp.keep_manifests =
        cfg->compaction_keep_manifests > 0 ? cfg->compaction_keep_manifests : 2;
    v->opened_ms = gfs_now_ms();
    v->comp.next_ms = v->opened_ms + v->comp.interval_ms;
    v->cost_gb_month = cfg->cost_storage_gb_month;
    v->cost_put_1000 = cfg->cost_put_per_1000;
    v->cost_get_1000 = cfg->cost_get_per_1000;

    /* the node's budget: the config's (every volume opened with it shares
     * it), or this volume's own for a config made without one */
    struct gfs_budget *bud = cfg->budget;
    if (bud) {
        gfs_budget_ref(bud);
    } else if (gfs_budget_new(&bud) < 0) {
        volume_free(v);
        return -ENOMEM;
    }
    v->bud = bud;
    v->bmem.lock = &v->lock;
    v->bmem.evict = budget_evict;
    v->bmem.kick = budget_kick;
    v->bmem.arg = v;
    gfs_budget_join(bud, &v->bmem, cfg->cache_disk_size ? cfg->cache_disk_size : (100ull << 30));
    int64_t t_setup = now_us();
    int r = volume_setup(v, cfg, flags, create_size);
    int64_t t_threads = now_us();
    if (r == 0) {
        /* read-ahead GETs: half the store's connections, the rest for uploads */
        int nra = cfg->storage_max_connections / 2;
        r = gfs_ra_create(v, (uint64_t)cfg->cache_readahead_kb * 1024,
                          (unsigned)(nra < 1 ? 1 : nra > 4 ? 4 : nra), &v->ra);
    }
    if (r == 0 && v->ra && cfg->ra_test_hook)
        gfs_ra_set_test_hook(v->ra, cfg->ra_test_hook, cfg->ra_test_hook_arg);
    if (r == 0)
        r = gfs_wake_init(v, cfg);
    if (r == 0)
        gfs_wake_start(v); /* the profile's GET runs on a read-ahead worker: open does not wait */
    if (r == 0 && v->owner)
        r = gfs_snapshots_load(v); /* what compaction must keep */
    if (r == 0 && v->owner)
        r = gfs_syncer_start(v);
    if (r == 0)
        r = gfs_own_start(v);
    if (r == 0)
        gfs_fence_hold(v); /* we took the lease from a live-looking holder */
    if (r < 0) {
        gfs_own_stop(v);
        gfs_syncer_stop(v);
        v->failed_open = r == -ENOENT || r == -EACCES || r == -EEXIST;
        volume_free(v);
        return r;
    }
    gfs_debug(&v->log, "%s: opened in %.2f ms (threads, snapshots %.2f)", v->name,
              ms_between(t_setup, now_us()), ms_between(t_threads, now_us()));
    *out = v;
    return 0;
}

GLIDEFS_API int glidefs_volume_close(glidefs_volume *v)
{
    if (!v)
        return 0;
    int64_t t0 = now_us();
    gfs_ra_destroy(v->ra); /* before anything it uses goes */
    v->ra = NULL;
    gfs_own_stop(v);
    gfs_syncer_stop(v);
    int64_t t_stop = now_us();
    pthread_mutex_lock(&v->lock);
    v->stop = 1;
    pthread_cond_broadcast(&v->cond);
    int r = gfs_journal_flush(&v->journal, &v->lock);
    int d = v->deferred_error;
    int release = v->owner && !v->fenced && v->dirty.nblocks == 0 && !v->journal.failed;
    int owner = v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    int64_t t_flush = now_us();
    if (owner)
        gfs_wake_save(v); /* advisory: a failure is logged, the close goes on */
    int64_t t_wake = now_us();
    if (release) {
        /* nothing left to upload: let the next node take over without waiting */
        int rr = gfs_volume_write_manifest_handover(v);
        if (rr == 0)
            rr = gfs_own_release(v);
        if (rr == -ECANCELED)
            gfs_warn(&v->log, "%s: another node took the lease before close: this node was "
                     "fenced; its late uploads are ignored by every reader", v->name);
        else if (rr < 0)
            gfs_warn(&v->log, "%s: releasing the lease at close failed: %s", v->name,
                     glidefs_strerror(rr));
    }
    /* after the journal's last write: the next open here adopts the
     * dirty state instead of replaying the journal (a takeover's pause) */
    if (owner && r == 0)
        gfs_didx_save(v);
    int64_t t_free = now_us();
    char name[sizeof v->name];
    memcpy(name, v->name, sizeof name);
    struct gfs_log log = v->log;
    volume_free(v);
    gfs_debug(&log, "%s: close phases (ms): threads %.2f, journal flush %.2f, profile %.2f, "
              "lease release and dirty index %.2f, free (cache park, journal close) %.2f", name,
              ms_between(t0, t_stop), ms_between(t_stop, t_flush), ms_between(t_flush, t_wake),
              ms_between(t_wake, t_free), ms_between(t_free, now_us()));
    return d ? d : r;
}
