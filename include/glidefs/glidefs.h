/*
 * glidefs.h — the public API of libglidefs: block devices whose data lives in an
 * object store (S3 or a local directory), served from a local SSD cache with a
 * crash-safe dirty journal and a background syncer.
 *
 * Conventions
 *  - Every function returns 0 (or a non-negative count where documented) on
 *    success and a negative errno value on failure; glidefs_strerror() names it.
 *  - Handles are opaque. A glidefs_volume is safe to use from many threads at
 *    once (pread/pwrite/flush/trim/... concurrently). A glidefs_config must not
 *    be modified while a volume opened from it is being opened.
 *  - Offsets and lengths of I/O are bytes and must be multiples of 512.
 *  - The library never prints and never exits; it logs through the callback
 *    set with glidefs_config_set_log().
 *  - Binary compatibility: every exported symbol carries the version node of
 *    the release that introduced it (GLIDEFS_0 the first, GLIDEFS_0.2 the
 *    next, ...: lib/libglidefs.map), and a call changed later keeps its old
 *    form under the old node. What came after the first release has a
 *    GLIDEFS_HAVE_* macro to test with #ifdef. Result structs that may grow
 *    are filled up to a size the caller passes (sizeof of its struct).
 *  - Flags arguments: unknown bits are refused with -EINVAL.
 *
 * This header is C99 and C++ clean (checked by the test suite).
 */
#ifndef GLIDEFS_GLIDEFS_H
#define GLIDEFS_GLIDEFS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define GLIDEFS_API __attribute__((visibility("default")))
#else
#define GLIDEFS_API
#endif

#define GLIDEFS_VERSION_MAJOR 0
#define GLIDEFS_VERSION_MINOR 1
#define GLIDEFS_VERSION_PATCH 0

/* The sector size: every I/O offset and length is a multiple of it. */
#define GLIDEFS_SECTOR_SIZE 512u

/* Largest volume: 1 PiB (sizes beyond are refused with -EINVAL/-EFBIG). */
#define GLIDEFS_MAX_VOLUME_SIZE (UINT64_C(1) << 50)

/* Longest export (volume) name; names match [A-Za-z0-9._-]{1,128}, no leading '.'. */
#define GLIDEFS_NAME_MAX 128

/* Library version as "MAJOR.MINOR.PATCH". */
GLIDEFS_API const char *glidefs_version(void);

/* Human-readable text for a negative errno returned by this library
 * (also accepts positive values). Never NULL; the string is static. */
GLIDEFS_API const char *glidefs_strerror(int err);

/* 1 if name is a valid export/volume name, 0 otherwise. */
GLIDEFS_API int glidefs_name_valid(const char *name);

/* Parse a size: plain bytes, or a number with K M G T / KiB MiB GiB TiB
 * (all powers of 1024; a trailing "B" is accepted). Returns 0 and sets *out,
 * or -EINVAL (malformed) / -ERANGE (overflow). */
GLIDEFS_API int glidefs_parse_size(const char *s, uint64_t *out);

/* ------------------------------------------------------------------------ */
/* Configuration                                                              */
/* ------------------------------------------------------------------------ */

typedef struct glidefs_config glidefs_config;

enum glidefs_log_level {
    GLIDEFS_LOG_ERROR = 0,
    GLIDEFS_LOG_WARN = 1,
    GLIDEFS_LOG_INFO = 2,
    GLIDEFS_LOG_DEBUG = 3
};

/* Log callback: called from any library thread, possibly concurrently. */
typedef void (*glidefs_log_fn)(void *arg, int level, const char *msg);

/* A config holding the defaults listed in glidefs.yaml(5) (file:// store needs
 * storage.url). Every volume opened with one config shares its
 * cache.disk_size as one budget (journals plus clean caches: the node's, see
 * glidefs.yaml(5)); volumes of different configs never share one. */
GLIDEFS_API glidefs_config *glidefs_config_new(void);

/* Load a YAML config file (${ENV} expanded). On failure returns a negative
 * errno and, when err is non-NULL, writes one line naming the file, line,
 * column and key at fault into err (NUL-terminated, truncated to errlen). */
GLIDEFS_API int glidefs_config_load(const char *path, glidefs_config **out,
                                    char *err, size_t errlen);

/* Same as glidefs_config_load, but from a YAML document in memory; name is
 * used in error messages in place of a file name. */
GLIDEFS_API int glidefs_config_parse(const char *yaml, size_t len, const char *name,
                                     glidefs_config **out, char *err, size_t errlen);

