/*
 * volume_io.c — the I/O of an open volume: pread, pwrite, trim,
 * write_zeroes, flush, prefetch, block_status, drain, and the small
 * queries (size, read-only, stats). The write path touches only the
 * journal; the read path goes newest journal record -> clean cache ->
 * store (blockio.c assembles the block). Opening and closing are
 * volume_open.c's.
 *
 * Reads first try the lock-free path (fastread.h): granules whose place the
 * locked path published (a whole journal extent over them, or the clean
 * cache's copy of a block with no dirty data) are read under per-entry
 * seqcounts, without the volume's mutex; any other read plans under the
 * lock (read_block) and publishes what it learned. A read that would
 * continue a read-ahead stream takes the lock so the stream sees it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockio.h"
#include "checkpoint.h"
#include "cleanup.h"
#include "follow.h"
#include "readahead.h"
#include "volume_internal.h"

static int check_io(glidefs_volume *v, uint64_t off, uint64_t len)
{
    if (off % GLIDEFS_SECTOR_SIZE || len % GLIDEFS_SECTOR_SIZE)
        return -EINVAL;
    if (off > v->size || len > v->size - off)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* read path                                                                  */

/* After a GET found no object: does the map now point b somewhere else than
 * the entry (and segment epoch/seq) the read started from? */
static int block_moved(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                       uint64_t epoch, uint64_t seq)
{
    pthread_mutex_lock(&v->lock);
    struct gfs_bm_entry cur = gfs_bm_get(&v->sv.bm, b);
    int moved = cur.seg != e->seg || cur.offset != e->offset || cur.seg == GFS_BM_NONE ||
                cur.seg == GFS_BM_HOLE || cur.seg >= v->sv.bm.nsegs ||
                v->sv.bm.segs[cur.seg].epoch != epoch || v->sv.bm.segs[cur.seg].seq != seq;
    pthread_mutex_unlock(&v->lock);
    return moved;
}

/* Tell the lock-free path (fastread.h) where block b's granules are, as the
 * plan made under the lock (held) found them: those wholly inside one
 * journal extent, or, when the block has no dirty data and its stored copy
 * is cached, its cached granules. The granules of sectors [s, s + n), or
 * the whole block when it has few. */
static void publish(glidefs_volume *v, uint64_t b, uint32_t s, uint32_t n,
                    const struct gfs_dirty_block *db, const struct gfs_block_plan *p)
{
    struct gfs_fastrd *fr = &v->fr;
    if (!fr->ent)
        return;
    uint32_t glo = 0, ghi = fr->gpb - 1;
    if (fr->gpb > GFS_FR_MAX_SPAN) {
        glo = s / GFS_FR_GRAN;
        ghi = (s + n - 1) / GFS_FR_GRAN;
    }
    if (!db) {
        if (p->base == GFS_BASE_CACHE)
            for (uint32_t g = glo; g <= ghi; g++)
                gfs_fr_publish(fr, b, g, GFS_FR_CACHE, p->slot, -1);
        return;
    }
    for (uint32_t i = gfs_dirty_find(db, glo * GFS_FR_GRAN); i < db->n; i++) {
        const struct gfs_ext *x = &db->ext[i];
        uint32_t a = (x->start + GFS_FR_GRAN - 1) / GFS_FR_GRAN; /* first whole granule */
        uint32_t z = (x->start + x->count) / GFS_FR_GRAN;        /* one past the last */
        if (a > ghi)
            break;
        for (uint32_t g = a > glo ? a : glo; g < z && g <= ghi; g++) {
            if (x->flags & GFS_EXT_ZERO)
                gfs_fr_publish(fr, b, g, GFS_FR_JZERO, 0, -1);
            else
                gfs_fr_publish(fr, b, g, GFS_FR_JDATA,
                               (int64_t)(x->data_off + (uint64_t)(g * GFS_FR_GRAN - x->start) * 512),
                               x->jf->fd);
        }
    }
}

