/*
 * cache_park.c — a closed volume's clean cache kept on this node for its
 * next open (cache.keep_on_close, docs/design.md 6.6).
 *
 * Close: the valid slots are named by the store copy they hold (segment
 * epoch and seq, not the map's local segment index, which the next open
 * numbers afresh), the cache file is synced, then the index is written
 * durably (cache_index.c) and the bytes stay charged to the node's budget
 * as a parked cache. Open: the index is taken (read and removed, so a
 * crash afterwards never trusts it again) and each slot is restored only
 * if the freshly loaded block map still points the block at that very copy
 * — a block written or compacted meanwhile, here or on another node, is
 * simply not restored — and only as far as the budget admits it.
 *
 * Why the order at close matters: the index must never name data that is
 * not on disk, so the data is synced before the index exists; and an open
 * removes the index before any slot can change.
 */
#include "volume_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "cache_index.h"
#include "cache_park.h"

#define IDX_NAME "cache.idx"
#define DAT_NAME "cache.dat"

static int seg_id(void *arg, uint32_t seg, uint64_t *epoch, uint64_t *seq)
{
    const glidefs_volume *v = arg;
    const struct gfs_blockmap *bm = &v->sv.bm;
    if (seg == GFS_BM_NONE || seg == GFS_BM_HOLE || seg >= bm->nsegs || bm->segs[seg].deleted)
        return -1;
    *epoch = bm->segs[seg].epoch;
    *seq = bm->segs[seg].seq;
    return 0;
}

/* The cache's acct hook: its bytes are charged to the node's budget. */
static void cache_acct(void *arg, int64_t delta)
{
    glidefs_volume *v = arg;
    gfs_budget_cache_add(&v->bmem, delta);
}

int gfs_cache_park_drop(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/lock", dir);
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd); /* open (here or in another process): its owner decides */
        return -EBUSY;
    }
    snprintf(p, sizeof p, "%s/" IDX_NAME, dir);
    unlink(p); /* first: data without an index is never used */
    snprintf(p, sizeof p, "%s/" DAT_NAME, dir);
    unlink(p);
    if (fd >= 0)
        close(fd);
    return 0;
}

uint64_t gfs_cache_park(glidefs_volume *v)
{
    struct gfs_cache *c = &v->cache;
    if (!v->keep_cache || v->failed_open || !c->slots) {
        gfs_cache_close(c);
        return 0;
    }
    struct gfs_cidx_entry *e = NULL;
    size_t n = 0;
    int r = gfs_cache_park_entries(c, &e, &n, seg_id, v);
    if (r == 0 && n)
        r = gfs_cache_sync(c);
    if (r == 0 && n) {
        char p[4200];
        snprintf(p, sizeof p, "%s/" IDX_NAME, v->dir);
        r = gfs_cidx_write(p, v->bs, v->meta.uuid, e, n);
    }
    free(e);
    if (r < 0 || n == 0) {
        if (r < 0)
            gfs_warn(&v->log, "%s: clean cache not kept for the next open: %s", v->name,
                     strerror(-r));
        gfs_cache_close(c);
        return 0;
    }
    uint64_t bytes = c->bytes;
    gfs_cache_close_keep(c);
    return bytes;
}

/* Count the parked caches an earlier process left in cache_dir, except
 * self's own (its open restores it) and volumes open now. */
static void scan_parked(struct gfs_budget *b, const char *cache_dir, const char *self)
{
    DIR *d = opendir(cache_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !glidefs_name_valid(de->d_name))
            continue;
        char dir[4200], p[4300];
        snprintf(dir, sizeof dir, "%s/%s", cache_dir, de->d_name);
        if (strcmp(dir, self) == 0)
            continue;
        struct stat st;
        snprintf(p, sizeof p, "%s/" IDX_NAME, dir);
        if (stat(p, &st) < 0)
            continue;
        snprintf(p, sizeof p, "%s/" DAT_NAME, dir);
        if (stat(p, &st) < 0)
            continue;
        snprintf(p, sizeof p, "%s/lock", dir);
        int fd = open(p, O_RDWR | O_CLOEXEC);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd); /* open now: its cache is counted as a member's */
            continue;
        }
        gfs_budget_park(b, dir, (uint64_t)st.st_blocks * 512, gfs_cache_park_drop);
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
}

int gfs_cache_unpark(glidefs_volume *v, const char *cache_dir, const char *path, uint32_t slots)
{
    if (gfs_budget_first_scan(v->bud))
        scan_parked(v->bud, cache_dir, v->dir);
    /* from here the budget counts what this open restores, block by block */
    gfs_budget_unpark(v->bud, v->dir);
    char p[4200];
    snprintf(p, sizeof p, "%s/" IDX_NAME, v->dir);
    struct gfs_cidx_entry *e = NULL;
    size_t n = 0;
    int tr = gfs_cidx_take(p, v->bs, v->meta.uuid, &e, &n);
    if (tr < 0 && tr != -ENOENT)
        gfs_warn(&v->log, "%s: kept clean cache not used: its index %s: %s", v->name, p,
                 tr == -ESTALE ? "belongs to another volume" : strerror(-tr));
    int keep = tr == 0 && n && v->keep_cache;
    pthread_mutex_lock(&v->lock);
    int r = keep ? gfs_cache_open_keep(&v->cache, path, v->bs, slots)
                 : gfs_cache_open(&v->cache, path, v->bs, slots);
    v->cache.acct = cache_acct;
    v->cache.acct_arg = v;
    v->cache.fr = &v->fr;
    uint64_t restored = 0, dropped = 0;
    for (size_t i = 0; keep && r == 0 && i < n; i++) {
        const struct gfs_cidx_entry *x = &e[i];
        int ok = x->block < v->sv.bm.nblocks;
        struct gfs_bm_entry cur = {0};
        if (ok) {
            cur = gfs_bm_get(&v->sv.bm, x->block);
            uint64_t ep, sq;
            ok = seg_id(v, cur.seg, &ep, &sq) == 0 && ep == x->epoch && sq == x->seq &&
                 cur.offset == x->offset;
        }
        /* admitted one block at a time: the node's other volumes and
         * parked caches make room, or the rest is not restored */
        if (ok && gfs_budget_cache_admit(&v->bmem, v->bs) == 0) {
            ok = gfs_cache_restore(&v->cache, x->block, cur.seg, cur.offset) == 0;
            gfs_budget_cache_done(&v->bmem, v->bs);
        } else {
            ok = 0;
        }
        if (ok) {
            restored++;
        } else {
            gfs_cache_forget(&v->cache, x->block); /* its bytes: not counted, so not kept */
            dropped++;
        }
    }
    v->cache_restored = restored;
    pthread_mutex_unlock(&v->lock);
    free(e);
    if (restored || dropped)
        gfs_info(&v->log, "%s: clean cache kept from the last close: %" PRIu64
                 " blocks restored, %" PRIu64 " no longer current", v->name, restored, dropped);
    return r;
}
