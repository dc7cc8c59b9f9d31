/*
 * fenced.c — getting back what a fenced node had. A node that restarts
 * after losing its write lease keeps its journal aside in
 * <cache>/<name>/fenced-<epoch>-<ms>/ (localstate.c) and never uploads it.
 * glidefs_fenced_export writes that node's view of the volume out as a raw
 * image: the store's data as of the node's last epoch (a private block map
 * loaded with every later epoch fenced off and the node's own epoch not
 * fenced at all, so its late segments count too) with the kept-aside
 * journal applied on top. It only lists and reads the store; the volume's
 * own map, cache and journal are not touched.
 *
 * The newer writer may since have compacted away objects that view needs
 * (segments it overwrote, old manifests). The view is checked before any
 * data is read: every segment it references must exist and the segments
 * after its manifest must have no gaps; otherwise -ENODATA, never an image
 * with silently older data.
 *
 * The view is a struct gfs_view (storeview.h) of its own, sharing only the
 * volume's store and codec; each block is assembled from the view's stored
 * copy and the journal's records over it by blockio.c's assembler, as the
 * read path does. glidefs_fenced_discard drops what was kept aside.
 */
#include "blockio.h"
#include "lease_state.h"
#include "localstate.h"
#include "volume_internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "segment.h"

/* ---- the kept-aside journal's records ---- */

struct frec {
    uint64_t seq, offset;
    uint32_t length, type;
    struct gfs_jfile *jf;
    uint64_t data_off;
};

struct fpair {
    uint64_t block;
    size_t rec; /* index into the seq-sorted records */
};

struct frecs {
    struct frec *r;
    size_t n, cap;
    uint64_t size;
};

static int collect_rec(void *arg, const struct gfs_jrec *rec, struct gfs_jfile *jf,
                       uint64_t data_off)
{
    struct frecs *c = arg;
    if (rec->type != GFS_JREC_WRITE && rec->type != GFS_JREC_ZERO)
        return 0;
    if (rec->length == 0 || rec->offset > c->size || rec->length > c->size - rec->offset)
        return 0; /* as at replay: nothing past the end */
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        struct frec *nr = realloc(c->r, nc * sizeof *nr);
        if (!nr)
            return -ENOMEM;
        c->r = nr;
        c->cap = nc;
    }
    c->r[c->n++] = (struct frec){rec->seq, rec->offset, rec->length, rec->type, jf, data_off};
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    const struct frec *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct fpair *x = a, *y = b;
    if (x->block != y->block)
        return x->block < y->block ? -1 : 1;
    return x->rec < y->rec ? -1 : x->rec > y->rec; /* records are in seq order */
}

/* ---- the store as the fenced node saw it ---- */

struct seg_id {
    uint64_t epoch, seq;
};

struct keyset {
    struct seg_id *k; /* (epoch, seq) of segments in our own prefix */
    size_t n, cap;
    uint64_t max_epoch;
};

static int collect_key(void *arg, const char *key, uint64_t size)
{
    struct keyset *s = arg;
    (void)size;
    const char *slash = strrchr(key, '/');
    uint64_t e, q;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &q) < 0)
        return 0;
    if (e > s->max_epoch)
        s->max_epoch = e;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        struct seg_id *nk = realloc(s->k, nc * sizeof *nk);
        if (!nk)
            return -ENOMEM;
        s->k = nk;
        s->cap = nc;
    }
    s->k[s->n++] = (struct seg_id){e, q};
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    const struct seg_id *x = a, *y = b;
    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* listed in key order, which is (epoch, seq) order: zero-padded hex */
static int has_seg(const struct keyset *s, uint64_t e, uint64_t q)
{
    struct seg_id k = {e, q};
    return s->n && bsearch(&k, s->k, s->n, sizeof k, cmp_key) != NULL;
}

static int fence_of(const struct gfs_lease *l, uint64_t e, uint64_t *last)
{
    for (uint32_t i = 0; i < l->nfences; i++)
        if (l->fences[i].epoch == e) {
            *last = l->fences[i].last_seq;
            return 1;
        }
    return 0;
}

/* The fenced node's view of the store, and what it borrows. */
struct fview {
    struct gfs_view sv;
    struct gfs_volmeta meta; /* a copy: the volume's changes under its lock */
    uint64_t size;
};

static void fview_free(struct fview *f)
{
    if (!f)
        return;
    gfs_view_free(&f->sv);
    free(f);
}

/* Load into *out a private view (sharing v's store and codec) whose map is
 * the store's data as of epoch ea, and check that the store still holds all
 * of it. */
