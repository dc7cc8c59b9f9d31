/*
 * scrub.c — glidefs_scrub: does the store still hold what the volume's
 * block map references? Every read checks the block it reads; a block
 * nobody reads is checked only here.
 *
 * The segments only snapshots keep (pins.h, loaded fresh from the store
 * first) are checked like the map's for existence, size and header; their
 * blocks are no live blocks, so deep mode has none of them to fetch.
 *
 * Under v->lock it copies what it needs (the referenced segments' keys,
 * sizes and key generations, the furthest payload end in each, and in deep
 * mode every live entry); the I/O runs without the lock: one LIST per
 * origin prefix (existence and sizes), then one ranged GET per segment:
 * quick mode its header, deep mode its front up to 4 MiB — the header and
 * the payloads together (runs of payloads beyond follow), every block
 * checked by gfs_blk_check_k (CRC-32C, AEAD under the segment's key). Findings are
 * kept only if, under the lock again, the map still references what they
 * name: compaction may have moved a block and deleted its old segment
 * meanwhile, which is no damage.
 *
 * Repair (GLIDEFS_SCRUB_REPAIR) writes the confirmed-damaged blocks back
 * from the clean cache, where the cache holds them for the very map entry
 * that is damaged, through gfs_volume_rewrite_block (volume_io.c), which
 * refuses if a client wrote the block since: the syncer then uploads them
 * like any write and the map moves off the damaged copy.
 *
 * glidefs_scrub_ex paces every GET through a shared budget (scrub_pace.h)
 * and stops with -ECANCELED when its cancel says so.
 *
 * The listing of the volume's own prefix also yields the orphan objects
 * (scrub_orphans.h), judged under the lock at the end like the findings,
 * and deleted only with GLIDEFS_SCRUB_DELETE_ORPHANS.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockio.h"
#include "cleanup.h"
#include "codec.h"
#include "pins.h"
#include "scrub_orphans.h"
#include "scrub_pace.h"
#include "dirty.h"
#include "follow.h"
#include "segment.h"
#include "storeview.h"
#include "volume_internal.h"

#define RUN_MAX (4u << 20)     /* bytes one deep-mode GET asks for at most */
#define NOT_LISTED UINT64_MAX

/* A referenced segment, as the map named it when copied. */
struct sseg {
    char key[192];
    uint64_t epoch, seq;   /* the row's (epoch with its origin bits) */
    uint64_t total;        /* the map's size (0: unknown) */
    uint64_t listed;       /* the store's size (NOT_LISTED: missing) */
    uint64_t max_end;      /* end of the furthest payload the map references in it */
    uint32_t key_gen;      /* KEYGEN_UNKNOWN for a pinned one (the manifest knows it) */
    int pinned;            /* only snapshots keep it: the map no longer uses it */
};
#define KEYGEN_UNKNOWN UINT32_MAX

/* A live block (deep mode). */
struct sblk {
    uint64_t b;
    struct gfs_bm_entry e;
    uint32_t si;           /* its struct sseg */
};

/* A finding before the recheck under the lock. */
struct pending {
    uint32_t kind, si;
    uint64_t b;            /* DAMAGED_BLOCK */
    struct gfs_bm_entry e;
};

struct scrub {
    glidefs_volume *v;
    struct sseg *segs;
    uint32_t nsegs;
    struct sblk *blks;
    size_t nblks, blkcap;
    struct pending *pend;
    size_t npend, pendcap;
    struct listing { char *key; uint64_t size; } *ls;
    size_t nls, lscap;
    uint8_t uuid[16];
    struct glidefs_scrub_result res;
    struct fix *fix;       /* GLIDEFS_SCRUB_REPAIR: blocks to write back */
    size_t nfix, fixcap;
    pthread_mutex_t mu;    /* pend and res while the checks run in parallel */
    struct gfs_pace *pace; /* glidefs_scrub_ex's limits: taken before each GET */
    struct gfs_orphans orph; /* own segment keys listed: orphan candidates */
};

/* Add n to a counter of the result (the checks run on several threads). */
static void tally(struct scrub *s, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    *field += n;
    pthread_mutex_unlock(&s->mu);
}

/* A block to repair: the map entry it had when the damage was confirmed
 * (lock held), and the finding it belongs to. */
struct fix {
    uint64_t b;
    struct gfs_bm_entry e;
    uint32_t finding;      /* index in res.findings, or UINT32_MAX (not listed) */
    uint32_t failed;
};

static void scrub_free(struct scrub *s)
{
    free(s->segs);
    free(s->blks);
    free(s->pend);
    for (size_t i = 0; i < s->nls; i++)
        free(s->ls[i].key);
    free(s->ls);
    free(s->fix);
    gfs_orphans_free(&s->orph);
    pthread_mutex_destroy(&s->mu);
}

