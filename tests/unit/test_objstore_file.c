/*
 * test_objstore_file.c — the file:// object store: every operation, the
 * conditional puts, hostile keys, lexical listing across nested directories
 * (checked against a sorted reference), concurrency (different keys, one key
 * with readers that must always see a whole object, a compare-and-swap
 * counter, a creation race) and that no temp files are left behind. Also
 * gfs_objstore_open's URL dispatch.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "bytes.h"
#include "config.h"
#include "objstore.h"

struct fixture {
    char root[256];
    struct gfs_objstore *st;
};

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng(void)
{
    return rng_next(&rng_state);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->root, sizeof(f->root), "%s/gfs-objstore-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    char err[256] = "";
    int r = gfs_objstore_file_open(f->root, NULL, &f->st, err, sizeof(err));
    if (r < 0)
        fail_msg("open: %d %s", r, err);
    *state = f;
    return 0;
}

/* The same, resolving paths one component at a time (no openat2). */
static int setup_walk(void **state)
{
    setup(state);
    gfs_objstore_file_walk_only(((struct fixture *)*state)->st);
    return 0;
}

static int tmp_files_found;

static int tmp_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    if (strncmp(path + ftw->base, ".tmp.", 5) == 0)
        tmp_files_found++;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gfs_objstore_close(f->st);
    /* No operation may leave a temp file behind, failed ones included. */
    tmp_files_found = 0;
    nftw(f->root, tmp_cb, 16, FTW_PHYS);
    rm_rf(f->root);
    free(f);
    assert_int_equal(tmp_files_found, 0);
    return 0;
}

static int put(struct gfs_objstore *st, const char *key, const char *s)
{
    return st->ops->put(st, key, s, strlen(s), 0, NULL);
}

