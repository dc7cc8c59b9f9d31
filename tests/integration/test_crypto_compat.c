/*
 * test_crypto_compat.c — an encrypted store written by an earlier release
 * still opens, byte-exact. tests/data/crypto-v0.1/ is a file:// store
 * written by this program's --write mode at 690b955 (AEAD: mbedTLS 2.28's
 * AES-256-GCM; the data key wrapped under the password): a zstd-compressed,
 * encrypted volume of 4 KiB blocks holding random, text, zero, trimmed,
 * partly written and overwritten blocks over two drains (two manifests,
 * segments of both). Checked, on copies of it and an empty cache each time:
 *   - every byte reads back as the model says, through the manifest, and
 *     through segment-header replay (manifests deleted);
 *   - a wrong password is refused at open;
 *   - this build writes into it, drains, and a fresh cache reads the old
 *     and the new blocks (new seals under the old data key).
 * A change of the AEAD implementation, the key derivation or the framing
 * that breaks stores already written fails here.
 *
 * usage: test_crypto_compat FIXTURE_DIR | --write NEW_FIXTURE_DIR
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

#include "testutil.h"

#define BS 4096u
#define NB 64u
#define SZ ((uint64_t)NB * BS)
#define VOL "compat"
#define PASSWORD "compat fixture password 0.1"
static const char TEXT[] = "GLIDEFS-COMPAT-TEXT-0123456789-";

static const char *fixture;
static uint8_t model[SZ];

/* ---- the volume's history, replayed identically by --write and the model ---- */

static void fill_random(uint64_t *seed, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tu_rand(seed) >> 24);
}

/* Apply phase 1 or 2 to the model, and to vol when it is not NULL. */
static void history(glidefs_volume *vol, int phase)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)phase;
    uint8_t blk[BS];
    for (uint32_t i = 0; i < NB; i++) {
        uint64_t off = (uint64_t)i * BS;
        uint32_t kind = i % 8;
        if (phase == 1) {
            switch (kind) {
            case 0: case 6: case 7: /* incompressible */
                fill_random(&seed, blk, BS);
                break;
            case 1: case 3: /* compressible text (3 is trimmed below) */
                for (size_t j = 0; j < BS; j++)
                    blk[j] = (uint8_t)TEXT[(j + i) % (sizeof TEXT - 1)];
                break;
            case 2: /* never written: a hole */
                continue;
            case 4: /* zeroes written as data */
                memset(blk, 0, BS);
                break;
            case 5: /* a 1000-byte head, the rest never written */
                memset(blk, 0, BS);
                fill_random(&seed, blk, 1000);
                break;
            }
            if (kind == 5) {
                /* pwrite needs whole sectors: 1024 bytes, 1000 of them random */
                if (vol)
                    assert_int_equal(glidefs_pwrite(vol, blk, 1024, off, 0), 0);
                memcpy(model + off, blk, 1024);
                continue;
            }
        } else {
            if (kind == 3) { /* trimmed */
                if (vol)
                    assert_int_equal(glidefs_trim(vol, off, BS, 0), 0);
                memset(model + off, 0, BS);
                continue;
            }
            if (kind == 6) { /* overwritten whole */
                fill_random(&seed, blk, BS);
            } else if (kind == 7) { /* second half overwritten */
                fill_random(&seed, blk, BS / 2);
                if (vol)
                    assert_int_equal(glidefs_pwrite(vol, blk, BS / 2, off + BS / 2, 0), 0);
                memcpy(model + off + BS / 2, blk, BS / 2);
                continue;
            } else {
                continue;
            }
        }
        if (vol)
            assert_int_equal(glidefs_pwrite(vol, blk, BS, off, 0), 0);
        memcpy(model + off, blk, BS);
    }
}

static glidefs_config *cfg_for(const struct tu_env *e, const char *cache, const char *pw)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    tu_set(c, "cache.dir", cache);
    tu_set(c, "servers.nbd.block_size", "4096");
    tu_set(c, "storage.compression", "zstd");
    tu_set(c, "storage.encryption_password", pw);
    return c;
}

