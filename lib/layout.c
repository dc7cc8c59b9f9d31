/*
 * layout.c — the profile's blocks copied together in first-read order
 * (layout.h). A copy is compaction's (gfs_compact_copy): the stored bytes,
 * still compressed and sealed, the original write_seq, and the map moved
 * only where no newer write landed; the old copies become dead bytes that
 * compaction reclaims like any other.
 */
#include "layout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "compactor.h"
#include "segment.h"
#include "volmeta.h"
#include "volume_internal.h"

#define GET_GAP (256u * 1024) /* blocks of one segment closer than this share a GET */

static int due(const struct glidefs_volume *v, int64_t now_ms)
{
    const struct gfs_wake_state *w = &v->wake;
    if (!w->enabled || w->rec.n < w->laid + GFS_LAYOUT_MIN)
        return 0;
    return w->rec.done || now_ms >= w->rec.until_ms ||
           now_ms >= w->rec.last_new_ms + GFS_LAYOUT_QUIET_MS;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* by (segment, offset): the order the fetch reads them in */
static int cmp_loc(const void *a, const void *b)
{
    const struct gfs_moved *x = *(struct gfs_moved *const *)a, *y = *(struct gfs_moved *const *)b;
    if (x->old.seg != y->old.seg)
        return x->old.seg < y->old.seg ? -1 : 1;
    return x->old.offset < y->old.offset ? -1 : x->old.offset > y->old.offset;
}

/* Fetch the payloads of mv[0..n) (lock held; dropped for the GETs): runs
 * of one segment within GET_GAP of each other share a ranged GET. A block
 * whose bytes fail their check is skipped (never copy damage forward).
 * keys[i] gets the key of mv[i]'s segment on sealed volumes. */
static int fetch(struct glidefs_volume *v, struct gfs_moved *mv, uint32_t n, uint8_t **payloads,
                 struct gfs_sealkey *keys)
{
    CLEANUP_FREE struct gfs_moved **ord = malloc(n * sizeof *ord);
    if (!ord)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        ord[i] = &mv[i];
    qsort(ord, n, sizeof *ord, cmp_loc);
    int sealed = gfs_codec_sealed(v->codec);
    for (uint32_t i = 0; i < n;) {
        uint32_t sg = ord[i]->old.seg;
        uint64_t lo = ord[i]->old.offset, hi = lo + gfs_seg_span(ord[i]->old.length,
                                                                ord[i]->old.flags);
        uint32_t j = i + 1;
        while (j < n && ord[j]->old.seg == sg && ord[j]->old.offset <= hi + GET_GAP) {
            uint64_t end = ord[j]->old.offset + gfs_seg_span(ord[j]->old.length, ord[j]->old.flags);
            if (end > hi)
                hi = end;
            j++;
        }
        const struct gfs_bm_seg *s = &v->sv.bm.segs[sg];
        uint64_t epoch = s->epoch & GFS_EPOCH_MASK, seq = s->seq;
        uint32_t key_gen = s->key_gen;
        pthread_mutex_unlock(&v->lock);
        char key[512];
        gfs_seg_key(key, sizeof key, v->name, epoch, seq);
        struct gfs_sealkey k;
        memset(&k, 0, sizeof k);
        int r = sealed ? gfs_codec_sealkey(v->codec, key_gen, key, &k) : 0;
        CLEANUP_FREE uint8_t *buf = r == 0 ? malloc(hi - lo) : NULL;
        size_t got = 0;
        if (r == 0)
            r = buf ? v->store->ops->get_range(v->store, key, lo, (size_t)(hi - lo), buf, &got)
                    : -ENOMEM;
        pthread_mutex_lock(&v->lock);
        if (r < 0) {
            gfs_sealkey_wipe(&k);
            gfs_warn(&v->log, "%s: layout cannot read %s: %s", v->name, key, glidefs_strerror(r));
            return r;
        }
        for (uint32_t x = i; x < j; x++) {
            struct gfs_moved *m = ord[x];
            uint32_t idx = (uint32_t)(m - mv);
            uint64_t off = m->old.offset - lo, span = gfs_seg_span(m->old.length, m->old.flags);
            if (off + span > got ||
                gfs_seg_payload_check(buf + off, span, m->old.length, m->old.flags, m->old.crc,
                                      &m->old.crc) < 0) {
                gfs_err(&v->log, "%s: block %" PRIu64 " in %s fails its checksum; not moved",
                        v->name, m->block, key);
                atomic_fetch_add_explicit(&v->sv.checksum_errors, 1, memory_order_relaxed);
                m->skip = 1;
                continue;
            }
            payloads[idx] = malloc(m->old.length);
            if (!payloads[idx]) {
                gfs_sealkey_wipe(&k);
                return -ENOMEM;
            }
            memcpy(payloads[idx], buf + off, m->old.length);
            if (sealed) {
                keys[idx] = k;
                m->from = &keys[idx];
            }
        }
        gfs_sealkey_wipe(&k);
        i = j;
    }
    return 0;
}

/* Copy mv[0..n) (at most one segment's worth) into a new segment. */
static int copy_batch(struct glidefs_volume *v, struct gfs_moved *mv, uint32_t n,
                      uint64_t *moved)
{
    CLEANUP_FREE uint8_t **payloads = calloc(n, sizeof *payloads);
    CLEANUP_FREE struct gfs_sealkey *keys = calloc(n, sizeof *keys);
    if (!payloads || !keys)
        return -ENOMEM;
    int r = fetch(v, mv, n, payloads, keys);
    /* the ones whose payload is damaged stay where they are */
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (mv[i].skip || !payloads[i])
            continue;
        if (m != i) {
            mv[m] = mv[i];
            payloads[m] = payloads[i];
            payloads[i] = NULL;
            if (mv[m].from) {
                keys[m] = keys[i];
                mv[m].from = &keys[m];
            }
        }
        m++;
    }
    uint64_t bytes = 0;
    if (r == 0 && m)
        r = gfs_compact_copy(v, mv, m, payloads, &bytes);
    for (uint32_t i = 0; i < n; i++) {
        free(payloads[i]);
        gfs_sealkey_wipe(&keys[i]);
    }
    if (r == 0) {
        *moved += m;
        v->st.compaction_bytes_rewritten += bytes;
    }
    return r;
}

