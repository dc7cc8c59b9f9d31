/*
 * test_segkeys.c — every segment of an encrypted volume is sealed under a
 * key of its own (issue 25: no key sees more than one segment's seals), and
 * compaction seals the blocks it moves again under the new segment's key.
 * Reads the block map, the codec and the segment files through the
 * internal library: a payload from the store opens under its own segment's
 * key and under no other (not another segment's, not the legacy one-per-
 * volume block key that sealed everything before). Data-key rotation: new
 * segments use the new generation at once, a follower on another cache dir
 * learns it, compaction re-seals the old segments and then retires the old
 * generation, after which a segment forged with the old key is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "testutil.h"
#include "blockmap.h"
#include "bytes.h"
#include "codec.h"
#include "segment.h"
#include "follow.h"
#include "keywrap.h"
#include "segwriter.h"
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

/* The data keys volume.json of `name` holds, unwrapped with the password. */
static unsigned stored_keys(const struct tu_env *env, const char *name, struct gfs_datakey *k)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/nbd/%s/volume.json", env->store, name);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    assert_non_null(root);
    struct gfs_keywrap kw;
    assert_int_equal(gfs_keywrap_from_json(json_object_get(root, "encryption"), &kw), 0);
    json_decref(root);
    uint8_t kek[32];
    unsigned n = 0;
    assert_int_equal(gfs_keywrap_kek("segment keys", &kw, kek), 0);
    uint8_t uuid[16];
    memset(uuid, 0, sizeof uuid);
    /* the wraps bind the lineage's uuid: take it from a segment header */
    char segdir[1200];
    snprintf(segdir, sizeof segdir, "%s/nbd/%s/seg", env->store, name);
    DIR *d = opendir(segdir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) && de->d_name[0] == '.')
        ;
    assert_non_null(de);
    char sp[1500];
    snprintf(sp, sizeof sp, "%s/%s", segdir, de->d_name);
    closedir(d);
    int fd = open(sp, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, uuid, 16, 48), 16);
    close(fd);
    assert_int_equal(gfs_keywrap_open_all(kek, &kw, uuid, k, &n), 0);
    return n;
}

static struct glidefs_stats stats(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st;
}

/* A segment holding block b, sealed under generation dk (forged by whoever
 * holds that key), put into the store as segment (epoch, 1) of `name`. */
