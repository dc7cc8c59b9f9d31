/*
 * compactor.c — storage efficiency: overwrites and TRIM leave dead bytes in
 * old segments. A step picks segments whose live fraction fell below
 * compaction.min_live_pct (emptiest first), copies their live blocks as they
 * are stored (still sealed and compressed: the seal binds the volume and
 * block, not the segment) into new segments, re-points the map where it
 * still points at the old copy, stores a manifest, and deletes segments that
 * no longer hold anything once a manifest written after they died exists and
 * compaction.grace_ms has passed (default 0: a reader that still looks for a
 * deleted segment finds the block's new place, volume_io.c read_block). Old
 * manifests beyond keep_manifests go too.
 *
 * A step starts every compaction.interval_s, on demand, and, in between, as
 * soon as the segments holding live data store more than
 * compaction.max_stored_pct of it (then emptiest first down to about halfway,
 * at most rate_mb_s of copies and manifests) or dead segments can be dated,
 * covered by a manifest or deleted.
 *
 * It runs in the syncer thread when that has nothing due, so it never races
 * an upload for segment numbers, never runs during a drain, and a drain never
 * waits on it for more than one step. A fenced node never gets here: only
 * the lease holder compacts and deletes. Crash-safety: a segment is deleted
 * only when a stored manifest plus the segments after it no longer need it,
 * and the copies carry the same write_seq as the originals, so a replay in
 * any order keeps the newest write.
 */
#include "compactor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "manifest.h"
#include "cleanup.h"
#include "lease_state.h"
#include "segment.h"
#include "segwriter.h"
#include "volmeta.h"
#include "volume_internal.h"

/* A segment compaction must leave alone: a snapshot names it, or it is of
 * an epoch held for the fenced node that wrote it (snapshot.c,
 * gfs_fence_hold). Lock held. */
static int kept(const struct glidefs_volume *v, const struct gfs_bm_seg *s)
{
    return gfs_pinned(v, s->epoch, s->seq) ||
           ((s->epoch >> GFS_ORIGIN_SHIFT) == v->meta.depth &&
            gfs_held_epoch(v, s->epoch & GFS_EPOCH_MASK));
}


/* The keys of the segments one rewrite reads (wiped when it returns). */
struct srckeys {
    struct gfs_sealkey *k;
    uint32_t n;
};

static void srckeys_free(struct srckeys *sk)
{
    for (uint32_t i = 0; sk->k && i < sk->n; i++)
        gfs_sealkey_wipe(&sk->k[i]);
    free(sk->k);
}

/* Is s sealed under an older data key generation than new segments use?
 * Legacy segments (key_gen 0) count as generation 1: re-sealing them would
 * not undo the seals their key has seen, so they are left alone until a
 * rotation. */
static int stale_key(const struct glidefs_volume *v, const struct gfs_bm_seg *s)
{
    return gfs_key_gen_older(s->key_gen, gfs_codec_key_gen(v->codec));
}

struct cand {
    uint32_t seg;
    uint64_t live, total;
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    /* emptiest first: live/total ascending, compared without division */
    unsigned __int128 l = (unsigned __int128)x->live * y->total;
    unsigned __int128 r = (unsigned __int128)y->live * x->total;
    return l < r ? -1 : l > r;
}

struct pair {
    struct gfs_moved m;
    uint8_t *p;
};

static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    return x->m.block < y->m.block ? -1 : x->m.block > y->m.block;
}

