/*
 * test_clone.c — snapshots and clones: a golden image cloned 20 times, each
 * clone written independently and checked against its own model while the
 * parent stays unchanged; writes after a snapshot invisible in clones of it;
 * a clone of the live state; clones of clones; deleting (purging) the parent
 * while clones live, compacting, and reading the clones back byte-exact (also
 * on an empty cache); an encrypted parent's clone opening with the same
 * password; kill -9 during clone creation leaving no clone or a whole one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

#define SZ (4u << 20)
#define NCLONES 20

/* GLIDEFS_TEST_CLONES (4..20) makes the golden-image test shorter (the rgw
 * suite's time budget); it uses clone vm03. */
static int nclones(void)
{
    const char *e = getenv("GLIDEFS_TEST_CLONES");
    int n = e ? atoi(e) : NCLONES;
    return n < 4 ? 4 : n > NCLONES ? NCLONES : n;
}

static glidefs_config *ccfg(const struct tu_env *e, const char *pw)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    tu_set(c, "compaction.min_live_pct", "90");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    if (pw)
        tu_set(c, "storage.encryption_password", pw);
    return c;
}

static void scribble(glidefs_volume *v, uint8_t *ref, uint64_t seed, int n)
{
    uint64_t s = seed;
    uint8_t buf[65536];
    for (int i = 0; i < n; i++) {
        uint64_t len = 4096u << (tu_rand(&s) % 5);
        uint64_t off = (tu_rand(&s) % ((SZ - len) / 4096)) * 4096;
        for (uint64_t k = 0; k < len; k += 8) {
            uint64_t x = tu_rand(&s);
            memcpy(buf + k, &x, 8);
        }
        assert_int_equal(glidefs_pwrite(v, buf, len, off, 0), 0);
        memcpy(ref + off, buf, len);
    }
}

static void verify(glidefs_volume *v, const uint8_t *ref, const char *what)
{
    uint8_t *buf = malloc(SZ);
    assert_int_equal(glidefs_pread(v, buf, SZ, 0), 0);
    if (memcmp(buf, ref, SZ) != 0)
        fail_msg("%s differs from its model", what);
    free(buf);
}