static int load_view(glidefs_volume *v, uint64_t ea, struct fview **out)
{
    struct fview *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    pthread_mutex_lock(&v->lock);
    f->meta = v->meta;
    f->size = v->size;
    pthread_mutex_unlock(&v->lock);
    struct gfs_view *s = &f->sv;
    int r = gfs_view_init(s, v->name, &v->log, v->store, v->codec, &f->meta, f->size);
    struct gfs_lease cur = {0};
    if (r == 0)
        r = gfs_lease_read(s->store, s->name, &cur);
    struct keyset segs = {0}, mans = {0};
    char prefix[512];
    if (r == 0) {
        snprintf(prefix, sizeof prefix, "nbd/%s/seg/", s->name);
        r = s->store->ops->list(s->store, prefix, NULL, collect_key, &segs);
    }
    if (r == 0) {
        snprintf(prefix, sizeof prefix, "nbd/%s/manifest/", s->name);
        r = s->store->ops->list(s->store, prefix, NULL, collect_key, &mans);
    }
    /* The fences as they are, except: nothing of our own epoch is fenced
     * (we wrote it all, late segments included) and every later epoch is
     * fenced entirely. */
    uint64_t top = segs.max_epoch > mans.max_epoch ? segs.max_epoch : mans.max_epoch;
    if (cur.exists && cur.epoch > top)
        top = cur.epoch;
    uint64_t ea_last;
    if (r == 0 && !fence_of(&cur, ea, &ea_last)) {
        /* the lease no longer says how far epoch ea got (its fence went
         * with the floor once nothing held that view): the view could not
         * tell a segment compacted away from one never written */
        gfs_err(&v->log, "%s: the lease no longer records epoch %" PRIu64 "; its view cannot "
                "be checked (the hold on it expired)", v->name, ea);
        r = -ENODATA;
    }
    if (r == 0) {
        s->lease = cur;
        s->lease.nfences = 0;
        for (uint32_t i = 0; i < cur.nfences; i++)
            if (cur.fences[i].epoch < ea)
                s->lease.fences[s->lease.nfences++] = cur.fences[i];
        /* every later epoch entirely (takes are frequent: one fence each
         * would not fit); the floor is the newer writers' business, and
         * they keep it at or below a held epoch (ownership.c) */
        s->lease.ceiling = ea;
        s->lease.floor = 0;
    }
    if (r == 0)
        r = gfs_view_load(s);
    if (r == 0) {
        /* what the view's manifest references must still be there */
        uint32_t own = s->meta->depth;
        for (uint32_t i = 1; i < s->bm.nsegs && r == 0; i++) {
            const struct gfs_bm_seg *g = &s->bm.segs[i];
            if ((g->epoch >> GFS_ORIGIN_SHIFT) == own && g->live_bytes && !g->total_bytes) {
                gfs_err(&v->log, "%s: segment %016" PRIx64 "-%016" PRIx64 " of epoch %" PRIu64
                        "'s view is gone from the store (compacted by the newer writer)",
                        v->name, g->epoch & GFS_EPOCH_MASK, g->seq, ea);
                r = -ENODATA;
            }
        }
    }
    if (r == 0) {
        /* listed again now: a segment deleted after the first listing but
         * before the map was loaded must show as a gap */
        segs.n = 0;
        snprintf(prefix, sizeof prefix, "nbd/%s/seg/", s->name);
        r = s->store->ops->list(s->store, prefix, NULL, collect_key, &segs);
    }
    if (r == 0) {
        /* and the segments after it must all be there: a gap means the newer
         * writer deleted history this view replays (its manifests pruned) */
        uint64_t em = s->manifest_epoch, sm = s->manifest_seq;
        for (uint64_t e = em ? em : 1; e <= ea && r == 0; e++) {
            /* up to the fence the next writer set; our own epoch (or one
             * without a fence) up to the last segment listed */
            uint64_t first = e == em ? sm + 1 : 1, last = 0;
            int known = fence_of(&cur, e, &last);
            if (!known || e == ea)
                for (size_t i = 0; i < segs.n; i++)
                    if (segs.k[i].epoch == e && segs.k[i].seq > last) {
                        last = segs.k[i].seq;
                        known = 1;
                    }
            for (uint64_t q = first; known && q <= last && r == 0; q++)
                if (!has_seg(&segs, e, q)) {
                    gfs_err(&v->log, "%s: segment %016" PRIx64 "-%016" PRIx64 " of epoch %" PRIu64
                            "'s view is gone from the store (compacted by the newer writer)",
                            v->name, e, q, ea);
                    r = -ENODATA;
                }
        }
    }
    free(segs.k);
    free(mans.k);
    if (r < 0) {
        fview_free(f);
        return r;
    }
    *out = f;
    return 0;
}