int gfs_compact_copy(struct glidefs_volume *v, struct gfs_moved *mv, uint32_t n,
                     uint8_t **payloads, uint64_t *rewritten)
{
    /* a segment lists its blocks in increasing order */
    CLEANUP_FREE struct pair *pr = malloc(n * sizeof *pr);
    if (!pr)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        pr[i] = (struct pair){mv[i], payloads[i]};
    qsort(pr, n, sizeof *pr, cmp_pair);
    for (uint32_t i = 0; i < n; i++) {
        mv[i] = pr[i].m;
        payloads[i] = pr[i].p;
    }
    uint64_t epoch = v->epoch, seq = v->sync.next_seg_seq++;
    pthread_mutex_unlock(&v->lock);

    /* the payloads as stored, still compressed; sealed ones are sealed
     * again under the new segment's key (the seal binds volume, block and
     * version; the key, the segment). Copies gain a CRC trailer. */
    size_t room = 0;
    for (uint32_t i = 0; i < n; i++)
        room += gfs_seg_span(mv[i].old.length, GFS_SEGF_TRAILER);
    struct gfs_segw w;
    int r = gfs_segw_begin(&w, v->codec, v->name, epoch, seq, n, room);
    for (uint32_t i = 0; i < n && r == 0; i++) {
        struct gfs_seg_entry se;
        /* the CRC was checked when read (rewrite), the seal is checked
         * by the reseal */
        r = gfs_segw_add_stored(&w, mv[i].from, mv[i].block, mv[i].old.write_seq, payloads[i],
                                mv[i].old.length, mv[i].old.flags, mv[i].old.crc, v->bs, &se);
        if (r == 0) {
            mv[i].new_offset = se.offset;
            mv[i].old.crc = se.crc; /* the copy's (a reseal changes the bytes) */
        } else if (r == -EIO) {
            /* never copy damage forward: that block stays where it is */
            gfs_err(&v->log, "%s: block %" PRIu64 " fails authentication; not moved", v->name,
                    mv[i].block);
            atomic_fetch_add_explicit(&v->sv.checksum_errors, 1, memory_order_relaxed);
            mv[i].skip = 1;
            r = 0;
        }
    }
    if (r == 0)
        r = gfs_segw_finish(&w, v->bs, v->meta.data_uuid);
    if (r == 0)
        r = gfs_segw_put(&w, v->store);
    pthread_mutex_lock(&v->lock);
    if (r < 0) {
        gfs_warn(&v->log, "%s: compaction upload of %s failed: %s", v->name, w.name,
                 glidefs_strerror(r));
        gfs_segw_free(&w);
        return r;
    }
    int64_t si = gfs_segw_commit(v, &w);
    gfs_segw_free(&w);
    if (si < 0)
        return (int)si;
    for (uint32_t i = 0; i < n; i++) {
        if (mv[i].skip)
            continue;
        struct gfs_bm_entry cur = gfs_bm_get(&v->sv.bm, mv[i].block);
        if (cur.seg != mv[i].old.seg || cur.offset != mv[i].old.offset)
            continue; /* a newer write landed meanwhile: it wins, the copy is garbage */
        struct gfs_bm_entry e = cur;
        e.seg = (uint32_t)si;
        e.offset = mv[i].new_offset;
        e.flags |= GFS_SEGF_TRAILER;
        e.crc = mv[i].old.crc;
        gfs_bm_set(&v->sv.bm, mv[i].block, &e);
        gfs_ckpt_mark(&v->ckpt, mv[i].block);
        gfs_cache_drop(&v->cache, mv[i].block); /* cached under the old location */
        *rewritten += e.length;
    }
    return 0;
}

/* Rewrite candidate segments (lock held; dropped for I/O). Two ways to
 * choose: below min_live_pct (timer and on-demand cycles), or, with a ratio
 * target (bytes the partly live segments may keep in total), any segment
 * with dead bytes, emptiest first, until the target is met: emptiest first
 * moves the fewest live bytes per dead byte reclaimed, and no fixed live
 * threshold leaves up to 1/threshold x behind. */
static int rewrite(struct glidefs_volume *v, uint64_t budget, uint64_t target,
                   struct glidefs_compact_result *res)
{
    uint32_t nsegs = v->sv.bm.nsegs;
    CLEANUP_FREE struct cand *cands = calloc(nsegs, sizeof *cands);
    CLEANUP_FREE uint8_t *is_cand = calloc(nsegs, 1);
    if (!cands || !is_cand)
        return -ENOMEM;
    uint32_t nc = 0;
    uint64_t stored = 0;
    for (uint32_t i = 1; i < nsegs; i++) {
        struct gfs_bm_seg *s = &v->sv.bm.segs[i];
        if (s->deleted || s->total_bytes == 0 || s->live_bytes == 0)
            continue;
        if ((s->epoch >> GFS_ORIGIN_SHIFT) != v->meta.depth)
            continue; /* an ancestor's segment: shared, never ours to rewrite */
        if (target && kept(v, s))
            continue; /* a snapshot keeps it: a copy would reclaim nothing */
        stored += s->total_bytes;
        /* a segment under an old data key is rewritten however full it is
         * (a rotation: the old key must stop mattering) */
        if (!stale_key(v, s) &&
            (target ? s->live_bytes >= s->total_bytes
                    : s->live_bytes * 100 >= (uint64_t)v->comp.min_live_pct * s->total_bytes))
            continue;
        cands[nc++] = (struct cand){i, s->live_bytes, s->total_bytes};
    }
    if (nc == 0 || (target && stored <= target))
        return 0;
    qsort(cands, nc, sizeof *cands, cmp_cand);
    uint64_t sum = 0;
    uint32_t take = 0;
    while (take < nc && (take == 0 || sum + cands[take].live <= budget) &&
           (!target || stored > target)) {
        sum += cands[take].live;
        stored -= cands[take].total - cands[take].live; /* the copy stays, the rest goes */
        take++;
    }
    for (uint32_t i = 0; i < take; i++)
        is_cand[cands[i].seg] = 1;

