/*
 * test_scrub.c — glidefs_scrub finds exactly the damage done to a store on
 * purpose, and nothing on a clean one (issue 29). A volume of four segments
 * (plain, then encrypted and compressed) is scrubbed clean, quick and deep;
 * then, one at a time and accumulating: a payload byte flipped (deep finds
 * that block's volume offset, quick nothing), a segment truncated inside
 * its last payload (quick: a size finding; deep: that and the cut block),
 * a segment deleted (missing), a header byte flipped (bad header). Each
 * scrub runs on a fresh read-only open, as glidefs-image does. Links the
 * internal library to find each block's segment and offset; damages the
 * store through its own interface (whole-object GET, then PUT or DELETE),
 * so the suite runs on file:// and again on s3:// (test_scrub_s3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "blockmap.h"
#include "cache.h"
#include "segment.h"
#include "snapobj.h"
#include "volume_internal.h"

#define BS 4096u
#define NB 64u
#define SZ ((uint64_t)NB * BS)

static glidefs_config *cfg(const struct tu_env *e, int sealed)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    if (sealed) {
        tu_set(c, "storage.encryption_password", "scrub test");
        tu_set(c, "storage.compression", "zstd");
    } else {
        tu_set(c, "storage.compression", "none");
    }
    tu_set(c, "servers.nbd.block_size", "4096");
    tu_set(c, "servers.nbd.blocks_per_batch", "16");
    tu_set(c, "compaction.interval_s", "0");
    return c;
}

/* Block b's entry and its segment's key. */
static struct gfs_bm_entry where(glidefs_volume *v, uint64_t b, char key[192])
{
    pthread_mutex_lock(&v->lock);
    struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
    assert_true(e.seg != GFS_BM_NONE && e.seg != GFS_BM_HOLE && e.seg < v->sv.bm.nsegs);
    const struct gfs_bm_seg *row = &v->sv.bm.segs[e.seg];
    assert_int_equal(gfs_seg_key(key, 192, v->name, row->epoch & GFS_EPOCH_MASK, row->seq), 0);
    pthread_mutex_unlock(&v->lock);
    return e;
}

struct want {
    uint32_t kind;
    const char *key;
    uint64_t offset;
};

/* Scrub name on a fresh read-only open; the findings must be exactly w. */
static void expect(glidefs_config *c, unsigned flags, const struct want *w, uint32_t n)
{
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sc", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    struct glidefs_scrub_result res;
    memset(&res, 0xa5, sizeof res);
    assert_int_equal(glidefs_scrub(v, flags, &res, sizeof res), 0);
    glidefs_volume_close(v);
    uint64_t counts[5] = {0};
    for (uint32_t i = 0; i < n; i++)
        counts[w[i].kind]++;
    for (uint32_t i = 0; i < res.nfindings; i++)
        fprintf(stderr, "  finding %u: kind %u %s offset %llu\n", i, res.findings[i].kind,
                res.findings[i].key, (unsigned long long)res.findings[i].offset);
    assert_int_equal(res.segments_checked, 4);
    /* a missing segment's 16 blocks are not fetched */
    assert_int_equal(res.blocks_checked,
                     (flags & GLIDEFS_SCRUB_DEEP) ? NB - 16 * counts[GLIDEFS_SCRUB_MISSING] : 0);
    assert_true(res.bytes_read > 0);
    assert_int_equal(res.missing_segments, counts[GLIDEFS_SCRUB_MISSING]);
    assert_int_equal(res.size_mismatches, counts[GLIDEFS_SCRUB_SIZE]);
    assert_int_equal(res.bad_headers, counts[GLIDEFS_SCRUB_BAD_HEADER]);
    assert_int_equal(res.damaged_blocks, counts[GLIDEFS_SCRUB_DAMAGED_BLOCK]);
    assert_int_equal(res.nfindings, n);
    for (uint32_t i = 0; i < n; i++) {
        int found = 0;
        for (uint32_t j = 0; j < res.nfindings && !found; j++) {
            const struct glidefs_scrub_finding *f = &res.findings[j];
            found = f->kind == w[i].kind && strcmp(f->key, w[i].key) == 0 &&
                    f->offset == w[i].offset &&
                    f->length == (w[i].kind == GLIDEFS_SCRUB_DAMAGED_BLOCK ? BS : 0);
        }
        if (!found)
            fprintf(stderr, "missing finding: kind %u %s offset %llu\n", w[i].kind, w[i].key,
                    (unsigned long long)w[i].offset);
        assert_true(found);
    }
}

