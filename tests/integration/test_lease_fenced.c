/*
 * test_lease_fenced.c — getting back what a fenced node had
 * (glidefs_fenced_export): a writer killed with flushed-but-not-uploaded
 * data, whose lease another node takes over and writes after; the old
 * writer restarts fenced and exports its view byte for byte (its writes on
 * top of the data it saw, not the newer writer's), with the store left
 * exactly as it was; then discards. A forced take-over while the old writer
 * still uploads (its late segments belong to its view too). And a newer
 * writer that compacted that view away: the export refuses (-ENODATA)
 * rather than produce older data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

#define SZ (8u << 20)
#define BS 131072u

/* Nothing is uploaded until a drain: the journal is what a kill leaves.
 * Compaction only on demand: a background one could delete the old epoch's
 * objects under a slow run (the last test does that on purpose). */
static void node_init(struct tu_node *n, const struct tu_env *e, const char *id,
                      const char *lease_ms)
{
    tu_node_init(n, e, id, "600000", lease_ms);
    tu_set(n->cfg, "servers.nbd.max_dirty_age_ms", "600000");
    tu_set(n->cfg, "compaction.interval_s", "0");
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A planned write: data (or zeroes) at off, applied to a model as well. */
struct op {
    uint64_t off;
    uint32_t len;
    int zero;
    uint8_t *data;
};

static void plan(struct op *o, uint64_t off, uint32_t len, int zero, uint64_t *seed)
{
    o->off = off;
    o->len = len;
    o->zero = zero;
    o->data = malloc(len);
    assert_non_null(o->data);
    for (uint32_t i = 0; i < len; i++)
        o->data[i] = zero ? 0 : (uint8_t)(tu_rand(seed) | 1); /* never 0: holes tell */
}

static void model_apply(uint8_t *m, const struct op *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memcpy(m + o[i].off, o[i].data, o[i].len);
}

static int vol_apply(glidefs_volume *v, const struct op *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int r = o[i].zero ? glidefs_write_zeroes(v, o[i].off, o[i].len, 0)
                          : glidefs_pwrite(v, o[i].data, o[i].len, o[i].off, 0);
        if (r < 0)
            return r;
    }
    return 0;
}

static void ops_free(struct op *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].data);
}

/* Every object of a file:// store as "key size mtime" lines ("" otherwise);
 * not the lease, which its holder heartbeats. */
static char *listing;
static size_t listing_len;

static int list_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    if (flag != FTW_F || strcmp(p + ftw->base, "lease") == 0)
        return 0;
    char line[1200];
    int n = snprintf(line, sizeof line, "%s %lld %lld.%09ld\n", p, (long long)sb->st_size,
                     (long long)sb->st_mtim.tv_sec, sb->st_mtim.tv_nsec);
    char *nl = realloc(listing, listing_len + (size_t)n + 1);
    assert_non_null(nl);
    listing = nl;
    memcpy(listing + listing_len, line, (size_t)n + 1);
    listing_len += (size_t)n;
    return 0;
}

static char *store_listing(const struct tu_env *e)
{
    listing = NULL;
    listing_len = 0;
    if (strncmp(e->url, "file://", 7) == 0)
        assert_int_equal(nftw(e->store, list_cb, 16, FTW_PHYS), 0);
    char *r = listing ? listing : strdup("");
    listing = NULL;
    return r;
}

/* Export v's fenced view to <root>/<file>; returns the result, *out the file's bytes. */
static int export_to(glidefs_volume *v, const struct tu_env *e, const char *file, uint8_t **out,
                     uint64_t *epoch)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", e->root, file);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    /* stale bytes in the file must not survive the export */
    uint8_t junk[4096];
    memset(junk, 0xEE, sizeof junk);
    for (uint64_t off = 0; off < SZ; off += 1 << 20)
        assert_int_equal(pwrite(fd, junk, sizeof junk, (off_t)off), (ssize_t)sizeof junk);
    int r = glidefs_fenced_export(v, fd, epoch);
    if (out) {
        struct stat sb;
        assert_int_equal(fstat(fd, &sb), 0);
        assert_int_equal((uint64_t)sb.st_size, SZ);
        assert_true((uint64_t)sb.st_blocks * 512 < SZ / 2); /* sparse: unwritten blocks are holes */
        *out = malloc(SZ);
        assert_non_null(*out);
        assert_int_equal(pread(fd, *out, SZ, 0), (ssize_t)SZ);
    }
    close(fd);
    return r;
}

static void expect_model(const uint8_t *got, const uint8_t *want)
{
    for (size_t i = 0; i < SZ; i++)
        if (got[i] != want[i])
            fail_msg("exported image differs at byte %zu (block %zu): %02x, want %02x", i,
                     i / BS, got[i], want[i]);
}

