/*
 * test_lease_identity.c — a writer is a cache dir, not a machine (README
 * "One writer, leases and fencing"): two cache dirs under one node id are two
 * writers; a restart on the same cache dir resumes its lease and journal (in
 * a new epoch); a copy of a cache dir never becomes a second writer, whether
 * it opens after the original's next heartbeat (read-only) or before it
 * (the copy takes a new epoch and the original is fenced, its later writes
 * seen by nobody); a lease written by an older build (format 1) is resumed by
 * the cache dir that held it, once; the conditional-write probe tells
 * honouring, ignoring and broken stores apart and leaves nothing behind; a
 * store that ignores conditional writes refuses takeovers unless
 * storage.unsafe_accept_split_brain_on_lax_store is set; a fenced volume with
 * unsynced writes of its lost epoch refuses to promote.
 *
 * Links the internal library: it reads the lease object, rewrites it as an
 * older build would, and puts a lax store in front of a volume's probe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"
#include "identity.h"

#include "config.h"
#include "lease.h"
#include "objstore.h"
#include "store_probe.h"
#include "volume_internal.h"

#define SZ (8u << 20)
#define BLK 131072u /* offsets in distinct blocks */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Nothing is uploaded before a drain: what a writer has is in its journal. */
static void node_init(struct tu_node *n, const struct tu_env *e, const char *cache_tag,
                      const char *node_id, const char *lease_ms)
{
    tu_node_init(n, e, cache_tag, "600000", lease_ms);
    tu_set(n->cfg, "node_id", node_id);
    tu_set(n->cfg, "servers.nbd.max_dirty_age_ms", "600000");
    tu_set(n->cfg, "compaction.interval_s", "0");
}

static void put_byte(glidefs_volume *v, uint64_t off, uint8_t b)
{
    uint8_t buf[4096];
    memset(buf, b, sizeof buf);
    assert_int_equal(glidefs_pwrite(v, buf, sizeof buf, off, 0), 0);
}

static void expect_byte(glidefs_volume *v, uint64_t off, uint8_t want)
{
    uint8_t buf[4096];
    assert_int_equal(glidefs_pread(v, buf, sizeof buf, off), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != want)
            fail_msg("at %llu+%zu: %02x, want %02x", (unsigned long long)off, i, buf[i], want);
}

static struct glidefs_stats stats_of(glidefs_volume *v)
{
    struct glidefs_stats st;
    assert_int_equal(glidefs_stats(v, &st, sizeof st), 0);
    return st;
}

static void read_lease(const glidefs_config *cfg, struct gfs_lease *l)
{
    struct gfs_objstore *st = NULL;
    char err[256];
    assert_int_equal(gfs_objstore_open(cfg, NULL, &st, err, sizeof err), 0);
    assert_int_equal(gfs_lease_read(st, "vm", l), 0);
    gfs_objstore_close(st);
}

/* Wait (bounded) until the lease's generation passes gen: a heartbeat. */
static void wait_heartbeat(const glidefs_config *cfg, uint64_t gen)
{
    struct gfs_lease l;
    double end = mono() + 15;
    do {
        read_lease(cfg, &l);
        if (l.gen > gen)
            return;
        poll(NULL, 0, 20); /* re-check until the deadline */
    } while (mono() < end);
    fail_msg("no heartbeat past generation %llu", (unsigned long long)gen);
}