/* The damage is done through the store's own interface (a whole-object GET,
 * then a PUT or DELETE), so the scenarios run on file:// and on s3:// alike. */
static struct gfs_objstore *store_of(const glidefs_config *c)
{
    struct gfs_objstore *st = NULL;
    char err[256];
    assert_int_equal(gfs_objstore_open(c, NULL, &st, err, sizeof err), 0);
    return st;
}

/* Object key, its first len bytes kept (len: all) and byte at flipped
 * (at >= len: none). */
static void rewrite(const glidefs_config *c, const char *key, uint64_t len, uint64_t at)
{
    struct gfs_objstore *st = store_of(c);
    void *buf = NULL;
    size_t n = 0;
    assert_int_equal(st->ops->get(st, key, 64u << 20, &buf, &n, NULL), 0);
    if (len > n)
        len = n;
    if (at < len)
        ((uint8_t *)buf)[at] ^= 0x10;
    assert_int_equal(st->ops->put(st, key, buf, len, 0, NULL), 0);
    free(buf);
    gfs_objstore_close(st);
}

static void flip(const glidefs_config *c, const char *key, uint64_t at)
{
    rewrite(c, key, UINT64_MAX, at);
}

static void cut(const glidefs_config *c, const char *key, uint64_t len)
{
    rewrite(c, key, len, UINT64_MAX);
}

static void drop(const glidefs_config *c, const char *key)
{
    struct gfs_objstore *st = store_of(c);
    assert_int_equal(st->ops->del(st, key), 0);
    gfs_objstore_close(st);
}

