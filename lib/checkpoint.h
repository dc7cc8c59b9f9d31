/*
 * checkpoint.h — writing the block map as a manifest (docs/design.md 5.7):
 * after every MANIFEST_EVERY_SEGS uploads, at drain, before a release or a
 * delete can rely on it. Manifests are serialised on manifest_lock; the
 * map is copied under v->lock and the PUT runs without it.
 *
 * Incremental: once this session stored a manifest, every change of a map
 * entry (an upload's commit, a compaction move) is marked in two bitmaps
 * (one bit per block each, in 512-byte chunks of 4096 blocks allocated on
 * first change): changed since our newest manifest, and since its chain's
 * base. The next manifest is
 *   - a delta of the first set over the newest, while the chain has fewer
 *     than GFS_CKPT_MAX_CHAIN deltas;
 *   - else a delta of the second set straight over the base (depth 1: the
 *     chain starts again at two links), while that is at most half the
 *     base's entries;
 *   - else, and once the deltas written since the base add up to its size,
 *     after a failed PUT, a resize, a new epoch or a reload from the store,
 *     a full base.
 * So a hot set costs about what it changed; writes spread over the whole
 * volume cost O(sqrt(blocks changed per step x map size / chain length))
 * per step, amortized, instead of the whole map. A snapshot folds first, so
 * what it pins is always a base.
 */
#ifndef GLIDEFS_CHECKPOINT_H
#define GLIDEFS_CHECKPOINT_H

#include <pthread.h>
#include <stdint.h>

struct glidefs_volume;

/* A writer's chain holds at most this many deltas (readers take up to
 * GFS_MAN_MAX_CHAIN): a load fetches at most this many small objects more. */
#define GFS_CKPT_MAX_CHAIN 16u
/* A writer's close that hands the lease back folds a longer chain (base
 * included) into a base: the next open, a wake, reads one object. */
#define GFS_CKPT_CLOSE_CHAIN 2u

/* A set of block indexes: a bit each, in chunks allocated on first use. */
struct gfs_ckpt_bits {
    uint64_t **chunk;
    size_t nchunk;
    uint64_t n;                 /* bits set */
};

struct gfs_ckpt_state {
    pthread_mutex_t lock;       /* manifest_lock: one manifest PUT at a time */
    uint64_t gen;               /* bumped by each manifest we store (v->lock) */
    /* below: under v->lock */
    struct gfs_ckpt_bits since_head, since_base; /* changed since our newest / its base */
    int tracking;               /* marks are recorded (a manifest copy began) */
    int lost;                   /* a change went unrecorded since the last copy */
    int chained;                /* head_* is a manifest we stored and the bits hold
                                 * every change since its copy: a delta may follow */
    uint64_t head_epoch, head_seq, head_size; /* our newest manifest */
    uint32_t head_depth;        /* its depth (0: a base) */
    uint64_t chain[GFS_CKPT_MAX_CHAIN + 1]; /* seqs of its chain, base first */
    uint32_t nchain;
    uint64_t base_bytes, base_entries, chain_bytes; /* the base's size, the deltas' since
                                                     * (every one written, not only the chain's) */
    uint64_t bases_written, deltas_written, bytes_written; /* counters */
};

/* Block b's map entry changed (v->lock held). */
void gfs_ckpt_mark(struct gfs_ckpt_state *ck, uint64_t b);
/* The map was rebuilt from the store: the next manifest is a base (v->lock). */
void gfs_ckpt_forget(struct gfs_ckpt_state *ck);
void gfs_ckpt_free(struct gfs_ckpt_state *ck);
/* Is manifest (epoch, seq) a link of our current chain (v->lock held)? */
int gfs_ckpt_keeps(const struct gfs_ckpt_state *ck, uint64_t epoch, uint64_t seq);

/* A manifest if segments were stored since the last one. */
int gfs_volume_write_manifest(struct glidefs_volume *v);
/* Even with no new segment (a clone's first manifest, at key 0-0 if it has none). */
int gfs_volume_write_manifest_force(struct glidefs_volume *v);
/* Forced, and a base: nothing stored when the newest manifest is a base of
 * ours at the current key with nothing changed since (a snapshot's). */
int gfs_volume_write_manifest_base(struct glidefs_volume *v);
/* The manifest a writer stores before it hands the lease back (close,
 * release): a base when its chain is longer than GFS_CKPT_CLOSE_CHAIN, so
 * the next open, usually a wake elsewhere, reads one object, not a chain
 * fetched link after link. */
int gfs_volume_write_manifest_handover(struct glidefs_volume *v);
/* Forced, and keyed at least (our epoch, 0): every reader then starts after
 * it, so the next taker may raise the lease's floor to our epoch (lease.h). */
int gfs_volume_write_manifest_mark(struct glidefs_volume *v);

#endif
