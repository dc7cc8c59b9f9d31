/*
 * blockio.c — one block's bytes from the store, into the clean cache, and
 * assembled from a stored copy plus journal data (blockio.h).
 */
#include "blockio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "codec.h"
#include "journal.h"
#include "volume_internal.h"

int gfs_blk_check_k(const struct gfs_view *sv, uint64_t b, const struct gfs_bm_entry *e,
                    const struct gfs_sealkey *k, const uint8_t *stored, size_t got, void *buf)
{
    int plain = gfs_blk_plain(e, sv->bs);
    int sealed = gfs_codec_sealed(sv->codec);
    if (sealed) {
        /* The AEAD tag authenticates every stored byte the decode reads
         * (and the decode refuses an unsealed payload on a sealed volume):
         * the CRC-32C the map also carries (written for the format, which
         * older readers check) would repeat that check for another pass over
         * the payload, a third of what opening it costs. */
        if (plain || !stored || got != gfs_seg_span(e->length, e->flags) || !k ||
            k->gen != e->key_gen)
            return -EIO;
    } else if (gfs_seg_payload_check(stored, got, e->length, e->flags, e->crc, NULL) < 0) {
        return -EIO;
    }
    if (plain) {
        if ((const void *)stored != buf)
            memcpy(buf, stored, sv->bs);
        return 0;
    }
    return gfs_codec_decode_k(sv->codec, k, b, e->write_seq, e->flags & GFS_SEGF_CODED, stored,
                              e->length, buf) < 0 ? -EIO : 0;
}

int gfs_blk_check(const struct gfs_view *sv, uint64_t b, const struct gfs_bm_entry *e,
                  const char *segname, const uint8_t *stored, size_t got, void *buf)
{
    if (!gfs_codec_sealed(sv->codec))
        return gfs_blk_check_k(sv, b, e, NULL, stored, got, buf);
    struct gfs_sealkey k;
    int r = gfs_codec_sealkey(sv->codec, e->key_gen, segname, &k);
    if (r == 0)
        r = gfs_blk_check_k(sv, b, e, &k, stored, got, buf);
    gfs_sealkey_wipe(&k);
    return r < 0 ? -EIO : 0;
}

int gfs_blk_fetch_at(struct gfs_view *sv, uint64_t b, const struct gfs_bm_entry *e,
                     uint64_t epoch, uint64_t seq, void *buf)
{
    atomic_fetch_add_explicit(&sv->blocks_fetched, 1, memory_order_relaxed);
    char key[512];
    gfs_seg_key(key, sizeof key, gfs_view_origin_name(sv, (uint32_t)(epoch >> GFS_ORIGIN_SHIFT)),
                epoch & GFS_EPOCH_MASK, seq);
    if (e->length == 0 || e->length > gfs_codec_max_stored(sv->codec)) {
        gfs_err(sv->log, "%s: block %" PRIu64 " in %s has an impossible length", sv->name, b,
                key);
        return -EIO;
    }
    /* plain blocks without a trailer land in buf directly; the rest go
     * through a scratch buffer */
    uint64_t span = gfs_seg_span(e->length, e->flags);
    int direct = gfs_blk_plain(e, sv->bs) && !(e->flags & GFS_SEGF_TRAILER);
    CLEANUP_FREE uint8_t *scratch = direct ? NULL : malloc(span);
    uint8_t *dst = direct ? buf : scratch;
    if (!dst)
        return -ENOMEM;
    size_t got = 0;
    int r = sv->store->ops->get_range(sv->store, key, e->offset, span, dst, &got);
    if (r == -ENOENT) {
        /* compacted away: the callers look for the block's new place (or
         * report a loss), so no error yet */
        gfs_debug(sv->log, "%s: block %" PRIu64 ": %s is gone from the store", sv->name, b, key);
        return r;
    }
    if (r < 0) {
        gfs_err(sv->log, "%s: reading block %" PRIu64 " from %s failed: %s", sv->name, b, key,
                glidefs_strerror(r));
        return r;
    }
    if (gfs_blk_check(sv, b, e, key, dst, got, buf) < 0) {
        gfs_err(sv->log, "%s: block %" PRIu64 " in %s fails its checksum or authentication; "
                "not served", sv->name, b, key);
        atomic_fetch_add_explicit(&sv->checksum_errors, 1, memory_order_relaxed);
        memset(buf, 0, sv->bs);
        return -EIO;
    }
    return 0;
}