static int step(struct glidefs_volume *v)
{
    struct gfs_wake_state *w = &v->wake;
    uint32_t from = w->laid, to = w->rec.n;
    if (to - from > GFS_LAYOUT_CHUNK)
        to = from + GFS_LAYOUT_CHUNK;
    w->laid = to; /* looked at, whatever comes of it */
    uint32_t nsegs = v->sv.bm.nsegs;
    CLEANUP_FREE struct gfs_moved *mv = calloc(to - from, sizeof *mv);
    CLEANUP_FREE uint32_t *segs = calloc(to - from, sizeof *segs);
    if (!mv || !segs)
        return -ENOMEM;
    uint32_t n = 0, known = 0;
    for (uint32_t i = from; i < to; i++) {
        uint64_t b = w->rec.blocks[i];
        known += w->nloaded && gfs_blkset_get(&w->loaded, b) >= 0;
        struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
        if (e.seg == GFS_BM_NONE || e.seg == GFS_BM_HOLE || e.seg >= nsegs)
            continue; /* zeroes, or still only in the journal: nothing to fetch */
        const struct gfs_bm_seg *s = &v->sv.bm.segs[e.seg];
        if (s->deleted || (s->epoch >> GFS_ORIGIN_SHIFT) != v->meta.depth)
            continue; /* an ancestor's: its own layout serves us */
        mv[n] = (struct gfs_moved){.block = b, .old = e};
        segs[n++] = e.seg;
    }
    uint32_t per = v->sync.blocks_per_batch;
    if (n < GFS_LAYOUT_MIN || per == 0)
        return 0;
    /* only a set of blocks that recurs: at least half of them in the
     * profile of the last session too (a boot again, not a one-off scan
     * or random reads, which would be copied at every open) */
    if (known * 2 < to - from)
        return 0;
    /* dense already (a layout done before, or written in this order)? */
    qsort(segs, n, sizeof *segs, cmp_u32);
    uint32_t distinct = 1;
    for (uint32_t i = 1; i < n; i++)
        distinct += segs[i] != segs[i - 1];
    uint32_t ideal = (n + per - 1) / per;
    if (distinct <= ideal + 1)
        return 0;
    uint64_t moved = 0;
    int r = 0;
    for (uint32_t k = 0; k < n && r == 0; k += per)
        r = copy_batch(v, mv + k, n - k < per ? n - k : per, &moved);
    v->st.layout_blocks += moved;
    if (moved)
        gfs_info(&v->log, "%s: layout: %" PRIu64 " blocks of the access profile (positions %" PRIu32
                 "-%" PRIu32 ", spread over %" PRIu32 " segments) copied together into %" PRIu32
                 " segments", v->name, moved, from, to - 1, distinct, ideal);
    return r < 0 ? r : moved > 0;
}

int gfs_layout_step(struct glidefs_volume *v)
{
    int64_t now = gfs_now_ms();
    if (!v->owner || v->fenced || now < v->comp.rate_next_ms || !due(v, now))
        return 0;
    uint64_t before = v->st.compaction_bytes_rewritten;
    int r = step(v);
    /* what it uploaded, at compaction's rate */
    uint64_t sent = v->st.compaction_bytes_rewritten - before;
    if (sent && v->comp.rate_bps)
        v->comp.rate_next_ms = gfs_now_ms() + (int64_t)(sent * 1000 / v->comp.rate_bps);
    return r;
}
