/*
 * blockmap.c — the block map and segment table (see blockmap.h). Segments are
 * added in (epoch, seq) order, so the table is sorted and lookups bisect;
 * reclaim removes rows without reordering the rest, so it stays sorted.
 *
 * Packed entry, 12 bytes (struct gfs_bm_slot; the word w = hi:lo):
 *   seg  u32  segment index; 0 = NONE (all zero), HOLE, or ESC (the entry is
 *             in the overflow table `big`, unpacked)
 *   w    u64  HOLE: the write_seq. Otherwise offset:23 | length:18 |
 *             flags:2 (ZSTD, SEALED) | dseq:21, where
 *             dseq = write_seq - segs[seg].ws_base as a signed 21-bit value;
 *             ws_base is the write_seq of the first entry stored into that
 *             segment (a segment's blocks are uploaded together, so their
 *             write_seqs are close; compaction copies keep theirs, and the
 *             rare far one goes to the overflow table; so does one when
 *             the base would be >= 2^46).
 * No CRC: a payload with a CRC trailer (GFS_SEGF_TRAILER) checks itself when
 * read back. One without (a segment written before the trailer existed)
 * needs its CRC kept: its slot has SEG_LEGACY set in seg (indices stay below
 * 2^31) and the CRC sits in a side page of 4096 u32s (16 KiB) parallel to
 * the entry page, allocated with the first such entry in its range, so an
 * old store costs 16 B per block as before rather than an overflow entry.
 * What does not fit (offset >= 8 MiB, length 0 or >= 256 KiB, other flags,
 * a write_seq more than 2^20 away from the base) is stored unpacked in the
 * overflow hash table, marked ESC in the page. With the default 128 KiB
 * blocks and 25 blocks per segment (3.3 MB segments) every entry packs.
 * Segment row, 48 bytes (struct gfs_bm_seg):
 *   epoch, seq      u64, u64  the object's key (epoch with the origin depth
 *                             above GFS_ORIGIN_SHIFT)
 *   live_bytes:39 | ws_lo:25  live bytes (<= 4 GiB, so that the compactor's
 *                             live_bytes * 100 stays exact in 39 bits)
 *   total_bytes     u32       object size: segments are < 4 GiB (volume_open.c
 *                             bounds blocks_per_batch * block_size to 2 GiB;
 *                             a larger listed object is recorded as 0,
 *                             unknown, and so never compacted or deleted)
 *   dead_gen        u32       manifest generation when found dead (2^32
 *                             manifests in one process's life: not reached)
 *   dead_since_ms:41 | deleted:1 | ws_known:1 | ws_hi:21
 *                             monotonic ms (34 years of uptime) and flags;
 *                             ws_base = ws_hi:ws_lo, 46 bits.
 *   key_gen         u32       data key generation of the segment's key (codec.h;
 *                             0: legacy or not sealed); every entry read
 *                             out of the map carries it
 *   reserved        u32
 * Not 32: that needs ws_base to share bits with the dead marks (a live
 * segment has no use for them), but the compactor also reads them on
 * live rows; and epoch, seq stay whole.
 * A row lives as long as its segment: reclaim drops the rows of segments
 * deleted from the store (nothing live in them, so no entry names them),
 * renumbering the entries in one pass over the written pages; the compactor
 * runs it when at least a quarter of the table and 64 rows are gone.
 *
 * Memory math (128 KiB blocks, 25 blocks per segment):
 *   entries   12 B per block, in 48 KiB pages of 4096 entries (512 MiB of
 *             volume each) allocated on the first write into their range;
 *   directory 4 KiB pages of 512 page pointers (256 GiB of volume each),
 *             allocated with their first page; a top array of 8 B per 256 GiB
 *             (32 KiB for 1 PiB), the only cost of a sparse volume's size;
 *   segments  48 B per segment = 1.9 B per block at 25 blocks per segment,
 *             for the segments that hold live data (plus those deleted since
 *             the last reclaim: at most a third more);
 *   A fully written 1 TiB volume: 8 Mi blocks x 12 B = 96 MiB of entries,
 *   16 KiB of directory, 335,545 segments x 48 B = 15.4 MiB. No slack on
 *   entries; the segment table is sized exactly when a manifest is loaded
 *   (wake), grows by half as segments arrive (realloc of a large table only
 *   maps the new part; pages are touched when segments arrive) and is
 *   given back when reclaim leaves it less than half full.
 */
