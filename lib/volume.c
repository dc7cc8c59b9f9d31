/*
 * volume.c — the public volume API: open (with crash recovery), close, the
 * I/O paths (pread, pwrite, trim, write_zeroes, prefetch, block_status),
 * flush, drain, resize and stats. The write path touches only the journal;
 * the read path goes newest journal record -> clean cache -> store.
 */
#include "volume_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <ftw.h>

#include "cleanup.h"
#include "readahead.h"
#include "segment.h"

int64_t gfs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gfs_timespec_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int64_t gfs_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mkdir_p(const char *path, mode_t mode)
{
    CLEANUP_FREE char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int check_io(glidefs_volume *v, uint64_t off, uint64_t len)
{
    if (off % GLIDEFS_SECTOR_SIZE || len % GLIDEFS_SECTOR_SIZE)
        return -EINVAL;
    if (off > v->size || len > v->size - off)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* store reads                                                                */

int gfs_volume_check_block(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                           const uint8_t *stored, size_t got, void *buf)
{
    int plain = gfs_volume_plain(v, e);
    if (gfs_seg_payload_check(stored, got, e->length, e->flags, e->crc, NULL) < 0 ||
        (plain && gfs_codec_sealed(v->codec)) ||
        (!plain && gfs_codec_decode_seq(v->codec, b, e->write_seq, e->flags & GFS_SEGF_CODED,
                                        stored, e->length, buf) < 0))
        return -EIO;
    if (plain && (const void *)stored != buf)
        memcpy(buf, stored, v->bs);
    return 0;
}

/* Block b as e names it, in segment (epoch, seq): resolved by the caller
 * under the lock, since reclaim renumbers segment indices. */
static int fetch_at(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                    uint64_t epoch, uint64_t seq, void *buf)
{
    pthread_mutex_lock(&v->lock);
    v->st.blocks_fetched++;
    pthread_mutex_unlock(&v->lock);
    char key[512];
    gfs_seg_key(key, sizeof key, gfs_origin_name(v, (uint32_t)(epoch >> GFS_ORIGIN_SHIFT)),
                epoch & GFS_EPOCH_MASK, seq);
    if (e->length == 0 || e->length > gfs_codec_max_stored(v->codec)) {
        gfs_err(&v->log, "%s: block %" PRIu64 " in %s has an impossible length", v->name, b, key);
        return -EIO;
    }
    /* plain blocks without a trailer land in buf directly; the rest go
     * through a scratch buffer */
    uint64_t span = gfs_seg_span(e->length, e->flags);
    int direct = gfs_volume_plain(v, e) && !(e->flags & GFS_SEGF_TRAILER);
    CLEANUP_FREE uint8_t *scratch = direct ? NULL : malloc(span);
    uint8_t *dst = direct ? buf : scratch;
    if (!dst)
        return -ENOMEM;
    size_t got = 0;
    int r = v->store->ops->get_range(v->store, key, e->offset, span, dst, &got);
    if (r == -ENOENT) {
        /* compacted away: the callers look for the block's new place (or
         * report a loss), so no error yet */
        gfs_debug(&v->log, "%s: block %" PRIu64 ": %s is gone from the store", v->name, b, key);
        return r;
    }
    if (r < 0) {
        gfs_err(&v->log, "%s: reading block %" PRIu64 " from %s failed: %s", v->name, b, key,
                glidefs_strerror(r));
        return r;
    }
    if (gfs_volume_check_block(v, b, e, dst, got, buf) < 0) {
        gfs_err(&v->log, "%s: block %" PRIu64 " in %s fails its checksum or authentication; "
                "not served", v->name, b, key);
        pthread_mutex_lock(&v->lock);
        v->st.checksum_errors++;
        pthread_mutex_unlock(&v->lock);
        memset(buf, 0, v->bs);
        return -EIO;
    }
    return 0;
}

int gfs_volume_fetch_block(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                           void *buf)
{
    if (e->seg == GFS_BM_NONE || e->seg == GFS_BM_HOLE) {
        memset(buf, 0, v->bs);
        return 0;
    }
    uint64_t epoch, seq;
    pthread_mutex_lock(&v->lock);
    int bad = e->seg >= v->bm.nsegs;
    epoch = bad ? 0 : v->bm.segs[e->seg].epoch;
    seq = bad ? 0 : v->bm.segs[e->seg].seq;
    pthread_mutex_unlock(&v->lock);
    if (bad) {
        gfs_err(&v->log, "%s: block %" PRIu64 " names no segment", v->name, b);
        return -EIO;
    }
    return fetch_at(v, b, e, epoch, seq, buf);
}

/* seg_id (may be NULL): the (epoch, seq) e->seg named when e was read. A
 * follower's full reload, and reclaim of deleted segments' rows, renumber
 * the segment table, so the same index may name another segment afterwards:
 * with seg_id the block is matched by segment identity and the current
 * index is recorded. Without, e must come from this thread's own view of
 * the map (the syncer's, which compaction and so reclaim never interrupts).
 * A renumbering during the pwrite dooms the claim (gfs_cache_renumber). */
static void cache_fill(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                       const uint64_t *seg_id, const void *buf)
{
    uint32_t gen;
    pthread_mutex_lock(&v->lock);
    struct gfs_bm_entry cur = gfs_bm_get(&v->bm, b);
    if ((!seg_id && cur.seg != e->seg) || cur.offset != e->offset || cur.seg == GFS_BM_NONE ||
        cur.seg == GFS_BM_HOLE || cur.seg >= v->bm.nsegs ||
        (seg_id && (v->bm.segs[cur.seg].epoch != seg_id[0] ||
                    v->bm.segs[cur.seg].seq != seg_id[1]))) {
        pthread_mutex_unlock(&v->lock);
        return;
    }
    /* a new slot needs room in the node's budget (which may evict ours or
     * another volume's coldest blocks); refilling one we hold does not */
    uint64_t reserved = 0;
    if (!gfs_cache_present(&v->cache, b)) {
        if (gfs_budget_cache_admit(&v->bmem, v->bs) < 0) {
            pthread_mutex_unlock(&v->lock);
            return; /* no room now: the block is simply not cached */
        }
        reserved = v->bs;
    }
    int64_t slot = gfs_cache_claim(&v->cache, b, UINT64_MAX, &gen);
    if (reserved)
        gfs_budget_cache_done(&v->bmem, reserved); /* the claim is charged now */
    pthread_mutex_unlock(&v->lock);
    if (slot < 0)
        return;
    ssize_t w = pwrite(v->cache.fd, buf, v->bs, (off_t)(b * v->bs));
    pthread_mutex_lock(&v->lock);
    if (!gfs_cache_commit(&v->cache, slot, gen, cur.seg, cur.offset, w == (ssize_t)v->bs))
        gfs_cache_stale_write(&v->cache, b);
    pthread_mutex_unlock(&v->lock);
}

void gfs_volume_cache_fill(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                           const void *buf)
{
    cache_fill(v, b, e, NULL, buf);
}

void gfs_volume_cache_fill_seg(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                               uint64_t epoch, uint64_t seq, const void *buf)
{
    uint64_t id[2] = {epoch, seq};
    cache_fill(v, b, e, id, buf);
}

/* ------------------------------------------------------------------------ */
/* read path                                                                  */

enum base_kind { BASE_ZERO, BASE_CACHE, BASE_STORE };

struct log_piece {
    uint32_t start, count; /* sectors in block */
    struct gfs_jfile *jf;  /* NULL: zeroes */
    uint64_t off;
};

/* After a GET found no object: does the map now point b somewhere else than
 * the entry (and segment epoch/seq) the read started from? */
static int block_moved(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                       uint64_t epoch, uint64_t seq)
{
    pthread_mutex_lock(&v->lock);
    struct gfs_bm_entry cur = gfs_bm_get(&v->bm, b);
    int moved = cur.seg != e->seg || cur.offset != e->offset || cur.seg == GFS_BM_NONE ||
                cur.seg == GFS_BM_HOLE || cur.seg >= v->bm.nsegs ||
                v->bm.segs[cur.seg].epoch != epoch || v->bm.segs[cur.seg].seq != seq;
    pthread_mutex_unlock(&v->lock);
    return moved;
}

/* Read sectors [s, s+n) of block b into dst. count_read: this is the first
 * block of a pread of read_len bytes (counted, and shown to read-ahead). */
static int read_block(glidefs_volume *v, uint64_t b, uint32_t s, uint32_t n, uint8_t *dst,
                      int count_stats, int count_read, uint64_t read_len)
{
    int reloads = 0;
    for (int attempt = 0;; attempt++) {
        struct log_piece stackp[8];
        struct log_piece *pieces = stackp;
        CLEANUP_FREE struct log_piece *heapp = NULL;
        uint32_t np = 0;
        int need_base = 1;
        enum base_kind bk = BASE_ZERO;
        struct gfs_bm_entry e;
        int64_t slot = -1;
        uint32_t gen = 0;

        pthread_mutex_lock(&v->lock);
        if (v->journal.failed) {
            /* a journal write failed: the log may hold a record we cannot trust */
            pthread_mutex_unlock(&v->lock);
            return -EIO;
        }
        if (count_read) {
            v->st.reads++;
            /* under the lock we hold anyway: no extra lock round per read */
            gfs_ra_note_read(v->ra, b * v->bs + (uint64_t)s * 512, read_len);
            count_read = 0;
        }
        if (count_stats)
            v->st.read_bytes += (uint64_t)n * 512;
        struct gfs_dirty_block *db;
        while ((db = gfs_dirty_get(&v->dirty, b)) && db->pending)
            pthread_cond_wait(&v->cond, &v->lock);
        if (db) {
            /* extents are sorted and disjoint: the ones overlapping [s, s+n)
             * are the run [i0, i1) found by a binary search */
            uint32_t i0 = gfs_dirty_find(db, s), i1 = i0;
            while (i1 < db->n && db->ext[i1].start < s + n)
                i1++;
            uint32_t cnt = i1 - i0, pos = s;
            if (cnt > 8) {
                heapp = malloc(cnt * sizeof *heapp);
                if (!heapp) {
                    pthread_mutex_unlock(&v->lock);
                    return -ENOMEM;
                }
                pieces = heapp;
            }
            need_base = 0;
            for (uint32_t i = i0; i < i1; i++) {
                const struct gfs_ext *x = &db->ext[i];
                uint32_t lo = x->start > s ? x->start : s;
                uint32_t hi = x->start + x->count < s + n ? x->start + x->count : s + n;
                if (lo > pos)
                    need_base = 1; /* a gap before this extent */
                pos = hi;
                pieces[np].start = lo;
                pieces[np].count = hi - lo;
                /* zero extents need no file: leave jf NULL in the plan */
                int zero = x->flags & GFS_EXT_ZERO;
                pieces[np].jf = zero ? NULL : x->jf;
                pieces[np].off = zero ? 0 : x->data_off + (uint64_t)(lo - x->start) * 512;
                if (!zero)
                    __atomic_add_fetch(&x->jf->pins, 1, __ATOMIC_RELAXED);
                np++;
            }
            if (pos < s + n)
                need_base = 1;
        }
        e = gfs_bm_get(&v->bm, b);
        uint64_t seg_epoch = 0, seg_seq = 0;
        if (need_base && e.seg != GFS_BM_NONE && e.seg != GFS_BM_HOLE) {
            slot = gfs_cache_lookup(&v->cache, b, e.seg, e.offset, &gen);
            bk = slot >= 0 ? BASE_CACHE : BASE_STORE;
            if (bk == BASE_STORE && e.seg < v->bm.nsegs) {
                seg_epoch = v->bm.segs[e.seg].epoch;
                seg_seq = v->bm.segs[e.seg].seq;
            }
            if (count_stats) {
                if (slot >= 0)
                    v->st.cache_hits++;
                else
                    v->st.cache_misses++;
            }
        } else if (count_stats) {
            v->st.cache_hits++;
        }
        pthread_mutex_unlock(&v->lock);

        int err = 0, stale = 0;
        if (need_base) {
            if (bk == BASE_ZERO) {
                memset(dst, 0, (size_t)n * 512);
            } else if (bk == BASE_CACHE) {
                ssize_t r = pread(v->cache.fd, dst, (size_t)n * 512,
                                  (off_t)(b * v->bs + (uint64_t)s * 512));
                if (r != (ssize_t)n * 512)
                    stale = 1;
            } else if (attempt < 4 && gfs_ra_wait(v->ra, b)) {
                stale = 1; /* read-ahead had it: look in the cache again */
            } else {
                CLEANUP_FREE uint8_t *blk = malloc(v->bs);
                if (!blk)
                    err = -ENOMEM;
                else if (seg_epoch == 0 && seg_seq == 0) {
                    gfs_err(&v->log, "%s: block %" PRIu64 " names no segment", v->name, b);
                    err = -EIO;
                } else {
                    err = fetch_at(v, b, &e, seg_epoch, seg_seq, blk);
                }
                if (err == -ENOENT && reloads < 3 &&
                    !__atomic_load_n(&v->owner, __ATOMIC_RELAXED)) {
                    /* the writer compacted that segment away: its newer
                     * segments say where the block went (one LIST and their
                     * headers); reload everything only if they do not */
                    reloads++;
                    int rr = gfs_volume_catch_up(v);
                    if (rr == 0 && !block_moved(v, b, &e, seg_epoch, seg_seq))
                        rr = gfs_volume_reload(v);
                    err = rr < 0 ? rr : 0;
                    stale = 1;
                } else if (err == -ENOENT && block_moved(v, b, &e, seg_epoch, seg_seq)) {
                    /* our compactor moved it and deleted the old copy while
                     * this GET was slow (longer than grace_ms): look again */
                    err = 0;
                    stale = 1;
                } else if (err == -ENOENT) {
                    gfs_err(&v->log, "%s: block %" PRIu64 "'s segment is missing from the store",
                            v->name, b);
                    err = -EIO;
                }
                if (!err && !stale) {
                    memcpy(dst, blk + (size_t)s * 512, (size_t)n * 512);
                    gfs_volume_cache_fill_seg(v, b, &e, seg_epoch, seg_seq, blk);
                }
            }
        }
        for (uint32_t i = 0; i < np && !err; i++) {
            uint8_t *p = dst + (size_t)(pieces[i].start - s) * 512;
            size_t len = (size_t)pieces[i].count * 512;
            if (!pieces[i].jf) {
                memset(p, 0, len);
            } else if (pread(pieces[i].jf->fd, p, len, (off_t)pieces[i].off) != (ssize_t)len) {
                err = -EIO;
            }
        }
        for (uint32_t i = 0; i < np; i++)
            if (pieces[i].jf)
                __atomic_sub_fetch(&pieces[i].jf->pins, 1, __ATOMIC_RELEASE);
        if (bk == BASE_CACHE && !stale && !gfs_cache_still(&v->cache, slot, b, gen))
            stale = 1;
        if (err)
            return err;
        if (!stale)
            return 0;
        if (attempt > 100)
            return -EIO;
    }
}

GLIDEFS_API int glidefs_pread(glidefs_volume *v, void *buf, size_t len, uint64_t offset)
{
    int r = check_io(v, offset, len);
    if (r < 0)
        return r;
    uint8_t *dst = buf;
    uint64_t pos = offset, end = offset + len;
    while (pos < end) {
        uint64_t b = pos / v->bs;
        uint32_t s = (uint32_t)((pos % v->bs) / 512);
        uint64_t chunk = v->bs - pos % v->bs;
        if (chunk > end - pos)
            chunk = end - pos;
        r = read_block(v, b, s, (uint32_t)(chunk / 512), dst, 1, pos == offset, len);
        if (r < 0)
            return r;
        dst += chunk;
        pos += chunk;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* write path                                                                 */

/* Room in the journal for a record of reclen bytes. A new file, when one is
 * needed, must first be admitted by the node's budget: the dirty share of
 * cache.disk_size is the node's, so a writer may wait for other volumes'
 * uploads (the budget has their syncers hurry) as well as for its own.
 * Back-pressure, never failure. Lock held; dropped while waiting.
 * *reserved: bytes to hand back (gfs_budget_journal_done) once
 * gfs_journal_reserve has charged the file, or failed. */
static int journal_room(glidefs_volume *v, uint64_t reclen, uint64_t *reserved)
{
    int waited = 0, waiting = 0;
    *reserved = 0;
    for (;;) {
        int r = v->read_only ? -EROFS /* the lease went away while we waited */
                : v->stop ? -ESHUTDOWN : 0;
        uint64_t need = 0, gen = 0;
        if (r == 0) {
            v->journal.file_size = gfs_budget_jfile_size(v->bud);
            need = gfs_journal_need(&v->journal, reclen);
        }
        if (r < 0 || need == 0) {
            gfs_budget_journal_cancel(&v->bmem, &waiting);
            return r;
        }
        if (gfs_budget_journal_admit(&v->bmem, need, &waiting, &gen) == 0) {
            *reserved = need;
            return 0;
        }
        /* Bytes on disk include dead files the syncer has yet to delete and
         * live data it has yet to upload: make it hurry either way. */
        if (!waited)
            v->st.writes_waited++;
        waited = 1;
        v->force++;
        pthread_cond_broadcast(&v->syncer_cond);
        pthread_mutex_unlock(&v->lock);
        gfs_budget_wait(v->bud, gen, 50);
        pthread_mutex_lock(&v->lock);
        v->force--;
    }
}

static int submit(glidefs_volume *v, uint32_t type, const void *data, uint64_t len,
                  uint64_t offset, unsigned flags)
{
    int r = check_io(v, offset, len);
    if (r < 0)
        return r;
    if (__atomic_load_n(&v->read_only, __ATOMIC_RELAXED))
        return -EROFS; /* fast path; checked again under the lock */
    if (len == 0)
        return flags & GLIDEFS_WRITE_FUA ? glidefs_flush(v) : 0;
    if (type == GFS_JREC_WRITE && len > UINT32_MAX - GFS_JREC_HDR)
        return -EINVAL;
    /* zero records are split so one record's length fits its 32-bit field */
    if (type == GFS_JREC_ZERO && len > (1u << 30)) {
        for (uint64_t p = 0; p < len; p += 1u << 30) {
            uint64_t l = len - p < (1u << 30) ? len - p : (1u << 30);
            r = submit(v, type, NULL, l, offset + p, 0);
            if (r < 0)
                return r;
        }
        return flags & GLIDEFS_WRITE_FUA ? glidefs_flush(v) : 0;
    }
    uint64_t data_len = type == GFS_JREC_WRITE ? len : 0;
    uint64_t reclen = GFS_JREC_HDR + data_len;
    struct gfs_jticket ticket;
    struct gfs_jfile *jf;
    uint64_t joff, seq;
    int64_t now = gfs_now_ms();
    uint64_t first_b = offset / v->bs, last_b = (offset + len - 1) / v->bs;

    pthread_mutex_lock(&v->lock);
    if (v->read_only) {
        pthread_mutex_unlock(&v->lock);
        return -EROFS;
    }
    if (v->deferred_error && v->journal.failed) {
        pthread_mutex_unlock(&v->lock);
        return -EIO;
    }
    uint64_t jres = 0;
    r = journal_room(v, reclen, &jres);
    if (r == 0)
        r = gfs_journal_reserve(&v->journal, reclen, &jf, &joff, &ticket);
    if (jres)
        gfs_budget_journal_done(&v->bmem, jres); /* the new file is charged (or failed) */
    if ((r == -ENOSPC) != v->disk_full) {
        /* say it once when it starts and once when it ends: the client sees
         * only ENOSPC, the operator must learn which disk is full */
        v->disk_full = r == -ENOSPC;
        if (v->disk_full)
            gfs_err(&v->log, "%s: the cache disk is full: no room for the journal in %s; "
                    "writes fail with ENOSPC until space is freed (nothing written is lost)",
                    v->name, v->dir);
        else
            gfs_info(&v->log, "%s: the cache disk has room again: writes accepted", v->name);
    }
    if (r < 0) {
        pthread_mutex_unlock(&v->lock);
        return r;
    }
    seq = v->next_seq++;
    uint64_t npending = 0;
    for (uint64_t b = first_b; b <= last_b; b++) {
        uint64_t bstart = b * v->bs;
        uint64_t lo = offset > bstart ? offset : bstart;
        uint64_t hi = offset + len < bstart + v->bs ? offset + len : bstart + v->bs;
        struct gfs_dirty_block *db = gfs_dirty_touch(&v->dirty, b, now);
        struct gfs_ext e = {
            .start = (uint32_t)((lo - bstart) / 512),
            .count = (uint32_t)((hi - lo) / 512),
            .flags = type == GFS_JREC_ZERO ? GFS_EXT_ZERO : 0,
            .seq = seq,
            .jf = jf,
            .data_off = type == GFS_JREC_WRITE ? joff + GFS_JREC_HDR + (lo - offset) : 0,
        };
        if (!db || gfs_dirty_insert(&v->dirty, db, &e) < 0) {
            /* Out of memory with the record reserved: the index is now behind
             * the log, so stop accepting writes rather than diverge. */
            v->deferred_error = -ENOMEM;
            r = -ENOMEM;
            break;
        }
        db->pending++;
        db->last_ms = now;
        npending++;
    }
    pthread_mutex_unlock(&v->lock);

    int ok = 0;
    if (r == 0) {
        struct gfs_jrec rec = {type, seq, offset, (uint32_t)len, (uint32_t)data_len};
        uint8_t hdr[GFS_JREC_HDR];
        struct iovec iov[2] = {{hdr, GFS_JREC_HDR}, {(void *)data, (size_t)data_len}};
        gfs_journal_encode(&rec, &iov[1], data_len ? 1 : 0, hdr);
        size_t want = (size_t)reclen, done = 0;
        int iovcnt = data_len ? 2 : 1;
        ok = 1;
        while (done < want) {
            ssize_t w = pwritev(jf->fd, iov, iovcnt, (off_t)(joff + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                ok = 0;
                r = -EIO;
                break;
            }
            done += (size_t)w;
            /* advance the iovecs past what was written (rare: short write) */
            size_t adv = (size_t)w;
            while (adv && iovcnt) {
                if (adv >= iov[0].iov_len) {
                    adv -= iov[0].iov_len;
                    iov[0] = iov[1];
                    iovcnt--;
                } else {
                    iov[0].iov_base = (uint8_t *)iov[0].iov_base + adv;
                    iov[0].iov_len -= adv;
                    adv = 0;
                }
            }
        }
    }

    pthread_mutex_lock(&v->lock);
    gfs_journal_complete(&v->journal, jf, &ticket, ok);
    for (uint64_t b = first_b; b < first_b + npending; b++) {
        struct gfs_dirty_block *db = gfs_dirty_get(&v->dirty, b);
        if (db && db->pending)
            db->pending--;
    }
    if (!ok) {
        gfs_err(&v->log, "%s: journal write failed; the volume refuses further writes", v->name);
        if (!v->deferred_error)
            v->deferred_error = r ? r : -EIO;
    } else if (type == GFS_JREC_WRITE) {
        v->st.writes++;
        v->st.write_bytes += len;
    } else {
        v->st.trims++;
        v->st.trim_bytes += len;
    }
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    if (!ok)
        return r ? r : -EIO;
    if (flags & GLIDEFS_WRITE_FUA)
        return glidefs_flush(v);
    return 0;
}

GLIDEFS_API int glidefs_pwrite(glidefs_volume *v, const void *buf, size_t len, uint64_t offset,
                               unsigned flags)
{
    return submit(v, GFS_JREC_WRITE, buf, len, offset, flags);
}

GLIDEFS_API int glidefs_trim(glidefs_volume *v, uint64_t offset, uint64_t len, unsigned flags)
{
    return submit(v, GFS_JREC_ZERO, NULL, len, offset, flags);
}

GLIDEFS_API int glidefs_write_zeroes(glidefs_volume *v, uint64_t offset, uint64_t len,
                                     unsigned flags)
{
    return submit(v, GFS_JREC_ZERO, NULL, len, offset, flags);
}

GLIDEFS_API int glidefs_flush(glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    int r = gfs_journal_flush(&v->journal, &v->lock);
    v->st.flushes++;
    pthread_mutex_unlock(&v->lock);
    return r;
}

#define PREFETCH_AHEAD 64 /* blocks queued for read-ahead ahead of the prefetch loop */

GLIDEFS_API int glidefs_prefetch(glidefs_volume *v, uint64_t offset, uint64_t len)
{
    int r = check_io(v, offset, len);
    if (r < 0)
        return r;
    CLEANUP_FREE uint8_t *blk = malloc(v->bs);
    if (!blk)
        return -ENOMEM;
    uint64_t last = len ? (offset + len - 1) / v->bs : 0, queued_to = offset / v->bs;
    for (uint64_t b = offset / v->bs; len && b <= last; b++) {
        if (queued_to < b)
            queued_to = b;
        uint64_t end = b + PREFETCH_AHEAD < last + 1 ? b + PREFETCH_AHEAD : last + 1;
        if (queued_to < end && queued_to <= b + PREFETCH_AHEAD / 2) {
            /* the read-ahead workers fetch what is missing, runs of a
             * segment in one GET, several at once, ahead of us (as far as
             * its queue takes: the rest on a later turn) */
            pthread_mutex_lock(&v->lock);
            queued_to = gfs_ra_queue_range(v->ra, queued_to, end);
            pthread_mutex_unlock(&v->lock);
        }
        /* a whole-block read fills the cache as a side effect (or waits
         * for the fetch queued above) */
        uint32_t n = v->spb;
        if ((b + 1) * v->bs > v->size)
            n = (uint32_t)((v->size - b * v->bs) / 512);
        r = read_block(v, b, 0, n, blk, 0, 0, 0);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* block status                                                               */

/* Is sector k of block b a hole? Called under the lock. */
static int sector_is_hole(glidefs_volume *v, const struct gfs_dirty_block *db, uint64_t b,
                          uint32_t k)
{
    if (db) {
        uint32_t i = gfs_dirty_find(db, k);
        if (i < db->n && db->ext[i].start <= k)
            return (db->ext[i].flags & GFS_EXT_ZERO) != 0;
    }
    struct gfs_bm_entry e = gfs_bm_get(&v->bm, b);
    return e.seg == GFS_BM_NONE || e.seg == GFS_BM_HOLE;
}

GLIDEFS_API int64_t glidefs_block_status(glidefs_volume *v, uint64_t offset, uint64_t len,
                                         int *is_hole)
{
    int r = check_io(v, offset, len);
    if (r < 0)
        return r;
    if (len == 0)
        return -EINVAL;
    SCOPED_LOCK(&v->lock);
    uint64_t pos = offset, end = offset + len;
    int first = -1;
    while (pos < end) {
        uint64_t b = pos / v->bs;
        const struct gfs_dirty_block *db = gfs_dirty_get(&v->dirty, b);
        if (!db) {
            /* whole-block answer */
            struct gfs_bm_entry e = gfs_bm_get(&v->bm, b);
            int h = e.seg == GFS_BM_NONE || e.seg == GFS_BM_HOLE;
            if (first < 0)
                first = h;
            else if (h != first)
                break;
            pos = (b + 1) * v->bs;
            continue;
        }
        uint32_t k = (uint32_t)((pos % v->bs) / 512);
        int h = sector_is_hole(v, db, b, k);
        if (first < 0)
            first = h;
        else if (h != first)
            break;
        pos += 512;
    }
    if (pos > end)
        pos = end;
    *is_hole = first;
    return (int64_t)(pos - offset);
}

/* ------------------------------------------------------------------------ */
/* drain                                                                      */

static int dirty_upto(glidefs_volume *v, uint64_t target)
{
    for (struct gfs_dirty_block *db = v->dirty.head; db; db = db->next)
        for (uint32_t i = 0; i < db->n; i++)
            if (db->ext[i].seq <= target)
                return 1;
    return 0;
}

GLIDEFS_API int glidefs_drain(glidefs_volume *v, int64_t timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&v->lock);
    if (!v->owner) {
        /* not the writer: nothing of ours can be uploaded (fenced data stays local) */
        int dirty = v->dirty.nblocks > 0;
        pthread_mutex_unlock(&v->lock);
        return dirty ? -EROFS : 0;
    }
    uint64_t target = v->next_seq - 1;
    int r = 0;
    v->force++;
    pthread_cond_broadcast(&v->syncer_cond);
    while (dirty_upto(v, target)) {
        if (v->stop || (v->journal.failed && v->deferred_error)) {
            r = -EIO;
            break;
        }
        if (v->fenced) {
            r = -EROFS;
            break;
        }
        if (timeout_ms >= 0) {
            if (pthread_cond_timedwait(&v->cond, &v->lock, &deadline) == ETIMEDOUT &&
                dirty_upto(v, target)) {
                r = -ETIMEDOUT;
                break;
            }
        } else {
            pthread_cond_wait(&v->cond, &v->lock);
        }
    }
    v->force--;
    pthread_mutex_unlock(&v->lock);
    if (r < 0)
        return r;
    return gfs_volume_write_manifest(v);
}

/* ------------------------------------------------------------------------ */
/* open / close                                                               */

struct replay_ctx {
    glidefs_volume *v;
    int64_t now;
    int stale;          /* the journal's epoch is over: count records, apply none */
    uint64_t records;
};

static int replay_record(void *arg, const struct gfs_jrec *rec, struct gfs_jfile *jf,
                         uint64_t data_off)
{
    struct replay_ctx *c = arg;
    glidefs_volume *v = c->v;
    c->records++;
    if (c->stale)
        return 0; /* seqs of another epoch say nothing about what the store holds */
    if (rec->offset > v->size || rec->length > v->size - rec->offset) {
        gfs_warn(&v->log, "%s: journal record seq %" PRIu64 " lies past the end of the volume; ignored",
                 v->name, rec->seq);
        return 0;
    }
    uint64_t first_b = rec->offset / v->bs, last_b = (rec->offset + rec->length - 1) / v->bs;
    for (uint64_t b = first_b; b <= last_b; b++) {
        /* already folded into what the store holds for this block? */
        struct gfs_bm_entry e = gfs_bm_get(&v->bm, b);
        if (e.seg != GFS_BM_NONE && e.write_seq >= rec->seq)
            continue;
        uint64_t bstart = b * v->bs;
        uint64_t lo = rec->offset > bstart ? rec->offset : bstart;
        uint64_t hi = rec->offset + rec->length < bstart + v->bs ? rec->offset + rec->length
                                                                 : bstart + v->bs;
        struct gfs_dirty_block *db = gfs_dirty_touch(&v->dirty, b, c->now);
        if (!db)
            return -ENOMEM;
        struct gfs_ext x = {
            .start = (uint32_t)((lo - bstart) / 512),
            .count = (uint32_t)((hi - lo) / 512),
            .flags = rec->type == GFS_JREC_ZERO ? GFS_EXT_ZERO : 0,
            .seq = rec->seq,
            .jf = jf,
            .data_off = rec->type == GFS_JREC_WRITE ? data_off + (lo - rec->offset) : 0,
        };
        int r = gfs_dirty_insert(&v->dirty, db, &x);
        if (r < 0)
            return r;
    }
    return 0;
}

struct du_ctx {
    uint64_t bytes;
};

static __thread struct du_ctx *du_cur; /* nftw has no user argument */

static int du_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)p;
    (void)ftw;
    if (flag == FTW_F)
        du_cur->bytes += (uint64_t)sb->st_size;
    return 0;
}

/* Bytes of journal data kept aside in <dir>/fenced-* after losing the lease. */
static uint64_t fenced_dirs_bytes(glidefs_volume *v)
{
    DIR *d = opendir(v->dir);
    if (!d)
        return 0;
    struct du_ctx c = {0};
    du_cur = &c;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "fenced-", 7) != 0)
            continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", v->dir, de->d_name);
        nftw(p, du_cb, 8, FTW_PHYS);
    }
    closedir(d);
    du_cur = NULL;
    return c.bytes;
}

static void journal_acct(void *arg, int64_t delta)
{
    glidefs_volume *v = arg;
    gfs_budget_journal_add(&v->bmem, delta);
}

/* The journal in <dir>/journal, its files charged to the node's budget. */
static int journal_open(glidefs_volume *v, const char *path)
{
    int r = gfs_journal_init(&v->journal, path, gfs_budget_jfile_size(v->bud), &v->log);
    v->journal.acct = journal_acct;
    v->journal.acct_arg = v;
    return r;
}

static void cache_acct(void *arg, int64_t delta)
{
    glidefs_volume *v = arg;
    gfs_budget_cache_add(&v->bmem, delta);
}

/* The budget evicts from this volume (lock held: by the caller if the budget
 * acts for this volume, else taken with trylock by the budget). */
static uint64_t budget_evict(void *arg, uint64_t bytes)
{
    glidefs_volume *v = arg;
    uint64_t have = v->cache.bytes;
    return gfs_cache_shrink(&v->cache, have > bytes ? have - bytes : 0);
}

/* Another volume waits for journal room: upload now (gfs_budget_pressure). */
static void budget_kick(void *arg)
{
    glidefs_volume *v = arg;
    pthread_cond_broadcast(&v->syncer_cond); /* no lock: it also wakes once a second */
}

static int set_journal_aside(glidefs_volume *v, uint64_t old_epoch)
{
    char from[4200], to[4300];
    snprintf(from, sizeof from, "%s/journal", v->dir);
    snprintf(to, sizeof to, "%s/fenced-%016" PRIx64 "-%" PRId64, v->dir, old_epoch, gfs_wall_ms());
    char who[200];
    gfs_lease_who(&v->lease, who, sizeof who);
    gfs_err(&v->log, "%s: the journal (%" PRIu64 " bytes) was written under epoch %" PRIu64
            " by a writer the lease no longer names (it is now epoch %" PRIu64 " of %s): kept "
            "aside in %s, not uploaded", v->name, v->journal.bytes, old_epoch, v->lease.epoch,
            who, to);
    gfs_dirty_free(&v->dirty);
    gfs_dirty_init(&v->dirty);
    gfs_journal_destroy(&v->journal);
    if (rename(from, to) < 0)
        return -errno;
    int dfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return journal_open(v, from);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

GLIDEFS_API int glidefs_fenced_discard(glidefs_volume *v)
{
    DIR *d = opendir(v->dir);
    if (!d)
        return -errno;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "fenced-", 7) != 0)
            continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", v->dir, de->d_name);
        if (nftw(p, rm_cb, 8, FTW_DEPTH | FTW_PHYS) < 0 && !r)
            r = -errno;
    }
    closedir(d);
    pthread_mutex_lock(&v->lock);
    v->fenced_bytes = 0;
    pthread_mutex_unlock(&v->lock);
    gfs_info(&v->log, "%s: discarded the journal data kept aside after losing the lease", v->name);
    return r;
}

