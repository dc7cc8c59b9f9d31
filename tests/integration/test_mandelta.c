/*
 * test_mandelta.c — incremental manifests (docs/design.md 5.7): a writer
 * doing many small syncs and compaction steps stores deltas whose size
 * follows what changed (counted by the volume and read back from the
 * file:// store), folds to a base when the chain grows, and a fresh open,
 * a follower, a snapshot's clone and a takeover after the writer died
 * mid-chain all read every byte as a reference model says; a deposed
 * writer's late delta is not taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

#define SZ (32u << 20)
#define BS 32768u /* 1024 blocks: a base big enough for a chain of deltas */
#define PIECE 4096u

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cfg_common(glidefs_config *c)
{
    tu_set(c, "compaction.min_live_pct", "90");
    tu_set(c, "compaction.grace_ms", "0");
    tu_set(c, "compaction.interval_s", "0");
    tu_set(c, "compaction.keep_manifests", "2");
    tu_set(c, "servers.nbd.block_size", "32768");
    /* no access profile: its layout would copy the blocks this test reads
     * back (written in random order, read in order) and add them to the
     * deltas this test sizes */
    tu_set(c, "cache.profile_s", "0");
}

/* Every block, in a random order (so the base's write_seqs do not just
 * count up, as after a volume's life) */
static void fill(glidefs_volume *v, uint8_t *ref, uint64_t *s)
{
    uint32_t n = SZ / BS, *order = malloc(n * sizeof *order);
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(tu_rand(s) % (i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    uint8_t buf[BS];
    for (uint32_t i = 0; i < n; i++) {
        for (size_t k = 0; k < BS; k += 8) {
            uint64_t x = tu_rand(s);
            memcpy(buf + k, &x, 8);
        }
        uint64_t off = (uint64_t)order[i] * BS;
        assert_int_equal(glidefs_pwrite(v, buf, BS, off, 0), 0);
        memcpy(ref + off, buf, BS);
    }
    free(order);
}

/* k random 4 KiB pieces (with trim, the first a TRIM of two blocks, so
 * holes travel in deltas) */
static void scribble(glidefs_volume *v, uint8_t *ref, uint64_t *s, int k, int trim)
{
    uint8_t buf[PIECE];
    for (int i = 0; i < k; i++) {
        uint64_t off = (tu_rand(s) % (SZ / PIECE)) * PIECE;
        if (trim && i == 0) {
            uint64_t len = 2 * BS, boff = off / len * len;
            assert_int_equal(glidefs_trim(v, boff, len, 0), 0);
            memset(ref + boff, 0, len);
            continue;
        }
        for (size_t j = 0; j < PIECE; j += 8) {
            uint64_t x = tu_rand(s);
            memcpy(buf + j, &x, 8);
        }
        assert_int_equal(glidefs_pwrite(v, buf, PIECE, off, 0), 0);
        memcpy(ref + off, buf, PIECE);
    }
}

static int same(glidefs_volume *v, const uint8_t *ref)
{
    uint8_t *buf = malloc(SZ);
    int r = glidefs_pread(v, buf, SZ, 0);
    int ok = r == 0 && memcmp(buf, ref, SZ) == 0;
    if (!ok && getenv("GLIDEFS_TEST_VERBOSE")) {
        size_t i = 0;
        while (r == 0 && i < SZ && buf[i] == ref[i])
            i++;
        fprintf(stderr, "differs: read %d, first at %zu (block %zu)\n", r, i, i / BS);
    }
    free(buf);
    return ok;
}

/* A reader on its own cache dir, opened fresh: must read ref. */
static void fresh_reader_reads(const struct tu_env *env, const char *vol, const uint8_t *ref,
                               const char *tag)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/fresh-%s", env->root, tag);
    glidefs_config *c = tu_config(env, "64M", "100000");
    tu_set(c, "cache.dir", dir);
    tu_set(c, "node_id", "reader");
    glidefs_volume *r;
    assert_int_equal(glidefs_volume_open(c, vol, 0, GLIDEFS_OPEN_READONLY, &r), 0);
    if (!same(r, ref))
        fail_msg("a fresh open (%s) differs from the model", tag);
    assert_int_equal(glidefs_volume_close(r), 0);
    glidefs_config_free(c);
    tu_rmrf(dir);
}

/* Manifest objects in the file:// store: how many, and how many deltas. */
static void count_manifests(const struct tu_env *env, const char *vol, int *n, int *deltas)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/nbd/%s/manifest", env->store, vol);
    *n = *deltas = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[1000];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        FILE *f = fopen(p, "rb");
        uint8_t h[16];
        if (f && fread(h, 1, 16, f) == 16) {
            (*n)++;
            *deltas += (h[12] & 0x8) != 0;
        }
        if (f)
            fclose(f);
    }
    closedir(d);
}