static void copy_dir(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* Run open + writes in a child that is then killed -9: a crashed writer
 * whose lease stays held and whose journal holds flushed writes. */
static void crashed_writer(const glidefs_config *cfg, uint8_t drained, uint8_t unsynced)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        glidefs_volume *a;
        if (glidefs_volume_open(cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a) < 0)
            _exit(2);
        put_byte(a, 0, drained);
        if (glidefs_drain(a, -1) < 0)
            _exit(3);
        put_byte(a, BLK, unsynced);
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
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Two cache dirs, one node id (two daemons on one host with the default
 * node_id, or two clones of one machine): two writers. */
static void test_two_cache_dirs_one_node_id(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "ident2");
    struct tu_node A, B;
    node_init(&A, &env, "a", "same-host", "3000");
    node_init(&B, &env, "b", "same-host", "3000");
    char ia[64], ib[64], ia2[64];
    assert_int_equal(glidefs_instance_id(A.cfg, ia, sizeof ia), 0);
    assert_int_equal(glidefs_instance_id(B.cfg, ib, sizeof ib), 0);
    assert_int_equal(glidefs_instance_id(A.cfg, ia2, sizeof ia2), 0);
    assert_int_equal(strlen(ia), 32);
    assert_string_equal(ia, ia2); /* kept in the cache dir */
    assert_string_not_equal(ia, ib);

    glidefs_volume *a, *b;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 0);
    put_byte(a, 0, 0xA1);
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    struct glidefs_stats sb = stats_of(b);
    assert_string_equal(sb.lease_instance, ia);
    assert_string_equal(sb.lease_node, "same-host");
    assert_int_equal(glidefs_promote(b, 0), -EBUSY);
    /* hand-over between the two */
    assert_int_equal(glidefs_release(a, -1), 0);
    assert_int_equal(glidefs_promote(b, 0), 0);
    assert_string_equal(stats_of(b).lease_instance, ib);
    expect_byte(b, 0, 0xA1);
    put_byte(b, 0, 0xB1);
    assert_int_equal(glidefs_drain(b, -1), 0);
    assert_int_equal(glidefs_promote(a, 0), -EBUSY);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(b), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

/* A crash and restart on the same cache dir: the writer again, in a new
 * epoch, with its flushed writes (journal) on top of the store. */
static void test_restart_resumes(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identr");
    struct tu_node A, D;
    node_init(&A, &env, "a", "n", "60000");
    node_init(&D, &env, "d", "n", "3000");
    crashed_writer(A.cfg, 0x11, 0x22);
    struct gfs_lease l0;
    read_lease(A.cfg, &l0);
    assert_int_equal(l0.format, 2);
    glidefs_volume *a, *d;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 0);
    struct glidefs_stats st = stats_of(a);
    assert_int_equal(st.lease_epoch, l0.epoch + 1);
    assert_int_equal(st.fenced_bytes, 0);
    assert_true(st.dirty_bytes > 0); /* the journal went on */
    expect_byte(a, 0, 0x11);
    expect_byte(a, BLK, 0x22);
    struct gfs_lease l1;
    read_lease(A.cfg, &l1);
    assert_string_equal(l1.instance, l0.instance);
    assert_string_not_equal(l1.session, l0.session);
    assert_true(gfs_lease_fenced(&l1, l0.epoch, 1000000));
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_open(D.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &d), 0);
    expect_byte(d, BLK, 0x22);
    assert_int_equal(glidefs_volume_close(d), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(D.cfg);
    tu_env_done(&env);
}

/* A copy of a live writer's cache dir, opened after the writer's next
 * heartbeat: the lease names the copy's instance but a generation its
 * record never wrote. Read-only; the original writes on. */
static void test_copy_after_heartbeat(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identc");
    struct tu_node A, C;
    node_init(&A, &env, "a", "n", "3000"); /* heartbeat every second */
    node_init(&C, &env, "c", "n", "3000");
    glidefs_volume *a, *c;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    put_byte(a, 0, 0x31);
    assert_int_equal(glidefs_flush(a), 0);
    copy_dir(A.cache, C.cache);
    /* the copy may hold the intent of a heartbeat A had not sent yet (the
     * record goes first): C is told apart once the lease carries a
     * generation past the one its copied record names */
    char wdir[700];
    snprintf(wdir, sizeof wdir, "%s/vm", C.cache);
    int wfd;
    assert_int_equal(gfs_wrec_open(wdir, 0, &wfd), 0);
    struct gfs_wrec rec;
    assert_int_equal(gfs_wrec_read(wfd, &rec), 0);
    close(wfd);
    wait_heartbeat(A.cfg, rec.cur.gen);
    struct gfs_lease l;
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_volume_read_only(c), 1);
    assert_int_equal(glidefs_promote(c, 0), -EBUSY);
    /* the original is untouched: still the writer, several heartbeats on */
    read_lease(A.cfg, &l);
    wait_heartbeat(A.cfg, l.gen + 2);
    assert_int_equal(stats_of(a).fenced, 0);
    put_byte(a, BLK, 0x32);
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_close(c), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(C.cfg);
    tu_env_done(&env);
}