static void assert_content(struct gfs_objstore *st, const char *key, const char *want)
{
    void *buf = NULL;
    size_t len = 0;
    struct gfs_obj_info info;
    assert_int_equal(st->ops->get(st, key, 1 << 20, &buf, &len, &info), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
    assert_int_equal(info.size, len);
    free(buf);
}

static void test_basic(void **state)
{
    struct fixture *f = *state;
    struct gfs_objstore *st = f->st;
    assert_int_equal(put(st, "nbd/vm1/volume.json", "{\"v\":1}"), 0);
    assert_content(st, "nbd/vm1/volume.json", "{\"v\":1}");

    /* The file is where the key says. */
    char path[512];
    snprintf(path, sizeof(path), "%s/nbd/vm1/volume.json", f->root);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 7);

    struct gfs_obj_info h1, h2, g;
    assert_int_equal(st->ops->head(st, "nbd/vm1/volume.json", &h1), 0);
    assert_int_equal(h1.size, 7);
    assert_true(h1.etag[0] != '\0');
    void *buf;
    size_t len;
    assert_int_equal(st->ops->get(st, "nbd/vm1/volume.json", 100, &buf, &len, &g), 0);
    free(buf);
    assert_string_equal(h1.etag, g.etag);
    assert_int_equal(st->ops->head(st, "nbd/vm1/volume.json", NULL), 0);

    /* Replacing, even with the same bytes, changes the ETag. */
    assert_int_equal(put(st, "nbd/vm1/volume.json", "{\"v\":1}"), 0);
    assert_int_equal(st->ops->head(st, "nbd/vm1/volume.json", &h2), 0);
    assert_string_not_equal(h1.etag, h2.etag);
    assert_int_equal(put(st, "nbd/vm1/volume.json", "{\"v\":2}"), 0);
    assert_content(st, "nbd/vm1/volume.json", "{\"v\":2}");

    /* Ranged reads. */
    assert_int_equal(put(st, "r", "0123456789"), 0);
    char rb[32];
    size_t got = 99;
    assert_int_equal(st->ops->get_range(st, "r", 3, 4, rb, &got), 0);
    assert_int_equal(got, 4);
    assert_memory_equal(rb, "3456", 4);
    assert_int_equal(st->ops->get_range(st, "r", 8, 10, rb, &got), 0);
    assert_int_equal(got, 2);
    assert_memory_equal(rb, "89", 2);
    assert_int_equal(st->ops->get_range(st, "r", 10, 10, rb, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(st->ops->get_range(st, "r", 1000, 10, rb, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(st->ops->get_range(st, "r", 0, 0, rb, &got), -EINVAL);

    /* max_len */
    assert_int_equal(st->ops->get(st, "r", 9, &buf, &len, NULL), -EFBIG);
    assert_null(buf);
    assert_int_equal(st->ops->get(st, "r", 10, &buf, &len, NULL), 0);
    assert_int_equal(len, 10);
    free(buf);

    /* Empty objects exist and read back empty. */
    assert_int_equal(st->ops->put(st, "empty", NULL, 0, 0, NULL), 0);
    assert_int_equal(st->ops->get(st, "empty", 0, &buf, &len, &g), 0);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(g.size, 0);
    free(buf);

    /* Missing objects. */
    assert_int_equal(st->ops->get(st, "nope", 100, &buf, &len, NULL), -ENOENT);
    assert_int_equal(st->ops->get(st, "no/such/dir/x", 100, &buf, &len, NULL), -ENOENT);
    assert_int_equal(st->ops->head(st, "nope", &g), -ENOENT);
    assert_int_equal(st->ops->get_range(st, "nope", 0, 1, rb, &got), -ENOENT);
    /* A prefix directory is not an object; a file is not a directory. */
    assert_int_equal(st->ops->get(st, "nbd/vm1", 100, &buf, &len, NULL), -ENOENT);
    assert_int_equal(st->ops->head(st, "nbd", &g), -ENOENT);
    assert_int_equal(st->ops->get(st, "r/x", 100, &buf, &len, NULL), -ENOENT);

    /* Delete: missing is success, and it is gone afterwards. */
    assert_int_equal(st->ops->del(st, "r"), 0);
    assert_int_equal(st->ops->get(st, "r", 100, &buf, &len, NULL), -ENOENT);
    assert_int_equal(st->ops->del(st, "r"), 0);
    assert_int_equal(st->ops->del(st, "no/such/dir/x"), 0);
    assert_int_equal(st->ops->del(st, "nbd/vm1"), 0); /* a directory: no such object */
    assert_content(st, "nbd/vm1/volume.json", "{\"v\":2}");

    /* A key that names an existing prefix directory cannot be written, nor
     * one below an existing object; both are store errors, not "missing". */
    assert_int_equal(put(st, "nbd/vm1", "x"), -EIO);
    assert_int_equal(put(st, "empty/below", "x"), -EIO);
    assert_int_equal(put(st, "empty/deeper/below", "x"), -EIO);

    struct gfs_objstore_stats *s = &st->stats;
    assert_true(s->puts >= 5 && s->gets >= 5 && s->heads >= 3 && s->deletes >= 4);
    assert_true(s->put_bytes >= 28 && s->get_bytes >= 20);
    assert_true(s->errors >= 1);
}

static void test_conditional(void **state)
{
    struct fixture *f = *state;
    struct gfs_objstore *st = f->st;
    assert_int_equal(st->ops->put(st, "nbd/v/seg/1", "a", 1, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    assert_int_equal(st->ops->put(st, "nbd/v/seg/1", "b", 1, GFS_PUT_IF_NONE_MATCH, NULL),
                     -EEXIST);
    assert_content(st, "nbd/v/seg/1", "a");

    struct gfs_obj_info a, b;
    assert_int_equal(put(st, "nbd/v/lease", "node1"), 0);
    assert_int_equal(st->ops->head(st, "nbd/v/lease", &a), 0);
    assert_int_equal(st->ops->put(st, "nbd/v/lease", "node2", 5, 0, a.etag), 0);
    assert_content(st, "nbd/v/lease", "node2");
    /* a.etag is stale now. */
    assert_int_equal(st->ops->put(st, "nbd/v/lease", "node3", 5, 0, a.etag), -ECANCELED);
    assert_content(st, "nbd/v/lease", "node2");
    assert_int_equal(st->ops->put(st, "nbd/v/lease", "node3", 5, 0, "garbage"), -ECANCELED);
    assert_int_equal(st->ops->put(st, "nbd/v/lease", "node3", 5, 0, ""), -ECANCELED);
    assert_int_equal(st->ops->head(st, "nbd/v/lease", &b), 0);
    assert_int_equal(st->ops->put(st, "nbd/v/lease", "node3", 5, 0, b.etag), 0);
    /* if_match on a missing key does not match. */
    assert_int_equal(st->ops->put(st, "nbd/v/none", "x", 1, 0, b.etag), -ECANCELED);
    assert_int_equal(st->ops->head(st, "nbd/v/none", &a), -ENOENT);
    /* Both conditions at once, and unknown flags, are refused. */
    assert_int_equal(st->ops->put(st, "nbd/v/x", "x", 1, GFS_PUT_IF_NONE_MATCH, b.etag), -EINVAL);
    assert_int_equal(st->ops->put(st, "nbd/v/x", "x", 1, 0x80, NULL), -EINVAL);
    /* After a delete, IF_NONE_MATCH creates again. */
    assert_int_equal(st->ops->del(st, "nbd/v/seg/1"), 0);
    assert_int_equal(st->ops->put(st, "nbd/v/seg/1", "c", 1, GFS_PUT_IF_NONE_MATCH, NULL), 0);
    assert_content(st, "nbd/v/seg/1", "c");
}

static void test_hostile_keys(void **state)
{
    struct fixture *f = *state;
    struct gfs_objstore *st = f->st;
    char longkey[1100], longcomp[300];
    memset(longkey, 'k', 1025);
    longkey[1025] = '\0';
    memset(longcomp, 'c', 256);
    longcomp[256] = '\0';
    const char *bad[] = {
        "", "/abs", "/", "a//b", "a/", "../x", "a/../b", "a/..", "..", ".", "./a", "a/./b",
        "..a", "a..b", ".hidden", "a/.tmp.123", "a/.lock", "a\nb", "a\rb", "a\x01", "\x1f",
        "a\x7f", "a\tb", longkey, longcomp, "nbd//vm", "nbd/vm/", NULL,
    };
    char buf[16];
    void *out;
    size_t len, got;
    struct gfs_obj_info info;
    for (int i = 0; bad[i]; i++) {
        const char *k = bad[i];
        if (st->ops->put(st, k, "x", 1, 0, NULL) != -EINVAL)
            fail_msg("put accepted key \"%s\"", k);
        assert_int_equal(st->ops->put(st, k, "x", 1, GFS_PUT_IF_NONE_MATCH, NULL), -EINVAL);
        assert_int_equal(st->ops->get(st, k, 10, &out, &len, &info), -EINVAL);
        assert_int_equal(st->ops->get_range(st, k, 0, 1, buf, &got), -EINVAL);
        assert_int_equal(st->ops->head(st, k, &info), -EINVAL);
        assert_int_equal(st->ops->del(st, k), -EINVAL);
    }
    assert_int_equal(st->ops->put(st, NULL, "x", 1, 0, NULL), -EINVAL);
    assert_int_equal(st->ops->get(st, NULL, 10, &out, &len, &info), -EINVAL);
    assert_int_equal(st->ops->del(st, NULL), -EINVAL);

    /* Nothing was created outside (or inside) the root. */
    char path[512];
    snprintf(path, sizeof(path), "%s/../x", f->root);
    assert_int_equal(access(path, F_OK), -1);

    /* Longest legal key works. */
    char okkey[1100];
    size_t n = 0;
    while (n + 101 < 1024) {
        memset(okkey + n, 'p', 100);
        okkey[n + 100] = '/';
        n += 101;
    }
    memset(okkey + n, 'z', 1024 - n);
    okkey[1024] = '\0';
    assert_int_equal(put(st, okkey, "long"), 0);
    assert_content(st, okkey, "long");

    /* Bad list prefixes. */
    static const char *bad_prefix[] = { "/", "/a", "a//", "..", "../", "a/../", ".t", "a/.t",
                                        "\x01", NULL };
    for (int i = 0; bad_prefix[i]; i++)
        if (st->ops->list(st, bad_prefix[i], NULL, NULL, NULL) != -EINVAL)
            fail_msg("list accepted prefix \"%s\"", bad_prefix[i]);
}

/* ---- listing ---- */

struct collected {
    char **keys;
    uint64_t *sizes;
    size_t n, cap;
    size_t stop_after; /* 0: never stop */
};

static int collect_cb(void *arg, const char *key, uint64_t size)
{
    struct collected *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->keys = realloc(c->keys, c->cap * sizeof(*c->keys));
        c->sizes = realloc(c->sizes, c->cap * sizeof(*c->sizes));
        assert_true(c->keys && c->sizes);
    }
    c->keys[c->n] = strdup(key);
    c->sizes[c->n] = size;
    c->n++;
    if (c->stop_after && c->n == c->stop_after)
        return 42;
    return 0;
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->keys[i]);
    free(c->keys);
    free(c->sizes);
    memset(c, 0, sizeof(*c));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expected listing from a reference set of keys. */
static void expect_list(struct gfs_objstore *st, char **all, size_t nall, const char *prefix,
                        const char *start_after)
{
    struct collected c = { 0 };
    assert_int_equal(st->ops->list(st, prefix, start_after, collect_cb, &c), 0);
    size_t k = 0;
    for (size_t i = 0; i < nall; i++) {
        if (strncmp(all[i], prefix, strlen(prefix)) != 0)
            continue;
        if (start_after && strcmp(all[i], start_after) <= 0)
            continue;
        if (k >= c.n || strcmp(c.keys[k], all[i]) != 0)
            fail_msg("list(\"%s\", \"%s\"): item %zu is \"%s\", want \"%s\"", prefix,
                     start_after ? start_after : "(null)", k, k < c.n ? c.keys[k] : "(end)",
                     all[i]);
        assert_int_equal(c.sizes[k], strlen(all[i]));
        k++;
    }
    if (k != c.n)
        fail_msg("list(\"%s\", \"%s\"): %zu extra items, first \"%s\"", prefix,
                 start_after ? start_after : "(null)", c.n - k, c.keys[k]);
    collected_free(&c);
}

static void test_list_order(void **state)
{
    struct fixture *f = *state;
    struct gfs_objstore *st = f->st;
    /* Chosen so per-directory order differs from lexical order of keys:
     * '-' (0x2d) < '.' < '/' (0x2f) < '0'. */
    const char *keys[] = {
        "nbd/vm1/seg/0000000000000001-0000000000000002",
        "nbd/vm1/seg/0000000000000001-0000000000000001",
        "nbd/vm1/seg/0000000000000002-0000000000000000",
        "nbd/vm1/volume.json",
        "nbd/vm1/manifest/0000000000000001-0000000000000001",
        "nbd/vm1/lease",
        "nbd/vm10/volume.json",
        "nbd/vm1-x/volume.json",
        "nbd/vm1.y/volume.json",
        "nbd/vm2/lease",
        "nbd/vm1x",
        "top",
        "a/b/c/d/e",
        "a/b-c",
        "a/b.c",
        "a/b0",
    };
    size_t n = sizeof(keys) / sizeof(keys[0]);
    char *sorted[32];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(put(st, keys[i], keys[i]), 0); /* size = strlen(key) */
        sorted[i] = (char *)keys[i];
    }
    qsort(sorted, n, sizeof(sorted[0]), cmp_str);

    /* Junk in the tree that must never be listed. */
    char path[600];
    snprintf(path, sizeof(path), "%s/nbd/vm1/.tmp.leftover", f->root);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/nbd/vm1/bad\nname", f->root);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/nbd/vm1/link", f->root);
    assert_int_equal(symlink("volume.json", path), 0);
    snprintf(path, sizeof(path), "%s/nbd/emptydir", f->root);
    assert_int_equal(mkdir(path, 0755), 0);

    const char *prefixes[] = { "", "nbd/", "nbd/vm1", "nbd/vm1/", "nbd/vm1/seg/", "nbd/vm1/s",
                               "a/b", "a/", "nope/", "nbd/vm1/volume.json", "t", "z", NULL };
    for (int p = 0; prefixes[p]; p++) {
        expect_list(st, sorted, n, prefixes[p], NULL);
        for (size_t i = 0; i < n; i++)
            expect_list(st, sorted, n, prefixes[p], sorted[i]);
        const char *afters[] = { "", "a", "nbd/vm1", "nbd/vm1/", "nbd/vm1/seg", "nbd/vm1/sef~",
                                 "nbd/vm1/t", "nbd/vm1-", "nbd/vm1/seg/0000000000000001-",
                                 "zzz", "a/b/c/", NULL };
        for (int a = 0; afters[a]; a++)
            expect_list(st, sorted, n, prefixes[p], afters[a]);
    }

    /* NULL prefix is the whole store. */
    expect_list(st, sorted, n, "", NULL);
    struct collected c = { 0 };
    assert_int_equal(st->ops->list(st, NULL, NULL, collect_cb, &c), 0);
    assert_int_equal(c.n, n);
    collected_free(&c);

    /* The callback can stop the listing; its value comes back. */
    c.stop_after = 3;
    assert_int_equal(st->ops->list(st, "", NULL, collect_cb, &c), 42);
    assert_int_equal(c.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(c.keys[i], sorted[i]);
    collected_free(&c);
    assert_true(st->stats.lists > 0);

    /* Remove the junk again so teardown's temp-file check is about us. */
    snprintf(path, sizeof(path), "%s/nbd/vm1/.tmp.leftover", f->root);
    assert_int_equal(unlink(path), 0);
}

static void test_list_random(void **state)
{
    struct fixture *f = *state;
    struct gfs_objstore *st = f->st;
    static const char *parts[] = { "a", "b", "a-b", "a.b", "a0", "ab", "b~", "Z", "0", "-" };
    size_t nparts = sizeof(parts) / sizeof(parts[0]);
    char *keys[400];
    size_t n = 0;
    for (int t = 0; t < 400; t++) {
        char key[128] = "";
        int depth = 1 + (int)(rng() % 4);
        for (int d = 0; d < depth; d++) {
            if (d)
                strcat(key, "/");
            strcat(key, parts[rng() % nparts]);
        }
        /* Leaf names get a suffix so a file never sits where a dir is. */
        strcat(key, "!");
        int dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= strcmp(keys[i], key) == 0;
        if (dup)
            continue;
        assert_int_equal(put(st, key, key), 0);
        keys[n++] = strdup(key);
    }
    qsort(keys, n, sizeof(keys[0]), cmp_str);
    for (int t = 0; t < 300; t++) {
        char prefix[128] = "", after[128];
        const char *src = keys[rng() % n];
        size_t plen = rng() % (strlen(src) + 1);
        memcpy(prefix, src, plen);
        prefix[plen] = '\0';
        const char *asrc = keys[rng() % n];
        size_t alen = rng() % (strlen(asrc) + 1);
        memcpy(after, asrc, alen);
        after[alen] = '\0';
        expect_list(st, keys, n, prefix, t % 3 ? after : NULL);
    }
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
}

/* ---- concurrency ---- */

struct conc {
    struct gfs_objstore *st;
    int id;
    int done; /* atomic */
    int bad;  /* atomic */
    int created; /* atomic */
    pthread_barrier_t *barrier;
};

/* Object whose every byte depends on (seed, len): a torn or mixed object
 * cannot pass check_obj. */
static size_t make_obj(uint8_t *buf, uint64_t seed, size_t len)
{
    gfs_le64_put(buf, len);
    gfs_le64_put(buf + 8, seed);
    uint64_t s = seed | 1;
    for (size_t i = 16; i < len; i++)
        buf[i] = (uint8_t)rng_next(&s);
    return len;
}

static int check_obj(const uint8_t *buf, size_t len)
{
    if (len < 16 || gfs_le64_get(buf) != len)
        return 0;
    uint64_t s = gfs_le64_get(buf + 8) | 1;
    for (size_t i = 16; i < len; i++)
        if (buf[i] != (uint8_t)rng_next(&s))
            return 0;
    return 1;
}

static void *writer_distinct(void *arg)
{
    struct conc *c = arg;
    uint8_t buf[5000];
    for (int i = 0; i < 40; i++) {
        char key[64];
        snprintf(key, sizeof(key), "nbd/t%d/seg/%04d", c->id % 3, c->id * 1000 + i);
        size_t len = make_obj(buf, (uint64_t)c->id * 1000 + (uint64_t)i, 16 + (size_t)i * 100);
        if (c->st->ops->put(c->st, key, buf, len, GFS_PUT_IF_NONE_MATCH, NULL) != 0)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_concurrent_distinct(void **state)
{
    struct fixture *f = *state;
    enum { T = 8 };
    pthread_t th[T];
    struct conc c[T];
    for (int i = 0; i < T; i++) {
        c[i] = (struct conc){ .st = f->st, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, writer_distinct, &c[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].bad, 0);
    }
    for (int i = 0; i < T; i++)
        for (int k = 0; k < 40; k++) {
            char key[64];
            snprintf(key, sizeof(key), "nbd/t%d/seg/%04d", i % 3, i * 1000 + k);
            void *buf;
            size_t len;
            assert_int_equal(f->st->ops->get(f->st, key, 1 << 20, &buf, &len, NULL), 0);
            assert_true(check_obj(buf, len));
            assert_int_equal(gfs_le64_get((uint8_t *)buf + 8), (uint64_t)i * 1000 + (uint64_t)k);
            free(buf);
        }
    struct collected col = { 0 };
    assert_int_equal(f->st->ops->list(f->st, "nbd/", NULL, collect_cb, &col), 0);
    assert_int_equal(col.n, T * 40);
    collected_free(&col);
}

static void *writer_same(void *arg)
{
    struct conc *c = arg;
    uint8_t *buf = malloc(70000);
    uint64_t s = 77 + (uint64_t)c->id;
    for (int i = 0; i < 60; i++) {
        size_t len = 16 + rng_next(&s) % 65000;
        make_obj(buf, rng_next(&s), len);
        if (c->st->ops->put(c->st, "nbd/same/obj", buf, len, 0, NULL) != 0)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
    }
    free(buf);
    return NULL;
}

static void *reader_same(void *arg)
{
    struct conc *c = arg;
    int reads = 0;
    /* Keep reading until the writers are done, and at least a few times. */
    while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) || reads < 10) {
        void *buf;
        size_t len;
        struct gfs_obj_info info;
        int r = c->st->ops->get(c->st, "nbd/same/obj", 1 << 20, &buf, &len, &info);
        if (r != 0 || !check_obj(buf, len) || info.size != len)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
        if (r == 0)
            free(buf);
        uint8_t head[16];
        size_t got;
        r = c->st->ops->get_range(c->st, "nbd/same/obj", 0, 16, head, &got);
        if (r != 0 || got != 16)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
        reads++;
    }
    return NULL;
}

static void test_concurrent_same_key(void **state)
{
    struct fixture *f = *state;
    uint8_t first[100];
    make_obj(first, 1, sizeof(first));
    assert_int_equal(f->st->ops->put(f->st, "nbd/same/obj", first, sizeof(first), 0, NULL), 0);
    enum { W = 4, R = 3 };
    pthread_t wt[W], rt[R];
    struct conc wc[W], rc[R];
    for (int i = 0; i < R; i++) {
        rc[i] = (struct conc){ .st = f->st, .id = i };
        assert_int_equal(pthread_create(&rt[i], NULL, reader_same, &rc[i]), 0);
    }
    for (int i = 0; i < W; i++) {
        wc[i] = (struct conc){ .st = f->st, .id = i };
        assert_int_equal(pthread_create(&wt[i], NULL, writer_same, &wc[i]), 0);
    }
    for (int i = 0; i < W; i++) {
        pthread_join(wt[i], NULL);
        assert_int_equal(wc[i].bad, 0);
    }
    for (int i = 0; i < R; i++)
        __atomic_store_n(&rc[i].done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < R; i++) {
        pthread_join(rt[i], NULL);
        assert_int_equal(rc[i].bad, 0);
    }
}

/* Compare-and-swap increments of a counter: none may be lost. */
static void *cas_incrementer(void *arg)
{
    struct conc *c = arg;
    for (int i = 0; i < 25; i++) {
        for (;;) {
            void *buf;
            size_t len;
            struct gfs_obj_info info;
            if (c->st->ops->get(c->st, "nbd/cas/counter", 64, &buf, &len, &info) != 0) {
                __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
                return NULL;
            }
            char text[32];
            memcpy(text, buf, len < sizeof(text) - 1 ? len : sizeof(text) - 1);
            text[len < sizeof(text) - 1 ? len : sizeof(text) - 1] = '\0';
            free(buf);
            snprintf(text, sizeof(text), "%ld", strtol(text, NULL, 10) + 1);
            int r = c->st->ops->put(c->st, "nbd/cas/counter", text, strlen(text), 0, info.etag);
            if (r == 0)
                break;
            if (r != -ECANCELED) {
                __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
                return NULL;
            }
        }
    }
    return NULL;
}

static void test_concurrent_cas(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(put(f->st, "nbd/cas/counter", "0"), 0);
    enum { T = 6 };
    pthread_t th[T];
    struct conc c[T];
    for (int i = 0; i < T; i++) {
        c[i] = (struct conc){ .st = f->st, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, cas_incrementer, &c[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].bad, 0);
    }
    char want[16];
    snprintf(want, sizeof(want), "%d", T * 25);
    assert_content(f->st, "nbd/cas/counter", want);
}

static void *creator(void *arg)
{
    struct conc *c = arg;
    char val[16];
    snprintf(val, sizeof(val), "%d", c->id);
    pthread_barrier_wait(c->barrier);
    for (int round = 0; round < 20; round++) {
        char key[64];
        snprintf(key, sizeof(key), "nbd/race/%02d", round);
        int r = c->st->ops->put(c->st, key, val, strlen(val), GFS_PUT_IF_NONE_MATCH, NULL);
        if (r == 0)
            __atomic_fetch_add(&c->created, 1, __ATOMIC_RELAXED);
        else if (r != -EEXIST)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_concurrent_create(void **state)
{
    struct fixture *f = *state;
    enum { T = 6 };
    pthread_t th[T];
    struct conc c[T];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, T);
    for (int i = 0; i < T; i++) {
        c[i] = (struct conc){ .st = f->st, .id = i, .barrier = &bar };
        assert_int_equal(pthread_create(&th[i], NULL, creator, &c[i]), 0);
    }
    int created = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].bad, 0);
        created += c[i].created;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(created, 20); /* exactly one winner per key */
}

/* ---- opening ---- */

/* Files under dir, as "name=content" lines sorted by nftw's walk. */
static char walked[8192];

static int walk_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    size_t n = strlen(walked);
    if (flag == FTW_F && S_ISREG(sb->st_mode)) {
        FILE *fp = fopen(path, "r");
        char c[64] = "";
        if (fp) {
            size_t got = fread(c, 1, sizeof c - 1, fp);
            c[got] = 0;
            fclose(fp);
        }
        snprintf(walked + n, sizeof walked - n, "%s=%s\n", path, c);
    } else {
        snprintf(walked + n, sizeof walked - n, "%s\n", path);
    }
    return 0;
}

static void snapshot_tree(const char *dir, char *out, size_t len)
{
    walked[0] = 0;
    nftw(dir, walk_cb, 16, FTW_PHYS);
    snprintf(out, len, "%s", walked);
}

struct seen {
    int n, outside;
};

static int count_keys(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct seen *s = arg;
    s->n++;
    if (strstr(key, "evil") || strstr(key, "victim"))
        s->outside++;
    return 0;
}

/* Links planted in the store never lead the store out of it (issue 21
 * item 2): not on put (no directory made, no object written there), get,
 * head, list or delete, whether the link is a whole volume's directory, a
 * directory inside one, or the store's top level. A link in place of an
 * object is no object, and replacing or deleting it touches only the link. */
static void test_symlinks(void **state)
{
    struct fixture *f = *state;
    struct gfs_objstore *st = f->st;
    char out[300], p[600], p2[600], before[8192], after[8192];
    snprintf(out, sizeof out, "%s-outside", f->root);
    rm_rf(out);
    assert_int_equal(mkdir(out, 0700), 0);
    snprintf(p, sizeof p, "%s/victim", out);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("precious", fp);
    fclose(fp);
    snprintf(p, sizeof p, "%s/sub", out);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/victim2", out);
    fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("precious too", fp);
    fclose(fp);
    snapshot_tree(out, before, sizeof before);

    /* nbd/evil -> outside; nbd/vol/seg -> outside; top -> outside */
    assert_int_equal(put(st, "nbd/vol/volume.json", "{}"), 0);
    snprintf(p, sizeof p, "%s/nbd/evil", f->root);
    assert_int_equal(symlink(out, p), 0);
    snprintf(p, sizeof p, "%s/nbd/vol/seg", f->root);
    assert_int_equal(symlink(out, p), 0);
    snprintf(p, sizeof p, "%s/top", f->root);
    assert_int_equal(symlink(out, p), 0);
    snprintf(p, sizeof p, "%s/nbd/vol/lease", f->root);
    snprintf(p2, sizeof p2, "%s/victim", out);
    assert_int_equal(symlink(p2, p), 0);

    static const char *const keys[] = {
        "nbd/evil/volume.json", "nbd/evil/victim", "nbd/evil/sub/victim2", "nbd/evil/seg/x",
        "nbd/vol/seg/victim", "nbd/vol/seg/sub/victim2", "nbd/vol/seg/0000-0001",
        "top/victim", "top/sub/new",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *k = keys[i];
        void *buf = NULL;
        size_t len = 0;
        struct gfs_obj_info info;
        uint8_t b[16];
        size_t got = 0;
        if (put(st, k, "pwned") == 0)
            fail_msg("put %s went through a link", k);
        if (st->ops->put(st, k, "x", 1, GFS_PUT_IF_NONE_MATCH, NULL) == 0)
            fail_msg("conditional put %s went through a link", k);
        if (st->ops->get(st, k, 100, &buf, &len, &info) == 0)
            fail_msg("get %s read through a link", k);
        free(buf);
        if (st->ops->get_range(st, k, 0, sizeof b, b, &got) == 0)
            fail_msg("get_range %s read through a link", k);
        if (st->ops->head(st, k, &info) == 0)
            fail_msg("head %s went through a link", k);
        if (st->ops->del(st, k) == 0)
            fail_msg("delete %s went through a link", k);
    }
    static const char *const prefixes[] = {"", "nbd/", "nbd/evil/", "nbd/evil", "nbd/vol/",
                                           "nbd/vol/seg/", "top/", "top/sub/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        struct seen sn = {0, 0};
        st->ops->list(st, prefixes[i], NULL, count_keys, &sn);
        if (sn.outside)
            fail_msg("list \"%s\" listed %d keys through a link", prefixes[i], sn.outside);
    }
    /* what is really in the store still works, the link in place of an
     * object is no object, and replacing or deleting it leaves its target */
    assert_content(st, "nbd/vol/volume.json", "{}");
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(st->ops->get(st, "nbd/vol/lease", 100, &buf, &len, NULL), -ENOENT);
    assert_int_equal(put(st, "nbd/vol/lease", "mine"), 0);
    assert_content(st, "nbd/vol/lease", "mine");
    assert_int_equal(st->ops->del(st, "nbd/vol/lease"), 0);

    snapshot_tree(out, after, sizeof after);
    assert_string_equal(before, after);
    rm_rf(out);
}

/* Objects 0600, directories 0700, whatever the umask (issue 21 item 3). */
static void test_modes(void **state)
{
    struct fixture *f = *state;
    mode_t old = umask(0);
    assert_int_equal(put(f->st, "nbd/m1/seg/0000000000000001-0000000000000001", "data"), 0);
    assert_int_equal(f->st->ops->put(f->st, "nbd/m1/lease", "l", 1, GFS_PUT_IF_NONE_MATCH, NULL),
                     0);
    umask(old);
    static const char *const paths[] = {"nbd", "nbd/m1", "nbd/m1/seg",
                                        "nbd/m1/seg/0000000000000001-0000000000000001",
                                        "nbd/m1/lease"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char p[600];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", f->root, paths[i]);
        assert_int_equal(lstat(p, &sb), 0);
        unsigned want = S_ISDIR(sb.st_mode) ? 0700 : 0600;
        if ((sb.st_mode & 07777) != want)
            fail_msg("%s has mode %o, want %o", paths[i], sb.st_mode & 07777, want);
    }
}

static void test_open(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct gfs_objstore *st = (void *)1;
    assert_int_equal(gfs_objstore_file_open("relative/dir", NULL, &st, err, sizeof(err)), -EINVAL);
    assert_null(st);
    assert_true(strlen(err) > 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/missing", f->root);
    assert_int_equal(gfs_objstore_file_open(path, NULL, &st, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(gfs_objstore_file_open(path, NULL, &st, NULL, 0), -ENOENT);

    struct glidefs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    char url[500];
    snprintf(url, sizeof(url), "file://%s/made/by/open/", f->root);
    cfg.storage_url = url;
    assert_int_equal(gfs_objstore_open(&cfg, NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(put(st, "k", "v"), 0);
    gfs_objstore_close(st);
    snprintf(path, sizeof(path), "%s/made/by/open/k", f->root);
    assert_int_equal(access(path, F_OK), 0);
    /* Opening an existing one works too. */
    assert_int_equal(gfs_objstore_open(&cfg, NULL, &st, err, sizeof(err)), 0);
    assert_content(st, "k", "v");
    gfs_objstore_close(st);

    static const char *bad_urls[] = { "file://relative", "file://", "http://example/x",
                                      "ftp://x", "/plain/path", "", "s4://bucket", NULL };
    for (int i = 0; bad_urls[i]; i++) {
        cfg.storage_url = (char *)bad_urls[i];
        err[0] = '\0';
        st = (void *)1;
        if (gfs_objstore_open(&cfg, NULL, &st, err, sizeof(err)) != -EINVAL)
            fail_msg("url \"%s\" accepted", bad_urls[i]);
        assert_null(st);
        assert_true(strlen(err) > 0);
    }
    cfg.storage_url = NULL;
    assert_int_equal(gfs_objstore_open(&cfg, NULL, &st, err, sizeof(err)), -EINVAL);
    assert_int_equal(gfs_objstore_open(NULL, NULL, &st, err, sizeof(err)), -EINVAL);
    /* The secret-looking part of a bad URL is not echoed. */
    cfg.storage_url = "https://AKIDEXAMPLE:secret@host/x";
    assert_int_equal(gfs_objstore_open(&cfg, NULL, &st, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks, setup_walk, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup_walk, teardown),
        cmocka_unit_test_setup_teardown(test_basic, setup_walk, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_keys, setup_walk, teardown),
        cmocka_unit_test_setup_teardown(test_list_random, setup_walk, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create, setup_walk, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
