/*
 * test_dirty_handoff.c — the dirty index a close leaves for the next open
 * in the same boot (lib/dirty_handoff.c, lib/dirty_index.c; what makes a
 * takeover's pause short):
 *  - adopt: nothing uploaded (long sync delay), blocks written several
 *    times over, partial blocks, trims and write-zeroes; the reopen takes
 *    the index (no record replayed, dirty.idx gone) and every byte reads
 *    right; writes after the adoption and a second close and adoption too;
 *  - refused: an index from before the journal changed (put back after a
 *    later close), the journal's newest file written at its tail or only
 *    touched (its times), another epoch's, a journal file added, the index
 *    truncated, a flipped byte, another boot's (its boot id
 *    changed, the CRC made right again): the open replays the journal (its
 *    records counted), removes the index, and every byte reads right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "bytes.h"
#include "crc32c.h"
#include "volume_internal.h"

#define BS 131072u
#define NBLK 24u
#define SZ ((uint64_t)NBLK * BS)

static glidefs_config *cfg_of(const struct tu_env *env)
{
    glidefs_config *c = tu_config(env, "256M", "600000");
    tu_set(c, "servers.nbd.max_dirty_age_ms", "600000"); /* nothing uploads: all in the journal */
    tu_set(c, "cache.profile_s", "0");
    tu_set(c, "cache.readahead_kb", "0");
    tu_set(c, "compaction.interval_s", "0");
    return c;
}

/* Random writes (some several times over the same block, some partial),
 * trims and write-zeroes, applied to the model too. */
static void scribble(glidefs_volume *v, uint8_t *model, uint64_t *seed, int n)
{
    static uint8_t buf[2 * BS];
    for (int i = 0; i < n; i++) {
        uint64_t r = tu_rand(seed);
        uint64_t sectors = 1 + r % 300;                  /* up to ~150 KiB: crosses blocks */
        uint64_t off = (tu_rand(seed) % (SZ / 512 - sectors)) * 512;
        if (i % 3 == 0)
            off = (tu_rand(seed) % 4) * BS + (r % 8) * 512; /* the same few blocks, again */
        size_t len = (size_t)sectors * 512;
        int kind = (int)(tu_rand(seed) % 10);
        if (kind == 0) {
            assert_int_equal(glidefs_trim(v, off, len, 0), 0);
            memset(model + off, 0, len);
        } else if (kind == 1) {
            assert_int_equal(glidefs_write_zeroes(v, off, len, 0), 0);
            memset(model + off, 0, len);
        } else {
            for (size_t k = 0; k < len; k += 8) {
                uint64_t x = tu_rand(seed);
                memcpy(buf + k, &x, 8);
            }
            assert_int_equal(glidefs_pwrite(v, buf, len, off, 0), 0);
            memcpy(model + off, buf, len);
        }
    }
    assert_int_equal(glidefs_flush(v), 0);
}

static void check(glidefs_volume *v, const uint8_t *model)
{
    uint8_t *got = malloc(SZ);
    assert_non_null(got);
    assert_int_equal(glidefs_pread(v, got, SZ, 0), 0);
    assert_memory_equal(got, model, SZ);
    free(got);
}

static void idx_path(const struct tu_env *env, char *p, size_t n)
{
    snprintf(p, n, "%s/v/dirty.idx", env->cache);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static uint8_t *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *p, const uint8_t *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static glidefs_volume *open_v(glidefs_config *c)
{
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "v", 0, 0, &v), 0);
    return v;
}

static void test_adopt(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "didx");
    glidefs_config *c = cfg_of(&env);
    uint8_t *model = calloc(1, SZ);
    uint64_t seed = 42;
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "v", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    scribble(v, model, &seed, 300);
    assert_int_equal(glidefs_volume_close(v), 0);
    char p[600];
    idx_path(&env, p, sizeof p);
    assert_true(exists(p));

    v = open_v(c);
    assert_int_equal(v->didx_adopted, 1);
    assert_int_equal(v->replayed_records, 0);
    assert_false(exists(p)); /* taken: a crash from here on replays */
    assert_true(v->dirty.nblocks > 0);
    check(v, model);
    scribble(v, model, &seed, 200); /* goes on in the adopted journal */
    check(v, model);
    assert_int_equal(glidefs_volume_close(v), 0);

    v = open_v(c);
    assert_int_equal(v->didx_adopted, 1);
    assert_int_equal(v->replayed_records, 0);
    check(v, model);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* the same state by replay: the reference the adoption must equal */
    unlink(p);
    v = open_v(c);
    assert_int_equal(v->didx_adopted, 0);
    assert_true(v->replayed_records >= 500);
    check(v, model);
    assert_int_equal(glidefs_volume_close(v), 0);
    free(model);
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* Open after the index was tampered with: replayed, removed, right. */
static void expect_replay(glidefs_config *c, const char *p, const uint8_t *model)
{
    glidefs_volume *v = open_v(c);
    assert_int_equal(v->didx_adopted, 0);
    assert_true(v->replayed_records > 0);
    assert_false(exists(p));
    check(v, model);
    assert_int_equal(glidefs_volume_close(v), 0);
}

