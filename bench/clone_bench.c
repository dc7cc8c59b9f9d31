/*
 * clone_bench — issue 9: how long a snapshot and a clone take, and whether
 * that depends on the parent's size; how long a clone woken on an empty
 * cache takes to open and to answer its first read. Built and run by
 * bench/clone_bench.sh (gcc against a build dir's libglidefs), not by meson.
 *
 *   clone_bench DIR REPS WAKES SIZE_GIB...
 *
 * Store: file://DIR/store, or S3 when S3_ENDPOINT and S3_BUCKET are set
 * (tests/s3/s3env.py: s3rver behind the strict SigV4 proxy); cache under
 * DIR. One parent per size, "p<SIZE_GIB>g": SIZE_GIB GiB, one 4 KiB write
 * (seeded random bytes) every 16 MiB over the whole volume, so its manifest
 * grows with its size (64 blocks for 1 GiB, 4096 for 64 GiB); drained;
 * snapshot "s1" (timed). Then, the sizes interleaved (so that a drift of
 * the machine or the store hits every size alike):
 *   - REPS rounds of one clone of s1 per size, each timed (glidefs_clone);
 *   - REPS rounds of one clone of the live state (implicit snapshot) per
 *     size, each timed;
 *   - WAKES rounds of: per size, a clone of s1 woken in a fresh process on
 *     a new, empty cache directory: glidefs_volume_open() (read-write,
 *     takes the lease), then the first 4 KiB read of a block the parent
 *     wrote (fetched from the store) and a read of a hole; bytes checked.
 * Prints CSV rows "scenario,metric,unit,system,value" on stdout (system is
 * "<SIZE_GIB> GiB parent") and progress on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "glidefs/glidefs.h"

#define STRIDE (16ull << 20)
#define WBLOCK 4096u

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "clone_bench: %s: %s\n", what, glidefs_strerror(r));
    exit(1);
}

static void quiet_log(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level <= GLIDEFS_LOG_WARN)
        fprintf(stderr, "glidefs: %s\n", msg);
}

static glidefs_config *mkcfg(const char *dir, const char *cachesub)
{
    glidefs_config *cfg = glidefs_config_new();
    char cache[4200], store[4200], err[256] = "";
    snprintf(cache, sizeof cache, "%s/%s", dir, cachesub);
    glidefs_config_set_log(cfg, quiet_log, NULL, GLIDEFS_LOG_WARN);
    int r = glidefs_config_set(cfg, "cache.dir", cache, err, sizeof err);
    if (r == 0)
        r = glidefs_config_set(cfg, "cache.disk_size", "4G", err, sizeof err);
    const char *ep = getenv("S3_ENDPOINT"), *bucket = getenv("S3_BUCKET");
    if (ep && *ep && bucket && *bucket) {
        snprintf(store, sizeof store, "s3://%s/clonebench", bucket);
        if (r == 0)
            r = glidefs_config_set(cfg, "storage.endpoint", ep, err, sizeof err);
        if (r == 0)
            r = glidefs_config_set(cfg, "storage.access_key_id", "S3RVER", err, sizeof err);
        if (r == 0)
            r = glidefs_config_set(cfg, "storage.secret_access_key", "S3RVER", err, sizeof err);
    } else {
        snprintf(store, sizeof store, "file://%s/store", dir);
    }
    if (r == 0)
        r = glidefs_config_set(cfg, "storage.url", store, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "clone_bench: config: %s\n", err);
        exit(1);
    }
    return cfg;
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The parent's 4 KiB block number i (seeded by i). */
static void block_bytes(uint64_t i, unsigned char *buf)
{
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (i + 1);
    for (unsigned k = 0; k < WBLOCK; k += 8) {
        uint64_t x = rng(&s);
        memcpy(buf + k, &x, 8);
    }
}

static uint64_t block_off(uint64_t i)
{
    return i * STRIDE + ((i * 37) % (STRIDE / WBLOCK)) * WBLOCK; /* spread within the stride */
}

static const char *sys_name(unsigned gib)
{
    static char s[32];
    snprintf(s, sizeof s, "%u GiB parent", gib);
    return s;
}

static void row(const char *scen, const char *metric, const char *unit, unsigned gib, double v)
{
    printf("\"%s\",%s,%s,%s,%.3f\n", scen, metric, unit, sys_name(gib), v);
    fflush(stdout);
}