/* Set one key by its dotted YAML path ("cache.dir", "servers.nbd.sync_delay_ms",
 * "storage.url", ...) from its text form. -ENOENT for an unknown key, -EINVAL
 * for a bad value (err explains, when non-NULL). */
GLIDEFS_API int glidefs_config_set(glidefs_config *cfg, const char *key, const char *value,
                                   char *err, size_t errlen);

/* Get one key's value in text form into buf. -ENOENT for an unknown key,
 * -ERANGE if buf is too small. Secrets (passwords, secret keys) read as "***". */
GLIDEFS_API int glidefs_config_get(const glidefs_config *cfg, const char *key, char *buf,
                                   size_t buflen);

GLIDEFS_API void glidefs_config_set_log(glidefs_config *cfg, glidefs_log_fn fn, void *arg,
                                        int max_level);

GLIDEFS_API void glidefs_config_free(glidefs_config *cfg);

/* ------------------------------------------------------------------------ */
/* Volumes                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct glidefs_volume glidefs_volume;

/* Flags for glidefs_volume_open. */
#define GLIDEFS_OPEN_CREATE 0x1u    /* create with create_size if the volume does not exist */
#define GLIDEFS_OPEN_READONLY 0x2u  /* never write: writes fail with -EROFS */
#define GLIDEFS_OPEN_EXCLUSIVE 0x4u /* with CREATE: fail with -EEXIST if it exists */
/* With READONLY: do not follow the store while open (no lease read every
 * second, no new segments applied); the map is the store's as of the open.
 * For one-shot readers such as an offline scrub, which refreshes once
 * before it judges its findings. Without READONLY: -EINVAL. */
#define GLIDEFS_OPEN_NOFOLLOW 0x8u
#define GLIDEFS_HAVE_OPEN_NOFOLLOW 1

/* Open (or create) volume `name` in the config's store, with its cache and
 * journal under <cache.dir>/<name>/. Recovers the journal left by a crash:
 * every write acknowledged before a completed flush is back. Takes the
 * write lease unless another writer holds it (then read-only): a writer is
 * a cache dir (glidefs_instance_id), and an open on the cache dir that held
 * the lease resumes it in a new epoch. create_size
 * (bytes, multiple of 512, > 0) is used only when the volume is created.
 * Errors: -EINVAL bad name/size, -ENOENT no such volume and no CREATE,
 * -EEXIST with EXCLUSIVE, -EBUSY the cache dir is in use by another process,
 * -EIO store or journal unreadable or corrupt, -ENOSPC cache disk full. */
GLIDEFS_API int glidefs_volume_open(const glidefs_config *cfg, const char *name,
                                    uint64_t create_size, unsigned flags,
                                    glidefs_volume **out);

/* Stop background work and release the volume. Dirty data is not uploaded
 * first (it stays in the journal for the next open); call glidefs_drain()
 * before close for that. Returns the first deferred error, or 0. */
GLIDEFS_API int glidefs_volume_close(glidefs_volume *vol);

/* Read len bytes at offset into buf. Returns 0 or -EINVAL (unaligned, or out
 * of range), -EIO (store or checksum failure: no wrong data is ever returned). */
GLIDEFS_API int glidefs_pread(glidefs_volume *vol, void *buf, size_t len, uint64_t offset);

/* Write len bytes at offset. Touches only local disk (never waits on the
 * store); may wait for the syncer when the dirty budget is full. The write is
 * durable after the next glidefs_flush() returns, or at once with
 * GLIDEFS_WRITE_FUA. -EINVAL, -EROFS, -ENOSPC, -EIO. */
#define GLIDEFS_WRITE_FUA 0x1u
GLIDEFS_API int glidefs_pwrite(glidefs_volume *vol, const void *buf, size_t len,
                               uint64_t offset, unsigned flags);

/* Make every write that completed before this call durable on local disk
 * (survives kill -9 and power loss). In store durability mode, also in the
 * store (glidefs_volume_set_durability). */
GLIDEFS_API int glidefs_flush(glidefs_volume *vol);

/* Durability of a flush, per open volume (README "Durability"). The
 * config's storage.durability, storage.max_unsynced_s and
 * storage.max_unsynced_bytes are the defaults at open.
 * GLIDEFS_DURABILITY_LOCAL: glidefs_flush makes writes durable on this
 * node's disk; the store catches up in the background.
 * GLIDEFS_DURABILITY_STORE: glidefs_flush (and FUA) returns 0 only once
 * every write completed before it is in the store (a segment, and a
 * manifest a fresh reader loads), so another node reads it even if this one
 * is lost with its disk; flushes waiting together share one segment and one
 * manifest PUT. A store error fails the flush with its errno (the data
 * stays dirty and is retried); -EROFS when the lease was lost. Writes still
 * return at local speed.
 * max_unsynced_ms / max_unsynced_bytes (either mode, 0 = unbounded): the
 * syncer uploads a write by half that age, and a write waits while the
 * oldest write not in the store is older than max_unsynced_ms or while
 * this write would take the bytes not in the store past
 * max_unsynced_bytes (back-pressure). */
