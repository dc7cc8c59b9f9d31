/*
 * volume_internal.h — the state of an open volume, shared by volume.c (the
 * public I/O API, open and recovery), syncer.c (background upload) and
 * volmeta.c (volume.json, manifests, store loading).
 *
 * Locking: one mutex (lock) guards the dirty index, block map, cache index,
 * journal bookkeeping and counters. Data I/O (journal pwritev, cache and
 * journal preads, store requests) happens outside it.
 */
#ifndef GLIDEFS_VOLUME_INTERNAL_H
#define GLIDEFS_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "glidefs/glidefs.h"
#include "blockmap.h"
#include "budget.h"
#include "cache.h"
#include "config.h"
#include "dirty.h"
#include "journal.h"
#include "lease.h"
#include "identity.h"
#include "keywrap.h"
#include "codec.h"
#include "log.h"
#include "objstore.h"
#include "segment.h"

/* Clones: a volume's segments may live in its ancestors' prefixes. In the
 * block map and in manifests a segment's epoch carries its origin — its
 * depth in the lineage, the root being 0 — in the top 8 bits, so a root
 * volume's format is unchanged and a clone's own segments (origin = depth)
 * sort after everything it inherits. */
#define GFS_ORIGIN_SHIFT 56
#define GFS_MAX_DEPTH 255
/* implicit snapshot holding a fenced epoch's view for its node (snapshot.c) */
#define GFS_FENCED_HOLD_PREFIX "@fenced-"
#define GFS_EPOCH_MASK ((UINT64_C(1) << GFS_ORIGIN_SHIFT) - 1)
static inline uint64_t gfs_ep(uint32_t origin, uint64_t epoch)
{
    return ((uint64_t)origin << GFS_ORIGIN_SHIFT) | epoch;
}

struct gfs_volmeta {
    uint32_t format;
    uint8_t uuid[16];
    char uuid_str[40];
    uint8_t data_uuid[16];      /* the lineage root's uuid: seals, MACs and key wraps bind it */
    char data_uuid_str[40];
    uint32_t depth;             /* ancestors in lineage[] */
    char lineage[GFS_MAX_DEPTH][GLIDEFS_NAME_MAX + 1]; /* root first; the parent last */
    char parent_snapshot[GLIDEFS_NAME_MAX + 8];
    char base_manifest[40];     /* "<epoch>-<seq>" of the parent's snapshot manifest, "" if none */
    uint64_t size;
    uint32_t block_size;
    int64_t created_ms;
    char compression[16];       /* "none" or "zstd": how new blocks are stored */
    int encrypted;
    struct gfs_keywrap kw;      /* the password-wrapped data key (encrypted volumes) */
};

struct glidefs_volume {
    char name[GLIDEFS_NAME_MAX + 1];
    char *dir;                   /* <cache.dir>/<name> */
    int lockfd;
    int created_dir;             /* this open made <cache>/<name>: a failed open removes it */
    int failed_open;
    struct gfs_log log;
    struct gfs_objstore *store;
    struct gfs_volmeta meta;
    struct gfs_codec *codec;     /* encodes/decodes stored blocks, MACs headers */

    /* tunables */
    uint32_t bs;                 /* block size */
    uint32_t spb;                /* sectors per block */
    uint32_t blocks_per_batch;
    uint32_t upload_parallel;
    uint32_t drain_parallel;     /* segments in flight while a drain or back-pressure waits
                                    (storage.max_connections) */
    int64_t sync_delay_ms;
    int64_t max_dirty_age_ms;
    /* cache.disk_size is the node's (budget.h): this volume's journal and
     * clean cache are charged to the budget of the config it was opened
     * with, shared with every other volume of that config */
    struct gfs_budget *bud;
    struct gfs_budget_member bmem;
    int read_only;               /* writes refused: not the lease holder, or opened so */
    int ro_forced;               /* opened with GLIDEFS_OPEN_READONLY: never promotes */