static void scenario(int sealed)
{
    struct tu_env env;
    tu_env_init(&env, sealed ? "scrub-sealed" : "scrub-plain");
    glidefs_config *c = cfg(&env, sealed);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sc", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[SZ];
    uint64_t s = 7;
    for (size_t i = 0; i < SZ; i++)
        img[i] = (uint8_t)(tu_rand(&s) % 5 + 'a'); /* compressible, not trivial */
    /* four drains of 16 blocks: four segments */
    for (uint64_t q = 0; q < 4; q++) {
        assert_int_equal(glidefs_pwrite(v, img + q * 16 * BS, 16 * BS, q * 16 * BS, 0), 0);
        assert_int_equal(glidefs_drain(v, -1), 0);
    }
    char ka[192], kb[192], kc[192], kd[192];
    struct gfs_bm_entry e5 = where(v, 5, ka), e31 = where(v, 31, kb);
    where(v, 40, kc);
    where(v, 60, kd);
    assert_true(strcmp(ka, kb) && strcmp(kb, kc) && strcmp(kc, kd) && strcmp(ka, kd));
    /* block 31 is the last payload of its segment (blocks in increasing order) */
    struct gfs_bm_entry e30 = where(v, 30, kb);
    assert_true(e31.offset > e30.offset);
    uint64_t span31 = gfs_seg_span(e31.length, e31.flags);
    if (sealed)
        assert_true(e5.flags & GFS_SEGF_SEALED);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* clean */
    expect(c, 0, NULL, 0);
    expect(c, GLIDEFS_SCRUB_DEEP, NULL, 0);

    /* a payload byte of block 5: only deep reads it */
    flip(c, ka, e5.offset + 7);
    expect(c, 0, NULL, 0);
    const struct want w1[] = {{GLIDEFS_SCRUB_DAMAGED_BLOCK, ka, 5 * BS}};
    expect(c, GLIDEFS_SCRUB_DEEP, w1, 1);

    /* segment B cut inside its last payload (block 31) */
    cut(c, kb, e31.offset + span31 - 10);
    const struct want w2[] = {{GLIDEFS_SCRUB_SIZE, kb, 0},
                              {GLIDEFS_SCRUB_DAMAGED_BLOCK, ka, 5 * BS},
                              {GLIDEFS_SCRUB_DAMAGED_BLOCK, kb, 31 * BS}};
    expect(c, 0, w2, 1);
    expect(c, GLIDEFS_SCRUB_DEEP, w2, 3);

    /* segment C gone */
    drop(c, kc);
    const struct want w3[] = {{GLIDEFS_SCRUB_SIZE, kb, 0},
                              {GLIDEFS_SCRUB_MISSING, kc, 0},
                              {GLIDEFS_SCRUB_DAMAGED_BLOCK, ka, 5 * BS},
                              {GLIDEFS_SCRUB_DAMAGED_BLOCK, kb, 31 * BS}};
    expect(c, 0, w3, 2);
    expect(c, GLIDEFS_SCRUB_DEEP, w3, 4);

    /* a byte of segment D's header (inside its fixed part, past the magic) */
    flip(c, kd, 12);
    const struct want w4[] = {{GLIDEFS_SCRUB_SIZE, kb, 0},
                              {GLIDEFS_SCRUB_MISSING, kc, 0},
                              {GLIDEFS_SCRUB_BAD_HEADER, kd, 0},
                              {GLIDEFS_SCRUB_DAMAGED_BLOCK, ka, 5 * BS},
                              {GLIDEFS_SCRUB_DAMAGED_BLOCK, kb, 31 * BS}};
    expect(c, 0, w4, 3);
    expect(c, GLIDEFS_SCRUB_DEEP, w4, 5);

    /* bad arguments */
    assert_int_equal(glidefs_volume_open(c, "sc", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    struct glidefs_scrub_result res;
    assert_int_equal(glidefs_scrub(v, 0x80, &res, sizeof res), -EINVAL);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_REPAIR, &res, sizeof res), -EROFS);
    assert_int_equal(glidefs_scrub(v, 0, NULL, sizeof res), -EINVAL);
    /* a smaller (older) result struct is filled up to its size */
    memset(&res, 0xa5, sizeof res);
    assert_int_equal(glidefs_scrub(v, 0, &res, offsetof(struct glidefs_scrub_result, bad_headers)),
                     0);
    assert_int_equal(res.missing_segments, 1);
    assert_int_equal(res.bad_headers, 0xa5a5a5a5a5a5a5a5ull);
    glidefs_volume_close(v);
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* Repair (GLIDEFS_SCRUB_REPAIR) on the writable volume that still holds
 * every block in its clean cache, but two: block 6 (payload flipped) and
 * block 40 (in a deleted segment) are dropped from the cache first, so
 * nothing can mend them. Damage: block 5's payload, segment B cut inside
 * block 31, segment C (32-47) deleted, segment D's header. Then a fresh
 * open (empty cache) reads every mended block byte-exact, gets EIO for
 * blocks 6 and 40, and a scrub reports only what is left. */
static void repair_scenario(int sealed)
{
    struct tu_env env;
    tu_env_init(&env, sealed ? "repair-sealed" : "repair-plain");
    glidefs_config *c = cfg(&env, sealed);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sc", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[SZ];
    uint64_t s = 11;
    for (size_t i = 0; i < SZ; i++)
        img[i] = (uint8_t)(tu_rand(&s) % 5 + 'a');
    for (uint64_t q = 0; q < 4; q++) {
        assert_int_equal(glidefs_pwrite(v, img + q * 16 * BS, 16 * BS, q * 16 * BS, 0), 0);
        assert_int_equal(glidefs_drain(v, -1), 0);
    }
    char ka[192], kb[192], kc[192], kd[192];
    struct gfs_bm_entry e5 = where(v, 5, ka), e6 = where(v, 6, ka), e31 = where(v, 31, kb);
    where(v, 40, kc);
    where(v, 60, kd);
    uint64_t span31 = gfs_seg_span(e31.length, e31.flags);
    /* the rewrite never overwrites a client's newer write: not while it
     * waits in the journal, nor once it moved the map */
    char k2[192];
    struct gfs_bm_entry e2 = where(v, 2, k2);
    static uint8_t newer[BS];
    memset(newer, 'z', BS);
    assert_int_equal(glidefs_pwrite(v, newer, BS, 2 * BS, 0), 0);
    assert_int_equal(gfs_volume_rewrite_block(v, 2, &e2, img + 2 * BS), -EAGAIN);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(gfs_volume_rewrite_block(v, 2, &e2, img + 2 * BS), -EAGAIN);
    memcpy(img + 2 * BS, newer, BS);
    static uint8_t back[BS];
    assert_int_equal(glidefs_pread(v, back, BS, 2 * BS), 0);
    assert_memory_equal(back, newer, BS);
    pthread_mutex_lock(&v->lock);
    for (uint64_t b = 0; b < NB; b++) {
        struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
        assert_true(gfs_cache_has(&v->cache, b, e.seg, e.offset)); /* the uploads filled it */
    }
    gfs_cache_drop(&v->cache, 6);
    gfs_cache_drop(&v->cache, 40);
    pthread_mutex_unlock(&v->lock);

    flip(c, ka, e5.offset + 7);
    flip(c, ka, e6.offset + 9);
    cut(c, kb, e31.offset + span31 - 10);
    drop(c, kc);
    flip(c, kd, 12);

    struct glidefs_scrub_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_REPAIR, &res, sizeof res), 0);
    for (uint32_t i = 0; i < res.nfindings; i++)
        fprintf(stderr, "  repair finding %u: kind %u flags %u %s offset %llu\n", i,
                res.findings[i].kind, res.findings[i].flags, res.findings[i].key,
                (unsigned long long)res.findings[i].offset);
    assert_int_equal(res.missing_segments, 1);
    assert_int_equal(res.size_mismatches, 1);
    assert_int_equal(res.bad_headers, 1);
    assert_int_equal(res.damaged_blocks, 3); /* 5, 6, 31 */
    /* 5, 31, C's 15 cached blocks, D's 16 */
    assert_int_equal(res.repaired_blocks, 1 + 1 + 15 + 16);
    assert_int_equal(res.unrepaired_blocks, 2);
    for (uint32_t i = 0; i < res.nfindings; i++) {
        const struct glidefs_scrub_finding *f = &res.findings[i];
        int mended = f->flags & GLIDEFS_SCRUB_FOUND_REPAIRED;
        if (f->kind == GLIDEFS_SCRUB_DAMAGED_BLOCK)
            assert_int_equal(mended, f->offset != 6 * BS);
        else if (f->kind == GLIDEFS_SCRUB_BAD_HEADER)
            assert_true(mended);
        else /* C lost block 40; B's size is no block to rewrite */
            assert_false(mended);
    }
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* a fresh open: an empty cache, everything from the store */
    assert_int_equal(glidefs_volume_open(c, "sc", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    static uint8_t got[BS];
    for (uint64_t b = 0; b < NB; b++) {
        int r = glidefs_pread(v, got, BS, b * BS);
        if (b == 6 || b == 40) {
            assert_int_equal(r, -EIO);
        } else {
            if (r != 0 || memcmp(got, img + b * BS, BS) != 0)
                fprintf(stderr, "block %llu: read %d, %s\n", (unsigned long long)b, r,
                        r ? "" : "different bytes");
            assert_int_equal(r, 0);
            assert_memory_equal(got, img + b * BS, BS);
        }
    }
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_DEEP, &res, sizeof res), 0);
    for (uint32_t i = 0; i < res.nfindings; i++)
        fprintf(stderr, "  after repair %u: kind %u %s offset %llu\n", i, res.findings[i].kind,
                res.findings[i].key, (unsigned long long)res.findings[i].offset);
    assert_int_equal(res.missing_segments, 1);   /* C, for block 40 */
    assert_int_equal(res.damaged_blocks, 1);     /* 6 */
    /* B is still cut short (the reopened map does not know its size, so its
     * header's promise is what fails); D is no longer referenced at all:
     * an orphan now (compaction, off here, has not deleted it) */
    assert_int_equal(res.size_mismatches + res.bad_headers, 1);
    assert_int_equal(res.orphan_objects, 1);
    for (uint32_t i = 0; i < res.nfindings; i++)
        assert_true((strcmp(res.findings[i].key, kd) == 0) ==
                    (res.findings[i].kind == GLIDEFS_SCRUB_ORPHAN));
    /* a repair of a read-only open is refused */
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_REPAIR, &res, sizeof res), -EROFS);
    glidefs_volume_close(v);
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* Segments only a snapshot keeps: 16 blocks written and drained (segment
 * P), snapshot "s1", the same blocks written again and drained, so the map
 * no longer uses P and only s1 keeps it. The quick scrub checks P too; with
 * P's header damaged, then P deleted, it finds exactly that, on the writer
 * and on a read-only open; no block of P is a damaged block (none is live). */
