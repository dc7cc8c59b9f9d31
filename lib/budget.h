/*
 * budget.h — the node's disk budget: cache.disk_size shared by every volume
 * opened with one glidefs_config (journal files + clean cache, on disk).
 *
 * Why the config owns it: glidefsd opens every export with the one config
 * it loaded, so "the node" is exactly "the volumes of one config"; an
 * embedding program gets the same behaviour without a new handle, and two
 * configs (or two copies of the library) in one process stay independent —
 * no global state. The config holds one reference and every open volume
 * another, so a program that frees its config before closing its volumes
 * keeps working. A volume opened alone gets the whole budget, as before.
 *
 * What holds, at every moment (B = cache.disk_size, summed over the open
 * volumes of one config and the parked caches it counts):
 *   journal bytes on disk + clean-cache bytes on disk <= B
 * Space is charged before it is allocated (journal files before they are
 * created, cache slots before their pwrite) and given back only after it is
 * freed (after the unlink, the hole punch). Exceptions, all bounded:
 *   - a journal found at open (left by a crash, or written under a larger
 *     budget) counts as it is, possibly above B; writes wait until it drains;
 *   - one write whose record is larger than the journal's share (B/2) waits
 *     until the node's journal is empty and the cache has given back what it
 *     can, then goes alone: the bound is then max(B, that record's file).
 * Dirty data (the journal) may hold at most B/2 of it; a volume needing a
 * new journal file beyond that waits (back-pressure, never failure) in FIFO
 * order, and while anyone waits every volume holding journal data uploads
 * all of it (gfs_budget_pressure) and retires its empty files, so no volume
 * starves behind the others' dirty data. The clean cache takes what the
 * journal leaves: a volume may grow past its fair share (what is left over
 * divided by the number of open volumes) while others do not use theirs;
 * when space is short, eviction takes from whoever holds the most (so the
 * most above the fair share), down to the fair share at most per step.
 *
 * Locking: the budget's own mutex guards membership, the wait queue and
 * admissions. Counters are atomics, so giving space back never takes that
 * mutex (a volume evicting under it gives back through the same hooks).
 * Lock order: a volume's lock, then the budget's; the budget never blocks on
 * a volume's lock: it evicts from the caller's own cache (whose lock the
 * caller holds) or from another volume's only after a pthread_mutex_trylock.
 * A waiting writer holds no lock of its volume while it sleeps.
 */
#ifndef GLIDEFS_BUDGET_H
#define GLIDEFS_BUDGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct gfs_budget;

/* One open volume's membership. The first four fields are the volume's,
 * set before gfs_budget_join; the rest belong to the budget. */
struct gfs_budget_member {
    pthread_mutex_t *lock;  /* the volume's lock (evict runs under it) */
    /* Evict up to `bytes` of clean cache (rounded up to whole blocks),
     * returning the bytes given back; called with *lock held. */
    uint64_t (*evict)(void *arg, uint64_t bytes);
    /* Someone waits for journal room: wake the syncer (no lock held). */
    void (*kick)(void *arg);
    void *arg;

    struct gfs_budget *b;
    _Atomic uint64_t journal, cache; /* charged bytes */
    struct gfs_budget_member *next, *prev; /* all members (budget lock) */
    struct gfs_budget_member *wnext;       /* journal wait queue (budget lock) */
    uint32_t nwait;             /* this volume's writers in the queue */
    int queued;
    uint64_t tried;             /* eviction round that found nothing here */
};

/* A budget with one reference. */
int gfs_budget_new(struct gfs_budget **out);
void gfs_budget_ref(struct gfs_budget *b);
void gfs_budget_unref(struct gfs_budget *b);

/* A volume opens: the budget is `total` bytes from now on (the config's
 * cache.disk_size as of this open). Takes a reference. */
void gfs_budget_join(struct gfs_budget *b, struct gfs_budget_member *m, uint64_t total);
/* A volume closes: its charges and its place in the queue go; drops the
 * reference (the budget may be freed). Its lock must not be held. */
void gfs_budget_leave(struct gfs_budget_member *m);

/* Space given back (< 0) or taken (> 0) by the journal or the clean cache
 * of m. Takes no lock but the wake-up lock: safe anywhere. */
void gfs_budget_journal_add(struct gfs_budget_member *m, int64_t delta);
void gfs_budget_cache_add(struct gfs_budget_member *m, int64_t delta);

/* Room for `bytes` of new clean cache for m (m's lock held), evicting from
 * the largest holders (m included) if needed: 0 and the bytes are
 * reserved (release with gfs_budget_cache_done once the slot is charged),
 * or -ENOSPC: do not cache now. Never waits. */
int gfs_budget_cache_admit(struct gfs_budget_member *m, uint64_t bytes);
void gfs_budget_cache_done(struct gfs_budget_member *m, uint64_t bytes);

/* Room for a new journal file of `bytes` for m (m's lock held): 0 and the
 * bytes are reserved (release with gfs_budget_journal_done once the file is
 * charged, or failed), or -EAGAIN: m's writer waits its turn (*waiting says
 * this thread is in the queue; *gen is for gfs_budget_wait). */
int gfs_budget_journal_admit(struct gfs_budget_member *m, uint64_t bytes, int *waiting,
                             uint64_t *gen);
void gfs_budget_journal_done(struct gfs_budget_member *m, uint64_t bytes);
/* A queued writer gives up (volume closing, lease lost). */
void gfs_budget_journal_cancel(struct gfs_budget_member *m, int *waiting);
/* Sleep until space is given back after gen, or ms passed. Hold no lock. */
void gfs_budget_wait(struct gfs_budget *b, uint64_t gen, int64_t ms);

/* Parked caches (cache_park.c): a closed volume's cache file kept on disk
 * for its next open on this node. Its bytes count as clean cache until the
 * volume opens again (gfs_budget_unpark: the bytes are no longer counted
 * here; the volume charges what it restores) or the space is needed:
 * parked caches go before any open volume's blocks, oldest first, through
 * drop(dir) (called under the budget's lock: it must take no volume lock;
 * < 0: the volume is open again, its cache stays and is still counted
 * until that open unparks it). Parking dir again replaces its entry. */
void gfs_budget_park(struct gfs_budget *b, const char *dir, uint64_t bytes,
                     int (*drop)(const char *dir));
uint64_t gfs_budget_unpark(struct gfs_budget *b, const char *dir);
/* 1 the first time it is asked, then 0: one scan for parked caches left by
 * an earlier process per budget. */
int gfs_budget_first_scan(struct gfs_budget *b);

/* cache.disk_size as the last volume opened saw it. */
uint64_t gfs_budget_total(const struct gfs_budget *b);
/* Size of m's next journal file: an eighth of the journal's share per open
 * volume, 512 KiB..64 MiB (a volume alone: B/16, as before). */
uint64_t gfs_budget_jfile_size(struct gfs_budget *b);
/* Read-ahead of one volume stays within this (B/8 per open volume). */
uint64_t gfs_budget_readahead_cap(struct gfs_budget *b);
/* Upload everything now: a writer waits for journal room and m holds some. */
int gfs_budget_pressure(const struct gfs_budget_member *m);
/* The node's journal holds 3/4 of its share: upload without waiting for a
 * full batch. */
int gfs_budget_journal_high(const struct gfs_budget *b);

#endif
