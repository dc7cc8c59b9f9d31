/*
 * syncer.c — the background thread that ships dirty blocks to the store.
 *
 * Each round it picks blocks whose last write is older than sync_delay_ms
 * (or whose first dirty write is older than max_dirty_age_ms, or all of them
 * while a drain or a full journal is waiting), snapshots their extents,
 * assembles whole blocks (journal data over the clean cache or store copy for
 * sectors never written), packs blocks_per_batch of them per segment, uploads
 * up to upload_parallel segments at once, then commits: block map entries
 * point at the new segment and extents up to the snapshot's seq leave the
 * dirty index. A failed round backs off exponentially (with jitter) and is
 * retried; nothing leaves the journal until the store has it.
 */
#include "volume_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "segment.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
#define MANIFEST_EVERY_SEGS 64

struct snap_block {
    uint64_t block;
    uint64_t snap_seq;
    struct gfs_bm_entry base;
    struct gfs_ext *ext;
    uint32_t n;
    int covered;
    uint8_t *data;     /* assembled block (bs bytes) */
    int hole;          /* all zeroes: stored as a hole */
    struct gfs_seg_entry se;
};

struct seg_job {
    struct glidefs_volume *v;
    uint64_t epoch, seq;
    struct snap_block *blocks;
    uint32_t n;
    uint8_t *obj;
    size_t objlen;
    int result;
    pthread_t thr;
};

static void timespec_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static int is_zero(const uint8_t *p, size_t n)
{
    static const uint8_t z[4096];
    while (n >= sizeof z) {
        if (memcmp(p, z, sizeof z))
            return 0;
        p += sizeof z;
        n -= sizeof z;
    }
    return memcmp(p, z, n) == 0;
}

/* Pick eligible blocks and snapshot them. Called under the lock. */
static uint32_t pick(struct glidefs_volume *v, struct snap_block *out, uint32_t max,
                     int64_t *next_ms)
{
    int64_t now = gfs_now_ms();
    int all = v->force > 0 || v->journal.bytes >= v->journal_limit / 4 * 3;
    uint32_t n = 0;
    *next_ms = INT64_MAX;
    if (!v->owner || v->fenced)
        return 0; /* only the lease holder writes segments */
    for (struct gfs_dirty_block *db = v->dirty.head; db && n < max; db = db->next) {
        if (db->pending || db->syncing || db->n == 0)
            continue;
        int64_t due = db->last_ms + v->sync_delay_ms;
        int64_t cap = db->first_ms + v->max_dirty_age_ms;
        if (cap < due)
            due = cap;
        if (!all && due > now) {
            if (due < *next_ms)
                *next_ms = due;
            continue;
        }
        struct snap_block *sb = &out[n];
        memset(sb, 0, sizeof *sb);
        sb->ext = malloc((size_t)db->n * sizeof *sb->ext);
        if (!sb->ext)
            break;
        memcpy(sb->ext, db->ext, (size_t)db->n * sizeof *sb->ext);
        sb->n = db->n;
        for (uint32_t i = 0; i < db->n; i++)
            if (db->ext[i].jf)
                __atomic_add_fetch(&db->ext[i].jf->pins, 1, __ATOMIC_RELAXED);
        sb->block = db->block;
        sb->snap_seq = db->max_seq;
        sb->base = gfs_bm_get(&v->bm, db->block);
        /* the last block of a volume whose size is not a block multiple is still whole here */
        sb->covered = gfs_dirty_covers(db, 0, v->spb);
        db->syncing = 1;
        n++;
    }
    return n;
}

static int cmp_block(const void *a, const void *b)
{
    const struct snap_block *x = a, *y = b;
    return x->block < y->block ? -1 : x->block > y->block;
}

