/*
 * test_compact.c — storage efficiency: a random overwrite workload leaves
 * dead bytes; compaction rewrites sparse segments and deletes what nothing
 * references (no unreferenced segment left in the store, counted from
 * outside), the data reads back byte-exact before and after wake on an
 * empty cache; TRIM of the whole volume brings stored bytes to ~zero; and
 * kill -9 at random points during compaction never loses a block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"

#define SZ (16u << 20)

static glidefs_config *ccfg(const struct tu_env *e)
{
    glidefs_config *c = tu_config(e, "64M", "100000");
    tu_set(c, "compaction.min_live_pct", "90");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    tu_set(c, "compaction.keep_manifests", "1");
    return c;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void overwrite(glidefs_volume *v, uint8_t *ref, uint64_t *s, int rounds)
{
    uint8_t *buf = malloc(1 << 20);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 40; i++) {
            uint64_t len = 4096u << (tu_rand(s) % 9); /* 4 KiB .. 1 MiB */
            uint64_t off = (tu_rand(s) % ((SZ - len) / 4096)) * 4096;
            for (uint64_t k = 0; k < len; k += 8) {
                uint64_t x = tu_rand(s);
                memcpy(buf + k, &x, 8);
            }
            assert_int_equal(glidefs_pwrite(v, buf, len, off, 0), 0);
            memcpy(ref + off, buf, len);
        }
        assert_int_equal(glidefs_drain(v, -1), 0);
    }
    free(buf);
}

static void verify(glidefs_volume *v, const uint8_t *ref)
{
    uint8_t *buf = malloc(SZ);
    assert_int_equal(glidefs_pread(v, buf, SZ, 0), 0);
    if (memcmp(buf, ref, SZ) != 0)
        fail_msg("volume differs from the model");
    free(buf);
}

static void test_overwrite_then_compact(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "compact");
    if (strncmp(env.url, "file://", 7) != 0)
        skip();
    glidefs_config *c = ccfg(&env);
    uint8_t *ref = calloc(1, SZ);
    uint64_t s = 4242;
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "vol", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    overwrite(v, ref, &s, 12);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    fprintf(stderr, "before: stored %llu live %llu segments %llu\n",
            (unsigned long long)st.stored_bytes, (unsigned long long)st.live_bytes,
            (unsigned long long)st.segments);
    assert_true(st.stored_bytes > st.live_bytes * 11 / 10); /* overwrites left garbage */
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    fprintf(stderr, "compact: rewrote %llu segments (%llu bytes), deleted %llu (%llu bytes); "
            "stored %llu live %llu\n", (unsigned long long)res.segments_rewritten,
            (unsigned long long)res.bytes_rewritten, (unsigned long long)res.segments_deleted,
            (unsigned long long)res.bytes_reclaimed, (unsigned long long)res.stored_bytes,
            (unsigned long long)res.live_bytes);
    assert_true(res.segments_deleted > 0);
    assert_true(res.stored_bytes <= res.live_bytes * 115 / 100 + 64 * 1024);
    verify(v, ref);
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    char segdir[600];
    snprintf(segdir, sizeof segdir, "%s/nbd/vol/seg", env.store);
    /* every segment object in the store is one the volume references */
    assert_int_equal(count_files(segdir), (int)st.segments);
    char mandir[600];
    snprintf(mandir, sizeof mandir, "%s/nbd/vol/manifest", env.store);
    /* keep_manifests 1: the newest and the links of its chain (design.md 4.6) */
    assert_true(st.manifest_chain >= 1);
    assert_int_equal(count_files(mandir), (int)st.manifest_chain);
    assert_int_equal(glidefs_volume_close(v), 0);

    /* wake on an empty cache: same bytes, and nothing the map leaves out */
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "vol", 0, 0, &v), 0);
    verify(v, ref);
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_int_equal(count_files(segdir), (int)st.segments);

    /* TRIM everything: after compaction the store holds ~nothing */
    assert_int_equal(glidefs_trim(v, 0, SZ, 0), 0);
    memset(ref, 0, SZ);
    assert_int_equal(glidefs_drain(v, -1), 0);
    assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    fprintf(stderr, "after trim: stored %llu live %llu segments %llu\n",
            (unsigned long long)st.stored_bytes, (unsigned long long)st.live_bytes,
            (unsigned long long)st.segments);
    assert_true(st.stored_bytes < 64 * 1024);
    assert_int_equal(count_files(segdir), (int)st.segments);
    int is_hole = 0;
    assert_int_equal(glidefs_block_status(v, 0, SZ, &is_hole), SZ);
    assert_int_equal(is_hole, 1);
    verify(v, ref);
    assert_int_equal(glidefs_volume_close(v), 0);
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "vol", 0, 0, &v), 0);
    verify(v, ref);
    assert_int_equal(glidefs_volume_close(v), 0);
    free(ref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

static void test_kill_during_compaction(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "compactkill");
    glidefs_config *c = ccfg(&env);
    uint8_t *ref = calloc(1, SZ);
    int kills = getenv("GLIDEFS_TEST_KILLS") ? atoi(getenv("GLIDEFS_TEST_KILLS")) : 12;
    uint64_t rs = 31337;
    for (int round = 0; round < kills; round++) {
        /* the parent writes and drains: it knows exactly what the store holds */
        glidefs_volume *v;
        assert_int_equal(glidefs_volume_open(c, "vol", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
        uint64_t s = 1000 + (uint64_t)round;
        overwrite(v, ref, &s, 3);
        assert_int_equal(glidefs_volume_close(v), 0);
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            glidefs_volume *cv;
            if (glidefs_volume_open(c, "vol", 0, 0, &cv) < 0)
                _exit(2);
            char ok = 1;
            if (write(p[1], &ok, 1) != 1)
                _exit(3);
            for (;;) /* compact until killed */
                if (glidefs_compact(cv, NULL, 0) < 0)
                    _exit(4);
        }
        close(p[1]);
        char ok;
        assert_int_equal(read(p[0], &ok, 1), 1);
        close(p[0]);
        struct pollfd none = {-1, 0, 0};
        poll(&none, 0, (int)(tu_rand(&rs) % 40)); /* 0-40 ms into compaction: a random kill point */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        /* reopen (same cache), then wake on an empty cache: every block is there */
        assert_int_equal(glidefs_volume_open(c, "vol", 0, 0, &v), 0);
        verify(v, ref);
        assert_int_equal(glidefs_volume_close(v), 0);
        tu_rmrf(env.cache);
        assert_int_equal(glidefs_volume_open(c, "vol", 0, 0, &v), 0);
        verify(v, ref);
        assert_int_equal(glidefs_volume_close(v), 0);
    }
    fprintf(stderr, "kills during compaction survived: %d\n", kills);
    free(ref);
    glidefs_config_free(c);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overwrite_then_compact),
        cmocka_unit_test(test_kill_during_compaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
