/*
 * lib_bench — in-process latency and IOPS of libglidefs against plain
 * pwrite/pread on a file in the same directory, in the same run.
 *
 *   lib_bench DIR [SECONDS_PER_PHASE] [THREADS]
 *
 * Phases (each against the plain file first, then the volume):
 *   write: 4 KiB random pwrite, one thread, per-op latency p50/p99/p99.9
 *   randwrite: 4 KiB random writes, THREADS threads, IOPS
 *   randread: 4 KiB random reads of data written before, THREADS threads, IOPS
 *             (volume: once from the journal, once after drain from the clean cache)
 * The volume lives on a file:// store inside DIR with a 32 GiB cache budget
 * (phases write less than its journal half) and a sync delay longer than the
 * run, so the syncer does not compete for the two cores while a phase is
 * measured; the drain before the clean-cache phase uploads everything. Prints a table and the ratios.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "glidefs/glidefs.h"

#define AREA (256ull << 20)
#define IO 4096

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct target {
    int fd;              /* plain file, or -1 */
    glidefs_volume *vol; /* or the volume */
};

static int do_write(struct target *t, const void *buf, uint64_t off)
{
    if (t->vol)
        return glidefs_pwrite(t->vol, buf, IO, off, 0);
    return pwrite(t->fd, buf, IO, (off_t)off) == IO ? 0 : -errno;
}

static int do_read(struct target *t, void *buf, uint64_t off)
{
    if (t->vol)
        return glidefs_pread(t->vol, buf, IO, off);
    return pread(t->fd, buf, IO, (off_t)off) == IO ? 0 : -errno;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct lat {
    double p50, p99, p999;
};

static struct lat latency_phase(struct target *t, double secs)
{
    size_t cap = 4 << 20, n = 0;
    double *v = malloc(cap * sizeof *v);
    uint8_t *buf = aligned_alloc(4096, IO);
    memset(buf, 0x5a, IO);
    uint64_t s = 12345;
    double end = now() + secs;
    while (n < cap) {
        uint64_t off = (xs(&s) % (AREA / IO)) * IO;
        double a = now();
        if (do_write(t, buf, off) < 0) {
            fprintf(stderr, "write failed\n");
            exit(1);
        }
        double b = now();
        v[n++] = (b - a) * 1e6;
        if (b > end)
            break;
    }
    qsort(v, n, sizeof *v, cmp_d);
    struct lat l = {v[n / 2], v[n * 99 / 100], v[n * 999 / 1000]};
    free(v);
    free(buf);
    return l;
}

struct worker {
    struct target *t;
    int write;
    double end;
    uint64_t ops;
    uint64_t seed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = aligned_alloc(4096, IO);
    memset(buf, 0xa5, IO);
    uint64_t ops = 0;
    while (1) {
        for (int i = 0; i < 256; i++) {
            uint64_t off = (xs(&w->seed) % (AREA / IO)) * IO;
            int r = w->write ? do_write(w->t, buf, off) : do_read(w->t, buf, off);
            if (r < 0) {
                fprintf(stderr, "io failed: %d\n", r);
                exit(1);
            }
        }
        ops += 256;
        if (now() > w->end)
            break;
    }
    w->ops = ops;
    free(buf);
    return NULL;
}

static double iops_phase(struct target *t, int write, int threads, double secs)
{
    pthread_t th[64];
    struct worker w[64];
    double start = now();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){t, write, start + secs, 0, 1000 + (uint64_t)i * 7777};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].ops;
    }
    return (double)total / (now() - start);
}

