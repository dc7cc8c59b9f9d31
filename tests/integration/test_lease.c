/*
 * test_lease.c — one writer per volume (docs/design.md promise 2.5), with several
 * "nodes" (separate node ids and cache dirs) on one store: read-only attach,
 * hand-over by release + promote, promote refused while the lease is live,
 * forced promote fencing the old writer and hiding its late segments from
 * every reader, a killed owner whose lease expires and who comes back fenced
 * with its unsynced data kept aside, and scale to zero.
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

#define SZ (8u << 20)

static void node_init(struct tu_node *n, const struct tu_env *e, const char *id,
                      const char *lease_ms)
{
    tu_node_init(n, e, id, "5", lease_ms);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait (bounded) until the first bytes of off read back as `want`. */
static int wait_reads(glidefs_volume *v, uint64_t off, uint8_t want, double secs)
{
    uint8_t buf[512];
    double end = mono() + secs;
    do {
        if (glidefs_pread(v, buf, sizeof buf, off) == 0 && buf[0] == want && buf[511] == want)
            return 1;
        poll(NULL, 0, 20); /* re-check the condition every 20 ms until the deadline */
    } while (mono() < end);
    return 0;
}

static void expect_byte(glidefs_volume *v, uint64_t off, uint8_t want)
{
    uint8_t buf[4096];
    assert_int_equal(glidefs_pread(v, buf, sizeof buf, off), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != want)
            fail_msg("at %llu+%zu: %02x, want %02x", (unsigned long long)off, i, buf[i], want);
}

static void put_byte(glidefs_volume *v, uint64_t off, uint8_t b)
{
    uint8_t buf[4096];
    memset(buf, b, sizeof buf);
    assert_int_equal(glidefs_pwrite(v, buf, sizeof buf, off, 0), 0);
}

static void test_handover_and_force(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "lease");
    struct tu_node A, B, C, D;
    node_init(&A, &env, "node-a", "3000");
    node_init(&B, &env, "node-b", "60000"); /* slow heartbeat: it notices the fence late */
    node_init(&C, &env, "node-c", "3000");
    node_init(&D, &env, "node-d", "3000");
    glidefs_volume *a, *b, *c, *d;

    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 0);
    put_byte(a, 0, 0xA1);
    assert_int_equal(glidefs_drain(a, -1), 0);

    /* B attaches read-only and reads A's data through its own cache */
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    expect_byte(b, 0, 0xA1);
    uint8_t buf[4096] = {0};
    assert_int_equal(glidefs_pwrite(b, buf, sizeof buf, 0, 0), -EROFS);
    /* A writes more; after A drains, B follows the store */
    put_byte(a, 8192, 0xA2);
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_true(wait_reads(b, 8192, 0xA2, 10));
    /* the lease is live: no promote without force */
    assert_int_equal(glidefs_promote(b, 0), -EBUSY);

    /* hand-over: A releases, B promotes, A is read-only from then on */
    put_byte(a, 16384, 0xA3);
    assert_int_equal(glidefs_release(a, -1), 0);
    assert_int_equal(glidefs_volume_read_only(a), 1);
    assert_int_equal(glidefs_pwrite(a, buf, sizeof buf, 0, 0), -EROFS);
    assert_int_equal(glidefs_promote(b, 0), 0);
    assert_int_equal(glidefs_volume_read_only(b), 0);
    expect_byte(b, 16384, 0xA3);
    put_byte(b, 0, 0xB1);
    assert_int_equal(glidefs_drain(b, -1), 0);
    assert_true(wait_reads(a, 0, 0xB1, 10)); /* A follows B now */
    assert_int_equal(glidefs_promote(b, 0), 0); /* already the writer: no change */

    /* C forces the lease away from B while B still thinks it writes */
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_volume_read_only(c), 1);
    assert_int_equal(glidefs_promote(c, 0), -EBUSY);
    assert_int_equal(glidefs_promote(c, 1), 0);
    put_byte(c, 24576, 0xC1);
    assert_int_equal(glidefs_drain(c, -1), 0);
    /* B, not yet aware, writes and uploads a late segment in its old epoch
     * (unless its compactor, re-reading the lease before a delete, found out
     * already: then the write fails) */
    uint8_t bb[4096];
    memset(bb, 0xBB, sizeof bb);
    int w = glidefs_pwrite(b, bb, sizeof bb, 0, 0);
    assert_true(w == 0 || w == -EROFS);
    int r = glidefs_drain(b, 10000);
    assert_true(r == 0 || r == -EROFS);
    /* nobody may see it: not C, not a fresh reader D, not C after reopening */
    expect_byte(c, 0, 0xB1);
    assert_int_equal(glidefs_volume_open(D.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &d), 0);
    expect_byte(d, 0, 0xB1);
    expect_byte(d, 24576, 0xC1);
    expect_byte(d, 16384, 0xA3);
    assert_int_equal(glidefs_volume_close(d), 0);

    /* B learns it is fenced (at its next heartbeat: force one by promote attempt
     * failing is not needed; its writes stop once it knows). Reopen B: it finds
     * the lease taken and keeps its late data aside instead of uploading it. */
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    expect_byte(b, 0, 0xB1);
    assert_int_equal(glidefs_volume_close(c), 0);
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    expect_byte(c, 0, 0xB1);
    expect_byte(c, 24576, 0xC1);
    assert_int_equal(glidefs_volume_close(c), 0); /* clean: releases */
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    glidefs_config_free(C.cfg);
    glidefs_config_free(D.cfg);
    tu_env_done(&env);
}

