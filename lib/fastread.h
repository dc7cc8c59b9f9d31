/*
 * fastread.h — the lock-free read path's table: for hot 4 KiB granules of a
 * volume, where their bytes are right now (the clean cache file, a journal
 * file at an offset, or zeroes), each entry under its own seqcount, so that
 * glidefs_pread serves them without the volume's mutex.
 *
 * Why: every read used to take the volume-wide mutex to plan (dirty index,
 * block map, cache index); with two threads reading, the mutex's cache line
 * and the shared counters bounced between the cores and reads ran at 0.45x
 * (clean cache) and 0.21x (journal) of plain pread (issue 24).
 *
 * The table is direct-mapped: granule g of block b is key b * gpb + g, at
 * entry key & mask, tagged with its key (another granule may take the entry
 * over). Entries are written only under the volume's mutex (one writer at a
 * time), by two kinds of calls:
 *
 *   publish     the locked read path, having planned a read under the lock,
 *               says where a granule's bytes are (gfs_fr_publish)
 *   invalidate  every change that could make a published answer wrong,
 *               BEFORE the change can be seen: a dirty extent inserted over
 *               the granule or removed from its block (dirty.c), the block
 *               map entry of its block set (blockmap.c) or the map replaced
 *               (follow.c), the block's cache slot changed: filled, evicted,
 *               punched (cache.c's bump, which already orders a generation
 *               change before the punch), the journal/dirty index thrown
 *               away (close, a journal set aside)
 *
 * A reader (gfs_fr_read, no lock) takes each entry's seqcount (even: stable),
 * reads the entry, does the pread, then a full fence and reads the seqcounts
 * again: any change means the bytes may be from before or after an
 * invalidation, so it tries again (a few times, then the locked path). A
 * writer makes the seqcount odd, changes the entry, makes it even again, and
 * the invalidations end with a full fence, so the file change that follows
 * (a punch, a new journal record's bytes, a close) comes after the bump in
 * any reader's view. Journal files are closed only when no extent points at
 * them (journal.c's gc), and removing the last extent invalidated the
 * entries that named the file: a reader racing with that close may pread a
 * descriptor number that was closed (EBADF) or reused by another file; the
 * bytes are discarded by the re-check (pread has no side effects on the
 * seekable files it can then hit).
 *
 * Reads of up to GFS_FR_MAX_SPAN granules of one block are served here when
 * they are all in the clean cache, all zeroes, or all journal data lying
 * contiguous in one file (one pread); everything else (store fetches, reads
 * mixing journal and cache, pending writes, a failed journal) takes the
 * locked path, which publishes what it learns.
 *
 * Counters (reads, bytes, cache hits of fast reads) are striped by CPU so
 * the readers do not share a cache line; glidefs_stats adds them up.
 */
#ifndef GLIDEFS_FASTREAD_H
#define GLIDEFS_FASTREAD_H

#include <stdatomic.h>
#include <stdint.h>

#define GFS_FR_GRAN 8u              /* sectors per granule (4 KiB) */
#define GFS_FR_MAX_ENTRIES (1u << 16) /* 2 MiB of table at most (calloc'd: pages
                                         are resident only once touched) */
#define GFS_FR_MAX_SPAN 64u         /* granules one fast read may cover */
#define GFS_FR_STRIPES 16u

enum gfs_fr_kind {
    GFS_FR_NONE = 0,
    GFS_FR_CACHE = 1, /* the clean cache file, at the block's place; off = slot */
    GFS_FR_JDATA = 2, /* journal file fd at off (the granule's first sector) */
    GFS_FR_JZERO = 3, /* zeroes (a trim in the journal) */
};

struct gfs_fr_ent {
    _Atomic uint32_t seq;  /* even: stable; odd: being changed */
    _Atomic uint32_t kind;
    _Atomic uint64_t key;  /* b * gpb + g */
    _Atomic int64_t off;
    _Atomic int32_t fd;
    uint32_t pad_;
};

struct gfs_fr_ctr {
    _Atomic uint64_t reads, bytes, hits;
    char pad_[64 - 3 * sizeof(uint64_t)];
};

struct gfs_fastrd {
    struct gfs_fr_ent *ent; /* NULL: no table, every read takes the lock */
    uint64_t mask;
    uint32_t gpb;           /* granules per block */
    /* called between reading the entries and the pread, when set: a test
     * (test_fastread.c) widens the race window with it; NULL otherwise */
    void (*test_gap)(void *arg);
    void *test_gap_arg;
    struct gfs_fr_ctr *ctr; /* GFS_FR_STRIPES, each on a cache line of its own */
};

/* A table for nblocks blocks of spb sectors (spb a multiple of GFS_FR_GRAN).
 * 0 or -ENOMEM. */
int gfs_fr_init(struct gfs_fastrd *fr, uint64_t nblocks, uint32_t spb);
void gfs_fr_free(struct gfs_fastrd *fr);

/* Writers, under the volume's mutex; fr may be NULL (a no-op). */
/* Granule g of block b is kind (off, fd as the kind says). */
void gfs_fr_publish(struct gfs_fastrd *fr, uint64_t b, uint32_t g, enum gfs_fr_kind kind,
                    int64_t off, int32_t fd);
/* Forget the granules of block b that overlap sectors [s, s + n). */
void gfs_fr_inval(struct gfs_fastrd *fr, uint64_t b, uint32_t s, uint32_t n);
/* Forget every granule of block b. */
void gfs_fr_inval_block(struct gfs_fastrd *fr, uint64_t b);
/* Forget everything. */
void gfs_fr_inval_all(struct gfs_fastrd *fr);

/* Reader, no lock: sectors [s, s + n) of block b (bs bytes; the clean cache
 * file is cache_fd) into dst. 1: served (*slot: the cache slot read, or -1
 * for journal data); 0: take the locked path (dst may have been written). */
int gfs_fr_read(struct gfs_fastrd *fr, uint64_t b, uint32_t s, uint32_t n, int cache_fd,
                uint32_t bs, uint8_t *dst, int64_t *slot);

/* Count a fast read: reads (0 or 1), bytes, hits (cache hits). */
void gfs_fr_count(struct gfs_fastrd *fr, uint64_t reads, uint64_t bytes, uint64_t hits);
/* The counters summed. */
void gfs_fr_sum(const struct gfs_fastrd *fr, uint64_t *reads, uint64_t *bytes, uint64_t *hits);

#endif