    /* the blocks that live in them: one pass over the map */
    size_t cap = 64, nm = 0;
    CLEANUP_FREE struct gfs_moved *mv = malloc(cap * sizeof *mv);
    if (!mv)
        return -ENOMEM;
    struct gfs_bm_entry ce;
    for (uint64_t b = 0; gfs_bm_next(&v->sv.bm, &b, &ce); b++) {
        {
            uint32_t sg = ce.seg;
            if (sg == GFS_BM_NONE || sg == GFS_BM_HOLE || sg >= nsegs || !is_cand[sg])
                continue;
            if (nm == cap) {
                struct gfs_moved *nmv = realloc(mv, 2 * cap * sizeof *nmv);
                if (!nmv)
                    return -ENOMEM;
                mv = nmv;
                cap *= 2;
            }
            mv[nm] = (struct gfs_moved){.block = b, .old = ce};
            nm++;
        }
    }
    /* fetch each old segment once, then pack the copies into new segments */
    uint32_t per = v->sync.blocks_per_batch;
    CLEANUP_FREE uint8_t **payloads = calloc(per, sizeof *payloads);
    CLEANUP_FREE struct gfs_moved *batch = calloc(per, sizeof *batch);
    __attribute__((cleanup(srckeys_free))) struct srckeys sk = {calloc(take, sizeof *sk.k), take};
    if (!payloads || !batch || !sk.k)
        return -ENOMEM;
    int sealed = gfs_codec_sealed(v->codec);
    uint32_t nb = 0;
    int r = 0;
    uint64_t rewritten = 0;
    for (uint32_t ci = 0; ci < take && r == 0; ci++) {
        uint32_t sg = cands[ci].seg;
        uint64_t epoch = v->sv.bm.segs[sg].epoch & GFS_EPOCH_MASK, seq = v->sv.bm.segs[sg].seq;
        size_t total = (size_t)v->sv.bm.segs[sg].total_bytes;
        uint32_t key_gen = v->sv.bm.segs[sg].key_gen;
        pthread_mutex_unlock(&v->lock);
        char key[512];
        gfs_seg_key(key, sizeof key, v->name, epoch, seq);
        if (sealed && gfs_codec_sealkey(v->codec, key_gen, key, &sk.k[ci]) < 0) {
            pthread_mutex_lock(&v->lock);
            gfs_err(&v->log, "%s: compaction has no key for %s (generation %u); left alone",
                    v->name, key, key_gen);
            continue;
        }
        CLEANUP_FREE uint8_t *obj = malloc(total);
        size_t got = 0;
        r = obj ? v->store->ops->get_range(v->store, key, 0, total, obj, &got) : -ENOMEM;
        pthread_mutex_lock(&v->lock);
        if (r < 0 || got != total) {
            gfs_warn(&v->log, "%s: compaction cannot read %s: %s", v->name, key,
                     glidefs_strerror(r < 0 ? r : -EIO));
            r = r < 0 ? r : -EIO;
            break;
        }
        for (size_t i = 0; i < nm && r == 0; i++) {
            if (mv[i].old.seg != sg)
                continue;
            struct gfs_bm_entry *e = &mv[i].old;
            uint64_t span = gfs_seg_span(e->length, e->flags);
            /* the CRC, from the trailer or the map, goes into the copy's */
            if ((uint64_t)e->offset + span > total ||
                gfs_seg_payload_check(obj + e->offset, span, e->length, e->flags, e->crc,
                                      &e->crc) < 0) {
                /* never copy damage forward: leave that block where it is */
                gfs_err(&v->log, "%s: block %" PRIu64 " in %s fails its checksum; not moved",
                        v->name, mv[i].block, key);
                atomic_fetch_add_explicit(&v->sv.checksum_errors, 1, memory_order_relaxed);
                continue;
            }
            batch[nb] = mv[i];
            batch[nb].from = sealed ? &sk.k[ci] : NULL;
            payloads[nb] = malloc(e->length);
            if (!payloads[nb]) {
                r = -ENOMEM;
                break;
            }
            memcpy(payloads[nb], obj + e->offset, e->length);
            nb++;
            if (nb == per) {
                r = gfs_compact_copy(v, batch, nb, payloads, &rewritten);
                for (uint32_t j = 0; j < nb; j++)
                    free(payloads[j]);
                nb = 0;
            }
        }
        if (r == 0)
            res->segments_rewritten++;
    }
    if (nb) {
        int r2 = gfs_compact_copy(v, batch, nb, payloads, &rewritten);
        if (r == 0)
            r = r2;
        for (uint32_t j = 0; j < nb; j++)
            free(payloads[j]);
    }
    res->bytes_rewritten += rewritten;
    v->st.compaction_bytes_rewritten += rewritten;
    return r;
}