#include "blockmap.h"
#include "fastread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEG_ESC (GFS_BM_HOLE - 1u) /* never a segment index: seg_add stops below */
#define SEG_LEGACY 0x80000000u     /* slot.seg: no trailer, the CRC is in the side page */
#define SEG_LIMIT (SEG_LEGACY - 16u) /* segment indices stay below (and clear of ESC/HOLE) */

#define OFF_BITS 23
#define LEN_BITS 18
#define FLG_BITS 2
#define DSQ_BITS 21
#define LEN_SHIFT OFF_BITS
#define FLG_SHIFT (LEN_SHIFT + LEN_BITS)
#define DSQ_SHIFT (FLG_SHIFT + FLG_BITS)
#define MASK(n) ((UINT64_C(1) << (n)) - 1)
#define DSQ_MIN (-(INT64_C(1) << (DSQ_BITS - 1)))
#define DSQ_MAX ((INT64_C(1) << (DSQ_BITS - 1)) - 1)
#define PACK_FLAGS 0x6u   /* GFS_SEGF_ZSTD | GFS_SEGF_SEALED (segment.h), stored */
#define PACK_TRAILER 0x8u /* GFS_SEGF_TRAILER: implied unless SEG_LEGACY */

_Static_assert(DSQ_SHIFT + DSQ_BITS == 64, "packed word is 64 bits");
_Static_assert(sizeof(struct gfs_bm_slot) == 12, "a packed entry is 12 bytes");
_Static_assert(sizeof(struct gfs_bm_seg) == 48, "a segment row is 48 bytes");
_Static_assert(GFS_BM_SEG_MAX_BYTES * UINT64_C(100) < (UINT64_C(1) << 39),
               "live_bytes * 100 fits its 39-bit field");

static int is_seg(uint32_t s)
{
    return s != GFS_BM_NONE && s != GFS_BM_HOLE && s != SEG_ESC;
}

static int is_legacy(uint32_t s)
{
    return is_seg(s) && (s & SEG_LEGACY);
}

/* A packed slot's segment index (either kind), or 0 for NONE, HOLE, ESC. */
static uint32_t slot_seg(uint32_t s)
{
    return is_seg(s) ? s & ~SEG_LEGACY : 0;
}

int gfs_bm_init(struct gfs_blockmap *bm, uint64_t nblocks)
{
    memset(bm, 0, sizeof *bm);
    gfs_u64map_init(&bm->big);
    bm->segcap = 64;
    bm->segs = calloc(bm->segcap, sizeof *bm->segs);
    if (!bm->segs)
        return -ENOMEM;
    bm->nsegs = 1; /* index 0 is GFS_BM_NONE */
    return gfs_bm_grow(bm, nblocks);
}

void gfs_bm_free(struct gfs_blockmap *bm)
{
    for (size_t i = 0; i < bm->ndir; i++) {
        if (!bm->dir[i])
            continue;
        for (size_t k = 0; k < GFS_BM_DIR; k++)
            free(bm->dir[i][k]);
        free(bm->dir[i]);
    }
    free(bm->dir);
    for (size_t i = 0; bm->crcdir && i < bm->ndir; i++) {
        if (!bm->crcdir[i])
            continue;
        for (size_t k = 0; k < GFS_BM_DIR; k++)
            free(bm->crcdir[i][k]);
        free(bm->crcdir[i]);
    }
    free(bm->crcdir);
    size_t it = 0;
    uint64_t key;
    void *val;
    while (gfs_u64map_next(&bm->big, &it, &key, &val))
        free(val);
    gfs_u64map_free(&bm->big);
    free(bm->segs);
    memset(bm, 0, sizeof *bm);
}

int gfs_bm_grow(struct gfs_blockmap *bm, uint64_t nblocks)
{
    if (nblocks < bm->nblocks)
        return -EINVAL;
    uint64_t pages = (nblocks + GFS_BM_CHUNK - 1) >> GFS_BM_CHUNK_SHIFT;
    uint64_t need = (pages + GFS_BM_DIR - 1) >> GFS_BM_DIR_SHIFT;
    if (need > SIZE_MAX / sizeof *bm->dir)
        return -EINVAL;
    if (need > bm->ndir) {
        /* both arrays grow before ndir does: a failure leaves the map as it was */
        struct gfs_bm_slot ***d = realloc(bm->dir, (size_t)need * sizeof *d);
        if (!d)
            return -ENOMEM;
        bm->dir = d;
        if (bm->crcdir) {
            uint32_t ***c = realloc(bm->crcdir, (size_t)need * sizeof *c);
            if (!c)
                return -ENOMEM;
            bm->crcdir = c;
            memset(c + bm->ndir, 0, ((size_t)need - bm->ndir) * sizeof *c);
        }
        memset(d + bm->ndir, 0, ((size_t)need - bm->ndir) * sizeof *d);
        bm->ndir = (size_t)need;
    }
    bm->nblocks = nblocks;
    return 0;
}