static void fill_area(struct target *t)
{
    uint8_t *buf = malloc(1 << 20);
    memset(buf, 0x11, 1 << 20);
    for (uint64_t off = 0; off < AREA; off += 1 << 20) {
        int r = t->vol ? glidefs_pwrite(t->vol, buf, 1 << 20, off, 0)
                       : (pwrite(t->fd, buf, 1 << 20, (off_t)off) == (1 << 20) ? 0 : -1);
        if (r < 0) {
            fprintf(stderr, "fill failed\n");
            exit(1);
        }
    }
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: lib_bench DIR [SECONDS_PER_PHASE] [THREADS]\n");
        return 2;
    }
    const char *dir = argv[1];
    double secs = argc > 2 ? atof(argv[2]) : 5;
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    if (threads < 1 || threads > 64)
        threads = 2;
    char path[4096];
    mkdir(dir, 0700);

    /* plain file peer */
    snprintf(path, sizeof path, "%s/plain.img", dir);
    struct target plain = {open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), NULL};
    if (plain.fd < 0 || posix_fallocate(plain.fd, 0, AREA) != 0) {
        perror(path);
        return 1;
    }
    fill_area(&plain);
    fsync(plain.fd);

    /* the volume */
    glidefs_config *cfg = glidefs_config_new();
    char cache[4200], store[4200];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(store, sizeof store, "file://%s/store", dir);
    char err[256];
    if (glidefs_config_set(cfg, "cache.dir", cache, err, sizeof err) < 0 ||
        glidefs_config_set(cfg, "storage.url", store, err, sizeof err) < 0 ||
        glidefs_config_set(cfg, "cache.disk_size", "32G", err, sizeof err) < 0 ||
        /* keep the syncer out of the measured phases; drain runs it explicitly */
        glidefs_config_set(cfg, "servers.nbd.sync_delay_ms", "600000", err, sizeof err) < 0 ||
        glidefs_config_set(cfg, "servers.nbd.max_dirty_age_ms", "600000", err, sizeof err) < 0) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    glidefs_volume *v;
    int r = glidefs_volume_open(cfg, "bench", 1ull << 30, GLIDEFS_OPEN_CREATE, &v);
    if (r < 0) {
        fprintf(stderr, "open: %s\n", glidefs_strerror(r));
        return 1;
    }
    struct target vol = {-1, v};
    fill_area(&vol);
    glidefs_flush(v);

    struct lat lp = latency_phase(&plain, secs), lv = latency_phase(&vol, secs);
    double wp = iops_phase(&plain, 1, threads, secs), wv = iops_phase(&vol, 1, threads, secs);
    double rp = iops_phase(&plain, 0, threads, secs), rv = iops_phase(&vol, 0, threads, secs);
    r = glidefs_drain(v, -1);
    if (r < 0) {
        fprintf(stderr, "drain: %s\n", glidefs_strerror(r));
        return 1;
    }
    double rc = iops_phase(&vol, 0, threads, secs);
    struct glidefs_stats st;
    glidefs_stats(v, &st, sizeof st);

    printf("| measure | plain file | glidefs | ratio |\n|---|---|---|---|\n");
    printf("| 4 KiB pwrite p50 (us) | %.2f | %.2f | %.2f |\n", lp.p50, lv.p50, lv.p50 / lp.p50);
    printf("| 4 KiB pwrite p99 (us) | %.2f | %.2f | %.2f |\n", lp.p99, lv.p99, lv.p99 / lp.p99);
    printf("| 4 KiB pwrite p99.9 (us) | %.2f | %.2f | %.2f |\n", lp.p999, lv.p999,
           lv.p999 / lp.p999);
    printf("| 4 KiB random write IOPS, %d threads | %.0f | %.0f | %.2f |\n", threads, wp, wv,
           wv / wp);
    printf("| 4 KiB random read IOPS (journal), %d threads | %.0f | %.0f | %.2f |\n", threads, rp,
           rv, rv / rp);
    printf("| 4 KiB random read IOPS (clean cache), %d threads | %.0f | %.0f | %.2f |\n", threads,
           rp, rc, rc / rp);
    printf("\ncache hits %" PRIu64 ", misses %" PRIu64 ", segments uploaded %" PRIu64 "\n",
           st.cache_hits, st.cache_misses, st.segments_uploaded);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    close(plain.fd);
    return 0;
}
