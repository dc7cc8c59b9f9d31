/*
 * test_segkeys.c — every segment of an encrypted volume is sealed under a
 * key of its own (issue 25: no key sees more than one segment's seals), and
 * compaction seals the blocks it moves again under the new segment's key.
 * Reads the block map, the codec and the segment files through the
 * internal library: a payload from the store opens under its own segment's
 * key and under no other (not another segment's, not the legacy one-per-
 * volume block key that sealed everything before).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "testutil.h"
#include "blockmap.h"
#include "bytes.h"
#include "codec.h"
#include "segment.h"
#include "volume_internal.h"

#define BS 4096u
#define NB 64u
#define SZ ((uint64_t)NB * BS)

static glidefs_config *cfg(const struct tu_env *e)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    tu_set(c, "storage.encryption_password", "segment keys");
    tu_set(c, "storage.compression", "zstd");
    tu_set(c, "servers.nbd.block_size", "4096");
    tu_set(c, "servers.nbd.blocks_per_batch", "16");
    tu_set(c, "compaction.min_live_pct", "90");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    tu_set(c, "compaction.keep_manifests", "1");
    return c;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tu_rand(&s) % 7 + 'a'); /* compressible, not trivial */
}

/* Where block b lives now: its entry and its segment's object name. */
static struct gfs_bm_entry where(glidefs_volume *v, uint64_t b, char name[512])
{
    pthread_mutex_lock(&v->lock);
    struct gfs_bm_entry e = gfs_bm_get(&v->sv.bm, b);
    assert_true(e.seg != GFS_BM_NONE && e.seg != GFS_BM_HOLE && e.seg < v->sv.bm.nsegs);
    const struct gfs_bm_seg *row = &v->sv.bm.segs[e.seg];
    assert_int_equal(gfs_seg_key(name, 512, v->name, row->epoch & GFS_EPOCH_MASK, row->seq), 0);
    assert_int_equal(row->key_gen, e.key_gen);
    pthread_mutex_unlock(&v->lock);
    return e;
}

/* The stored bytes of e, read from the file:// store. */
static uint8_t *payload(const struct tu_env *env, const char *name, const struct gfs_bm_entry *e)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", env->store, name);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *p = malloc(e->length);
    assert_non_null(p);
    assert_int_equal(pread(fd, p, e->length, e->offset), (ssize_t)e->length);
    uint8_t h[64];
    assert_int_equal(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    /* the header names the generation the map has */
    assert_int_equal(gfs_le32_get(h + 44), e->key_gen);
    return p;
}

/* 0 if block b's stored bytes open under k (NULL: the legacy key). */
static int opens(glidefs_volume *v, uint64_t b, const struct gfs_bm_entry *e, const uint8_t *p,
                 const struct gfs_sealkey *k, const uint8_t *want)
{
    uint8_t out[BS];
    int r = k ? gfs_codec_decode_k(v->codec, k, b, e->write_seq, e->flags & GFS_SEGF_CODED, p,
                                   e->length, out)
              : gfs_codec_decode_seq(v->codec, b, e->write_seq, e->flags & GFS_SEGF_CODED, p,
                                     e->length, out);
    if (r == 0)
        assert_memory_equal(out, want, BS);
    return r;
}

static void test_key_per_segment(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "segkeys");
    if (strncmp(env.url, "file://", 7) != 0)
        skip(); /* the store is read as files */
    glidefs_config *c = cfg(&env);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "sk", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[SZ];
    fill(img, SZ, 5);
    /* two drains: blocks 0..15 and 16..31 land in different segments */
    assert_int_equal(glidefs_pwrite(v, img, 16 * BS, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_pwrite(v, img + 16 * BS, 16 * BS, 16 * BS, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(gfs_codec_key_gen(v->codec), 1);

    char na[512], nb[512];
    struct gfs_bm_entry ea = where(v, 3, na), eb = where(v, 20, nb);
    assert_true(strcmp(na, nb) != 0);
    assert_int_equal(ea.key_gen, 1);
    assert_int_equal(eb.key_gen, 1);
    assert_true(ea.flags & GFS_SEGF_SEALED);
    uint8_t *pa = payload(&env, na, &ea), *pb = payload(&env, nb, &eb);
    struct gfs_sealkey ka, kb;
    assert_int_equal(gfs_codec_sealkey(v->codec, 1, na, &ka), 0);
    assert_int_equal(gfs_codec_sealkey(v->codec, 1, nb, &kb), 0);
    assert_int_equal(opens(v, 3, &ea, pa, &ka, img + 3 * BS), 0);
    assert_int_equal(opens(v, 20, &eb, pb, &kb, img + 20 * BS), 0);
    assert_int_equal(opens(v, 3, &ea, pa, &kb, img + 3 * BS), -EIO);
    assert_int_equal(opens(v, 20, &eb, pb, &ka, img + 20 * BS), -EIO);
    assert_int_equal(opens(v, 3, &ea, pa, NULL, img + 3 * BS), -EIO); /* not the volume key */

    /* compaction: overwrite 14 of the first segment's 16 blocks; the other
     * two move into a new segment, sealed again under its key */
    uint8_t blk[BS];
    for (uint64_t b = 2; b < 16; b++) {
        fill(blk, BS, 100 + b);
        memcpy(img + b * BS, blk, BS);
        assert_int_equal(glidefs_pwrite(v, blk, BS, b * BS, 0), 0);
    }
    assert_int_equal(glidefs_drain(v, -1), 0);
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    assert_true(res.segments_rewritten >= 1);
    char nm[512];
    struct gfs_bm_entry em = where(v, 1, nm);
    assert_true(strcmp(nm, na) != 0); /* moved */
    assert_int_equal(em.key_gen, 1);
    uint8_t *pm = payload(&env, nm, &em);
    struct gfs_sealkey km;
    assert_int_equal(gfs_codec_sealkey(v->codec, 1, nm, &km), 0);
    assert_int_equal(opens(v, 1, &em, pm, &km, img + 1 * BS), 0);
    assert_int_equal(opens(v, 1, &em, pm, &ka, img + 1 * BS), -EIO);
    uint8_t *all = malloc(SZ);
    assert_non_null(all);
    assert_int_equal(glidefs_pread(v, all, SZ, 0), 0);
    assert_memory_equal(all, img, 32 * BS);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* a cold cache reads it all through the manifest (key generations listed) */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "sk", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    memset(all, 0, SZ);
    assert_int_equal(glidefs_pread(v, all, SZ, 0), 0);
    assert_memory_equal(all, img, 32 * BS);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_int_equal(st.checksum_errors, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    gfs_sealkey_wipe(&ka);
    gfs_sealkey_wipe(&kb);
    gfs_sealkey_wipe(&km);
    free(all);
    free(pa);
    free(pb);
    free(pm);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_per_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