/* A copy opened before the original's next heartbeat looks exactly like a
 * restart. It resumes in a new epoch; the original is fenced (it learns at
 * its next lease check) and nothing it writes or uploads after the copy took
 * over is ever seen by a reader. Never two writers of one epoch. */
static void test_copy_before_heartbeat(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identb");
    struct tu_node A, C, D;
    node_init(&A, &env, "a", "n", "120000"); /* next heartbeat in 40 s */
    node_init(&C, &env, "c", "n", "3000");
    node_init(&D, &env, "d", "n", "3000");
    /* A learns of the new epoch when it checks the lease before deleting */
    tu_set(A.cfg, "compaction.min_live_pct", "95");
    tu_set(A.cfg, "compaction.grace_ms", "0");
    glidefs_volume *a, *c, *d;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    put_byte(a, 0, 0x41);
    assert_int_equal(glidefs_drain(a, -1), 0);
    put_byte(a, BLK, 0x42); /* flushed, in the journal the copy takes along */
    assert_int_equal(glidefs_flush(a), 0);
    copy_dir(A.cache, C.cache);
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_volume_read_only(c), 0);
    uint64_t ea = stats_of(a).lease_epoch;
    assert_int_equal(stats_of(c).lease_epoch, ea + 1);
    expect_byte(c, BLK, 0x42);
    put_byte(c, 2 * BLK, 0xC1); /* not uploaded yet: C has no manifest */
    /* the original does not know yet: it writes and uploads in its epoch
     * (a segment and a manifest newer than any of the store's), which
     * leaves its first segment dead for it */
    put_byte(a, 0, 0xAA);
    put_byte(a, 3 * BLK, 0xAB);
    assert_int_equal(glidefs_drain(a, -1), 0);
    /* its next look at the lease (before deleting that segment) fences it */
    struct glidefs_compact_result res = {0};
    int r = glidefs_compact(a, &res, sizeof res);
    assert_true(r == 0 || r == -EROFS);
    assert_int_equal(res.segments_deleted, 0);
    assert_int_equal(stats_of(a).fenced, 1);
    uint8_t buf[4096] = {0};
    assert_int_equal(glidefs_pwrite(a, buf, sizeof buf, 0, 0), -EROFS);
    /* a fresh reader now: the fence of A's epoch hides its late manifest
     * and segment */
    assert_int_equal(glidefs_volume_open(D.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &d), 0);
    expect_byte(d, 0, 0x41);
    expect_byte(d, 3 * BLK, 0x00);
    assert_int_equal(glidefs_volume_close(d), 0);
    assert_int_equal(glidefs_drain(c, -1), 0);
    /* and once the copy drained: its data, never the original's late writes */
    assert_int_equal(glidefs_volume_open(D.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &d), 0);
    expect_byte(d, 0, 0x41);
    expect_byte(d, BLK, 0x42);
    expect_byte(d, 2 * BLK, 0xC1);
    expect_byte(d, 3 * BLK, 0x00);
    assert_int_equal(glidefs_volume_close(d), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    /* reopened, the original follows the copy */
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 1);
    expect_byte(a, 0, 0x41);
    expect_byte(a, 2 * BLK, 0xC1);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(c), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(C.cfg);
    glidefs_config_free(D.cfg);
    tu_env_done(&env);
}

/* Two processes with one writer's memory - the session and the
 * generations included - as a VM snapshot of the running process restored
 * twice would be: both heartbeat. The first to write wins; the other's
 * write fails and the lease then holds a generation it never sent (each
 * write steps it at random), so it is fenced. Exactly one writer is left. */
