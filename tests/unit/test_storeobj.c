/*
 * test_storeobj.c — the metadata objects glidefsd reads from the store:
 * volume.json (gfs_volmeta_parse), the lease (gfs_lease_decode), snapshot
 * objects and clone markers (gfs_snap_parse, gfs_child_marker_parse). Every
 * seed of the fuzz corpora (fuzz/corpus-*) is accepted or refused as its name
 * says ("bad_*" refused), and the refusals say what is wrong.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "snapobj.h"
#include "volume_internal.h"

#ifndef FUZZ_DIR
#error "FUZZ_DIR (the fuzz/ directory) must be defined"
#endif

static char last_msg[1024];

static void capture(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    snprintf(last_msg, sizeof last_msg, "%s", msg);
}

static const struct gfs_log cap_log = {capture, NULL, GLIDEFS_LOG_DEBUG};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

typedef void (*seed_fn)(const char *name, const char *buf, size_t len);

static int each_seed(const char *sub, seed_fn fn)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", FUZZ_DIR, sub);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        size_t len;
        char *buf = slurp(p, &len);
        fn(de->d_name, buf, len);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static int is_bad(const char *name)
{
    return strncmp(name, "bad_", 4) == 0;
}

static void volmeta_seed(const char *name, const char *buf, size_t len)
{
    struct gfs_volmeta *m = calloc(1, sizeof *m);
    assert_non_null(m);
    last_msg[0] = 0;
    int r = gfs_volmeta_parse(m, "fuzzvol", &cap_log, buf, len);
    int want = is_bad(name) ? -EIO : strcmp(name, "tombstone") == 0 ? -ENOENT : 0;
    if (r != want)
        fail_msg("volume.json seed %s: got %d, want %d (%s)", name, r, want, last_msg);
    if (want == -EIO && (!strstr(last_msg, "fuzzvol: volume.json has") ||
                         !strstr(last_msg, "refused")))
        fail_msg("volume.json seed %s: unclear error \"%s\"", name, last_msg);
    free(m);
}

static void test_volmeta_seeds(void **state)
{
    (void)state;
    assert_true(each_seed("corpus-volmeta", volmeta_seed) >= 10);
}

/* The object of issue 21 item 1: a parent with an empty lineage left the
 * depth at 0, and the map loader read lineage[depth - 1]. */
static void test_volmeta_empty_lineage(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"block_size\": 131072, \"format\": 1, \"size\": 2097152,"
        " \"uuid\": \"71679efc-df84-4f0f-bc64-5339c4039233\", \"lineage\": [],"
        " \"parent\": {\"name\": \"zz\", \"snapshot\": \"s\","
        " \"manifest\": \"0000000000000001-0000000000000001\"}}";
    struct gfs_volmeta *m = calloc(1, sizeof *m);
    assert_non_null(m);
    assert_int_equal(gfs_volmeta_parse(m, "v1", &cap_log, doc, strlen(doc)), -EIO);
    assert_non_null(strstr(last_msg, "v1: volume.json has a parent but no lineage"));
    free(m);
}

/* A clone as glidefs_clone writes it reads back the same. */
static void test_volmeta_clone_round_trip(void **state)
{
    (void)state;
    struct gfs_volmeta *m = calloc(2, sizeof *m);
    assert_non_null(m);
    m[0].format = 1;
    m[0].size = 1 << 20;
    m[0].block_size = 131072;
    snprintf(m[0].compression, sizeof m[0].compression, "none");
    memset(m[0].uuid, 0x11, 16);
    memset(m[0].data_uuid, 0x22, 16);
    snprintf(m[0].uuid_str, sizeof m[0].uuid_str, "11111111-1111-1111-1111-111111111111");
    snprintf(m[0].data_uuid_str, sizeof m[0].data_uuid_str,
             "22222222-2222-2222-2222-222222222222");
    m[0].depth = 2;
    snprintf(m[0].lineage[0], sizeof m[0].lineage[0], "root");
    snprintf(m[0].lineage[1], sizeof m[0].lineage[1], "mid");
    snprintf(m[0].parent_snapshot, sizeof m[0].parent_snapshot, "@clone-leaf");
    char *txt = gfs_volmeta_text(&m[0], 0);
    assert_non_null(txt);
    assert_int_equal(gfs_volmeta_parse(&m[1], "leaf", &cap_log, txt, strlen(txt)), 0);
    assert_int_equal(m[1].depth, 2);
    assert_string_equal(m[1].lineage[1], "mid");
    assert_string_equal(m[1].parent_snapshot, "@clone-leaf");
    assert_string_equal(m[1].base_manifest, "");
    assert_memory_equal(m[1].data_uuid, m[0].data_uuid, 16);
    char par[GLIDEFS_NAME_MAX + 1], snap[GLIDEFS_NAME_MAX + 8];
    assert_int_equal(gfs_clone_origin_parse(txt, strlen(txt), par, sizeof par, snap, sizeof snap),
                     0);
    assert_string_equal(par, "mid");
    assert_string_equal(snap, "@clone-leaf");
    free(txt);
    free(m);
}

static void lease_seed(const char *name, const char *buf, size_t len)
{
    struct gfs_lease *l = calloc(1, sizeof *l);
    assert_non_null(l);
    int r = gfs_lease_decode(buf, len, l);
    if (r != (is_bad(name) ? -EIO : 0))
        fail_msg("lease seed %s: got %d", name, r);
    free(l);
}

static void test_lease_seeds(void **state)
{
    (void)state;
    assert_true(each_seed("corpus-lease", lease_seed) >= 5);
}

static void snapshot_seed(const char *name, const char *buf, size_t len)
{
    static const char *const names[] = {"s1", "@clone-child", "@fenced-7", "other"};
    assert_true(len > 0);
    const char *sname = names[(unsigned char)buf[0] % 4];
    struct gfs_snapinfo si;
    char snap[GLIDEFS_NAME_MAX + 8];
    int is_marker = strstr(name, "marker") != NULL;
    int r = is_marker ? gfs_child_marker_parse(buf + 1, len - 1, snap, sizeof snap)
                      : gfs_snap_parse(buf + 1, len - 1, sname, &si);
    if (r != (is_bad(name) ? -EIO : 0))
        fail_msg("snapshot seed %s: got %d", name, r);
}

static void test_snapshot_seeds(void **state)
{
    (void)state;
    assert_true(each_seed("corpus-snapshot", snapshot_seed) >= 5);
}

static void test_snap_names(void **state)
{
    (void)state;
    assert_true(gfs_snap_name_ok("s1"));
    assert_true(gfs_snap_name_ok("@clone-child"));
    assert_true(gfs_snap_name_ok("@fenced-12"));
    assert_false(gfs_snap_name_ok("@"));
    assert_false(gfs_snap_name_ok("../x"));
    assert_false(gfs_snap_name_ok("@a/b"));
    assert_false(gfs_snap_name_ok(".hidden"));
    assert_false(gfs_snap_name_ok(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_volmeta_seeds),
        cmocka_unit_test(test_volmeta_empty_lineage),
        cmocka_unit_test(test_volmeta_clone_round_trip),
        cmocka_unit_test(test_lease_seeds),
        cmocka_unit_test(test_snapshot_seeds),
        cmocka_unit_test(test_snap_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
