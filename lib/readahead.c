/*
 * readahead.c — stream detection and coalesced, parallel read-ahead of
 * blocks missing from the clean cache (see readahead.h).
 */
#include "readahead.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blockio.h"
#include "cleanup.h"
#include "codec.h"
#include "profile.h"
#include "segment.h"
#include "volume_internal.h"

#define RA_STREAMS 4       /* sequential streams followed at once per volume */
#define RA_MAX_THREADS 8
#define RA_MAX_JOB 64      /* blocks in one ranged GET at most */
#define RA_IDLE_MS 10000   /* a worker with nothing to do for this long exits */
#define PF_GAP (128u << 10) /* profile prefetch: bytes of a segment fetched between two
                               wanted payloads rather than a second GET */
#define PF_MAX_SPAN (4u << 20) /* bytes of one prefetch GET at most (beyond one payload):
                                 a reader that needs one of its blocks runs it; a
                                 whole default segment (25 x 128 KiB), so a profile
                                 laid out densely (layout.h) costs a GET per segment */
#define PF_MAX_INFLIGHT 1024 /* profile blocks queued or being fetched at most */
#define PF_SCAN 4096       /* profile entries looked at per top-up at most (lock hold) */

/* A run of blocks stored back to back in one segment: one ranged GET. */
struct ra_job {
    struct ra_job *next;
    uint64_t id;
    uint64_t b0;
    uint32_t n;
    int running;
    uint64_t epoch, seq;   /* the segment, as the block map named it at planning */
    uint64_t lo, len;      /* byte range in the segment object */
    int prefetch;          /* a profile prefetch job (its blocks are bl[]) */
    uint64_t *bl;          /* the block of each entry; NULL: b0 + i */
    void (*fn)(void *);    /* a function job (gfs_ra_run): no blocks */
    void *fn_arg;
    struct gfs_bm_entry e[];
};

static uint64_t job_block(const struct ra_job *j, uint32_t i)
{
    return j->bl ? j->bl[i] : j->b0 + i;
}

static int job_has(const struct ra_job *j, uint64_t b)
{
    if (!j->bl)
        return b >= j->b0 && b < j->b0 + j->n;
    for (uint32_t i = 0; i < j->n; i++)
        if (j->bl[i] == b)
            return 1;
    return 0;
}

struct ra_stream {
    int used;
    uint64_t next_b;       /* the block a sequential continuation starts at */
    uint64_t ra_next;      /* first block not yet planned */
    uint32_t hits;         /* sequential continuations seen */
    uint64_t lru;
};

struct gfs_ra {
    struct glidefs_volume *v;
    uint32_t window;       /* blocks ahead of the stream */
    uint32_t max_job;      /* blocks per GET */
    unsigned nthreads, alive;
    /* Workers exit when idle (a daemon holds many volumes that were read
     * sequentially once); one that does detaches itself and frees its slot:
     * after it lets go of the lock it touches nothing of ours. */
    struct ra_worker {
        struct gfs_ra *ra;
        pthread_t thr;
        int running;
    } w[RA_MAX_THREADS];
    int64_t idle_ms;
    pthread_cond_t work;   /* a job was queued, or stop */
    pthread_cond_t done;   /* a job finished */
    int stop;
    struct ra_job *qhead, *qtail; /* queued, oldest first */
    struct ra_job *running;
    uint64_t queued_blocks;       /* in queued and running jobs */
    uint64_t next_id;
    struct ra_stream st[RA_STREAMS];
    /* st[i].next_b of the used streams (else UINT64_MAX), for the lock-free
     * read path's gfs_ra_follows: written under the lock, read without */
    _Atomic uint64_t hint[RA_STREAMS];
    uint64_t tick;
    gfs_ra_hook hook;
    void *hook_arg;
    /* profile prefetch (gfs_ra_prefetch_start): the list, the next entry
     * to plan, blocks of prefetch jobs queued or running */
    struct {
        uint64_t *bl;
        uint32_t n, next;
        uint32_t inflight, cap;
        int stopped;
        const struct gfs_blkset *set; /* bl as a set: guides the streams' windows */
        gfs_ra_filled_fn filled;
        void *arg;
    } pf;
};

