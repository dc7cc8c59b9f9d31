/*
 * test_scrub_orphans.c — scrub's orphan objects (issue 29): segment objects
 * under a volume's own prefix that nothing keeps are reported, with key and
 * size, and deleted only with GLIDEFS_SCRUB_DELETE_ORPHANS, under
 * compaction's rule for garbage. Runs on file:// and, under
 * tests/s3/s3env.py, on s3:// (objects put and listed through the store
 * interface, so both the same way).
 *
 * Volume "or": P = (1,1) blocks 0-15, (1,2) blocks 16-31, snapshot s1, then
 * blocks 0-15 again (1,3), so only s1 keeps P; clone "orc" of s1 writes a
 * block of its own; a second writer session adds (2,1). Clean: no orphan.
 * Then, into the store: O1 = (1,0x50) (a deposed writer's late upload:
 * fenced), O2 = (2,0x10) (after everything the readers know: possibly in
 * flight; its bytes are no segment, so the reader cannot apply it), junk
 * keys under seg/ (another spelling, a deeper path) and a segment of
 * another volume. A read-only scrub reports exactly O1 (not P, not O2, not
 * the junk, not the clone's or the other volume's) and refuses to delete;
 * the clone's scrub reports none. A writer (epoch 3, whose take fenced
 * epoch 2: O2 stored again now is a deposed writer's late upload) inside
 * compaction.grace_ms reports O1 and O2 and deletes nothing; a later one
 * (epoch 4) reports them, not O3 (its own next segment, in flight), and
 * deletes exactly those two; a rescrub is clean; compaction (whose open
 * found P unreferenced by the map) keeps P too; the clone still reads its
 * base (P) byte-exact from an empty cache. Under 1 s on file://, about 8 s
 * on s3://.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>

#include "testutil.h"
#include "segment.h"
#include "volume_internal.h"

#define BS 4096u
#define NB 64u
#define SZ ((uint64_t)NB * BS)

static glidefs_config *cfg(const struct tu_env *e, const char *grace_ms)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    tu_set(c, "storage.compression", "none");
    tu_set(c, "servers.nbd.block_size", "4096");
    tu_set(c, "servers.nbd.blocks_per_batch", "16");
    tu_set(c, "compaction.interval_s", "0"); /* garbage is reaped only when asked */
    tu_set(c, "compaction.grace_ms", grace_ms);
    return c;
}

static int find_cb(void *arg, const char *key, uint64_t size)
{
    (void)size;
    const char **want = arg;
    if (*want && strcmp(key, *want) == 0)
        *want = NULL;
    return 0;
}

/* Is key in the store (listed under itself as prefix)? */
static int exists(glidefs_volume *v, const char *key)
{
    const char *want = key;
    assert_int_equal(v->store->ops->list(v->store, key, NULL, find_cb, &want), 0);
    return want == NULL;
}

static void put(glidefs_volume *v, const char *key, size_t len)
{
    static uint8_t junk[4096];
    memset(junk, 'o', sizeof junk);
    assert_true(len <= sizeof junk);
    assert_int_equal(v->store->ops->put(v->store, key, junk, len, 0, NULL), 0);
}

static void seg_key(char *out, const char *vol, uint64_t e, uint64_t s)
{
    assert_int_equal(gfs_seg_key(out, 192, vol, e, s), 0);
}

/* Scrub; print the findings; the orphans must be exactly want[0..n) (with
 * their sizes) and nothing else may be found. */
static struct glidefs_scrub_result scrub(glidefs_volume *v, unsigned flags, const char *const *want,
                                         const uint64_t *sizes, uint32_t n)
{
    struct glidefs_scrub_result res;
    memset(&res, 0xa5, sizeof res);
    assert_int_equal(glidefs_scrub(v, flags, &res, sizeof res), 0);
    for (uint32_t i = 0; i < res.nfindings; i++)
        fprintf(stderr, "  finding %u: kind %u flags %u %s length %" PRIu64 "\n", i,
                res.findings[i].kind, res.findings[i].flags, res.findings[i].key,
                res.findings[i].length);
    assert_int_equal(res.missing_segments + res.size_mismatches + res.bad_headers +
                         res.damaged_blocks + res.bad_snapshots, 0);
    assert_int_equal(res.orphan_objects, n);
    assert_int_equal(res.nfindings, n);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        int found = 0;
        for (uint32_t j = 0; j < res.nfindings && !found; j++)
            found = res.findings[j].kind == GLIDEFS_SCRUB_ORPHAN &&
                    strcmp(res.findings[j].key, want[i]) == 0 &&
                    res.findings[j].length == sizes[i] && res.findings[j].offset == 0;
        if (!found)
            fprintf(stderr, "missing orphan %s\n", want[i]);
        assert_true(found);
        bytes += sizes[i];
    }
    assert_int_equal(res.orphan_bytes, bytes);
    return res;
}

