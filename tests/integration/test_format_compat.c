/*
 * test_format_compat.c — stores written before the payload CRC trailer
 * (GFS_SEGF_TRAILER, segment.h) still work, end to end. A volume of
 * compressed, plain and hole blocks is written by this build, then its store
 * is turned into the legacy format with the library's own encoders: every
 * segment re-packed without trailers (offsets recomputed, the flag cleared,
 * the CRC kept in the header entry) and every manifest re-encoded with the
 * CRCs and without the flag. Then:
 *   - on an empty cache every block reads back byte-exact, through a
 *     manifest and through segment-header replay (manifests deleted), with
 *     read-ahead off (one GET per block) and on (coalesced GETs), and every
 *     legacy entry is packed in the block map with its CRC (side page); the
 *     manifest the volume then writes keeps those CRCs;
 *   - one flipped byte in a legacy plain payload and one in a legacy zstd
 *     payload make exactly those two blocks fail with -EIO (the CRC the map
 *     keeps is checked, on the single-block and on the read-ahead path, and
 *     a bad block is never cached), the rest still read back;
 *   - compaction converts: the live blocks of sparse legacy segments are
 *     copied into segments whose every entry has a valid trailer and the
 *     same CRC, the legacy segments go from the store, the map's legacy count
 *     keeps only the blocks of the legacy segment left dense, and all of it
 *     reads back before and after a wake on an empty cache;
 *   - the new form over it: deltas (GFS_MANF_DELTA) over a base with legacy
 *     entries, read through the chain on a wake, legacy CRCs kept.
 * Links the internal library: segment and manifest codecs, the object store
 * API and the block map.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>

#include "testutil.h"
#include "bytes.h"
#include "crc32c.h"
#include "manifest.h"
#include "objstore.h"
#include "segment.h"
#include "volume_internal.h"

#define BS 131072u
#define NB 48u
#define SZ ((uint64_t)NB * BS)
#define VOL "vol"
#define MAXOBJ (64u << 20)

static uint8_t *ref; /* the model: what every byte of the volume must read */

/* ---- the store, through the library's object API ---- */

struct keys {
    char **k;
    uint64_t *size;
    size_t n, cap;
};

static int collect(void *arg, const char *key, uint64_t size)
{
    struct keys *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->k = realloc(l->k, l->cap * sizeof *l->k);
        l->size = realloc(l->size, l->cap * sizeof *l->size);
        if (!l->k || !l->size)
            abort();
    }
    l->k[l->n] = strdup(key);
    l->size[l->n++] = size;
    return 0;
}

static void keys_free(struct keys *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->k[i]);
    free(l->k);
    free(l->size);
    *l = (struct keys){0};
}

static struct keys list(struct gfs_objstore *st, const char *what)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "nbd/%s/%s/", VOL, what);
    struct keys l = {0};
    assert_int_equal(st->ops->list(st, prefix, NULL, collect, &l), 0);
    return l;
}

static uint8_t *get(struct gfs_objstore *st, const char *key, size_t *len)
{
    void *buf = NULL;
    assert_int_equal(st->ops->get(st, key, MAXOBJ, &buf, len, NULL), 0);
    return buf;
}

static void put(struct gfs_objstore *st, const char *key, const void *buf, size_t len)
{
    assert_int_equal(st->ops->put(st, key, buf, len, 0, NULL), 0);
}

/* A segment object as the store holds it, decoded. */
struct seg {
    char *key;
    uint64_t epoch, seq;
    uint8_t *obj;
    size_t len;
    struct gfs_seg_header h;
};

struct segs {
    struct seg *s;
    size_t n;
};

static struct segs load_segs(struct gfs_objstore *st)
{
    struct keys l = list(st, "seg");
    struct segs r = {calloc(l.n ? l.n : 1, sizeof *r.s), l.n};
    assert_non_null(r.s);
    for (size_t i = 0; i < l.n; i++) {
        struct seg *s = &r.s[i];
        s->key = strdup(l.k[i]);
        s->obj = get(st, s->key, &s->len);
        assert_int_equal(s->len, l.size[i]);
        size_t need = 0;
        assert_int_equal(gfs_seg_decode_header(s->obj, s->len, s->len, &s->h, &need), 0);
        assert_int_equal(gfs_parse_epoch_seq(strrchr(s->key, '/') + 1, &s->epoch, &s->seq), 0);
        assert_true(s->epoch == s->h.epoch && s->seq == s->h.seq);
    }
    keys_free(&l);
    return r;
}

