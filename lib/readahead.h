/*
 * readahead.h — read-ahead for sequential reads of blocks not in the cache.
 *
 * A small stream detector per volume watches glidefs_pread offsets. Once a
 * stream is sequential, the blocks ahead of it (a window of
 * cache.readahead_kb) are fetched by background threads, several GETs at a
 * time, and blocks that lie next to each other in one segment object are
 * fetched by ONE ranged GET. Fetched blocks are verified and decoded like
 * on-demand fetches and go into the clean cache through gfs_blk_cache_fill
 * (blockio.h), which keeps a block only while the block map still points
 * where it came from: newer data (dirty in the journal, or uploaded
 * meanwhile) always wins. Random reads never start read-ahead, so they fetch
 * only what they need.
 *
 * All state is guarded by the volume's mutex; GETs and cache writes run
 * outside it. Threads are started on first use, exit after 10 s with
 * nothing to do (started again by the next stream), and are stopped by
 * gfs_ra_destroy (volume close).
 */
#ifndef GLIDEFS_READAHEAD_H
#define GLIDEFS_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

struct glidefs_volume;
struct gfs_ra;

/* window_bytes: how far ahead of a sequential stream to fetch (0: no
 * read-ahead; *out stays NULL). nthreads: GETs in flight at most. */
int gfs_ra_create(struct glidefs_volume *v, uint64_t window_bytes, unsigned nthreads,
                  struct gfs_ra **out);
/* Stop the threads (waiting for GETs in flight) and free everything. The
 * volume's lock must not be held. NULL is fine. */
void gfs_ra_destroy(struct gfs_ra *ra);

/* glidefs_pread is about to read [off, off+len): feed the stream detector
 * and queue read-ahead if the stream is sequential. Called with the volume's
 * lock held (the read path holds it anyway). */
void gfs_ra_note_read(struct gfs_ra *ra, uint64_t off, uint64_t len);
/* Would a read starting in block b continue a stream being followed? No
 * lock: the lock-free read path (fastread.h) leaves such reads to the
 * locked one, which feeds the detector; other reads it serves unseen (a
 * stream starts at the first read that takes the lock). NULL: 0. */
int gfs_ra_follows(struct gfs_ra *ra, uint64_t b);

/* The read path is about to GET block b itself. If read-ahead has b queued,
 * run that (coalesced) fetch now in this thread; if it is being fetched,
 * wait for it. Returns 1 when it did either (look in the cache again), 0 if
 * read-ahead has nothing to do with b. Lock not held. */
int gfs_ra_wait(struct gfs_ra *ra, uint64_t b);

/* Queue the blocks of [b0, b1) missing from the cache as coalesced fetches
 * (runs of one segment, one ranged GET each) for the workers; a reader of
 * one of them waits for its fetch (gfs_ra_wait). At most about a window's
 * worth is queued at a time: returns the first block not looked at (b1 when
 * all were; b0 with no read-ahead). Volume lock held. NULL is fine. */
uint64_t gfs_ra_queue_range(struct gfs_ra *ra, uint64_t b0, uint64_t b1);

/* Profile prefetch (wake.c): fetch the blocks of `blocks` (a profile, in
 * the order they are needed; ra takes the array) that are missing from the
 * cache, a bounded number in flight, grouped by segment into ranged GETs
 * (payloads close together in one). A reader of one of them runs or waits
 * for its fetch (gfs_ra_wait), so the guest's misses never queue behind
 * the prefetch. filled(arg, b) is called under the lock for each block a
 * prefetch put into the cache. set: the same blocks as a set (the caller's,
 * kept until gfs_ra_destroy); until the prefetch is stopped, a sequential
 * stream's window fetches only blocks in it (the profile knows what a boot
 * reads next better than a guess: a guest that leaves the profile stops
 * the prefetch, and read-ahead goes on as without one). Volume lock held. */
struct gfs_blkset;
typedef void (*gfs_ra_filled_fn)(void *arg, uint64_t b);
void gfs_ra_prefetch_start(struct gfs_ra *ra, uint64_t *blocks, uint32_t n,
                           const struct gfs_blkset *set, gfs_ra_filled_fn filled, void *arg);
/* Plan no more of the profile (jobs queued finish). Lock held. */
void gfs_ra_prefetch_stop(struct gfs_ra *ra);
/* The next profile position to plan (tests). Lock held. */
uint32_t gfs_ra_prefetch_pos(const struct gfs_ra *ra);
/* Run fn(arg) on a worker, lock not held (a GET that must not delay open);
 * dropped unrun when the volume closes first. Lock held. */
int gfs_ra_run(struct gfs_ra *ra, void (*fn)(void *), void *arg);

/* Tests: how long an idle worker waits before it exits, and how many run. */
void gfs_ra_set_idle_ms(struct gfs_ra *ra, int64_t ms);
unsigned gfs_ra_threads(struct gfs_ra *ra);

/* Tests: called by the fetching thread after a read-ahead GET returned and
 * before its blocks go into the cache (lock not held). */
typedef void (*gfs_ra_hook)(void *arg, uint64_t first_block, uint32_t nblocks);
void gfs_ra_set_test_hook(struct gfs_ra *ra, gfs_ra_hook fn, void *arg);

#endif
