/*
 * syncer.c — the background thread that ships dirty blocks to the store.
 *
 * It picks blocks whose last write is older than sync_delay_ms (or whose
 * first dirty write is older than max_dirty_age_ms, or all of them while a
 * drain or a full journal is waiting), blocks_per_batch at a time: a segment
 * ships when it is full, a partial one only when nothing more can come soon
 * (see pick()). It snapshots their extents, assembles whole blocks (journal
 * data over the clean cache or store copy for sectors never written), packs
 * them into a segment and hands it to upload workers, which encode it
 * (compress, seal: on as many cores as segments in flight) and PUT it: up
 * to upload_parallel segments in flight, storage.max_connections while a
 * drain or back-pressure waits, and the next segment is assembled while
 * those are encoded and upload. Finished
 * uploads are committed in seq order: block map entries point at the new
 * segment and extents up to the snapshot's seq leave the dirty index. A
 * failed upload backs off exponentially (with jitter) and its blocks are
 * retried; nothing leaves the journal until the store has it.
 *
 * Durability (docs/design.md 4.4): in store mode a flush registers a
 * waiter with its target seq; the syncer uploads every block holding a
 * write up to the highest target at once, then stores one manifest for
 * every waiter those segments serve and raises durable_seq. max_unsynced_ms makes a
 * block due by half that age; past the bounds writes wait
 * (gfs_syncer_room).
 */
#include "volume_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "blockio.h"
#include "checkpoint.h"
#include "cleanup.h"
#include "compactor.h"
#include "layout.h"
#include "segment.h"
#include "segwriter.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
#define MANIFEST_EVERY_SEGS 64

struct snap_block {
    uint64_t block;
    uint64_t snap_seq;
    struct gfs_bm_entry base;
    struct gfs_piece *pieces;  /* the dirty extents, journal files pinned */
    uint32_t n;
    int covered;
    uint8_t *data;     /* assembled block (bs bytes) */
    int hole;          /* all zeroes: stored as a hole */
    int64_t snap_ms;   /* when it was snapshot: what stays dirty is younger */
    struct gfs_seg_entry se;
};

struct seg_job {
    struct glidefs_volume *v;
    uint64_t epoch, seq;
    struct snap_block *blocks; /* owned: blocks_per_batch slots */
    uint32_t n;
    struct gfs_segw w;         /* the segment object (segwriter.h) */
    int result;
    int done;                  /* upload finished (v->lock) */
    struct seg_job *next_q;    /* waiting for an upload worker */
    struct seg_job *next_o;    /* in flight, in seq order */
};

/* The upload pipeline: the syncer thread picks, assembles and builds
 * segments while workers upload the ones before; commits happen in seq order
 * (the block map's segment table and the manifests' "everything up to
 * epoch-seq" need that), whatever order the PUTs finish in. */
struct pipeline {
    struct glidefs_volume *v;
    pthread_cond_t cond;       /* workers wait for jobs (with v->lock) */
    pthread_t *thr;
    uint32_t nthr, maxthr, idle;
    uint32_t nq;               /* jobs queued, not yet taken by a worker */
    struct seg_job *qhead, *qtail;
    struct seg_job *ohead, *otail;
    uint32_t inflight;
    int quit;
    int failures;
};