static void segs_free(struct segs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->s[i].key);
        free(r->s[i].obj);
        gfs_seg_header_free(&r->s[i].h);
    }
    free(r->s);
    *r = (struct segs){0};
}

static const struct seg *seg_by_id(const struct segs *r, uint64_t epoch, uint64_t seq)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->s[i].epoch == epoch && r->s[i].seq == seq)
            return &r->s[i];
    return NULL;
}

static const struct gfs_seg_entry *entry_of(const struct seg *s, uint64_t b)
{
    for (uint32_t i = 0; s && i < s->h.nblocks; i++)
        if (s->h.entries[i].block_index == b)
            return &s->h.entries[i];
    return NULL;
}

/* Every non-hole payload of s checks: with its trailer (== the entry's crc)
 * when trailer, else against the entry's crc alone. Returns how many. */
static uint32_t check_payloads(const struct seg *s, int trailer)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->h.nblocks; i++) {
        const struct gfs_seg_entry *e = &s->h.entries[i];
        if (e->flags & GFS_SEGF_HOLE)
            continue;
        assert_int_equal(!!(e->flags & GFS_SEGF_TRAILER), trailer);
        uint64_t span = gfs_seg_span(e->length, e->flags);
        assert_true(e->offset + span <= s->len);
        uint32_t c = 0;
        assert_int_equal(gfs_seg_payload_check(s->obj + e->offset, span, e->length, e->flags,
                                               e->crc, &c), 0);
        assert_int_equal(c, e->crc);
        assert_int_equal(gfs_crc32c(0, s->obj + e->offset, e->length), e->crc);
        n++;
    }
    return n;
}

/* ---- turning the store into what a build without trailers wrote ---- */

/* Re-pack one segment without trailers: the payloads back to back after
 * the header, offsets recomputed, GFS_SEGF_TRAILER cleared, crc kept. */
static void legacy_segment(struct gfs_objstore *st, struct seg *s)
{
    size_t hlen = gfs_seg_header_size(s->h.nblocks), total = hlen;
    for (uint32_t i = 0; i < s->h.nblocks; i++)
        if (!(s->h.entries[i].flags & GFS_SEGF_HOLE))
            total += s->h.entries[i].length;
    uint8_t *out = calloc(1, total);
    assert_non_null(out);
    size_t off = hlen;
    for (uint32_t i = 0; i < s->h.nblocks; i++) {
        struct gfs_seg_entry *e = &s->h.entries[i];
        if (e->flags & GFS_SEGF_HOLE)
            continue;
        memcpy(out + off, s->obj + e->offset, e->length);
        e->offset = (uint32_t)off;
        e->flags &= ~GFS_SEGF_TRAILER;
        off += e->length;
    }
    assert_int_equal(off, total);
    assert_int_equal(gfs_seg_encode_header(&s->h, out, hlen), (int)hlen);
    put(st, s->key, out, total);
    free(s->obj);
    s->obj = out;
    s->len = total;
}

/* Re-encode every manifest as the old build wrote it: each entry with its
 * payload's CRC, its new offset and no TRAILER flag (taken from the legacy
 * segment's header). Returns how many manifests. */
