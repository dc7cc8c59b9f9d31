/*
 * checkpoint.c — the block map written as a manifest (checkpoint.h): a full
 * base, or a delta of the entries changed since our last manifest.
 */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "manifest.h"
#include "volume_internal.h"

#define CHG_SHIFT 12u                     /* 4096 blocks per chunk */
#define CHG_WORDS ((1u << CHG_SHIFT) / 64u)

enum { MODE_NORMAL, MODE_FORCE, MODE_MARK, MODE_BASE };

static int write_manifest(struct glidefs_volume *v, int mode);

int gfs_volume_write_manifest(struct glidefs_volume *v)
{
    return write_manifest(v, MODE_NORMAL);
}

int gfs_volume_write_manifest_force(struct glidefs_volume *v)
{
    return write_manifest(v, MODE_FORCE);
}

int gfs_volume_write_manifest_base(struct glidefs_volume *v)
{
    return write_manifest(v, MODE_BASE);
}

int gfs_volume_write_manifest_handover(struct glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    uint32_t chain = v->ckpt.nchain;
    pthread_mutex_unlock(&v->lock);
    return write_manifest(v, chain > GFS_CKPT_CLOSE_CHAIN ? MODE_BASE : MODE_NORMAL);
}

/* A manifest keyed no lower than the start of our epoch, (epoch, 0) when we
 * have stored no segment in it yet: every reader then starts after it, so
 * the next taker may raise the lease's floor to our epoch (lease.h). */
int gfs_volume_write_manifest_mark(struct glidefs_volume *v)
{
    return write_manifest(v, MODE_MARK);
}

static int bits_set(struct gfs_ckpt_bits *s, uint64_t b)
{
    size_t c = (size_t)(b >> CHG_SHIFT);
    if (c >= s->nchunk) {
        size_t n = c + 1 > s->nchunk * 2 ? c + 1 : s->nchunk * 2;
        uint64_t **nc = realloc(s->chunk, n * sizeof *nc);
        if (!nc)
            return -ENOMEM;
        memset(nc + s->nchunk, 0, (n - s->nchunk) * sizeof *nc);
        s->chunk = nc;
        s->nchunk = n;
    }
    if (!s->chunk[c] && !(s->chunk[c] = calloc(CHG_WORDS, sizeof(uint64_t))))
        return -ENOMEM;
    uint64_t bit = 1ull << (b & 63), *w = &s->chunk[c][(b >> 6) & (CHG_WORDS - 1)];
    if (!(*w & bit)) {
        *w |= bit;
        s->n++;
    }
    return 0;
}

static void bits_clear(struct gfs_ckpt_bits *s)
{
    for (size_t i = 0; i < s->nchunk; i++)
        if (s->chunk[i])
            memset(s->chunk[i], 0, CHG_WORDS * sizeof(uint64_t));
    s->n = 0;
}

static void bits_free(struct gfs_ckpt_bits *s)
{
    for (size_t i = 0; i < s->nchunk; i++)
        free(s->chunk[i]);
    free(s->chunk);
    memset(s, 0, sizeof *s);
}

/* The next set block from *b on: 1 and *b, or 0. */
static int bits_next(const struct gfs_ckpt_bits *s, uint64_t *b)
{
    for (size_t c = (size_t)(*b >> CHG_SHIFT); c < s->nchunk; c++) {
        if (!s->chunk[c])
            continue;
        uint32_t w0 = c == (size_t)(*b >> CHG_SHIFT) ? (uint32_t)((*b >> 6) & (CHG_WORDS - 1)) : 0;
        for (uint32_t w = w0; w < CHG_WORDS; w++) {
            uint64_t bits = s->chunk[c][w];
            if (c == (size_t)(*b >> CHG_SHIFT) && w == w0)
                bits &= ~0ull << (*b & 63);
            if (bits) {
                *b = ((uint64_t)c << CHG_SHIFT) + w * 64u + (uint64_t)__builtin_ctzll(bits);
                return 1;
            }
        }
    }
    return 0;
}

void gfs_ckpt_mark(struct gfs_ckpt_state *ck, uint64_t b)
{
    if (!ck->tracking)
        return; /* no manifest of ours yet: the first is a base anyway */
    if (bits_set(&ck->since_head, b) < 0 || bits_set(&ck->since_base, b) < 0)
        ck->lost = 1; /* a change we cannot record: the next is a base */
}

