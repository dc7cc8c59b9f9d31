/*
 * blockmap.c — the block map and segment table (see blockmap.h). Segments are
 * added in (epoch, seq) order, so the table is sorted and lookups bisect.
 */
#include "blockmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int gfs_bm_init(struct gfs_blockmap *bm, uint64_t nblocks)
{
    memset(bm, 0, sizeof *bm);
    bm->segcap = 64;
    bm->segs = calloc(bm->segcap, sizeof *bm->segs);
    if (!bm->segs)
        return -ENOMEM;
    bm->nsegs = 1; /* index 0 is GFS_BM_NONE */
    return gfs_bm_grow(bm, nblocks);
}

void gfs_bm_free(struct gfs_blockmap *bm)
{
    for (size_t i = 0; i < bm->nchunks; i++)
        free(bm->chunks[i]);
    free(bm->chunks);
    free(bm->segs);
    memset(bm, 0, sizeof *bm);
}

int gfs_bm_grow(struct gfs_blockmap *bm, uint64_t nblocks)
{
    if (nblocks < bm->nblocks)
        return -EINVAL;
    size_t need = (size_t)((nblocks + GFS_BM_CHUNK - 1) >> GFS_BM_CHUNK_SHIFT);
    if (need > bm->nchunks) {
        struct gfs_bm_entry **c = realloc(bm->chunks, need * sizeof *c);
        if (!c)
            return -ENOMEM;
        memset(c + bm->nchunks, 0, (need - bm->nchunks) * sizeof *c);
        bm->chunks = c;
        bm->nchunks = need;
    }
    bm->nblocks = nblocks;
    return 0;
}

struct gfs_bm_entry gfs_bm_get(const struct gfs_blockmap *bm, uint64_t b)
{
    struct gfs_bm_entry none = {0};
    if (b >= bm->nblocks)
        return none;
    const struct gfs_bm_entry *c = bm->chunks[b >> GFS_BM_CHUNK_SHIFT];
    return c ? c[b & (GFS_BM_CHUNK - 1)] : none;
}

int gfs_bm_set(struct gfs_blockmap *bm, uint64_t b, const struct gfs_bm_entry *e)
{
    if (b >= bm->nblocks)
        return -EINVAL;
    struct gfs_bm_entry **cp = &bm->chunks[b >> GFS_BM_CHUNK_SHIFT];
    if (!*cp) {
        if (e->seg == GFS_BM_NONE)
            return 0;
        *cp = calloc(GFS_BM_CHUNK, sizeof **cp);
        if (!*cp)
            return -ENOMEM;
    }
    struct gfs_bm_entry *old = &(*cp)[b & (GFS_BM_CHUNK - 1)];
    if (old->seg != GFS_BM_NONE && old->seg != GFS_BM_HOLE && old->seg < bm->nsegs)
        bm->segs[old->seg].live_bytes -= old->length;
    if (e->seg != GFS_BM_NONE && e->seg != GFS_BM_HOLE && e->seg < bm->nsegs)
        bm->segs[e->seg].live_bytes += e->length;
    if (old->seg == GFS_BM_NONE && e->seg != GFS_BM_NONE)
        bm->written_blocks++;
    else if (old->seg != GFS_BM_NONE && e->seg == GFS_BM_NONE)
        bm->written_blocks--;
    *old = *e;
    return 0;
}

static int cmp_es(uint64_t ae, uint64_t as, uint64_t be, uint64_t bs)
{
    if (ae != be)
        return ae < be ? -1 : 1;
    if (as != bs)
        return as < bs ? -1 : 1;
    return 0;
}

int64_t gfs_bm_seg_find(const struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq)
{
    uint32_t lo = 1, hi = bm->nsegs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = cmp_es(bm->segs[mid].epoch, bm->segs[mid].seq, epoch, seq);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

int64_t gfs_bm_seg_add(struct gfs_blockmap *bm, uint64_t epoch, uint64_t seq, uint64_t total_bytes)
{
    int64_t f = gfs_bm_seg_find(bm, epoch, seq);
    if (f >= 0)
        return f;
    /* segments arrive in key order; keep the table sorted for bisection */
    if (bm->nsegs > 1) {
        const struct gfs_bm_seg *last = &bm->segs[bm->nsegs - 1];
        if (cmp_es(last->epoch, last->seq, epoch, seq) > 0)
            return -EINVAL;
    }
    if (bm->nsegs >= GFS_BM_HOLE - 1)
        return -ENOSPC;
    if (bm->nsegs == bm->segcap) {
        uint32_t ncap = bm->segcap * 2;
        struct gfs_bm_seg *s = realloc(bm->segs, (size_t)ncap * sizeof *s);
        if (!s)
            return -ENOMEM;
        bm->segs = s;
        bm->segcap = ncap;
    }
    struct gfs_bm_seg *s = &bm->segs[bm->nsegs];
    s->epoch = epoch;
    s->seq = seq;
    s->live_bytes = 0;
    s->total_bytes = total_bytes;
    s->dead_since_ms = 0;
    s->deleted = 0;
    return bm->nsegs++;
}
