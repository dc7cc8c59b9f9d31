/*
 * checkpoint.c — the block map written as a manifest (checkpoint.h).
 */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "cleanup.h"
#include "manifest.h"
#include "volume_internal.h"

static int write_manifest(struct glidefs_volume *v, int force);

int gfs_volume_write_manifest(struct glidefs_volume *v)
{
    return write_manifest(v, 0);
}

int gfs_volume_write_manifest_force(struct glidefs_volume *v)
{
    return write_manifest(v, 1);
}

/* A manifest keyed no lower than the start of our epoch, (epoch, 0) when we
 * have stored no segment in it yet: every reader then starts after it, so
 * the next taker may raise the lease's floor to our epoch (lease.h). */
int gfs_volume_write_manifest_mark(struct glidefs_volume *v)
{
    return write_manifest(v, 2);
}

static int write_manifest(struct glidefs_volume *v, int force)
{
    SCOPED_LOCK(&v->ckpt.lock);
    struct gfs_manifest m = {0};
    pthread_mutex_lock(&v->lock);
    if (!force && (v->sv.segs_since_manifest == 0 || v->sv.last_seg_epoch == 0)) {
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (force == 2 && v->sv.last_seg_epoch < v->epoch) {
        /* the segments we know end before our epoch began; none of ours
         * is committed (that would have moved last_seg), so this manifest
         * is the map as our epoch began, and ours will sort after it */
        v->sv.last_seg_epoch = v->epoch;
        v->sv.last_seg_seq = 0;
    }
    m.epoch = v->sv.last_seg_epoch;
    m.seq = v->sv.last_seg_seq;
    m.volume_size = v->size;
    m.block_size = v->bs;
    uint32_t covered = v->sv.segs_since_manifest;
    CLEANUP_FREE uint32_t *remap = calloc(v->sv.bm.nsegs, sizeof *remap);
    m.segs = malloc((size_t)v->sv.bm.nsegs * sizeof *m.segs);
    m.entries =
        malloc((v->sv.bm.written_blocks ? v->sv.bm.written_blocks : 1) * sizeof *m.entries);
    if (!remap || !m.segs || !m.entries) {
        pthread_mutex_unlock(&v->lock);
        free(m.segs);
        free(m.entries);
        return -ENOMEM;
    }
    /* segments in table order (sorted), only those still referenced */
    for (uint32_t i = 1; i < v->sv.bm.nsegs; i++) {
        if (v->sv.bm.segs[i].live_bytes == 0)
            continue;
        remap[i] = m.nsegs + 1;
        m.segs[m.nsegs].epoch = v->sv.bm.segs[i].epoch;
        m.segs[m.nsegs].seq = v->sv.bm.segs[i].seq;
        m.segs[m.nsegs].key_gen = v->sv.bm.segs[i].key_gen;
        m.nsegs++;
    }
    struct gfs_bm_entry e;
    for (uint64_t b = 0; gfs_bm_next(&v->sv.bm, &b, &e); b++) {
        struct gfs_man_entry *me = &m.entries[m.nentries++];
        me->block_index = b;
        me->write_seq = e.write_seq;
        if (e.seg == GFS_BM_HOLE) {
            me->seg = GFS_MAN_HOLE;
            me->offset = me->length = me->crc = 0;
            me->flags = GFS_SEGF_HOLE;
        } else {
            me->seg = remap[e.seg] - 1;
            me->offset = e.offset;
            me->length = e.length;
            me->crc = e.crc;
            me->flags = e.flags;
        }
    }
    pthread_mutex_unlock(&v->lock);

    CLEANUP_FREE void *out = NULL;
    size_t outlen = 0;
    int r = gfs_manifest_encode_mac(&m, 1, v->codec, &out, &outlen);
    free(m.segs);
    free(m.entries);
    if (r < 0)
        return r;
    char key[512];
    gfs_manifest_key(key, sizeof key, v->name, m.epoch, m.seq);
    r = v->store->ops->put(v->store, key, out, outlen, 0, NULL);
    if (r < 0) {
        gfs_err(&v->log, "%s: writing manifest %s failed: %s", v->name, key, glidefs_strerror(r));
        return r;
    }
    pthread_mutex_lock(&v->lock);
    v->sv.manifest_epoch = m.epoch;
    v->sv.manifest_seq = m.seq;
    v->sv.segs_since_manifest -=
        covered <= v->sv.segs_since_manifest ? covered : v->sv.segs_since_manifest;
    v->st.manifests_uploaded++;
    v->ckpt.gen++;
    pthread_mutex_unlock(&v->lock);
    gfs_debug(&v->log, "%s: manifest %s written (%" PRIu64 " blocks)", v->name, key, m.nentries);
    return 0;
}