static size_t legacy_manifests(struct gfs_objstore *st, const struct segs *old,
                               const struct segs *legacy)
{
    struct keys l = list(st, "manifest");
    for (size_t i = 0; i < l.n; i++) {
        size_t len = 0;
        uint8_t *buf = get(st, l.k[i], &len);
        struct gfs_manifest m;
        assert_int_equal(gfs_manifest_decode(buf, len, &m), 0);
        free(buf);
        /* one session's first manifest: a base, as an old build wrote */
        assert_int_equal(m.depth, 0);
        for (uint64_t k = 0; k < m.nentries; k++) {
            struct gfs_man_entry *me = &m.entries[k];
            if (me->seg == GFS_MAN_HOLE)
                continue;
            const struct gfs_man_seg *ms = &m.segs[me->seg];
            const struct gfs_seg_entry *was =
                entry_of(seg_by_id(old, ms->epoch, ms->seq), me->block_index);
            const struct gfs_seg_entry *now =
                entry_of(seg_by_id(legacy, ms->epoch, ms->seq), me->block_index);
            assert_non_null(was);
            assert_non_null(now);
            /* as this build writes it: the trailer announced, no CRC kept */
            assert_true(me->flags & GFS_SEGF_TRAILER);
            assert_int_equal(me->crc, 0);
            assert_int_equal(me->offset, was->offset);
            assert_int_equal(me->flags, was->flags);
            assert_int_equal(me->length, now->length);
            me->offset = now->offset;
            me->crc = now->crc;
            me->flags = now->flags;
        }
        void *out = NULL;
        size_t outlen = 0;
        assert_int_equal(gfs_manifest_encode(&m, 1, &out, &outlen), 0);
        put(st, l.k[i], out, outlen);
        free(out);
        gfs_manifest_free(&m);
    }
    size_t n = l.n;
    keys_free(&l);
    return n;
}

/* Every entry of every manifest in the store names its block as the legacy
 * segments hold it: offset, CRC, no TRAILER. Returns how many manifests. */
static size_t check_legacy_manifests(struct gfs_objstore *st, const struct segs *legacy)
{
    struct keys l = list(st, "manifest");
    for (size_t i = 0; i < l.n; i++) {
        size_t len = 0;
        uint8_t *buf = get(st, l.k[i], &len);
        struct gfs_manifest m;
        assert_int_equal(gfs_manifest_decode(buf, len, &m), 0);
        free(buf);
        for (uint64_t k = 0; k < m.nentries; k++) {
            const struct gfs_man_entry *me = &m.entries[k];
            if (me->seg == GFS_MAN_HOLE)
                continue;
            const struct gfs_seg_entry *se = entry_of(
                seg_by_id(legacy, m.segs[me->seg].epoch, m.segs[me->seg].seq), me->block_index);
            assert_non_null(se);
            assert_false(me->flags & GFS_SEGF_TRAILER);
            assert_int_equal(me->flags, se->flags);
            assert_int_equal(me->offset, se->offset);
            assert_int_equal(me->length, se->length);
            assert_int_equal(me->crc, se->crc);
        }
        gfs_manifest_free(&m);
    }
    size_t n = l.n;
    keys_free(&l);
    return n;
}

/* ---- the volume ---- */

static glidefs_config *cfg_for(const struct tu_env *env, const char *ra_kb)
{
    glidefs_config *c = tu_config(env, "64M", "100000");
    tu_set(c, "storage.compression", "zstd");
    tu_set(c, "cache.readahead_kb", ra_kb);
    tu_set(c, "compaction.min_live_pct", "90");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    tu_set(c, "compaction.keep_manifests", "1");
    return c;
}

/* Open on an empty cache: every block not written since comes from the store. */
static glidefs_volume *wake(const struct tu_env *env, const char *ra_kb)
{
    tu_rmrf(env->cache);
    glidefs_config *c = cfg_for(env, ra_kb);
    /* no access profile: a wake would prefetch what the one before read, and
     * 3b's read-ahead of the legacy segments would find it done already */
    tu_set(c, "cache.profile_s", "0");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, VOL, 0, 0, &v), 0);
    glidefs_config_free(c);
    return v;
}

/* Map entries of payloads without a trailer (packed, their CRC in a side
 * page); none of them may have fallen into the overflow table. */
static size_t legacy_entries(glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    size_t over = gfs_bm_overflow_count(&v->sv.bm);
    size_t n = (size_t)gfs_bm_legacy_count(&v->sv.bm);
    pthread_mutex_unlock(&v->lock);
    assert_int_equal(over, 0);
    return n;
}