/* ---- copying and editing the store tree ---- */

static char copy_dst[512];
static size_t copy_src_len;

static int copy_cb(const char *p, const struct stat *sb, int f, struct FTW *w)
{
    (void)w;
    char to[1024];
    snprintf(to, sizeof to, "%s%s", copy_dst, p + copy_src_len);
    if (f == FTW_D)
        return mkdir(to, 0700) < 0 && errno != EEXIST ? -1 : 0;
    if (f != FTW_F)
        return -1; /* the fixture holds directories and files only */
    int in = open(p, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    uint8_t *buf = malloc((size_t)sb->st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(in, buf, (size_t)sb->st_size + 1), sb->st_size);
    assert_int_equal(write(out, buf, (size_t)sb->st_size), sb->st_size);
    free(buf);
    close(in);
    close(out);
    return 0;
}

static void copy_tree(const char *from, const char *to)
{
    snprintf(copy_dst, sizeof copy_dst, "%s", to);
    copy_src_len = strlen(from);
    assert_int_equal(nftw(from, copy_cb, 16, FTW_PHYS), 0);
}

static int manifests_removed;

static int rm_manifest_cb(const char *p, const struct stat *sb, int f, struct FTW *w)
{
    (void)sb;
    if (f == FTW_F && strstr(p, "/manifest/")) {
        assert_int_equal(unlink(p), 0);
        manifests_removed++;
    }
    (void)w;
    return 0;
}

/* ---- checks ---- */

static void reads_model(glidefs_volume *v)
{
    static uint8_t got[SZ];
    memset(got, 0xee, sizeof got);
    assert_int_equal(glidefs_pread(v, got, SZ, 0), 0);
    for (uint32_t i = 0; i < NB; i++)
        if (memcmp(got + (uint64_t)i * BS, model + (uint64_t)i * BS, BS) != 0)
            fail_msg("block %u (kind %u) differs from what the fixture's writer wrote", i, i % 8);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_int_equal(st.checksum_errors, 0);
    /* it came from the store, not a cache: fetched by the reads or by the
     * prefetch of the access profile (MAC'd) an earlier open stored */
    assert_true(st.cache_misses + st.prefetched_blocks > 0);
}

/* The key generation (segment header offset 44) of every segment in the
 * store, by name; returns how many there are. */
struct seginfo {
    char name[256];
    uint32_t key_gen;
};

static size_t seg_gens(const char *store, struct seginfo *out, size_t max)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/nbd/" VOL "/seg", store);
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        assert_true(n < max);
        char path[1000];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        uint8_t h[64];
        assert_int_equal(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
        close(fd);
        snprintf(out[n].name, sizeof out[n].name, "%s", de->d_name);
        out[n].key_gen = (uint32_t)h[44] | (uint32_t)h[45] << 8 | (uint32_t)h[46] << 16 |
                         (uint32_t)h[47] << 24;
        n++;
    }
    closedir(d);
    return n;
}

/* The fixture's segments keep the legacy key (0); every segment this build
 * wrote has a key of its own (generation 1). Returns the new ones. */
static size_t check_gens(const char *store, const struct seginfo *old, size_t nold)
{
    static struct seginfo now[256];
    size_t n = seg_gens(store, now, 256), fresh = 0;
    for (size_t i = 0; i < n; i++) {
        int was = 0;
        for (size_t j = 0; j < nold; j++)
            was |= strcmp(now[i].name, old[j].name) == 0;
        if (was)
            assert_int_equal(now[i].key_gen, 0);
        else
            assert_int_equal(now[i].key_gen, 1);
        fresh += !was;
    }
    return fresh;
}

static void open_fixture_copy(struct tu_env *e, const char *cache, glidefs_volume **v)
{
    glidefs_config *c = cfg_for(e, cache, PASSWORD);
    assert_int_equal(glidefs_volume_open(c, VOL, 0, 0, v), 0);
    glidefs_config_free(c);
}