/* Sectors [s, s+n) of block b without the lock (fastread.h): 1 when served. */
static int fast_read(glidefs_volume *v, uint64_t b, uint32_t s, uint32_t n, uint8_t *dst)
{
    if (atomic_load_explicit(&v->journal.failed, memory_order_relaxed))
        return 0; /* the locked path fails the read */
    int64_t slot;
    if (!gfs_fr_read(&v->fr, b, s, n, v->cache.fd, v->bs, dst, &slot))
        return 0;
    if (slot >= 0) {
        /* CLOCK's reference bit, as gfs_cache_lookup sets it (no store when
         * set: the line stays shared); a slot reused meanwhile is only
         * kept a little longer */
        _Atomic uint8_t *ref = &v->cache.slots[slot].ref;
        if (!atomic_load_explicit(ref, memory_order_relaxed))
            atomic_store_explicit(ref, 1, memory_order_relaxed);
    }
    return 1;
}

/* Read sectors [s, s+n) of block b into dst. count_read: this is the first
 * block of a pread of read_len bytes (counted, and shown to read-ahead).
 * The plan (journal pieces over which stored copy) is made under the lock,
 * the I/O (gfs_block_assemble) without it; a copy that went stale or a
 * segment that went away meanwhile makes it plan again. */
static int read_block(glidefs_volume *v, uint64_t b, uint32_t s, uint32_t n, uint8_t *dst,
                      int count_stats, int count_read, uint64_t read_len)
{
    int reloads = 0;
    for (int attempt = 0;; attempt++) {
        struct gfs_piece stackp[8];
        struct gfs_piece *pieces = stackp;
        CLEANUP_FREE struct gfs_piece *heapp = NULL;
        struct gfs_block_plan p = {.b = b, .s = s, .n = n, .base = GFS_BASE_ZERO, .slot = -1};
        int need_base = 1;

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
            gfs_wake_note_read(v, b, (b * v->bs + (uint64_t)s * 512 + read_len - 1) / v->bs);
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
                /* zero extents need no file: leave jf NULL in the plan */
                int zero = x->flags & GFS_EXT_ZERO;
                struct gfs_piece *pc = &pieces[p.npieces++];
                pc->start = lo;
                pc->count = hi - lo;
                pc->jf = zero ? NULL : x->jf;
                pc->off = zero ? 0 : x->data_off + (uint64_t)(lo - x->start) * 512;
                if (!zero)
                    atomic_fetch_add_explicit(&x->jf->pins, 1, memory_order_relaxed);
            }
            if (pos < s + n)
                need_base = 1;
        }
        p.pieces = pieces;
        p.e = gfs_bm_get(&v->sv.bm, b);
        if (!need_base) {
            p.base = GFS_BASE_NONE;
        } else if (p.e.seg != GFS_BM_NONE && p.e.seg != GFS_BM_HOLE) {
            p.slot = gfs_cache_lookup(&v->cache, b, p.e.seg, p.e.offset, &p.gen);
            p.base = p.slot >= 0 ? GFS_BASE_CACHE : GFS_BASE_STORE;
            if (p.base == GFS_BASE_STORE && p.e.seg < v->sv.bm.nsegs) {
                p.epoch = v->sv.bm.segs[p.e.seg].epoch;
                p.seq = v->sv.bm.segs[p.e.seg].seq;
            }
        }
        publish(v, b, s, n, db, &p);
        if (count_stats) {
            if (p.base == GFS_BASE_STORE) {
                v->st.cache_misses++;
            } else {
                v->st.cache_hits++;
                if (p.base == GFS_BASE_CACHE)
                    gfs_wake_cache_hit(v, b);
            }
        }
        pthread_mutex_unlock(&v->lock);

        int err = 0, stale = 0;
        CLEANUP_FREE uint8_t *blk = NULL;
        if (p.base == GFS_BASE_STORE && attempt < 4 && gfs_ra_wait(v->ra, b)) {
            stale = 1; /* read-ahead had it: look in the cache again */
        } else if (p.base == GFS_BASE_STORE && !(blk = malloc(v->bs))) {
            err = -ENOMEM;
        } else {
            err = gfs_block_assemble(&v->sv, &v->cache, &p, dst, blk);
            if (err > 0) {
                stale = 1; /* the cached copy changed under the read */
                err = 0;
            }
        }
        if (err == -ENOENT && reloads < 3 &&
            !atomic_load_explicit(&v->owner, memory_order_relaxed)) {
            /* the writer compacted that segment away: its newer segments
             * say where the block went (one LIST and their headers); reload
             * everything only if they do not */
            reloads++;
            int rr = gfs_volume_catch_up(v);
            if (rr == 0 && !block_moved(v, b, &p.e, p.epoch, p.seq))
                rr = gfs_volume_reload(v);
            err = rr < 0 ? rr : 0;
            stale = 1;
        } else if (err == -ENOENT && block_moved(v, b, &p.e, p.epoch, p.seq)) {
            /* our compactor moved it and deleted the old copy while this
             * GET was slow (longer than grace_ms): look again */
            err = 0;
            stale = 1;
        } else if (err == -ENOENT) {
            gfs_err(&v->log, "%s: block %" PRIu64 "'s segment is missing from the store",
                    v->name, b);
            err = -EIO;
        }
        if (!err && !stale && p.base == GFS_BASE_STORE) {
            uint64_t id[2] = {p.epoch, p.seq};
            gfs_blk_cache_fill(v, b, &p.e, id, blk);
        }
        for (uint32_t i = 0; i < p.npieces; i++)
            if (pieces[i].jf)
                atomic_fetch_sub_explicit(&pieces[i].jf->pins, 1, memory_order_release);
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
    uint64_t pos = offset, end = offset + len, fast_bytes = 0, fast_blocks = 0;
    int noted = 0; /* a locked block read counted the read and showed it to read-ahead */
    while (pos < end) {
        uint64_t b = pos / v->bs;
        uint32_t s = (uint32_t)((pos % v->bs) / 512);
        uint64_t chunk = v->bs - pos % v->bs;
        if (chunk > end - pos)
            chunk = end - pos;
        if ((noted || !gfs_ra_follows(v->ra, b)) &&
            fast_read(v, b, s, (uint32_t)(chunk / 512), dst)) {
            fast_bytes += chunk;
            fast_blocks++;
        } else {
            r = read_block(v, b, s, (uint32_t)(chunk / 512), dst, 1, !noted, end - pos);
            if (r < 0)
                return r;
            noted = 1;
        }
        dst += chunk;
        pos += chunk;
    }
    if (fast_blocks)
        gfs_fr_count(&v->fr, !noted, fast_bytes, fast_blocks);
    gfs_wake_read_done(v);
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
        v->sync.force++;
        pthread_cond_broadcast(&v->sync.cond);
        pthread_mutex_unlock(&v->lock);
        gfs_budget_wait(v->bud, gen, 50);
        pthread_mutex_lock(&v->lock);
        v->sync.force--;
    }
}