#define GLIDEFS_HAVE_DURABILITY 1
#define GLIDEFS_DURABILITY_LOCAL 0
#define GLIDEFS_DURABILITY_STORE 1
struct glidefs_durability {
    uint32_t mode;               /* GLIDEFS_DURABILITY_* */
    uint32_t max_unsynced_ms;    /* 0: unbounded */
    uint64_t max_unsynced_bytes; /* 0: unbounded */
};
/* Set (d_size = sizeof(struct glidefs_durability)); takes effect for
 * flushes and writes that start afterwards. -EINVAL unknown mode. */
GLIDEFS_API int glidefs_volume_set_durability(glidefs_volume *vol,
                                              const struct glidefs_durability *d, size_t d_size);
GLIDEFS_API int glidefs_volume_get_durability(glidefs_volume *vol, struct glidefs_durability *d,
                                              size_t d_size);

/* Discard a range: it reads back as zeroes. Whole blocks become holes that
 * the store does not hold at all. flags: GLIDEFS_WRITE_FUA. */
GLIDEFS_API int glidefs_trim(glidefs_volume *vol, uint64_t offset, uint64_t len, unsigned flags);

/* Write zeroes over a range; identical effect to trim (reads back as zeroes). */
GLIDEFS_API int glidefs_write_zeroes(glidefs_volume *vol, uint64_t offset, uint64_t len,
                                     unsigned flags);

/* Fetch a range into the local cache ahead of reads (NBD_CMD_CACHE). */
GLIDEFS_API int glidefs_prefetch(glidefs_volume *vol, uint64_t offset, uint64_t len);

/* Upload every write that completed before this call and store a manifest
 * covering it. On success the store alone holds the volume's contents.
 * timeout_ms < 0 waits forever; on timeout returns -ETIMEDOUT (nothing lost). */
GLIDEFS_API int glidefs_drain(glidefs_volume *vol, int64_t timeout_ms);

/* Make a read-only volume read-write: take the write lease (promise 2.5 in
 * docs/design.md of the source tree). Succeeds when the lease is free
 * (released, or none) or expired (its holder's heartbeat is older than
 * servers.lease_timeout_ms), or with GLIDEFS_PROMOTE_FORCE (flags 0: only
 * then; the value of the old `int force` = 1).
 * Takes a new epoch and fences the previous one at the last segment seen, so
 * the old writer's later uploads are ignored everywhere. Already read-write:
 * 0, nothing changes. -EBUSY: held by a live node. -EROFS: opened with
 * GLIDEFS_OPEN_READONLY. -ENOLCK: the store does not honour conditional
 * writes and taking the lease from another writer is not allowed there (see
 * glidefs_store_check_info). */
#define GLIDEFS_PROMOTE_FORCE 0x1u /* take it from a live holder too */
#define GLIDEFS_HAVE_PROMOTE_FLAGS 1
GLIDEFS_API int glidefs_promote(glidefs_volume *vol, unsigned flags);

/* Hand the write lease back: drain (up to timeout_ms, < 0 = forever), stop
 * uploading and mark the lease released so another node can promote without
 * force. The volume stays open read-only and follows the store; promote takes
 * the lease again. Not the holder: 0. -ETIMEDOUT / -EAGAIN if data stayed
 * dirty (the lease is kept). */
GLIDEFS_API int glidefs_release(glidefs_volume *vol, int64_t timeout_ms);

/* Delete the journal data a fenced volume kept aside (see fenced_bytes in
 * glidefs_stats). It is never uploaded; this is the explicit way to drop it. */
GLIDEFS_API int glidefs_fenced_discard(glidefs_volume *vol);

/* Write what this node saw of the volume before it lost the write lease to
 * fd, as a raw image of the volume's size: the store's data as of the
 * node's last epoch (its own late segments included) with the journal it
 * kept aside applied on top. A regular file is truncated first and left
 * sparse (zero blocks are holes); a block device gets every block. Only
 * reads the store: nothing is uploaded or deleted, and the kept-aside data
 * stays until glidefs_fenced_discard. The newest kept-aside journal is
 * exported (a volume opened GLIDEFS_OPEN_READONLY uses a journal of an
 * ended epoch still in place). *epoch (may be NULL) gets that epoch.
 * -ENOENT nothing is kept aside; -ENODATA the newer writer has since
 * compacted away objects that view needs (no partial view is produced;
 * fd's contents are then undefined); -EINVAL fd is not a regular file or
 * block device; -EIO a store read or checksum failed. */