void gfs_ckpt_forget(struct gfs_ckpt_state *ck)
{
    ck->chained = 0;
    ck->lost = 1; /* also if a manifest PUT is in flight */
}

void gfs_ckpt_free(struct gfs_ckpt_state *ck)
{
    bits_free(&ck->since_head);
    bits_free(&ck->since_base);
}

int gfs_ckpt_keeps(const struct gfs_ckpt_state *ck, uint64_t epoch, uint64_t seq)
{
    if (!ck->bases_written || epoch != ck->head_epoch)
        return 0;
    for (uint32_t i = 0; i < ck->nchain; i++)
        if (ck->chain[i] == seq)
            return 1;
    return 0;
}

/* Copy the map's entry of block b into me (seg through remap). */
static void put_entry(struct gfs_man_entry *me, uint64_t b, const struct gfs_bm_entry *e,
                      const uint32_t *remap)
{
    me->block_index = b;
    me->write_seq = e->write_seq;
    if (e->seg == GFS_BM_HOLE) {
        me->seg = GFS_MAN_HOLE;
        me->offset = me->length = me->crc = 0;
        me->flags = GFS_SEGF_HOLE;
    } else {
        me->seg = remap[e->seg] - 1;
        me->offset = e->offset;
        me->length = e->length;
        me->crc = e->crc;
        me->flags = e->flags;
    }
}

/* Segment i of the map goes into m's table; remap[i] = its index + 1. */
static void list_seg(struct gfs_manifest *m, uint32_t *remap, const struct gfs_blockmap *bm,
                     uint32_t i)
{
    remap[i] = m->nsegs + 1;
    m->segs[m->nsegs].epoch = bm->segs[i].epoch;
    m->segs[m->nsegs].seq = bm->segs[i].seq;
    m->segs[m->nsegs].key_gen = bm->segs[i].key_gen;
    m->nsegs++;
}

/* The entries of set `chg` as a delta over manifest <head_epoch>-<prev>
 * (our newest, or its base: rebase), v->lock held. Returns 0, 1 when a
 * base must be written instead (an entry went back to NONE), or -ENOMEM. */
static int copy_delta(struct glidefs_volume *v, const struct gfs_ckpt_bits *chg, int rebase,
                      struct gfs_manifest *m)
{
    struct gfs_ckpt_state *ck = &v->ckpt;
    const struct gfs_blockmap *bm = &v->sv.bm;
    CLEANUP_FREE uint32_t *remap = calloc(bm->nsegs ? bm->nsegs : 1, sizeof *remap);
    m->entries = malloc((chg->n ? chg->n : 1) * sizeof *m->entries);
    m->segs = malloc((chg->n ? chg->n : 1) * sizeof *m->segs);
    if (!remap || !m->entries || !m->segs)
        return -ENOMEM;
    /* which segments the changed entries reference, listed in table order */
    for (uint64_t b = 0; bits_next(chg, &b); b++) {
        if (b >= bm->nblocks)
            return 1;
        struct gfs_bm_entry e = gfs_bm_get(bm, b);
        if (e.seg == GFS_BM_NONE)
            return 1;
        if (e.seg != GFS_BM_HOLE)
            remap[e.seg] = 1;
    }
    for (uint32_t i = 1; i < bm->nsegs; i++) {
        if (!remap[i])
            continue;
        list_seg(m, remap, bm, i);
    }
    for (uint64_t b = 0; bits_next(chg, &b); b++) {
        struct gfs_bm_entry e = gfs_bm_get(bm, b);
        put_entry(&m->entries[m->nentries++], b, &e, remap);
    }
    m->depth = rebase ? 1 : ck->nchain;
    m->prev_epoch = ck->head_epoch;
    m->prev_seq = rebase ? ck->chain[0] : ck->head_seq;
    m->base_seq = ck->chain[0];
    return 0;
}