    pthread_mutex_t lock;
    pthread_cond_t cond;         /* pending writes done, uploads committed, space freed */
    pthread_cond_t syncer_cond;  /* wakes the syncer */
    struct gfs_journal journal;
    struct gfs_dirty dirty;
    struct gfs_blockmap bm;
    struct gfs_cache cache;
    uint64_t size;
    uint64_t next_seq;           /* next journal seq */
    uint64_t epoch;
    uint64_t next_seg_seq;
    uint64_t last_seg_epoch, last_seg_seq;  /* newest segment we know of */
    uint64_t manifest_epoch, manifest_seq;  /* newest manifest's covered segment */
    uint32_t segs_since_manifest;
    pthread_mutex_t manifest_lock;

    /* syncer */
    pthread_t syncer;
    int syncer_running;
    int syncer_stop;             /* this syncer run ends (release, close) */
    int stop;                    /* the volume is closing */
    uint32_t force;              /* drains / back-pressure waiting: ignore sync_delay */
    int64_t backoff_until_ms;
    int sync_error;              /* last upload error, 0 after a success */

    /* ownership (ownership.c): the write lease */
    char node_id[129];
    char node_id_legacy[129];    /* older builds' default node id ("" if node_id was set) */
    char instance[GFS_LEASE_ID_HEX + 1]; /* of the cache dir (identity.h) */
    int wrec_fd;                 /* <dir>/writer, -1 until this volume may write */
    struct gfs_wrec wrec;        /* as last read or written (under own_lock) */
    int wrec_valid;              /* wrec holds a record (else none was ever written here) */
    int wrec_cur_landed;         /* the lease PUT of wrec.cur succeeded (or was found) */
    char own_session[GFS_LEASE_ID_HEX + 1]; /* wrec.cur's session, under v->lock */
    uint64_t gens_sent[8];       /* the session's last lease generations sent (v->lock) */
    unsigned gens_next;
    uint64_t local_epoch;        /* <dir>/epoch at open: the epoch of the journal's records */
    int journal_ours;            /* at open: the journal continues under the lease we hold */
    int unsafe_lax;              /* storage.unsafe_accept_split_brain_on_lax_store */
    struct gfs_objstore *probe_store; /* its own handle: the probe's requests and expected
                                       * failures stay out of the volume's store counters */
    int probe_state;             /* GLIDEFS_STORE_COND_* (v->lock) */
    int64_t probe_wall_ms;       /* when; 0: never (v->lock) */
    int64_t lease_timeout_ms;
    struct gfs_lease lease;      /* as last read or written (under own_lock) */
    pthread_mutex_t own_lock;    /* serialises lease changes and map refreshes */
    int owner;                   /* we hold the lease (v->lock) */
    int fenced;                  /* we held it and another node took it over (v->lock) */
    int want_refresh;            /* read-only: follow the store for new segments */
    pthread_t own_thr;
    int own_running, own_stop;
    pthread_cond_t own_cond;
    uint64_t fenced_bytes;       /* journal data kept aside after losing the lease */

    /* compaction (compactor.c; runs in the syncer thread when it is idle) */
    int comp_min_live_pct;
    int64_t comp_interval_ms;
    uint64_t comp_rate_bps;
    int64_t comp_grace_ms;
    int comp_keep_manifests;
    int64_t comp_next_ms;        /* next background cycle */
    int comp_max_stored_pct;     /* stored bytes above this % of live: compact now (0: off) */
    int64_t comp_rate_next_ms;   /* ratio-triggered steps: not before (compaction.rate_mb_s) */
    int64_t comp_check_next_ms;  /* next look at the stored/live ratio */
    uint64_t comp_req_gen;       /* bumped by each glidefs_compact call */
    uint64_t comp_done_gen;      /* the last request generation a cycle has served */
    uint64_t manifest_gen;       /* bumped by each manifest we store */
    struct glidefs_compact_result comp_last;
    int64_t last_manifest_ms;    /* monotonic time of our last manifest */
    char **garbage;              /* unreferenced segment keys found at open */
    size_t ngarbage;
    int64_t opened_ms;
    double cost_gb_month, cost_put_1000, cost_get_1000;