static void forge_segment(const struct tu_env *env, const char *name, const uint8_t uuid[16],
                          const struct gfs_datakey *dk, uint64_t epoch, uint64_t b)
{
    struct gfs_codec_params p = {.block_size = BS, .compress = 0, .keys = dk, .nkeys = 1};
    memcpy(p.volume_uuid, uuid, 16);
    struct gfs_codec *c;
    assert_int_equal(gfs_codec_new(&p, &c), 0);
    struct gfs_segw w;
    assert_int_equal(gfs_segw_begin(&w, c, name, epoch, 1, 1, BS + 64), 0);
    uint8_t blk[BS];
    memset(blk, 0xab, BS);
    assert_int_equal(gfs_segw_add_block(&w, BS, b, 1u << 30, blk, NULL), 0);
    assert_int_equal(gfs_segw_finish(&w, BS, uuid), 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", env->store, w.name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(w.obj, 1, gfs_segw_len(&w), f), gfs_segw_len(&w));
    fclose(f);
    gfs_segw_free(&w);
    gfs_codec_free(c);
}

static void test_rotation(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "rotate");
    if (strncmp(env.url, "file://", 7) != 0)
        skip();
    glidefs_config *c = cfg(&env);
    glidefs_volume *v, *f;
    assert_int_equal(glidefs_volume_open(c, "rk", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    static uint8_t img[SZ];
    fill(img, SZ, 9);
    memset(img + 32 * BS, 0, 8 * BS); /* 32..39 stay unwritten */
    assert_int_equal(glidefs_pwrite(v, img, 32 * BS, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    struct gfs_datakey before[GFS_KEYWRAP_MAX_GENS];
    assert_int_equal(stored_keys(&env, "rk", before), 1);
    uint8_t uuid[16];
    memcpy(uuid, v->meta.data_uuid, 16);
    struct glidefs_stats st = stats(v);
    assert_int_equal(st.key_generation, 1);
    assert_int_equal(st.key_generations, 1);
    assert_int_equal(st.segments_old_key, 0);

    /* a reader on another cache dir, opened before the rotation */
    char fcache[600];
    snprintf(fcache, sizeof fcache, "%s/follower", env.root);
    glidefs_config *fc = cfg(&env);
    tu_set(fc, "cache.dir", fcache);
    assert_int_equal(glidefs_volume_open(fc, "rk", 0, GLIDEFS_OPEN_READONLY, &f), 0);

    /* a segment being sealed under generation 1 while the rotation happens
     * (an upload in flight): generation 1 is not retired under it */
    struct gfs_segw inflight;
    assert_int_equal(gfs_segw_begin(&inflight, v->codec, "rk", 0xfe, 1, 1, BS + 64), 0);
    assert_int_equal(inflight.key.gen, 1);
    assert_int_equal(glidefs_volume_rotate_key(v, 1), -EINVAL);
    assert_int_equal(glidefs_volume_rotate_key(f, 0), -EROFS);
    assert_int_equal(glidefs_volume_rotate_key(v, 0), 0);
    struct gfs_datakey after[GFS_KEYWRAP_MAX_GENS];
    assert_int_equal(stored_keys(&env, "rk", after), 2);
    assert_memory_equal(after[0].key, before[0].key, 32);
    assert_int_equal(after[1].gen, 2);
    st = stats(v);
    assert_int_equal(st.key_generation, 2);
    assert_int_equal(st.key_generations, 2);
    assert_true(st.segments_old_key >= 2);

    /* new writes: generation 2 at once */
    assert_int_equal(glidefs_pwrite(v, img + 40 * BS, 8 * BS, 40 * BS, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    char nm[512];
    struct gfs_bm_entry e = where(v, 41, nm);
    assert_int_equal(e.key_gen, 2);
    assert_int_equal(where(v, 3, nm).key_gen, 1);

    /* the follower meets a generation-2 segment and learns it */
    assert_int_equal(gfs_volume_catch_up(f), 0);
    uint8_t *all = malloc(SZ);
    assert_non_null(all);
    assert_int_equal(glidefs_pread(f, all, SZ, 0), 0);
    assert_memory_equal(all, img, 48 * BS);
    assert_int_equal(stats(f).key_generation, 2);

    /* compaction re-seals everything under generation 2, then retires 1 —
     * once the segment still being sealed under 1 is done */
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    assert_true(res.segments_rewritten >= 2);
    st = stats(v);
    assert_int_equal(st.segments_old_key, 0);
    assert_int_equal(st.key_generations, 2);
    assert_int_equal(stored_keys(&env, "rk", after), 2);
    gfs_segw_free(&inflight);
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    st = stats(v);
    assert_int_equal(st.segments_old_key, 0);
    assert_int_equal(st.key_generations, 1);
    assert_int_equal(st.key_generation, 2);
    assert_int_equal(where(v, 3, nm).key_gen, 2);
    assert_int_equal(stored_keys(&env, "rk", after), 1);
    assert_int_equal(after[0].gen, 2);
    memset(all, 0, SZ);
    assert_int_equal(glidefs_pread(v, all, SZ, 0), 0);
    assert_memory_equal(all, img, 48 * BS);
    assert_int_equal(glidefs_volume_close(f), 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* a cold open reads it all with generation 2 alone */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "rk", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    memset(all, 0, SZ);
    assert_int_equal(glidefs_pread(v, all, SZ, 0), 0);
    assert_memory_equal(all, img, 48 * BS);
    assert_int_equal(stats(v).checksum_errors, 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* whoever still has the retired generation-1 key forges a segment:
     * refused (the volume does not open); with the current key the same
     * forgery is accepted (the control: it is the key that decides) */
    forge_segment(&env, "rk", uuid, &before[0], 0xff, 50);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "rk", 0, GLIDEFS_OPEN_READONLY, &v), -EIO);
    forge_segment(&env, "rk", uuid, &after[0], 0xff, 50);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "rk", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    uint8_t blk[BS];
    assert_int_equal(glidefs_pread(v, blk, BS, 50 * BS), 0);
    assert_int_equal(blk[0], 0xab);
    assert_int_equal(glidefs_volume_close(v), 0);

    free(all);
    glidefs_config_free(fc);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_per_segment),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
