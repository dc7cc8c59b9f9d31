/*
 * dirty_handoff.c — save the dirty index at close, adopt it at open
 * (dirty_handoff.h).
 *
 * Why it is safe: the index is written after the journal's last write and
 * flush, names every journal file by what the kernel says of it (device,
 * inode, size, times, the bytes around its tail) and is valid in this boot
 * only; the open adopts it only if the journal directory holds exactly
 * those files, unchanged, and the journal is the lease holder's to go on
 * with (the very case in which a replay would apply every record). The
 * file is removed as it is read, so a crash after the open replays as
 * before. An extent the store already holds (the freshly loaded map has a
 * newer write for its block) is dropped, as a replay drops its record.
 */
#include "dirty_handoff.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dirty_index.h"
#include "volume_internal.h"

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The index of the file with this id in ids (sorted: the journal's list is
 * in id order), or UINT32_MAX. */
static uint32_t file_index(const struct gfs_jfile_id *ids, uint32_t n, uint64_t id)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ids[mid].id == id)
            return mid;
        if (ids[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return UINT32_MAX;
}

/* Under v->lock: the index of what the volume holds now. 0, or why not. */
static int build(struct glidefs_volume *v, struct gfs_didx *x, const char **why)
{
    struct gfs_journal *j = &v->journal;
    x->block_size = v->bs;
    memcpy(x->uuid, v->meta.uuid, 16);
    x->vol_size = v->size;
    x->epoch = v->epoch;
    x->next_seq = v->next_seq;
    x->next_id = j->next_id;
    x->cur_id = j->cur ? j->cur->id : 0;
    for (struct gfs_jfile *f = j->files; f; f = f->next)
        x->nfiles++;
    for (struct gfs_dirty_block *db = v->dirty.head; db; db = db->next) {
        if (db->pending || db->syncing) {
            *why = "a write or an upload is in flight";
            return -EBUSY;
        }
        if (db->n) {
            x->nblocks++;
            x->nexts += db->n;
        }
    }
    x->files = calloc(x->nfiles ? x->nfiles : 1, sizeof *x->files);
    x->blocks = calloc(x->nblocks ? x->nblocks : 1, sizeof *x->blocks);
    x->exts = calloc(x->nexts ? x->nexts : 1, sizeof *x->exts);
    if (!x->files || !x->blocks || !x->exts) {
        *why = "out of memory";
        return -ENOMEM;
    }
    uint32_t i = 0;
    for (struct gfs_jfile *f = j->files; f; f = f->next, i++) {
        if (i && f->id <= x->files[i - 1].id) {
            *why = "journal files out of order";
            return -EINVAL;
        }
        int r = gfs_journal_ident(f, &x->files[i]);
        if (r < 0) {
            *why = "a journal file cannot be read";
            return r;
        }
    }
    uint64_t b = 0, e = 0;
    for (struct gfs_dirty_block *db = v->dirty.head; db; db = db->next) {
        if (!db->n)
            continue;
        x->blocks[b++] = (struct gfs_didx_block){
            .block = db->block, .first_seq = db->first_seq, .first_ms = db->first_ms,
            .last_ms = db->last_ms, .n = db->n};
        for (uint32_t k = 0; k < db->n; k++) {
            const struct gfs_ext *s = &db->ext[k];
            uint32_t fi = s->jf ? file_index(x->files, x->nfiles, s->jf->id) : UINT32_MAX;
            if (fi == UINT32_MAX) {
                *why = "an extent names no journal file";
                return -EINVAL;
            }
            x->exts[e++] = (struct gfs_didx_ext){
                .start = s->start, .count = s->count, .flags = s->flags, .file = fi,
                .seq = s->seq, .data_off = (s->flags & GFS_EXT_ZERO) ? 0 : s->data_off};
        }
    }
    return 0;
}

void gfs_didx_save(struct glidefs_volume *v)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" GFS_DIDX_NAME, v->dir);
    struct gfs_didx x;
    memset(&x, 0, sizeof x);
    const char *why = NULL;
    double t0 = mono_ms();
    int r = gfs_didx_boot_id(x.boot_id);
    if (r < 0)
        why = "no boot id";
    pthread_mutex_lock(&v->lock);
    if (r == 0 && (v->journal.failed || v->journal.inflight_head)) {
        why = "the journal is not settled";
        r = -EIO;
    }
    if (r == 0 && !v->journal.files)
        r = 1; /* no journal: nothing to replay, nothing to hand over */
    if (r == 0)
        r = build(v, &x, &why);
    pthread_mutex_unlock(&v->lock);
    double t_built = mono_ms();
    if (r == 0) {
        r = gfs_didx_write(path, &x);
        if (r < 0)
            why = strerror(-r);
    }
    if (r == 0)
        gfs_debug(&v->log, "%s: dirty index written for the next open: %" PRIu32
                  " journal files, %" PRIu64 " blocks, %" PRIu64 " extents (built in %.2f ms, "
                  "written in %.2f ms)", v->name, x.nfiles, x.nblocks, x.nexts, t_built - t0,
                  mono_ms() - t_built);
    else if (r < 0)
        gfs_warn(&v->log, "%s: no dirty index for the next open (it replays the journal): %s",
                 v->name, why ? why : strerror(-r));
    gfs_didx_free(&x);
}