static void volume_free(glidefs_volume *v)
{
    gfs_ra_destroy(v->ra);
    v->ra = NULL;
    if (v->created_dir && v->failed_open && v->dir) {
        /* nothing of a volume that does not exist stays behind */
        char p[4200];
        snprintf(p, sizeof p, "%s/lock", v->dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/writer", v->dir);
        unlink(p);
        rmdir(v->dir);
    }
    /* under the lock: the budget may be evicting from it for another volume */
    pthread_mutex_lock(&v->lock);
    gfs_cache_close(&v->cache);
    pthread_mutex_unlock(&v->lock);
    gfs_dirty_free(&v->dirty); /* before the journal: extents point at its files */
    gfs_journal_destroy(&v->journal);
    /* its share goes back to the node's other volumes */
    gfs_budget_leave(&v->bmem);
    gfs_budget_unref(v->bud);
    gfs_bm_free(&v->bm);
    gfs_objstore_close(v->store);
    gfs_objstore_close(v->probe_store);
    if (v->wrec_fd >= 0)
        close(v->wrec_fd);
    gfs_codec_free(v->codec);
    gfs_snapshots_free(v);
    for (size_t i = 0; i < v->ngarbage; i++)
        free(v->garbage[i]);
    free(v->garbage);
    if (v->lockfd >= 0)
        close(v->lockfd);
    pthread_mutex_destroy(&v->lock);
    pthread_mutex_destroy(&v->manifest_lock);
    pthread_mutex_destroy(&v->own_lock);
    pthread_cond_destroy(&v->own_cond);
    pthread_cond_destroy(&v->cond);
    pthread_cond_destroy(&v->syncer_cond);
    free(v->dir);
    free(v);
}

static int volume_setup(glidefs_volume *v, const glidefs_config *cfg, unsigned flags,
                        uint64_t create_size)
{
    char err[256] = "";
    int r = mkdir_p(cfg->cache_dir, 0700);
    if (r < 0) {
        gfs_err(&v->log, "cannot create cache dir %s: %s", cfg->cache_dir, strerror(-r));
        return r;
    }
    /* the writer identity of this cache dir (identity.h) */
    r = gfs_instance_get(cfg->cache_dir, &v->log, v->instance);
    if (r < 0)
        return r;
    if (asprintf(&v->dir, "%s/%s", cfg->cache_dir, v->name) < 0) {
        v->dir = NULL;
        return -ENOMEM;
    }
    if (mkdir(v->dir, 0700) == 0)
        v->created_dir = 1;
    else if (errno != EEXIST)
        return -errno;
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", v->dir);
    v->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (v->lockfd < 0)
        return -errno;
    if (flock(v->lockfd, LOCK_EX | LOCK_NB) < 0) {
        gfs_err(&v->log, "%s: cache dir %s is in use by another process", v->name, v->dir);
        return errno == EWOULDBLOCK ? -EBUSY : -errno;
    }
    r = gfs_objstore_open(cfg, &v->log, &v->store, err, sizeof err);
    if (r < 0) {
        gfs_err(&v->log, "%s: %s", v->name, err);
        return r;
    }
    if (!v->ro_forced) {
        /* the conditional-write probe before a takeover gets its own handle */
        r = gfs_objstore_open(cfg, &v->log, &v->probe_store, err, sizeof err);
        if (r < 0) {
            gfs_err(&v->log, "%s: %s", v->name, err);
            return r;
        }
    }
    /* what this cache dir last wrote into the lease (made at the first write) */
    r = gfs_wrec_open(v->dir, 0, &v->wrec_fd);
    if (r == 0 && gfs_wrec_read(v->wrec_fd, &v->wrec) == 0)
        v->wrec_valid = 1;
    else if (r < 0 && r != -ENOENT)
        return r;
    v->wrec_cur_landed = 0; /* until the lease shows it did */
    r = gfs_volmeta_load(v, cfg, !!(flags & GLIDEFS_OPEN_CREATE), !!(flags & GLIDEFS_OPEN_EXCLUSIVE),
                         create_size);
    if (r < 0)
        return r;
    v->bs = v->meta.block_size;
    v->spb = v->bs / 512;
    /* the segment table counts a segment's bytes in 32 bits (blockmap.h) */
    if ((uint64_t)v->blocks_per_batch * v->bs > (UINT64_C(1) << 31))
        v->blocks_per_batch = (uint32_t)((UINT64_C(1) << 31) / v->bs);
    v->size = v->meta.size;
    r = gfs_bm_init(&v->bm, (v->size + v->bs - 1) / v->bs);
    if (r < 0)
        return r;
    /* the lease's fences decide which segments count, so read it first */
    r = gfs_lease_read(v->store, v->name, &v->lease);
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot read the lease: %s", v->name, glidefs_strerror(r));
        return r;
    }
    r = gfs_volume_load_map(v);
    if (r < 0)
        return r;
    /* the epoch the journal's records were written under */
    r = gfs_own_state_read(v, &v->local_epoch);
    if (r < 0)
        return r;
    /* Take the lease (or attach read-only) before the journal is looked at:
     * leftover dirty data is uploaded only by the lease holder of its epoch. */
    r = gfs_own_acquire(v, !(flags & GLIDEFS_OPEN_READONLY));
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot take the write lease: %s", v->name, glidefs_strerror(r));
        return r;
    }

    /* journal: its file size and how much of it may be dirty are the node
     * budget's (budget.h) */
    snprintf(path, sizeof path, "%s/journal", v->dir);
    r = journal_open(v, path);
    if (r < 0)
        return r;
    uint64_t local_epoch = v->local_epoch;
    /* Is the journal ours to continue? Only if this cache dir resumed the
     * lease it held when the journal was written (or reads it read-only
     * while still holding it): ownership.c decided. */
    int ours = v->journal_ours;
    struct replay_ctx rc = {v, gfs_now_ms(), !ours, 0};
    uint64_t max_seq = 0;
    r = gfs_journal_recover(&v->journal, replay_record, &rc, &max_seq);
    if (r < 0) {
        gfs_err(&v->log, "%s: journal recovery failed: %s", v->name, strerror(-r));
        return r;
    }
    if (rc.stale && rc.records && v->ro_forced) {
        /* a read-only open never moves anything aside */
        gfs_warn(&v->log, "%s: ignoring a journal of ended epoch %" PRIu64 " (read-only open)",
                 v->name, local_epoch);
    } else if (rc.stale && rc.records) {
        /* Written under an epoch that is over: another writer may have stored
         * newer data since, so merging would be wrong. Keep it aside. */
        r = set_journal_aside(v, local_epoch);
        if (r < 0)
            return r;
    } else if (v->dirty.nblocks) {
        gfs_info(&v->log, "%s: recovered %" PRIu64 " dirty blocks from the journal", v->name,
                 v->dirty.nblocks);
    }
    if (v->owner) {
        r = gfs_own_state_write(v);
        if (r < 0)
            return r;
    }
    v->fenced_bytes = fenced_dirs_bytes(v);
    if (max_seq >= v->next_seq)
        v->next_seq = max_seq + 1;
    if (v->next_seq == 0)
        v->next_seq = 1;

    snprintf(path, sizeof path, "%s/cache.dat", v->dir);
    /* room for the whole budget: a volume alone may use all of it */
    uint64_t slots = gfs_budget_total(v->bud) / v->bs;
    if (slots > UINT32_MAX)
        slots = UINT32_MAX;
    /* under the lock: the budget may look at it from another volume's thread */
    pthread_mutex_lock(&v->lock);
    r = gfs_cache_open(&v->cache, path, v->bs, (uint32_t)slots);
    v->cache.acct = cache_acct;
    v->cache.acct_arg = v;
    pthread_mutex_unlock(&v->lock);
    if (r < 0)
        return r;
    return 0;
}