static struct gfs_bm_slot *slot_of(const struct gfs_blockmap *bm, uint64_t b)
{
    uint64_t p = b >> GFS_BM_CHUNK_SHIFT;
    struct gfs_bm_slot **dp = bm->dir[p >> GFS_BM_DIR_SHIFT];
    if (!dp)
        return NULL;
    struct gfs_bm_slot *pg = dp[p & (GFS_BM_DIR - 1)];
    return pg ? &pg[b & (GFS_BM_CHUNK - 1)] : NULL;
}

/* Block b's CRC in its side page (0 if the page is not there). */
static uint32_t crc_get(const struct gfs_blockmap *bm, uint64_t b)
{
    uint64_t p = b >> GFS_BM_CHUNK_SHIFT;
    uint32_t **dp = bm->crcdir ? bm->crcdir[p >> GFS_BM_DIR_SHIFT] : NULL;
    const uint32_t *pg = dp ? dp[p & (GFS_BM_DIR - 1)] : NULL;
    return pg ? pg[b & (GFS_BM_CHUNK - 1)] : 0;
}

/* Where block b's CRC goes, its side page allocated if need be (NULL: no
 * memory). */
static uint32_t *crc_slot(struct gfs_blockmap *bm, uint64_t b)
{
    uint64_t p = b >> GFS_BM_CHUNK_SHIFT;
    /* the top array too comes with the first such entry: a store written
     * with trailers never pays for it */
    if (!bm->crcdir && !(bm->crcdir = calloc(bm->ndir, sizeof *bm->crcdir)))
        return NULL;
    uint32_t ***dp = &bm->crcdir[p >> GFS_BM_DIR_SHIFT];
    if (!*dp && !(*dp = calloc(GFS_BM_DIR, sizeof **dp)))
        return NULL;
    uint32_t **pp = &(*dp)[p & (GFS_BM_DIR - 1)];
    if (!*pp) {
        if (!(*pp = calloc(GFS_BM_CHUNK, sizeof **pp)))
            return NULL;
        bm->crcpages++;
    }
    return &(*pp)[b & (GFS_BM_CHUNK - 1)];
}

static struct gfs_bm_entry unpack(const struct gfs_blockmap *bm, uint64_t b,
                                  const struct gfs_bm_slot *s)
{
    struct gfs_bm_entry e = {0};
    if (s->seg == GFS_BM_NONE)
        return e;
    if (s->seg == SEG_ESC) {
        const struct gfs_bm_entry *x = gfs_u64map_get(&bm->big, b);
        if (x) {
            e = *x;
            if (e.seg < bm->nsegs && e.seg != GFS_BM_NONE)
                e.key_gen = bm->segs[e.seg].key_gen;
        }
        return e;
    }
    uint64_t w = (uint64_t)s->hi << 32 | s->lo;
    if (s->seg == GFS_BM_HOLE) {
        e.seg = GFS_BM_HOLE;
        e.write_seq = w;
        return e;
    }
    e.seg = slot_seg(s->seg);
    e.offset = (uint32_t)(w & MASK(OFF_BITS));
    e.length = (uint32_t)((w >> LEN_SHIFT) & MASK(LEN_BITS));
    e.flags = (uint32_t)((w >> FLG_SHIFT) & MASK(FLG_BITS)) << 1;
    if (s->seg & SEG_LEGACY)
        e.crc = crc_get(bm, b); /* set stored it before the slot */
    else
        e.flags |= PACK_TRAILER;
    uint64_t d = w >> DSQ_SHIFT; /* sign-extend the 21-bit delta */
    int64_t sd = (int64_t)(d ^ (UINT64_C(1) << (DSQ_BITS - 1))) - (INT64_C(1) << (DSQ_BITS - 1));
    e.write_seq = gfs_bm_seg_ws_base(&bm->segs[e.seg]) + (uint64_t)sd;
    e.key_gen = bm->segs[e.seg].key_gen;
    return e;
}

/* Pack e into *s if it fits (1), else 0. May set the segment's ws_base. An
 * entry without a trailer packs with SEG_LEGACY: the caller keeps its CRC. */
