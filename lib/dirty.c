/*
 * dirty.c — the dirty-extent index (see dirty.h).
 */
#include "dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fastread.h"
#include "journal.h"

void gfs_dirty_init(struct gfs_dirty *d)
{
    memset(d, 0, sizeof *d);
    gfs_u64map_init(&d->map);
}

static void unref(struct gfs_ext *e)
{
    if (e->jf)
        e->jf->live--;
}

static void block_free(struct gfs_dirty_block *db)
{
    for (uint32_t i = 0; i < db->n; i++)
        unref(&db->ext[i]);
    free(db->ext);
    free(db);
}

void gfs_dirty_free(struct gfs_dirty *d)
{
    gfs_fr_inval_all(d->fr); /* the journal data named goes */
    struct gfs_dirty_block *db = d->head;
    while (db) {
        struct gfs_dirty_block *n = db->next;
        block_free(db);
        db = n;
    }
    gfs_u64map_free(&d->map);
    memset(d, 0, sizeof *d);
}

struct gfs_dirty_block *gfs_dirty_touch(struct gfs_dirty *d, uint64_t block, int64_t now_ms)
{
    struct gfs_dirty_block *db = gfs_dirty_get(d, block);
    if (db)
        return db;
    db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->block = block;
    db->first_ms = db->last_ms = now_ms;
    if (gfs_u64map_put(&d->map, block, db) < 0) {
        free(db);
        return NULL;
    }
    db->prev = d->tail;
    if (d->tail)
        d->tail->next = db;
    else
        d->head = db;
    d->tail = db;
    d->nblocks++;
    return db;
}

/* Take db out of the oldest-first list (its links are left stale). */
static void unlink_block(struct gfs_dirty *d, struct gfs_dirty_block *db)
{
    if (db->prev)
        db->prev->next = db->next;
    else
        d->head = db->next;
    if (db->next)
        db->next->prev = db->prev;
    else
        d->tail = db->prev;
}

void gfs_dirty_remove(struct gfs_dirty *d, struct gfs_dirty_block *db)
{
    gfs_fr_inval_block(d->fr, db->block);
    gfs_u64map_del(&d->map, db->block);
    unlink_block(d, db);
    for (uint32_t i = 0; i < db->n; i++)
        d->sectors -= db->ext[i].count;
    d->nblocks--;
    block_free(db);
}

static int reserve(struct gfs_dirty_block *db, uint32_t need)
{
    if (need <= db->cap)
        return 0;
    uint32_t ncap = db->cap ? db->cap * 2 : 4;
    while (ncap < need)
        ncap *= 2;
    struct gfs_ext *n = realloc(db->ext, (size_t)ncap * sizeof *n);
    if (!n)
        return -ENOMEM;
    db->ext = n;
    db->cap = ncap;
    return 0;
}

int gfs_dirty_insert(struct gfs_dirty *d, struct gfs_dirty_block *db, const struct gfs_ext *e)
{
    /* at most one existing extent is split in two, plus the new one */
    int r = reserve(db, db->n + 2);
    if (r < 0)
        return r;
    /* only the granules the new extent overlaps read differently now */
    gfs_fr_inval(d->fr, db->block, e->start, e->count);
    uint32_t s = e->start, end = e->start + e->count;
    struct gfs_ext *x = db->ext;
    uint32_t out = 0, i = 0, n = db->n;
    /* extents entirely before the new one stay */
    while (i < n && x[i].start + x[i].count <= s)
        x[out++] = x[i++];
    /* an extent straddling the new start keeps its head */
    struct gfs_ext tail = {0};
    int have_tail = 0;
    uint32_t ins = out;
    for (; i < n && x[i].start < end; i++) {
        struct gfs_ext cur = x[i];
        uint32_t ce = cur.start + cur.count;
        int keep_head = cur.start < s;
        int keep_tail = ce > end;
        uint32_t lo = cur.start > s ? cur.start : s, hi = ce < end ? ce : end;
        d->sectors -= hi - lo;
        if (keep_tail) {
            tail = cur;
            tail.start = end;
            tail.count = ce - end;
            if (!(tail.flags & GFS_EXT_ZERO))
                tail.data_off += (uint64_t)(end - cur.start) * 512;
            have_tail = 1;
        }
        if (keep_head) {
            cur.count = s - cur.start;
            x[out++] = cur;
            ins = out;
            if (keep_tail && tail.jf)
                tail.jf->live++; /* one extent became two */
        } else if (!keep_tail) {
            unref(&cur);
        }
        /* keep_tail without head: the tail takes over this extent's reference */
    }
    /* the rest (after the new extent) */
    uint32_t rest = n - i;
    /* layout: x[0..ins) kept, new, [tail], rest */
    uint32_t extra = 1 + (uint32_t)have_tail;
    memmove(&x[ins + extra], &x[i], (size_t)rest * sizeof *x);
    x[ins] = *e;
    if (e->jf)
        e->jf->live++;
    if (have_tail)
        x[ins + 1] = tail;
    db->n = ins + extra + rest;
    d->sectors += e->count;
    if (db->first_seq == 0)
        db->first_seq = e->seq;
    if (e->seq > db->max_seq)
        db->max_seq = e->seq;
    return 0;
}