static void test_orphans(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "scrub-orphans");
    glidefs_config *c = cfg(&env, "0");
    glidefs_volume *v, *k;
    static uint8_t img[SZ], got[SZ];
    uint64_t seed = 5;
    for (size_t i = 0; i < SZ; i++)
        img[i] = (uint8_t)tu_rand(&seed);

    /* writer session 1 (epoch 1) */
    assert_int_equal(glidefs_volume_open(c, "or", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    assert_int_equal(glidefs_pwrite(v, img, 16 * BS, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_pwrite(v, img + 16 * BS, 16 * BS, 16 * BS, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_snapshot_create(v, "s1"), 0);
    static uint8_t newer[16 * BS];
    memset(newer, 'n', sizeof newer);
    assert_int_equal(glidefs_pwrite(v, newer, sizeof newer, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(v->epoch, 1);
    assert_int_equal(glidefs_clone(v, "s1", "orc"), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    assert_int_equal(glidefs_volume_open(c, "orc", 0, 0, &k), 0);
    assert_int_equal(glidefs_pwrite(k, newer, BS, 40 * BS, 0), 0);
    assert_int_equal(glidefs_drain(k, -1), 0);
    assert_int_equal(glidefs_volume_close(k), 0);
    /* writer session 2 (epoch 2): one segment */
    assert_int_equal(glidefs_volume_open(c, "or", 0, 0, &v), 0);
    assert_int_equal(v->epoch, 2);
    assert_int_equal(glidefs_pwrite(v, img + 32 * BS, 4 * BS, 32 * BS, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* a clean store: no orphan, the snapshot's P included */
    char p[192], o1[192], o2[192], o3[192], j2[192], other[192];
    seg_key(p, "or", 1, 1);
    seg_key(o1, "or", 1, 0x50);
    seg_key(o2, "or", 2, 0x10);
    seg_key(other, "or2", 1, 0x50);
    snprintf(j2, sizeof j2, "nbd/or/seg/x/%016x-%016x", 1, 0x51);
    const char *j1 = "nbd/or/seg/0000000000000001-00000000000000XX";
    assert_int_equal(glidefs_volume_open(c, "or", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    assert_true(exists(v, p));
    struct glidefs_scrub_result res = scrub(v, 0, NULL, NULL, 0);
    assert_int_equal(res.segments_checked, 4); /* (1,2) (1,3) (2,1) and P */
    scrub(v, GLIDEFS_SCRUB_DEEP, NULL, NULL, 0);

    put(v, o1, 1234);
    put(v, o2, 999);
    put(v, j1, 10);
    put(v, j2, 11);
    put(v, other, 12);
    const char *w1[] = {o1};
    const uint64_t s1[] = {1234};
    scrub(v, 0, w1, s1, 1);
    res = scrub(v, GLIDEFS_SCRUB_DEEP, w1, s1, 1);
    assert_int_equal(res.orphans_deleted, 0);
    assert_int_equal(res.findings[0].flags, 0);
    assert_int_equal(glidefs_scrub(v, GLIDEFS_SCRUB_DELETE_ORPHANS, &res, sizeof res), -EROFS);
    assert_true(exists(v, o1));
    /* an in-flight O2 would be applied by a writer's take: gone before one */
    assert_int_equal(v->store->ops->del(v->store, o2), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    /* the clone: its own prefix only (its parent's objects are no orphans of its) */
    assert_int_equal(glidefs_volume_open(c, "orc", 0, GLIDEFS_OPEN_READONLY, &k), 0);
    scrub(k, 0, NULL, NULL, 0);
    assert_int_equal(glidefs_volume_close(k), 0);

    /* a writer inside compaction.grace_ms: reported, not deleted (its take
     * fenced epoch 2 at (2,1): O2 is a deposed writer's late upload now) */
    glidefs_config *cg = cfg(&env, "3600000");
    assert_int_equal(glidefs_volume_open(cg, "or", 0, 0, &v), 0);
    assert_int_equal(v->epoch, 3);
    put(v, o2, 999);
    const char *w2[] = {o1, o2};
    const uint64_t s2[] = {1234, 999};
    res = scrub(v, GLIDEFS_SCRUB_DELETE_ORPHANS, w2, s2, 2);
    assert_int_equal(res.orphans_deleted, 0);
    assert_true(exists(v, o1) && exists(v, o2));
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(cg);

    /* past the grace: O3, the writer's own next segment, is in flight */
    assert_int_equal(glidefs_volume_open(c, "or", 0, 0, &v), 0);
    assert_int_equal(v->epoch, 4);
    seg_key(o3, "or", 4, 0x10);
    put(v, o3, 77);
    scrub(v, 0, w2, s2, 2);
    res = scrub(v, GLIDEFS_SCRUB_DELETE_ORPHANS, w2, s2, 2);
    assert_int_equal(res.orphans_deleted, 2);
    for (uint32_t i = 0; i < res.nfindings; i++)
        assert_int_equal(res.findings[i].flags, GLIDEFS_SCRUB_FOUND_DELETED);
    assert_false(exists(v, o1));
    assert_false(exists(v, o2));
    assert_true(exists(v, o3) && exists(v, p) && exists(v, j1) && exists(v, j2) &&
                exists(v, other));
    scrub(v, GLIDEFS_SCRUB_DEEP, NULL, NULL, 0);
    /* compaction's own deletion of what its open found unreferenced (P is
     * on that list: not in the map) spares what the snapshot pins */
    assert_int_equal(glidefs_compact(v, NULL, 0), 0);
    assert_true(exists(v, p) && exists(v, o3));
    /* the writer's own data reads back */
    assert_int_equal(glidefs_pread(v, got, 16 * BS, 16 * BS), 0);
    assert_memory_equal(got, img + 16 * BS, 16 * BS);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* the clone still reads its base, P included, from an empty cache */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "orc", 0, GLIDEFS_OPEN_READONLY, &k), 0);
    assert_int_equal(glidefs_pread(k, got, 32 * BS, 0), 0);
    assert_memory_equal(got, img, 32 * BS);
    scrub(k, GLIDEFS_SCRUB_DEEP, NULL, NULL, 0);
    assert_int_equal(glidefs_volume_close(k), 0);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