static void check(glidefs_config *c, const char *name, const uint8_t *ref)
{
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, name, 0, GLIDEFS_OPEN_READONLY, &v), 0);
    verify(v, ref, name);
    assert_int_equal(glidefs_volume_close(v), 0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_golden_image(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "clone");
    glidefs_config *c = ccfg(&env, NULL);
    uint8_t *gold = calloc(1, SZ), *pref = calloc(1, SZ);
    glidefs_volume *p;
    assert_int_equal(glidefs_volume_open(c, "golden", SZ, GLIDEFS_OPEN_CREATE, &p), 0);
    scribble(p, gold, 1, 200);
    assert_int_equal(glidefs_snapshot_create(p, "s1"), 0);
    assert_int_equal(glidefs_snapshot_create(p, "s1"), -EEXIST);
    memcpy(pref, gold, SZ);
    /* writes after the snapshot: invisible in its clones */
    scribble(p, pref, 2, 50);
    assert_int_equal(glidefs_drain(p, -1), 0);

    uint8_t *refs[NCLONES];
    double worst = 0;
    const int nc = nclones();
    for (int i = 0; i < nc; i++) {
        char name[32];
        snprintf(name, sizeof name, "vm%02d", i);
        double t0 = now_ms();
        assert_int_equal(glidefs_clone(p, "s1", name), 0);
        double t = now_ms() - t0;
        if (t > worst)
            worst = t;
        refs[i] = malloc(SZ);
        memcpy(refs[i], gold, SZ);
    }
    fprintf(stderr, "%d clones of a %u-byte golden image; slowest clone %.1f ms\n", nc, SZ,
            worst);
    assert_int_equal(glidefs_clone(p, "s1", "vm00"), -EEXIST);
    assert_int_equal(glidefs_clone(p, "nosuch", "vmx"), -ENOENT);
    assert_int_equal(glidefs_clone(p, "s1", "../x"), -EINVAL);
    for (int i = 0; i < nc; i++) {
        char name[32];
        snprintf(name, sizeof name, "vm%02d", i);
        glidefs_volume *v;
        assert_int_equal(glidefs_volume_open(c, name, 0, 0, &v), 0);
        verify(v, refs[i], name);
        scribble(v, refs[i], 100 + (uint64_t)i, 20);
        verify(v, refs[i], name);
        if (i % 2)
            assert_int_equal(glidefs_drain(v, -1), 0);
        assert_int_equal(glidefs_volume_close(v), 0);
    }
    verify(p, pref, "parent");
    /* a clone of the live state sees the parent's latest writes */
    assert_int_equal(glidefs_clone(p, NULL, "live"), 0);
    check(c, "live", pref);
    /* a clone of a clone */
    glidefs_volume *v3;
    assert_int_equal(glidefs_volume_open(c, "vm03", 0, 0, &v3), 0);
    assert_int_equal(glidefs_snapshot_create(v3, "t"), 0);
    assert_int_equal(glidefs_clone(v3, "t", "grandchild"), 0);
    uint8_t *gref = malloc(SZ);
    memcpy(gref, refs[3], SZ);
    scribble(v3, refs[3], 999, 10); /* after the snapshot: not in grandchild */
    assert_int_equal(glidefs_snapshot_delete(v3, "t"), -EBUSY);
    assert_int_equal(glidefs_volume_close(v3), 0);
    glidefs_volume *g;
    assert_int_equal(glidefs_volume_open(c, "grandchild", 0, 0, &g), 0);
    char lin[4][GLIDEFS_NAME_MAX + 1], snapname[64];
    assert_int_equal(glidefs_volume_lineage(g, lin, 4, snapname, sizeof snapname), 2);
    assert_string_equal(lin[0], "golden");
    assert_string_equal(lin[1], "vm03");
    assert_string_equal(snapname, "t");
    verify(g, gref, "grandchild");
    scribble(g, gref, 77, 10);
    assert_int_equal(glidefs_drain(g, -1), 0);
    assert_int_equal(glidefs_volume_close(g), 0);

    /* delete the parent while its clones live: their shared data stays */
    assert_int_equal(glidefs_snapshot_delete(p, "s1"), -EBUSY);
    assert_int_equal(glidefs_volume_close(p), 0);
    assert_int_equal(glidefs_volume_delete(c, "golden", 1), 0);
    assert_int_equal(glidefs_volume_open(c, "golden", SZ, GLIDEFS_OPEN_CREATE, &p), -ENOENT);
    /* compact the clones, wake them on an empty cache, read every byte */
    for (int i = 0; i < nc; i++) {
        char name[32];
        snprintf(name, sizeof name, "vm%02d", i);
        glidefs_volume *v;
        assert_int_equal(glidefs_volume_open(c, name, 0, 0, &v), 0);
        assert_int_equal(glidefs_drain(v, -1), 0);
        assert_int_equal(glidefs_compact(v, NULL), 0);
        assert_int_equal(glidefs_volume_close(v), 0);
    }
    tu_rmrf(env.cache);
    for (int i = 0; i < nc; i++) {
        char name[32];
        snprintf(name, sizeof name, "vm%02d", i);
        check(c, name, refs[i]);
        free(refs[i]);
    }
    check(c, "grandchild", gref);
    check(c, "live", pref);
    free(gref);
    free(gold);
    free(pref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* A key's object in the file:// store, or "" on S3 (checked through the API
 * there). */
static int store_has(const struct tu_env *e, const char *key)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", e->store, key);
    return access(path, F_OK) == 0;
}

static void fill(glidefs_volume *v, uint8_t *ref, uint8_t val)
{
    memset(ref, val, SZ);
    assert_int_equal(glidefs_pwrite(v, ref, SZ, 0, 0), 0);
    assert_int_equal(glidefs_drain(v, -1), 0);
}