static void test_pinned(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "scrub-pinned");
    glidefs_config *c = cfg(&env, 0);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sc", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[16 * BS];
    memset(img, 'p', sizeof img);
    assert_int_equal(glidefs_pwrite(v, img, sizeof img, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    char kp[192];
    where(v, 3, kp);
    assert_int_equal(glidefs_snapshot_create(v, "s1"), 0);
    memset(img, 'q', sizeof img);
    assert_int_equal(glidefs_pwrite(v, img, sizeof img, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    char kq[192];
    where(v, 3, kq);
    assert_true(strcmp(kp, kq) != 0);

    struct glidefs_scrub_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, 0, &res, sizeof res), 0);
    assert_int_equal(res.segments_checked, 2); /* the map's and the snapshot's */
    assert_int_equal(res.nfindings, 0);

    flip(c, kp, 12);
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_DEEP, &res, sizeof res), 0);
    assert_int_equal(res.nfindings, 1);
    assert_int_equal(res.findings[0].kind, GLIDEFS_SCRUB_BAD_HEADER);
    assert_string_equal(res.findings[0].key, kp);
    assert_int_equal(res.damaged_blocks, 0);

    drop(c, kp);
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, 0, &res, sizeof res), 0);
    assert_int_equal(res.missing_segments, 1);
    assert_int_equal(res.nfindings, 1);
    assert_string_equal(res.findings[0].key, kp);
    assert_int_equal(glidefs_volume_close(v), 0);

    assert_int_equal(glidefs_volume_open(c, "sc", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, 0, &res, sizeof res), 0);
    assert_int_equal(res.missing_segments, 1);
    assert_int_equal(res.nfindings, 1);
    assert_string_equal(res.findings[0].key, kp);

    /* the snapshot's manifest gone: the snapshot is lost, a finding (not a
     * failed scrub); its segment is no longer known to be kept */
    struct gfs_snapinfo si;
    assert_int_equal(gfs_snap_read(v->store, "sc", "s1", &si), 0);
    char mkey[512];
    snprintf(mkey, sizeof mkey, "nbd/sc/manifest/%s", si.manifest);
    drop(c, mkey);
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, 0, &res, sizeof res), 0);
    assert_int_equal(res.bad_snapshots, 1);
    int found = 0;
    for (uint32_t i = 0; i < res.nfindings; i++)
        found += res.findings[i].kind == GLIDEFS_SCRUB_SNAPSHOT &&
                 strncmp(res.findings[i].key, "nbd/sc/manifest/", 16) == 0;
    assert_int_equal(found, 1);
    glidefs_volume_close(v);
    glidefs_config_free(c);
    tu_env_done(&env);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cancel_after(void *arg)
{
    int *left = arg;
    return (*left)-- <= 0;
}

