/*
 * storeview.c — a view of a volume in the store (storeview.h): its block
 * map loaded from the newest manifest and the segment headers after it,
 * under the lease's fences and floor (docs/design.md 5.10).
 */
#include "storeview.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "codec.h"
#include "log.h"
#include "manchain.h"
#include "manifest.h"
#include "objstore.h"
#include "snapobj.h"

int gfs_view_init(struct gfs_view *sv, const char *name, const struct gfs_log *log,
                  struct gfs_objstore *store, struct gfs_codec *codec,
                  const struct gfs_volmeta *meta, uint64_t size)
{
    memset(sv, 0, sizeof *sv);
    sv->name = name;
    sv->log = log;
    sv->store = store;
    sv->codec = codec;
    sv->meta = meta;
    sv->bs = meta->block_size;
    atomic_init(&sv->blocks_fetched, 0);
    atomic_init(&sv->checksum_errors, 0);
    return gfs_bm_init(&sv->bm, (size + sv->bs - 1) / sv->bs);
}

void gfs_view_garbage_free(struct gfs_view *sv)
{
    for (size_t i = 0; i < sv->ngarbage; i++)
        free(sv->garbage[i]);
    free(sv->garbage);
    sv->garbage = NULL;
    sv->ngarbage = 0;
}

void gfs_view_free(struct gfs_view *sv)
{
    gfs_bm_free(&sv->bm);
    gfs_view_garbage_free(sv);
}

struct name_pick {
    char best[512];
    int found;
    const struct gfs_lease *lease;
};

static int pick_last(void *arg, const char *key, uint64_t size)
{
    struct name_pick *p = arg;
    (void)size;
    const char *slash = strrchr(key, '/');
    uint64_t e, s;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0)
        return 0; /* not ours: ignore */
    if (gfs_lease_fenced(p->lease, e, s) || gfs_lease_below_floor(p->lease, e))
        return 0; /* written by a deposed writer (or older than the newest one) */
    if (strcmp(key, p->best) > 0) {
        snprintf(p->best, sizeof p->best, "%s", key);
        p->found = 1;
    }
    return 0;
}

/* Apply manifest m (a base, or a chain flattened) loaded from key. */
static int apply_link(struct gfs_view *sv, const char *key, const struct gfs_manifest *mp,
                      int is_base)
{
    const struct gfs_manifest m = *mp;
    int r;
    if (is_base && sv->meta->depth == 0) {
        /* only a clone has a base, its parent's (volume.json guarantees it) */
        gfs_err(sv->log, "%s: manifest %s taken as a base of a volume that has no parent",
                sv->name, key);
        return -EIO;
    }
    if (m.block_size != sv->bs) {
        gfs_err(sv->log, "%s: manifest %s has block size %u, volume has %u", sv->name, key,
                m.block_size, sv->bs);
        return -EIO;
    }
    CLEANUP_FREE int64_t *idx = calloc(m.nsegs ? m.nsegs : 1, sizeof *idx);
    /* the table sized exactly for what the manifest names (a wake) */
    if (!idx || gfs_bm_seg_reserve(&sv->bm, m.nsegs) < 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < m.nsegs; i++) {
        /* origins: an ancestor's manifest names only ancestors; ours up to us */
        if ((m.segs[i].epoch >> GFS_ORIGIN_SHIFT) > sv->meta->depth - (is_base ? 1u : 0u)) {
            gfs_err(sv->log, "%s: manifest %s names a segment outside the lineage", sv->name, key);
            return -EIO;
        }
        if (gfs_codec_sealed(sv->codec) && !gfs_codec_has_gen(sv->codec, m.segs[i].key_gen)) {
            gfs_err(sv->log, "%s: manifest %s names a segment sealed under key generation %u, "
                    "which the volume no longer holds", sv->name, key, m.segs[i].key_gen);
            return -EIO;
        }
        idx[i] = gfs_bm_seg_add(&sv->bm, m.segs[i].epoch, m.segs[i].seq, 0);
        if (idx[i] < 0) {
            return (int)idx[i];
        }
        sv->bm.segs[idx[i]].key_gen = m.segs[i].key_gen;
    }
    uint64_t max_seq = 0;
    for (uint64_t i = 0; i < m.nentries; i++) {
        const struct gfs_man_entry *me = &m.entries[i];
        if (me->block_index >= sv->bm.nblocks) {
            gfs_err(sv->log, "%s: manifest %s maps block %" PRIu64 " past the volume's end",
                    sv->name, key, me->block_index);
            return -EIO;
        }
        struct gfs_bm_entry e = {0};
        if (me->seg == GFS_MAN_HOLE) {
            e.seg = GFS_BM_HOLE;
        } else {
            e.seg = (uint32_t)idx[me->seg];
            e.offset = me->offset;
            e.length = me->length;
            e.crc = me->crc;
            e.flags = me->flags;
        }
        e.write_seq = me->write_seq;
        if (me->write_seq > max_seq)
            max_seq = me->write_seq;
        r = gfs_bm_set(&sv->bm, me->block_index, &e);
        if (r < 0) {
            return r;
        }
    }
    if (max_seq > sv->max_write_seq)
        sv->max_write_seq = max_seq;
    if (!is_base) {
        sv->manifest_epoch = sv->last_seg_epoch = m.epoch;
        sv->manifest_seq = sv->last_seg_seq = m.seq;
    }
    return 0;
}