/* Date segments that hold nothing live any more (lock held). Returns how
 * many are dead and not deleted. */
static int mark_dead(struct glidefs_volume *v)
{
    int64_t now = gfs_now_ms();
    int n = 0;
    for (uint32_t i = 1; i < v->sv.bm.nsegs; i++) {
        struct gfs_bm_seg *s = &v->sv.bm.segs[i];
        if (s->deleted || s->live_bytes != 0 || s->total_bytes == 0)
            continue;
        if ((s->epoch >> GFS_ORIGIN_SHIFT) != v->meta.depth || kept(v, s))
            continue; /* shared with an ancestor, held by a snapshot or for a fenced node */
        if (!s->dead_since_ms) {
            s->dead_since_ms = now;
            s->dead_gen = v->ckpt.gen;
        }
        n++;
    }
    return n;
}

/* Delete what nothing needs any more (lock held; dropped for I/O): with as
 * few requests as the store allows (gfs_objstore_del_many: DeleteObjects of
 * up to 1000 keys on S3). A batch that fails is kept for a later step whole
 * (deleting a key twice is harmless). */
static void reap(struct glidefs_volume *v, struct glidefs_compact_result *res)
{
    int64_t now = gfs_now_ms();
    int confirmed = 0; /* the lease re-read before the first delete */
    uint32_t *idx = NULL;
    char **keys = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t i = 1; i < v->sv.bm.nsegs; i++) {
        struct gfs_bm_seg *s = &v->sv.bm.segs[i];
        if (s->deleted || s->live_bytes != 0 || s->total_bytes == 0 || !s->dead_since_ms)
            continue;
        /* a manifest stored after it died must exist, and readers had time */
        if (v->ckpt.gen <= s->dead_gen || now - s->dead_since_ms < v->comp.grace_ms)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            uint32_t *ni = realloc(idx, nc * sizeof *ni);
            if (ni)
                idx = ni;
            char **nk = ni ? realloc(keys, nc * sizeof *nk) : NULL;
            if (!nk)
                break; /* the rest next time */
            keys = nk;
            cap = nc;
        }
        char key[512];
        gfs_seg_key(key, sizeof key, v->name, s->epoch & GFS_EPOCH_MASK, s->seq);
        if (!(keys[n] = strdup(key)))
            break;
        idx[n++] = i;
    }
    if (n) {
        pthread_mutex_unlock(&v->lock);
        int cr = gfs_own_confirm(v);
        pthread_mutex_lock(&v->lock);
        if (cr == 0) { /* else deposed (or cannot tell): delete nothing */
            confirmed = 1;
            for (size_t k = 0; k < n; k++)
                v->sv.bm.segs[idx[k]].deleted = 1;
            pthread_mutex_unlock(&v->lock);
            size_t failed = 0;
            int r = gfs_objstore_del_many(v->store, (const char *const *)keys, n, &failed);
            pthread_mutex_lock(&v->lock);
            for (size_t k = 0; k < n; k++) {
                struct gfs_bm_seg *s = &v->sv.bm.segs[idx[k]];
                if (r < 0) {
                    s->deleted = 0;
                    continue;
                }
                res->segments_deleted++;
                res->bytes_reclaimed += s->total_bytes;
                v->st.segments_deleted++;
                v->st.bytes_reclaimed += s->total_bytes;
            }
            if (r < 0)
                gfs_warn(&v->log, "%s: deleting %zu dead segments failed (%zu not deleted): %s",
                         v->name, n, failed, glidefs_strerror(r));
        }
    }
    for (size_t k = 0; k < n; k++)
        free(keys[k]);
    free(keys);
    free(idx);
    if (n && !confirmed)
        return;
    /* unreferenced segments found at open (crashed uploads, deposed writers) */
    if (v->sv.ngarbage) {
        char **g = v->sv.garbage;
        size_t ng = v->sv.ngarbage;
        v->sv.garbage = NULL;
        v->sv.ngarbage = 0;
        uint8_t *done = calloc(ng, 1);
        int nd = done ? gfs_compact_drop_garbage(v, g, ng, confirmed, done) : -ENOMEM;
        size_t left = 0;
        for (size_t i = 0; i < ng; i++) {
            if (nd >= 0 && done[i])
                free(g[i]);
            else
                g[left++] = g[i]; /* for a later step (the hold expires, the store answers) */
        }
        free(done);
        if (left && !v->sv.garbage) {
            v->sv.garbage = g;
            v->sv.ngarbage = left;
        } else {
            for (size_t i = 0; i < left; i++)
                free(g[i]);
            free(g);
        }
        if (nd > 0) {
            res->segments_deleted += (uint64_t)nd;
            v->st.segments_deleted += (uint64_t)nd;
        }
    }
}