static struct glidefs_stats stats_of(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st;
}

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x = tu_rand(s);
        memcpy(p + i, &x, 8);
    }
}

/* Read every block on its own (a bad one fails alone): blocks bad1 and bad2
 * (pass NB for none) must fail with -EIO, all others read back as the model. */
static void read_blocks(glidefs_volume *v, uint64_t bad1, uint64_t bad2)
{
    uint8_t *buf = malloc(BS);
    for (uint64_t b = 0; b < NB; b++) {
        int r = glidefs_pread(v, buf, BS, b * BS);
        if (b == bad1 || b == bad2) {
            assert_int_equal(r, -EIO);
            continue;
        }
        assert_int_equal(r, 0);
        if (memcmp(buf, ref + b * BS, BS) != 0)
            fail_msg("block %llu differs from the model", (unsigned long long)b);
    }
    free(buf);
}

static void read_all(glidefs_volume *v)
{
    uint8_t *buf = malloc(SZ);
    assert_int_equal(glidefs_pread(v, buf, SZ, 0), 0);
    if (memcmp(buf, ref, SZ) != 0)
        fail_msg("volume differs from the model");
    free(buf);
}

static uint32_t nonzero_blocks(void)
{
    uint32_t n = 0;
    for (uint64_t b = 0; b < NB; b++)
        n += !is_zero(ref + b * BS, BS);
    return n;
}

/* Flip one byte in the middle of block b's payload in legacy segment s. */
static void corrupt(struct gfs_objstore *st, struct seg *s, uint64_t b)
{
    const struct gfs_seg_entry *e = entry_of(s, b);
    assert_non_null(e);
    s->obj[e->offset + e->length / 2] ^= 0x40;
    put(st, s->key, s->obj, s->len);
}