GLIDEFS_API int glidefs_volume_open(const glidefs_config *cfg, const char *name,
                                    uint64_t create_size, unsigned flags, glidefs_volume **out)
{
    if (!cfg || !name || !out)
        return -EINVAL;
    *out = NULL;
    if (!glidefs_name_valid(name))
        return -EINVAL;
    if ((flags & GLIDEFS_OPEN_CREATE) &&
        (create_size == 0 || create_size % 512 || create_size > GLIDEFS_MAX_VOLUME_SIZE))
        return -EINVAL;
    if (!cfg->cache_dir || !cfg->storage_url)
        return -EINVAL;
    glidefs_volume *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    snprintf(v->name, sizeof v->name, "%s", name);
    v->lockfd = -1;
    v->log = cfg->log;
    v->journal.dirfd = -1;
    v->cache.fd = -1;
    pthread_mutex_init(&v->lock, NULL);
    pthread_mutex_init(&v->manifest_lock, NULL);
    pthread_mutex_init(&v->own_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&v->cond, NULL);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->syncer_cond, &ca);
    pthread_cond_init(&v->own_cond, &ca);
    pthread_condattr_destroy(&ca);
    v->blocks_per_batch = cfg->blocks_per_batch > 0 ? (uint32_t)cfg->blocks_per_batch : 25;
    v->upload_parallel = cfg->upload_parallel > 0 ? (uint32_t)cfg->upload_parallel : 4;
    v->drain_parallel = cfg->storage_max_connections > 0 ? (uint32_t)cfg->storage_max_connections : 8;
    v->sync_delay_ms = cfg->sync_delay_ms >= 0 ? cfg->sync_delay_ms : 8000;
    v->max_dirty_age_ms = cfg->max_dirty_age_ms > 0 ? cfg->max_dirty_age_ms : 60000;
    if (v->max_dirty_age_ms < v->sync_delay_ms)
        v->max_dirty_age_ms = v->sync_delay_ms;
    v->ro_forced = !!(flags & GLIDEFS_OPEN_READONLY);
    v->read_only = 1; /* until the lease is ours */
    v->next_seq = 1;
    snprintf(v->node_id, sizeof v->node_id, "%s", cfg->node_id ? cfg->node_id : "node");
    snprintf(v->node_id_legacy, sizeof v->node_id_legacy, "%s",
             cfg->node_id_legacy ? cfg->node_id_legacy : "");
    v->wrec_fd = -1;
    v->unsafe_lax = cfg->storage_unsafe_lax_takeover;
    v->probe_state = __atomic_load_n(&cfg->probe_state, __ATOMIC_ACQUIRE);
    v->probe_wall_ms = __atomic_load_n(&cfg->probe_wall_ms, __ATOMIC_ACQUIRE);
    v->lease_timeout_ms = cfg->lease_timeout_ms > 0 ? cfg->lease_timeout_ms : 30000;
    v->comp_min_live_pct = cfg->compaction_min_live_pct;
    v->comp_interval_ms = (int64_t)cfg->compaction_interval_s * 1000;
    v->comp_rate_bps = (uint64_t)(cfg->compaction_rate_mb_s > 0 ? cfg->compaction_rate_mb_s : 32) << 20;
    v->comp_grace_ms = cfg->compaction_grace_ms;
    v->comp_max_stored_pct = cfg->compaction_max_stored_pct;
    v->fenced_hold_ms = (int64_t)cfg->compaction_fenced_hold_s * 1000;
    v->comp_keep_manifests = cfg->compaction_keep_manifests > 0 ? cfg->compaction_keep_manifests : 2;
    v->opened_ms = gfs_now_ms();
    v->comp_next_ms = v->opened_ms + v->comp_interval_ms;
    v->cost_gb_month = cfg->cost_storage_gb_month;
    v->cost_put_1000 = cfg->cost_put_per_1000;
    v->cost_get_1000 = cfg->cost_get_per_1000;

    /* the node's budget: the config's (every volume opened with it shares
     * it), or this volume's own for a config made without one */
    struct gfs_budget *bud = cfg->budget;
    if (bud) {
        gfs_budget_ref(bud);
    } else if (gfs_budget_new(&bud) < 0) {
        volume_free(v);
        return -ENOMEM;
    }
    v->bud = bud;
    v->bmem.lock = &v->lock;
    v->bmem.evict = budget_evict;
    v->bmem.kick = budget_kick;
    v->bmem.arg = v;
    gfs_budget_join(bud, &v->bmem, cfg->cache_disk_size ? cfg->cache_disk_size : (100ull << 30));
    int r = volume_setup(v, cfg, flags, create_size);
    if (r == 0) {
        /* read-ahead GETs: half the store's connections, the rest for uploads */
        int nra = cfg->storage_max_connections / 2;
        r = gfs_ra_create(v, (uint64_t)cfg->cache_readahead_kb * 1024,
                          (unsigned)(nra < 1 ? 1 : nra > 4 ? 4 : nra), &v->ra);
    }
    if (r == 0 && v->owner)
        r = gfs_snapshots_load(v); /* what compaction must keep */
    if (r == 0 && v->owner)
        r = gfs_syncer_start(v);
    if (r == 0)
        r = gfs_own_start(v);
    if (r == 0)
        gfs_fence_hold(v); /* we took the lease from a live-looking holder */
    if (r < 0) {
        gfs_own_stop(v);
        gfs_syncer_stop(v);
        v->failed_open = r == -ENOENT || r == -EACCES || r == -EEXIST;
        volume_free(v);
        return r;
    }
    *out = v;
    return 0;
}