/* glidefs_scrub_ex's limits hold, as lower bounds on the time a pass
 * takes: a GET starts only when the budget covers what came before it, so
 * a deep pass reading N bytes at L bytes/s takes at least (N - the largest
 * GET) / L, and G GETs at R/s at least (G - 1) / R; the store saw no more
 * GETs than the limit allows in that time (plus the first). A cancel stops
 * the pass (-ECANCELED); an opts_size without the limits is refused. */
static void test_paced(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "scrub-paced");
    glidefs_config *c = cfg(&env, 0);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sc", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[SZ];
    uint64_t seed = 3;
    for (size_t i = 0; i < SZ; i++)
        img[i] = (uint8_t)tu_rand(&seed); /* compression: none; random anyway */
    for (uint64_t q = 0; q < 4; q++) {
        assert_int_equal(glidefs_pwrite(v, img + q * 16 * BS, 16 * BS, q * 16 * BS, 0), 0);
        assert_int_equal(glidefs_drain(v, -1), 0);
    }
    struct glidefs_scrub_result res;
    struct glidefs_stats st0, st1;

    /* bytes: 128 KiB/s over the 256 KiB of payloads (and the headers) */
    const uint64_t L = 128 * 1024;
    struct glidefs_scrub_opts o = {.opts_size = sizeof o, .max_bytes_per_s = L};
    memset(&res, 0, sizeof res);
    double t0 = now_s();
    assert_int_equal(glidefs_scrub_ex(v, GLIDEFS_SCRUB_DEEP, &o, &res, sizeof res), 0);
    double el = now_s() - t0;
    assert_int_equal(res.nfindings, 0);
    assert_int_equal(res.blocks_checked, NB);
    assert_true(res.bytes_read >= SZ);
    /* the largest GET: one segment's front, its header and 16 payloads (with their
     * trailers) */
    double largest = 18.0 * BS;
    fprintf(stderr, "  paced by bytes: %llu bytes in %llu GETs, %.2f s\n",
            (unsigned long long)res.bytes_read, (unsigned long long)res.gets, el);
    assert_true(el >= ((double)res.bytes_read - largest) / (double)L);
    assert_true(res.gets == 4); /* one per segment: its header and payloads together */

    /* GETs: 10/s, no byte limit */
    o = (struct glidefs_scrub_opts){.opts_size = sizeof o, .max_gets_per_s = 10};
    assert_int_equal(glidefs_stats(v, &st0, sizeof st0), 0);
    memset(&res, 0, sizeof res);
    t0 = now_s();
    assert_int_equal(glidefs_scrub_ex(v, GLIDEFS_SCRUB_DEEP, &o, &res, sizeof res), 0);
    el = now_s() - t0;
    assert_int_equal(glidefs_stats(v, &st1, sizeof st1), 0);
    uint64_t store_gets = st1.store_gets - st0.store_gets;
    fprintf(stderr, "  paced by GETs: %llu GETs (store: %llu), %.2f s\n",
            (unsigned long long)res.gets, (unsigned long long)store_gets, el);
    assert_true(res.gets >= 4);
    assert_true(el >= (double)(res.gets - 1) / 10.0);
    assert_true((double)store_gets <= 10.0 * el + 1.0);

    /* no limits: glidefs_scrub's way (NULL opts too) */
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub_ex(v, GLIDEFS_SCRUB_DEEP, NULL, &res, sizeof res), 0);
    assert_int_equal(res.gets, 4);

    /* cancelled before the third GET, with a slow budget: stops there */
    int left = 2;
    o = (struct glidefs_scrub_opts){.opts_size = sizeof o, .max_gets_per_s = 1,
                                    .cancel = cancel_after, .cancel_arg = &left};
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub_ex(v, GLIDEFS_SCRUB_DEEP, &o, &res, sizeof res), -ECANCELED);

    o.opts_size = offsetof(struct glidefs_scrub_opts, max_gets_per_s);
    assert_int_equal(glidefs_scrub_ex(v, 0, &o, &res, sizeof res), -EINVAL);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* A segment larger than one deep-mode GET (2048 blocks of 4 KiB, 8 MiB):
 * its front (header and the first payloads, 4 MiB) comes in one GET, the
 * rest in runs after it; damage in both parts is found, and nothing else. */