static void test_reads_old_store(void **state)
{
    (void)state;
    struct tu_env e;
    tu_env_init(&e, "cryptocompat");
    copy_tree(fixture, e.store);
    char cache[600];
    static struct seginfo old[256];
    size_t nold = seg_gens(e.store, old, 256);
    for (size_t i = 0; i < nold; i++)
        assert_int_equal(old[i].key_gen, 0);

    /* through the manifest */
    snprintf(cache, sizeof cache, "%s/c1", e.root);
    glidefs_volume *v;
    open_fixture_copy(&e, cache, &v);
    reads_model(v);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* a wrong password: refused before anything is read */
    snprintf(cache, sizeof cache, "%s/c2", e.root);
    glidefs_config *bad = cfg_for(&e, cache, "not the fixture password");
    assert_int_equal(glidefs_volume_open(bad, VOL, 0, 0, &v), -EACCES);
    glidefs_config_free(bad);

    /* through segment headers alone */
    manifests_removed = 0;
    assert_int_equal(nftw(e.store, rm_manifest_cb, 16, FTW_PHYS), 0);
    assert_true(manifests_removed >= 1);
    snprintf(cache, sizeof cache, "%s/c3", e.root);
    open_fixture_copy(&e, cache, &v);
    reads_model(v);

    /* this build adds to it, under the old data key: new segments get
     * segment keys of generation 1, the old ones keep the legacy key */
    uint8_t blk[BS];
    uint64_t seed = 77;
    for (uint32_t i = 2; i < NB; i += 8) { /* the holes */
        fill_random(&seed, blk, BS);
        assert_int_equal(glidefs_pwrite(v, blk, BS, (uint64_t)i * BS, 0), 0);
        memcpy(model + (uint64_t)i * BS, blk, BS);
    }
    assert_int_equal(glidefs_drain(v, 60000), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    assert_true(check_gens(e.store, old, nold) >= 1);
    /* a manifest listing both kinds (GFS_MANF_KEYGEN) */
    snprintf(cache, sizeof cache, "%s/c4", e.root);
    open_fixture_copy(&e, cache, &v);
    reads_model(v);
    /* compaction moves blocks out of legacy segments: re-sealed under the
     * new segment's key */
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    reads_model(v);
    assert_int_equal(glidefs_volume_close(v), 0);
    size_t fresh = check_gens(e.store, old, nold);
    fprintf(stderr, "compaction rewrote %llu segments; %zu segments with their own key\n",
            (unsigned long long)res.segments_rewritten, fresh);
    snprintf(cache, sizeof cache, "%s/c5", e.root);
    open_fixture_copy(&e, cache, &v);
    reads_model(v);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_env_done(&e);
}

/* --write DIR: the fixture, as this build writes it */
static int write_fixture(const char *dir)
{
    struct tu_env e;
    tu_env_init(&e, "cryptofixture");
    snprintf(e.url, sizeof e.url, "file://%s", dir);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", e.root);
    glidefs_config *c = cfg_for(&e, cache, PASSWORD);
    glidefs_volume *v;
    int r = glidefs_volume_open(c, VOL, SZ, GLIDEFS_OPEN_CREATE | GLIDEFS_OPEN_EXCLUSIVE, &v);
    if (r < 0) {
        fprintf(stderr, "open: %s\n", glidefs_strerror(r));
        return 1;
    }
    history(v, 1);
    r = glidefs_drain(v, 60000);
    history(v, 2);
    if (r == 0)
        r = glidefs_drain(v, 60000);
    int rc = glidefs_volume_close(v);
    glidefs_config_free(c);
    tu_env_done(&e);
    if (r < 0 || rc < 0) {
        fprintf(stderr, "drain/close: %s\n", glidefs_strerror(r < 0 ? r : rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write") == 0)
        return write_fixture(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR | --write NEW_FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture = argv[1];
    history(NULL, 1);
    history(NULL, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_old_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