GLIDEFS_API int glidefs_volume_close(glidefs_volume *v)
{
    if (!v)
        return 0;
    gfs_ra_destroy(v->ra); /* before anything it uses goes */
    v->ra = NULL;
    gfs_own_stop(v);
    gfs_syncer_stop(v);
    pthread_mutex_lock(&v->lock);
    v->stop = 1;
    pthread_cond_broadcast(&v->cond);
    int r = gfs_journal_flush(&v->journal, &v->lock);
    int d = v->deferred_error;
    int release = v->owner && !v->fenced && v->dirty.nblocks == 0 && !v->journal.failed;
    pthread_mutex_unlock(&v->lock);
    if (release) {
        /* nothing left to upload: let the next node take over without waiting */
        int rr = gfs_volume_write_manifest(v);
        if (rr == 0)
            rr = gfs_own_release(v);
        if (rr == -ECANCELED)
            gfs_warn(&v->log, "%s: another node took the lease before close: this node was "
                     "fenced; its late uploads are ignored by every reader", v->name);
        else if (rr < 0)
            gfs_warn(&v->log, "%s: releasing the lease at close failed: %s", v->name,
                     glidefs_strerror(rr));
    }
    volume_free(v);
    return d ? d : r;
}

/* ------------------------------------------------------------------------ */
/* small queries                                                              */