static void test_refused(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "didx-bad");
    glidefs_config *c = cfg_of(&env);
    uint8_t *model = calloc(1, SZ);
    uint64_t seed = 7;
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "v", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    scribble(v, model, &seed, 200);
    assert_int_equal(glidefs_volume_close(v), 0);
    char p[600];
    idx_path(&env, p, sizeof p);
    size_t n;
    uint8_t *old = slurp(p, &n);

    /* the journal changed after the index was written: a later open (it
     * adopts) writes more, and its close's index is replaced by the old */
    v = open_v(c);
    assert_int_equal(v->didx_adopted, 1);
    scribble(v, model, &seed, 50);
    assert_int_equal(glidefs_volume_close(v), 0);
    spit(p, old, n);
    expect_replay(c, p, model);
    free(old);

    /* the journal's newest file written at its tail after the close (as
     * an older glidefs's open would, ending it) */
    old = slurp(p, &n);
    uint32_t nfiles = gfs_le32_get(old + 88);
    assert_true(nfiles > 0);
    const uint8_t *last = old + 112 + (size_t)(nfiles - 1) * 64;
    char jp[700];
    snprintf(jp, sizeof jp, "%s/v/journal/%016" PRIx64 ".log", env.cache, gfs_le64_get(last));
    int fd = open(jp, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "GFSJ", 4, (off_t)gfs_le64_get(last + 16)), 4);
    close(fd);
    expect_replay(c, p, model);
    free(old);

    /* only the journal file's times changed (touched after the close) */
    old = slurp(p, &n);
    nfiles = gfs_le32_get(old + 88);
    last = old + 112 + (size_t)(nfiles - 1) * 64;
    snprintf(jp, sizeof jp, "%s/v/journal/%016" PRIx64 ".log", env.cache, gfs_le64_get(last));
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 0},
                             {.tv_sec = 1000000000, .tv_nsec = 0}};
    assert_int_equal(utimensat(AT_FDCWD, jp, ts, 0), 0);
    expect_replay(c, p, model);
    free(old);

    /* written under another epoch (the field changed, the CRC right again) */
    old = slurp(p, &n);
    old[56] ^= 1;
    gfs_le32_put(old + n - 4, gfs_crc32c(0, old, n - 4));
    spit(p, old, n);
    expect_replay(c, p, model);
    free(old);

    /* a journal file added after the close */
    old = slurp(p, &n);
    nfiles = gfs_le32_get(old + 88);
    last = old + 112 + (size_t)(nfiles - 1) * 64;
    snprintf(jp, sizeof jp, "%s/v/journal/%016" PRIx64 ".log", env.cache,
             gfs_le64_get(last) + 1);
    fd = open(jp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    expect_replay(c, p, model);
    free(old);

    /* the replaying close wrote a fresh index: damage it in turn */
    assert_true(exists(p));
    old = slurp(p, &n);
    spit(p, old, n - 5); /* truncated */
    expect_replay(c, p, model);

    free(old);
    old = slurp(p, &n);
    old[n / 2] ^= 0x20; /* a flipped byte */
    spit(p, old, n);
    expect_replay(c, p, model);

    free(old);
    old = slurp(p, &n);
    old[40] ^= 1; /* another boot's (boot id at 32..47), its CRC right again */
    gfs_le32_put(old + n - 4, gfs_crc32c(0, old, n - 4));
    spit(p, old, n);
    expect_replay(c, p, model);

    /* and untouched it is adopted again */
    free(old);
    assert_true(exists(p));
    v = open_v(c);
    assert_int_equal(v->didx_adopted, 1);
    check(v, model);
    assert_int_equal(glidefs_volume_close(v), 0);
    free(old = NULL);
    free(model);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adopt),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