/* ---- the export ---- */

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Block b of the view: the stored version, then the journal's newer
 * records over it (pieces: room for np). */
static int build_block(struct gfs_view *s, uint64_t b, const struct frec *recs,
                       const struct fpair *pairs, size_t np, struct gfs_piece *pieces,
                       uint8_t *buf)
{
    struct gfs_block_plan p = {.b = b, .n = s->bs / 512, .base = GFS_BASE_ZERO,
                               .pieces = pieces};
    p.e = gfs_bm_get(&s->bm, b);
    if (p.e.seg != GFS_BM_NONE && p.e.seg != GFS_BM_HOLE) {
        if (p.e.seg >= s->bm.nsegs) {
            gfs_err(s->log, "%s: block %" PRIu64 " names no segment", s->name, b);
            return -EIO;
        }
        p.base = GFS_BASE_STORE;
        p.epoch = s->bm.segs[p.e.seg].epoch;
        p.seq = s->bm.segs[p.e.seg].seq;
    }
    uint64_t bstart = b * s->bs;
    for (size_t i = 0; i < np; i++) {
        const struct frec *x = &recs[pairs[i].rec];
        if (p.e.seg != GFS_BM_NONE && p.e.write_seq >= x->seq)
            continue; /* uploaded before the lease was lost: the store has it (or newer) */
        uint64_t lo = x->offset > bstart ? x->offset : bstart;
        uint64_t end = x->offset + x->length, bend = bstart + s->bs;
        uint64_t hi = end < bend ? end : bend;
        int zero = x->type == GFS_JREC_ZERO;
        pieces[p.npieces++] = (struct gfs_piece){
            (uint32_t)((lo - bstart) / 512), (uint32_t)((hi - lo) / 512), zero ? NULL : x->jf,
            zero ? 0 : x->data_off + (lo - x->offset)};
    }
    int r = gfs_block_assemble(s, NULL, &p, buf, buf);
    if (r == -ENOENT) {
        gfs_err(s->log, "%s: block %" PRIu64 "'s segment is gone from the store", s->name, b);
        return -ENODATA;
    }
    if (r == -EIO)
        gfs_err(s->log, "%s: block %" PRIu64 " of the view cannot be read (from the store or "
                "the kept-aside journal)", s->name, b);
    return r;
}

struct export_ctx {
    struct fview *f;
    struct gfs_journal j;
    struct frecs fr;
    struct fpair *pairs;
    size_t npairs;
    struct gfs_piece *pieces; /* room for one block's records */
};

static void export_ctx_free(struct export_ctx *c)
{
    fview_free(c->f);
    free(c->pieces);
    free(c->fr.r);
    free(c->pairs);
    gfs_journal_destroy(&c->j);
}

/* Read the records of the journal in jdir (seq order) and the blocks each touches. */
static int load_records(struct export_ctx *c, const char *jdir, uint64_t bs)
{
    int r = gfs_journal_init(&c->j, jdir, 1u << 20, c->f->sv.log);
    uint64_t max_seq;
    if (r == 0)
        r = gfs_journal_recover(&c->j, collect_rec, &c->fr, &max_seq);
    if (r < 0)
        return r;
    if (c->fr.n)
        qsort(c->fr.r, c->fr.n, sizeof *c->fr.r, cmp_rec);
    size_t n = 0;
    for (size_t i = 0; i < c->fr.n; i++)
        n += (size_t)((c->fr.r[i].offset + c->fr.r[i].length - 1) / bs - c->fr.r[i].offset / bs + 1);
    c->pairs = malloc((n ? n : 1) * sizeof *c->pairs);
    if (!c->pairs)
        return -ENOMEM;
    for (size_t i = 0; i < c->fr.n; i++)
        for (uint64_t b = c->fr.r[i].offset / bs;
             b <= (c->fr.r[i].offset + c->fr.r[i].length - 1) / bs; b++)
            c->pairs[c->npairs++] = (struct fpair){b, i};
    if (c->npairs)
        qsort(c->pairs, c->npairs, sizeof *c->pairs, cmp_pair);
    c->pieces = malloc((c->npairs ? c->npairs : 1) * sizeof *c->pieces);
    return c->pieces ? 0 : -ENOMEM;
}