static int assemble(struct glidefs_volume *v, struct snap_block *sb)
{
    sb->data = malloc(v->bs);
    if (!sb->data)
        return -ENOMEM;
    if (!sb->covered) {
        int r = -1;
        if (sb->base.seg != GFS_BM_NONE && sb->base.seg != GFS_BM_HOLE) {
            /* the clean cache first, else the store */
            uint32_t gen;
            pthread_mutex_lock(&v->lock);
            int64_t slot = gfs_cache_lookup(&v->cache, sb->block, sb->base.seg, sb->base.offset,
                                            &gen);
            pthread_mutex_unlock(&v->lock);
            if (slot >= 0 &&
                pread(v->cache.fd, sb->data, v->bs, (off_t)(sb->block * v->bs)) == (ssize_t)v->bs) {
                pthread_mutex_lock(&v->lock);
                r = gfs_cache_still(&v->cache, slot, sb->block, gen) ? 0 : -1;
                pthread_mutex_unlock(&v->lock);
            }
            if (r < 0) {
                r = gfs_volume_fetch_block(v, sb->block, &sb->base, sb->data);
                if (r < 0)
                    return r;
            }
        } else {
            memset(sb->data, 0, v->bs);
        }
    }
    for (uint32_t i = 0; i < sb->n; i++) {
        const struct gfs_ext *x = &sb->ext[i];
        uint8_t *p = sb->data + (size_t)x->start * 512;
        size_t len = (size_t)x->count * 512;
        if (x->flags & GFS_EXT_ZERO)
            memset(p, 0, len);
        else if (pread(x->jf->fd, p, len, (off_t)x->data_off) != (ssize_t)len)
            return -EIO;
    }
    sb->hole = is_zero(sb->data, v->bs);
    return 0;
}

static int build_segment(struct glidefs_volume *v, struct seg_job *job)
{
    size_t hlen = gfs_seg_header_size_mac(job->n, gfs_codec_sealed(v->codec));
    size_t total = hlen;
    for (uint32_t i = 0; i < job->n; i++)
        if (!job->blocks[i].hole)
            total += gfs_codec_max_stored(v->codec);
    job->obj = malloc(total);
    if (!job->obj)
        return -ENOMEM;
    CLEANUP_FREE struct gfs_seg_entry *ents = calloc(job->n, sizeof *ents);
    if (!ents)
        return -ENOMEM;
    size_t off = hlen;
    for (uint32_t i = 0; i < job->n; i++) {
        struct snap_block *sb = &job->blocks[i];
        struct gfs_seg_entry *e = &ents[i];
        e->block_index = sb->block;
        e->write_seq = sb->snap_seq;
        if (sb->hole) {
            e->flags = GFS_SEGF_HOLE;
        } else {
            uint32_t len = 0, flags = 0;
            int r = gfs_codec_encode_seq(v->codec, sb->block, sb->snap_seq, sb->data,
                                         job->obj + off, &len, &flags);
            if (r < 0)
                return r;
            e->offset = (uint32_t)off;
            e->length = len;
            e->raw_length = v->bs;
            e->flags = flags;
            e->crc = gfs_crc32c(0, job->obj + off, len);
            off += len;
        }
        sb->se = *e;
    }
    struct gfs_seg_header h = {
        .epoch = job->epoch,
        .seq = job->seq,
        .nblocks = job->n,
        .block_size = v->bs,
        .header_len = (uint32_t)(hlen - 4),
        .entries = ents,
    };
    memcpy(h.volume_uuid, v->meta.data_uuid, 16);
    int r = gfs_seg_encode_header_mac(&h, job->obj, hlen, v->codec);
    if (r < 0)
        return r;
    job->objlen = off;
    return 0;
}

static void *upload_thread(void *arg)
{
    struct seg_job *job = arg;
    struct glidefs_volume *v = job->v;
    char key[512];
    gfs_seg_key(key, sizeof key, v->name, job->epoch, job->seq);
    job->result = v->store->ops->put(v->store, key, job->obj, job->objlen, 0, NULL);
    if (job->result < 0)
        gfs_warn(&v->log, "%s: upload of %s failed: %s (will retry)", v->name, key,
                 glidefs_strerror(job->result));
    return NULL;
}