static void test_twin_processes(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identt");
    struct tu_node A;
    node_init(&A, &env, "a", "n", "900"); /* heartbeat every 300 ms */
    glidefs_volume *a;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    put_byte(a, 0, 0x91);
    assert_int_equal(glidefs_drain(a, -1), 0);
    /* no thread may hold a lock across the fork */
    gfs_own_stop(a);
    gfs_syncer_stop(a);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        char fenced = 0;
        if (gfs_own_start(a) == 0) {
            double end = mono() + 2; /* heartbeats every 300 ms meet well before */
            while (!(fenced = (char)stats_of(a).fenced) && mono() < end)
                poll(NULL, 0, 20);
        }
        _exit(write(p[1], &fenced, 1) == 1 ? 0 : 1);
    }
    close(p[1]);
    assert_int_equal(gfs_own_start(a), 0);
    char child_fenced = 0;
    assert_int_equal(read(p[0], &child_fenced, 1), 1);
    close(p[0]);
    waitpid(pid, NULL, 0);
    int parent_fenced = stats_of(a).fenced;
    assert_int_equal(parent_fenced + child_fenced, 1);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    tu_env_done(&env);
}

/* A lease written by a build without instance ids: format 1, the node id
 * alone. The cache dir that holds its epoch's journal and never wrote a
 * lease itself resumes it, once; a second such dir (two old daemons on one
 * host) then finds another writer; a dir of another node id never. */
static void test_legacy_lease(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identl");
    struct tu_node A, B, E;
    node_init(&A, &env, "a", "old-node", "60000");
    node_init(&B, &env, "b", "old-node", "60000");
    node_init(&E, &env, "e", "other-node", "60000");
    crashed_writer(A.cfg, 0x51, 0x52);
    /* what the older build left: no writer record, a format 1 lease */
    char p[700];
    snprintf(p, sizeof p, "%s/vm/writer", A.cache);
    assert_int_equal(unlink(p), 0);
    struct gfs_lease l;
    read_lease(A.cfg, &l);
    struct gfs_objstore *st = NULL;
    char err[256], txt[512];
    assert_int_equal(gfs_objstore_open(A.cfg, NULL, &st, err, sizeof err), 0);
    int n = snprintf(txt, sizeof txt,
                     "{\"epoch\": %llu, \"fences\": {}, \"format\": 1, \"heartbeat_ms\": %lld, "
                     "\"node_id\": \"old-node\", \"state\": \"held\"}",
                     (unsigned long long)l.epoch, (long long)l.heartbeat_ms);
    assert_int_equal(st->ops->put(st, "nbd/vm/lease", txt, (size_t)n, 0, NULL), 0);
    copy_dir(A.cache, B.cache);
    copy_dir(A.cache, E.cache);
    snprintf(p, sizeof p, "%s/.instance", B.cache);
    assert_int_equal(unlink(p), 0); /* B: another dir of the old build on that host */
    snprintf(p, sizeof p, "%s/.instance", E.cache);
    assert_int_equal(unlink(p), 0);

    glidefs_volume *e, *a, *b;
    assert_int_equal(glidefs_volume_open(E.cfg, "vm", SZ, 0, &e), 0);
    assert_int_equal(glidefs_volume_read_only(e), 1); /* another node's, live */
    assert_int_equal(glidefs_volume_close(e), 0);
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_int_equal(glidefs_volume_read_only(a), 0);
    assert_int_equal(stats_of(a).fenced_bytes, 0);
    expect_byte(a, BLK, 0x52); /* its journal went on */
    struct gfs_lease l2;
    read_lease(A.cfg, &l2);
    assert_int_equal(l2.format, 2);
    assert_int_equal(l2.epoch, l.epoch + 1);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    gfs_objstore_close(st);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    glidefs_config_free(E.cfg);
    tu_env_done(&env);
}

/* ------------------------------------------------------------------------ */
/* stores that do not honour conditional writes                               */