static void test_legacy_store(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "compat");
    struct gfs_log log = {tu_log, NULL, GLIDEFS_LOG_WARN};
    struct gfs_objstore *st = NULL;
    char err[256] = "";
    glidefs_config *c = cfg_for(&env, "0");
    ref = calloc(1, SZ);
    uint8_t *buf = malloc(BS);
    assert_true(ref && buf);
    uint64_t s = 20261126;

    /* 1. written by this build: zstd, plain and hole blocks */
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, VOL, SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    for (uint64_t b = 0; b < NB; b++) {
        uint8_t *p = ref + b * BS;
        switch (b % 6) {
        case 0:
        case 4: /* half random, half zero: compresses, but not to nothing */
            fill_random(p, BS / 2, &s);
            break;
        case 1:
        case 2: /* random: zstd cannot shrink it, stored plain */
            fill_random(p, BS, &s);
            break;
        case 3: /* trimmed */
            assert_int_equal(glidefs_trim(v, b * BS, BS, 0), 0);
            continue;
        case 5: /* written as zeroes: a hole */
            break;
        }
        assert_int_equal(glidefs_pwrite(v, p, BS, b * BS, 0), 0);
    }
    assert_int_equal(glidefs_drain(v, -1), 0);
    read_all(v);
    assert_int_equal(glidefs_volume_close(v), 0);
    const uint32_t nonzero = nonzero_blocks();

    /* 2. the store as a build without trailers would have written it */
    assert_int_equal(gfs_objstore_open(c, &log, &st, err, sizeof err), 0);
    struct segs old = load_segs(st), legacy = load_segs(st);
    assert_true(old.n >= 2);
    uint32_t zstd = 0, plain = 0, holes = 0, payloads = 0;
    int64_t where[NB]; /* block -> index of the legacy segment holding it */
    for (uint64_t b = 0; b < NB; b++)
        where[b] = -1;
    for (size_t i = 0; i < old.n; i++) {
        payloads += check_payloads(&old.s[i], 1); /* this build: every payload has one */
        for (uint32_t k = 0; k < old.s[i].h.nblocks; k++) {
            const struct gfs_seg_entry *e = &old.s[i].h.entries[k];
            assert_true(e->block_index < NB);
            assert_int_equal(where[e->block_index], -1); /* each block stored once */
            where[e->block_index] = (int64_t)i;
            if (e->flags & GFS_SEGF_HOLE)
                assert_int_equal(e->flags, GFS_SEGF_HOLE);
            holes += !!(e->flags & GFS_SEGF_HOLE);
            zstd += !!(e->flags & GFS_SEGF_ZSTD);
            plain += !(e->flags & (GFS_SEGF_HOLE | GFS_SEGF_ZSTD));
            assert_int_equal(!!(e->flags & GFS_SEGF_HOLE), is_zero(ref + e->block_index * BS, BS));
        }
        legacy_segment(st, &legacy.s[i]);
    }
    assert_int_equal(payloads, nonzero);
    assert_true(zstd > 0 && plain > 0 && holes > 0);
    size_t nman = legacy_manifests(st, &old, &legacy);
    assert_true(nman >= 1);
    /* read back: no trailer anywhere, every payload checks against its CRC */
    {
        struct segs back = load_segs(st);
        assert_int_equal(back.n, legacy.n);
        uint32_t n = 0;
        for (size_t i = 0; i < back.n; i++) {
            n += check_payloads(&back.s[i], 0);
            size_t packed = gfs_seg_header_size(back.s[i].h.nblocks);
            for (uint32_t k = 0; k < back.s[i].h.nblocks; k++) {
                const struct gfs_seg_entry *e = &back.s[i].h.entries[k], *o = &old.s[i].h.entries[k];
                assert_false(e->flags & GFS_SEGF_TRAILER);
                assert_int_equal(e->crc, o->crc);
                assert_int_equal(e->length, o->length);
                assert_int_equal(e->flags, o->flags & ~GFS_SEGF_TRAILER);
                packed += (e->flags & GFS_SEGF_HOLE) ? 0 : e->length;
            }
            assert_int_equal(back.s[i].len, packed); /* payloads back to back */
            /* exactly the trailers are gone */
            assert_int_equal(old.s[i].len - back.s[i].len,
                             GFS_SEG_TRAILER_LEN * check_payloads(&old.s[i], 1));
        }
        assert_int_equal(n, nonzero);
        segs_free(&back);
        assert_int_equal(check_legacy_manifests(st, &legacy), nman);
    }

    /* 3a. wake from the legacy manifest, one GET per block (no read-ahead) */
    v = wake(&env, "0");
    assert_int_equal(legacy_entries(v), nonzero); /* the legacy path: each keeps its CRC */
    read_blocks(v, NB, NB);
    struct glidefs_stats sv = stats_of(v);
    assert_int_equal(sv.blocks_fetched, nonzero); /* every data block came from the store */
    assert_int_equal(sv.checksum_errors, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* 3b. no manifest: the map comes from replaying the legacy segment
     * headers; read with read-ahead (coalesced ranged GETs) */
    {
        struct keys ml = list(st, "manifest");
        for (size_t i = 0; i < ml.n; i++)
            assert_int_equal(st->ops->del(st, ml.k[i]), 0);
        keys_free(&ml);
    }
    v = wake(&env, "16384");
    assert_int_equal(legacy_entries(v), nonzero);
    assert_int_equal(glidefs_prefetch(v, 0, SZ), 0);
    sv = stats_of(v);
    fprintf(stderr, "read-ahead put %llu of %u legacy blocks into the cache, %llu GETs\n",
            (unsigned long long)sv.readahead_blocks, nonzero,
            (unsigned long long)sv.store_gets);
    assert_true(sv.readahead_blocks > 0);
    assert_int_equal(sv.checksum_errors, 0);
    read_all(v);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* the manifest the volume wrote at close keeps the legacy CRCs */
    assert_int_equal(check_legacy_manifests(st, &legacy), 1);

    /* 4. damage: one legacy plain and one legacy zstd payload */
    uint64_t pb = NB, zb = NB;
    for (uint64_t b = 0; b < NB; b++) {
        const struct gfs_seg_entry *e = where[b] < 0 ? NULL : entry_of(&legacy.s[where[b]], b);
        if (!e || (e->flags & GFS_SEGF_HOLE))
            continue;
        if (pb == NB && e->flags == 0)
            pb = b;
        if (zb == NB && e->flags == GFS_SEGF_ZSTD)
            zb = b;
    }
    assert_true(pb < NB && zb < NB);
    struct seg *sp = &legacy.s[where[pb]], *sz = &legacy.s[where[zb]];
    uint8_t *keep_p = malloc(sp->len), *keep_z = malloc(sz->len);
    size_t keep_pl = sp->len, keep_zl = sz->len;
    memcpy(keep_p, sp->obj, sp->len);
    corrupt(st, sp, pb);
    memcpy(keep_z, sz->obj, sz->len); /* sz may be sp: its damage is kept here too */
    corrupt(st, sz, zb);
    /* single-block fetches */
    v = wake(&env, "0");
    read_blocks(v, pb, zb);
    read_blocks(v, pb, zb); /* still failing: nothing bad was cached */
    sv = stats_of(v);
    assert_true(sv.checksum_errors >= 4);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* read-ahead: it fetches the bad blocks in its runs and must not cache them */
    v = wake(&env, "16384");
    assert_int_equal(glidefs_prefetch(v, 0, SZ), -EIO);
    assert_int_equal(glidefs_pread(v, buf, BS, pb * BS), -EIO);
    assert_int_equal(glidefs_pread(v, buf, BS, zb * BS), -EIO);
    read_blocks(v, pb, zb);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* repaired (keep_p is undamaged even when both blocks share a segment) */
    put(st, sp->key, keep_p, keep_pl);
    if (sz != sp)
        put(st, sz->key, keep_z, keep_zl);
    free(keep_p);
    free(keep_z);
    segs_free(&legacy);
    legacy = load_segs(st);
    assert_int_equal(legacy.n, old.n); /* the same keys: where[] still applies */
    for (size_t i = 0; i < legacy.n; i++)
        check_payloads(&legacy.s[i], 0);

    /* 5. compaction converts: leave one legacy segment dense, make every
     * other sparse by overwriting its largest payload */
    v = wake(&env, "16384");
    size_t keep = legacy.n, copied_segs = 0;
    uint32_t kept_blocks = 0, to_move = 0, overwritten = 0;
    for (size_t i = 0; i < legacy.n; i++) {
        uint32_t n = 0, big = 0, biglen = 0;
        for (uint32_t k = 0; k < legacy.s[i].h.nblocks; k++) {
            const struct gfs_seg_entry *e = &legacy.s[i].h.entries[k];
            if (e->flags & GFS_SEGF_HOLE)
                continue;
            n++;
            if (e->length > biglen) {
                biglen = e->length;
                big = k;
            }
        }
        if (n == 0)
            continue; /* holes only: nothing maps it */
        if (keep == legacy.n && n >= 2) {
            keep = i;
            kept_blocks = n;
            continue;
        }
        uint64_t b = legacy.s[i].h.entries[big].block_index;
        fill_random(ref + b * BS, BS, &s);
        assert_int_equal(glidefs_pwrite(v, ref + b * BS, BS, b * BS, 0), 0);
        overwritten++;
        to_move += n - 1;
        copied_segs += n >= 2;
    }
    assert_true(keep < legacy.n && to_move > 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(legacy_entries(v), nonzero - overwritten);
    /* the compactor's rule: the kept segment stays, the others are below it */
    pthread_mutex_lock(&v->lock);
    for (size_t i = 0; i < legacy.n; i++) {
        int64_t si = gfs_bm_seg_find(&v->sv.bm, legacy.s[i].epoch, legacy.s[i].seq);
        if (si <= 0)
            continue;
        const struct gfs_bm_seg *row = &v->sv.bm.segs[si];
        if (row->live_bytes == 0)
            continue;
        assert_int_equal(row->total_bytes, legacy.s[i].len);
        int dense = (uint64_t)row->live_bytes * 100 >= 90 * (uint64_t)row->total_bytes;
        assert_int_equal(dense, i == keep);
    }
    pthread_mutex_unlock(&v->lock);
    struct keys before = list(st, "seg");
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    fprintf(stderr, "compact: rewrote %llu segments (%llu bytes), deleted %llu\n",
            (unsigned long long)res.segments_rewritten, (unsigned long long)res.bytes_rewritten,
            (unsigned long long)res.segments_deleted);
    assert_int_equal(res.segments_rewritten, copied_segs);
    /* (c) moved entries lose the legacy mark: only the dense legacy segment's keep it */
    assert_int_equal(legacy_entries(v), kept_blocks);
    read_all(v);
    assert_int_equal(stats_of(v).checksum_errors, 0);
    /* (b) the copies: every entry with a valid trailer, the legacy CRC kept */
    struct segs after = load_segs(st);
    uint32_t copies = 0;
    int kept_found = 0;
    for (size_t i = 0; i < after.n; i++) {
        const struct seg *a = &after.s[i];
        int is_new = 1;
        for (size_t k = 0; k < before.n && is_new; k++)
            is_new = strcmp(before.k[k], a->key) != 0;
        const struct seg *l = seg_by_id(&legacy, a->epoch, a->seq);
        if (l) {
            /* only the dense legacy segment is left, untouched */
            assert_ptr_equal(l, &legacy.s[keep]);
            assert_int_equal(a->len, l->len);
            assert_memory_equal(a->obj, l->obj, a->len);
            kept_found = 1;
            continue;
        }
        check_payloads(a, 1); /* written by this build: trailers everywhere */
        if (!is_new)
            continue; /* the overwrites' segments */
        for (uint32_t k = 0; k < a->h.nblocks; k++) {
            const struct gfs_seg_entry *e = &a->h.entries[k];
            uint64_t b = e->block_index;
            assert_false(e->flags & GFS_SEGF_HOLE);
            assert_true(where[b] >= 0 && (size_t)where[b] != keep);
            const struct gfs_seg_entry *o = entry_of(&legacy.s[where[b]], b);
            assert_non_null(o);
            assert_int_equal(e->crc, o->crc);
            assert_int_equal(e->length, o->length);
            assert_int_equal(e->write_seq, o->write_seq);
            assert_int_equal(e->flags, o->flags | GFS_SEGF_TRAILER);
            assert_memory_equal(a->obj + e->offset, legacy.s[where[b]].obj + o->offset,
                                o->length);
            copies++;
        }
    }
    assert_true(kept_found);
    assert_int_equal(copies, to_move);
    segs_free(&after);
    keys_free(&before);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* (a) after a wake on an empty cache: the same bytes, the same split */
    v = wake(&env, "0");
    assert_int_equal(legacy_entries(v), kept_blocks);
    read_blocks(v, NB, NB);
    sv = stats_of(v);
    assert_int_equal(sv.blocks_fetched, nonzero_blocks());
    assert_int_equal(sv.checksum_errors, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* 6. the new form over the old: deltas (design.md 5.7) over a base that
     * still holds legacy entries; a wake reads the chain and keeps their CRCs */
    v = wake(&env, "0");
    for (uint64_t b = 3; b < 20; b += 6) { /* trimmed blocks: never legacy */
        fill_random(ref + b * BS, BS, &s);
        assert_int_equal(glidefs_pwrite(v, ref + b * BS, BS, b * BS, 0), 0);
        assert_int_equal(glidefs_drain(v, -1), 0);
    }
    assert_true(stats_of(v).manifest_deltas >= 1);
    assert_int_equal(glidefs_volume_close(v), 0);
    {
        struct keys ml = list(st, "manifest");
        int deltas = 0;
        for (size_t i = 0; i < ml.n; i++) {
            size_t len = 0;
            uint8_t *mb = get(st, ml.k[i], &len);
            assert_true(len >= GFS_MAN_FIXED_LEN);
            deltas += (gfs_le32_get(mb + 12) & GFS_MANF_DELTA) != 0;
            free(mb);
        }
        keys_free(&ml);
        assert_true(deltas >= 1);
    }
    v = wake(&env, "0");
    assert_int_equal(legacy_entries(v), kept_blocks);
    read_blocks(v, NB, NB);
    assert_int_equal(stats_of(v).checksum_errors, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    segs_free(&legacy);
    segs_free(&old);
    gfs_objstore_close(st);
    free(buf);
    free(ref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
