/*
 * volume_internal.h — the state of an open volume: what the layers of the
 * library share (docs/architecture.md). Each subsystem keeps its own state
 * in a struct of its own, declared in its header and embedded here: the
 * view of the volume in the store (v->sv, storeview.h), manifests
 * (v->ckpt, checkpoint.h), the syncer (v->sync, syncer.h), compaction
 * (v->comp, compactor.h), the write lease (v->own, ownership.h),
 * snapshots' pins (v->snap, pins.h), read-ahead (v->ra, opaque,
 * readahead.h) and cold start (v->wake, wake.h).
 *
 * Locks, always taken in this order (a thread holding one never waits for
 * an earlier one):
 *
 *   own_lock       lease changes and map reloads: take, release, promote,
 *                  the ownership thread's heartbeat and follow, resize,
 *                  rekey (metadata changes serialise on it)
 *   ckpt.lock      one manifest PUT at a time (checkpoint.c)
 *   lock           everything the I/O paths share: dirty index, block map
 *                  (sv), cache index, journal bookkeeping, counters, and
 *                  the fields marked (v->lock) in the subsystem structs;
 *                  read-ahead's queue too. Data I/O (journal pwritev,
 *                  cache and journal preads, store requests) runs outside it.
 *                  Hot reads take no lock at all: they read through fr
 *                  (fastread.h), whose entries are written under lock and
 *                  checked by seqcounts after the pread.
 *   budget's locks the node budget (budget.h) is called with lock held,
 *                  and takes a volume's lock only with trylock
 *
 * Condvars, all on CLOCK_MONOTONIC (gfs_cond_init), each with its mutex:
 *   cond            (lock) pending journal writes done, uploads committed,
 *                   space freed, compaction requests served, lease lost
 *   sync.cond       (lock) wakes the syncer; pipeline workers have their own
 *   own.cond        (own_lock) wakes the ownership thread
 *   journal.inflight_cond (lock) flushers wait for earlier writes
 *   read-ahead's work/done (lock), the budget's wake (its wake_lock)
 *
 * read_only, owner and fenced are _Atomic: written under lock, read
 * without it on fast paths (a write's EROFS check, a reader's reload).
 */
#ifndef GLIDEFS_VOLUME_INTERNAL_H
#define GLIDEFS_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "glidefs/glidefs.h"
#include "blockmap.h"
#include "budget.h"
#include "cache.h"
#include "checkpoint.h"
#include "clock.h"
#include "codec.h"
#include "compactor.h"
#include "config.h"
#include "dirty.h"
#include "fastread.h"
#include "journal.h"
#include "lease.h"
#include "log.h"
#include "objstore.h"
#include "ownership.h"
#include "pins.h"
#include "segment.h"
#include "storeview.h"
#include "syncer.h"
#include "volmeta.h"
#include "wake.h"

struct gfs_ra;

struct glidefs_volume {
    char name[GLIDEFS_NAME_MAX + 1];
    char *dir;                   /* <cache.dir>/<name> */
    int lockfd;
    int created_dir;             /* this open made <cache>/<name>: a failed open removes it */
    int failed_open;
    int ro_forced;               /* opened with GLIDEFS_OPEN_READONLY: never promotes */
    int keep_cache;              /* cache.keep_on_close: park the cache at close */
    uint64_t cache_restored;     /* blocks the open restored from the kept cache */
    uint64_t replayed_records;   /* journal records the open replayed (0: it adopted the
                                    dirty index of the last close, dirty_handoff.c) */
    int didx_adopted;            /* the open adopted that index */
    struct gfs_log log;
    struct gfs_objstore *store;
    struct gfs_volmeta meta;     /* volume.json (changes under own_lock, read under lock) */
    struct gfs_codec *codec;     /* encodes/decodes stored blocks, MACs headers */
    uint32_t bs;                 /* block size */
    uint32_t spb;                /* sectors per block */
    int64_t opened_ms;
    double cost_gb_month, cost_put_1000, cost_get_1000;
    /* cache.disk_size is the node's (budget.h): this volume's journal and
     * clean cache are charged to the budget of the config it was opened
     * with, shared with every other volume of that config */
    struct gfs_budget *bud;
    struct gfs_budget_member bmem;

    pthread_mutex_t own_lock;
    pthread_mutex_t lock;
    pthread_cond_t cond;

    /* under lock */
    struct gfs_journal journal;
    struct gfs_dirty dirty;
    struct gfs_cache cache;
    struct gfs_view sv;          /* the store's view: block map, lease, positions */
    uint64_t size;
    uint64_t next_seq;           /* next journal seq */
    uint64_t epoch;              /* ours while owner, else the lease's */
    _Atomic int read_only;       /* writes refused: not the lease holder, or opened so */
    _Atomic int owner;           /* we hold the lease */
    _Atomic int fenced;          /* we held it and another node took it over */
    int stop;                    /* the volume is closing */
    int deferred_error;
    int disk_full;               /* the last journal reservation failed with ENOSPC (logged once) */
    uint64_t fenced_bytes;       /* journal data kept aside after losing the lease */
    struct glidefs_stats st;

    struct gfs_ckpt_state ckpt;
    struct gfs_sync_state sync;
    struct gfs_comp_state comp;
    struct gfs_own_state own;
    struct gfs_snap_state snap;
    struct gfs_ra *ra;           /* NULL when off */
    struct gfs_wake_state wake;  /* access profile and prefetch on wake (wake.h) */
    /* the lock-free read path's table (fastread.h): entries written under
     * lock, read without; dirty, sv.bm and cache point at it */
    struct gfs_fastrd fr;
};

/* Write one whole block b again (volume_io.c), journalled like a client
 * write, but only if nothing changed it since the caller looked: the map
 * still holds *expect (segment row and offset) and no write of it is in the
 * journal — checked under the lock in the same hold that enters the write,
 * so a client write that comes later is newer and wins. -EAGAIN when it
 * changed (nothing written), -EROFS on a read-only volume. Scrub's repair
 * (scrub.c) writes a damaged block back from the clean cache with it. */
int gfs_volume_rewrite_block(struct glidefs_volume *v, uint64_t b,
                             const struct gfs_bm_entry *expect, const void *data);

/* The map saw write seqs up to sv.max_write_seq: new journal records must
 * come after them (lock held). */
static inline void gfs_volume_seq_past_map(struct glidefs_volume *v)
{
    if (v->sv.max_write_seq >= v->next_seq)
        v->next_seq = v->sv.max_write_seq + 1;
}

#endif