static int add_fix(struct scrub *s, uint64_t b, const struct gfs_bm_entry *e, uint32_t finding)
{
    if (s->nfix == s->fixcap) {
        size_t cap = s->fixcap ? 2 * s->fixcap : 16;
        struct fix *f = realloc(s->fix, cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        s->fix = f;
        s->fixcap = cap;
    }
    s->fix[s->nfix++] = (struct fix){b, *e, finding, 0};
    return 0;
}

static int add_pending(struct scrub *s, uint32_t kind, uint32_t si, const struct sblk *bk)
{
    SCOPED_LOCK(&s->mu);
    if (s->npend == s->pendcap) {
        size_t cap = s->pendcap ? 2 * s->pendcap : 16;
        struct pending *p = realloc(s->pend, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->pend = p;
        s->pendcap = cap;
    }
    s->pend[s->npend++] = (struct pending){kind, si, bk ? bk->b : 0,
                                           bk ? bk->e : (struct gfs_bm_entry){0}};
    return 0;
}

static int cmp_blk(const void *a, const void *b)
{
    const struct sblk *x = a, *y = b;
    if (x->si != y->si)
        return x->si < y->si ? -1 : 1;
    return x->e.offset < y->e.offset ? -1 : x->e.offset > y->e.offset;
}

static int cmp_listing(const void *a, const void *b)
{
    return strcmp(((const struct listing *)a)->key, ((const struct listing *)b)->key);
}

/* Copy what the scrub needs from the map (lock held). */
static int snapshot(struct scrub *s, int deep, char origins[][GLIDEFS_NAME_MAX + 1],
                    uint32_t *norigins)
{
    glidefs_volume *v = s->v;
    const struct gfs_blockmap *bm = &v->sv.bm;
    memcpy(s->uuid, v->meta.data_uuid, 16);
    gfs_orphans_begin(v, &s->orph);
    *norigins = v->meta.depth + 1;
    for (uint32_t o = 0; o < *norigins; o++)
        snprintf(origins[o], GLIDEFS_NAME_MAX + 1, "%s", gfs_origin_name(&v->meta, v->name, o));
    CLEANUP_FREE int64_t *idx = malloc((bm->nsegs ? bm->nsegs : 1) * sizeof *idx);
    s->segs = calloc(bm->nsegs ? bm->nsegs : 1, sizeof *s->segs);
    if (!idx || !s->segs)
        return -ENOMEM;
    for (uint32_t i = 0; i < bm->nsegs; i++) {
        const struct gfs_bm_seg *row = &bm->segs[i];
        idx[i] = -1;
        if (i == 0 || row->deleted || row->live_bytes == 0)
            continue;
        uint32_t o = (uint32_t)(row->epoch >> GFS_ORIGIN_SHIFT);
        struct sseg *g = &s->segs[s->nsegs];
        if (o >= *norigins ||
            gfs_seg_key(g->key, sizeof g->key, origins[o], row->epoch & GFS_EPOCH_MASK, row->seq) < 0)
            return -EIO; /* the map names an origin the lineage lacks: a bug, not damage */
        g->epoch = row->epoch;
        g->seq = row->seq;
        g->total = row->total_bytes;
        g->listed = NOT_LISTED;
        g->key_gen = row->key_gen;
        idx[i] = s->nsegs++;
    }
    /* the segments only snapshots keep (their data was rewritten or moved
     * since): existence, size and header, like the map's */
    if (v->snap.npins) {
        struct sseg *ns = realloc(s->segs, (s->nsegs + v->snap.npins) * sizeof *ns);
        if (!ns)
            return -ENOMEM;
        s->segs = ns;
    }
    for (size_t p = 0; p < v->snap.npins; p++) {
        const struct gfs_pin *pin = &v->snap.pins[p];
        if (p > 0 && pin->epoch == pin[-1].epoch && pin->seq == pin[-1].seq)
            continue; /* sorted: two snapshots pinning one segment */
        int64_t row = gfs_bm_seg_find(bm, pin->epoch, pin->seq);
        if (row > 0 && idx[row] >= 0)
            continue; /* the map's: copied above */
        uint32_t o = (uint32_t)(pin->epoch >> GFS_ORIGIN_SHIFT);
        struct sseg *g = &s->segs[s->nsegs];
        memset(g, 0, sizeof *g);
        if (o >= *norigins ||
            gfs_seg_key(g->key, sizeof g->key, origins[o], pin->epoch & GFS_EPOCH_MASK, pin->seq) < 0)
            continue; /* a pin outside the lineage: nothing of ours to check */
        g->epoch = pin->epoch;
        g->seq = pin->seq;
        g->listed = NOT_LISTED;
        g->key_gen = KEYGEN_UNKNOWN;
        g->pinned = 1;
        s->nsegs++;
    }
    struct gfs_bm_entry e;
    for (uint64_t b = 0; gfs_bm_next(bm, &b, &e); b++) {
        if (e.seg == GFS_BM_NONE || e.seg == GFS_BM_HOLE || e.seg >= bm->nsegs || idx[e.seg] < 0 ||
            e.length == 0)
            continue;
        struct sseg *g = &s->segs[idx[e.seg]];
        uint64_t end = (uint64_t)e.offset + gfs_seg_span(e.length, e.flags);
        if (end > g->max_end)
            g->max_end = end;
        if (!deep)
            continue;
        if (s->nblks == s->blkcap) {
            size_t cap = s->blkcap ? 2 * s->blkcap : 256;
            struct sblk *nb = realloc(s->blks, cap * sizeof *nb);
            if (!nb)
                return -ENOMEM;
            s->blks = nb;
            s->blkcap = cap;
        }
        s->blks[s->nblks++] = (struct sblk){b, e, (uint32_t)idx[e.seg]};
    }
    return 0;
}

static int list_cb(void *arg, const char *key, uint64_t size)
{
    struct scrub *s = arg;
    if (s->nls == s->lscap) {
        size_t cap = s->lscap ? 2 * s->lscap : 256;
        struct listing *n = realloc(s->ls, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        s->ls = n;
        s->lscap = cap;
    }
    char *k = strdup(key);
    if (!k)
        return -ENOMEM;
    s->ls[s->nls++] = (struct listing){k, size};
    return 0;
}

/* The store's segments under every origin the map uses (and always the
 * volume's own: its orphans), and so which of ours exist and how large
 * they are. */
static int list_store(struct scrub *s, char origins[][GLIDEFS_NAME_MAX + 1], uint32_t norigins)
{
    glidefs_volume *v = s->v;
    for (uint32_t o = 0; o < norigins; o++) {
        int used = o + 1 == norigins;
        for (uint32_t i = 0; i < s->nsegs && !used; i++)
            used = (uint32_t)(s->segs[i].epoch >> GFS_ORIGIN_SHIFT) == o;
        if (!used)
            continue;
        char prefix[GLIDEFS_NAME_MAX + 16];
        if (snprintf(prefix, sizeof prefix, "nbd/%.*s/seg/", GLIDEFS_NAME_MAX, origins[o]) >=
            (int)sizeof prefix)
            return -ENAMETOOLONG;
        int r = v->store->ops->list(v->store, prefix, NULL, list_cb, s);
        if (r < 0) {
            gfs_err(&v->log, "%s: scrub cannot list %s: %s", v->name, prefix, glidefs_strerror(r));
            return r;
        }
    }
    if (!s->nls)
        return 0; /* nothing listed (an empty volume): every segment missing */
    for (size_t i = 0; i < s->nls; i++) {
        int r = gfs_orphans_consider(&s->orph, s->ls[i].key, s->ls[i].size);
        if (r < 0)
            return r;
    }
    qsort(s->ls, s->nls, sizeof *s->ls, cmp_listing);
    for (uint32_t i = 0; i < s->nsegs; i++) {
        struct listing want = {s->segs[i].key, 0};
        const struct listing *f = bsearch(&want, s->ls, s->nls, sizeof *s->ls, cmp_listing);
        if (f)
            s->segs[i].listed = f->size;
    }
    return 0;
}

/* Judge segment g's header from the object's first got bytes as a load
 * would: it decodes (and authenticates, sealed), names this segment,
 * volume and block size, and a key generation the volume holds. 1: bad;
 * 0: good; -EAGAIN: the header is longer than got (*need says how long). */
static int judge_header(struct scrub *s, const struct sseg *g, const uint8_t *buf, size_t got,
                        uint64_t object_size, size_t *need)
{
    glidefs_volume *v = s->v;
    struct gfs_seg_header h;
    *need = 0;
    int r = gfs_seg_decode_header_mac(buf, got, object_size, &h, need, v->codec);
    if (r == -EAGAIN && *need > got && *need <= g->listed &&
        *need <= gfs_seg_header_size_mac(GFS_SEG_MAX_BLOCKS, 1))
        return -EAGAIN;
    if (r < 0)
        return 1;
    uint64_t ke = 0, ks = 0;
    int bad = h.block_size != v->bs || memcmp(h.volume_uuid, s->uuid, 16) != 0 ||
              gfs_parse_epoch_seq(strrchr(g->key, '/') + 1, &ke, &ks) < 0 || ke != h.epoch ||
              ks != h.seq || (g->key_gen != KEYGEN_UNKNOWN && h.key_gen != g->key_gen) ||
              (gfs_codec_sealed(v->codec) && !gfs_codec_has_gen(v->codec, h.key_gen));
    gfs_seg_header_free(&h);
    return bad;
}

/* GET the first want bytes of segment g (want capped at its listed size),
 * paced and counted. */
static int get_front(struct scrub *s, const struct sseg *g, uint8_t **buf, size_t want,
                     size_t *got)
{
    if (want > g->listed)
        want = (size_t)g->listed;
    uint8_t *nb = realloc(*buf, want ? want : 1);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *got = 0;
    int r = gfs_pace_take(s->pace, want);
    if (r == 0 && want)
        r = s->v->store->ops->get_range(s->v->store, g->key, 0, want, nb, got);
    if (r == 0)
        tally(s, &s->res.bytes_read, *got);
    return r;
}

/* GET segment g's header (a first 4 KiB, more if it says it is longer)
 * and judge it. 1: bad; 0: good; -ENOENT: gone. */
static int check_header(struct scrub *s, const struct sseg *g, uint64_t object_size)
{
    size_t want = 4096;
    CLEANUP_FREE uint8_t *buf = NULL;
    for (;;) {
        if (want > g->listed)
            want = (size_t)g->listed;
        if (want == 0)
            return 1;
        size_t got = 0, need = 0;
        int r = get_front(s, g, &buf, want, &got);
        if (r < 0)
            return r;
        r = judge_header(s, g, buf, got, object_size, &need);
        if (r != -EAGAIN)
            return r;
        if (got < want)
            return 1; /* shorter than listed: cut since */
        want = need;
    }
}

/* What the listing alone says of segment si, first in every mode: counted;
 * not listed → MISSING; a size other than its header's, or one its entries
 * run past → SIZE (*short_ set). 1: missing, nothing more to check; 0: go
 * on; < 0: no memory for the finding. */
static int check_listing(struct scrub *s, uint32_t si, uint8_t *gone, int *short_)
{
    struct sseg *g = &s->segs[si];
    tally(s, &s->res.segments_checked, 1);
    if (g->listed == NOT_LISTED) {
        gone[si] = 1;
        int r = add_pending(s, GLIDEFS_SCRUB_MISSING, si, NULL);
        return r < 0 ? r : 1;
    }
    *short_ = (g->total && g->listed != g->total) || g->max_end > g->listed;
    return *short_ ? add_pending(s, GLIDEFS_SCRUB_SIZE, si, NULL) : 0;
}

/* Quick mode's checks of segment i (every scrub does them). */
static int check_segment(struct scrub *s, uint32_t i, uint8_t *gone)
{
    struct sseg *g = &s->segs[i];
    int short_ = 0;
    int r = check_listing(s, i, gone, &short_);
    if (r)
        return r < 0 ? r : 0;
    /* a truncated segment's header is judged on its own: bounds
     * against the object's size would fail it too */
    r = check_header(s, g, short_ ? 0 : g->listed);
    if (r == -ENOENT) {
        gone[i] = 1;
        r = add_pending(s, GLIDEFS_SCRUB_MISSING, i, NULL);
    } else if (r == 1) {
        r = add_pending(s, GLIDEFS_SCRUB_BAD_HEADER, i, NULL);
    }
    if (r < 0 && r != -ECANCELED)
        gfs_err(&s->v->log, "%s: scrub cannot read %s: %s", s->v->name, g->key,
                glidefs_strerror(r));
    return r;
}

/* Check the blocks [i, j) of segment si from buf, which holds the object's
 * bytes [start, start + got). */
static int check_fetched(struct scrub *s, uint32_t si, const struct gfs_sealkey *k, uint8_t *out,
                         size_t i, size_t j, uint8_t *buf, uint64_t start, size_t got)
{
    int r = 0;
    tally(s, &s->res.blocks_checked, j - i);
    for (; i < j && r == 0; i++) {
        const struct gfs_bm_entry *e = &s->blks[i].e;
        uint64_t at = e->offset - start, span = gfs_seg_span(e->length, e->flags);
        int bad = e->offset < start || at + span > got;
        if (!bad) {
            /* a plain block is checked in place (its CRC): no copy to decode into */
            uint8_t *dst = gfs_blk_plain(e, s->v->bs) ? buf + at : out;
            bad = gfs_blk_check_k(&s->v->sv, s->blks[i].b, e, k, buf + at, span, dst) < 0;
        }
        if (bad)
            r = add_pending(s, GLIDEFS_SCRUB_DAMAGED_BLOCK, si, &s->blks[i]);
    }
    return r;
}

/* Deep mode: fetch and check the blocks [lo, hi) of segment si, in runs of
 * adjacent payloads (k: the segment's key, NULL unsealed; out: a block). */
static int check_blocks(struct scrub *s, uint32_t si, size_t lo, size_t hi, uint8_t *gone,
                        const struct gfs_sealkey *k, uint8_t *out)
{
    glidefs_volume *v = s->v;
    const struct sseg *g = &s->segs[si];
    CLEANUP_FREE uint8_t *buf = NULL;
    int r = 0;
    for (size_t i = lo; i < hi && r == 0;) {
        /* a run: payloads back to back, at most RUN_MAX bytes, inside the object */
        uint64_t start = s->blks[i].e.offset, end = start;
        size_t j = i;
        while (j < hi) {
            const struct gfs_bm_entry *e = &s->blks[j].e;
            uint64_t span = gfs_seg_span(e->length, e->flags);
            if (e->offset != end || (j > i && end + span - start > RUN_MAX) ||
                e->offset + span > g->listed)
                break;
            end += span;
            j++;
        }
        if (j == i) {
            /* not inside the object, or overlapping the one before: alone */
            const struct gfs_bm_entry *e = &s->blks[i].e;
            uint64_t span = gfs_seg_span(e->length, e->flags);
            if (e->offset + span > g->listed || span > RUN_MAX) {
                tally(s, &s->res.blocks_checked, 1);
                r = add_pending(s, GLIDEFS_SCRUB_DAMAGED_BLOCK, si, &s->blks[i]);
                i++;
                continue;
            }
            end = start + span;
            j = i + 1;
        }
        uint8_t *nb = realloc(buf, end - start);
        if (!nb) {
            r = -ENOMEM;
            break;
        }
        buf = nb;
        size_t got = 0;
        r = gfs_pace_take(s->pace, end - start);
        if (r == -ECANCELED)
            break;
        r = v->store->ops->get_range(v->store, g->key, start, end - start, buf, &got);
        if (r == -ENOENT) {
            /* deleted since the listing: the recheck tells compaction from loss */
            r = gone[si] ? 0 : add_pending(s, GLIDEFS_SCRUB_MISSING, si, NULL);
            gone[si] = 1;
            break;
        }
        if (r < 0) {
            gfs_err(&v->log, "%s: scrub cannot read %s: %s", v->name, g->key, glidefs_strerror(r));
            break;
        }
        tally(s, &s->res.bytes_read, got);
        r = check_fetched(s, si, k, out, i, j, buf, start, got);
        i = j;
    }
    return r;
}

/* Deep mode's unit: segment si's quick checks and its live blocks [lo, hi)
 * (sorted by offset) from one GET of the object's front — the header and
 * the payloads together, as far as RUN_MAX reaches: one request per
 * segment, like a plain GET loop over the objects. Payloads beyond it (a
 * segment larger than RUN_MAX) follow in runs. */
static int check_segment_deep(struct scrub *s, uint32_t si, size_t lo, size_t hi, uint8_t *gone)
{
    glidefs_volume *v = s->v;
    struct sseg *g = &s->segs[si];
    int short_ = 0;
    int r = check_listing(s, si, gone, &short_);
    if (r)
        return r < 0 ? r : 0;
    /* the front: at least a header's first 4 KiB, up to the furthest
     * payload end within RUN_MAX */
    uint64_t want = 4096;
    for (size_t i = lo; i < hi; i++) {
        const struct gfs_bm_entry *e = &s->blks[i].e;
        uint64_t end = e->offset + gfs_seg_span(e->length, e->flags);
        if (end <= RUN_MAX && end > want)
            want = end;
    }
    CLEANUP_FREE uint8_t *buf = NULL;
    size_t got = 0, need = 0;
    if (want > g->listed)
        want = g->listed;
    r = want ? get_front(s, g, &buf, (size_t)want, &got) : 0;
    if (r == 0) {
        r = got ? judge_header(s, g, buf, got, short_ ? 0 : g->listed, &need) : 1;
        if (r == -EAGAIN) /* a header longer than the front fetched: its own GET */
            r = got < want ? 1 : check_header(s, g, short_ ? 0 : g->listed);
    }
    if (r == -ENOENT) {
        gone[si] = 1;
        return add_pending(s, GLIDEFS_SCRUB_MISSING, si, NULL);
    }
    if (r == 1)
        r = add_pending(s, GLIDEFS_SCRUB_BAD_HEADER, si, NULL);
    if (r < 0) {
        if (r != -ECANCELED)
            gfs_err(&v->log, "%s: scrub cannot read %s: %s", v->name, g->key,
                    glidefs_strerror(r));
        return r;
    }
    if (lo == hi)
        return 0;
    struct gfs_sealkey k = {0};
    int sealed = gfs_codec_sealed(v->codec);
    if (sealed && gfs_codec_sealkey(v->codec, g->key_gen, g->key, &k) < 0)
        k.gen = UINT32_MAX; /* no key: every block fails (gfs_blk_check_k) */
    CLEANUP_FREE uint8_t *out = malloc(v->bs);
    r = out ? 0 : -ENOMEM;
    /* the blocks inside the front, checked from it; the rest fetched */
    size_t i = lo;
    while (r == 0 && i < hi &&
           s->blks[i].e.offset + gfs_seg_span(s->blks[i].e.length, s->blks[i].e.flags) <= got)
        i++;
    if (r == 0 && i > lo)
        r = check_fetched(s, si, sealed ? &k : NULL, out, lo, i, buf, 0, got);
    if (r == 0 && i < hi)
        r = check_blocks(s, si, i, hi, gone, sealed ? &k : NULL, out);
    gfs_sealkey_wipe(&k);
    return r;
}

/* Keep the findings the map still stands behind (lock held), counted and
 * listed. repair: also note the blocks to write back — each damaged block,
 * and every live block of a missing segment or one whose header is bad
 * (a truncated segment's cut blocks are damaged blocks of their own). */
static int settle(struct scrub *s, int repair)
{
    const struct gfs_blockmap *bm = &s->v->sv.bm;
    for (size_t i = 0; i < s->npend; i++) {
        const struct pending *p = &s->pend[i];
        const struct sseg *g = &s->segs[p->si];
        int64_t row = gfs_bm_seg_find(bm, g->epoch, g->seq);
        if (g->pinned ? !gfs_pinned(s->v, g->epoch, g->seq)
                      : row <= 0 || bm->segs[row].deleted || bm->segs[row].live_bytes == 0)
            continue; /* no longer kept: compaction or a snapshot's deletion took it */
        struct glidefs_scrub_finding f = {.kind = p->kind};
        struct gfs_bm_entry cur = {0};
        switch (p->kind) {
        case GLIDEFS_SCRUB_MISSING: s->res.missing_segments++; break;
        case GLIDEFS_SCRUB_SIZE: s->res.size_mismatches++; break;
        case GLIDEFS_SCRUB_BAD_HEADER: s->res.bad_headers++; break;
        default:
            cur = gfs_bm_get(bm, p->b);
            if (cur.seg != (uint32_t)row || cur.offset != p->e.offset)
                continue; /* rewritten or moved since */
            s->res.damaged_blocks++;
            f.offset = p->b * s->v->bs;
            f.length = s->v->bs;
        }
        snprintf(f.key, sizeof f.key, "%s", g->key);
        uint32_t at = UINT32_MAX;
        if (s->res.nfindings < GLIDEFS_SCRUB_FINDINGS) {
            at = s->res.nfindings;
            s->res.findings[s->res.nfindings++] = f;
        }
        if (!repair || p->kind == GLIDEFS_SCRUB_SIZE)
            continue;
        int r = 0;
        if (p->kind == GLIDEFS_SCRUB_DAMAGED_BLOCK) {
            r = add_fix(s, p->b, &cur, at);
        } else {
            for (size_t k = 0; k < s->nblks && r == 0; k++) {
                if (s->blks[k].si != p->si)
                    continue;
                cur = gfs_bm_get(bm, s->blks[k].b);
                if (cur.seg == (uint32_t)row && cur.offset == s->blks[k].e.offset)
                    r = add_fix(s, s->blks[k].b, &cur, at);
            }
        }
        if (r < 0)
            return r;
    }
    return 0;
}

/* Write each block to repair back from this node's clean cache
 * (gfs_volume_rewrite_block: only if no client wrote it meanwhile). The
 * cache holds a block only as verified when it was filled, and only for
 * the map entry it came from: the lookup by that entry is the proof that
 * it is the data the damaged copy should have held. */
static int repair(struct scrub *s)
{
    glidefs_volume *v = s->v;
    CLEANUP_FREE uint8_t *buf = malloc(v->bs);
    if (!buf)
        return -ENOMEM;
    for (size_t i = 0; i < s->nfix; i++) {
        struct fix *f = &s->fix[i];
        uint32_t gen = 0;
        int64_t slot = -1;
        int dirty;
        pthread_mutex_lock(&v->lock);
        dirty = gfs_dirty_get(&v->dirty, f->b) != NULL;
        if (!dirty)
            slot = gfs_cache_lookup(&v->cache, f->b, f->e.seg, f->e.offset, &gen);
        pthread_mutex_unlock(&v->lock);
        const char *why = dirty ? "it has writes not yet uploaded: scrub again after they are"
                                : "this node holds no copy of it";
        int r = -ENODATA;
        if (slot >= 0) {
            ssize_t n = pread(v->cache.fd, buf, v->bs, (off_t)(f->b * v->bs));
            if (n == (ssize_t)v->bs && gfs_cache_still(&v->cache, slot, f->b, gen))
                r = gfs_volume_rewrite_block(v, f->b, &f->e, buf);
            else
                why = "its cached copy went away while it was read";
        }
        if (r == -EAGAIN)
            continue; /* a client wrote it meanwhile: the damage is no longer referenced */
        if (r == 0) {
            s->res.repaired_blocks++;
            continue;
        }
        if (r != -ENODATA && slot >= 0)
            why = glidefs_strerror(r);
        f->failed = 1;
        s->res.unrepaired_blocks++;
        gfs_err(&v->log, "%s: scrub cannot repair block %" PRIu64 " (volume offset %" PRIu64
                "): %s; reads of it fail with EIO", v->name, f->b, f->b * v->bs, why);
    }
    /* a finding is mended when every block it covers is */
    for (size_t i = 0; i < s->nfix; i++)
        if (s->fix[i].finding != UINT32_MAX)
            s->res.findings[s->fix[i].finding].flags |= GLIDEFS_SCRUB_FOUND_REPAIRED;
    for (size_t i = 0; i < s->nfix; i++)
        if (s->fix[i].failed && s->fix[i].finding != UINT32_MAX)
            s->res.findings[s->fix[i].finding].flags &= ~GLIDEFS_SCRUB_FOUND_REPAIRED;
    if (s->res.repaired_blocks) {
        /* durable here; the syncer uploads them into a new segment */
        int r = glidefs_flush(v);
        if (r < 0)
            return r;
        gfs_info(&v->log, "%s: scrub wrote %" PRIu64 " damaged blocks back from this node's "
                 "cache; they upload with the next sync", v->name, s->res.repaired_blocks);
    }
    return 0;
}

/* The checks run on up to SCRUB_THREADS threads (the caller's among
 * them), each taking the next segment: a scrub's GETs overlap like the
 * read-ahead's, and a store's latency is paid once per GETs in flight, not
 * once per GET. Fewer than the store's connections, which client I/O and
 * uploads share. */
#define SCRUB_THREADS 4

struct unit {
    uint32_t si;
    size_t lo, hi; /* deep: the segment's run of s->blks */
};

struct run {
    struct scrub *s;
    uint8_t *gone;
    int deep;
    const struct unit *units;
    size_t n;
    atomic_size_t next;
    atomic_int err;
};

static void *run_units_worker(void *arg)
{
    struct run *w = arg;
    while (!atomic_load(&w->err)) {
        size_t k = atomic_fetch_add(&w->next, 1);
        if (k >= w->n)
            break;
        const struct unit *u = &w->units[k];
        int r = w->deep ? check_segment_deep(w->s, u->si, u->lo, u->hi, w->gone)
                        : check_segment(w->s, u->si, w->gone);
        int none = 0;
        if (r < 0)
            atomic_compare_exchange_strong(&w->err, &none, r);
    }
    return NULL;
}

static int run_units(struct scrub *s, uint8_t *gone, int deep, const struct unit *units, size_t n)
{
    struct run w = {.s = s, .gone = gone, .deep = deep, .units = units, .n = n};
    atomic_init(&w.next, 0);
    atomic_init(&w.err, 0);
    pthread_t th[SCRUB_THREADS - 1];
    size_t nth = 0;
    while (nth < SCRUB_THREADS - 1 && nth + 1 < n &&
           pthread_create(&th[nth], NULL, run_units_worker, &w) == 0)
        nth++;
    run_units_worker(&w);
    for (size_t i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    return atomic_load(&w.err);
}

/* The orphans settled under the lock: counted and listed; with delete,
 * deleted by compaction's rule (a refusal is logged, not an error: they
 * stay reported). */
static int orphans(struct scrub *s, int del)
{
    glidefs_volume *v = s->v;
    struct gfs_orphans *o = &s->orph;
    uint32_t first = s->res.nfindings;
    for (size_t i = 0; i < o->n; i++) {
        s->res.orphan_objects++;
        s->res.orphan_bytes += o->o[i].size;
        if (s->res.nfindings < GLIDEFS_SCRUB_FINDINGS) {
            struct glidefs_scrub_finding *f = &s->res.findings[s->res.nfindings++];
            memset(f, 0, sizeof *f);
            f->kind = GLIDEFS_SCRUB_ORPHAN;
            f->length = o->o[i].size;
            snprintf(f->key, sizeof f->key, "%s", o->o[i].key);
        }
    }
    if (!del || !o->n)
        return 0;
    CLEANUP_FREE uint8_t *done = calloc(o->n, 1);
    if (!done)
        return -ENOMEM;
    int r = gfs_orphans_delete(v, o, done);
    if (r < 0) {
        gfs_warn(&v->log, "%s: scrub deletes no orphan objects: %s", v->name,
                 r == -EAGAIN ? "compaction.grace_ms has not passed since open, or no manifest "
                                "is stored yet: scrub again later"
                              : glidefs_strerror(r));
        return r == -ENOMEM ? r : 0;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (!done[i])
            continue;
        s->res.orphans_deleted++;
        if (first + i < s->res.nfindings)
            s->res.findings[first + i].flags |= GLIDEFS_SCRUB_FOUND_DELETED;
    }
    return 0;
}

static void bad_snapshot(void *arg, const char *manifest_key, int err)
{
    struct scrub *s = arg;
    (void)err;
    s->res.bad_snapshots++;
    if (s->res.nfindings < GLIDEFS_SCRUB_FINDINGS) {
        struct glidefs_scrub_finding *f = &s->res.findings[s->res.nfindings++];
        memset(f, 0, sizeof *f);
        f->kind = GLIDEFS_SCRUB_SNAPSHOT;
        snprintf(f->key, sizeof f->key, "%s", manifest_key);
    }
}

GLIDEFS_API int glidefs_scrub(glidefs_volume *v, unsigned flags, struct glidefs_scrub_result *res,
                              size_t res_size)
{
    return glidefs_scrub_ex(v, flags, NULL, res, res_size);
}

static void pace_free(struct gfs_pace *p)
{
    gfs_pace_destroy(p);
}

GLIDEFS_API int glidefs_scrub_ex(glidefs_volume *v, unsigned flags,
                                 const struct glidefs_scrub_opts *opts,
                                 struct glidefs_scrub_result *res, size_t res_size)
{
    if (!v || !res || res_size == 0 ||
        (flags & ~(GLIDEFS_SCRUB_DEEP | GLIDEFS_SCRUB_REPAIR | GLIDEFS_SCRUB_DELETE_ORPHANS)))
        return -EINVAL;
    /* an older caller's smaller opts: the fields it has, the rest 0 */
    struct glidefs_scrub_opts o = {0};
    if (opts) {
        if (opts->opts_size < offsetof(struct glidefs_scrub_opts, max_gets_per_s) +
                                  sizeof o.max_gets_per_s)
            return -EINVAL;
        memcpy(&o, opts, opts->opts_size < sizeof o ? opts->opts_size : sizeof o);
    }
    __attribute__((cleanup(pace_free))) struct gfs_pace pace;
    gfs_pace_init(&pace, o.max_bytes_per_s, o.max_gets_per_s, o.cancel, o.cancel_arg);
    int fixing = !!(flags & GLIDEFS_SCRUB_REPAIR);
    int deep = fixing || (flags & GLIDEFS_SCRUB_DEEP);
    int delete_orphans = !!(flags & GLIDEFS_SCRUB_DELETE_ORPHANS);
    if ((fixing || delete_orphans) && glidefs_volume_read_only(v))
        return -EROFS;
    __attribute__((cleanup(scrub_free))) struct scrub s = {.v = v, .pace = &pace,
                                                           .mu = PTHREAD_MUTEX_INITIALIZER};
    /* a name per origin (the lineage, then this volume) */
    CLEANUP_FREE char (*origins)[GLIDEFS_NAME_MAX + 1] = malloc((GFS_MAX_DEPTH + 1) *
                                                                sizeof *origins);
    if (!origins)
        return -ENOMEM;
    uint32_t norigins = 0;
    /* what the snapshots keep, fresh from the store (a reader has not loaded
     * it); a snapshot whose manifest is gone or broken is a finding */
    int r = gfs_snapshots_load_report(v, bad_snapshot, &s);
    if (r < 0) {
        gfs_err(&v->log, "%s: scrub cannot load the snapshots: %s", v->name, glidefs_strerror(r));
        return r;
    }
    pthread_mutex_lock(&v->lock);
    r = snapshot(&s, deep, origins, &norigins);
    pthread_mutex_unlock(&v->lock);
    if (r < 0)
        return r;
    CLEANUP_FREE uint8_t *gone = calloc(s.nsegs ? s.nsegs : 1, 1);
    if (!gone)
        return -ENOMEM;
    r = list_store(&s, origins, norigins);
    /* a unit per segment: its header, and in deep mode its live blocks
     * (s.blks sorted by segment, then offset) */
    CLEANUP_FREE struct unit *units = malloc((s.nsegs ? s.nsegs : 1) * sizeof *units);
    if (r == 0 && !units)
        r = -ENOMEM;
    if (r == 0) {
        if (deep && s.nblks) /* none: an empty volume (qsort wants a non-NULL array) */
            qsort(s.blks, s.nblks, sizeof *s.blks, cmp_blk);
        size_t k = 0;
        for (uint32_t i = 0; i < s.nsegs; i++) {
            size_t lo = k;
            while (deep && k < s.nblks && s.blks[k].si == i)
                k++;
            units[i] = (struct unit){i, lo, k};
        }
        r = run_units(&s, gone, deep, units, s.nsegs);
    }
    if (r < 0)
        return r;
    /* a reader judges the findings against the store as it is now, not as
     * it last followed it (an offline scrub does not follow at all while it
     * runs): a segment the writer compacted away meanwhile is no loss */
    pthread_mutex_lock(&v->lock);
    int follower = !v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    if (follower) {
        pthread_mutex_lock(&v->own_lock);
        r = gfs_volume_refresh(v);
        pthread_mutex_unlock(&v->own_lock);
        /* (a newer object that is no segment, say, stops the follow: the
         * findings are then judged against the map as last loaded) */
        if (r < 0)
            gfs_warn(&v->log, "%s: scrub judges its findings against the store as last read: "
                     "reading its current state failed: %s", v->name, glidefs_strerror(r));
        r = 0;
    }
    pthread_mutex_lock(&v->lock);
    r = settle(&s, fixing);
    /* what a snapshot that cannot be read keeps is unknown: no orphans then */
    if (s.res.bad_snapshots)
        gfs_orphans_free(&s.orph);
    gfs_orphans_settle(v, &s.orph);
    pthread_mutex_unlock(&v->lock);
    if (r == 0 && fixing)
        r = repair(&s);
    if (r == 0)
        r = orphans(&s, delete_orphans);
    if (r < 0)
        return r;
    uint64_t bad = s.res.missing_segments + s.res.size_mismatches + s.res.bad_headers +
                   s.res.damaged_blocks + s.res.bad_snapshots;
    if (s.res.bad_snapshots)
        gfs_warn(&v->log, "%s: scrub does not judge orphan objects while a snapshot cannot be "
                 "read (what it keeps is unknown)", v->name);
    if (s.res.orphan_objects)
        gfs_warn(&v->log, "%s: scrub found %" PRIu64 " orphan segment objects (%" PRIu64
                 " bytes) that nothing keeps; %" PRIu64 " deleted", v->name,
                 s.res.orphan_objects, s.res.orphan_bytes, s.res.orphans_deleted);
    if (bad)
        gfs_err(&v->log, "%s: scrub%s found %" PRIu64 " missing segments, %" PRIu64
                " truncated, %" PRIu64 " bad headers, %" PRIu64 " damaged blocks, %" PRIu64
                " lost snapshots", v->name, deep ? " (deep)" : "", s.res.missing_segments,
                s.res.size_mismatches, s.res.bad_headers, s.res.damaged_blocks,
                s.res.bad_snapshots);
    else if (!s.res.orphan_objects)
        gfs_info(&v->log, "%s: scrub%s: %" PRIu64 " segments, %" PRIu64 " blocks, clean",
                 v->name, deep ? " (deep)" : "", s.res.segments_checked, s.res.blocks_checked);
    s.res.gets = atomic_load(&pace.gets);
    memcpy(res, &s.res, res_size < sizeof s.res ? res_size : sizeof s.res);
    return 0;
}