GLIDEFS_API uint64_t glidefs_volume_size(glidefs_volume *v)
{
    SCOPED_LOCK(&v->lock);
    return v->size;
}

GLIDEFS_API int glidefs_volume_read_only(glidefs_volume *v)
{
    SCOPED_LOCK(&v->lock);
    return v->read_only;
}

GLIDEFS_API int glidefs_resize(glidefs_volume *v, uint64_t new_size)
{
    if (new_size % 512 || new_size == 0 || new_size > GLIDEFS_MAX_VOLUME_SIZE)
        return -EINVAL;
    /* metadata changes serialise on own_lock; the PUT runs without the
     * volume lock so I/O goes on meanwhile */
    SCOPED_LOCK(&v->own_lock);
    pthread_mutex_lock(&v->lock);
    int r = 0;
    if (v->read_only)
        r = -EROFS;
    else if (new_size < v->size)
        r = -EINVAL;
    else if (new_size == v->size)
        r = 1;
    else
        r = gfs_bm_grow(&v->bm, (new_size + v->bs - 1) / v->bs);
    uint64_t old = v->meta.size;
    if (r == 0)
        v->meta.size = new_size;
    pthread_mutex_unlock(&v->lock);
    if (r != 0)
        return r > 0 ? 0 : r;
    r = gfs_volmeta_store(v);
    pthread_mutex_lock(&v->lock);
    if (r < 0)
        v->meta.size = old;
    else
        v->size = new_size;
    pthread_mutex_unlock(&v->lock);
    if (r == 0)
        gfs_info(&v->log, "%s: grown to %" PRIu64 " bytes", v->name, new_size);
    return r;
}