static int pack(struct gfs_blockmap *bm, const struct gfs_bm_entry *e, struct gfs_bm_slot *s)
{
    if (e->seg == GFS_BM_NONE) {
        *s = (struct gfs_bm_slot){0};
        return 1;
    }
    if (e->seg == GFS_BM_HOLE) {
        if (e->offset || e->length || e->crc || e->flags)
            return 0;
        *s = (struct gfs_bm_slot){GFS_BM_HOLE, (uint32_t)e->write_seq,
                                  (uint32_t)(e->write_seq >> 32)};
        return 1;
    }
    if (!is_seg(e->seg) || e->seg >= bm->nsegs || e->offset > MASK(OFF_BITS) ||
        e->length == 0 || e->length > MASK(LEN_BITS) || (e->flags & ~(PACK_FLAGS | PACK_TRAILER)))
        return 0;
    struct gfs_bm_seg *sg = &bm->segs[e->seg];
    if (!sg->ws_known) {
        if (e->write_seq >> GFS_BM_WS_BITS)
            return 0; /* too large to be a base: a later entry may set it */
        sg->ws_lo = e->write_seq & MASK(GFS_BM_WS_LO_BITS);
        sg->ws_hi = e->write_seq >> GFS_BM_WS_LO_BITS;
        sg->ws_known = 1;
    }
    int64_t d = (int64_t)(e->write_seq - gfs_bm_seg_ws_base(sg));
    if (d < DSQ_MIN || d > DSQ_MAX)
        return 0;
    uint64_t w = (uint64_t)e->offset | ((uint64_t)e->length << LEN_SHIFT) |
                 ((uint64_t)((e->flags & PACK_FLAGS) >> 1) << FLG_SHIFT) |
                 (((uint64_t)d & MASK(DSQ_BITS)) << DSQ_SHIFT);
    uint32_t legacy = (e->flags & PACK_TRAILER) ? 0 : SEG_LEGACY;
    *s = (struct gfs_bm_slot){e->seg | legacy, (uint32_t)w, (uint32_t)(w >> 32)};
    return 1;
}

struct gfs_bm_entry gfs_bm_get(const struct gfs_blockmap *bm, uint64_t b)
{
    struct gfs_bm_entry none = {0};
    if (b >= bm->nblocks)
        return none;
    const struct gfs_bm_slot *s = slot_of(bm, b);
    return s ? unpack(bm, b, s) : none;
}

int gfs_bm_set(struct gfs_blockmap *bm, uint64_t b, const struct gfs_bm_entry *e)
{
    if (b >= bm->nblocks)
        return -EINVAL;
    gfs_fr_inval_block(bm->fr, b);
    struct gfs_bm_slot *s = slot_of(bm, b);
    if (!s) {
        if (e->seg == GFS_BM_NONE)
            return 0;
        uint64_t p = b >> GFS_BM_CHUNK_SHIFT;
        struct gfs_bm_slot ***dp = &bm->dir[p >> GFS_BM_DIR_SHIFT];
        if (!*dp) {
            *dp = calloc(GFS_BM_DIR, sizeof **dp);
            if (!*dp)
                return -ENOMEM;
        }
        struct gfs_bm_slot **pp = &(*dp)[p & (GFS_BM_DIR - 1)];
        *pp = calloc(GFS_BM_CHUNK, sizeof **pp);
        if (!*pp)
            return -ENOMEM;
        bm->pages++;
        s = &(*pp)[b & (GFS_BM_CHUNK - 1)];
    }
    struct gfs_bm_entry old = unpack(bm, b, s);
    if (is_seg(e->seg) && e->seg < bm->nsegs) {
        /* live bytes never exceed a segment's size; more is a corrupt map */
        uint64_t live = bm->segs[e->seg].live_bytes;
        if (old.seg == e->seg)
            live -= old.length;
        if (live + e->length > GFS_BM_SEG_MAX_BYTES)
            return -EOVERFLOW;
    }
    struct gfs_bm_slot ns;
    if (!pack(bm, e, &ns)) {
        struct gfs_bm_entry *x = s->seg == SEG_ESC ? gfs_u64map_get(&bm->big, b) : NULL;
        if (!x) {
            x = malloc(sizeof *x);
            if (!x)
                return -ENOMEM;
            int r = gfs_u64map_put(&bm->big, b, x);
            if (r < 0) {
                free(x);
                return r;
            }
        }
        *x = *e;
        x->key_gen = 0; /* the row's, filled in by unpack */
        if (x->flags & PACK_TRAILER)
            x->crc = 0; /* as if packed: the payload checks itself */
        ns = (struct gfs_bm_slot){.seg = SEG_ESC};
    } else {
        if (is_legacy(ns.seg)) {
            uint32_t *c = crc_slot(bm, b);
            if (!c)
                return -ENOMEM;
            *c = e->crc;
        }
        if (s->seg == SEG_ESC)
            free(gfs_u64map_del(&bm->big, b));
    }
    bm->legacy_entries += (uint64_t)is_legacy(ns.seg) - (uint64_t)is_legacy(s->seg);
    if (is_seg(old.seg) && old.seg < bm->nsegs)
        bm->segs[old.seg].live_bytes -= old.length;
    if (is_seg(e->seg) && e->seg < bm->nsegs)
        bm->segs[e->seg].live_bytes += e->length;
    if (old.seg == GFS_BM_NONE && e->seg != GFS_BM_NONE)
        bm->written_blocks++;
    else if (old.seg != GFS_BM_NONE && e->seg == GFS_BM_NONE)
        bm->written_blocks--;
    *s = ns;
    return 0;
}