GLIDEFS_API int glidefs_fenced_export(glidefs_volume *vol, int fd, uint64_t *epoch);

/* Change the password of an encrypted volume: the data key is re-wrapped
 * under new_password and volume.json rewritten; no data is rewritten. Only
 * the lease holder may rekey. -EACCES old_password is wrong, -EINVAL the
 * volume is not encrypted or a password is empty, -EROFS not the writer. */
GLIDEFS_API int glidefs_volume_rekey(glidefs_volume *vol, const char *old_password,
                                     const char *new_password);

/* Rotate the data key of an encrypted volume: a new data key generation is
 * made, wrapped under the password's key (kept from open) into volume.json,
 * and every segment written from then on is sealed under it. Compaction
 * re-seals the segments still under older generations in the background
 * (glidefs_stats.segments_old_key counts them); when none is left, and no
 * snapshot or clone keeps one, the older generations are retired: removed
 * from volume.json and no longer accepted, so a leaked older key opens
 * nothing the volume still uses. Snapshots and clones taken before the
 * rotation keep their segments, so the older keys stay until they are
 * deleted. flags: 0. Only the lease holder may rotate. -EINVAL not
 * encrypted (or flags), -EROFS not the writer, -ENOSPC 16 generations are
 * held (let compaction retire older ones first). */
#define GLIDEFS_HAVE_ROTATE_KEY 1
GLIDEFS_API int glidefs_volume_rotate_key(glidefs_volume *vol, unsigned flags);

/* ---- snapshots and clones ---- */

/* Take snapshot `name` of the volume: drains, then stores one small object
 * naming the manifest that holds the drained state (no data is copied).
 * Compaction keeps everything a snapshot references. Only the lease holder
 * may take one (-EROFS). -EEXIST: a snapshot of that name exists. */
GLIDEFS_API int glidefs_snapshot_create(glidefs_volume *vol, const char *name);

typedef int (*glidefs_snapshot_fn)(void *arg, const char *name, int64_t created_ms,
                                   uint64_t size_bytes);
/* Call fn for each snapshot (name order); a non-zero return stops. */
GLIDEFS_API int glidefs_snapshot_list(glidefs_volume *vol, glidefs_snapshot_fn fn, void *arg);

/* Delete a snapshot. -EBUSY while a clone uses it, -ENOENT no such one. */
GLIDEFS_API int glidefs_snapshot_delete(glidefs_volume *vol, const char *name);

/* Create volume `child` whose contents are snapshot `snapshot` of parent
 * (NULL: of parent's current flushed state, through an implicit snapshot;
 * needs the lease). The child shares the parent's stored data and writes
 * only its own; the time taken does not depend on the parent's size. An
 * encrypted parent's clone opens with the same password. A crash leaves no
 * child or a complete one. -EEXIST: child exists. -EMLINK: lineage too deep. */
GLIDEFS_API int glidefs_clone(glidefs_volume *parent, const char *snapshot, const char *child);

/* The volume's lineage: fills names[0..n) with its ancestors, root first
 * (the parent last), at most max of them, and the parent's snapshot it was
 * cloned from into snapshot (when non-NULL; "" for a volume that is not a
 * clone; an internal name starting with '@' for a clone of the live state).
 * Returns the number of ancestors (0: not a clone). */
#define GLIDEFS_HAVE_LINEAGE 1
GLIDEFS_API int glidefs_volume_lineage(glidefs_volume *vol, char names[][GLIDEFS_NAME_MAX + 1],
                                       int max, char *snapshot, size_t snaplen);

/* Grow the volume to new_size bytes (multiple of 512). Shrinking: -EINVAL. */
GLIDEFS_API int glidefs_resize(glidefs_volume *vol, uint64_t new_size);

/* Current size in bytes. */
GLIDEFS_API uint64_t glidefs_volume_size(glidefs_volume *vol);

/* 1 if the volume is read-only (opened so, another node holds the lease, or
 * fenced by a newer writer). */
GLIDEFS_API int glidefs_volume_read_only(glidefs_volume *vol);