GLIDEFS_API int glidefs_stats(glidefs_volume *v, struct glidefs_stats *out, size_t st_size)
{
    if (!out || st_size == 0)
        return -EINVAL;
    struct glidefs_stats s;
    pthread_mutex_lock(&v->lock);
    s = v->st;
    s.size_bytes = v->size;
    s.block_size = v->bs;
    s.dirty_bytes = v->dirty.sectors * 512;
    s.cached_bytes = (uint64_t)v->cache.nvalid * v->bs;
    s.journal_bytes = v->journal.bytes;
    s.read_only = v->read_only;
    s.fenced = v->fenced;
    s.fenced_bytes = v->fenced_bytes;
    s.lease_epoch = v->lease.epoch;
    snprintf(s.lease_node, sizeof s.lease_node, "%s",
             v->lease.exists && !v->lease.released ? v->lease.node_id : "");
    snprintf(s.lease_instance, sizeof s.lease_instance, "%s",
             v->lease.exists && !v->lease.released ? v->lease.instance : "");
    s.store_conditional = v->probe_state;
    s.store_probe_ms = v->probe_wall_ms;
    s.lease_owner = v->owner;
    s.last_error = v->sync_error ? v->sync_error : v->deferred_error;
    int64_t oldest = 0;
    if (v->dirty.head)
        oldest = gfs_now_ms() - v->dirty.head->first_ms;
    s.oldest_dirty_age_ms = oldest;
    for (uint32_t i = 1; i < v->bm.nsegs; i++) {
        if (v->bm.segs[i].deleted)
            continue;
        s.stored_bytes += v->bm.segs[i].total_bytes;
        s.live_bytes += v->bm.segs[i].live_bytes;
        s.segments++;
    }
    double uptime_s = (double)(gfs_now_ms() - v->opened_ms) / 1000.0;
    pthread_mutex_unlock(&v->lock);
    struct gfs_objstore_stats os;
    os.puts = __atomic_load_n(&v->store->stats.puts, __ATOMIC_RELAXED);
    os.put_bytes = __atomic_load_n(&v->store->stats.put_bytes, __ATOMIC_RELAXED);
    os.gets = __atomic_load_n(&v->store->stats.gets, __ATOMIC_RELAXED);
    os.get_bytes = __atomic_load_n(&v->store->stats.get_bytes, __ATOMIC_RELAXED);
    os.deletes = __atomic_load_n(&v->store->stats.deletes, __ATOMIC_RELAXED);
    os.lists = __atomic_load_n(&v->store->stats.lists, __ATOMIC_RELAXED);
    os.errors = __atomic_load_n(&v->store->stats.errors, __ATOMIC_RELAXED);
    os.retries = __atomic_load_n(&v->store->stats.retries, __ATOMIC_RELAXED);
    s.store_puts = os.puts;
    s.store_put_bytes = os.put_bytes;
    s.store_gets = os.gets;
    s.store_get_bytes = os.get_bytes;
    s.store_deletes = os.deletes;
    s.store_lists = os.lists;
    s.store_errors = os.errors;
    s.store_retries = os.retries;
    /* a month of storage at today's size, plus requests at this session's rate */
    double month_s = 30.0 * 86400.0;
    double rate = uptime_s > 60 ? month_s / uptime_s : 0;
    s.est_monthly_cost_usd = (double)s.stored_bytes / 1073741824.0 * v->cost_gb_month +
                             rate * ((double)os.puts * v->cost_put_1000 / 1000.0 +
                                     (double)os.gets * v->cost_get_1000 / 1000.0);
    memcpy(out, &s, st_size < sizeof s ? st_size : sizeof s);
    return 0;
}