int gfs_bm_next(const struct gfs_blockmap *bm, uint64_t *b, struct gfs_bm_entry *e)
{
    uint64_t i = *b;
    while (i < bm->nblocks) {
        uint64_t p = i >> GFS_BM_CHUNK_SHIFT;
        struct gfs_bm_slot **dp = bm->dir[p >> GFS_BM_DIR_SHIFT];
        if (!dp) { /* skip the whole directory page */
            i = ((p >> GFS_BM_DIR_SHIFT) + 1) << (GFS_BM_DIR_SHIFT + GFS_BM_CHUNK_SHIFT);
            continue;
        }
        const struct gfs_bm_slot *pg = dp[p & (GFS_BM_DIR - 1)];
        if (!pg) {
            i = (p + 1) << GFS_BM_CHUNK_SHIFT;
            continue;
        }
        uint64_t end = (p + 1) << GFS_BM_CHUNK_SHIFT;
        if (end > bm->nblocks)
            end = bm->nblocks;
        for (; i < end; i++) {
            const struct gfs_bm_slot *s = &pg[i & (GFS_BM_CHUNK - 1)];
            if (s->seg != GFS_BM_NONE) {
                *b = i;
                *e = unpack(bm, i, s);
                return 1;
            }
        }
    }
    return 0;
}

size_t gfs_bm_mem_bytes(const struct gfs_blockmap *bm)
{
    size_t n = bm->ndir * sizeof *bm->dir + bm->pages * GFS_BM_CHUNK * sizeof(struct gfs_bm_slot);
    for (size_t i = 0; i < bm->ndir; i++)
        if (bm->dir[i])
            n += GFS_BM_DIR * sizeof *bm->dir[i];
    for (size_t i = 0; bm->crcdir && i < bm->ndir; i++)
        if (bm->crcdir[i])
            n += GFS_BM_DIR * sizeof *bm->crcdir[i];
    if (bm->crcdir)
        n += bm->ndir * sizeof *bm->crcdir + bm->crcpages * GFS_BM_CHUNK * sizeof(uint32_t);
    n += (size_t)bm->segcap * sizeof *bm->segs;
    n += bm->big.cap * (sizeof *bm->big.keys + sizeof *bm->big.vals) +
         bm->big.count * sizeof(struct gfs_bm_entry);
    return n;
}

size_t gfs_bm_overflow_count(const struct gfs_blockmap *bm)
{
    return bm->big.count;
}

