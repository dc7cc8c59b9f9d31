/*
 * budget.c — the node's disk budget shared by the volumes of one config
 * (see budget.h).
 */
#include "budget.h"
#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JFILE_MIN (512u << 10)
#define JFILE_MAX (64u << 20)

struct gfs_budget {
    pthread_mutex_t lock;
    _Atomic uint32_t refs;
    _Atomic uint64_t total;         /* cache.disk_size (read without the lock) */
    _Atomic uint32_t n;             /* members */
    struct gfs_budget_member *members;
    struct gfs_budget_member *whead, *wtail; /* volumes waiting for journal room */
    uint64_t want;                  /* what the head of the queue asks for (lock) */
    uint64_t round;                 /* eviction rounds (lock) */
    atomic_int pressure;            /* the queue is not empty */
    int64_t kicked_ms;              /* syncers last woken for a waiter (lock) */
    /* charged and reserved bytes */
    _Atomic uint64_t journal, cache, res_journal, res_cache;
    /* giving space back bumps gen and wakes the sleepers */
    _Atomic uint64_t gen;
    _Atomic uint32_t sleepers;
    pthread_mutex_t wake_lock;      /* a leaf: nothing is taken while it is held */
    pthread_cond_t wake;
    /* parked caches of closed volumes, oldest first (lock); their bytes are
     * in cache */
    struct parked *parked, *parked_tail;
    int scanned;                    /* gfs_budget_first_scan answered (lock) */
};

struct parked {
    struct parked *next;
    uint64_t bytes;
    int (*drop)(const char *dir);
    char dir[];
};

/* sequentially consistent, as the budget's arithmetic assumes */
#define LD(p) atomic_load(p)
#define ADD(p, d) atomic_fetch_add(p, d)
#define SUB(p, d) atomic_fetch_sub(p, d)

int gfs_budget_new(struct gfs_budget **out)
{
    struct gfs_budget *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->refs = 1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->wake_lock, NULL);
    gfs_cond_init(&b->wake);
    *out = b;
    return 0;
}

void gfs_budget_ref(struct gfs_budget *b)
{
    ADD(&b->refs, 1);
}

void gfs_budget_unref(struct gfs_budget *b)
{
    if (!b || SUB(&b->refs, 1) != 1) /* the old count: 1 was the last reference */
        return;
    for (struct parked *p = b->parked, *next; p; p = next) {
        next = p->next;
        free(p); /* kept on disk for a later process, which counts it again */
    }
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->wake_lock);
    pthread_cond_destroy(&b->wake);
    free(b);
}

/* Space was given back (or the queue changed): wake whoever sleeps. */
static void wake_all(struct gfs_budget *b)
{
    ADD(&b->gen, 1);
    if (LD(&b->sleepers)) {
        pthread_mutex_lock(&b->wake_lock);
        pthread_cond_broadcast(&b->wake);
        pthread_mutex_unlock(&b->wake_lock);
    }
}