static void test_killed_owner_expires(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "expire");
    struct tu_node A, B;
    node_init(&A, &env, "node-a", "600");
    node_init(&B, &env, "node-b", "600");
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        glidefs_volume *a;
        if (glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a) < 0)
            _exit(2);
        put_byte(a, 0, 0x11);
        if (glidefs_drain(a, -1) < 0)
            _exit(3);
        put_byte(a, 4096, 0x22); /* flushed, never uploaded */
        if (glidefs_flush(a) < 0)
            _exit(4);
        char ok = 1;
        if (write(p[1], &ok, 1) != 1)
            _exit(5);
        for (;;)
            pause();
    }
    close(p[1]);
    char ok;
    assert_int_equal(read(p[0], &ok, 1), 1);
    close(p[0]);
    glidefs_volume *b;
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    assert_int_equal(glidefs_promote(b, 0), -EBUSY);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* A's heartbeat stops: once it is older than the timeout, promote succeeds */
    double end = mono() + 10;
    int r;
    while ((r = glidefs_promote(b, 0)) == -EBUSY && mono() < end)
        poll(NULL, 0, 50);
    assert_int_equal(r, 0);
    expect_byte(b, 0, 0x11);
    expect_byte(b, 4096, 0x00); /* A's unsynced write is not in the store */
    put_byte(b, 8192, 0x33);
    assert_int_equal(glidefs_drain(b, -1), 0);

    /* A comes back: fenced, its unsynced write kept aside, never uploaded */
    glidefs_volume *a;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 1);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(a, &st, sizeof st), 0);
    assert_true(st.fenced_bytes > 0);
    expect_byte(a, 4096, 0x00);
    expect_byte(a, 8192, 0x33);
    assert_int_equal(glidefs_drain(b, -1), 0);
    expect_byte(b, 4096, 0x00);
    assert_int_equal(glidefs_fenced_discard(a), 0);
    assert_int_equal(glidefs_stats(a, &st, sizeof st), 0);
    assert_int_equal(st.fenced_bytes, 0);
    assert_int_equal(glidefs_volume_close(a), 0);

    /* scale to zero: B drains and deletes its local copy; A wakes it */
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_delete(B.cfg, "vm", 0), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/vm", B.cache);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 0); /* B released at close */
    expect_byte(a, 0, 0x11);
    expect_byte(a, 8192, 0x33);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

/* A read-only follower keeps reading the right bytes while the writer
 * compacts away (and deletes) the segments its map points at. */