/* In a fresh process: open clone `name` on an empty cache, read. */
static int wake(const char *dir, const char *name, unsigned gib, int k)
{
    char sub[64];
    snprintf(sub, sizeof sub, "wake-cache-%u-%d", gib, k);
    glidefs_config *cfg = mkcfg(dir, sub);
    glidefs_volume *v;
    double t0 = now_ms();
    int r = glidefs_volume_open(cfg, name, 0, 0, &v);
    if (r < 0)
        die("open clone", r);
    double t1 = now_ms();
    uint64_t nblocks = ((uint64_t)gib << 30) / STRIDE;
    uint64_t i = nblocks / 2 + (uint64_t)k; /* a block in the middle */
    unsigned char want[WBLOCK], got[WBLOCK];
    block_bytes(i, want);
    r = glidefs_pread(v, got, WBLOCK, block_off(i));
    double t2 = now_ms();
    if (r < 0)
        die("first read", r);
    if (memcmp(want, got, WBLOCK) != 0) {
        fprintf(stderr, "clone_bench: %s: block %" PRIu64 " differs from the parent's\n", name, i);
        return 1;
    }
    r = glidefs_pread(v, got, WBLOCK, block_off(i) + STRIDE / 2);
    double t3 = now_ms();
    for (unsigned b = 0; r == 0 && b < WBLOCK; b++)
        if (got[b])
            r = -EILSEQ;
    if (r < 0)
        die("hole read", r);
    struct glidefs_stats st;
    glidefs_stats(v, &st, sizeof st);
    const char *sc = "clone woken on an empty cache";
    row(sc, "open", "ms", gib, t1 - t0);
    row(sc, "first read of a parent's block (from the store)", "ms", gib, t2 - t1);
    row(sc, "open + first read", "ms", gib, t2 - t0);
    row(sc, "then a read of a hole", "ms", gib, t3 - t2);
    row(sc, "store GETs until the first read", "count", gib, (double)st.store_gets);
    r = glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return r < 0;
}

#define MAX_SIZES 8

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: clone_bench DIR REPS WAKES SIZE_GIB...\n");
        return 2;
    }
    const char *dir = argv[1];
    int reps = atoi(argv[2]);
    int wakes = atoi(argv[3]);
    int nsizes = argc - 4;
    unsigned gibs[MAX_SIZES];
    if (reps < 1 || wakes < 0 || wakes > reps || nsizes > MAX_SIZES) {
        fprintf(stderr, "clone_bench: bad REPS or WAKES, or too many sizes\n");
        return 2;
    }
    glidefs_config *cfg = mkcfg(dir, "cache");
    glidefs_volume *p[MAX_SIZES];
    char name[64];
    int r;
    for (int z = 0; z < nsizes; z++) {
        unsigned gib = gibs[z] = (unsigned)atoi(argv[4 + z]);
        if (gib < 1) {
            fprintf(stderr, "clone_bench: bad SIZE_GIB %s\n", argv[4 + z]);
            return 2;
        }
        snprintf(name, sizeof name, "p%ug", gib);
        uint64_t size = (uint64_t)gib << 30, nblocks = size / STRIDE;
        r = glidefs_volume_open(cfg, name, size, GLIDEFS_OPEN_CREATE | GLIDEFS_OPEN_EXCLUSIVE,
                                &p[z]);
        if (r < 0)
            die("create parent", r);
        fprintf(stderr, "clone_bench: %s: %" PRIu64 " blocks of 4 KiB, one per 16 MiB\n", name,
                nblocks);
        double t0 = now_ms();
        unsigned char buf[WBLOCK];
        for (uint64_t i = 0; i < nblocks; i++) {
            block_bytes(i, buf);
            if ((r = glidefs_pwrite(p[z], buf, WBLOCK, block_off(i), 0)) < 0)
                die("write", r);
        }
        if ((r = glidefs_drain(p[z], -1)) < 0)
            die("drain", r);
        row("parent setup", "blocks written", "count", gib, (double)nblocks);
        row("parent setup", "write + drain", "ms", gib, now_ms() - t0);
        t0 = now_ms();
        if ((r = glidefs_snapshot_create(p[z], "s1")) < 0)
            die("snapshot", r);
        row("snapshot (nothing dirty)", "time", "ms", gib, now_ms() - t0);
    }
    fprintf(stderr, "clone_bench: %d rounds of clones of s1\n", reps);
    for (int i = 0; i < reps; i++)
        for (int z = 0; z < nsizes; z++) {
            snprintf(name, sizeof name, "c%ug-%d", gibs[z], i);
            double t0 = now_ms();
            if ((r = glidefs_clone(p[z], "s1", name)) < 0)
                die("clone", r);
            row("clone of a snapshot (glidefs_clone)", "time", "ms", gibs[z], now_ms() - t0);
        }
    fprintf(stderr, "clone_bench: %d rounds of clones of the live state\n", reps);
    for (int i = 0; i < reps; i++)
        for (int z = 0; z < nsizes; z++) {
            snprintf(name, sizeof name, "l%ug-%d", gibs[z], i);
            double t0 = now_ms();
            if ((r = glidefs_clone(p[z], NULL, name)) < 0)
                die("live clone", r);
            row("clone of the live state (glidefs_clone, implicit snapshot)", "time", "ms",
                gibs[z], now_ms() - t0);
        }
    for (int z = 0; z < nsizes; z++)
        if ((r = glidefs_volume_close(p[z])) < 0)
            die("close parent", r);
    glidefs_config_free(cfg);

    fprintf(stderr, "clone_bench: %d rounds of woken clones\n", wakes);
    int bad = 0;
    for (int k = 0; k < wakes; k++)
        for (int z = 0; z < nsizes; z++) {
            snprintf(name, sizeof name, "c%ug-%d", gibs[z], k);
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 1;
            }
            if (pid == 0)
                _exit(wake(dir, name, gibs[z], k));
            int st = 0;
            waitpid(pid, &st, 0);
            bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        }
    return bad;
}
