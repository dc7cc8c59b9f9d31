/*
 * follow.c — a read-only volume following the store (follow.h): new
 * segments after the newest we know, new fences and a raised floor (then
 * the map is loaded again), and the volume's size when the writer grew it.
 */
#include "follow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"
#include "codec.h"
#include "fastread.h"
#include "volmeta.h"
#include "volume_internal.h"

/* Rebuild the map from the store (a fence now excludes a segment we had
 * applied). Called with own_lock held; takes v->lock. */
static int rebuild_once(struct glidefs_volume *v)
{
    struct gfs_blockmap nb;
    int r = gfs_bm_init(&nb, v->sv.bm.nblocks);
    if (r < 0)
        return r;
    SCOPED_LOCK(&v->lock);
    gfs_view_garbage_free(&v->sv);
    struct gfs_blockmap old = v->sv.bm;
    nb.fr = old.fr;
    gfs_fr_inval_all(old.fr); /* no lock-free read may use what the old map said */
    v->sv.bm = nb;
    v->sv.last_seg_epoch = v->sv.last_seg_seq = 0;
    v->sv.segs_since_manifest = 0;
    gfs_ckpt_forget(&v->ckpt); /* the map is the store's now, not ours */
    r = gfs_view_load(&v->sv);
    if (r < 0) {
        gfs_bm_free(&v->sv.bm);
        v->sv.bm = old;
    } else {
        gfs_bm_free(&old);
        gfs_cache_clear(&v->cache); /* cached blocks name segments of the old table */
        gfs_volume_seq_past_map(v);
    }
    return r;
}

/* The same; when it fails on an encrypted volume, the writer may have
 * rotated the data key since we opened (a manifest MAC'd, or segments
 * sealed, under a generation we do not hold): learn the generations from
 * volume.json and try once more. */
static int rebuild_map(struct glidefs_volume *v)
{
    int r = rebuild_once(v);
    if (r < 0 && gfs_codec_sealed(v->codec) && gfs_volmeta_follow_keys(v) > 0)
        r = rebuild_once(v);
    return r;
}

int gfs_volume_reload(struct glidefs_volume *v)
{
    SCOPED_LOCK(&v->own_lock);
    struct gfs_lease l;
    int r = gfs_lease_read(v->store, v->name, &l);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock); /* read under either lock: written under both */
    v->sv.lease = l;
    pthread_mutex_unlock(&v->lock);
    return rebuild_map(v);
}

int gfs_volume_catch_up(struct glidefs_volume *v)
{
    SCOPED_LOCK(&v->own_lock);
    return gfs_volume_refresh(v);
}

int gfs_volume_refresh(struct glidefs_volume *v)
{
    struct gfs_lease l;
    int r = gfs_lease_read(v->store, v->name, &l);
    if (r < 0)
        return r;
    /* A raised floor dropped fences we could not check our map against
     * (a segment applied before its fence came and went): start again from
     * the newest manifest. */
    int floor_rose = l.exists && l.floor > v->sv.lease.floor;
    /* a new fence over something we applied: start again from the store */
    pthread_mutex_lock(&v->lock);
    if (l.exists)
        v->sv.lease = l; /* read under either lock: written under both */
    int stale = floor_rose;
    for (uint32_t i = 1; i < v->sv.bm.nsegs && !stale; i++)
        stale = (v->sv.bm.segs[i].epoch >> GFS_ORIGIN_SHIFT) == v->meta.depth &&
                gfs_lease_fenced(&v->sv.lease, v->sv.bm.segs[i].epoch & GFS_EPOCH_MASK,
                                 v->sv.bm.segs[i].seq);
    char start_after[512] = "";
    if (v->sv.last_seg_epoch)
        gfs_seg_key(start_after, sizeof start_after, v->name, v->sv.last_seg_epoch,
                    v->sv.last_seg_seq);
    pthread_mutex_unlock(&v->lock);
    if (stale) {
        gfs_info(&v->log, "%s: %s; reloading the map", v->name,
                 floor_rose ? "the lease's fence floor rose"
                            : "a new fence excludes segments we read");
        return rebuild_map(v);
    }
    struct gfs_seg_list sl = {.lease = &v->sv.lease};
    r = gfs_view_list_segs(&v->sv, start_after, &sl);
    for (size_t i = 0; i < sl.n && r >= 0; i++) {
        struct gfs_seg_header h;
        r = gfs_view_seg_header(&v->sv, sl.keys[i], sl.sizes[i], &h);
        if (r == -ENOKEY) {
            /* the writer rotated the data key: learn the new generation */
            int k = gfs_volmeta_follow_keys(v);
            r = k > 0 ? gfs_view_seg_header(&v->sv, sl.keys[i], sl.sizes[i], &h) : -EIO;
            if (r == -ENOKEY)
                r = -EIO;
        }
        if (r < 0)
            break;
        /* the writer grew the volume and wrote there: learn the new size
         * first, or those blocks would be dropped as past the end */
        uint64_t maxb = 0;
        for (uint32_t k = 0; k < h.nblocks; k++)
            if (h.entries[k].block_index >= maxb)
                maxb = h.entries[k].block_index + 1;
        pthread_mutex_lock(&v->lock);
        int grow = maxb > v->sv.bm.nblocks;
        pthread_mutex_unlock(&v->lock);
        if (grow && (r = gfs_volmeta_follow_size(v)) < 0) {
            gfs_seg_header_free(&h);
            break;
        }
        pthread_mutex_lock(&v->lock);
        r = gfs_view_apply_seg(&v->sv, sl.keys[i], sl.sizes[i], &h);
        gfs_ckpt_forget(&v->ckpt); /* entries changed that no mark records */
        gfs_volume_seq_past_map(v);
        pthread_mutex_unlock(&v->lock);
        gfs_seg_header_free(&h);
    }
    gfs_seg_list_free(&sl);
    return r < 0 ? r : 0;
}