static void test_large_segment(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "scrub-large");
    glidefs_config *c = cfg(&env, 0);
    tu_set(c, "servers.nbd.blocks_per_batch", "2048");
    enum { LB = 2048 };
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sc", (uint64_t)LB * BS, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[(size_t)LB * BS];
    uint64_t seed = 11;
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)tu_rand(&seed);
    assert_int_equal(glidefs_pwrite(v, img, sizeof img, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    char k0[192], k1[192];
    struct gfs_bm_entry e10 = where(v, 10, k0), e2000 = where(v, 2000, k1);
    assert_string_equal(k0, k1); /* one segment */
    assert_true(e2000.offset > (4u << 20)); /* beyond the front */
    struct glidefs_scrub_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_DEEP, &res, sizeof res), 0);
    assert_int_equal(res.nfindings, 0);
    assert_int_equal(res.blocks_checked, LB);
    assert_int_equal(res.gets, 3); /* the front, then two runs of at most 4 MiB */
    assert_int_equal(glidefs_volume_close(v), 0);

    flip(c, k0, e10.offset + 5);
    flip(c, k0, e2000.offset + 5);
    assert_int_equal(glidefs_volume_open(c, "sc", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_DEEP, &res, sizeof res), 0);
    glidefs_volume_close(v);
    assert_int_equal(res.blocks_checked, LB);
    assert_int_equal(res.damaged_blocks, 2);
    assert_int_equal(res.nfindings, 2);
    uint64_t at0 = res.findings[0].offset, at1 = res.findings[1].offset;
    assert_true((at0 == 10 * BS && at1 == 2000 * BS) || (at0 == 2000 * BS && at1 == 10 * BS));
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* The node's config for test_nofollow: the scrub tests' settings, its own cache dir. */
static void node(struct tu_node *n, const struct tu_env *e, const char *id)
{
    tu_node_init(n, e, id, "100000", "3000");
    tu_set(n->cfg, "storage.compression", "none");
    tu_set(n->cfg, "servers.nbd.block_size", "4096");
    tu_set(n->cfg, "servers.nbd.blocks_per_batch", "16");
    tu_set(n->cfg, "compaction.interval_s", "0");
    tu_set(n->cfg, "compaction.grace_ms", "0");
}