/* Allocation status of the range starting at offset: returns the length
 * (bytes, > 0) of the run of the same status from offset, capped at len, and
 * sets *is_hole to 1 for never-written, trimmed or zeroed data, 0 otherwise.
 * Negative errno on error. */
GLIDEFS_API int64_t glidefs_block_status(glidefs_volume *vol, uint64_t offset, uint64_t len,
                                         int *is_hole);

struct glidefs_stats {
    uint64_t size_bytes;
    uint64_t block_size;
    uint64_t dirty_bytes;        /* written locally, not yet in the store */
    uint64_t cached_bytes;       /* clean blocks in the local cache */
    uint64_t journal_bytes;      /* bytes of journal files on disk */
    uint64_t cache_hits;         /* block reads served locally */
    uint64_t cache_misses;       /* block reads fetched from the store */
    uint64_t reads, read_bytes;
    uint64_t writes, write_bytes;
    uint64_t flushes, trims, trim_bytes;
    uint64_t store_puts, store_put_bytes;
    uint64_t store_gets, store_get_bytes;
    uint64_t store_deletes, store_lists;
    uint64_t store_errors, store_retries;
    uint64_t segments_uploaded, manifests_uploaded;
    uint64_t blocks_uploaded;
    uint64_t checksum_errors;
    int64_t last_sync_time_ms;   /* wall clock (ms since epoch) of the last successful upload, 0 if none */
    int64_t oldest_dirty_age_ms; /* age of the oldest dirty write, 0 if none */
    uint64_t writes_waited;      /* writes that waited for the syncer (back-pressure) */
    int read_only;
    int last_error;              /* last background (sync) error as negative errno, 0 if none */
    int fenced;                  /* another node took the write lease from us */
    int lease_owner;             /* we hold the write lease */
    uint64_t lease_epoch;        /* the lease's current epoch as we know it */
    uint64_t fenced_bytes;       /* journal data kept aside after losing the lease */
    /* storage efficiency */
    uint64_t stored_bytes;       /* bytes of segment objects in the store */
    uint64_t live_bytes;         /* of which still referenced by the volume */
    uint64_t segments;           /* segment objects in the store */
    uint64_t compactions;        /* compaction cycles that did work */
    uint64_t compaction_bytes_rewritten;
    uint64_t bytes_reclaimed;    /* stored bytes deleted by compaction */
    uint64_t segments_deleted, manifests_deleted;
    double est_monthly_cost_usd; /* storage + requests at the configured prices and current rates */
    uint64_t blocks_fetched;     /* blocks read from the store (reads, prefetch, partial-block uploads) */
    char lease_node[129];        /* node id holding the write lease ("" if released or none) */
    uint64_t readahead_blocks;   /* blocks put into the cache by sequential read-ahead */
    /* one writer (README "One writer, leases and fencing") */
    int store_conditional;       /* GLIDEFS_STORE_COND_*: the last probe of the store's
                                    conditional writes (glidefs_store_check_info on the config
                                    the volume was opened with, or before a takeover) */
    int64_t store_probe_ms;      /* wall clock of that probe, 0 if none */
    char lease_instance[33];     /* instance id of the lease's holder ("" if released, none,
                                    or written by an older build) */
    /* encryption at rest (GLIDEFS_HAVE_ROTATE_KEY) */
    uint64_t key_generation;     /* data key generation new segments are sealed under (0: not
                                    encrypted) */
    uint64_t key_generations;    /* generations held: older ones stay until nothing needs them */
    uint64_t segments_old_key;   /* segments still referenced that are sealed under an older
                                    generation (compaction re-seals them; 0: a leaked older
                                    key no longer matters once it is retired) */
    /* group commit (GLIDEFS_HAVE_JOURNAL_SYNCS) */
    uint64_t journal_syncs;      /* journal sync rounds (fdatasync): concurrent flushes share
                                    one (the syncer's journal clean-up syncs too) */
    /* durability (GLIDEFS_HAVE_DURABILITY). What losing this node (its disk
     * included) would lose is dirty_bytes, written over the last
     * oldest_dirty_age_ms: those two are the exposure. */
    int durability;              /* GLIDEFS_DURABILITY_* */
    uint32_t max_unsynced_ms;    /* the bounds in force (0: none) */
    uint64_t max_unsynced_bytes;
    uint64_t store_flushes;      /* flushes that waited for the store (store mode) */
    uint64_t store_flush_errors; /* of which failed (a store error, the lease lost) */
    uint64_t unsynced_waits;     /* writes that waited for the max_unsynced bounds */
    /* cold start (README "Cold start"): the access profile and prefetch on wake */
    uint64_t profile_blocks_recorded; /* blocks in this session's access profile so far */
    uint64_t prefetched_blocks;  /* blocks put into the cache from the profile loaded at open */
    uint64_t prefetch_hits;      /* guest block reads served by a prefetched block */
    uint64_t prefetch_wasted_bytes; /* prefetched, not read (yet): at close, the waste */
    int64_t first_read_ms;       /* open to the first guest read done, ms (0: none yet) */
    uint64_t cache_restored_blocks; /* clean blocks kept from the last close on this node
                                       (cache.keep_on_close), restored at open */
    /* incremental manifests (GLIDEFS_HAVE_MANIFEST_DELTAS) */
    uint64_t manifest_bases;     /* full manifests stored by this session */
    uint64_t manifest_deltas;    /* delta manifests stored by this session */
    uint64_t manifest_bytes;     /* bytes of manifest objects stored by this session */
    uint64_t manifest_chain;     /* manifests a fresh load of ours reads: the newest one's
                                    chain, base included (0: none stored this session) */
    uint64_t layout_blocks;      /* blocks of the access profile this session copied together,
                                    in first-read order (GLIDEFS_HAVE_LAYOUT) */
};
#define GLIDEFS_HAVE_MANIFEST_DELTAS 1
#define GLIDEFS_HAVE_LAYOUT 1
#define GLIDEFS_HAVE_CACHE_RESTORED 1
#define GLIDEFS_HAVE_JOURNAL_SYNCS 1