/* Is a journal of an ended epoch still in place (a read-only open leaves it)? */
static int stale_journal_in_place(glidefs_volume *v, uint64_t *epoch)
{
    uint64_t local = 0;
    int r = gfs_local_epoch_read(v->dir, &local);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->own_lock); /* the lease changes under it */
    int ours = gfs_own_journal_ours(v, &v->sv.lease, local);
    pthread_mutex_unlock(&v->own_lock);
    pthread_mutex_lock(&v->lock);
    int in_place = v->ro_forced && !ours && v->journal.files != NULL;
    pthread_mutex_unlock(&v->lock);
    *epoch = local;
    return in_place && local ? 0 : -ENOENT;
}

GLIDEFS_API int glidefs_fenced_export(glidefs_volume *v, int fd, uint64_t *epoch_out)
{
    if (!v || fd < 0)
        return -EINVAL;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode))
        return -EINVAL; /* holes need a seekable file; a pipe cannot have them */
    char jdir[4300];
    uint64_t ea = 0;
    int r = gfs_local_fenced_newest(v->dir, jdir, sizeof jdir, &ea);
    int in_place = 0;
    uint64_t ep = 0;
    if ((r == 0 || r == -ENOENT) && stale_journal_in_place(v, &ep) == 0 && (r < 0 || ep > ea)) {
        /* a journal of an ended epoch not set aside yet is the newest */
        snprintf(jdir, sizeof jdir, "%s/journal", v->dir);
        ea = ep;
        in_place = 1;
        r = 0;
    }
    if (r < 0)
        return r;
    if (ea == 0)
        return -ENOENT; /* never held a lease: no epoch to rebuild */
    struct export_ctx c = {0};
    c.j.dirfd = -1;
    r = load_view(v, ea, &c.f);
    if (r < 0)
        return r;
    struct gfs_view *s = &c.f->sv;
    uint64_t size = c.f->size, bs = s->bs, nblocks = s->bm.nblocks;
    c.fr.size = size;
    r = load_records(&c, jdir, bs);
    if (r == 0 && in_place && c.fr.n == 0)
        r = -ENOENT; /* an empty journal of an ended epoch: nothing was lost */
    if (r < 0) {
        export_ctx_free(&c);
        return r;
    }
    int dense = !S_ISREG(sb.st_mode); /* a block device gets every block written */
    if (!dense && (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0)) {
        r = -errno;
        export_ctx_free(&c);
        return r;
    }
    CLEANUP_FREE uint8_t *buf = malloc(bs);
    if (!buf) {
        export_ctx_free(&c);
        return -ENOMEM;
    }
    /* Blocks in order: the map's written ones merged with the journal's
     * (a block device gets every block, zeroes included). */
    size_t pi = 0;
    uint64_t blocks = 0, nb = 0, b = 0;
    struct gfs_bm_entry e;
    int have = dense ? 0 : gfs_bm_next(&s->bm, &nb, &e);
    while (r == 0 && (dense ? b < nblocks : have || pi < c.npairs)) {
        int stored = 0;
        if (!dense) {
            b = have && (pi == c.npairs || nb <= c.pairs[pi].block) ? nb : c.pairs[pi].block;
            if (have && nb == b) {
                stored = e.seg != GFS_BM_HOLE;
                nb++;
                have = gfs_bm_next(&s->bm, &nb, &e);
            }
        }
        size_t pj = pi;
        while (pj < c.npairs && c.pairs[pj].block == b)
            pj++;
        if (dense || stored || pj > pi) {
            r = build_block(s, b, c.fr.r, c.pairs + pi, pj - pi, c.pieces, buf);
            size_t n = (size_t)(size - b * bs < bs ? size - b * bs : bs);
            if (r == 0 && (dense || !all_zero(buf, n))) {
                r = write_all(fd, buf, n, b * bs);
                blocks++;
            }
        }
        pi = pj;
        b++;
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r == 0) {
        gfs_info(&v->log, "%s: exported the view of epoch %" PRIu64 " with %zu kept-aside journal "
                 "records (%" PRIu64 " blocks of data)", v->name, ea, c.fr.n, blocks);
        if (epoch_out)
            *epoch_out = ea;
    }
    export_ctx_free(&c);
    return r;
}

GLIDEFS_API int glidefs_fenced_discard(glidefs_volume *v)
{
    int r = 0;
    int dr = gfs_local_fenced_discard(v->dir, &r);
    if (dr < 0)
        return dr;
    pthread_mutex_lock(&v->lock);
    v->fenced_bytes = 0;
    pthread_mutex_unlock(&v->lock);
    gfs_info(&v->log, "%s: discarded the journal data kept aside after losing the lease", v->name);
    return r;
}