/* The whole map as a base (v->lock held). */
static int copy_base(struct glidefs_volume *v, struct gfs_manifest *m)
{
    const struct gfs_blockmap *bm = &v->sv.bm;
    CLEANUP_FREE uint32_t *remap = calloc(bm->nsegs ? bm->nsegs : 1, sizeof *remap);
    m->segs = malloc((size_t)(bm->nsegs ? bm->nsegs : 1) * sizeof *m->segs);
    m->entries = malloc((bm->written_blocks ? bm->written_blocks : 1) * sizeof *m->entries);
    if (!remap || !m->segs || !m->entries)
        return -ENOMEM;
    /* segments in table order (sorted), only those still referenced */
    for (uint32_t i = 1; i < bm->nsegs; i++) {
        if (bm->segs[i].live_bytes == 0)
            continue;
        list_seg(m, remap, bm, i);
    }
    struct gfs_bm_entry e;
    for (uint64_t b = 0; gfs_bm_next(bm, &b, &e); b++)
        put_entry(&m->entries[m->nentries++], b, &e, remap);
    return 0;
}

static int write_manifest(struct glidefs_volume *v, int mode)
{
    SCOPED_LOCK(&v->ckpt.lock);
    struct gfs_ckpt_state *ck = &v->ckpt;
    struct gfs_manifest m = {0};
    pthread_mutex_lock(&v->lock);
    if (mode == MODE_NORMAL && (v->sv.segs_since_manifest == 0 || v->sv.last_seg_epoch == 0)) {
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (mode == MODE_MARK && v->sv.last_seg_epoch < v->epoch) {
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
    int same = ck->chained && ck->head_epoch == m.epoch && ck->head_seq == m.seq &&
               ck->head_size == m.volume_size;
    if (same && ck->since_head.n == 0 && (mode != MODE_BASE || ck->nchain == 1)) {
        /* our newest manifest, at this key, already holds this map */
        v->sv.segs_since_manifest -=
            covered <= v->sv.segs_since_manifest ? covered : v->sv.segs_since_manifest;
        v->ckpt.gen++;
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    /* a delta over our chain, or a fold (checkpoint.h) */
    int can = mode != MODE_BASE && ck->chained && ck->head_epoch == m.epoch &&
              ck->head_seq < m.seq && ck->head_size == m.volume_size &&
              ck->chain_bytes < ck->base_bytes;
    int kind = 0; /* 0 base, 1 delta over the newest, 2 delta over the base */
    if (can && ck->nchain <= GFS_CKPT_MAX_CHAIN && ck->since_head.n * 2 <= ck->base_entries)
        kind = 1;
    else if (can && ck->since_base.n * 2 <= ck->base_entries)
        kind = 2;
    int r = kind ? copy_delta(v, kind == 1 ? &ck->since_head : &ck->since_base, kind == 2, &m)
                 : 1;
    if (r == 1) {
        free(m.segs);
        free(m.entries);
        memset(&m, 0, sizeof m);
        m.epoch = v->sv.last_seg_epoch;
        m.seq = v->sv.last_seg_seq;
        m.volume_size = v->size;
        m.block_size = v->bs;
        kind = 0;
        r = copy_base(v, &m);
    }
    if (r < 0) {
        pthread_mutex_unlock(&v->lock);
        free(m.segs);
        free(m.entries);
        return r;
    }
    /* from here on every change is marked, for the manifests after this one */
    bits_clear(&ck->since_head);
    if (kind == 0)
        bits_clear(&ck->since_base);
    ck->tracking = 1;
    ck->lost = 0;
    ck->chained = 0; /* until this PUT succeeds */
    pthread_mutex_unlock(&v->lock);

    CLEANUP_FREE void *out = NULL;
    size_t outlen = 0;
    r = gfs_manifest_encode_mac(&m, 1, v->codec, &out, &outlen);
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
    if (kind) {
        if (kind == 2)
            ck->nchain = 1; /* the base, then this */
        ck->chain[ck->nchain++] = m.seq;
        ck->chain_bytes += outlen;
        ck->deltas_written++;
    } else {
        ck->nchain = 1;
        ck->chain[0] = m.seq;
        ck->base_bytes = outlen;
        ck->base_entries = m.nentries;
        ck->chain_bytes = 0;
        ck->bases_written++;
    }
    ck->head_epoch = m.epoch;
    ck->head_seq = m.seq;
    ck->head_size = m.volume_size;
    ck->bytes_written += outlen;
    ck->chained = !ck->lost;
    pthread_mutex_unlock(&v->lock);
    gfs_debug(&v->log, "%s: manifest %s written (%s, %" PRIu64 " entries, %zu bytes)", v->name,
              key, kind == 0 ? "base" : kind == 1 ? "delta" : "delta over the base", m.nentries,
              outlen);
    return 0;
}