/* Result of glidefs_compact(). It may grow: pass sizeof of yours. */
struct glidefs_compact_result {
    uint64_t segments_rewritten;
    uint64_t bytes_rewritten;    /* live bytes copied into new segments */
    uint64_t segments_deleted;
    uint64_t bytes_reclaimed;    /* stored bytes deleted */
    uint64_t stored_bytes;       /* after */
    uint64_t live_bytes;         /* after */
};

/* Compact now: rewrite the live blocks of segments below
 * compaction.min_live_pct into new segments, store a manifest, and delete
 * segments (and old manifests) nothing references any more — after
 * compaction.grace_ms, so that readers following the store are not cut off.
 * Waits for the cycle; res (may be NULL) says what it did, filled up to
 * res_size bytes (sizeof(struct glidefs_compact_result)). Only the lease
 * holder compacts: -EROFS otherwise. (The first release's form, without
 * res_size, stays in the library for programs built against it.) */
#define GLIDEFS_HAVE_COMPACT_RESULT_SIZE 1
GLIDEFS_API int glidefs_compact(glidefs_volume *vol, struct glidefs_compact_result *res,
                                size_t res_size);

/* Scrub: prove the store still holds what the volume's block map
 * references. Quick (flags 0): every segment the map references exists,
 * has the size the map knows and covers every payload in it, and has a
 * valid header (MAC checked on encrypted volumes): one LIST per 1000
 * segments plus one ranged GET per segment. GLIDEFS_SCRUB_DEEP also fetches
 * every live block (coalesced ranged GETs) and checks it (CRC-32C, AEAD).
 * A finding whose segment or block the map stopped referencing meanwhile
 * (compaction moved it) is dropped. The segments only snapshots keep (a
 * clone's base is its parent's snapshot) are checked too, quick mode's way
 * (loaded fresh from the snapshot objects): a finding on one is dropped
 * once no snapshot keeps it.
 * GLIDEFS_SCRUB_REPAIR (implies DEEP; a writable volume): every damaged
 * block, and every live block of a missing, truncated or unreadable
 * segment, that this open volume still holds in its clean cache is written
 * again from there (journalled like a write, uploaded into a new segment
 * by the syncer; the map moves to it), unless it was rewritten meanwhile.
 * A block the node does not hold stays reported, and reads of it keep
 * failing with EIO.
 * Every scrub also lists the segment objects under the volume's own prefix
 * (nbd/NAME/seg/, never a clone parent's) and reports as ORPHAN those that
 * nothing keeps: not in the block map, not named by a snapshot's manifest,
 * not of an epoch held for a fenced node, and not possibly in flight (a
 * segment after the newest one the map knows may be an upload or a
 * compaction not committed yet: never an orphan). Keys of any other form
 * are left alone (a newer build's). GLIDEFS_SCRUB_DELETE_ORPHANS (a
 * writable volume) deletes them under compaction's rule for unreferenced
 * segments (compaction.grace_ms since open, a manifest stored since open,
 * the lease re-read first); not while a snapshot is unreadable (what it
 * keeps is unknown). */