static uint64_t store_gets(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st.store_gets;
}

/* A reader opened GLIDEFS_OPEN_NOFOLLOW (glidefs-image scrub's way) makes no
 * request while it waits, where a following reader reads the lease about
 * every second; and a reader's scrub judges its findings against the store
 * as it is at the end: a segment the writer compacted away after the
 * reader's open is no finding, and the reader then reads the new data. */
static void test_nofollow(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "scrub-nofollow");
    struct tu_node A, B, C;
    node(&A, &env, "a");
    node(&B, &env, "b");
    node(&C, &env, "c");
    glidefs_volume *a, *b, *c;
    assert_int_equal(glidefs_volume_open(A.cfg, "sc", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    static uint8_t blk[16 * BS];
    for (uint64_t q = 0; q < 2; q++) {
        memset(blk, 'a' + (int)q, sizeof blk);
        assert_int_equal(glidefs_pwrite(a, blk, sizeof blk, q * sizeof blk, 0), 0);
        assert_int_equal(glidefs_drain(a, -1), 0);
    }
    assert_int_equal(glidefs_volume_open(B.cfg, "sc", 0, GLIDEFS_OPEN_NOFOLLOW, &b), -EINVAL);
    assert_int_equal(glidefs_volume_open(B.cfg, "sc", 0,
                                         GLIDEFS_OPEN_READONLY | GLIDEFS_OPEN_NOFOLLOW, &b), 0);
    assert_int_equal(glidefs_volume_open(C.cfg, "sc", 0, GLIDEFS_OPEN_READONLY, &c), 0);
    uint64_t b0 = store_gets(b), c0 = store_gets(c);

    /* the first segment's blocks rewritten, it compacted away */
    memset(blk, 'z', sizeof blk);
    assert_int_equal(glidefs_pwrite(a, blk, sizeof blk, 0, 0), 0);
    assert_int_equal(glidefs_drain(a, -1), 0);
    struct glidefs_compact_result cr;
    assert_int_equal(glidefs_compact(a, &cr, sizeof cr), 0);
    assert_true(cr.segments_deleted >= 1);

    /* C follows: it reads the new data, and keeps reading the lease */
    uint8_t got[BS];
    double end = now_s() + 30;
    for (;;) {
        assert_int_equal(glidefs_pread(c, got, BS, 0), 0);
        if (got[0] == 'z' && store_gets(c) >= c0 + 4)
            break;
        assert_true(now_s() < end);
        poll(NULL, 0, 20); /* re-check the condition every 20 ms until the deadline */
    }
    /* B asked the store nothing meanwhile */
    assert_int_equal(store_gets(b), b0);

    /* B's scrub: the first segment is gone from the listing, but the store's
     * current map no longer needs it */
    struct glidefs_scrub_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(glidefs_scrub(b, GLIDEFS_SCRUB_DEEP, &res, sizeof res), 0);
    assert_int_equal(res.missing_segments, 0);
    assert_int_equal(res.nfindings, 0);
    assert_int_equal(glidefs_pread(b, got, BS, 0), 0);
    assert_int_equal(got[0], 'z');
    assert_int_equal(glidefs_pread(b, got, BS, 16 * BS), 0);
    assert_int_equal(got[0], 'b');
    glidefs_volume_close(c);
    glidefs_volume_close(b);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    glidefs_config_free(C.cfg);
    tu_env_done(&env);
}

static void test_plain(void **state)
{
    (void)state;
    scenario(0);
}

static void test_repair_plain(void **state)
{
    (void)state;
    repair_scenario(0);
}

static void test_repair_sealed(void **state)
{
    (void)state;
    repair_scenario(1);
}

static void test_sealed(void **state)
{
    (void)state;
    scenario(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_sealed),
        cmocka_unit_test(test_repair_plain),
        cmocka_unit_test(test_repair_sealed),
        cmocka_unit_test(test_pinned),
        cmocka_unit_test(test_paced),
        cmocka_unit_test(test_large_segment),
        cmocka_unit_test(test_nofollow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