int gfs_compact_drop_garbage(struct glidefs_volume *v, char *const *keys, size_t n, int confirmed,
                             uint8_t *done)
{
    /* a manifest stored since open names none of them, and readers had time */
    if (!v->owner || v->fenced)
        return -EROFS;
    if (!v->ckpt.gen || gfs_now_ms() - v->opened_ms < v->comp.grace_ms)
        return -EAGAIN;
    const char **del = calloc(n ? n : 1, sizeof *del);
    uint32_t *at = calloc(n ? n : 1, sizeof *at);
    if (!del || !at) {
        free(del);
        free(at);
        return -ENOMEM;
    }
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        /* a held epoch's late segments are garbage to us, not to its node;
         * what a snapshot names stays whatever the map says */
        const char *tail = strrchr(keys[i], '/');
        uint64_t e, q;
        if (!tail || gfs_parse_epoch_seq(tail + 1, &e, &q) < 0 || gfs_held_epoch(v, e) ||
            gfs_pinned(v, gfs_ep(v->meta.depth, e), q))
            continue;
        at[nd] = (uint32_t)i;
        del[nd++] = keys[i];
    }
    int r = 0;
    if (nd) {
        pthread_mutex_unlock(&v->lock);
        r = confirmed ? 0 : gfs_own_confirm(v);
        if (r == 0)
            r = gfs_objstore_del_many(v->store, del, nd, NULL);
        pthread_mutex_lock(&v->lock);
    }
    for (size_t k = 0; r == 0 && k < nd; k++)
        done[at[k]] = 1;
    free(del);
    free(at);
    return r < 0 ? r : (int)nd;
}

/* A chain to keep whole: <epoch>-<from> .. <epoch>-<to>. */
struct keep_range {
    uint64_t epoch, from, to;
};

/* Is the manifest key one of a chain we keep: ours (current or the one
 * before the last fold) or one a kept delta heads (lock held)? */
static int chain_kept(const struct glidefs_volume *v, const char *key, const struct keep_range *kr,
                      size_t nkr)
{
    const char *slash = strrchr(key, '/');
    uint64_t e, s;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0)
        return 0;
    if (gfs_ckpt_keeps(&v->ckpt, e, s))
        return 1;
    for (size_t i = 0; i < nkr; i++)
        if (e == kr[i].epoch && s >= kr[i].from && s <= kr[i].to)
            return 1;
    return 0;
}

/* Keep the newest keep_manifests manifests, and every link of their chains
 * and of ours (lock held; dropped for I/O). */