int gfs_ra_create(struct glidefs_volume *v, uint64_t window_bytes, unsigned nthreads,
                  struct gfs_ra **out)
{
    *out = NULL;
    /* never more than an eighth of the cache budget: read-ahead must not
     * push the working set out (the node's budget; window_now() takes the
     * volumes sharing it into account) */
    uint64_t cap = gfs_budget_total(v->bud) / 8;
    if (window_bytes > cap)
        window_bytes = cap;
    if (window_bytes < v->bs)
        return 0;
    struct gfs_ra *ra = calloc(1, sizeof *ra);
    if (!ra)
        return -ENOMEM;
    ra->v = v;
    uint64_t w = window_bytes / v->bs;
    ra->window = w > (1u << 20) ? (1u << 20) : (uint32_t)w;
    ra->max_job = ra->window < RA_MAX_JOB ? ra->window : RA_MAX_JOB;
    ra->nthreads = nthreads < 1 ? 1 : nthreads > RA_MAX_THREADS ? RA_MAX_THREADS : nthreads;
    ra->idle_ms = RA_IDLE_MS;
    gfs_cond_init(&ra->work);
    gfs_cond_init(&ra->done);
    for (unsigned i = 0; i < RA_MAX_THREADS; i++)
        ra->w[i].ra = ra;
    for (unsigned i = 0; i < RA_STREAMS; i++)
        atomic_init(&ra->hint[i], UINT64_MAX);
    *out = ra;
    return 0;
}

void gfs_ra_set_test_hook(struct gfs_ra *ra, gfs_ra_hook fn, void *arg)
{
    SCOPED_LOCK(&ra->v->lock);
    ra->hook = fn;
    ra->hook_arg = arg;
}

/* The window now: the node's cache budget is shared by every open volume,
 * so each stream's read-ahead stays within its volume's part of an eighth
 * of it (all of it for a volume alone, as before). */
static uint32_t window_now(const struct gfs_ra *ra)
{
    uint64_t cap = gfs_budget_readahead_cap(ra->v->bud) / ra->v->bs;
    if (cap < 1)
        cap = 1;
    return cap < ra->window ? (uint32_t)cap : ra->window;
}

/* Under the lock: the queued or running job that holds block b. */
static struct ra_job *find_job(struct gfs_ra *ra, uint64_t b)
{
    for (struct ra_job *j = ra->qhead; j; j = j->next)
        if (job_has(j, b))
            return j;
    for (struct ra_job *j = ra->running; j; j = j->next)
        if (job_has(j, b))
            return j;
    return NULL;
}

static int running_has(const struct gfs_ra *ra, uint64_t id)
{
    for (const struct ra_job *j = ra->running; j; j = j->next)
        if (j->id == id)
            return 1;
    return 0;
}

/* Under the lock: take job j off the queue and mark it running. */
static void start_job(struct gfs_ra *ra, struct ra_job *j)
{
    struct ra_job **pp = &ra->qhead, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = j->next;
        if (ra->qtail == j)
            ra->qtail = prev;
    }
    j->running = 1;
    j->next = ra->running;
    ra->running = j;
}

static void pf_topup(struct gfs_ra *ra);