/* Load the manifest at key with its chain (manchain.h) and apply its links
 * base first. */
static int apply_manifest(struct gfs_view *sv, const char *key, int is_base)
{
    struct gfs_manchain c;
    int r = gfs_manchain_load(sv->store, sv->log, sv->name, key, sv->codec,
                              is_base ? NULL : &sv->lease, &c);
    if (r < 0)
        return r; /* logged */
    /* applied as the one base it amounts to: the map then holds no rows
     * for segments only superseded links named */
    struct gfs_manifest flat = {0};
    r = c.n == 1 ? 0 : gfs_manchain_flatten(&c, &flat);
    if (r == -EIO)
        gfs_err(sv->log, "%s: manifest %s: its chain names a segment under two key generations",
                sv->name, key);
    if (r == 0)
        r = apply_link(sv, key, c.n == 1 ? &c.links[0] : &flat, is_base);
    gfs_manifest_free(&flat);
    gfs_manchain_free(&c);
    return r;
}

static int collect_seg(void *arg, const char *key, uint64_t size)
{
    struct gfs_seg_list *l = arg;
    const char *slash = strrchr(key, '/');
    uint64_t e, s;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0)
        return 0;
    if (l->lease && (gfs_lease_fenced(l->lease, e, s) || gfs_lease_below_floor(l->lease, e)))
        return 0; /* a deposed writer's late segment: never part of the volume */
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **nk = realloc(l->keys, nc * sizeof *nk);
        if (!nk)
            return -ENOMEM;
        l->keys = nk;
        uint64_t *ns = realloc(l->sizes, nc * sizeof *ns);
        if (!ns)
            return -ENOMEM;
        l->sizes = ns;
        l->cap = nc;
    }
    l->keys[l->n] = strdup(key);
    if (!l->keys[l->n])
        return -ENOMEM;
    l->sizes[l->n++] = size;
    return 0;
}

int gfs_view_seg_header(struct gfs_view *sv, const char *key, uint64_t size,
                        struct gfs_seg_header *hout)
{
    size_t want = 4096;
    CLEANUP_FREE uint8_t *buf = NULL;
    struct gfs_seg_header h;
    for (int i = 0; i < 3; i++) {
        if (want > size)
            want = (size_t)size;
        if (want == 0)
            return -EIO;
        uint8_t *nb = realloc(buf, want);
        if (!nb)
            return -ENOMEM;
        buf = nb;
        size_t got = 0;
        int r = sv->store->ops->get_range(sv->store, key, 0, want, buf, &got);
        if (r < 0) {
            gfs_err(sv->log, "%s: cannot read segment %s: %s", sv->name, key, glidefs_strerror(r));
            return r == -ENOENT ? -EIO : r;
        }
        size_t need = 0;
        r = gfs_seg_decode_header_mac(buf, got, size, &h, &need, sv->codec);
        if (r == -EAGAIN && need > got && need <= gfs_seg_header_size_mac(GFS_SEG_MAX_BLOCKS, 1)) {
            want = need;
            continue;
        }
        if (r == -ENOKEY) {
            /* the caller may learn the generation (a follower) and retry */
            gfs_warn(sv->log, "%s: segment %s is sealed under a key generation this node does "
                     "not hold", sv->name, key);
            return -ENOKEY;
        }
        if (r < 0) {
            gfs_err(sv->log, "%s: segment %s has a corrupt header", sv->name, key);
            return -EIO;
        }
        break;
    }
    if (buf == NULL)
        return -EIO;
    uint64_t ke, ks;
    if (h.block_size != sv->bs || memcmp(h.volume_uuid, sv->meta->data_uuid, 16) != 0 ||
        gfs_parse_epoch_seq(strrchr(key, '/') + 1, &ke, &ks) < 0 || ke != h.epoch ||
        ks != h.seq) {
        gfs_err(sv->log, "%s: segment %s belongs to another volume, block size or key", sv->name,
                key);
        gfs_seg_header_free(&h);
        return -EIO;
    }
    if (gfs_codec_sealed(sv->codec) && !gfs_codec_has_gen(sv->codec, h.key_gen)) {
        gfs_err(sv->log, "%s: segment %s is sealed under key generation %u, which the volume "
                "no longer holds", sv->name, key, h.key_gen);
        gfs_seg_header_free(&h);
        return -EIO;
    }
    *hout = h;
    return 0;
}

