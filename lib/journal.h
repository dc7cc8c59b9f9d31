/*
 * journal.h — the dirty journal: an append-only write-ahead log of guest
 * writes in preallocated files under <cache>/<name>/journal/. A write is one
 * pwritev of a 40-byte record header plus its data; FLUSH is fdatasync of the
 * files written since the last sync. Records carry a CRC-32C over header and
 * data, so recovery keeps every whole record and stops at the first torn one.
 *
 * Files are preallocated (posix_fallocate: a full disk shows up at rotation,
 * not mid-log), which on ext4 and XFS leaves unwritten extents: an fdatasync
 * after an append into one must also write the inode (the extent
 * conversion), a second device write per FLUSH. So the writer zeroes the
 * file ahead of its tail in GFS_JZERO_AHEAD steps: the conversion happens
 * once per step, and a FLUSH writes only the pages of its records.
 *
 * Group commit: one flusher (the leader) syncs at a time; a flusher whose
 * writes an in-flight sync already covers waits for it, and the ones that
 * arrive meanwhile share the next sync, so N concurrent flushers cost far
 * fewer than N fdatasyncs.
 *
 * Files end with an END record when the writer moves on to the next file, so
 * recovery can tell "file full, go on" from "torn here, discard what follows".
 * Flush waits for every write reserved before it, which makes the synced part
 * of the log always a prefix: discarding after a torn record never loses a
 * flushed write.
 *
 * Everything here runs under the owner's (the volume's) mutex unless noted.
 */
#ifndef GLIDEFS_JOURNAL_H
#define GLIDEFS_JOURNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

struct gfs_log;

#define GFS_JREC_MAGIC 0x4A534647u /* "GFSJ" little-endian */
#define GFS_JREC_HDR 40u
#define GFS_JREC_WRITE 1u
#define GFS_JREC_ZERO 2u
#define GFS_JREC_END 3u

/* zero-ahead: keep [used, used + GFS_JZERO_AHEAD / 2) of the current file
 * written, in steps of GFS_JZERO_AHEAD (for records smaller than half a step) */
#define GFS_JZERO_AHEAD (256u * 1024)
#define GFS_JZERO_BUF (64u * 1024)

struct gfs_jrec {
    uint32_t type;
    uint64_t seq;
    uint64_t offset;  /* volume byte offset */
    uint32_t length;  /* bytes affected */
    uint32_t data_len;
};

struct gfs_jfile {
    uint64_t id;
    int fd;
    uint64_t size;      /* allocated size */
    uint64_t used;      /* bytes reserved so far */
    uint64_t live;      /* extents of the dirty index that point into it */
    _Atomic uint32_t pins; /* readers/syncer reading from it right now (readers unpin
                              without the lock) */
    uint64_t write_gen, synced_gen;
    uint64_t zeroed;    /* [0, zeroed) is written (records or zero-ahead): no
                           unwritten extents, whole pages in the page cache */
    struct gfs_jfile *next;
};

/* A journal file as found on disk, for the dirty index (dirty_index.h): an
 * open adopts an index only if every file still is exactly this. */
struct gfs_jfile_id {
    uint64_t id, size, used, dev, ino;
    int64_t mtime_ns, ctime_ns;
    uint32_t tail_crc; /* CRC-32C of the bytes within GFS_JTAIL_SPAN of used */
};
#define GFS_JTAIL_SPAN 4096u

struct gfs_jticket {
    uint64_t ticket;
    struct gfs_jticket *prev, *next;
};

struct gfs_journal {
    char *dir;
    int dirfd;
    uint64_t file_size;
    struct gfs_jfile *files; /* oldest first */
    struct gfs_jfile *cur;   /* newest: the one written */
    uint64_t bytes;          /* allocated bytes of all files */
    uint64_t next_id;
    uint64_t next_ticket;
    struct gfs_jticket *inflight_head, *inflight_tail;
    pthread_cond_t inflight_cond;
    uint64_t dir_gen, dir_synced_gen;
    /* group commit: done_gen counts completed records (and ENDs); a sync
     * round started at done_gen = S makes everything up to S durable */
    uint64_t done_gen, synced_done;
    int syncing;                      /* a round is in flight (its leader syncs unlocked) */
    pthread_cond_t sync_cond;         /* a round ended */
    unsigned sync_waiters;            /* flushers waiting for a round to end */
    uint64_t syncs;                   /* rounds that issued fdatasync/fsync */
    uint8_t *zeros;                   /* GFS_JZERO_BUF zero bytes for the zero-ahead */
    _Atomic int failed;      /* a log write failed: the journal is unusable (the
                                lock-free read path reads it without the lock) */
    const struct gfs_log *log;
    /* told of every change of bytes, after the space is taken or freed (the
     * node's budget, budget.h); set after init, NULL: nobody */
    void (*acct)(void *arg, int64_t delta);
    void *acct_arg;
};