#define GLIDEFS_HAVE_SCRUB 1
#define GLIDEFS_SCRUB_DEEP 1u
#define GLIDEFS_HAVE_SCRUB_REPAIR 1
#define GLIDEFS_SCRUB_REPAIR 2u
#define GLIDEFS_HAVE_SCRUB_ORPHANS 1
#define GLIDEFS_SCRUB_DELETE_ORPHANS 4u

enum glidefs_scrub_kind {
    GLIDEFS_SCRUB_MISSING = 1,      /* a referenced segment object is gone */
    GLIDEFS_SCRUB_SIZE = 2,         /* its size differs from the map's, or it ends before
                                       a payload the map references in it (truncated) */
    GLIDEFS_SCRUB_BAD_HEADER = 3,   /* its header does not decode, authenticate or match */
    GLIDEFS_SCRUB_DAMAGED_BLOCK = 4, /* a block fails its CRC or AEAD, or lies past the end */
    GLIDEFS_SCRUB_SNAPSHOT = 5,     /* a snapshot's manifest (the key) is missing or does not
                                       decode: the snapshot, and clones made from it, are lost */
    GLIDEFS_SCRUB_ORPHAN = 6        /* a segment object nothing keeps (a leak): length is its
                                       size in the store */
};

#define GLIDEFS_SCRUB_FINDINGS 64
#define GLIDEFS_SCRUB_FOUND_REPAIRED 1u
#define GLIDEFS_SCRUB_FOUND_DELETED 2u
struct glidefs_scrub_finding {
    uint32_t kind;               /* enum glidefs_scrub_kind */
    uint32_t flags;              /* GLIDEFS_SCRUB_FOUND_REPAIRED: mended (every live block of
                                    the segment, for the segment kinds);
                                    GLIDEFS_SCRUB_FOUND_DELETED: an orphan deleted */
    uint64_t offset, length;     /* DAMAGED_BLOCK: the volume bytes it holds; ORPHAN: 0 and
                                    the object's size; else 0 */
    char key[192];               /* the segment object's key in the store */
};

/* Result of glidefs_scrub(). It may grow: pass sizeof of yours. */
struct glidefs_scrub_result {
    uint64_t segments_checked;
    uint64_t blocks_checked;     /* deep only */
    uint64_t bytes_read;         /* fetched from the store (headers and blocks) */
    uint64_t missing_segments;
    uint64_t size_mismatches;
    uint64_t bad_headers;
    uint64_t damaged_blocks;
    uint32_t nfindings;          /* findings[] filled: the first GLIDEFS_SCRUB_FINDINGS (the
                                    counts above count them all) */
    uint32_t reserved;
    struct glidefs_scrub_finding findings[GLIDEFS_SCRUB_FINDINGS];
    /* GLIDEFS_SCRUB_REPAIR: blocks written again from this node's copy, and
     * damaged or unreachable blocks left as they are (no copy here, or
     * rewritten by a client meanwhile: see the log) */
    uint64_t repaired_blocks;
    uint64_t unrepaired_blocks;
    uint64_t bad_snapshots;      /* GLIDEFS_SCRUB_SNAPSHOT findings */
    uint64_t gets;               /* ranged GETs made (LISTs not counted) */
    uint64_t orphan_objects;     /* GLIDEFS_SCRUB_ORPHAN findings */
    uint64_t orphan_bytes;       /* their sizes added up */
    uint64_t orphans_deleted;    /* GLIDEFS_SCRUB_DELETE_ORPHANS: of them, deleted */
};

/* Scrub vol (open read-only or read-write) as above; res is filled up to
 * res_size bytes (sizeof(struct glidefs_scrub_result)). Returns 0 when the
 * scrub ran (anything wrong is in res: a non-zero count), or a negative
 * errno when it could not (the store unreachable, -EINVAL for unknown
 * flags or no res, -EROFS for REPAIR or DELETE_ORPHANS on a volume this
 * node does not write). */
GLIDEFS_API int glidefs_scrub(glidefs_volume *vol, unsigned flags,
                              struct glidefs_scrub_result *res, size_t res_size);

/* Limits for one scrub (glidefs_scrub_ex), so that a background scrub's
 * store cost is bounded: a GET starts only when the budget covers it, the
 * budget filling at max_bytes_per_s (bytes asked for) and max_gets_per_s
 * (GETs), shared by the scrub's threads, with no burst beyond one GET.
 * LISTs (one per 1000 segments) are not paced. 0: no limit. cancel (may be
 * NULL) is polled at least every 100 ms while a GET waits for the budget
 * and before each segment: non-zero makes the scrub return -ECANCELED.
 * It may grow: opts_size = sizeof of yours. */