int gfs_view_apply_seg(struct gfs_view *sv, const char *key, uint64_t size,
                       const struct gfs_seg_header *hp)
{
    const struct gfs_seg_header h = *hp;
    int64_t si = gfs_bm_seg_add(&sv->bm, gfs_ep(sv->meta->depth, h.epoch), h.seq, size);
    if (si < 0)
        return (int)si;
    sv->bm.segs[si].key_gen = h.key_gen;
    int r = 0;
    for (uint32_t i = 0; i < h.nblocks && r == 0; i++) {
        const struct gfs_seg_entry *se = &h.entries[i];
        if (se->block_index >= sv->bm.nblocks) {
            gfs_warn(sv->log, "%s: segment %s maps block %" PRIu64 " past the end; ignored",
                     sv->name, key, se->block_index);
            continue;
        }
        /* The newest write wins, not the newest segment: compaction copies
         * blocks into later segments, and a copy must not override a write
         * that was uploaded while it ran. Equal seqs are the same data: take
         * the later copy, since the earlier segment is the one deleted. */
        struct gfs_bm_entry cur = gfs_bm_get(&sv->bm, se->block_index);
        if (cur.seg != GFS_BM_NONE && se->write_seq < cur.write_seq)
            continue;
        struct gfs_bm_entry e = {0};
        if (se->flags & GFS_SEGF_HOLE) {
            e.seg = GFS_BM_HOLE;
        } else {
            e.seg = (uint32_t)si;
            e.offset = se->offset;
            e.length = se->length;
            e.crc = se->crc;
            e.flags = se->flags;
        }
        e.write_seq = se->write_seq;
        if (se->write_seq > sv->max_write_seq)
            sv->max_write_seq = se->write_seq;
        r = gfs_bm_set(&sv->bm, se->block_index, &e);
    }
    sv->last_seg_epoch = h.epoch;
    sv->last_seg_seq = h.seq;
    sv->segs_since_manifest++;
    return r;
}

static int apply_segment(struct gfs_view *sv, const char *key, uint64_t size)
{
    struct gfs_seg_header h;
    int r = gfs_view_seg_header(sv, key, size, &h);
    if (r < 0)
        return r;
    r = gfs_view_apply_seg(sv, key, size, &h);
    gfs_seg_header_free(&h);
    return r;
}