int gfs_blk_fetch(struct gfs_view *sv, pthread_mutex_t *lock, uint64_t b,
                  const struct gfs_bm_entry *e, void *buf)
{
    if (e->seg == GFS_BM_NONE || e->seg == GFS_BM_HOLE) {
        memset(buf, 0, sv->bs);
        return 0;
    }
    if (lock)
        pthread_mutex_lock(lock);
    int bad = e->seg >= sv->bm.nsegs;
    uint64_t epoch = bad ? 0 : sv->bm.segs[e->seg].epoch;
    uint64_t seq = bad ? 0 : sv->bm.segs[e->seg].seq;
    if (lock)
        pthread_mutex_unlock(lock);
    if (bad) {
        gfs_err(sv->log, "%s: block %" PRIu64 " names no segment", sv->name, b);
        return -EIO;
    }
    return gfs_blk_fetch_at(sv, b, e, epoch, seq, buf);
}

/* A renumbering of the segment table during the pwrite dooms the claim
 * (gfs_cache_renumber). */
void gfs_blk_cache_fill(struct glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e,
                        const uint64_t seg_id[2], const void *buf)
{
    uint32_t gen;
    pthread_mutex_lock(&v->lock);
    struct gfs_blockmap *bm = &v->sv.bm;
    struct gfs_bm_entry cur = gfs_bm_get(bm, b);
    if ((!seg_id && cur.seg != e->seg) || cur.offset != e->offset || cur.seg == GFS_BM_NONE ||
        cur.seg == GFS_BM_HOLE || cur.seg >= bm->nsegs ||
        (seg_id && (bm->segs[cur.seg].epoch != seg_id[0] || bm->segs[cur.seg].seq != seg_id[1]))) {
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

int gfs_block_assemble(struct gfs_view *sv, const struct gfs_cache *cache,
                       const struct gfs_block_plan *p, uint8_t *dst, uint8_t *blk)
{
    size_t len = (size_t)p->n * 512;
    switch (p->base) {
    case GFS_BASE_NONE:
        break;
    case GFS_BASE_ZERO:
        memset(dst, 0, len);
        break;
    case GFS_BASE_CACHE:
        if (pread(cache->fd, dst, len, (off_t)(p->b * sv->bs + (uint64_t)p->s * 512)) !=
            (ssize_t)len)
            return 1;
        break;
    case GFS_BASE_STORE: {
        if (p->epoch == 0 && p->seq == 0) {
            gfs_err(sv->log, "%s: block %" PRIu64 " names no segment", sv->name, p->b);
            return -EIO;
        }
        int r = gfs_blk_fetch_at(sv, p->b, &p->e, p->epoch, p->seq, blk);
        if (r < 0)
            return r;
        if (blk != dst)
            memcpy(dst, blk + (size_t)p->s * 512, len);
        break;
    }
    }
    for (uint32_t i = 0; i < p->npieces; i++) {
        const struct gfs_piece *x = &p->pieces[i];
        uint8_t *to = dst + (size_t)(x->start - p->s) * 512;
        size_t n = (size_t)x->count * 512;
        if (!x->jf)
            memset(to, 0, n);
        else if (pread(x->jf->fd, to, n, (off_t)x->off) != (ssize_t)n)
            return -EIO;
    }
    if (p->base == GFS_BASE_CACHE && !gfs_cache_still(cache, p->slot, p->b, p->gen))
        return 1;
    return 0;
}