    /* snapshots (snapshot.c): segments and manifests they hold */
    struct gfs_pin {
        uint64_t epoch, seq; /* epoch with its origin bits, as in the block map */
    } *pins;
    size_t npins;
    char **pinned_manifests;     /* keys */
    size_t npinned_manifests;
    uint64_t snap_gen;           /* bumped when a snapshot is about to be stored: a load
                                  * of the pins that began before must not install */
    struct gfs_hold {            /* "@fenced-<epoch>" snapshots: that epoch's segments stay */
        uint64_t epoch;
        int64_t created_ms;      /* wall clock */
    } *holds;
    size_t nholds;
    int64_t fenced_hold_ms;      /* compaction.fenced_hold_s */

    struct gfs_ra *ra;           /* read-ahead (readahead.c), NULL when off */

    /* stats (under lock) */
    struct glidefs_stats st;
    int deferred_error;
    int disk_full;               /* the last journal reservation failed with ENOSPC (logged once) */
    uint64_t took_from_epoch;    /* the epoch whose live holder we just fenced (0: none);
                                  * its view is held for the fenced node (snapshot.c) */
};

int64_t gfs_now_ms(void);       /* monotonic */
/* ms from now on CLOCK_MONOTONIC: a deadline for condvars made with that clock */
void gfs_timespec_in(struct timespec *ts, int64_t ms);
int64_t gfs_wall_ms(void);

/* volmeta.c */
int gfs_volmeta_load(struct glidefs_volume *v, const struct glidefs_config *cfg, int create,
                     int exclusive, uint64_t create_size);
int gfs_volmeta_store(struct glidefs_volume *v);
/* re-read volume.json's size (a follower catching a resize by the writer) */
int gfs_volmeta_follow_size(struct glidefs_volume *v);
int gfs_volume_load_map(struct glidefs_volume *v);
int gfs_volume_write_manifest(struct glidefs_volume *v);
/* even with no new segment (a clone's first manifest, at key 0-0 if it has none) */
int gfs_volume_write_manifest_force(struct glidefs_volume *v);
/* forced, and keyed at least (our epoch, 0): lets the next taker raise the floor */
int gfs_volume_write_manifest_mark(struct glidefs_volume *v);

/* volmeta.c: follow the store (read-only volumes): new segments, new fences */
int gfs_volume_refresh(struct glidefs_volume *v);
/* the same from a reader's thread (serialised with the ownership thread's) */
int gfs_volume_catch_up(struct glidefs_volume *v);
/* highest segment seq of an epoch in the map, 0 if none */
uint64_t gfs_volume_last_seq_of(struct glidefs_volume *v, uint64_t epoch);

/* ownership.c */
int gfs_own_acquire(struct glidefs_volume *v, int want_rw);
int gfs_own_start(struct glidefs_volume *v);
void gfs_own_stop(struct glidefs_volume *v);
int gfs_own_release(struct glidefs_volume *v);
int gfs_own_confirm(struct glidefs_volume *v);
int gfs_own_state_read(struct glidefs_volume *v, uint64_t *epoch);
int gfs_own_state_write(struct glidefs_volume *v);
/* Is a journal written under local_epoch ours to go on with, given lease l
 * (does l name this cache dir's writer record, in that journal's lineage)? */
int gfs_own_journal_ours(struct glidefs_volume *v, const struct gfs_lease *l,
                         uint64_t local_epoch);

/* compactor.c: one bounded step, called by the syncer thread when idle
 * (lock held; dropped for I/O). Returns 1 if it did work. */
int gfs_compact_step(struct glidefs_volume *v, int requested);
/* volmeta.c: full reload of the map from the store (read-only volumes whose
 * segments were compacted away under them) */
int gfs_volume_reload(struct glidefs_volume *v);

/* snapshot.c */
int gfs_pinned(const struct glidefs_volume *v, uint64_t epoch, uint64_t seq);
int gfs_manifest_pinned(const struct glidefs_volume *v, const char *key);
int gfs_snapshots_load(struct glidefs_volume *v);
int gfs_purge_plan(const struct glidefs_config *cfg, const char *name, char ***keep,
                   size_t *nkeep, char **tombstone);
int gfs_clone_origin(struct gfs_objstore *st, const char *name, char *parent, size_t plen,
                     char *snap, size_t slen);
int gfs_purge_forget(struct gfs_objstore *st, const char *parent, const char *child,
                     const char *snap);