/* Commit uploaded blocks, release snapshots. Called under the lock. */
static void commit(struct glidefs_volume *v, struct seg_job *jobs, uint32_t njobs)
{
    for (uint32_t j = 0; j < njobs; j++) {
        struct seg_job *job = &jobs[j];
        int64_t si = -1;
        if (job->result == 0) {
            si = gfs_bm_seg_add(&v->bm, gfs_ep(v->meta.depth, job->epoch), job->seq, job->objlen);
            if (si < 0)
                job->result = (int)si;
        }
        for (uint32_t i = 0; i < job->n; i++) {
            struct snap_block *sb = &job->blocks[i];
            for (uint32_t k = 0; k < sb->n; k++)
                if (sb->ext[k].jf)
                    __atomic_sub_fetch(&sb->ext[k].jf->pins, 1, __ATOMIC_RELEASE);
            struct gfs_dirty_block *db = gfs_dirty_get(&v->dirty, sb->block);
            if (db)
                db->syncing = 0;
            if (job->result < 0)
                continue;
            struct gfs_bm_entry e = {0};
            if (sb->hole) {
                e.seg = GFS_BM_HOLE;
            } else {
                e.seg = (uint32_t)si;
                e.offset = sb->se.offset;
                e.length = sb->se.length;
                e.crc = sb->se.crc;
                e.flags = sb->se.flags;
            }
            e.write_seq = sb->snap_seq;
            gfs_bm_set(&v->bm, sb->block, &e);
            if (db)
                gfs_dirty_clean(&v->dirty, db, sb->snap_seq);
            v->st.blocks_uploaded++;
            sb->base = e; /* for the cache fill after unlock */
        }
        if (job->result == 0) {
            v->st.segments_uploaded++;
            v->last_seg_epoch = job->epoch;
            v->last_seg_seq = job->seq;
            v->segs_since_manifest++;
        }
    }
}