/* Has block b changed since its map entry was *expect (lock held)? */
static int block_changed(glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *expect)
{
    struct gfs_bm_entry cur = gfs_bm_get(&v->sv.bm, b);
    return cur.seg != expect->seg || cur.offset != expect->offset ||
           gfs_dirty_get(&v->dirty, b) != NULL;
}

/* expect (gfs_volume_rewrite_block): the one block written must be
 * unchanged, else -EAGAIN and nothing is written. */
static int submit_if(glidefs_volume *v, uint32_t type, const void *data, uint64_t len,
                     uint64_t offset, unsigned flags, const struct gfs_bm_entry *expect)
{
    int r = check_io(v, offset, len);
    if (r < 0)
        return r;
    if (atomic_load_explicit(&v->read_only, memory_order_relaxed))
        return -EROFS; /* fast path; checked again under the lock */
    if (len == 0)
        return flags & GLIDEFS_WRITE_FUA ? glidefs_flush(v) : 0;
    if (type == GFS_JREC_WRITE && len > UINT32_MAX - GFS_JREC_HDR)
        return -EINVAL;
    /* zero records are split so one record's length fits its 32-bit field */
    if (type == GFS_JREC_ZERO && len > (1u << 30)) {
        for (uint64_t p = 0; p < len; p += 1u << 30) {
            uint64_t l = len - p < (1u << 30) ? len - p : (1u << 30);
            r = submit_if(v, type, NULL, l, offset + p, 0, NULL);
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
    r = gfs_syncer_room(v, len); /* the max_unsynced bounds (syncer.h) */
    if (r == 0)
        r = journal_room(v, reclen, &jres);
    /* after the waits above, which may have dropped the lock */
    if (r == 0 && expect && block_changed(v, first_b, expect))
        r = -EAGAIN;
    if (r == 0)
        r = gfs_journal_reserve(&v->journal, reclen, &jf, &joff, &ticket);
    if (jres)
        gfs_budget_journal_done(&v->bmem, jres); /* the new file is charged (or failed) */
    if (r != -EAGAIN && (r == -ENOSPC) != v->disk_full) {
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
        r = gfs_journal_write(jf, joff, &rec, data);
        ok = r == 0;
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

static int submit(glidefs_volume *v, uint32_t type, const void *data, uint64_t len,
                  uint64_t offset, unsigned flags)
{
    return submit_if(v, type, data, len, offset, flags, NULL);
}

int gfs_volume_rewrite_block(glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *expect,
                             const void *data)
{
    if (!expect || b >= v->size / v->bs)
        return -EINVAL;
    return submit_if(v, GFS_JREC_WRITE, data, v->bs, b * v->bs, 0, expect);
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
    SCOPED_LOCK(&v->lock);
    uint64_t target = v->next_seq - 1; /* store mode: every write up to here in the store */
    int r = gfs_journal_flush(&v->journal, &v->lock);
    v->st.flushes++;
    if (r == 0)
        r = gfs_syncer_flush(v, target);
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
    struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
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
            struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
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
    gfs_timespec_in(&deadline, timeout_ms >= 0 ? timeout_ms : 0); /* v->cond: CLOCK_MONOTONIC */
    pthread_mutex_lock(&v->lock);
    if (!v->owner) {
        /* not the writer: nothing of ours can be uploaded (fenced data stays local) */
        int dirty = v->dirty.nblocks > 0;
        pthread_mutex_unlock(&v->lock);
        return dirty ? -EROFS : 0;
    }
    uint64_t target = v->next_seq - 1;
    int r = 0;
    v->sync.force++;
    pthread_cond_broadcast(&v->sync.cond);
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
    v->sync.force--;
    pthread_mutex_unlock(&v->lock);
    if (r < 0)
        return r;
    r = gfs_volume_write_manifest(v);
    if (r == 0)
        gfs_wake_save(v); /* advisory: its failure does not fail the drain */
    return r;
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

GLIDEFS_API int glidefs_volume_set_durability(glidefs_volume *v,
                                              const struct glidefs_durability *d, size_t d_size)
{
    struct glidefs_durability x = {0};
    if (!d || d_size == 0)
        return -EINVAL;
    memcpy(&x, d, d_size < sizeof x ? d_size : sizeof x);
    if (x.mode != GLIDEFS_DURABILITY_LOCAL && x.mode != GLIDEFS_DURABILITY_STORE)
        return -EINVAL;
    SCOPED_LOCK(&v->lock);
    v->sync.durability = (int)x.mode;
    v->sync.max_unsynced_ms = x.max_unsynced_ms;
    v->sync.max_unsynced_bytes = x.max_unsynced_bytes;
    /* writers waiting on a bound that went away, and the syncer's deadlines */
    pthread_cond_broadcast(&v->cond);
    pthread_cond_broadcast(&v->sync.cond);
    return 0;
}

GLIDEFS_API int glidefs_volume_get_durability(glidefs_volume *v, struct glidefs_durability *d,
                                              size_t d_size)
{
    if (!d || d_size == 0)
        return -EINVAL;
    struct glidefs_durability x = {0};
    pthread_mutex_lock(&v->lock);
    x.mode = (uint32_t)v->sync.durability;
    x.max_unsynced_ms = (uint32_t)v->sync.max_unsynced_ms;
    x.max_unsynced_bytes = v->sync.max_unsynced_bytes;
    pthread_mutex_unlock(&v->lock);
    memcpy(d, &x, d_size < sizeof x ? d_size : sizeof x);
    return 0;
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
    s.journal_syncs = v->journal.syncs;
    s.read_only = v->read_only;
    s.fenced = v->fenced;
    s.fenced_bytes = v->fenced_bytes;
    s.lease_epoch = v->sv.lease.epoch;
    snprintf(s.lease_node, sizeof s.lease_node, "%s",
             v->sv.lease.exists && !v->sv.lease.released ? v->sv.lease.node_id : "");
    snprintf(s.lease_instance, sizeof s.lease_instance, "%s",
             v->sv.lease.exists && !v->sv.lease.released ? v->sv.lease.instance : "");
    s.store_conditional = v->own.probe_state;
    s.store_probe_ms = v->own.probe_wall_ms;
    s.lease_owner = v->owner;
    s.blocks_fetched = atomic_load_explicit(&v->sv.blocks_fetched, memory_order_relaxed);
    s.checksum_errors = atomic_load_explicit(&v->sv.checksum_errors, memory_order_relaxed);
    s.last_error = v->sync.error ? v->sync.error : v->deferred_error;
    int64_t oldest = 0;
    if (v->dirty.head)
        oldest = gfs_now_ms() - v->dirty.head->first_ms;
    s.oldest_dirty_age_ms = oldest;
    uint32_t newest = gfs_codec_key_gen(v->codec);
    for (uint32_t i = 1; i < v->sv.bm.nsegs; i++) {
        if (v->sv.bm.segs[i].deleted)
            continue;
        s.stored_bytes += v->sv.bm.segs[i].total_bytes;
        s.live_bytes += v->sv.bm.segs[i].live_bytes;
        s.segments++;
        if (v->sv.bm.segs[i].live_bytes && gfs_key_gen_older(v->sv.bm.segs[i].key_gen, newest))
            s.segments_old_key++;
    }
    s.key_generation = newest;
    s.durability = v->sync.durability;
    s.max_unsynced_ms = (uint32_t)v->sync.max_unsynced_ms;
    s.max_unsynced_bytes = v->sync.max_unsynced_bytes;
    s.key_generations = gfs_codec_gens(v->codec, NULL, 0);
    s.prefetch_wasted_bytes = v->wake.unread * v->bs;
    s.first_read_ms = atomic_load_explicit(&v->wake.first_read_ms, memory_order_relaxed);
    s.cache_restored_blocks = v->cache_restored;
    s.manifest_bases = v->ckpt.bases_written;
    s.manifest_deltas = v->ckpt.deltas_written;
    s.manifest_bytes = v->ckpt.bytes_written;
    s.manifest_chain = v->ckpt.bases_written ? v->ckpt.nchain : 0;
    double uptime_s = (double)(gfs_now_ms() - v->opened_ms) / 1000.0;
    pthread_mutex_unlock(&v->lock);
    uint64_t fr_reads, fr_bytes, fr_hits; /* the lock-free reads' (fastread.h) */
    gfs_fr_sum(&v->fr, &fr_reads, &fr_bytes, &fr_hits);
    s.reads += fr_reads;
    s.read_bytes += fr_bytes;
    s.cache_hits += fr_hits;
    /* copied out of the store's atomics (the public struct holds plain integers) */
    const struct gfs_objstore_stats *os = &v->store->stats;
    s.store_puts = atomic_load_explicit(&os->puts, memory_order_relaxed);
    s.store_put_bytes = atomic_load_explicit(&os->put_bytes, memory_order_relaxed);
    s.store_gets = atomic_load_explicit(&os->gets, memory_order_relaxed);
    s.store_get_bytes = atomic_load_explicit(&os->get_bytes, memory_order_relaxed);
    s.store_deletes = atomic_load_explicit(&os->deletes, memory_order_relaxed);
    s.store_lists = atomic_load_explicit(&os->lists, memory_order_relaxed);
    s.store_errors = atomic_load_explicit(&os->errors, memory_order_relaxed);
    s.store_retries = atomic_load_explicit(&os->retries, memory_order_relaxed);
    /* a month of storage at today's size, plus requests at this session's rate */
    double month_s = 30.0 * 86400.0;
    double rate = uptime_s > 60 ? month_s / uptime_s : 0;
    s.est_monthly_cost_usd = (double)s.stored_bytes / 1073741824.0 * v->cost_gb_month +
                             rate * ((double)s.store_puts * v->cost_put_1000 / 1000.0 +
                                     (double)s.store_gets * v->cost_get_1000 / 1000.0);
    memcpy(out, &s, st_size < sizeof s ? st_size : sizeof s);
    return 0;
}