uint64_t gfs_bm_legacy_count(const struct gfs_blockmap *bm)
{
    return bm->legacy_entries;
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

/* Make room for at least need rows. */
static int seg_room(struct gfs_blockmap *bm, uint64_t need, int exact)
{
    if (need <= bm->segcap)
        return 0;
    if (need > SEG_LIMIT)
        return -ENOSPC;
    uint64_t ncap = need;
    if (!exact) {
        /* by half: amortised appends, a third of slack at most */
        ncap = (uint64_t)bm->segcap + bm->segcap / 2;
        if (ncap < need)
            ncap = need;
        if (ncap > SEG_LIMIT)
            ncap = SEG_LIMIT;
    }
    struct gfs_bm_seg *s = realloc(bm->segs, (size_t)ncap * sizeof *s);
    if (!s)
        return -ENOMEM;
    bm->segs = s;
    bm->segcap = (uint32_t)ncap;
    return 0;
}

int gfs_bm_seg_reserve(struct gfs_blockmap *bm, uint32_t n)
{
    return seg_room(bm, (uint64_t)bm->nsegs + n, 1);
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
    if (bm->nsegs >= SEG_LIMIT)
        return -ENOSPC;
    int r = seg_room(bm, (uint64_t)bm->nsegs + 1, 0);
    if (r < 0)
        return r;
    struct gfs_bm_seg *s = &bm->segs[bm->nsegs];
    memset(s, 0, sizeof *s);
    s->epoch = epoch;
    s->seq = seq;
    s->total_bytes = total_bytes > GFS_BM_SEG_MAX_BYTES ? 0 : (uint32_t)total_bytes;
    return bm->nsegs++;
}

int gfs_bm_seg_set_total(struct gfs_blockmap *bm, uint32_t seg, uint64_t total_bytes)
{
    if (seg == GFS_BM_NONE || seg >= bm->nsegs)
        return -EINVAL;
    int big = total_bytes > GFS_BM_SEG_MAX_BYTES;
    bm->segs[seg].total_bytes = big ? 0 : (uint32_t)total_bytes;
    return big ? -EFBIG : 0;
}

#define GONE UINT32_MAX /* in reclaim's map while marking: the row goes */

int64_t gfs_bm_seg_reclaim(struct gfs_blockmap *bm, uint32_t min_rows, gfs_bm_renum_fn fn,
                           void *arg)
{
    uint32_t n = bm->nsegs;
    if (n <= 2)
        return 0;
    uint32_t *map = calloc(n, sizeof *map);
    if (!map)
        return -ENOMEM;
    /* deleted with nothing live: no packed entry names it (a packed entry
     * has a length); the newest of its epoch stays for
     * gfs_view_last_seq_of */
    uint32_t gone = 0;
    for (uint32_t i = 1; i + 1 < n; i++) {
        const struct gfs_bm_seg *s = &bm->segs[i];
        if (s->deleted && s->live_bytes == 0 && bm->segs[i + 1].epoch == s->epoch) {
            map[i] = GONE;
            gone++;
        }
    }
    /* a zero-length entry (overflow only) may still name one: keep that */
    size_t it = 0;
    uint64_t key;
    void *val;
    while (gone && gfs_u64map_next(&bm->big, &it, &key, &val)) {
        const struct gfs_bm_entry *x = val;
        if (is_seg(x->seg) && x->seg < n && map[x->seg] == GONE) {
            map[x->seg] = 0;
            gone--;
        }
    }
    if (gone == 0 || gone < min_rows || (min_rows && (uint64_t)gone * 4 < n - 1)) {
        free(map);
        return 0;
    }
    uint32_t j = 1;
    for (uint32_t i = 1; i < n; i++) {
        if (map[i] == GONE) {
            map[i] = 0;
            continue;
        }
        if (j != i)
            bm->segs[j] = bm->segs[i];
        map[i] = j++;
    }
    /* every entry that names a segment of the table, packed or not */
    for (size_t d = 0; d < bm->ndir; d++) {
        if (!bm->dir[d])
            continue;
        for (size_t k = 0; k < GFS_BM_DIR; k++) {
            struct gfs_bm_slot *pg = bm->dir[d][k];
            if (!pg)
                continue;
            for (uint32_t q = 0; q < GFS_BM_CHUNK; q++) {
                uint32_t i = slot_seg(pg[q].seg);
                if (i && i < n)
                    pg[q].seg = map[i] | (pg[q].seg & SEG_LEGACY);
            }
        }
    }
    it = 0;
    while (gfs_u64map_next(&bm->big, &it, &key, &val)) {
        struct gfs_bm_entry *x = val;
        if (is_seg(x->seg) && x->seg < n)
            x->seg = map[x->seg];
    }
    bm->nsegs = j;
    bm->seg_gen++;
    if (fn)
        fn(arg, map, n);
    free(map);
    if (bm->segcap > 64 && bm->nsegs < bm->segcap / 2) {
        /* give it back (RSS falls), with room to grow by a quarter */
        uint64_t ncap = (uint64_t)bm->nsegs + bm->nsegs / 4;
        if (ncap < 64)
            ncap = 64;
        struct gfs_bm_seg *s = realloc(bm->segs, (size_t)ncap * sizeof *s);
        if (s) {
            bm->segs = s;
            bm->segcap = (uint32_t)ncap;
        }
    }
    return (int64_t)(n - j);
}