/* Deleting a clone of the live state lets its parent go of what it pinned:
 * the implicit snapshot and the marker go, compaction then reclaims the old
 * data; a deleted parent kept as a tombstone for its clones goes entirely
 * (its name becomes usable again) once its last clone is deleted. */
static void test_clone_gc(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "clonegc");
    int file = strncmp(env.url, "file://", 7) == 0;
    glidefs_config *c = ccfg(&env, NULL);
    tu_set(c, "compaction.min_live_pct", "99");
    uint8_t *ref = malloc(SZ), *cref = malloc(SZ);
    glidefs_volume *p;
    assert_int_equal(glidefs_volume_open(c, "base", SZ, GLIDEFS_OPEN_CREATE, &p), 0);
    fill(p, cref, 0xa1);
    assert_int_equal(glidefs_clone(p, NULL, "c1"), 0);
    if (file) {
        assert_true(store_has(&env, "nbd/base/snap/@clone-c1"));
        assert_true(store_has(&env, "nbd/base/children/c1"));
    }
    fill(p, ref, 0xb2); /* every block overwritten: the old ones only c1 reads */
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(p, &res), 0);
    assert_true(res.stored_bytes >= 2 * (uint64_t)SZ); /* pinned for c1 */
    check(c, "c1", cref);

    assert_int_equal(glidefs_volume_delete(c, "c1", 1), 0);
    if (file) {
        assert_false(store_has(&env, "nbd/base/snap/@clone-c1"));
        assert_false(store_has(&env, "nbd/base/children/c1"));
    }
    assert_int_equal(glidefs_compact(p, &res), 0);
    fprintf(stderr, "after deleting the clone: stored %llu for %llu live\n",
            (unsigned long long)res.stored_bytes, (unsigned long long)res.live_bytes);
    assert_true(res.stored_bytes <= (uint64_t)SZ + SZ / 10);
    verify(p, ref, "base");

    /* a named snapshot's clone: the user's snapshot stays */
    assert_int_equal(glidefs_snapshot_create(p, "keep"), 0);
    assert_int_equal(glidefs_clone(p, "keep", "c2"), 0);
    assert_int_equal(glidefs_volume_delete(c, "c2", 1), 0);
    assert_int_equal(glidefs_snapshot_delete(p, "keep"), 0); /* was there, and free */

    /* parent deleted first (tombstone), then its last clone */
    assert_int_equal(glidefs_clone(p, NULL, "c3"), 0);
    assert_int_equal(glidefs_volume_close(p), 0);
    assert_int_equal(glidefs_volume_delete(c, "base", 1), 0);
    assert_int_equal(glidefs_volume_open(c, "base", SZ, GLIDEFS_OPEN_CREATE, &p), -ENOENT);
    check(c, "c3", ref);
    assert_int_equal(glidefs_volume_delete(c, "c3", 1), 0);
    if (file)
        assert_false(store_has(&env, "nbd/base/volume.json"));
    /* the name is free again: a new, empty volume */
    assert_int_equal(glidefs_volume_open(c, "base", SZ, GLIDEFS_OPEN_CREATE, &p), 0);
    memset(cref, 0, SZ);
    verify(p, cref, "a new volume of the old name");
    assert_int_equal(glidefs_volume_close(p), 0);
    free(ref);
    free(cref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

/* A clone deleted through another handle stops pinning the parent's old
 * segments without anyone asking the parent to compact: its background
 * cycle reads the snapshot list again. */
static void test_clone_gc_background(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "clonegcbg");
    glidefs_config *c = ccfg(&env, NULL);
    tu_set(c, "compaction.min_live_pct", "99");
    tu_set(c, "compaction.interval_s", "1");
    uint8_t *ref = malloc(SZ), *cref = malloc(SZ);
    glidefs_volume *p;
    assert_int_equal(glidefs_volume_open(c, "base", SZ, GLIDEFS_OPEN_CREATE, &p), 0);
    fill(p, cref, 0xa1);
    assert_int_equal(glidefs_clone(p, NULL, "c1"), 0);
    fill(p, ref, 0xb2); /* the old blocks only c1 reads */
    assert_int_equal(glidefs_drain(p, -1), 0);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(p, &st, sizeof st), 0);
    assert_true(st.stored_bytes >= 2 * (uint64_t)SZ); /* pinned for c1 */
    assert_int_equal(glidefs_volume_delete(c, "c1", 1), 0);
    struct timespec t0, now, pause = {0, 20000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do { /* polling a condition, with a deadline */
        nanosleep(&pause, NULL);
        assert_int_equal(glidefs_stats(p, &st, sizeof st), 0);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (st.stored_bytes > (uint64_t)SZ + SZ / 10 && now.tv_sec - t0.tv_sec < 120);
    fprintf(stderr, "background cycles after deleting the clone: stored %llu for %llu live\n",
            (unsigned long long)st.stored_bytes, (unsigned long long)st.live_bytes);
    assert_true(st.stored_bytes <= (uint64_t)SZ + SZ / 10);
    verify(p, ref, "base");
    assert_int_equal(glidefs_volume_close(p), 0);
    free(ref);
    free(cref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

static void test_encrypted_clone_and_crash(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "eclone");
    glidefs_config *c = ccfg(&env, "pw-clone");
    uint8_t *ref = calloc(1, SZ);
    glidefs_volume *p;
    assert_int_equal(glidefs_volume_open(c, "base", SZ, GLIDEFS_OPEN_CREATE, &p), 0);
    scribble(p, ref, 5, 100);
    assert_int_equal(glidefs_snapshot_create(p, "gold"), 0);
    assert_int_equal(glidefs_clone(p, "gold", "ec"), 0);
    check(c, "ec", ref);
    glidefs_config *bad = ccfg(&env, "wrong");
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(bad, "ec", 0, 0, &v), -EACCES);

    /* kill -9 while a clone is being made: afterwards no clone, or a whole one
     * (the cloning process is another node: its own cache dir) */
    glidefs_config *other = ccfg(&env, "pw-clone");
    char ocache[600];
    snprintf(ocache, sizeof ocache, "%s/cache-other", env.root);
    tu_set(other, "cache.dir", ocache);
    uint64_t rs = 5;
    int whole = 0, none = 0;
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "k%02d", i);
        int pp[2];
        assert_int_equal(pipe(pp), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(pp[0]);
            glidefs_volume *cp;
            if (glidefs_volume_open(other, "base", 0, GLIDEFS_OPEN_READONLY, &cp) < 0)
                _exit(2);
            char ok = 1;
            if (write(pp[1], &ok, 1) != 1)
                _exit(3);
            _exit(glidefs_clone(cp, "gold", name) == 0 ? 0 : 4);
        }
        close(pp[1]);
        char ok;
        assert_int_equal(read(pp[0], &ok, 1), 1);
        close(pp[0]);
        struct pollfd nofd = {-1, 0, 0};
        poll(&nofd, 0, (int)(tu_rand(&rs) % 30)); /* a random kill point */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        int r = glidefs_volume_open(c, name, 0, GLIDEFS_OPEN_READONLY, &v);
        if (r == -ENOENT) {
            none++;
            continue;
        }
        assert_int_equal(r, 0);
        verify(v, ref, name);
        assert_int_equal(glidefs_volume_close(v), 0);
        whole++;
    }
    fprintf(stderr, "kills during clone creation: %d left no clone, %d a whole one\n", none,
            whole);
    assert_int_equal(glidefs_volume_close(p), 0);
    free(ref);
    glidefs_config_free(c);
    glidefs_config_free(bad);
    glidefs_config_free(other);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_image),
        cmocka_unit_test(test_encrypted_clone_and_crash),
        cmocka_unit_test(test_clone_gc),
        cmocka_unit_test(test_clone_gc_background),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