int gfs_dirty_load(struct gfs_dirty *d, struct gfs_dirty_block *db, const struct gfs_ext *e,
                   uint32_t n)
{
    if (db->n)
        return -EINVAL;
    int r = reserve(db, n);
    if (r < 0)
        return r;
    gfs_fr_inval_block(d->fr, db->block);
    memcpy(db->ext, e, (size_t)n * sizeof *e);
    db->n = n;
    uint64_t lo = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].jf)
            e[i].jf->live++;
        d->sectors += e[i].count;
        if (e[i].seq < lo)
            lo = e[i].seq;
        if (e[i].seq > db->max_seq)
            db->max_seq = e[i].seq;
    }
    if (n && db->first_seq == 0)
        db->first_seq = lo;
    return 0;
}

int gfs_dirty_clean(struct gfs_dirty *d, struct gfs_dirty_block *db, uint64_t upto)
{
    gfs_fr_inval_block(d->fr, db->block); /* the stored copy shows where extents go */
    uint32_t out = 0;
    for (uint32_t i = 0; i < db->n; i++) {
        if (db->ext[i].seq <= upto) {
            d->sectors -= db->ext[i].count;
            unref(&db->ext[i]);
        } else {
            db->ext[out++] = db->ext[i];
        }
    }
    db->n = out;
    if (out == 0 && db->pending == 0) {
        gfs_dirty_remove(d, db);
        return 1;
    }
    /* what is left came after upto, superseded writes included */
    if (db->first_seq <= upto)
        db->first_seq = upto + 1;
    return 0;
}

void gfs_dirty_requeue(struct gfs_dirty *d, struct gfs_dirty_block *db, int64_t first_ms)
{
    if (first_ms <= db->first_ms)
        return;
    db->first_ms = first_ms;
    struct gfs_dirty_block *at = d->tail; /* insert after the last block not younger */
    while (at && (at == db || at->first_ms > first_ms))
        at = at->prev;
    if (at == db->prev)
        return; /* already in place */
    unlink_block(d, db);
    /* link after at (NULL: at the head) */
    db->prev = at;
    db->next = at ? at->next : d->head;
    if (db->next)
        db->next->prev = db;
    else
        d->tail = db;
    if (at)
        at->next = db;
    else
        d->head = db;
}

uint32_t gfs_dirty_find(const struct gfs_dirty_block *db, uint32_t sector)
{
    uint32_t lo = 0, hi = db->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (db->ext[mid].start + db->ext[mid].count <= sector)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int gfs_dirty_covers(const struct gfs_dirty_block *db, uint32_t start, uint32_t count)
{
    uint32_t pos = start, end = start + count;
    for (uint32_t i = gfs_dirty_find(db, start); i < db->n && pos < end; i++) {
        const struct gfs_ext *e = &db->ext[i];
        if (e->start + e->count <= pos)
            continue;
        if (e->start > pos)
            return 0;
        pos = e->start + e->count;
    }
    return pos >= end;
}