static void test_follower_survives_compaction(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "follow");
    struct tu_node A, B;
    node_init(&A, &env, "node-a", "3000");
    node_init(&B, &env, "node-b", "3000");
    tu_set(A.cfg, "compaction.min_live_pct", "95");
    tu_set(A.cfg, "compaction.grace_ms", "0");
    tu_set(A.cfg, "compaction.interval_s", "0");
    glidefs_volume *a, *b;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    for (int i = 0; i < 16; i++)
        put_byte(a, (uint64_t)i * 131072, (uint8_t)(0x40 + i));
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    /* overwrite half, so every old segment is half dead; then compact */
    for (int i = 0; i < 16; i += 2)
        put_byte(a, (uint64_t)i * 131072, (uint8_t)(0x80 + i));
    assert_int_equal(glidefs_drain(a, -1), 0);
    struct glidefs_compact_result res;
    assert_int_equal(glidefs_compact(a, &res), 0);
    assert_true(res.segments_deleted > 0);
    /* B's map may still name deleted segments: its reads must follow */
    for (int i = 0; i < 16; i++)
        assert_true(wait_reads(b, (uint64_t)i * 131072, (uint8_t)(i % 2 ? 0x40 + i : 0x80 + i), 10));
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

/* The writer grows the volume: a follower learns the new size from the
 * store (volume.json) without reopening, and reads the grown part. */
static void test_follower_sees_resize(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "fresize");
    struct tu_node A, B;
    node_init(&A, &env, "node-a", "1000");
    node_init(&B, &env, "node-b", "1000");
    glidefs_volume *a, *b;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    assert_int_equal(glidefs_resize(a, 2 * (uint64_t)SZ), 0);
    put_byte(a, SZ + 131072, 0x5a);
    assert_int_equal(glidefs_drain(a, -1), 0);
    double end = mono() + 15;
    while (glidefs_volume_size(b) != 2 * (uint64_t)SZ && mono() < end)
        poll(NULL, 0, 20); /* re-check until the deadline */
    assert_int_equal(glidefs_volume_size(b), 2 * (uint64_t)SZ);
    assert_true(wait_reads(b, SZ + 131072, 0x5a, 10));
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

/* A writer deposed a moment ago, before its heartbeat tells it, compacts:
 * what is dead only because of its own late segments is live for the new
 * writer. It must re-check the lease before deleting and delete nothing. */
static void test_deposed_writer_deletes_nothing(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "deposed");
    struct tu_node A, C, D;
    node_init(&A, &env, "node-a", "60000"); /* heartbeat every 20 s: learns late */
    node_init(&C, &env, "node-c", "3000");
    node_init(&D, &env, "node-d", "3000");
    tu_set(A.cfg, "compaction.min_live_pct", "95");
    tu_set(A.cfg, "compaction.grace_ms", "0");
    tu_set(A.cfg, "compaction.interval_s", "0");
    tu_set(C.cfg, "compaction.fenced_hold_s", "0"); /* no hold: the check alone must do */
    glidefs_volume *a, *c, *d;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    for (int i = 0; i < 16; i++)
        put_byte(a, (uint64_t)i * 131072, (uint8_t)(0x10 + i));
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_promote(c, 1), 0);
    /* A still believes it writes: late segments make its old ones half dead */
    for (int i = 0; i < 16; i += 2)
        put_byte(a, (uint64_t)i * 131072, 0xee);
    int r = glidefs_drain(a, 10000);
    assert_true(r == 0 || r == -EROFS);
    struct glidefs_compact_result res = {0};
    r = glidefs_compact(a, &res);
    assert_true(r == 0 || r == -EROFS);
    assert_int_equal(res.segments_deleted, 0);
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(a, &st, sizeof st), 0);
    assert_int_equal(st.fenced, 1); /* the check found out */
    /* a fresh reader, and the new writer, see the data before A's late writes */
    assert_int_equal(glidefs_volume_open(D.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &d), 0);
    for (int i = 0; i < 16; i++) {
        expect_byte(d, (uint64_t)i * 131072, (uint8_t)(0x10 + i));
        expect_byte(c, (uint64_t)i * 131072, (uint8_t)(0x10 + i));
    }
    assert_int_equal(glidefs_volume_close(d), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(c), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(C.cfg);
    glidefs_config_free(D.cfg);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follower_survives_compaction),
        cmocka_unit_test(test_follower_sees_resize),
        cmocka_unit_test(test_deposed_writer_deletes_nothing),
        cmocka_unit_test(test_handover_and_force),
        cmocka_unit_test(test_killed_owner_expires),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