enum { HONEST, IGNORES, BREAKS, IGNORES_INM, IGNORES_IM, LANDS_TWICE };

/* Another store in front of a real one that drops the conditions of PUTs
 * (as older RGW/MinIO releases, s3rver and some gateways do) or refuses
 * every If-Match. Everything else goes through. */
struct lax_store {
    struct gfs_objstore base;
    struct gfs_objstore *real;
    int mode;
    int twice_done; /* LANDS_TWICE: the first create already refused */
};

#define LAX(s) ((struct lax_store *)(s))

static int lax_put(struct gfs_objstore *s, const char *key, const void *buf, size_t len,
                   unsigned flags, const char *etag)
{
    struct lax_store *l = LAX(s);
    if (l->mode == IGNORES)
        return l->real->ops->put(l->real, key, buf, len, 0, NULL);
    if (l->mode == BREAKS && etag)
        return -ECANCELED;
    if (l->mode == IGNORES_INM)
        flags = 0; /* only If-None-Match dropped */
    if (l->mode == IGNORES_IM)
        etag = NULL; /* only If-Match dropped */
    if (l->mode == LANDS_TWICE && (flags & GFS_PUT_IF_NONE_MATCH) && !l->twice_done) {
        /* a create sent twice, the first answer lost: the second is
         * refused by the first, which stored our bytes */
        l->twice_done = 1;
        int r = l->real->ops->put(l->real, key, buf, len, flags, etag);
        return r < 0 ? r : -EEXIST;
    }
    return l->real->ops->put(l->real, key, buf, len, flags, etag);
}

static int lax_get_range(struct gfs_objstore *s, const char *key, uint64_t off, size_t len,
                         void *buf, size_t *got)
{
    return LAX(s)->real->ops->get_range(LAX(s)->real, key, off, len, buf, got);
}

static int lax_get(struct gfs_objstore *s, const char *key, size_t max, void **out,
                   size_t *outlen, struct gfs_obj_info *info)
{
    return LAX(s)->real->ops->get(LAX(s)->real, key, max, out, outlen, info);
}

static int lax_head(struct gfs_objstore *s, const char *key, struct gfs_obj_info *info)
{
    return LAX(s)->real->ops->head(LAX(s)->real, key, info);
}

static int lax_del(struct gfs_objstore *s, const char *key)
{
    return LAX(s)->real->ops->del(LAX(s)->real, key);
}

static int lax_list(struct gfs_objstore *s, const char *prefix, const char *after,
                    gfs_list_cb cb, void *arg)
{
    return LAX(s)->real->ops->list(LAX(s)->real, prefix, after, cb, arg);
}

static void lax_destroy(struct gfs_objstore *s)
{
    gfs_objstore_close(LAX(s)->real);
    free(s);
}

static const struct gfs_objstore_ops lax_ops = {
    .put = lax_put,
    .get_range = lax_get_range,
    .get = lax_get,
    .head = lax_head,
    .del = lax_del,
    .list = lax_list,
    .destroy = lax_destroy,
};

static struct gfs_objstore *lax_open(const glidefs_config *cfg, int mode)
{
    struct lax_store *l = calloc(1, sizeof *l);
    assert_non_null(l);
    char err[256];
    assert_int_equal(gfs_objstore_open(cfg, NULL, &l->real, err, sizeof err), 0);
    l->base.ops = &lax_ops;
    l->mode = mode;
    return &l->base;
}

static int count_key(void *arg, const char *key, uint64_t size)
{
    (void)key;
    (void)size;
    ++*(int *)arg;
    return 0;
}