void gfs_budget_wait(struct gfs_budget *b, uint64_t gen, int64_t ms)
{
    struct timespec ts;
    gfs_timespec_in(&ts, ms);
    /* sleepers is raised before gen is looked at: a giver that bumps gen
     * after our look sees a sleeper and broadcasts under wake_lock */
    ADD(&b->sleepers, 1);
    pthread_mutex_lock(&b->wake_lock);
    while (LD(&b->gen) == gen)
        if (pthread_cond_timedwait(&b->wake, &b->wake_lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&b->wake_lock);
    SUB(&b->sleepers, 1);
}

void gfs_budget_join(struct gfs_budget *b, struct gfs_budget_member *m, uint64_t total)
{
    gfs_budget_ref(b);
    pthread_mutex_lock(&b->lock);
    m->b = b;
    m->journal = m->cache = 0;
    m->wnext = NULL;
    m->nwait = 0;
    m->queued = 0;
    m->tried = 0;
    m->prev = NULL;
    m->next = b->members;
    if (b->members)
        b->members->prev = m;
    b->members = m;
    ADD(&b->n, 1);
    atomic_store(&b->total, total);
    pthread_mutex_unlock(&b->lock);
}

/* Under the lock: take m out of the wait queue. */
static void dequeue(struct gfs_budget *b, struct gfs_budget_member *m)
{
    if (!m->queued)
        return;
    struct gfs_budget_member **pp = &b->whead, *prev = NULL;
    while (*pp && *pp != m) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (*pp) {
        if (pp == &b->whead)
            b->want = 0; /* the next head says what it needs */
        *pp = m->wnext;
        if (b->wtail == m)
            b->wtail = prev;
    }
    m->wnext = NULL;
    m->queued = 0;
    atomic_store(&b->pressure, b->whead != NULL);
}

void gfs_budget_leave(struct gfs_budget_member *m)
{
    struct gfs_budget *b = m->b;
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    dequeue(b, m);
    m->nwait = 0;
    if (m->prev)
        m->prev->next = m->next;
    else
        b->members = m->next;
    if (m->next)
        m->next->prev = m->prev;
    SUB(&b->n, 1);
    /* whatever it still had charged is no longer this node's business (its
     * cache file was emptied; a journal left with dirty data counts again
     * at the next open) */
    uint64_t j = atomic_exchange(&m->journal, 0);
    uint64_t c = atomic_exchange(&m->cache, 0);
    SUB(&b->journal, j);
    SUB(&b->cache, c);
    m->b = NULL;
    pthread_mutex_unlock(&b->lock);
    wake_all(b);
    gfs_budget_unref(b);
}

void gfs_budget_journal_add(struct gfs_budget_member *m, int64_t delta)
{
    struct gfs_budget *b = m->b;
    if (!b || delta == 0)
        return;
    if (delta > 0) {
        ADD(&m->journal, (uint64_t)delta);
        ADD(&b->journal, (uint64_t)delta);
        return;
    }
    SUB(&m->journal, (uint64_t)-delta);
    SUB(&b->journal, (uint64_t)-delta);
    wake_all(b);
}

void gfs_budget_cache_add(struct gfs_budget_member *m, int64_t delta)
{
    struct gfs_budget *b = m->b;
    if (!b || delta == 0)
        return;
    if (delta > 0) {
        ADD(&m->cache, (uint64_t)delta);
        ADD(&b->cache, (uint64_t)delta);
        return;
    }
    SUB(&m->cache, (uint64_t)-delta);
    SUB(&b->cache, (uint64_t)-delta);
    wake_all(b);
}

static uint64_t jlimit(const struct gfs_budget *b)
{
    return LD(&b->total) / 2;
}

/* Under the lock: the clean cache's fair share per volume right now. */
static uint64_t share(const struct gfs_budget *b)
{
    uint64_t total = LD(&b->total);
    uint64_t j = LD(&b->journal) + LD(&b->res_journal) + b->want;
    uint32_t n = LD(&b->n);
    return (total > j ? total - j : 0) / (n ? n : 1);
}

/* ------------------------------------------------------------------------ */
/* parked caches                                                              */

/* Under the lock: take dir's entry out of the list (NULL if none). */
static struct parked *parked_take(struct gfs_budget *b, const char *dir)
{
    struct parked *prev = NULL;
    for (struct parked *p = b->parked; p; prev = p, p = p->next) {
        if (strcmp(p->dir, dir) != 0)
            continue;
        if (prev)
            prev->next = p->next;
        else
            b->parked = p->next;
        if (b->parked_tail == p)
            b->parked_tail = prev;
        SUB(&b->cache, p->bytes);
        return p;
    }
    return NULL;
}

void gfs_budget_park(struct gfs_budget *b, const char *dir, uint64_t bytes,
                     int (*drop)(const char *dir))
{
    size_t len = strlen(dir);
    struct parked *p = malloc(sizeof *p + len + 1);
    if (!p) {
        drop(dir); /* not counted, so not kept (unless it is open again: then counted there) */
        return;
    }
    memcpy(p->dir, dir, len + 1);
    p->bytes = bytes;
    p->drop = drop;
    p->next = NULL;
    pthread_mutex_lock(&b->lock);
    free(parked_take(b, dir));
    ADD(&b->cache, bytes);
    if (b->parked_tail)
        b->parked_tail->next = p;
    else
        b->parked = p;
    b->parked_tail = p;
    pthread_mutex_unlock(&b->lock);
}

uint64_t gfs_budget_unpark(struct gfs_budget *b, const char *dir)
{
    pthread_mutex_lock(&b->lock);
    struct parked *p = parked_take(b, dir);
    pthread_mutex_unlock(&b->lock);
    uint64_t bytes = p ? p->bytes : 0;
    free(p);
    if (bytes)
        wake_all(b);
    return bytes;
}

int gfs_budget_first_scan(struct gfs_budget *b)
{
    pthread_mutex_lock(&b->lock);
    int first = !b->scanned;
    b->scanned = 1;
    pthread_mutex_unlock(&b->lock);
    return first;
}

/* Under the lock: drop parked caches, oldest first, until need bytes are
 * given back. They go before any open volume's blocks: nobody reads them. */
static uint64_t evict_parked_locked(struct gfs_budget *b, uint64_t need)
{
    uint64_t freed = 0;
    struct parked *prev = NULL, *p = b->parked;
    while (freed < need && p) {
        struct parked *next = p->next;
        if (p->drop(p->dir) < 0) {
            /* open again (its dir lock held: the closing volume itself for
             * a moment, or another process): still on disk, still counted */
            prev = p;
            p = next;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            b->parked = next;
        if (b->parked_tail == p)
            b->parked_tail = prev;
        SUB(&b->cache, p->bytes);
        freed += p->bytes;
        free(p);
        p = next;
    }
    return freed;
}

/* Under the lock (and self's lock, held by the caller): evict up to `need`
 * bytes of clean cache from whoever holds the most (the most above the fair
 * share, which is the same for all; self on a tie: no other lock needed).
 * Another volume's lock is only ever trylocked: a busy volume is skipped
 * this round. Returns the bytes given back. */
static uint64_t evict_locked(struct gfs_budget *b, struct gfs_budget_member *self, uint64_t need)
{
    uint64_t round = ++b->round, fair = share(b), freed = evict_parked_locked(b, need);
    while (freed < need) {
        struct gfs_budget_member *victim = NULL;
        uint64_t best = 0;
        if (self->tried != round && LD(&self->cache) > 0) {
            victim = self;
            best = LD(&self->cache);
        }
        for (struct gfs_budget_member *m = b->members; m; m = m->next) {
            uint64_t c = LD(&m->cache);
            if (m != self && m->tried != round && c > best) {
                victim = m;
                best = c;
            }
        }
        if (!victim)
            break;
        /* down to the next largest holder's level would be fairest; down
         * to the fair share, at most what is needed, is close and cheap */
        uint64_t want = need - freed;
        if (best > fair && best - fair < want)
            want = best - fair;
        uint64_t got = 0;
        if (victim == self) {
            got = self->evict(self->arg, want);
        } else if (pthread_mutex_trylock(victim->lock) == 0) {
            got = victim->evict(victim->arg, want);
            pthread_mutex_unlock(victim->lock);
        }
        if (got == 0)
            victim->tried = round;
        freed += got;
    }
    return freed;
}

int gfs_budget_cache_admit(struct gfs_budget_member *m, uint64_t bytes)
{
    struct gfs_budget *b = m->b;
    if (!b)
        return 0;
    pthread_mutex_lock(&b->lock);
    int r = -ENOSPC;
    for (int i = 0; i < 8; i++) {
        uint64_t total = LD(&b->total);
        /* the journal comes first: what a queued writer needs is not for us */
        uint64_t used = LD(&b->journal) + LD(&b->res_journal) + b->want + LD(&b->cache) +
                        LD(&b->res_cache);
        if (used + bytes <= total) {
            ADD(&b->res_cache, bytes);
            r = 0;
            break;
        }
        if (bytes > total || !evict_locked(b, m, used + bytes - total))
            break;
    }
    pthread_mutex_unlock(&b->lock);
    return r;
}

void gfs_budget_cache_done(struct gfs_budget_member *m, uint64_t bytes)
{
    if (m->b) {
        SUB(&m->b->res_cache, bytes);
        wake_all(m->b);
    }
}

/* Under the lock: someone waits for journal room; wake every syncer that
 * can give some back (gfs_budget_pressure tells them to hurry). */
static void kick_holders(struct gfs_budget *b)
{
    for (struct gfs_budget_member *x = b->members; x; x = x->next)
        if (LD(&x->journal) > 0 && x->kick)
            x->kick(x->arg);
}

static void enqueue(struct gfs_budget *b, struct gfs_budget_member *m, int *waiting)
{
    if (!*waiting) {
        *waiting = 1;
        m->nwait++;
    }
    if (!m->queued) {
        m->queued = 1;
        m->wnext = NULL;
        if (b->wtail)
            b->wtail->wnext = m;
        else
            b->whead = m;
        b->wtail = m;
        atomic_store(&b->pressure, 1);
    }
}

static void unwait(struct gfs_budget *b, struct gfs_budget_member *m, int *waiting)
{
    if (!*waiting)
        return;
    *waiting = 0;
    if (m->nwait && --m->nwait == 0) {
        dequeue(b, m);
        wake_all(b); /* the next in line may go */
    }
}

int gfs_budget_journal_admit(struct gfs_budget_member *m, uint64_t bytes, int *waiting,
                             uint64_t *gen)
{
    struct gfs_budget *b = m->b;
    if (!b)
        return 0;
    pthread_mutex_lock(&b->lock);
    *gen = LD(&b->gen);
    uint64_t total = LD(&b->total), jl = jlimit(b);
    uint64_t j = LD(&b->journal) + LD(&b->res_journal);
    /* first come, first served: nobody passes a writer already waiting */
    int turn = !b->whead || b->whead == m;
    /* a file larger than the journal's whole share goes when it is empty */
    int fits = bytes <= jl ? j + bytes <= jl : j == 0;
    if (turn && fits) {
        /* the clean cache makes room: it may keep total - journal */
        uint64_t limit = total > j + bytes ? total - j - bytes : 0;
        for (int i = 0; i < 8; i++) {
            uint64_t c = LD(&b->cache) + LD(&b->res_cache);
            if (c <= limit)
                break;
            if (!evict_locked(b, m, c - limit))
                break;
        }
        if (LD(&b->cache) + LD(&b->res_cache) <= limit) {
            ADD(&b->res_journal, bytes);
            if (b->whead == m)
                b->want = 0; /* reserved now; its next writer says what it needs */
            unwait(b, m, waiting);
            pthread_mutex_unlock(&b->lock);
            return 0;
        }
        /* fills in flight, or their volumes busy: try again shortly */
    }
    int was = m->queued;
    enqueue(b, m, waiting);
    if (b->whead == m)
        b->want = bytes;
    /* wake the syncers when the queue starts, then now and then: a waiter
     * retries at every eviction anywhere, which must not spin them */
    int64_t now = gfs_now_ms();
    if (!was || now - b->kicked_ms >= 50) {
        b->kicked_ms = now;
        kick_holders(b);
    }
    pthread_mutex_unlock(&b->lock);
    return -EAGAIN;
}

void gfs_budget_journal_done(struct gfs_budget_member *m, uint64_t bytes)
{
    if (m->b) {
        SUB(&m->b->res_journal, bytes);
        wake_all(m->b);
    }
}

void gfs_budget_journal_cancel(struct gfs_budget_member *m, int *waiting)
{
    struct gfs_budget *b = m->b;
    if (!b || !*waiting)
        return;
    pthread_mutex_lock(&b->lock);
    unwait(b, m, waiting);
    pthread_mutex_unlock(&b->lock);
}

uint64_t gfs_budget_total(const struct gfs_budget *b)
{
    return LD(&b->total);
}

uint64_t gfs_budget_jfile_size(struct gfs_budget *b)
{
    uint32_t n = LD(&b->n);
    uint64_t s = jlimit(b) / 8 / (n ? n : 1);
    if (s < JFILE_MIN)
        s = JFILE_MIN;
    if (s > JFILE_MAX)
        s = JFILE_MAX;
    return s & ~(uint64_t)0xffff;
}

uint64_t gfs_budget_readahead_cap(struct gfs_budget *b)
{
    uint32_t n = LD(&b->n);
    return LD(&b->total) / 8 / (n ? n : 1);
}

int gfs_budget_pressure(const struct gfs_budget_member *m)
{
    return m->b && LD(&m->b->pressure) && LD(&m->journal) > 0;
}

int gfs_budget_journal_high(const struct gfs_budget *b)
{
    return LD(&b->journal) >= jlimit(b) / 4 * 3;
}