static void expect_reads(glidefs_volume *v, const uint8_t *want, uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(glidefs_pread(v, buf, len, off), 0);
    assert_memory_equal(buf, want + off, len);
    free(buf);
}

static void test_killed_writer_exports_its_view(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "fenced");
    struct tu_node A, B;
    node_init(&A, &env, "node-a", "600");
    node_init(&B, &env, "node-b", "600");
    uint64_t seed = 0x5eed0001;
    /* A: stored in two drains, then journaled only (flushed, never uploaded):
     * partial and unaligned blocks, a write over a block already stored, a
     * zeroed range, a write across a block boundary, a block never stored */
    struct op w1[1], w2[2], w3[6], wb[3];
    plan(&w1[0], 0, 6 * BS, 0, &seed);
    plan(&w2[0], BS + 4096, 4096, 0, &seed);
    plan(&w2[1], 3 * BS, 4096, 0, &seed);
    plan(&w3[0], 2 * BS + 1536, 8192, 0, &seed);
    plan(&w3[1], 7 * BS, BS, 0, &seed);
    plan(&w3[2], 4 * BS, 65536, 1, &seed);
    plan(&w3[3], BS + 6144, 4096, 0, &seed);
    plan(&w3[4], 6 * BS - 2048, 4096, 0, &seed);
    plan(&w3[5], BS + 4096, 512, 0, &seed); /* over part of a stored write */
    /* B, after taking over: some of the same blocks */
    plan(&wb[0], 0, BS, 0, &seed);
    plan(&wb[1], 2 * BS, BS, 0, &seed);
    plan(&wb[2], 7 * BS, 4096, 0, &seed);
    uint8_t *amodel = calloc(1, SZ), *bmodel = calloc(1, SZ);
    assert_non_null(amodel);
    assert_non_null(bmodel);
    model_apply(amodel, w1, 1);
    model_apply(amodel, w2, 2);
    model_apply(bmodel, w1, 1);
    model_apply(bmodel, w2, 2);
    model_apply(amodel, w3, 6);
    model_apply(bmodel, wb, 3);

    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        glidefs_volume *a;
        if (glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a) < 0)
            _exit(2);
        if (vol_apply(a, w1, 1) < 0 || glidefs_drain(a, -1) < 0)
            _exit(3);
        if (vol_apply(a, w2, 2) < 0 || glidefs_drain(a, -1) < 0)
            _exit(4);
        if (vol_apply(a, w3, 6) < 0 || glidefs_flush(a) < 0)
            _exit(5);
        char ok = 1;
        if (write(p[1], &ok, 1) != 1)
            _exit(6);
        for (;;)
            pause();
    }
    close(p[1]);
    char ok;
    assert_int_equal(read(p[0], &ok, 1), 1);
    close(p[0]);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));

    /* B takes over once A's lease expires, and writes over some of A's blocks */
    glidefs_volume *b;
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    double end = mono() + 10;
    int r;
    while ((r = glidefs_promote(b, 0)) == -EBUSY && mono() < end)
        poll(NULL, 0, 50);
    assert_int_equal(r, 0);
    assert_int_equal(vol_apply(b, wb, 3), 0);
    assert_int_equal(glidefs_drain(b, -1), 0);

    /* A restarts: fenced, its journal kept aside */
    glidefs_volume *a;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 1);
    struct glidefs_stats st0, st1;
    assert_int_equal(glidefs_stats(a, &st0, sizeof st0), 0);
    assert_true(st0.fenced_bytes > 0);
    char *before = store_listing(&env);

    uint8_t *img = NULL;
    uint64_t epoch = 0;
    assert_int_equal(export_to(a, &env, "a.raw", &img, &epoch), 0);
    assert_int_equal(epoch, 1); /* A created the volume: epoch 1 */
    expect_model(img, amodel);
    free(img);

    /* the store is exactly as before: nothing put, nothing deleted */
    char *after = store_listing(&env);
    assert_string_equal(before, after);
    assert_int_equal(glidefs_stats(a, &st1, sizeof st1), 0);
    assert_int_equal(st1.store_puts, st0.store_puts);
    assert_int_equal(st1.store_deletes, st0.store_deletes);
    assert_int_equal(st1.fenced_bytes, st0.fenced_bytes); /* still kept aside */
    free(before);
    free(after);

    /* A itself serves the store's data (B's), read-only */
    expect_reads(a, bmodel, 0, 8 * BS);
    expect_reads(b, bmodel, 0, 8 * BS);

    /* discard: gone, and nothing left to export */
    assert_int_equal(glidefs_fenced_discard(a), 0);
    assert_int_equal(glidefs_stats(a, &st1, sizeof st1), 0);
    assert_int_equal(st1.fenced_bytes, 0);
    assert_int_equal(export_to(a, &env, "a2.raw", NULL, NULL), -ENOENT);
    expect_reads(a, bmodel, 0, 8 * BS);

    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(b), 0);
    ops_free(w1, 1);
    ops_free(w2, 2);
    ops_free(w3, 6);
    ops_free(wb, 3);
    free(amodel);
    free(bmodel);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