static void *syncer_main(void *arg)
{
    struct glidefs_volume *v = arg;
    uint32_t max = v->blocks_per_batch * v->upload_parallel;
    struct snap_block *snaps = calloc(max, sizeof *snaps);
    struct seg_job *jobs = calloc(v->upload_parallel, sizeof *jobs);
    int failures = 0;
    if (!snaps || !jobs) {
        pthread_mutex_lock(&v->lock);
        v->deferred_error = -ENOMEM;
        pthread_mutex_unlock(&v->lock);
        free(snaps);
        free(jobs);
        return NULL;
    }
    pthread_mutex_lock(&v->lock);
    while (!v->syncer_stop) {
        int64_t now = gfs_now_ms();
        if (v->backoff_until_ms > now) {
            struct timespec ts;
            timespec_in(&ts, v->backoff_until_ms - now);
            pthread_cond_timedwait(&v->syncer_cond, &v->lock, &ts);
            continue;
        }
        int64_t next_ms;
        uint32_t n = pick(v, snaps, max, &next_ms);
        if (n == 0) {
            /* nothing due: the journal may still hold dead files to delete */
            gfs_journal_gc(&v->journal, &v->lock);
            pthread_cond_broadcast(&v->cond);
            if (v->syncer_stop)
                break;
            /* idle: one compaction step (never while a drain or back-pressure waits) */
            if (v->force == 0) {
                uint64_t want = v->comp_req_gen;
                int requested = want > v->comp_done_gen;
                int did = gfs_compact_step(v, requested);
                if (requested) {
                    v->comp_done_gen = want;
                    pthread_cond_broadcast(&v->cond);
                }
                if (did > 0 || v->syncer_stop)
                    continue;
            }
            struct timespec ts;
            int64_t wait = next_ms == INT64_MAX ? 1000 : next_ms - gfs_now_ms();
            if (wait > 1000)
                wait = 1000;
            if (wait < 1)
                wait = 1;
            timespec_in(&ts, wait);
            pthread_cond_timedwait(&v->syncer_cond, &v->lock, &ts);
            continue;
        }
        uint32_t njobs = (n + v->blocks_per_batch - 1) / v->blocks_per_batch;
        for (uint32_t j = 0; j < njobs; j++) {
            memset(&jobs[j], 0, sizeof jobs[j]);
            jobs[j].v = v;
            jobs[j].epoch = v->epoch;
            jobs[j].seq = v->next_seg_seq++;
        }
        pthread_mutex_unlock(&v->lock);

        qsort(snaps, n, sizeof *snaps, cmp_block);
        int err = 0;
        for (uint32_t i = 0; i < n && !err; i++)
            err = assemble(v, &snaps[i]);
        for (uint32_t j = 0; j < njobs; j++) {
            jobs[j].blocks = &snaps[j * v->blocks_per_batch];
            jobs[j].n = (j + 1 == njobs) ? n - j * v->blocks_per_batch : v->blocks_per_batch;
            if (!err)
                err = build_segment(v, &jobs[j]);
        }
        if (!err) {
            for (uint32_t j = 1; j < njobs; j++)
                if (pthread_create(&jobs[j].thr, NULL, upload_thread, &jobs[j]) != 0)
                    upload_thread(&jobs[j]), jobs[j].thr = 0;
            upload_thread(&jobs[0]);
            for (uint32_t j = 1; j < njobs; j++)
                if (jobs[j].thr)
                    pthread_join(jobs[j].thr, NULL);
        } else {
            gfs_warn(&v->log, "%s: preparing upload failed: %s (will retry)", v->name,
                     glidefs_strerror(err));
            for (uint32_t j = 0; j < njobs; j++)
                jobs[j].result = err;
        }
        int any_err = 0;
        for (uint32_t j = 0; j < njobs; j++)
            if (jobs[j].result < 0)
                any_err = jobs[j].result;

        pthread_mutex_lock(&v->lock);
        commit(v, jobs, njobs);
        if (any_err) {
            failures++;
            v->sync_error = any_err;
            int64_t d = BACKOFF_BASE_MS << (failures < 16 ? failures : 16);
            if (d > BACKOFF_CAP_MS)
                d = BACKOFF_CAP_MS;
            uint32_t rnd = 0;
            getrandom(&rnd, sizeof rnd, GRND_NONBLOCK);
            v->backoff_until_ms = gfs_now_ms() + d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
        } else {
            failures = 0;
            v->sync_error = 0;
            v->st.last_sync_time_ms = gfs_wall_ms();
        }
        pthread_cond_broadcast(&v->cond);
        pthread_mutex_unlock(&v->lock);

        /* uploaded blocks become clean cache entries */
        for (uint32_t j = 0; j < njobs; j++) {
            if (jobs[j].result == 0)
                for (uint32_t i = 0; i < jobs[j].n; i++)
                    if (!jobs[j].blocks[i].hole)
                        gfs_volume_cache_fill(v, jobs[j].blocks[i].block, &jobs[j].blocks[i].base,
                                              jobs[j].blocks[i].data);
            free(jobs[j].obj);
            jobs[j].obj = NULL;
        }
        for (uint32_t i = 0; i < n; i++) {
            free(snaps[i].data);
            free(snaps[i].ext);
            snaps[i].data = NULL;
            snaps[i].ext = NULL;
        }
        int need_manifest;
        pthread_mutex_lock(&v->lock);
        need_manifest = v->segs_since_manifest >= MANIFEST_EVERY_SEGS;
        pthread_mutex_unlock(&v->lock);
        if (need_manifest)
            gfs_volume_write_manifest(v);
        pthread_mutex_lock(&v->lock);
        gfs_journal_gc(&v->journal, &v->lock);
        pthread_cond_broadcast(&v->cond);
    }
    pthread_mutex_unlock(&v->lock);
    free(snaps);
    free(jobs);
    return NULL;
}

int gfs_syncer_start(struct glidefs_volume *v)
{
    if (v->syncer_running)
        return 0;
    v->syncer_stop = 0;
    int r = pthread_create(&v->syncer, NULL, syncer_main, v);
    if (r != 0)
        return -r;
    v->syncer_running = 1;
    return 0;
}

void gfs_syncer_stop(struct glidefs_volume *v)
{
    if (!v->syncer_running)
        return;
    pthread_mutex_lock(&v->lock);
    v->syncer_stop = 1;
    pthread_cond_broadcast(&v->syncer_cond);
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    pthread_join(v->syncer, NULL);
    v->syncer_running = 0;
}