static void prune_manifests(struct glidefs_volume *v, struct glidefs_compact_result *res)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/manifest/", v->name);
    int keep = v->comp.keep_manifests;
    pthread_mutex_unlock(&v->lock);
    struct gfs_keylist l = {0};
    int r = v->store->ops->list(v->store, prefix, NULL, gfs_keylist_add, &l);
    size_t deleted = 0;
    if (r >= 0 && l.n > (size_t)keep) {
        /* a kept delta that is not ours (a deposed writer's, which a fenced
         * node's view reads) keeps its chain: its link says where it starts */
        struct keep_range kr[16];
        size_t nkr = 0;
        for (size_t i = l.n - (size_t)keep; i < l.n && nkr < 16; i++) {
            const char *slash = strrchr(l.keys[i], '/');
            uint64_t e, s;
            if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0)
                continue;
            pthread_mutex_lock(&v->lock);
            int ours = gfs_ckpt_keeps(&v->ckpt, e, s);
            pthread_mutex_unlock(&v->lock);
            if (ours)
                continue;
            uint8_t head[GFS_MAN_FIXED_LEN + GFS_MAN_LINK_LEN];
            size_t got = 0;
            struct gfs_manifest m;
            if (v->store->ops->get_range(v->store, l.keys[i], 0, sizeof head, head, &got) == 0 &&
                gfs_manifest_peek(head, got, &m) == 1 && m.epoch == e && m.seq == s)
                kr[nkr++] = (struct keep_range){e, m.base_seq, s};
        }
        /* listed in key order: oldest first; one batch for all of them */
        char **del = calloc(l.n, sizeof *del);
        size_t nd = 0;
        {
            SCOPED_LOCK(&v->lock);
            for (size_t i = 0; del && i + (size_t)keep < l.n; i++)
                if (!gfs_manifest_pinned(v, l.keys[i]) && !chain_kept(v, l.keys[i], kr, nkr))
                    del[nd++] = l.keys[i];
        }
        if (nd && gfs_objstore_del_many(v->store, (const char *const *)del, nd, NULL) == 0)
            deleted = nd;
        free(del);
    }
    gfs_keylist_free(&l);
    pthread_mutex_lock(&v->lock);
    v->st.manifests_deleted += deleted;
    (void)res;
}

/* Sizes of our own segments (lock held): stored and live bytes of those
 * still holding live data, and whether dead ones wait for a manifest or a
 * delete. */
struct usage {
    uint64_t stored, live;
    int dead_waiting;
};

static struct usage usage_of(const struct glidefs_volume *v, int64_t now)
{
    struct usage u = {0};
    for (uint32_t i = 1; i < v->sv.bm.nsegs; i++) {
        const struct gfs_bm_seg *s = &v->sv.bm.segs[i];
        if (s->deleted || s->total_bytes == 0 || (s->epoch >> GFS_ORIGIN_SHIFT) != v->meta.depth)
            continue;
        if (s->live_bytes) {
            if (kept(v, s))
                continue; /* held by a snapshot: compaction cannot shrink it */
            u.stored += s->total_bytes;
            u.live += s->live_bytes;
        } else if (!kept(v, s) &&
                   (!s->dead_since_ms || v->ckpt.gen <= s->dead_gen ||
                    now - s->dead_since_ms >= v->comp.grace_ms)) {
            u.dead_waiting = 1; /* to date, to cover by a manifest, or to delete */
        }
    }
    return u;
}

#define RATIO_CHECK_MS 200
#define RATIO_MIN_GAP_MS 1000

/* Lock held: may the data key generations older than the newest go? None
 * of the volume's segments still referenced is sealed under one, the newest
 * manifest covers them all (no dead segment waits for one), and nothing a
 * snapshot or a fenced hold keeps is: every pinned segment's row says its
 * generation (a pin without a row: unknown, so not yet). */
static int keys_retirable(struct glidefs_volume *v)
{
    uint32_t newest = gfs_codec_key_gen(v->codec);
    if (!newest || gfs_codec_gens(v->codec, NULL, 0) < 2 || v->snap.nholds ||
        v->sv.segs_since_manifest)
        return 0;
    const struct gfs_blockmap *bm = &v->sv.bm;
    for (uint32_t i = 1; i < bm->nsegs; i++) {
        const struct gfs_bm_seg *s = &bm->segs[i];
        if (s->deleted || !gfs_key_gen_older(s->key_gen, newest))
            continue;
        if (s->live_bytes || (s->dead_since_ms && s->dead_gen >= v->ckpt.gen))
            return 0;
    }
    for (size_t i = 0; i < v->snap.npins; i++) {
        int64_t si = gfs_bm_seg_find(bm, v->snap.pins[i].epoch, v->snap.pins[i].seq);
        if (si <= 0 || gfs_key_gen_older(bm->segs[si].key_gen, newest))
            return 0;
    }
    return 1;
}

