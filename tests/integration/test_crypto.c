/*
 * test_crypto.c — encryption at rest, compression and integrity of what
 * comes back from the store (file:// store, inspected from outside):
 * no plaintext in any stored object, wrong or missing password refused
 * before anything changes, rekey, zstd shrinking compressible data, and
 * every kind of tampering (payload bit flip, header bit flip, manifest bit
 * flip, a segment moved to another key, a segment from another volume,
 * broken volume.json) giving -EIO or a clear open error, never wrong data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "testutil.h"

#define SZ (4u << 20)
#define BS 131072u
static const char PATTERN[] = "GLIDEFS-PLAINTEXT-PATTERN-0123456789";

static glidefs_config *cfg_for(const struct tu_env *e, const char *pw, const char *comp)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    if (pw)
        tu_set(c, "storage.encryption_password", pw);
    if (comp)
        tu_set(c, "storage.compression", comp);
    return c;
}

static void fill_text(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)PATTERN[i % (sizeof PATTERN - 1)];
}

/* Sum of sizes of files under dir whose path contains `part`; with needle,
 * fail if any such file contains it. */
static uint64_t scan(const char *dir, const char *part, const char *needle)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            total += scan(p, part, needle);
            continue;
        }
        if (!strstr(p, part))
            continue;
        total += (uint64_t)st.st_size;
        if (needle) {
            FILE *f = fopen(p, "rb");
            assert_non_null(f);
            uint8_t *buf = malloc((size_t)st.st_size + 1);
            size_t n = fread(buf, 1, (size_t)st.st_size, f);
            fclose(f);
            if (memmem(buf, n, needle, strlen(needle)))
                fail_msg("plaintext found in stored object %s", p);
            free(buf);
        }
    }
    closedir(d);
    return total;
}

static char *first_file(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    char *best = NULL;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && (!best || strcmp(de->d_name, best) < 0)) {
            free(best);
            best = strdup(de->d_name);
        }
    closedir(d);
    assert_non_null(best);
    return best;
}

static void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

static void write_volume(glidefs_config *c, const char *name, uint8_t *img)
{
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    fill_text(img, SZ / 2);
    uint64_t s = 99;
    for (size_t i = SZ / 2; i < SZ; i += 8) {
        uint64_t x = tu_rand(&s);
        memcpy(img + i, &x, 8);
    }
    assert_int_equal(glidefs_pwrite(v, img, SZ, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
}

static void read_all(glidefs_config *c, const char *name, const uint8_t *img)
{
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, 0, 0, &v), 0);
    uint8_t *buf = malloc(SZ);
    assert_int_equal(glidefs_pread(v, buf, SZ, 0), 0);
    assert_memory_equal(buf, img, SZ);
    free(buf);
    assert_int_equal(glidefs_volume_close(v), 0);
}