/* Insert the index's extents (journal adopted, files[i] its i-th file). */
static int insert_all(struct glidefs_volume *v, const struct gfs_didx *x,
                      struct gfs_jfile **files, uint64_t *dropped)
{
    int64_t now = gfs_now_ms();
    uint32_t cap = 0;
    for (uint64_t b = 0; b < x->nblocks; b++)
        if (x->blocks[b].n > cap)
            cap = x->blocks[b].n;
    struct gfs_ext *tmp = malloc((cap ? cap : 1) * sizeof *tmp);
    if (!tmp)
        return -ENOMEM;
    int r = 0;
    for (uint64_t b = 0; b < x->nblocks && r == 0; b++) {
        const struct gfs_didx_block *ib = &x->blocks[b];
        /* what the store holds of the block already */
        struct gfs_bm_entry me = gfs_bm_get(&v->sv.bm, ib->block);
        uint32_t n = 0;
        for (uint32_t k = 0; k < ib->n; k++) {
            const struct gfs_didx_ext *ie = &x->exts[ib->ext0 + k];
            if (me.seg != GFS_BM_NONE && me.write_seq >= ie->seq) {
                (*dropped)++;
                continue;
            }
            tmp[n++] = (struct gfs_ext){
                .start = ie->start, .count = ie->count, .flags = ie->flags, .seq = ie->seq,
                .jf = files[ie->file], .data_off = ie->data_off};
        }
        if (!n)
            continue;
        struct gfs_dirty_block *db = gfs_dirty_touch(&v->dirty, ib->block, now);
        if (!db) {
            r = -ENOMEM;
            break;
        }
        /* sorted and disjoint (the parser checked): all at once */
        r = gfs_dirty_load(&v->dirty, db, tmp, n);
        if (r < 0)
            break;
        /* as the close left it (the monotonic clock is this boot's): the
         * upload is as due as it was, not postponed by the takeover */
        if (ib->first_seq < db->first_seq)
            db->first_seq = ib->first_seq;
        db->first_ms = ib->first_ms < now ? ib->first_ms : now;
        db->last_ms = ib->last_ms < now ? ib->last_ms : now;
    }
    free(tmp);
    return r;
}

int gfs_didx_adopt(struct glidefs_volume *v, uint64_t *max_seq)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" GFS_DIDX_NAME, v->dir);
    uint8_t boot[16];
    if (gfs_didx_boot_id(boot) < 0) {
        unlink(path); /* cannot tell whose boot it is: never trust it */
        return 0;
    }
    struct gfs_didx x;
    double t0 = mono_ms();
    int r = gfs_didx_take(path, v->bs, v->meta.uuid, v->size, boot, &x);
    double t_read = mono_ms();
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        gfs_info(&v->log, "%s: dirty index %s not used (the journal is replayed): %s", v->name,
                 path, r == -ESTALE ? "another boot's, volume's or size's" :
                 r == -EINVAL ? "malformed" : strerror(-r));
        return 0;
    }
    char why[300] = "";
    if (!v->own.journal_ours)
        snprintf(why, sizeof why, "the journal is not this lease's to go on with");
    else if (x.epoch != v->own.local_epoch)
        snprintf(why, sizeof why, "written under epoch %" PRIu64 ", the journal's is %" PRIu64,
                 x.epoch, v->own.local_epoch);
    struct gfs_jfile **files = NULL;
    if (!why[0] && !(files = calloc(x.nfiles ? x.nfiles : 1, sizeof *files)))
        snprintf(why, sizeof why, "out of memory");
    if (!why[0] && gfs_journal_adopt(&v->journal, x.files, x.nfiles, x.cur_id, x.next_id, files,
                                     why, sizeof why) < 0 && !why[0])
        snprintf(why, sizeof why, "the journal does not match");
    if (why[0]) {
        gfs_info(&v->log, "%s: dirty index not used (the journal is replayed): %s", v->name, why);
        free(files);
        gfs_didx_free(&x);
        return 0;
    }
    double t_journal = mono_ms();
    uint64_t dropped = 0;
    r = insert_all(v, &x, files, &dropped);
    free(files);
    if (r == 0) {
        *max_seq = x.next_seq - 1;
        gfs_info(&v->log, "%s: dirty state taken over from the last close (no journal replay): "
                 "%" PRIu64 " dirty blocks, %" PRIu64 " extents (%" PRIu64 " already stored); "
                 "index read in %.2f ms, journal files checked in %.2f ms, extents in %.2f ms",
                 v->name, v->dirty.nblocks, x.nexts, dropped, t_read - t0, t_journal - t_read,
                 mono_ms() - t_journal);
    }
    gfs_didx_free(&x);
    return r < 0 ? r : 1;
}