int gfs_compact_step(struct glidefs_volume *v, int requested)
{
    if (!v->owner || v->fenced)
        return 0;
    int64_t now = gfs_now_ms();
    int timer = v->comp.interval_ms > 0 && now >= v->comp.next_ms;
    uint64_t target = 0;
    if (!requested && !timer) {
        /* Between cycles: as soon as garbage passes compaction.max_stored_pct
         * of live data, or dead segments can go, at compaction.rate_mb_s.
         * interval_s 0 keeps meaning "on demand only". */
        if (v->comp.interval_ms <= 0 || now < v->comp.check_next_ms || now < v->comp.rate_next_ms)
            return 0;
        v->comp.check_next_ms = now + RATIO_CHECK_MS;
        struct usage u = usage_of(v, now);
        int pct = v->comp.max_stored_pct;
        int over = pct > 0 && u.stored * 100 > u.live * (uint64_t)pct;
        if (!over && !u.dead_waiting)
            return 0;
        if (over) {
            /* aim halfway between all-live and the trigger, so that steps
             * are few and not each a sliver */
            target = u.live * (uint64_t)(100 + pct) / 200;
            if (target == 0)
                target = 1;
        } else {
            target = UINT64_MAX; /* nothing to rewrite: date, cover and delete dead ones */
        }
    }
    if (timer) {
        v->comp.next_ms = now + v->comp.interval_ms;
        /* snapshots deleted through another handle (a purged clone's
         * implicit one) stop pinning segments here too: one LIST a cycle */
        pthread_mutex_unlock(&v->lock);
        int sr = gfs_snapshots_load(v);
        pthread_mutex_lock(&v->lock);
        if (sr < 0)
            gfs_warn(&v->log, "%s: reading the snapshot list: %s", v->name, glidefs_strerror(sr));
    }
    if ((timer || requested) && v->snap.nholds) {
        pthread_mutex_unlock(&v->lock);
        int er = gfs_fence_holds_expire(v);
        pthread_mutex_lock(&v->lock);
        if (er < 0)
            gfs_warn(&v->log, "%s: expiring fenced holds: %s", v->name, glidefs_strerror(er));
    }
    struct glidefs_compact_result res = {0};
    uint64_t budget = requested ? UINT64_MAX
                      : target  ? v->comp.rate_bps * RATIO_MIN_GAP_MS / 1000 /* one gap's worth */
                                : v->comp.rate_bps * (uint64_t)(v->comp.interval_ms / 1000 + 1);
    int r = target == UINT64_MAX ? 0 : rewrite(v, budget, target, &res);
    /* dead segments need a manifest, stored after they died, that no longer names them */
    int dead = mark_dead(v);
    int need = 0, wrote_manifest = 0;
    uint64_t man_bytes = v->ckpt.bytes_written; /* what this step's manifest PUT took */
    for (uint32_t i = 1; i < v->sv.bm.nsegs && !need; i++)
        need = v->sv.bm.segs[i].dead_since_ms && !v->sv.bm.segs[i].deleted &&
               v->sv.bm.segs[i].dead_gen >= v->ckpt.gen;
    if (r == 0 && (v->sv.segs_since_manifest || need || (v->sv.ngarbage && !v->ckpt.gen))) {
        if (v->sv.segs_since_manifest == 0)
            v->sv.segs_since_manifest = 1; /* force one: dead segments need it */
        pthread_mutex_unlock(&v->lock);
        r = gfs_volume_write_manifest(v);
        pthread_mutex_lock(&v->lock);
        wrote_manifest = r == 0;
    }
    (void)dead;
    if (r == 0) {
        reap(v, &res);
        if (res.segments_deleted)
            prune_manifests(v, &res);
        if (res.segments_deleted) /* rows of deleted segments go; indices renumber (blockmap.h) */
            gfs_bm_seg_reclaim(&v->sv.bm, GFS_BM_RECLAIM_MIN, gfs_cache_renumber, &v->cache);
    }
    if (r == 0 && keys_retirable(v)) {
        /* a rotation is complete: the older keys stop mattering */
        uint32_t upto = gfs_codec_key_gen(v->codec) - 1;
        pthread_mutex_unlock(&v->lock);
        int kr = gfs_volmeta_retire_keys(v, upto);
        pthread_mutex_lock(&v->lock);
        if (kr < 0 && kr != -EAGAIN && kr != -EBUSY)
            gfs_warn(&v->log, "%s: retiring data key generations up to %u: %s", v->name, upto,
                     glidefs_strerror(kr));
    }
    for (uint32_t i = 1; i < v->sv.bm.nsegs; i++) {
        if (!v->sv.bm.segs[i].deleted) {
            res.stored_bytes += v->sv.bm.segs[i].total_bytes;
            res.live_bytes += v->sv.bm.segs[i].live_bytes;
        }
    }
    if (res.segments_rewritten || res.segments_deleted)
        v->st.compactions++;
    if (target && (wrote_manifest || res.segments_rewritten || res.segments_deleted)) {
        /* rate limit: what this step uploaded (copies, and the manifest:
         * a delta, or a base when it folded) at rate_mb_s; and at most one such step
         * (one manifest PUT) a second, however small the volume */
        uint64_t sent = res.bytes_rewritten + (v->ckpt.bytes_written - man_bytes);
        int64_t gap = (int64_t)(sent * 1000 / (v->comp.rate_bps ? v->comp.rate_bps : 1));
        if (gap < RATIO_MIN_GAP_MS)
            gap = RATIO_MIN_GAP_MS;
        v->comp.rate_next_ms = gfs_now_ms() + gap;
    }
    if (requested) {
        v->comp.last = res;
        if (r < 0)
            v->comp.last.segments_rewritten = (uint64_t)-1;
    }
    if (res.segments_rewritten || res.segments_deleted)
        gfs_info(&v->log, "%s: compaction: %" PRIu64 " segments rewritten (%" PRIu64
                 " bytes), %" PRIu64 " deleted (%" PRIu64 " bytes reclaimed); stored %" PRIu64
                 ", live %" PRIu64, v->name, res.segments_rewritten, res.bytes_rewritten,
                 res.segments_deleted, res.bytes_reclaimed, res.stored_bytes, res.live_bytes);
    return r < 0 ? r : (res.segments_rewritten || res.segments_deleted);
}