static void test_probe(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identp");
    glidefs_config *cfg = tu_config(&env, "64M", "20");
    /* LANDS_TWICE: the probe's create refused by its own earlier send (a
     * resend the backend could not see, as under connection resets): the
     * probe goes on (it gave up with -EEXIST and failed a takeover) */
    const int want[6] = {GLIDEFS_STORE_COND_OK, GLIDEFS_STORE_COND_IGNORED,
                         GLIDEFS_STORE_COND_BROKEN, GLIDEFS_STORE_COND_IGNORED,
                         GLIDEFS_STORE_COND_IGNORED, GLIDEFS_STORE_COND_OK};
    for (int mode = HONEST; mode <= LANDS_TWICE; mode++) {
        struct gfs_objstore *st = lax_open(cfg, mode);
        int s = -1;
        char detail[256];
        assert_int_equal(gfs_store_probe(st, NULL, &s, detail, sizeof detail), 0);
        assert_int_equal(s, want[mode]);
        assert_true(want[mode] == GLIDEFS_STORE_COND_OK ? detail[0] == 0 : detail[0] != 0);
        int left = 0;
        assert_int_equal(st->ops->list(st, "probe/", NULL, count_key, &left), 0);
        assert_int_equal(left, 0); /* the scratch object is gone */
        gfs_objstore_close(st);
    }
    /* the public check: the file:// store honours them, and cfg remembers */
    struct glidefs_store_info info;
    char err[256] = "";
    assert_int_equal(glidefs_store_check_info(cfg, &info, sizeof info, err, sizeof err), 0);
    assert_int_equal(info.conditional_writes, GLIDEFS_STORE_COND_OK);
    glidefs_volume *v;
    assert_int_equal(glidefs_volume_open(cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &v), 0);
    struct glidefs_stats st = stats_of(v);
    assert_int_equal(st.store_conditional, GLIDEFS_STORE_COND_OK);
    assert_true(st.store_probe_ms > 0);
    assert_int_equal(glidefs_volume_close(v), 0);
    glidefs_config_free(cfg);
    tu_env_done(&env);
}

/* B would take the lease from A (released, expired or forced): on a store
 * that ignores conditional writes it refuses, with -ENOLCK, unless
 * storage.unsafe_accept_split_brain_on_lax_store is set. A's own restart
 * and a brand-new volume stay possible. */