/* Under the lock: a running job is over. */
static void finish_job(struct gfs_ra *ra, struct ra_job *j)
{
    for (struct ra_job **pp = &ra->running; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    ra->queued_blocks -= j->n;
    pthread_cond_broadcast(&ra->done);
    int pf = j->prefetch;
    if (pf)
        ra->pf.inflight -= j->n;
    free(j);
    if (pf)
        pf_topup(ra); /* the profile keeps its few GETs in flight */
}

/* Lock not held: one ranged GET for the whole run, then each block is
 * verified and decoded like an on-demand fetch and offered to the cache
 * (which refuses it if the block map moved on meanwhile). */
static void run_job(struct gfs_ra *ra, struct ra_job *j)
{
    struct glidefs_volume *v = ra->v;
    if (j->fn) {
        j->fn(j->fn_arg);
        return;
    }
    char key[512];
    gfs_seg_key(key, sizeof key,
                gfs_view_origin_name(&v->sv, (uint32_t)(j->epoch >> GFS_ORIGIN_SHIFT)),
                j->epoch & GFS_EPOCH_MASK, j->seq);
    CLEANUP_FREE uint8_t *buf = malloc(j->len);
    CLEANUP_FREE uint8_t *scratch = malloc(v->bs);
    if (!buf || !scratch)
        return;
    size_t got = 0;
    int r = v->store->ops->get_range(v->store, key, j->lo, j->len, buf, &got);
    if (r < 0) {
        /* the reader fetches the block itself and reports what goes wrong */
        gfs_debug(&v->log, "%s: read-ahead of %s failed: %s", v->name, key, glidefs_strerror(r));
        return;
    }
    pthread_mutex_lock(&v->lock);
    gfs_ra_hook hook = ra->hook;
    void *hook_arg = ra->hook_arg;
    pthread_mutex_unlock(&v->lock);
    if (hook)
        hook(hook_arg, j->b0, j->n);
    uint64_t filled = 0;
    /* one segment, one key for the whole run */
    struct gfs_sealkey k = {0};
    int sealed = gfs_codec_sealed(v->codec);
    if (sealed && j->n && gfs_codec_sealkey(v->codec, j->e[0].key_gen, key, &k) < 0)
        return; /* the reader fails the block and logs it */
    for (uint32_t i = 0; i < j->n; i++) {
        const struct gfs_bm_entry *e = &j->e[i];
        uint64_t o = e->offset - j->lo, span = gfs_seg_span(e->length, e->flags);
        if (o + span > got)
            break;
        uint8_t *out = gfs_blk_plain(e, v->bs) ? buf + o : scratch;
        /* a bad block is left to the reader, which fetches it again and
         * fails with -EIO (counted and logged there) */
        uint64_t b = job_block(j, i);
        if (gfs_blk_check_k(&v->sv, b, e, sealed ? &k : NULL, buf + o, span, out) < 0)
            continue;
        pthread_mutex_lock(&v->lock);
        int have = gfs_cache_has(&v->cache, b, e->seg, e->offset);
        pthread_mutex_unlock(&v->lock);
        if (have)
            continue; /* fetched meanwhile by a reader: its copy stays */
        uint64_t id[2] = {j->epoch, j->seq};
        gfs_blk_cache_fill(v, b, e, id, out);
        filled++;
        if (j->prefetch) {
            pthread_mutex_lock(&v->lock);
            if (ra->pf.filled && gfs_cache_has(&v->cache, b, e->seg, e->offset))
                ra->pf.filled(ra->pf.arg, b);
            pthread_mutex_unlock(&v->lock);
        }
    }
    gfs_sealkey_wipe(&k);
    atomic_fetch_add_explicit(&v->sv.blocks_fetched, j->n, memory_order_relaxed);
    pthread_mutex_lock(&v->lock);
    if (j->prefetch)
        v->st.prefetched_blocks += filled;
    else
        v->st.readahead_blocks += filled;
    pthread_mutex_unlock(&v->lock);
}

void gfs_ra_set_idle_ms(struct gfs_ra *ra, int64_t ms)
{
    SCOPED_LOCK(&ra->v->lock);
    ra->idle_ms = ms;
    pthread_cond_broadcast(&ra->work); /* waiting workers take the new deadline */
}

unsigned gfs_ra_threads(struct gfs_ra *ra)
{
    SCOPED_LOCK(&ra->v->lock);
    return ra->alive;
}

/* Run job j from the queue in this thread (lock held; dropped for the GET). */
static void run_queued(struct gfs_ra *ra, struct ra_job *j)
{
    struct glidefs_volume *v = ra->v;
    start_job(ra, j);
    pthread_mutex_unlock(&v->lock);
    run_job(ra, j);
    pthread_mutex_lock(&v->lock);
    finish_job(ra, j);
}

static void *worker(void *arg)
{
    struct ra_worker *me = arg;
    struct gfs_ra *ra = me->ra;
    struct glidefs_volume *v = ra->v;
    pthread_mutex_lock(&v->lock);
    while (!ra->stop) {
        struct ra_job *j = ra->qhead;
        if (!j) {
            struct timespec dl;
            gfs_timespec_in(&dl, ra->idle_ms);
            if (pthread_cond_timedwait(&ra->work, &v->lock, &dl) == ETIMEDOUT && !ra->qhead &&
                !ra->stop) {
                me->running = 0; /* idle: the next stream starts a thread again */
                ra->alive--;
                pthread_detach(pthread_self());
                break;
            }
            continue;
        }
        run_queued(ra, j);
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

/* Under the lock: is block p worth fetching ahead? Fills *e. */
static int wanted_noq(struct gfs_ra *ra, uint64_t p, struct gfs_bm_entry *e)
{
    struct glidefs_volume *v = ra->v;
    *e = gfs_bm_get(&v->sv.bm, p);
    if (e->seg == GFS_BM_NONE || e->seg == GFS_BM_HOLE || e->seg >= v->sv.bm.nsegs)
        return 0;
    if (e->length == 0 || e->length > gfs_codec_max_stored(v->codec))
        return 0; /* the reader reports it */
    if (gfs_cache_has(&v->cache, p, e->seg, e->offset))
        return 0;
    struct gfs_dirty_block *db = gfs_dirty_get(&v->dirty, p);
    if (db && gfs_dirty_covers(db, 0, v->spb))
        return 0; /* newer data covers all of it */
    return 1;
}

/* ... and not queued already. */
static int wanted(struct gfs_ra *ra, uint64_t p, struct gfs_bm_entry *e)
{
    return wanted_noq(ra, p, e) && find_job(ra, p) == NULL;
}

/* Under the lock: start workers for `queued` new jobs and wake them. */
static void kick_workers(struct gfs_ra *ra, unsigned queued)
{
    /* threads start on first use: a volume that is never read sequentially
     * costs none */
    while (ra->alive < ra->nthreads && ra->alive < queued + 1) {
        struct ra_worker *w = NULL;
        for (unsigned i = 0; i < RA_MAX_THREADS && !w; i++)
            if (!ra->w[i].running)
                w = &ra->w[i];
        if (!w || pthread_create(&w->thr, NULL, worker, w) != 0)
            break; /* readers run queued jobs themselves */
        w->running = 1;
        ra->alive++;
    }
    pthread_cond_broadcast(&ra->work);
}

static void enqueue(struct gfs_ra *ra, struct ra_job *j)
{
    if (ra->qtail)
        ra->qtail->next = j;
    else
        ra->qhead = j;
    ra->qtail = j;
    ra->queued_blocks += j->n;
}

/* Is block p, ahead of a read, left out of a stream's window? While the
 * guest follows a profile being prefetched, only the profile's blocks are
 * fetched ahead (gfs_ra_prefetch_start). */
static int unguided(const struct gfs_ra *ra, uint64_t p)
{
    return ra->pf.set && !ra->pf.stopped && gfs_blkset_get(ra->pf.set, p) < 0;
}

/* Under the lock: queue the blocks from the stream's position up to
 * `ahead` blocks past the read [fb, lb], in runs of one segment each. */
static void plan(struct gfs_ra *ra, struct ra_stream *s, uint64_t fb, uint64_t lb, uint32_t ahead)
{
    struct glidefs_volume *v = ra->v;
    uint64_t nblocks = (v->size + v->bs - 1) / v->bs;
    if (s->ra_next < fb)
        s->ra_next = fb;
    uint64_t want = lb + 1 + ahead;
    if (want > nblocks)
        want = nblocks;
    /* top up as soon as a segment's worth of the window is free: the queue
     * stays full, and runs stay whole segments */
    uint32_t bpb = v->sync.blocks_per_batch;
    uint64_t grain = ahead ? (ra->max_job < bpb ? ra->max_job : bpb) : 1;
    if (s->ra_next + grain > want && want < nblocks)
        return;
    uint64_t p = s->ra_next;
    int queued = 0;
    struct gfs_bm_entry run[RA_MAX_JOB];
    while (p < want && ra->queued_blocks < (uint64_t)window_now(ra) + ra->max_job) {
        if ((p > lb && unguided(ra, p)) || !wanted(ra, p, &run[0])) {
            p++;
            continue;
        }
        uint32_t n = 1;
        uint64_t end = run[0].offset + gfs_seg_span(run[0].length, run[0].flags);
        /* the run may go past the window to the end of its segment: a
         * bounded overshoot that saves a GET */
        while (n < ra->max_job && p + n < (ahead ? nblocks : want)) {
            struct gfs_bm_entry e;
            if ((p + n > lb && unguided(ra, p + n)) || !wanted(ra, p + n, &e) ||
                e.seg != run[0].seg || e.offset != end)
                break;
            run[n++] = e;
            end += gfs_seg_span(e.length, e.flags);
        }
        struct ra_job *j = malloc(sizeof *j + n * sizeof j->e[0]);
        if (!j)
            break;
        memset(j, 0, sizeof *j);
        j->id = ++ra->next_id;
        j->b0 = p;
        j->n = n;
        j->epoch = v->sv.bm.segs[run[0].seg].epoch;
        j->seq = v->sv.bm.segs[run[0].seg].seq;
        j->lo = run[0].offset;
        j->len = end - run[0].offset;
        memcpy(j->e, run, n * sizeof run[0]);
        enqueue(ra, j);
        queued++;
        p += n;
    }
    s->ra_next = p;
    if (queued)
        kick_workers(ra, (unsigned)queued);
}

/* ------------------------------------------------------------------------ */
/* profile prefetch                                                           */

struct pf_cand {
    uint64_t b;
    uint32_t idx;          /* position in the profile */
    struct gfs_bm_entry e;
};

static int cand_by_place(const void *a, const void *b)
{
    const struct pf_cand *x = a, *y = b;
    if (x->e.seg != y->e.seg)
        return x->e.seg < y->e.seg ? -1 : 1;
    return x->e.offset < y->e.offset ? -1 : x->e.offset > y->e.offset;
}

struct pf_run {
    uint32_t first, n;     /* in the sorted candidates */
    uint32_t min_idx;
};

static int run_by_idx(const void *a, const void *b)
{
    const struct pf_run *x = a, *y = b;
    return x->min_idx < y->min_idx ? -1 : x->min_idx > y->min_idx;
}

/* Under the lock: queue the next profile blocks that are missing, up to
 * pf.cap in flight. The blocks of a stretch of the profile are grouped by
 * segment and sorted by offset; payloads at most PF_GAP apart come in one
 * ranged GET; the GETs are queued in the order their first block is
 * needed. Returns the jobs queued, -1 when there was nothing to plan. */
static int pf_plan(struct gfs_ra *ra)
{
    struct glidefs_volume *v = ra->v;
    if (!ra->pf.bl || ra->pf.next >= ra->pf.n || ra->pf.stopped || ra->stop || v->fenced ||
        ra->pf.inflight >= ra->pf.cap)
        return -1;
    uint32_t want = ra->pf.cap - ra->pf.inflight;
    /* top up in batches: a GET's worth of free room is not worth a plan */
    if (want < ra->pf.cap / 4 && ra->pf.inflight)
        return -1;
    struct pf_cand *c = malloc((size_t)want * sizeof *c);
    struct pf_run *runs = malloc((size_t)want * sizeof *runs);
    if (!c || !runs) {
        free(c);
        free(runs);
        return -1;
    }
    uint64_t nblocks = (v->size + v->bs - 1) / v->bs;
    uint32_t nc = 0, scanned = 0;
    while (ra->pf.next < ra->pf.n && nc < want && scanned < PF_SCAN) {
        uint32_t idx = ra->pf.next++;
        uint64_t b = ra->pf.bl[idx];
        scanned++;
        /* queued by a reader's read-ahead or not: the cache fill sorts out
         * a double fetch, and find_job over a long queue is not cheap */
        if (b < nblocks && wanted_noq(ra, b, &c[nc].e)) {
            c[nc].b = b;
            c[nc].idx = idx;
            nc++;
        }
    }
    qsort(c, nc, sizeof *c, cand_by_place);
    uint32_t nr = 0;
    for (uint32_t i = 0; i < nc;) {
        uint64_t end = c[i].e.offset + gfs_seg_span(c[i].e.length, c[i].e.flags);
        uint32_t k = i + 1, mi = c[i].idx;
        while (k < nc && k - i < ra->max_job && c[k].e.seg == c[i].e.seg &&
               c[k].e.offset >= end && c[k].e.offset - end <= PF_GAP) {
            uint64_t e2 = c[k].e.offset + gfs_seg_span(c[k].e.length, c[k].e.flags);
            if (e2 - c[i].e.offset > PF_MAX_SPAN)
                break;
            end = e2;
            if (c[k].idx < mi)
                mi = c[k].idx;
            k++;
        }
        runs[nr++] = (struct pf_run){i, k - i, mi};
        i = k;
    }
    qsort(runs, nr, sizeof *runs, run_by_idx);
    unsigned queued = 0;
    for (uint32_t r = 0; r < nr; r++) {
        uint32_t n = runs[r].n;
        const struct pf_cand *x = &c[runs[r].first];
        struct ra_job *j = malloc(sizeof *j + n * sizeof j->e[0] + n * sizeof(uint64_t));
        if (!j)
            break;
        memset(j, 0, sizeof *j);
        j->bl = (uint64_t *)(void *)((char *)j + sizeof *j + n * sizeof j->e[0]);
        j->id = ++ra->next_id;
        j->prefetch = 1;
        j->n = n;
        j->b0 = x[0].b;
        for (uint32_t i = 0; i < n; i++) {
            j->e[i] = x[i].e;
            j->bl[i] = x[i].b;
        }
        j->epoch = v->sv.bm.segs[x[0].e.seg].epoch;
        j->seq = v->sv.bm.segs[x[0].e.seg].seq;
        j->lo = x[0].e.offset;
        j->len = x[n - 1].e.offset + gfs_seg_span(x[n - 1].e.length, x[n - 1].e.flags) - j->lo;
        enqueue(ra, j);
        ra->pf.inflight += n;
        queued++;
    }
    free(c);
    free(runs);
    if (queued)
        kick_workers(ra, queued);
    return (int)queued;
}

static void pf_topup(struct gfs_ra *ra)
{
    /* a stretch that was all cached queues nothing: look further */
    while (pf_plan(ra) == 0)
        ;
}

void gfs_ra_prefetch_start(struct gfs_ra *ra, uint64_t *blocks, uint32_t n,
                           const struct gfs_blkset *set, gfs_ra_filled_fn filled, void *arg)
{
    if (!ra || ra->stop || ra->pf.bl) {
        free(blocks);
        return;
    }
    ra->pf.bl = blocks;
    ra->pf.n = n;
    ra->pf.next = 0;
    ra->pf.set = set;
    ra->pf.filled = filled;
    ra->pf.arg = arg;
    uint32_t cap = window_now(ra);
    ra->pf.cap = cap < PF_MAX_INFLIGHT ? cap : PF_MAX_INFLIGHT;
    if (ra->pf.cap < 1)
        ra->pf.cap = 1;
    pf_topup(ra);
}

void gfs_ra_prefetch_stop(struct gfs_ra *ra)
{
    if (ra && ra->pf.bl)
        ra->pf.stopped = 1; /* what is queued finishes; nothing more is planned */
}

uint32_t gfs_ra_prefetch_pos(const struct gfs_ra *ra)
{
    return ra ? ra->pf.next : 0;
}

int gfs_ra_run(struct gfs_ra *ra, void (*fn)(void *), void *arg)
{
    if (!ra || ra->stop)
        return -ESHUTDOWN;
    struct ra_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->id = ++ra->next_id;
    j->fn = fn;
    j->fn_arg = arg;
    enqueue(ra, j);
    kick_workers(ra, 1);
    return 0;
}

uint64_t gfs_ra_queue_range(struct gfs_ra *ra, uint64_t b0, uint64_t b1)
{
    if (!ra || b1 <= b0 || ra->stop || ra->v->fenced)
        return b0;
    struct ra_stream tmp = {.used = 1, .next_b = b1, .ra_next = b0};
    plan(ra, &tmp, b0, b1 - 1, 0);
    return tmp.ra_next;
}

static void publish_hints(struct gfs_ra *ra)
{
    for (int i = 0; i < RA_STREAMS; i++) {
        uint64_t h = ra->st[i].used ? ra->st[i].next_b : UINT64_MAX;
        if (atomic_load_explicit(&ra->hint[i], memory_order_relaxed) != h)
            atomic_store_explicit(&ra->hint[i], h, memory_order_relaxed);
    }
}

int gfs_ra_follows(struct gfs_ra *ra, uint64_t b)
{
    if (!ra)
        return 0;
    for (int i = 0; i < RA_STREAMS; i++) {
        uint64_t h = atomic_load_explicit(&ra->hint[i], memory_order_relaxed);
        if (h != UINT64_MAX && b + 1 >= h && b <= h)
            return 1;
    }
    return 0;
}

static void note_read(struct gfs_ra *ra, uint64_t off, uint64_t len);

void gfs_ra_note_read(struct gfs_ra *ra, uint64_t off, uint64_t len)
{
    note_read(ra, off, len);
    if (ra)
        publish_hints(ra);
}

static void note_read(struct gfs_ra *ra, uint64_t off, uint64_t len)
{
    if (!ra || len == 0)
        return;
    struct glidefs_volume *v = ra->v;
    uint64_t fb = off / v->bs, lb = (off + len - 1) / v->bs;
    if (ra->stop || v->fenced)
        return;
    ra->tick++;
    struct ra_stream *s = NULL;
    for (int i = 0; i < RA_STREAMS && !s; i++)
        if (ra->st[i].used && fb + 1 >= ra->st[i].next_b && fb <= ra->st[i].next_b)
            s = &ra->st[i];
    if (!s) {
        /* a new stream replaces the least recently used one */
        s = &ra->st[0];
        for (int i = 1; i < RA_STREAMS; i++)
            if (!ra->st[i].used || (s->used && ra->st[i].lru < s->lru))
                s = &ra->st[i];
        *s = (struct ra_stream){.used = 1, .next_b = lb + 1, .lru = ra->tick};
        /* not known to be sequential: fetch no more than this read needs,
         * but its blocks in as few GETs as they allow */
        if (lb > fb)
            plan(ra, s, fb, lb, 0);
        return;
    }
    s->lru = ra->tick;
    if (lb >= s->next_b) {
        s->hits++;
        s->next_b = lb + 1;
        /* sequential: after two continuations, or one by a large read */
        if (s->hits >= 2 || lb - fb + 1 >= 4)
            plan(ra, s, fb, lb, window_now(ra));
    }
}

int gfs_ra_wait(struct gfs_ra *ra, uint64_t b)
{
    if (!ra)
        return 0;
    struct glidefs_volume *v = ra->v;
    pthread_mutex_lock(&v->lock);
    struct ra_job *j = find_job(ra, b);
    if (!j) {
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (j->running) {
        uint64_t id = j->id;
        while (running_has(ra, id))
            pthread_cond_wait(&ra->done, &v->lock);
        pthread_mutex_unlock(&v->lock);
        return 1;
    }
    /* queued: the reader needs it now, so it fetches the whole run itself */
    run_queued(ra, j);
    pthread_mutex_unlock(&v->lock);
    return 1;
}

void gfs_ra_destroy(struct gfs_ra *ra)
{
    if (!ra)
        return;
    struct glidefs_volume *v = ra->v;
    pthread_mutex_lock(&v->lock);
    ra->stop = 1;
    pthread_cond_broadcast(&ra->work);
    pthread_mutex_unlock(&v->lock);
    /* with stop set no worker leaves by itself: the running ones are joined */
    for (unsigned i = 0; i < RA_MAX_THREADS; i++)
        if (ra->w[i].running)
            pthread_join(ra->w[i].thr, NULL);
    pthread_mutex_lock(&v->lock);
    /* a reader may still be running a job it took (a read racing close) */
    while (ra->running)
        pthread_cond_wait(&ra->done, &v->lock);
    while (ra->qhead) {
        struct ra_job *j = ra->qhead;
        ra->qhead = j->next;
        free(j);
    }
    ra->qtail = NULL;
    free(ra->pf.bl);
    ra->pf.bl = NULL;
    pthread_mutex_unlock(&v->lock);
    pthread_cond_destroy(&ra->work);
    pthread_cond_destroy(&ra->done);
    free(ra);
}