static void set_backoff(struct glidefs_volume *v, int failures)
{
    int64_t d = BACKOFF_BASE_MS << (failures < 16 ? failures : 16);
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    uint32_t rnd = 0;
    getrandom(&rnd, sizeof rnd, GRND_NONBLOCK);
    v->sync.backoff_until_ms = gfs_now_ms() + d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
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

/* Snapshot one dirty block for upload (lock held): its extents as pieces
 * (blockio.h), their journal files pinned until commit. */
static int snap(struct glidefs_volume *v, struct gfs_dirty_block *db, struct snap_block *sb,
                int64_t now)
{
    memset(sb, 0, sizeof *sb);
    sb->snap_ms = now;
    sb->pieces = malloc((size_t)db->n * sizeof *sb->pieces);
    if (!sb->pieces)
        return -ENOMEM;
    for (uint32_t i = 0; i < db->n; i++) {
        const struct gfs_ext *x = &db->ext[i];
        int zero = x->flags & GFS_EXT_ZERO;
        sb->pieces[i] = (struct gfs_piece){x->start, x->count, zero ? NULL : x->jf,
                                           zero ? 0 : x->data_off};
        if (!zero)
            atomic_fetch_add_explicit(&x->jf->pins, 1, memory_order_relaxed);
    }
    sb->n = db->n;
    sb->block = db->block;
    sb->snap_seq = db->max_seq;
    sb->base = gfs_bm_get(&v->sv.bm, db->block);
    /* the last block of a volume whose size is not a block multiple is still whole here */
    sb->covered = gfs_dirty_covers(db, 0, v->spb);
    db->syncing = 1;
    return 0;
}

/* Pick the blocks of one segment and snapshot them. Called under the lock.
 *
 * Why batches are coalesced: a PUT costs the same for 1 block as for 25, and
 * under random writes blocks become due (sync_delay_ms after their last
 * write) one by one. So a segment ships only when blocks_per_batch blocks are
 * due, and a partial one only when nothing more can come soon: a drain,
 * back-pressure or a full journal waits (force), a due block reached
 * max_dirty_age_ms, or every dirty block is due (writes went quiet for
 * sync_delay_ms). *next_ms is when to look again. */
static uint32_t pick(struct glidefs_volume *v, struct snap_block *out, uint32_t max,
                     int64_t *next_ms)
{
    int64_t now = gfs_now_ms();
    /* the node's journal is filling up, or another volume waits for room
     * that our dirty data holds (budget.h): everything goes now */
    int all = v->sync.force > 0 || gfs_budget_journal_high(v->bud) || gfs_budget_pressure(&v->bmem);
    /* half of max_unsynced_bytes not in the store: everything goes, before
     * writes have to wait for it */
    if (v->sync.max_unsynced_bytes && v->dirty.sectors * 512 >= v->sync.max_unsynced_bytes / 2)
        all = 1;
    /* a block is due by half of max_unsynced_ms, leaving the other half for its upload */
    int64_t max_age = v->sync.max_dirty_age_ms;
    if (v->sync.max_unsynced_ms && v->sync.max_unsynced_ms / 2 < max_age)
        max_age = v->sync.max_unsynced_ms / 2;
    uint32_t due = 0;
    int capped = 0, waiting = 0;
    *next_ms = INT64_MAX;
    if (!v->owner || v->fenced)
        return 0; /* only the lease holder writes segments */
    for (struct gfs_dirty_block *db = v->dirty.head; db; db = db->next) {
        if (db->syncing)
            continue;
        if (db->pending || db->n == 0) {
            waiting = 1;
            continue;
        }
        int64_t cap = db->first_ms + max_age;
        int64_t ready = db->last_ms + v->sync.delay_ms;
        if (cap < ready)
            ready = cap;
        /* holds a write a store-mode flush waits for: now, batch or not */
        if (db->first_seq <= v->sync.flush_upto)
            ready = cap = now;
        if (ready > now) {
            waiting = 1;
            if (ready < *next_ms)
                *next_ms = ready;
            if (!all)
                continue;
        } else {
            if (cap <= now)
                capped = 1;
            else if (cap < *next_ms)
                *next_ms = cap;
        }
        due++;
        if (all && due >= max)
            break;
    }
    if (due == 0)
        return 0;
    if (!all && due < max && !capped && waiting)
        return 0; /* a partial batch: wait for more */
    /* A partial batch forced out by max_dirty_age_ms is topped up: the PUT
     * goes anyway, and costs the same full. Blocks not written for half the
     * delay (cooling) first, then any others (a hot block may be uploaded
     * again soon, but that costs bytes in a PUT, not a PUT). */
    int passes = !all && due < max ? 3 : 1;
    uint32_t n = 0;
    for (int pass = 0; pass < passes; pass++) {
        for (struct gfs_dirty_block *db = v->dirty.head; db && n < max; db = db->next) {
            if (db->pending || db->syncing || db->n == 0)
                continue;
            int64_t due_ms = db->last_ms + v->sync.delay_ms;
            int64_t cap = db->first_ms + max_age;
            if (cap < due_ms)
                due_ms = cap;
            if (db->first_seq <= v->sync.flush_upto)
                due_ms = now;
            if (!all && pass == 0 && due_ms > now)
                continue;
            if (pass == 1 && (due_ms <= now || db->last_ms + v->sync.delay_ms / 2 > now))
                continue; /* taken in pass 0, or still hot */
            if (pass == 2 && (due_ms <= now || db->last_ms + v->sync.delay_ms / 2 <= now))
                continue; /* taken in pass 0 or 1 */
            if (snap(v, db, &out[n], now) < 0)
                return n;
            n++;
        }
    }
    return n;
}

static int cmp_block(const void *a, const void *b)
{
    const struct snap_block *x = a, *y = b;
    return x->block < y->block ? -1 : x->block > y->block;
}

/* The whole block to upload: its dirty extents over the stored copy
 * (blockio.h). base.seg stays valid: only compaction renumbers segments, in
 * this thread, between uploads. */
static int assemble(struct glidefs_volume *v, struct snap_block *sb)
{
    sb->data = malloc(v->bs);
    if (!sb->data)
        return -ENOMEM;
    struct gfs_block_plan p = {.b = sb->block, .n = v->spb, .base = GFS_BASE_NONE,
                               .e = sb->base, .slot = -1, .pieces = sb->pieces,
                               .npieces = sb->n};
    if (!sb->covered && (sb->base.seg == GFS_BM_NONE || sb->base.seg == GFS_BM_HOLE)) {
        p.base = GFS_BASE_ZERO;
    } else if (!sb->covered) {
        /* the clean cache first, else the store */
        SCOPED_LOCK(&v->lock);
        p.slot = gfs_cache_lookup(&v->cache, sb->block, sb->base.seg, sb->base.offset, &p.gen);
        p.base = p.slot >= 0 ? GFS_BASE_CACHE : GFS_BASE_STORE;
        if (sb->base.seg < v->sv.bm.nsegs) {
            p.epoch = v->sv.bm.segs[sb->base.seg].epoch;
            p.seq = v->sv.bm.segs[sb->base.seg].seq;
        }
    }
    int r = gfs_block_assemble(&v->sv, &v->cache, &p, sb->data, sb->data);
    if (r > 0) {
        p.base = GFS_BASE_STORE; /* the cached copy went meanwhile */
        r = gfs_block_assemble(&v->sv, &v->cache, &p, sb->data, sb->data);
    }
    if (r < 0)
        return r;
    sb->hole = is_zero(sb->data, v->bs);
    return 0;
}

static int build_segment(struct glidefs_volume *v, struct seg_job *job)
{
    size_t room = 0;
    for (uint32_t i = 0; i < job->n; i++)
        if (!job->blocks[i].hole)
            room += gfs_codec_max_stored(v->codec) + GFS_SEG_TRAILER_LEN;
    int r = gfs_segw_begin(&job->w, v->codec, v->name, job->epoch, job->seq, job->n, room);
    for (uint32_t i = 0; i < job->n && r == 0; i++) {
        struct snap_block *sb = &job->blocks[i];
        if (sb->hole)
            gfs_segw_add_hole(&job->w, sb->block, sb->snap_seq, &sb->se);
        else
            r = gfs_segw_add_block(&job->w, v->bs, sb->block, sb->snap_seq, sb->data, &sb->se);
    }
    if (r == 0)
        r = gfs_segw_finish(&job->w, v->bs, v->meta.data_uuid);
    return r;
}

static void upload(struct seg_job *job)
{
    struct glidefs_volume *v = job->v;
    job->result = gfs_segw_put(&job->w, v->store);
    if (job->result < 0)
        gfs_warn(&v->log, "%s: upload of %s failed: %s (will retry)", v->name, job->w.name,
                 glidefs_strerror(job->result));
}

/* In an upload worker: encode (compress, seal) and PUT. Encoding here
 * rather than in the syncer thread lets up to upload_parallel segments be
 * sealed at once, on as many cores (issue 25). */
static void build_and_upload(struct seg_job *job)
{
    struct glidefs_volume *v = job->v;
    int r = build_segment(v, job);
    if (r < 0) {
        job->result = r;
        gfs_warn(&v->log, "%s: preparing upload failed: %s (will retry)", v->name,
                 glidefs_strerror(r));
        return;
    }
    upload(job);
}

/* Commit one finished job: on success the map points at the new segment and
 * the uploaded extents leave the dirty index; either way the snapshot is
 * released. Called under the lock, in seq order. */
static void commit(struct glidefs_volume *v, struct seg_job *job)
{
    int64_t si = -1;
    if (job->result == 0) {
        si = gfs_segw_commit(v, &job->w);
        if (si < 0)
            job->result = (int)si;
    }
    for (uint32_t i = 0; i < job->n; i++) {
        struct snap_block *sb = &job->blocks[i];
        for (uint32_t k = 0; k < sb->n; k++)
            if (sb->pieces[k].jf)
                atomic_fetch_sub_explicit(&sb->pieces[k].jf->pins, 1, memory_order_release);
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
        gfs_bm_set(&v->sv.bm, sb->block, &e);
        gfs_ckpt_mark(&v->ckpt, sb->block);
        if (db && gfs_dirty_clean(&v->dirty, db, sb->snap_seq) == 0)
            gfs_dirty_requeue(&v->dirty, db, sb->snap_ms); /* written again meanwhile */
        v->st.blocks_uploaded++;
        sb->base = e; /* for the cache fill after unlock */
    }
    if (job->result == 0)
        v->st.segments_uploaded++;
}

static void *worker_main(void *arg)
{
    struct pipeline *p = arg;
    struct glidefs_volume *v = p->v;
    /* explicit: the lock is dropped around each upload */
    pthread_mutex_lock(&v->lock);
    for (;;) {
        p->idle++;
        while (!p->qhead && !p->quit)
            pthread_cond_wait(&p->cond, &v->lock);
        p->idle--;
        struct seg_job *job = p->qhead;
        if (!job)
            break; /* quitting, nothing queued */
        p->qhead = job->next_q;
        if (!p->qhead)
            p->qtail = NULL;
        p->nq--;
        pthread_mutex_unlock(&v->lock);
        build_and_upload(job);
        pthread_mutex_lock(&v->lock);
        job->done = 1;
        pthread_cond_broadcast(&v->sync.cond);
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

/* Hand an assembled segment to the workers (lock held). */
static void submit_job(struct pipeline *p, struct seg_job *job)
{
    job->next_q = NULL;
    if (p->qtail)
        p->qtail->next_q = job;
    else
        p->qhead = job;
    p->qtail = job;
    p->nq++;
    /* idle workers may not have taken earlier jobs yet: count those too */
    if (p->nq > p->idle && p->nthr < p->maxthr &&
        pthread_create(&p->thr[p->nthr], NULL, worker_main, p) == 0)
        p->nthr++;
    if (p->nthr == 0) {
        /* no thread could be started: upload here, lock dropped */
        p->qhead = p->qtail = NULL;
        p->nq = 0;
        pthread_mutex_unlock(&p->v->lock);
        build_and_upload(job);
        pthread_mutex_lock(&p->v->lock);
        job->done = 1;
        return;
    }
    pthread_cond_signal(&p->cond);
}

static void free_job(struct seg_job *job)
{
    for (uint32_t i = 0; i < job->n; i++) {
        free(job->blocks[i].data);
        free(job->blocks[i].pieces);
    }
    free(job->blocks);
    gfs_segw_free(&job->w);
    free(job);
}

/* Commit the finished jobs at the head of the seq order (lock held; dropped
 * for cache fills and manifests). */
static void retire(struct glidefs_volume *v, struct pipeline *p)
{
    while (p->ohead && p->ohead->done) {
        struct seg_job *job = p->ohead;
        p->ohead = job->next_o;
        if (!p->ohead)
            p->otail = NULL;
        p->inflight--;
        commit(v, job);
        if (job->result < 0) {
            p->failures++;
            v->sync.error = job->result;
            if (v->sync.waiters) {
                /* store-mode flushers get the store's error (their data stays dirty) */
                v->sync.flush_err = job->result;
                v->sync.flush_err_gen++;
            }
            set_backoff(v, p->failures);
        } else {
            p->failures = 0;
            v->sync.error = 0;
            v->st.last_sync_time_ms = gfs_wall_ms();
        }
        pthread_cond_broadcast(&v->cond);
        int need_manifest = v->sv.segs_since_manifest >= MANIFEST_EVERY_SEGS;
        pthread_mutex_unlock(&v->lock);
        /* uploaded blocks become clean cache entries */
        if (job->result == 0)
            for (uint32_t i = 0; i < job->n; i++)
                if (!job->blocks[i].hole)
                    gfs_blk_cache_fill(v, job->blocks[i].block, &job->blocks[i].base, NULL,
                                       job->blocks[i].data);
        free_job(job);
        if (need_manifest)
            gfs_volume_write_manifest(v);
        pthread_mutex_lock(&v->lock);
        gfs_journal_gc(&v->journal, &v->lock, gfs_budget_pressure(&v->bmem));
        pthread_cond_broadcast(&v->cond);
    }
}

uint64_t gfs_syncer_uploaded_through(struct glidefs_volume *v)
{
    uint64_t first = v->next_seq;
    for (struct gfs_dirty_block *db = v->dirty.head; db; db = db->next)
        if (db->first_seq && db->first_seq < first)
            first = db->first_seq;
    return first ? first - 1 : 0;
}

/* The store-mode flushers not yet served: their lowest and highest targets.
 * 0 when there is none. */
static int waiting_targets(struct glidefs_volume *v, uint64_t *lo, uint64_t *hi)
{
    int any = 0;
    *lo = UINT64_MAX;
    *hi = 0;
    for (struct gfs_flush_waiter *w = v->sync.waiters; w; w = w->next) {
        if (w->target <= v->sync.durable_seq)
            continue;
        any = 1;
        if (w->target < *lo)
            *lo = w->target;
        if (w->target > *hi)
            *hi = w->target;
    }
    return any;
}

/* Group commit for store-mode flushes (lock held; dropped for the manifest).
 * When uploads serve some waiter: one manifest for every waiter they serve,
 * once the segments in flight are in too (-1: wait for them, starting no
 * new one, so a stream of newcomers cannot hold the manifest back; 1: a
 * manifest was tried). Otherwise every block holding a write up to the
 * highest target goes now (pick()). 0: go on. */
static int serve_flushers(struct glidefs_volume *v, struct pipeline *p)
{
    uint64_t lo, hi;
    if (!waiting_targets(v, &lo, &hi))
        return 0;
    uint64_t through = gfs_syncer_uploaded_through(v);
    if (lo <= through) {
        if (p->inflight && through < hi)
            return -1;
        pthread_mutex_unlock(&v->lock);
        int r = gfs_volume_write_manifest(v);
        pthread_mutex_lock(&v->lock);
        if (r == 0) {
            if (through > v->sync.durable_seq)
                v->sync.durable_seq = through;
        } else {
            v->sync.error = r;
            v->sync.flush_err = r;
            v->sync.flush_err_gen++;
            set_backoff(v, 1);
        }
        pthread_cond_broadcast(&v->cond);
        return 1;
    }
    /* A new round, or newcomers join the one in flight with a segment of
     * their own (in parallel, up to upload_parallel): one manifest serves
     * them all once every segment is in, sooner than a round after it. */
    if (v->sync.flush_upto < hi)
        v->sync.flush_upto = hi;
    return 0;
}

static void timed_wait(struct glidefs_volume *v, int64_t wait)
{
    struct timespec ts;
    if (wait > 1000)
        wait = 1000;
    /* a write made while we sleep is not announced: look again in time for
     * its max_unsynced_ms deadline (half the bound) */
    if (v->sync.max_unsynced_ms && wait > v->sync.max_unsynced_ms / 4)
        wait = v->sync.max_unsynced_ms / 4;
    if (wait < 1)
        wait = 1;
    gfs_timespec_in(&ts, wait);
    pthread_cond_timedwait(&v->sync.cond, &v->lock, &ts);
}

static void *syncer_main(void *arg)
{
    struct glidefs_volume *v = arg;
    uint32_t bpb = v->sync.blocks_per_batch;
    struct pipeline p = {.v = v};
    p.maxthr = v->sync.upload_parallel > v->sync.drain_parallel ? v->sync.upload_parallel
                                                                : v->sync.drain_parallel;
    p.thr = calloc(p.maxthr, sizeof *p.thr);
    gfs_cond_init(&p.cond);
    /* explicit: held across the loop, dropped while assembling and waiting */
    pthread_mutex_lock(&v->lock);
    if (!p.thr) {
        v->deferred_error = -ENOMEM;
        pthread_mutex_unlock(&v->lock);
        pthread_cond_destroy(&p.cond);
        return NULL;
    }
    for (;;) {
        retire(v, &p);
        if (v->sync.stop)
            break;
        int64_t now = gfs_now_ms();
        if (v->sync.backoff_until_ms > now) {
            timed_wait(v, v->sync.backoff_until_ms - now);
            continue;
        }
        int fl = serve_flushers(v, &p);
        if (fl > 0)
            continue;
        if (fl < 0) {
            timed_wait(v, 1000); /* the rest of the round is in flight */
            continue;
        }
        /* a drain or back-pressure may use every connection */
        uint32_t limit = v->sync.force > 0 ? p.maxthr : v->sync.upload_parallel;
        if (p.inflight >= limit) {
            timed_wait(v, 1000);
            continue;
        }
        struct seg_job *job = calloc(1, sizeof *job);
        struct snap_block *snaps = job ? calloc(bpb, sizeof *snaps) : NULL;
        if (!snaps) {
            free(job);
            v->sync.error = -ENOMEM;
            timed_wait(v, 1000);
            continue;
        }
        int64_t next_ms;
        uint32_t n = pick(v, snaps, bpb, &next_ms);
        if (n == 0) {
            free(snaps);
            free(job);
            if (p.inflight) {
                /* uploads finishing will wake us */
                timed_wait(v, next_ms == INT64_MAX ? 1000 : next_ms - gfs_now_ms());
                continue;
            }
            /* nothing due: the journal may still hold dead files to delete
             * (and, when the node needs room, the current file once dead) */
            gfs_journal_gc(&v->journal, &v->lock, gfs_budget_pressure(&v->bmem));
            pthread_cond_broadcast(&v->cond);
            if (v->sync.stop)
                break;
            /* idle: one compaction step (never while a drain or back-pressure waits) */
            if (v->sync.force == 0) {
                uint64_t want = v->comp.req_gen;
                int requested = want > v->comp.done_gen;
                /* the access profile laid out together first (layout.h) */
                int did = requested ? 0 : gfs_layout_step(v);
                if (did <= 0)
                    did = gfs_compact_step(v, requested);
                if (requested) {
                    v->comp.done_gen = want;
                    pthread_cond_broadcast(&v->cond);
                }
                if (did > 0 || v->sync.stop)
                    continue;
            }
            int64_t wait = next_ms == INT64_MAX ? 1000 : next_ms - gfs_now_ms();
            /* a partial batch waiting for company: do not spin on every due block */
            if (wait < 20 && v->dirty.nblocks)
                wait = 20;
            timed_wait(v, wait);
            continue;
        }
        job->v = v;
        job->blocks = snaps;
        job->n = n;
        job->epoch = v->epoch;
        job->seq = v->sync.next_seg_seq++;
        if (p.otail)
            p.otail->next_o = job;
        else
            p.ohead = job;
        p.otail = job;
        p.inflight++;
        pthread_mutex_unlock(&v->lock);

        /* assemble while the segments before it are built and uploaded */
        qsort(snaps, n, sizeof *snaps, cmp_block);
        int err = 0;
        for (uint32_t i = 0; i < n && !err; i++)
            err = assemble(v, &snaps[i]);
        if (err)
            gfs_warn(&v->log, "%s: preparing upload failed: %s (will retry)", v->name,
                     glidefs_strerror(err));

        pthread_mutex_lock(&v->lock);
        if (err) {
            job->result = err;
            job->done = 1;
        } else {
            submit_job(&p, job);
        }
    }
    /* stopping: let what is in flight finish and commit it */
    while (p.ohead) {
        retire(v, &p);
        if (p.ohead && !p.ohead->done)
            pthread_cond_wait(&v->sync.cond, &v->lock);
    }
    p.quit = 1;
    pthread_cond_broadcast(&p.cond);
    pthread_mutex_unlock(&v->lock);
    for (uint32_t i = 0; i < p.nthr; i++)
        pthread_join(p.thr[i], NULL);
    free(p.thr);
    pthread_cond_destroy(&p.cond);
    return NULL;
}

int gfs_syncer_start(struct glidefs_volume *v)
{
    if (v->sync.running)
        return 0;
    v->sync.stop = 0;
    int r = pthread_create(&v->sync.thr, NULL, syncer_main, v);
    if (r != 0)
        return -r;
    v->sync.running = 1;
    return 0;
}

void gfs_syncer_stop(struct glidefs_volume *v)
{
    if (!v->sync.running)
        return;
    {
        SCOPED_LOCK(&v->lock);
        v->sync.stop = 1;
        pthread_cond_broadcast(&v->sync.cond);
        pthread_cond_broadcast(&v->cond);
    }
    pthread_join(v->sync.thr, NULL);
    v->sync.running = 0;
}

int gfs_syncer_flush(struct glidefs_volume *v, uint64_t target)
{
    if (v->sync.durability != GLIDEFS_DURABILITY_STORE)
        return 0;
    if (!v->owner)
        return v->fenced ? -EROFS : 0; /* nothing of ours can reach the store */
    uint64_t through = gfs_syncer_uploaded_through(v);
    if (through >= target && v->sv.segs_since_manifest == 0 && v->sync.durable_seq < through)
        v->sync.durable_seq = through; /* uploaded, and the last manifest covers every segment */
    if (v->sync.durable_seq >= target)
        return 0;
    struct gfs_flush_waiter w = {.target = target, .next = v->sync.waiters};
    v->sync.waiters = &w;
    v->st.store_flushes++;
    uint64_t eg = v->sync.flush_err_gen;
    pthread_cond_broadcast(&v->sync.cond);
    int r = 0;
    while (v->sync.durable_seq < target) {
        if (v->sync.flush_err_gen != eg) {
            r = v->sync.flush_err ? v->sync.flush_err : -EIO;
            break;
        }
        if (v->fenced || !v->owner) {
            r = -EROFS;
            break;
        }
        if (v->stop || v->sync.stop) {
            r = -ESHUTDOWN;
            break;
        }
        if (v->journal.failed && v->deferred_error) {
            r = -EIO;
            break;
        }
        pthread_cond_wait(&v->cond, &v->lock);
    }
    struct gfs_flush_waiter **pp = &v->sync.waiters;
    while (*pp != &w)
        pp = &(*pp)->next;
    *pp = w.next;
    if (r < 0)
        v->st.store_flush_errors++;
    return r;
}

/* Is the volume past a max_unsynced bound, for a write of len bytes? */
static int over_bounds(struct glidefs_volume *v, uint64_t len)
{
    uint64_t dirty = v->dirty.sectors * 512;
    if (v->sync.max_unsynced_bytes && dirty > 0 && dirty + len > v->sync.max_unsynced_bytes)
        return 1;
    /* the head of the oldest-first list holds the oldest write not in the store */
    return v->sync.max_unsynced_ms && v->dirty.head &&
           gfs_now_ms() - v->dirty.head->first_ms >= v->sync.max_unsynced_ms;
}

int gfs_syncer_room(struct glidefs_volume *v, uint64_t len)
{
    int waited = 0;
    for (;;) {
        if (v->read_only)
            return -EROFS;
        if (v->stop)
            return -ESHUTDOWN;
        if (!v->owner || !over_bounds(v, len))
            return 0;
        if (!waited)
            v->st.unsynced_waits++;
        waited = 1;
        /* hurry the syncer as a drain does; uploads committed wake us */
        v->sync.force++;
        pthread_cond_broadcast(&v->sync.cond);
        struct timespec ts;
        gfs_timespec_in(&ts, 1000); /* the age bound is crossed by time alone: look again */
        pthread_cond_timedwait(&v->cond, &v->lock, &ts);
        v->sync.force--;
    }
}
