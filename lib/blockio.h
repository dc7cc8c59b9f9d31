/*
 * blockio.h — one block's bytes: fetched from the store and checked
 * (through a view, storeview.h), put into the clean cache, and THE
 * assembler of "a stored copy plus journal data over it" that the read
 * path (volume_io.c), the syncer (whole blocks to upload) and the fenced
 * export (fenced.c: an old epoch's view plus a kept-aside journal) share.
 *
 * The stored copy comes from the clean cache when it holds it, else from
 * the store, else it is zeroes; the journal data is a list of pieces
 * (sectors of the block from a journal file, or zeroes) laid over it in
 * order, later pieces winning. The callers plan under their locks (which
 * copy, which pieces, journal files pinned); the assembler takes no lock.
 */
#ifndef GLIDEFS_BLOCKIO_H
#define GLIDEFS_BLOCKIO_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "blockmap.h"
#include "segment.h"

struct glidefs_volume;
struct gfs_cache;
struct gfs_jfile;
struct gfs_view;

/* Is e's payload the block itself (neither compressed nor sealed)? Then it
 * can be used where it lies, without a decode buffer. */
static inline int gfs_blk_plain(const struct gfs_bm_entry *e, uint32_t bs)
{
    return !(e->flags & GFS_SEGF_CODED) && e->length == bs;
}

/* Verify the stored bytes of block b as a GET returned them (got bytes: the
 * payload's span, with its CRC trailer if it has one) from segment object
 * segname ("nbd/<vol>/seg/<E>-<S>": it names the segment key, with
 * e->key_gen) and decode them into buf (bs bytes; may equal stored for a
 * plain block). -EIO if they fail the checksum (a plain volume's CRC-32C)
 * or authentication (a sealed volume's AEAD tag, which covers what a CRC
 * would); logs nothing. */
int gfs_blk_check(const struct gfs_view *sv, uint64_t b, const struct gfs_bm_entry *e,
                  const char *segname, const uint8_t *stored, size_t got, void *buf);
/* The same with the segment's key already derived (NULL when the volume is
 * not sealed; its gen must be e->key_gen): a run of blocks from one segment
 * derives it once. */
struct gfs_sealkey;
int gfs_blk_check_k(const struct gfs_view *sv, uint64_t b, const struct gfs_bm_entry *e,
                    const struct gfs_sealkey *k, const uint8_t *stored, size_t got, void *buf);

/* Block b as e names it, in segment (epoch, seq) (resolved by the caller
 * under its lock: reclaim renumbers segment indices), decoded into buf (bs
 * bytes). -ENOENT (not logged): the segment is gone (compacted away). */
int gfs_blk_fetch_at(struct gfs_view *sv, uint64_t b, const struct gfs_bm_entry *e,
                     uint64_t epoch, uint64_t seq, void *buf);

/* The same with e->seg resolved in sv's map (under lock, when not NULL);
 * NONE and HOLE read as zeroes. */
int gfs_blk_fetch(struct gfs_view *sv, pthread_mutex_t *lock, uint64_t b,
                  const struct gfs_bm_entry *e, void *buf);

/* Put a clean block we hold in memory into the volume's cache (lock not
 * held). seg_id (may be NULL): the (epoch, seq) e->seg named when e was
 * read; a follower's full reload and reclaim renumber the segment table, so
 * with seg_id the block is matched by segment identity. Without, e must
 * come from this thread's own view of the map (the syncer's, which
 * compaction and so reclaim never interrupts). */
void gfs_blk_cache_fill(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                        const uint64_t seg_id[2], const void *buf);

/* ---- the assembler ---- */

/* Journal data over part of a block: sectors [start, start + count) of the
 * block from jf at byte offset off, or zeroes (jf NULL). */
struct gfs_piece {
    uint32_t start, count;
    struct gfs_jfile *jf;
    uint64_t off;
};

enum gfs_base_kind {
    GFS_BASE_NONE,  /* the pieces cover every sector asked for */
    GFS_BASE_ZERO,  /* never written (or a hole) */
    GFS_BASE_CACHE, /* the clean cache holds the stored copy: slot, gen */
    GFS_BASE_STORE, /* fetch it: e, in segment (epoch, seq) */
};

/* What a block is made of, as planned under the caller's lock. */
struct gfs_block_plan {
    uint64_t b;
    uint32_t s, n;                  /* sectors [s, s + n) of the block */
    enum gfs_base_kind base;
    struct gfs_bm_entry e;          /* the stored copy, as the map named it */
    uint64_t epoch, seq;            /* its segment (STORE) */
    int64_t slot;                   /* its cache slot (CACHE) */
    uint32_t gen;
    const struct gfs_piece *pieces; /* in order; later ones win */
    uint32_t npieces;
};

/* Sectors [s, s + n) of the planned block into dst: the stored copy where
 * it shows, then the pieces. A STORE copy is fetched whole into blk (bs
 * bytes: the caller may cache it; blk may be dst when the whole block is
 * asked for) and the sectors copied out. cache: the volume's clean cache
 * (NULL: none); a CACHE copy is read from it without a lock and checked
 * still valid afterwards (gfs_cache_still). Returns 0; 1 when the cached
 * copy went stale meanwhile (plan again); or a negative errno (-ENOENT: the
 * stored copy's segment is gone from the store, not logged; -EIO: a
 * journal read failed). */
int gfs_block_assemble(struct gfs_view *sv, const struct gfs_cache *cache,
                       const struct gfs_block_plan *p, uint8_t *dst, uint8_t *blk);

#endif