static void test_lax_store_refuses_takeover(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identx");
    struct tu_node A, B;
    node_init(&A, &env, "a", "node-a", "60000");
    node_init(&B, &env, "b", "node-b", "60000");
    glidefs_volume *a, *b;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    put_byte(a, 0, 0x61);
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_volume_read_only(b), 1);
    gfs_objstore_close(b->own.probe_store);
    b->own.probe_store = lax_open(B.cfg, IGNORES);
    assert_int_equal(glidefs_promote(b, 1), -ENOLCK); /* forced */
    assert_int_equal(stats_of(b).store_conditional, GLIDEFS_STORE_COND_IGNORED);
    assert_int_equal(glidefs_release(a, -1), 0);
    assert_int_equal(glidefs_promote(b, 0), -ENOLCK); /* released by another node */
    assert_int_equal(glidefs_volume_read_only(b), 1);
    /* its own again: A takes back what it released */
    gfs_objstore_close(a->own.probe_store);
    a->own.probe_store = lax_open(A.cfg, IGNORES);
    assert_int_equal(glidefs_promote(a, 0), 0);
    assert_int_equal(glidefs_release(a, -1), 0);
    /* with the option the operator accepts the risk */
    b->own.unsafe_lax = 1;
    assert_int_equal(glidefs_promote(b, 0), 0);
    expect_byte(b, 0, 0x61);
    assert_int_equal(glidefs_volume_close(b), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

/* On a store that ignores conditional writes a writer reads the lease
 * before each heartbeat: taken over (by a node with the unsafe option), it
 * notices and is fenced, instead of overwriting the new lease with its
 * If-Match PUT that the store would accept. */
static void test_lax_store_heartbeat_looks_first(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identh");
    struct tu_node A, B;
    node_init(&A, &env, "a", "node-a", "900"); /* heartbeat every 300 ms */
    node_init(&B, &env, "b", "node-b", "60000");
    tu_set(B.cfg, "storage.unsafe_accept_split_brain_on_lax_store", "true");
    glidefs_volume *a, *b;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    /* from now on A's own requests go through a lax store (a test-only
     * swap of the pointer its threads read; the real one is put back) */
    struct gfs_objstore *real = a->store;
    a->store = lax_open(A.cfg, IGNORES);
    pthread_mutex_lock(&a->lock);
    a->own.probe_state = GLIDEFS_STORE_COND_IGNORED;
    a->own.probe_wall_ms = gfs_wall_ms();
    pthread_mutex_unlock(&a->lock);
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    gfs_objstore_close(b->own.probe_store);
    b->own.probe_store = lax_open(B.cfg, IGNORES);
    /* B takes right after one of A's heartbeats: not between A's read of
     * the lease and its write, where a lax store lets A overwrite B's take
     * (the race the option's name accepts; under load it failed this test) */
    struct gfs_lease hb;
    read_lease(A.cfg, &hb);
    wait_heartbeat(A.cfg, hb.gen);
    assert_int_equal(glidefs_promote(b, 1), 0);
    double end = mono() + 10;
    while (!stats_of(a).fenced && mono() < end)
        poll(NULL, 0, 20); /* A's next heartbeat */
    assert_int_equal(stats_of(a).fenced, 1);
    struct gfs_lease l;
    read_lease(B.cfg, &l);
    assert_string_equal(l.instance, stats_of(b).lease_instance); /* still B's */
    assert_string_equal(l.node_id, "node-b");
    put_byte(b, 0, 0x81);
    assert_int_equal(glidefs_drain(b, -1), 0);
    gfs_own_stop(a); /* no thread uses a->store while it is swapped back */
    gfs_syncer_stop(a);
    gfs_objstore_close(a->store);
    a->store = real;
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(b), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    tu_env_done(&env);
}

/* A node fenced while it still has unsynced writes of its lost epoch must
 * not promote: as the new epoch's writer it would upload them over the
 * newer writer's data. Reopened, it keeps them aside and may promote. */
static void test_fenced_dirty_no_promote(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "identf");
    struct tu_node A, C;
    node_init(&A, &env, "a", "node-a", "900"); /* heartbeat every 300 ms */
    node_init(&C, &env, "c", "node-c", "60000");
    glidefs_volume *a, *c;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    put_byte(a, 0, 0x71);
    assert_int_equal(glidefs_drain(a, -1), 0);
    put_byte(a, 0, 0x7A); /* not uploaded */
    assert_int_equal(glidefs_volume_open(C.cfg, "vm", SZ, 0, &c), 0);
    assert_int_equal(glidefs_promote(c, 1), 0);
    double end = mono() + 15;
    while (!stats_of(a).fenced && mono() < end)
        poll(NULL, 0, 20); /* A's next heartbeat finds the new epoch */
    assert_int_equal(stats_of(a).fenced, 1);
    assert_int_equal(glidefs_release(c, -1), 0);
    assert_int_equal(glidefs_promote(a, 0), -ESTALE);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, 0, &a), 0);
    assert_true(stats_of(a).fenced_bytes > 0);
    assert_int_equal(glidefs_volume_read_only(a), 0); /* took the released lease */
    expect_byte(a, 0, 0x71);
    assert_int_equal(glidefs_volume_close(a), 0);
    assert_int_equal(glidefs_volume_close(c), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(C.cfg);
    tu_env_done(&env);
}

/* Every take is a new epoch and fences the one before, so a volume that is
 * reconnected (or restarted) often gathers fences; the lease holds at most
 * GFS_LEASE_MAX_FENCES. The floor keeps the table small (lease.h): after
 * more takes than the table holds, with and without writes between them,
 * the volume still opens read-write, the lease holds few fences, a writer
 * deposed long ago that uploads late is invisible to a fresh reader and to
 * a follower, and every byte written reads back. */