int gfs_view_load(struct gfs_view *sv)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/manifest/", sv->name);
    struct name_pick mp = {.found = 0, .lease = &sv->lease};
    int r = sv->store->ops->list(sv->store, prefix, NULL, pick_last, &mp);
    if (r < 0) {
        gfs_err(sv->log, "%s: cannot list manifests: %s", sv->name, glidefs_strerror(r));
        return r;
    }
    char start_after[512] = "";
    if (!mp.found && sv->meta->base_manifest[0] && sv->meta->depth > 0) {
        /* a clone that has stored nothing of its own yet: its parent's snapshot */
        char base[512];
        snprintf(base, sizeof base, "nbd/%s/manifest/%s", sv->meta->lineage[sv->meta->depth - 1],
                 sv->meta->base_manifest);
        r = apply_manifest(sv, base, 1);
        if (r < 0)
            return r;
    }
    if (mp.found) {
        r = apply_manifest(sv, mp.best, 0);
        if (r < 0)
            return r;
        snprintf(start_after, sizeof start_after, "nbd/%s/seg/%s", sv->name,
                 strrchr(mp.best, '/') + 1);
    }
    /* Every segment: the manifest's get their sizes (for compaction), the
     * ones after it are replayed, and the rest are garbage nothing refers to
     * (crashed uploads, deposed writers, compaction leftovers). */
    struct gfs_seg_list l = {.lease = NULL};
    r = gfs_view_list_segs(sv, NULL, &l);
    for (size_t i = 0; i < l.n && r >= 0; i++) {
        const char *tail = strrchr(l.keys[i], '/') + 1;
        uint64_t e, s;
        gfs_parse_epoch_seq(tail, &e, &s);
        int fenced = gfs_lease_fenced(&sv->lease, e, s);
        if (gfs_view_seg_counts(sv, e, s) &&
            (!start_after[0] || strcmp(l.keys[i], start_after) > 0)) {
            r = apply_segment(sv, l.keys[i], l.sizes[i]);
            continue;
        }
        int64_t si = fenced ? -1 : gfs_bm_seg_find(&sv->bm, gfs_ep(sv->meta->depth, e), s);
        if (si > 0) {
            if (gfs_bm_seg_set_total(&sv->bm, (uint32_t)si, l.sizes[i]) < 0)
                gfs_warn(sv->log, "%s: %s has %" PRIu64 " bytes, more than a segment can "
                         "hold; it is never compacted", sv->name, l.keys[i], l.sizes[i]);
        } else {
            char **ng = realloc(sv->garbage, (sv->ngarbage + 1) * sizeof *ng);
            if (!ng) {
                r = -ENOMEM;
                break;
            }
            sv->garbage = ng;
            sv->garbage[sv->ngarbage++] = l.keys[i];
            l.keys[i] = NULL;
        }
    }
    gfs_seg_list_free(&l);
    return r;
}

int gfs_view_seg_counts(const struct gfs_view *sv, uint64_t epoch, uint64_t seq)
{
    /* below the floor only a manifest vouches for a segment: one after
     * the manifest there was uploaded by a writer deposed long ago */
    return !gfs_lease_fenced(&sv->lease, epoch, seq) && !gfs_lease_below_floor(&sv->lease, epoch);
}

int gfs_view_seg_garbage(const struct gfs_view *sv, uint64_t epoch, uint64_t seq)
{
    if (epoch == 0 || epoch > GFS_EPOCH_MASK || seq == 0)
        return 0; /* no segment key of ours: not ours to judge */
    if (gfs_bm_seg_find(&sv->bm, gfs_ep(sv->meta->depth, epoch), seq) > 0)
        return 0; /* the map's (a dead row too: compaction deletes it) */
    if (!gfs_view_seg_counts(sv, epoch, seq))
        return 1;
    /* one after the newest the view knows would be applied by a load now:
     * an upload or a compaction in flight, or a follower's next segment */
    return epoch < sv->last_seg_epoch || (epoch == sv->last_seg_epoch && seq <= sv->last_seg_seq);
}

uint64_t gfs_view_last_seq_of(const struct gfs_view *sv, uint64_t epoch)
{
    /* The segment table holds only segments that still map blocks; the
     * newest one we know of (and the manifest's) may hold only holes, and
     * must not fall outside the fence. */
    uint64_t best = 0;
    if (sv->last_seg_epoch == epoch)
        best = sv->last_seg_seq;
    if (sv->manifest_epoch == epoch && sv->manifest_seq > best)
        best = sv->manifest_seq;
    uint64_t own = gfs_ep(sv->meta->depth, epoch);
    for (uint32_t i = 1; i < sv->bm.nsegs; i++)
        if (sv->bm.segs[i].epoch == own && sv->bm.segs[i].seq > best)
            best = sv->bm.segs[i].seq;
    return best;
}

int gfs_view_list_segs(struct gfs_view *sv, const char *start_after, struct gfs_seg_list *l)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/seg/", sv->name);
    return sv->store->ops->list(sv->store, prefix, start_after && *start_after ? start_after : NULL,
                                collect_seg, l);
}

void gfs_seg_list_free(struct gfs_seg_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    free(l->sizes);
    memset(l, 0, sizeof *l);
}