/* Is the newest manifest object in the file:// store a base? */
static int newest_is_base(const struct tu_env *env, const char *vol)
{
    char dir[700], best[256] = "";
    snprintf(dir, sizeof dir, "%s/nbd/%s/manifest", env->store, vol);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", de->d_name);
    closedir(d);
    char p[1000];
    snprintf(p, sizeof p, "%s/%s", dir, best);
    FILE *f = fopen(p, "rb");
    uint8_t h[16];
    assert_non_null(f);
    assert_int_equal(fread(h, 1, 16, f), 16);
    fclose(f);
    return (h[12] & 0x8) == 0;
}

static void test_deltas_follow_changes(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "mandelta");
    int file = strncmp(env.url, "file://", 7) == 0;
    glidefs_config *c = tu_config(&env, "128M", "100000");
    cfg_common(c);
    uint8_t *ref = malloc(SZ), *snapref = malloc(SZ);
    uint64_t s = 777;
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(c, "vol", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    fill(v, ref, &s);
    assert_int_equal(glidefs_drain(v, -1), 0);
    struct glidefs_stats st, prev;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_true(st.manifest_bases >= 1);
    /* the base as the writer stores it now: a snapshot folds */
    assert_int_equal(glidefs_snapshot_create(v, "s0"), 0);
    prev = st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    assert_int_equal(st.manifest_chain, 1);
    uint64_t base_bytes = st.manifest_bytes - prev.manifest_bytes;
    fprintf(stderr, "base manifest: %llu bytes for %u blocks\n", (unsigned long long)base_bytes,
            SZ / BS);

    /* a follower on its own cache dir, open throughout */
    char fdir[600];
    snprintf(fdir, sizeof fdir, "%s/follower", env.root);
    glidefs_config *fc = tu_config(&env, "64M", "100000");
    tu_set(fc, "cache.dir", fdir);
    tu_set(fc, "node_id", "follower");
    glidefs_volume *fv;
    assert_int_equal(glidefs_volume_open(fc, "vol", 0, GLIDEFS_OPEN_READONLY, &fv), 0);

    uint64_t delta_bytes = 0, ndelta = 0, max_chain = 0;
    int folds_seen = 0, rebases_seen = 0;
    const int rounds = 72;
    for (int r = 0; r < rounds; r++) {
        prev = st;
        int k = 1 + r % 3;
        int compact = r % 4 == 3;
        if (compact) {
            struct glidefs_compact_result res;
            assert_int_equal(glidefs_compact(v, &res, sizeof res), 0);
            k = (int)(res.bytes_rewritten / BS); /* blocks moved (random data: stored whole) */
        } else {
            /* TRIMs only right before the follower's check: a segment of
             * holes alone is dead at once, and compaction may delete it
             * before a follower saw it (a follower then misses the TRIM;
             * not this test's concern) */
            scribble(v, ref, &s, k, r % 9 == 8);
            assert_int_equal(glidefs_drain(v, -1), 0);
        }
        assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
        uint64_t d = st.manifest_bytes - prev.manifest_bytes;
        if (st.manifest_deltas > prev.manifest_deltas) {
            assert_int_equal(st.manifest_deltas, prev.manifest_deltas + 1);
            assert_int_equal(st.manifest_bases, prev.manifest_bases);
            delta_bytes += d;
            ndelta++;
            if (st.manifest_chain == 2 && prev.manifest_chain > 2) {
                /* a delta straight over the base once the chain is full (two
                 * links again): what changed since the base, at most half */
                assert_int_equal(prev.manifest_chain, 17);
                rebases_seen++;
                if (d > base_bytes * 3 / 4)
                    fail_msg("round %d: a delta over the base took %llu bytes, the base %llu",
                             r, (unsigned long long)d, (unsigned long long)base_bytes);
            } else {
                assert_int_equal(st.manifest_chain, prev.manifest_chain + 1);
                /* fixed header, link, CRC, a segment and an entry per
                 * changed block (a TRIM's: an entry, no segment), zstd's frame */
                if (d > 128 + 60u * (uint64_t)k)
                    fail_msg("round %d: a delta of %d blocks took %llu bytes%s", r, k,
                             (unsigned long long)d, compact ? " (compaction)" : "");
            }
        } else if (st.manifest_bases > prev.manifest_bases) {
            assert_int_equal(st.manifest_bases, prev.manifest_bases + 1);
            folds_seen++;
            base_bytes = d;
            assert_int_equal(st.manifest_chain, 1);
        }
        if (st.manifest_chain > max_chain)
            max_chain = st.manifest_chain;
        assert_true(st.manifest_chain <= 17);
        if (r == 40) {
            /* a snapshot folds first: what it pins is a base */
            assert_int_equal(glidefs_snapshot_create(v, "s1"), 0);
            assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
            assert_int_equal(st.manifest_chain, 1);
            memcpy(snapref, ref, SZ);
            assert_int_equal(glidefs_clone(v, "s1", "kid"), 0);
        }
        if (r % 9 == 8) {
            char tag[16];
            snprintf(tag, sizeof tag, "r%d", r);
            fresh_reader_reads(&env, "vol", ref, tag);
            /* the follower catches up (its refresh runs on its own thread) */
            double end = mono() + 20;
            while (!same(fv, ref) && mono() < end)
                poll(NULL, 0, 50);
            if (!same(fv, ref))
                fail_msg("round %d: the follower differs from the model", r);
        }
        if (!same(v, ref))
            fail_msg("round %d: the writer differs from the model", r);
    }
    fprintf(stderr, "%llu deltas, %llu bytes (%.0f per delta), base %llu bytes, %d folds, "
            "%d deltas over the base, longest chain %llu\n", (unsigned long long)ndelta,
            (unsigned long long)delta_bytes, ndelta ? (double)delta_bytes / (double)ndelta : 0.0,
            (unsigned long long)base_bytes, folds_seen, rebases_seen,
            (unsigned long long)max_chain);
    assert_true(ndelta >= 40);
    assert_true(folds_seen >= 1); /* the chain is bounded: folds happen */
    assert_true(rebases_seen >= 1);
    assert_int_equal(max_chain, 17);
    if (file) {
        int n, nd;
        count_manifests(&env, "vol", &n, &nd);
        assert_true(nd > 0 || st.manifest_chain == 1);
        assert_true((uint64_t)n >= st.manifest_chain);
    }
    /* reopen as the writer on an empty cache: the writer's close that
     * hands the lease back folded its chain into a base (the next open, a
     * wake, reads one object), then the segments */
    assert_int_equal(glidefs_volume_close(fv), 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    if (file)
        assert_true(newest_is_base(&env, "vol"));
    tu_rmrf(env.cache);
    assert_int_equal(glidefs_volume_open(c, "vol", 0, 0, &v), 0);
    if (!same(v, ref))
        fail_msg("reopened: differs from the model");
    assert_int_equal(glidefs_volume_close(v), 0);
    /* the clone reads the snapshot's state */
    glidefs_volume *kid;
    assert_int_equal(glidefs_volume_open(c, "kid", 0, 0, &kid), 0);
    if (!same(kid, snapref))
        fail_msg("the clone differs from the snapshot's state");
    assert_int_equal(glidefs_volume_close(kid), 0);
    glidefs_config_free(fc);
    glidefs_config_free(c);
    free(ref);
    free(snapref);
    tu_env_done(&env);
}

/* The writer dies with a chain of deltas as its newest manifests; another
 * node promotes and reads everything it drained. A copy of the dead
 * writer's newest delta planted past its fence (a late upload) is not
 * taken by a fresh reader. */
static void test_promote_mid_chain(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "mandelta-kill");
    struct tu_node A, B;
    tu_node_init(&A, &env, "node-a", "100000", "600");
    tu_node_init(&B, &env, "node-b", "100000", "600");
    cfg_common(A.cfg);
    cfg_common(B.cfg);
    uint8_t *ref = malloc(SZ);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t s = 99;
        glidefs_volume *a;
        if (glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a) < 0)
            _exit(2);
        fill(a, ref, &s);
        if (glidefs_drain(a, -1) < 0)
            _exit(3);
        for (int r = 0; r < 6; r++) {
            scribble(a, ref, &s, 2, r == 5);
            if (glidefs_drain(a, -1) < 0)
                _exit(4);
        }
        struct glidefs_stats st;
        if (glidefs_stats(a, &st, sizeof st) < 0 || st.manifest_chain < 3)
            _exit(5);
        if (write(p[1], ref, SZ) != (ssize_t)SZ)
            _exit(6);
        for (;;)
            pause();
    }
    close(p[1]);
    size_t got = 0;
    while (got < SZ) {
        ssize_t n = read(p[0], ref + got, SZ - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(p[0]);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    glidefs_volume *b;
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", 0, 0, &b), 0);
    double end = mono() + 10;
    int r;
    while ((r = glidefs_promote(b, 0)) == -EBUSY && mono() < end)
        poll(NULL, 0, 50);
    assert_int_equal(r, 0);
    if (!same(b, ref))
        fail_msg("the promoted node differs from what the dead writer drained");
    if (strncmp(env.url, "file://", 7) == 0) {
        /* plant the dead writer's newest manifest again past its fence */
        char dir[700], src[1000] = "", dst[1000];
        snprintf(dir, sizeof dir, "%s/nbd/vm/manifest", env.store);
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.' && strcmp(de->d_name, src) > 0)
                snprintf(src, sizeof src, "%s", de->d_name);
        closedir(d);
        unsigned long long e, q;
        assert_int_equal(sscanf(src, "%16llx-%16llx", &e, &q), 2);
        snprintf(dst, sizeof dst, "%s/%016llx-%016llx", dir, e, q + 5);
        char from[1800];
        snprintf(from, sizeof from, "%s/%s", dir, src);
        FILE *in = fopen(from, "rb"), *out = fopen(dst, "wb");
        assert_true(in && out);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        fclose(out);
        fresh_reader_reads(&env, "vm", ref, "planted");
    }
    /* the new writer's own deltas over its first base */
    uint64_t s = 5;
    for (int i = 0; i < 4; i++) {
        scribble(b, ref, &s, 2, i == 1);
        assert_int_equal(glidefs_drain(b, -1), 0);
    }
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(b, &st, sizeof st), 0);
    assert_true(st.manifest_deltas >= 3);
    fresh_reader_reads(&env, "vm", ref, "after");
    assert_int_equal(glidefs_volume_close(b), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    free(ref);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deltas_follow_changes),
        cmocka_unit_test(test_promote_mid_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