static void test_encrypted_volume(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "crypto");
    if (strncmp(env.url, "file://", 7) != 0)
        skip(); /* the store is inspected as files */
    glidefs_config *c = cfg_for(&env, "correct horse", "zstd");
    uint8_t *img = malloc(SZ);
    write_volume(c, "sealed", img);

    /* nothing readable in the store: no pattern, no password */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/nbd/sealed", env.store);
    scan(dir, "/", PATTERN + 8);
    scan(dir, "/", "correct horse");
    /* compressed even though sealed: the text half shrank */
    uint64_t stored = scan(dir, "/seg/", NULL);
    assert_true(stored < SZ * 3 / 4);

    /* wrong or missing password: refused at open, store untouched */
    uint64_t before = scan(dir, "/", NULL);
    glidefs_volume *v;
    glidefs_config *bad = cfg_for(&env, "wrong", NULL);
    glidefs_config *none = cfg_for(&env, NULL, NULL);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(bad, "sealed", 0, 0, &v), -EACCES);
    assert_int_equal(glidefs_volume_open(none, "sealed", 0, 0, &v), -EACCES);
    assert_int_equal(scan(dir, "/", NULL), before);
    char lease[700];
    snprintf(lease, sizeof lease, "%s/lease", dir);
    struct stat lst;
    assert_int_equal(stat(lease, &lst), 0);
    time_t lease_mtime = lst.st_mtime;

    /* right password on an empty cache: every byte */
    read_all(c, "sealed", img);

    /* rekey: the new password opens it, the old does not; data not rewritten */
    char segdir[700];
    snprintf(segdir, sizeof segdir, "%s/seg", dir);
    uint64_t segbytes = scan(segdir, "/", NULL);
    assert_int_equal(glidefs_volume_open(c, "sealed", 0, 0, &v), 0);
    assert_int_equal(glidefs_volume_rekey(v, "not it", "new secret"), -EACCES);
    assert_int_equal(glidefs_volume_rekey(v, "correct horse", "new secret"), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    assert_int_equal(scan(segdir, "/", NULL), segbytes);
    glidefs_config *c2 = cfg_for(&env, "new secret", NULL);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "sealed", 0, 0, &v), -EACCES);
    read_all(c2, "sealed", img);
    (void)lease_mtime;

    /* a flipped payload byte: that block is -EIO, counted; others still read */
    char *seg = first_file(segdir);
    char segpath[1000];
    snprintf(segpath, sizeof segpath, "%s/%s", segdir, seg);
    struct stat sst;
    assert_int_equal(stat(segpath, &sst), 0);
    flip_byte(segpath, (long)sst.st_size - 100);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c2, "sealed", 0, GLIDEFS_OPEN_READONLY, &v), 0);
    uint8_t *buf = malloc(SZ);
    int bad_blocks = 0;
    for (uint64_t off = 0; off < SZ; off += BS) {
        int r = glidefs_pread(v, buf, BS, off);
        if (r == -EIO)
            bad_blocks++;
        else
            assert_memory_equal(buf, img + off, BS);
    }
    assert_int_equal(bad_blocks, 1);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_true(st.checksum_errors >= 1);
    assert_int_equal(glidefs_volume_close(v), 0);
    flip_byte(segpath, (long)sst.st_size - 100); /* repair */

    /* a flipped header byte: the header MAC fails, the volume does not open
     * (with the manifest out of the way, so that the header is replayed) */
    char mdir0[700], mdir1[700];
    snprintf(mdir0, sizeof mdir0, "%s/manifest", dir);
    snprintf(mdir1, sizeof mdir1, "%s/manifest.away", env.root);
    assert_int_equal(rename(mdir0, mdir1), 0);
    flip_byte(segpath, 70);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c2, "sealed", 0, GLIDEFS_OPEN_READONLY, &v), -EIO);
    flip_byte(segpath, 70);
    read_all(c2, "sealed", img); /* replaying the headers alone gives the same bytes */
    tu_rmrf(mdir1); /* closing wrote a new manifest */
    /* the same segment under another key: refused */
    char moved[1100];
    snprintf(moved, sizeof moved, "%s/%016x-%016x", segdir, 0xffu, 0x1u); /* a later epoch: not fenced */
    copy_file(segpath, moved);
    assert_int_equal(glidefs_volume_open(c2, "sealed", 0, GLIDEFS_OPEN_READONLY, &v), -EIO);
    unlink(moved);
    read_all(c2, "sealed", img);

    /* a segment of another volume (same password) slipped in: refused */
    write_volume(c, "other", img);
    char odir[700];
    snprintf(odir, sizeof odir, "%s/nbd/other/seg", env.store);
    char *oseg = first_file(odir);
    char from[1100], to[1100];
    snprintf(from, sizeof from, "%s/%s", odir, oseg);
    snprintf(to, sizeof to, "%s/%016x-%016x", segdir, 0x7u, 0x1u);
    copy_file(from, to);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c2, "sealed", 0, GLIDEFS_OPEN_READONLY, &v), -EIO);
    unlink(to);

    /* a flipped manifest byte, and a broken volume.json */
    char mdir[700];
    snprintf(mdir, sizeof mdir, "%s/manifest", dir);
    char *man = first_file(mdir);
    char manpath[1100];
    snprintf(manpath, sizeof manpath, "%s/%s", mdir, man);
    flip_byte(manpath, 80);
    assert_int_equal(glidefs_volume_open(c2, "sealed", 0, GLIDEFS_OPEN_READONLY, &v), -EIO);
    flip_byte(manpath, 80);
    char vj[700];
    snprintf(vj, sizeof vj, "%s/volume.json", dir);
    copy_file(vj, "/dev/null");
    FILE *f = fopen(vj, "r+b");
    assert_non_null(f);
    fputs("{\"format\": 1, \"uuid\": 1", f);
    fclose(f);
    assert_int_equal(glidefs_volume_open(c2, "sealed", 0, GLIDEFS_OPEN_READONLY, &v), -EIO);

    free(seg);
    free(oseg);
    free(man);
    free(buf);
    free(img);
    glidefs_config_free(c);
    glidefs_config_free(c2);
    glidefs_config_free(bad);
    glidefs_config_free(none);
    tu_env_done(&env);
}

static void test_zstd_plain(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "zstd");
    if (strncmp(env.url, "file://", 7) != 0)
        skip();
    glidefs_config *z = cfg_for(&env, NULL, "zstd");
    glidefs_config *n = cfg_for(&env, NULL, NULL);
    uint8_t *img = malloc(SZ);
    write_volume(z, "z", img);
    write_volume(n, "n", img);
    char dz[600], dn[600];
    snprintf(dz, sizeof dz, "%s/nbd/z/seg", env.store);
    snprintf(dn, sizeof dn, "%s/nbd/n/seg", env.store);
    uint64_t sz = scan(dz, "/", NULL), sn = scan(dn, "/", NULL);
    fprintf(stderr, "stored: zstd %llu bytes, none %llu bytes for %u bytes written\n",
            (unsigned long long)sz, (unsigned long long)sn, SZ);
    assert_true(sn >= SZ);
    assert_true(sz < sn * 3 / 4);
    tu_rmrf(env.cache);
    read_all(z, "z", img);
    read_all(n, "n", img);
    free(img);
    glidefs_config_free(z);
    glidefs_config_free(n);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zstd_plain),
        cmocka_unit_test(test_encrypted_volume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