int gfs_journal_init(struct gfs_journal *j, const char *dir, uint64_t file_size,
                     const struct gfs_log *log);
/* Close the files (they stay on disk) and forget them: acct hears -bytes. */
void gfs_journal_destroy(struct gfs_journal *j);

/* Called for every whole record in log order during recovery. data_off is the
 * file offset of its data. A negative return aborts recovery with that error. */
typedef int (*gfs_journal_replay_fn)(void *arg, const struct gfs_jrec *rec,
                                     struct gfs_jfile *jf, uint64_t data_off);

/* Scan existing files (not under any lock: called at open). Keeps whole
 * records up to the first torn one, truncates there, deletes later files.
 * *max_seq = highest record seq seen (0 if none). */
int gfs_journal_recover(struct gfs_journal *j, gfs_journal_replay_fn fn, void *arg,
                        uint64_t *max_seq);

/* The size of the file the next reserve of reclen bytes creates: 0 if the
 * record fits in the current file (file_size, or bigger for a big record). */
uint64_t gfs_journal_need(const struct gfs_journal *j, uint64_t reclen);

/* Reserve room for a record of reclen bytes (header + data). Rotates to a new
 * file when needed. Fills *jf, *off and links *t into the in-flight list. */
int gfs_journal_reserve(struct gfs_journal *j, uint64_t reclen, struct gfs_jfile **jf,
                        uint64_t *off, struct gfs_jticket *t);

/* Write record rec (its header, then data_len bytes of data) at off in jf,
 * reserved by gfs_journal_reserve: one pwritev, more only after a short
 * write. No lock needed (the reservation is this writer's alone). 0 or
 * -EIO. */
int gfs_journal_write(struct gfs_jfile *jf, uint64_t off, const struct gfs_jrec *rec,
                      const void *data);

/* After the record's pwritev (ok = 0 on success). Unlinks t, wakes flushers. */
void gfs_journal_complete(struct gfs_journal *j, struct gfs_jfile *jf, struct gfs_jticket *t,
                          int ok);

/* Encode a header for rec (crc covers header + data given by iov/iovcnt). */
void gfs_journal_encode(const struct gfs_jrec *rec, const struct iovec *data, int iovcnt,
                        uint8_t hdr[GFS_JREC_HDR]);

/* Make every record completed before the call durable. Called with *lock held;
 * drops it while syncing and takes it back. Concurrent callers share syncs
 * (group commit, above); j->syncs counts the rounds that synced. */
int gfs_journal_flush(struct gfs_journal *j, pthread_mutex_t *lock);

/* Describe file f as it is on disk now (fstat, the bytes around its tail).
 * Not under the lock only if nothing writes (at close). */
int gfs_journal_ident(const struct gfs_jfile *f, struct gfs_jfile_id *out);

/* Instead of gfs_journal_recover: take the files an index describes (ids
 * in order, each as on disk still, the directory holding exactly them),
 * cur_id the one to go on writing (0: none). 0 and files[i] = the i-th
 * file (its live count 0: the caller inserts the extents), or -ESTALE with
 * why (the journal is then untouched: recover it). Not under any lock. */
int gfs_journal_adopt(struct gfs_journal *j, const struct gfs_jfile_id *ids, uint32_t n,
                      uint64_t cur_id, uint64_t next_id, struct gfs_jfile **files, char *why,
                      size_t whylen);

/* Delete every journal file: all its records are in the store (after a
 * drain, when handing the lease over). Needs no write in flight. */
int gfs_journal_reset(struct gfs_journal *j);

/* The current file, if dead (no live extents, no pins, no write in flight),
 * becomes an ordinary full one: it gets its END record (made durable by the
 * next flush, so a copy that survives a power cut reads as ended, never as
 * torn) and the next write starts a new file. 1 if it did. */
int gfs_journal_retire(struct gfs_journal *j);

/* Delete files (other than the current) with no live extents and no pins.
 * Syncs first so that a superseding record is durable before what it
 * superseded disappears. retire_cur: gfs_journal_retire first, so the
 * current file goes too when dead: an idle volume gives all its journal
 * space back when the node needs it. Called with *lock held; may drop it. */
int gfs_journal_gc(struct gfs_journal *j, pthread_mutex_t *lock, int retire_cur);

#endif