int gfs_fence_hold(struct glidefs_volume *v);
/* For each "@fenced-<epoch>" hold: the epochs [lo, hi] whose fences its
 * view needs (lo: the epoch of the manifest it keeps; hi: the held epoch,
 * whose fence says how many segments the view must find) */
#define GFS_MAX_RANGES 256
struct gfs_epoch_ranges {
    size_t n;
    struct gfs_epoch_range {
        uint64_t lo, hi;
        char name[GLIDEFS_NAME_MAX + 8];
    } r[GFS_MAX_RANGES];
};
int gfs_fence_hold_ranges(struct gfs_objstore *st, const char *name,
                          struct gfs_epoch_ranges *rs);
int gfs_held_epoch(const struct glidefs_volume *v, uint64_t epoch);
int gfs_fence_holds_expire(struct glidefs_volume *v);
void gfs_snapshots_free(struct glidefs_volume *v);
/* A snapshot name a key may carry: a user's (glidefs_name_valid) or an
 * internal one ("@clone-<child>", "@fenced-<epoch>"). */
int gfs_snap_name_ok(const char *s);
/* A snapshot object nbd/<vol>/snap/<name>, validated (its name field, if
 * any, must be <name>). -EIO when malformed. */
struct gfs_snapinfo {
    char manifest[40]; /* "<epoch>-<seq>", "" when the volume held nothing */
    int64_t created_ms;
    uint64_t size;
};
int gfs_snap_parse(const char *buf, size_t len, const char *name, struct gfs_snapinfo *si);
/* A clone marker nbd/<vol>/children/<child>: the snapshot the child was made
 * from, into snap (slen bytes). -EIO when malformed. */
int gfs_child_marker_parse(const char *buf, size_t len, char *snap, size_t slen);
/* The parent name and snapshot a volume.json (or tombstone) names; both ""
 * for a root or a volume.json that does not say. -EIO when it names them
 * but not validly. */
int gfs_clone_origin_parse(const char *buf, size_t len, char *parent, size_t plen, char *snap,
                           size_t slen);
/* volmeta.c */
int gfs_volume_apply_manifest_key(struct glidefs_volume *v, const char *key, int is_base);
char *gfs_volmeta_text(const struct gfs_volmeta *m, int deleted);
/* Parse and validate volume.json of volume `name` into *m (every field, and
 * the fields against each other); logs what is wrong. -EIO when invalid,
 * -ENOENT for a tombstone, -ENOTSUP for an unknown compression. */
int gfs_volmeta_parse(struct gfs_volmeta *m, const char *name, const struct gfs_log *log,
                      const char *buf, size_t len);

/* syncer.c */
int gfs_syncer_start(struct glidefs_volume *v);
void gfs_syncer_stop(struct glidefs_volume *v);

/* The prefix name of the volume that stores segments of origin o. */
static inline const char *gfs_origin_name(const struct glidefs_volume *v, uint32_t o)
{
    return o < v->meta.depth ? v->meta.lineage[o] : v->name;
}

/* volume.c: fetch block b's stored bytes (decoded) into buf (bs bytes). */
int gfs_volume_fetch_block(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                           void *buf);
/* Is e's payload the block itself (neither compressed nor sealed)? Then it
 * can be used where it lies, without a decode buffer. */
static inline int gfs_volume_plain(const struct glidefs_volume *v, const struct gfs_bm_entry *e)
{
    return !(e->flags & GFS_SEGF_CODED) && e->length == v->bs;
}
/* volume.c: verify the stored bytes of block b as a GET returned them (got
 * bytes: the payload's span, with its CRC trailer if it has one) and decode
 * them into buf (bs bytes; may equal stored for a plain block). -EIO if they
 * fail the checksum or authentication; logs nothing. */
int gfs_volume_check_block(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                           const uint8_t *stored, size_t got, void *buf);
/* volume.c: put a clean block we hold in memory into the cache (lock not held). */
void gfs_volume_cache_fill(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                           const void *buf);
/* the same, if e->seg still names segment (epoch, seq) (see volume.c) */
void gfs_volume_cache_fill_seg(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                               uint64_t epoch, uint64_t seq, const void *buf);

#endif