/* glidefs_compact as the header declares it (GLIDEFS_0.2, the default
 * version: what new programs and static links get); the first release's
 * form is glidefs_compact_v0 below. Symbol versions: lib/libglidefs.map. */
GLIDEFS_API __attribute__((symver("glidefs_compact@@GLIDEFS_0.2"))) int
glidefs_compact_v2(glidefs_volume *v, struct glidefs_compact_result *res, size_t res_size);
GLIDEFS_API int glidefs_compact_v2(glidefs_volume *v, struct glidefs_compact_result *res,
                                   size_t res_size)
{
    if (res && res_size == 0)
        return -EINVAL;
    /* snapshots deleted through another handle (a purged clone's implicit
     * one) stop pinning: what is asked for now sees the store's set */
    int lr = gfs_snapshots_load(v);
    if (lr < 0)
        return lr;
    int r;
    struct glidefs_compact_result out;
    {
        SCOPED_LOCK(&v->lock);
        if (!v->owner || v->fenced)
            return -EROFS;
        uint64_t gen = ++v->comp.req_gen;
        pthread_cond_broadcast(&v->sync.cond);
        while (v->comp.done_gen < gen && !v->stop && v->owner)
            pthread_cond_wait(&v->cond, &v->lock);
        r = v->comp.done_gen < gen ? -EROFS : 0;
        out = v->comp.last;
    }
    if (r == 0 && out.segments_rewritten == (uint64_t)-1)
        r = -EIO;
    if (res && r == 0)
        memcpy(res, &out, res_size < sizeof out ? res_size : sizeof out);
    return r;
}

/* The first release's glidefs_compact (GLIDEFS_0), for programs built
 * against it: its struct had these six fields, and it never grows. */
#define COMPACT_RESULT_V0_SIZE (6 * sizeof(uint64_t))
GLIDEFS_API __attribute__((symver("glidefs_compact@GLIDEFS_0"))) int
glidefs_compact_v0(glidefs_volume *v, struct glidefs_compact_result *res);
GLIDEFS_API int glidefs_compact_v0(glidefs_volume *v, struct glidefs_compact_result *res)
{
    return glidefs_compact_v2(v, res, res ? COMPACT_RESULT_V0_SIZE : 0);
}