#define GLIDEFS_HAVE_SCRUB_EX 1
struct glidefs_scrub_opts {
    size_t opts_size;
    uint64_t max_bytes_per_s;
    uint32_t max_gets_per_s;
    uint32_t reserved;
    int (*cancel)(void *arg);
    void *cancel_arg;
};

/* glidefs_scrub with limits (opts may be NULL: none, as glidefs_scrub). */
GLIDEFS_API int glidefs_scrub_ex(glidefs_volume *vol, unsigned flags,
                                 const struct glidefs_scrub_opts *opts,
                                 struct glidefs_scrub_result *res, size_t res_size);

/* Fill *st (st_size = sizeof(struct glidefs_stats), for ABI growth). */
GLIDEFS_API int glidefs_stats(glidefs_volume *vol, struct glidefs_stats *st, size_t st_size);

/* Check that the configured store is reachable and usable (lists the
 * prefix; for S3 this catches bad credentials, a missing bucket or a wrong
 * endpoint), and probe its conditional writes as glidefs_store_check_info
 * does (a store that ignores them is logged as a warning, not an error). On
 * failure writes one line naming the problem into err and returns -EACCES
 * (credentials refused), -ENOENT (no such bucket, container or account),
 * -EPROTO (TLS or protocol failure, or the bucket is in another region:
 * configuration), -EINVAL (a wrong setting) or -EIO (the store did not
 * answer, or answered with an error: worth asking again later). */
GLIDEFS_API int glidefs_store_check(const glidefs_config *cfg, char *err, size_t errlen);

/* What a probe found about the store's conditional writes (If-None-Match
 * and If-Match on PUT), on which the write lease relies. */
#define GLIDEFS_STORE_COND_UNKNOWN 0 /* not probed, or the probe could not finish */
#define GLIDEFS_STORE_COND_OK 1      /* honoured */
#define GLIDEFS_STORE_COND_IGNORED 2 /* a PUT that had to fail overwrote the object */
#define GLIDEFS_STORE_COND_BROKEN 3  /* a PUT that had to succeed was refused */

struct glidefs_store_info {
    int conditional_writes; /* GLIDEFS_STORE_COND_* */
    char detail[256];       /* what the probe saw when not OK, else "" */
};

/* glidefs_store_check, and what it found: the probe PUTs, overwrites and
 * deletes one scratch object "probe/<random>" under the store's prefix.
 * The result is also remembered in cfg (volumes opened from it afterwards
 * report it in glidefs_stats). On a store that does not honour conditional
 * writes, taking the write lease from another writer is refused unless
 * storage.unsafe_accept_split_brain_on_lax_store is set: glidefs_promote
 * (with or without force) fails with -ENOLCK, and opening a volume whose
 * lease another node released or let expire attaches read-only. Creating a
 * lease and resuming this cache dir's own keep working. info (may be NULL)
 * is filled up to info_size bytes. */
#define GLIDEFS_HAVE_STORE_CHECK_INFO 1
GLIDEFS_API int glidefs_store_check_info(const glidefs_config *cfg,
                                         struct glidefs_store_info *info, size_t info_size,
                                         char *err, size_t errlen);

/* The writer identity of cfg's cache dir: 32 hex digits, made at random on
 * first use and kept in <cache.dir>/.instance (the volumes' leases name it,
 * with node_id for humans). Two cache dirs are two writers, on one machine
 * or on clones of one; a copy of a cache dir is told apart by the lease
 * itself. buf: at least 33 bytes. Creates the cache dir if missing. */
#define GLIDEFS_HAVE_INSTANCE_ID 1
GLIDEFS_API int glidefs_instance_id(const glidefs_config *cfg, char *buf, size_t len);

/* 1 if volume `name` exists in the configured store (and was not deleted),
 * 0 if not, or a negative errno when the store cannot tell. Opens nothing
 * and takes no lease. */
GLIDEFS_API int glidefs_volume_exists(const glidefs_config *cfg, const char *name);

/* Delete a volume's local cache directory and, with GLIDEFS_DELETE_PURGE,
 * its objects in the store (what live clones still read stays, under a
 * tombstone). The volume must not be open anywhere (-EBUSY). The flag's
 * value is the old `int purge_store` = 1. */
#define GLIDEFS_DELETE_PURGE 0x1u
#define GLIDEFS_HAVE_DELETE_FLAGS 1
GLIDEFS_API int glidefs_volume_delete(const glidefs_config *cfg, const char *name,
                                      unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* GLIDEFS_GLIDEFS_H */