static void test_late_segments_then_compacted_away(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "fenced2");
    struct tu_node A, C;
    node_init(&A, &env, "node-a", "60000"); /* slow heartbeat: it learns of the fence late */
    node_init(&C, &env, "node-c", "3000");
    /* 1 MiB journal files: the late upload's records are gone from A's
     * journal once uploaded, so only its late segment still has them */
    tu_set(A.cfg, "cache.disk_size", "16M");
    tu_set(C.cfg, "compaction.min_live_pct", "95");
    tu_set(C.cfg, "compaction.grace_ms", "0");
    tu_set(C.cfg, "compaction.interval_s", "0");
    tu_set(C.cfg, "compaction.keep_manifests", "1");
    uint64_t seed = 0x5eed0002;
    struct op p1[1], q[1], late[3], all[1];
    plan(&p1[0], 0, 4 * BS, 0, &seed);
    plan(&q[0], 0, BS, 0, &seed);
    plan(&late[0], BS, 8192, 0, &seed);
    plan(&late[1], 8 * BS, 24 * BS, 0, &seed); /* 3 MiB: the journal moves to new files */
    plan(&late[2], 2 * BS + 512, 1024, 0, &seed);
    plan(&all[0], 0, 4 * BS, 0, &seed);
    uint8_t *amodel = calloc(1, SZ);
    assert_non_null(amodel);
    model_apply(amodel, p1, 1);
    model_apply(amodel, late, 3);

    glidefs_volume *a, *c;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    assert_int_equal(vol_apply(a, p1, 1), 0);
    assert_int_equal(glidefs_drain(a, -1), 0);
    /* C forces the lease away while A still believes it writes */
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_promote(c, 1), 0);
    assert_int_equal(vol_apply(c, q, 1), 0);
    assert_int_equal(glidefs_drain(c, -1), 0);
    /* A uploads a late segment (ignored by every reader), then journals more */
    assert_int_equal(vol_apply(a, late, 2), 0);
    int r = glidefs_drain(a, 10000);
    assert_true(r == 0 || r == -EROFS);
    r = vol_apply(a, late + 2, 1);
    assert_true(r == 0 || r == -EROFS);
    if (r == -EROFS) /* it noticed the fence meanwhile: that write never happened */
        memcpy(amodel + late[2].off, p1[0].data + late[2].off, late[2].len);
    assert_int_equal(glidefs_flush(a), 0);
    assert_int_equal(glidefs_volume_close(a), 0);

    /* A restarts fenced; its view has its late segment and its journal */
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 1);
    uint8_t *img = NULL;
    assert_int_equal(export_to(a, &env, "a.raw", &img, NULL), 0);
    expect_model(img, amodel);
    free(img);

    /* C overwrites all A stored and compacts: C holds A's view for A
     * (compaction.fenced_hold_s), so the export still works */
    assert_int_equal(vol_apply(c, all, 1), 0);
    assert_int_equal(glidefs_drain(c, -1), 0);
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(c, &res, sizeof res), 0);
    img = NULL;
    assert_int_equal(export_to(a, &env, "a1.raw", &img, NULL), 0);
    expect_model(img, amodel);
    free(img);

    /* once the hold expires (C reopened with fenced_hold_s 0), compaction
     * takes A's segments and manifests away */
    assert_int_equal(glidefs_volume_close(c), 0);
    tu_set(C.cfg, "compaction.fenced_hold_s", "0");
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_compact(c, &res, sizeof res), 0);
    assert_int_equal(glidefs_compact(c, &res, sizeof res), 0);
    struct glidefs_stats cst;
    assert_int_equal(glidefs_stats(c, &cst, sizeof cst), 0);
    assert_true(cst.segments_deleted > 0);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(a, &st, sizeof st), 0);
    assert_int_equal(export_to(a, &env, "a2.raw", NULL, NULL), -ENODATA);
    /* still kept aside, for a later decision */
    struct glidefs_stats st2;
    assert_int_equal(glidefs_stats(a, &st2, sizeof st2), 0);
    assert_true(st2.fenced_bytes > 0);
    assert_int_equal(st2.store_puts, st.store_puts);
    assert_int_equal(st2.store_deletes, st.store_deletes);

    assert_int_equal(glidefs_fenced_export(a, -1, NULL), -EINVAL);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(c), 0);
    ops_free(p1, 1);
    ops_free(q, 1);
    ops_free(late, 3);
    ops_free(all, 1);
    free(amodel);
    glidefs_config_free(A.cfg);
    glidefs_config_free(C.cfg);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_writer_exports_its_view),
        cmocka_unit_test(test_late_segments_then_compacted_away),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