static void test_fences_bounded(void **state)
{
    (void)state;
    struct tu_env env;
    tu_env_init(&env, "fences");
    struct tu_node A, B, D;
    node_init(&A, &env, "a", "n", "600000"); /* never looks at the lease again */
    node_init(&B, &env, "b", "n", "600000");
    node_init(&D, &env, "d", "n", "600000");
    glidefs_volume *a, *b, *d, *f;
    assert_int_equal(glidefs_volume_open(A.cfg, "vm", SZ, GLIDEFS_OPEN_CREATE, &a), 0);
    put_byte(a, 0, 0x41);
    assert_int_equal(glidefs_drain(a, -1), 0);
    /* B takes it by force while A still holds it: A is a deposed writer
     * that does not know it */
    assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
    assert_int_equal(glidefs_promote(b, 1), 0);
    uint64_t ea = stats_of(a).lease_epoch;
    assert_int_equal(glidefs_volume_close(b), 0);
    /* more takes than the fence table holds: the first 200 write nothing
     * (reconnects: no manifest), then every 16th writes a block */
    const unsigned takes = GFS_LEASE_MAX_FENCES + 40;
    struct gfs_lease l;
    for (unsigned i = 0; i < takes; i++) {
        if (i == 200) {
            read_lease(B.cfg, &l);
            if (l.nfences > 64)
                fail_msg("%u fences in the lease after 200 takes without writes", l.nfences);
        }
        assert_int_equal(glidefs_volume_open(B.cfg, "vm", SZ, 0, &b), 0);
        assert_int_equal(glidefs_volume_read_only(b), 0);
        if (i >= 200 && i % 16 == 0) {
            put_byte(b, (uint64_t)(1 + i / 16 % 60) * BLK, (uint8_t)(i / 16 + 1));
            if (i % 32 == 0)
                assert_int_equal(glidefs_drain(b, -1), 0); /* else uploaded at close */
        }
        assert_int_equal(glidefs_volume_close(b), 0);
    }
    read_lease(B.cfg, &l);
    assert_true(l.epoch > ea + takes);
    if (l.nfences > 64)
        fail_msg("%u fences in the lease after %u takes", l.nfences, takes);
    assert_true(l.floor > ea); /* A's epoch is below it */
    /* a follower, then A uploads late in its long-gone epoch */
    assert_int_equal(glidefs_volume_open(D.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &f), 0);
    put_byte(a, 0, 0xEE);
    put_byte(a, 62 * BLK, 0xEF);
    assert_int_equal(glidefs_drain(a, -1), 0);
    assert_int_equal(glidefs_volume_close(a), 0);
    struct tu_node E;
    node_init(&E, &env, "e", "n", "600000");
    assert_int_equal(glidefs_volume_open(E.cfg, "vm", SZ, GLIDEFS_OPEN_READONLY, &d), 0);
    for (glidefs_volume **vp = (glidefs_volume *[]){d, f, NULL}; *vp; vp++) {
        expect_byte(*vp, 0, 0x41);
        expect_byte(*vp, 62 * BLK, 0x00);
        /* the last write of each block wins: the highest i of its slot */
        for (uint64_t k = 1; k <= 60; k++) {
            unsigned last = 0;
            int any = 0;
            for (unsigned i = 208; i < takes; i += 16)
                if (1 + i / 16 % 60 == k) {
                    last = i / 16 + 1;
                    any = 1;
                }
            expect_byte(*vp, k * BLK, any ? (uint8_t)last : 0);
        }
    }
    assert_int_equal(glidefs_volume_close(d), 0);
    assert_int_equal(glidefs_volume_close(f), 0);
    glidefs_config_free(A.cfg);
    glidefs_config_free(B.cfg);
    glidefs_config_free(D.cfg);
    glidefs_config_free(E.cfg);
    tu_env_done(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_cache_dirs_one_node_id),
        cmocka_unit_test(test_restart_resumes),
        cmocka_unit_test(test_copy_after_heartbeat),
        cmocka_unit_test(test_copy_before_heartbeat),
        cmocka_unit_test(test_twin_processes),
        cmocka_unit_test(test_legacy_lease),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_lax_store_refuses_takeover),
        cmocka_unit_test(test_lax_store_heartbeat_looks_first),
        cmocka_unit_test(test_fenced_dirty_no_promote),
        cmocka_unit_test(test_fences_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
