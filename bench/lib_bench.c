/*
 * lib_bench — in-process benchmarks of libglidefs, each against its peer in
 * the same run. Every mode prints CSV rows on stdout:
 *
 *     scenario,metric,unit,system,value
 *
 * and progress on stderr. bench/lib.sh and bench/s3_bench.sh turn the rows
 * into bench/results/<name>.md/.csv (bench/report.py). For experiments,
 * LIB_BENCH_SET="key=value ..." sets config keys on top of each mode's own.
 *
 *   lib_bench latency DIR [SECS] [THREADS]
 *       4 KiB pwrite and pread latency (p50/p99/p99.9, one thread) and random
 *       write/read IOPS (THREADS threads) of a volume on a file:// store in
 *       DIR against plain pwrite/pread on a file in DIR. Reads of the volume:
 *       once from the journal (dirty), once from the clean cache after drain.
 *   lib_bench flush DIR SECS MB...
 *       FLUSH latency with MB MiB dirty (written, not uploaded): the MB are
 *       written (1 MiB writes) and flushed once, then SECS seconds of
 *       (4 KiB random write; flush), each flush timed. Peer: the same on a
 *       plain file with fdatasync.
 *   lib_bench mem DIR NVOL WRITE_MB SPARSE_BLOCKS
 *       RSS (VmRSS) per open export (NVOL empty volumes), per GiB written
 *       (dirty, then after drain), and per written 128 KiB block of the block
 *       map (a volume with SPARSE_BLOCKS blocks written, 4 KiB each, drained,
 *       woken with an empty cache in a fresh process, against a control
 *       volume with SPARSE_BLOCKS/512 blocks woken the same way: the slope).
 *   lib_bench churn DIR LIVE_MB FACTOR RATE_MB_S COMPACT_S SEED TSV [GRACE_MS [KEY=VALUE...]]
 *       Issue 8: fill LIVE_MB, then seeded random overwrites of 4 KiB..1 MiB
 *       totalling FACTOR x LIVE_MB at RATE_MB_S with a FLUSH every 8 MiB;
 *       default sync settings, compaction.interval_s = COMPACT_S (and
 *       compaction.grace_ms = GRACE_MS, default 10000). A stats
 *       sample per second goes to TSV (t, written, stored, live, puts, ...).
 *   lib_bench codec DIR DATA_MB IMAGE
 *       Issue 7: sync (drain) and cold sequential read throughput with
 *       encryption off/on (DATA_MB of incompressible data), and stored bytes
 *       of IMAGE with compression none/zstd.
 *   lib_bench replay DIR TRACE VOL_MB CACHE_MB
 *       Cache hit rate: a VOL_MB volume is filled and drained, then woken
 *       with an empty cache of CACHE_MB and the reads of the fio iolog TRACE
 *       are replayed; hits/misses from glidefs_stats.
 *   lib_bench s3fill DIR NAME FILE        (S3_ENDPOINT, S3_BUCKET from s3env.py)
 *       write FILE into volume NAME (1 MiB writes), flush, then time the
 *       drain (1 GiB of dirty data to the S3 server).
 *   lib_bench s3seq DIR NAME [MB]         sequential 1 MiB reads, empty cache
 *   lib_bench s3rand DIR NAME SECS        4 KiB random reads, empty cache
 *   lib_bench manifest DIR [VOL_GIB [WRITE_MIB [FLUSHES [STEPS]]]]
 *       Issue 23: metadata bytes per FLUSH and per compaction step. A VOL_GIB
 *       (64) volume gets WRITE_MIB (1024) of 128 KiB blocks written at
 *       scattered places and drained; a snapshot folds the manifests into
 *       one base: its size is what every manifest cost before incremental
 *       manifests ("full manifest"). Then FLUSHES (200) times: a 4 KiB write
 *       into a random written block and a FLUSH in durability store mode
 *       (one segment and one manifest PUT), and STEPS (20) times: 8 MiB of
 *       4 KiB overwrites, a drain, and one compaction step
 *       (glidefs_compact). Manifest bytes come from glidefs_stats
 *       (manifest_bytes: every manifest object stored); per flush and per
 *       step both the mean and the amortized figure (folds included).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "glidefs/glidefs.h"

#define AREA (256ull << 20)
#define IO 4096
#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

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

static void fill_random(void *p, size_t n, uint64_t *seed)
{
    uint64_t *q = p;
    for (size_t i = 0; i < n / 8; i++)
        q[i] = xs(seed);
}

static void mkdir_p(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            mkdir(p, 0700);
            *q = '/';
        }
    mkdir(p, 0700);
}

static void die(const char *what, int r)
{
    fprintf(stderr, "lib_bench: %s: %s\n", what, r < 0 ? glidefs_strerror(r) : strerror(errno));
    exit(1);
}

/* One CSV field; quoted when it holds a comma or a quote. */
static void field(const char *s)
{
    if (!strpbrk(s, ",\"")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void row(const char *scen, const char *metric, const char *unit, const char *sys, double v)
{
    field(scen);
    putchar(',');
    field(metric);
    putchar(',');
    field(unit);
    putchar(',');
    field(sys);
    printf(",%.6g\n", v);
    fflush(stdout);
}

static void run(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "lib_bench: '%s' failed\n", cmd);
        exit(1);
    }
}

/* ------------------------------------------------------------------------ */
/* volume setup                                                               */

static void quiet_log(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level <= GLIDEFS_LOG_WARN)
        fprintf(stderr, "glidefs: %s\n", msg);
}

/* A config for DIR: cache in DIR/<cachesub>, store file://DIR/store (or S3
 * from the environment when s3 is set), then "key=value" pairs. */
static glidefs_config *mkcfg(const char *dir, const char *cachesub, int s3, const char **kv)
{
    glidefs_config *cfg = glidefs_config_new();
    char cache[4200], store[4200], err[256];
    snprintf(cache, sizeof cache, "%s/%s", dir, cachesub);
    glidefs_config_set_log(cfg, quiet_log, NULL, GLIDEFS_LOG_WARN);
    int r = glidefs_config_set(cfg, "cache.dir", cache, err, sizeof err);
    if (s3) {
        const char *ep = getenv("S3_ENDPOINT"), *bucket = getenv("S3_BUCKET");
        if (!ep || !bucket) {
            fprintf(stderr, "lib_bench: S3_ENDPOINT/S3_BUCKET not set (run under s3env.py)\n");
            exit(1);
        }
        snprintf(store, sizeof store, "s3://%s/bench", bucket);
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
    for (; r == 0 && kv && *kv; kv++) {
        char k[256];
        const char *eq = strchr(*kv, '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - *kv), *kv);
        r = glidefs_config_set(cfg, k, eq + 1, err, sizeof err);
    }
    /* experiments: LIB_BENCH_SET="key=value key=value" overrides any setting */
    const char *extra = getenv("LIB_BENCH_SET");
    char *dup = extra ? strdup(extra) : NULL, *save = NULL;
    for (char *t = dup ? strtok_r(dup, " ", &save) : NULL; r == 0 && t;
         t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        if (!eq) {
            fprintf(stderr, "lib_bench: LIB_BENCH_SET: '%s' is not key=value\n", t);
            exit(2);
        }
        *eq = 0;
        r = glidefs_config_set(cfg, t, eq + 1, err, sizeof err);
    }
    free(dup);
    if (r < 0) {
        fprintf(stderr, "lib_bench: config: %s\n", err);
        exit(1);
    }
    return cfg;
}

static glidefs_volume *vopen(glidefs_config *cfg, const char *name, uint64_t size, unsigned fl)
{
    glidefs_volume *v;
    int r = glidefs_volume_open(cfg, name, size, fl, &v);
    if (r < 0)
        die("open", r);
    return v;
}

static struct glidefs_stats stats(glidefs_volume *v)
{
    struct glidefs_stats st;
    memset(&st, 0, sizeof st);
    glidefs_stats(v, &st, sizeof st);
    return st;
}

/* Write [0, bytes) with 1 MiB writes of pseudo-random data. */
static void vfill(glidefs_volume *v, uint64_t bytes, uint64_t seed)
{
    uint8_t *buf = aligned_alloc(4096, MIB);
    for (uint64_t off = 0; off < bytes; off += MIB) {
        size_t n = bytes - off < MIB ? (size_t)(bytes - off) : MIB;
        fill_random(buf, n, &seed);
        int r = glidefs_pwrite(v, buf, n, off, 0);
        if (r < 0)
            die("fill", r);
    }
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* latency                                                                    */

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
    double p50, p99, p999, mean;
    size_t n;
};

static struct lat lat_of(double *v, size_t n)
{
    struct lat l = {0, 0, 0, 0, n};
    if (!n)
        return l;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    qsort(v, n, sizeof *v, cmp_d);
    l.p50 = v[n / 2];
    l.p99 = v[n * 99 / 100];
    l.p999 = v[n * 999 / 1000];
    l.mean = sum / (double)n;
    return l;
}

static struct lat latency_phase(struct target *t, int write, double secs)
{
    size_t cap = 8 << 20, n = 0;
    double *v = malloc(cap * sizeof *v);
    uint8_t *buf = aligned_alloc(4096, IO);
    memset(buf, 0x5a, IO);
    uint64_t s = 12345;
    double end = now() + secs;
    while (n < cap) {
        uint64_t off = (xs(&s) % (AREA / IO)) * IO;
        double a = now();
        int r = write ? do_write(t, buf, off) : do_read(t, buf, off);
        double b = now();
        if (r < 0) {
            fprintf(stderr, "io failed: %d\n", r);
            exit(1);
        }
        v[n++] = (b - a) * 1e6;
        if (b > end)
            break;
    }
    struct lat l = lat_of(v, n);
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

static void fill_target(struct target *t)
{
    if (t->vol) {
        vfill(t->vol, AREA, 77);
        return;
    }
    uint8_t *buf = malloc(MIB);
    uint64_t seed = 77;
    for (uint64_t off = 0; off < AREA; off += MIB) {
        fill_random(buf, MIB, &seed);
        if (pwrite(t->fd, buf, MIB, (off_t)off) != (ssize_t)MIB)
            die("fill plain", 0);
    }
    free(buf);
}

static void lat_rows_u(const char *scen, const char *sys, struct lat l, const char *unit)
{
    row(scen, "p50", unit, sys, l.p50);
    row(scen, "p99", unit, sys, l.p99);
    row(scen, "p99.9", unit, sys, l.p999);
    row(scen, "mean", unit, sys, l.mean);
}

static void lat_rows(const char *scen, const char *sys, struct lat l)
{
    lat_rows_u(scen, sys, l, "us");
}

static int mode_latency(int argc, char **argv)
{
    const char *dir = argv[0];
    double secs = argc > 1 ? atof(argv[1]) : 5;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (threads < 1 || threads > 64)
        threads = 2;
    char path[4200];
    mkdir_p(dir);
    snprintf(path, sizeof path, "%s/plain.img", dir);
    struct target plain = {open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), NULL};
    if (plain.fd < 0 || posix_fallocate(plain.fd, 0, AREA) != 0)
        die(path, 0);
    fill_target(&plain);
    fsync(plain.fd);

    /* 32 GiB budget: the phases write less than its journal half; the sync
     * delay is longer than the run so the syncer does not take one of the
     * two cores in the middle of a phase (the drain below uploads). */
    const char *kv[] = {"cache.disk_size=32G", "servers.nbd.sync_delay_ms=3600000",
                        "servers.nbd.max_dirty_age_ms=3600000", NULL};
    glidefs_config *cfg = mkcfg(dir, "cache", 0, kv);
    glidefs_volume *v = vopen(cfg, "bench", 1ull << 30, GLIDEFS_OPEN_CREATE);
    struct target vol = {-1, v};
    fill_target(&vol);
    glidefs_flush(v);

    fprintf(stderr, "latency: pwrite\n");
    struct lat lp = latency_phase(&plain, 1, secs), lv = latency_phase(&vol, 1, secs);
    lat_rows("pwrite 4KiB", "plain file", lp);
    lat_rows("pwrite 4KiB", "glidefs", lv);
    fprintf(stderr, "latency: pread (journal)\n");
    lp = latency_phase(&plain, 0, secs);
    lv = latency_phase(&vol, 0, secs);
    lat_rows("pread 4KiB (journal)", "plain file", lp);
    lat_rows("pread 4KiB (journal)", "glidefs", lv);
    char scen[128];
    fprintf(stderr, "iops: randwrite\n");
    snprintf(scen, sizeof scen, "randwrite 4KiB %d threads", threads);
    row(scen, "IOPS", "IOPS", "plain file", iops_phase(&plain, 1, threads, secs));
    row(scen, "IOPS", "IOPS", "glidefs", iops_phase(&vol, 1, threads, secs));
    fprintf(stderr, "iops: randread (journal)\n");
    snprintf(scen, sizeof scen, "randread 4KiB %d threads (journal)", threads);
    double rp = iops_phase(&plain, 0, threads, secs);
    row(scen, "IOPS", "IOPS", "plain file", rp);
    row(scen, "IOPS", "IOPS", "glidefs", iops_phase(&vol, 0, threads, secs));
    fprintf(stderr, "drain, then clean-cache reads\n");
    int r = glidefs_drain(v, -1);
    if (r < 0)
        die("drain", r);
    lp = latency_phase(&plain, 0, secs);
    lv = latency_phase(&vol, 0, secs);
    lat_rows("pread 4KiB (clean cache)", "plain file", lp);
    lat_rows("pread 4KiB (clean cache)", "glidefs", lv);
    snprintf(scen, sizeof scen, "randread 4KiB %d threads (clean cache)", threads);
    row(scen, "IOPS", "IOPS", "plain file", iops_phase(&plain, 0, threads, secs));
    row(scen, "IOPS", "IOPS", "glidefs", iops_phase(&vol, 0, threads, secs));
    struct glidefs_stats st = stats(v);
    fprintf(stderr, "cache hits %" PRIu64 ", misses %" PRIu64 ", segments uploaded %" PRIu64 "\n",
            st.cache_hits, st.cache_misses, st.segments_uploaded);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    close(plain.fd);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* flush                                                                      */

static double tv_s(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

static struct lat flush_loop(struct target *t, double secs)
{
    size_t cap = 1 << 20, n = 0;
    double *v = malloc(cap * sizeof *v);
    uint8_t *buf = aligned_alloc(4096, IO);
    memset(buf, 0x3c, IO);
    uint64_t s = 999;
    double end = now() + secs;
    while (n < cap && now() < end) {
        uint64_t off = (xs(&s) % (AREA / IO)) * IO;
        if (do_write(t, buf, off) < 0)
            die("write", 0);
        double a = now();
        int r = t->vol ? glidefs_flush(t->vol) : (fdatasync(t->fd) == 0 ? 0 : -errno);
        double b = now();
        if (r < 0)
            die("flush", r);
        v[n++] = (b - a) * 1e6;
        if (getenv("LIB_BENCH_TRACE") && (b - a) > 0.005)
            fprintf(stderr, "slow flush %.2f ms at +%.3f s\n", (b - a) * 1e3, b - (end - secs));
    }
    struct lat l = lat_of(v, n);
    free(v);
    free(buf);
    return l;
}

static int mode_flush(int argc, char **argv)
{
    const char *dir = argv[0];
    double secs = argc > 1 ? atof(argv[1]) : 5;
    mkdir_p(dir);
    for (int i = 2; i < argc; i++) {
        uint64_t mb = strtoull(argv[i], NULL, 10);
        char scen[64], path[4200], sub[64];
        snprintf(scen, sizeof scen, "FLUSH with %" PRIu64 " MiB dirty", mb);
        /* plain file: the same bytes written, fdatasync'd once */
        snprintf(path, sizeof path, "%s/plain.img", dir);
        unlink(path);
        struct target plain = {open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), NULL};
        uint64_t area = mb * MIB > AREA ? mb * MIB : AREA;
        if (plain.fd < 0 || ftruncate(plain.fd, (off_t)area) != 0)
            die(path, 0);
        uint8_t *buf = malloc(MIB);
        uint64_t seed = 5;
        for (uint64_t off = 0; off < mb * MIB; off += MIB) {
            fill_random(buf, MIB, &seed);
            if (pwrite(plain.fd, buf, MIB, (off_t)off) != (ssize_t)MIB)
                die("plain write", 0);
        }
        free(buf);
        double a = now();
        fdatasync(plain.fd);
        row(scen, "first flush after fill", "ms", "plain file", (now() - a) * 1e3);
        struct lat lp = flush_loop(&plain, secs);
        close(plain.fd);
        unlink(path);

        /* volume: default sync settings; the loop starts right after the fill
         * and lasts less than sync_delay_ms, so the data stays dirty */
        snprintf(sub, sizeof sub, "cache-%" PRIu64, mb);
        const char *kv[] = {"cache.disk_size=8G", NULL};
        glidefs_config *cfg = mkcfg(dir, sub, 0, kv);
        char name[64];
        snprintf(name, sizeof name, "flush%" PRIu64, mb);
        glidefs_volume *v = vopen(cfg, name, area, GLIDEFS_OPEN_CREATE);
        vfill(v, mb * MIB, 5);
        a = now();
        glidefs_flush(v);
        row(scen, "first flush after fill", "ms", "glidefs", (now() - a) * 1e3);
        struct target vol = {-1, v};
        /* CPU the volume's own threads (syncer, lease) use during the loop:
         * they share the machine's cores with the loop */
        struct rusage ps0, ts0, ps1, ts1;
        getrusage(RUSAGE_SELF, &ps0);
        getrusage(RUSAGE_THREAD, &ts0);
        struct lat lv = flush_loop(&vol, secs);
        getrusage(RUSAGE_SELF, &ps1);
        getrusage(RUSAGE_THREAD, &ts1);
        struct glidefs_stats st = stats(v);
        row(scen, "dirty during loop", "MiB", "glidefs", (double)st.dirty_bytes / MIB);
        row(scen, "segments uploaded by the end of the loop", "count", "glidefs",
            (double)st.segments_uploaded);
        row(scen, "CPU of background threads during loop", "ms", "glidefs",
            ((tv_s(ps1.ru_utime) + tv_s(ps1.ru_stime)) - (tv_s(ps0.ru_utime) + tv_s(ps0.ru_stime)) -
             ((tv_s(ts1.ru_utime) + tv_s(ts1.ru_stime)) - (tv_s(ts0.ru_utime) + tv_s(ts0.ru_stime)))) *
                1e3);
        lat_rows_u(scen, "plain file",
                   (struct lat){lp.p50 / 1e3, lp.p99 / 1e3, lp.p999 / 1e3, lp.mean / 1e3, lp.n},
                   "ms");
        lat_rows_u(scen, "glidefs",
                   (struct lat){lv.p50 / 1e3, lv.p99 / 1e3, lv.p999 / 1e3, lv.mean / 1e3, lv.n},
                   "ms");
        row(scen, "flushes", "count", "plain file", (double)lp.n);
        row(scen, "flushes", "count", "glidefs", (double)lv.n);
        glidefs_volume_close(v);
        glidefs_config_free(cfg);
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/%s' '%s/store'", dir, sub, dir);
        run(cmd);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* memory                                                                     */

/* A "Name:" line of /proc/self/status, in KiB. */
static double status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kl = strlen(key);
    double v = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0)
            v = atof(line + kl);
    if (f)
        fclose(f);
    return v;
}

static double rss_kib(void)
{
    return status_kib("VmRSS:");
}

/* Run fn in a child process; it writes one double back. */
static double in_child(double (*fn)(void *), void *arg)
{
    int p[2];
    if (pipe(p) < 0)
        die("pipe", 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        double v = fn(arg);
        if (write(p[1], &v, sizeof v) != sizeof v)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    /* a value may be negative (an RSS difference within the noise): only a
     * missing value or a failed child is a failure */
    double v = 0;
    int got = read(p[0], &v, sizeof v) == sizeof v;
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !got) {
        fprintf(stderr, "lib_bench: child failed\n");
        exit(1);
    }
    return v;
}

struct memarg {
    const char *dir;
    int nvol;
    uint64_t write_mb, sparse_blocks;
    double out2, out3;
};

/* RSS growth (KiB) from opening nvol empty volumes. */
static double child_exports(void *p)
{
    struct memarg *m = p;
    glidefs_config *cfg = mkcfg(m->dir, "cache-exp", 0, NULL);
    glidefs_volume **v = calloc((size_t)m->nvol, sizeof *v);
    /* one first, so lazily loaded libraries and threads of the first open
     * are not counted per export */
    glidefs_volume *first = vopen(cfg, "warm", 1ull << 30, GLIDEFS_OPEN_CREATE);
    (void)first;
    double r0 = rss_kib();
    for (int i = 0; i < m->nvol; i++) {
        char name[32];
        snprintf(name, sizeof name, "exp%d", i);
        v[i] = vopen(cfg, name, 100 * GIB, GLIDEFS_OPEN_CREATE);
    }
    return (rss_kib() - r0) / m->nvol;
}

/* Open volume "name" with the cache in cachesub; RSS growth (KiB). */
struct wakearg {
    const char *dir, *name, *cachesub;
};

static double child_wake(void *p)
{
    struct wakearg *w = p;
    const char *kv[] = {"cache.disk_size=1G", NULL};
    glidefs_config *cfg = mkcfg(w->dir, w->cachesub, 0, kv);
    /* malloc_trim: count what is live, not freed heap (the manifest parse
     * buffers) that malloc keeps */
    malloc_trim(0);
    double r0 = rss_kib(), a0 = status_kib("RssAnon:"), f0 = status_kib("RssFile:");
    glidefs_volume *v = vopen(cfg, w->name, 0, 0);
    malloc_trim(0);
    double r1 = rss_kib();
    if (getenv("LIB_BENCH_TRACE")) {
        struct mallinfo2 mi = mallinfo2();
        fprintf(stderr,
                "wake %s: rss +%.0f KiB (anon +%.0f, file +%.0f), malloc in use %zu KiB "
                "(mmapped %zu KiB), heap %zu KiB\n",
                w->name, r1 - r0, status_kib("RssAnon:") - a0, status_kib("RssFile:") - f0,
                mi.uordblks / 1024 + mi.hblkhd / 1024, mi.hblkhd / 1024, mi.arena / 1024);
        if (getenv("LIB_BENCH_SMAPS")) {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "cat /proc/%d/smaps > %s", (int)getpid(),
                     getenv("LIB_BENCH_SMAPS"));
            if (system(cmd) != 0)
                fprintf(stderr, "smaps copy failed\n");
        }
    }
    glidefs_volume_close(v);
    return r1 - r0;
}

static int mode_mem(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: lib_bench mem DIR NVOL WRITE_MB SPARSE_BLOCKS\n");
        return 2;
    }
    struct memarg m = {argv[0], atoi(argv[1]), strtoull(argv[2], NULL, 10),
                       strtoull(argv[3], NULL, 10), 0, 0};
    mkdir_p(m.dir);
    const char *S = "memory";
    fprintf(stderr, "mem: exports\n");
    row(S, "RSS per open export (empty volume, default 100 GiB cache budget)", "KiB", "glidefs",
        in_child(child_exports, &m));

    /* dense writes: RSS per GiB written, dirty and after drain (this
     * process). Two halves, each written then drained: the second half's
     * growth is the per-GiB slope without one-off costs (syncer buffers,
     * malloc arenas) that the first drain pays. */
    fprintf(stderr, "mem: %" PRIu64 " MiB dense writes\n", m.write_mb);
    {
        const char *kv[] = {"cache.disk_size=8G", NULL};
        glidefs_config *cfg = mkcfg(m.dir, "cache-dense", 0, kv);
        uint64_t half = m.write_mb / 2 * MIB;
        glidefs_volume *v = vopen(cfg, "dense", 2 * half, GLIDEFS_OPEN_CREATE);
        double r0 = rss_kib(), rd[2], rc[2];
        for (int h = 0; h < 2; h++) {
            uint8_t *buf = aligned_alloc(4096, MIB);
            uint64_t seed = 9 + (uint64_t)h;
            for (uint64_t off = 0; off < half; off += MIB) {
                fill_random(buf, MIB, &seed);
                int r = glidefs_pwrite(v, buf, MIB, h * half + off, 0);
                if (r < 0)
                    die("write", r);
            }
            free(buf);
            glidefs_flush(v);
            rd[h] = rss_kib();
            int r = glidefs_drain(v, -1);
            if (r < 0)
                die("drain", r);
            rc[h] = rss_kib();
        }
        double gib = (double)half / GIB;
        row(S, "RSS growth per GiB written while dirty (journal index)", "KiB/GiB", "glidefs",
            ((rd[0] - r0) + (rd[1] - rc[0])) / (2 * gib));
        row(S, "RSS growth per GiB written after drain (2nd half)", "KiB/GiB", "glidefs",
            (rc[1] - rc[0]) / gib);
        row(S, "RSS growth of the first drain (one-off)", "KiB", "glidefs", rc[0] - rd[0]);
        glidefs_volume_close(v);
        glidefs_config_free(cfg);
    }

    /* sparse: 4 KiB in each of N blocks, drained; woken with an empty cache
     * in a fresh process. The block map's cost per block is the slope
     * against a control volume with SMALL blocks written the same way and
     * woken the same way: both run the same code (manifest and segment
     * decoding, zstd), so the library pages that code faults in, a one-off
     * cost, cancel. The difference against an empty volume is reported too. */
    fprintf(stderr, "mem: %" PRIu64 " sparse blocks\n", m.sparse_blocks);
    {
        const char *kv[] = {"cache.disk_size=4G", "storage.compression=zstd",
                            "servers.nbd.sync_delay_ms=0", NULL};
        glidefs_config *cfg = mkcfg(m.dir, "cache-sparse", 0, kv);
        uint64_t bs = 128 * 1024, n = m.sparse_blocks, nsmall = n / 512 ? n / 512 : 1;
        glidefs_volume *v = vopen(cfg, "sparse", n * bs, GLIDEFS_OPEN_CREATE);
        glidefs_volume *c = vopen(cfg, "small", n * bs, GLIDEFS_OPEN_CREATE);
        glidefs_volume *e = vopen(cfg, "empty", n * bs, GLIDEFS_OPEN_CREATE);
        uint8_t *buf = aligned_alloc(4096, IO);
        uint64_t seed = 3;
        for (uint64_t b = 0; b < n; b++) {
            fill_random(buf, IO, &seed);
            int r = glidefs_pwrite(v, buf, IO, b * bs, 0);
            if (r == 0 && b < nsmall)
                r = glidefs_pwrite(c, buf, IO, b * bs, 0);
            if (r < 0)
                die("sparse write", r);
        }
        free(buf);
        glidefs_volume *all[] = {v, c, e};
        for (int i = 0; i < 3; i++) {
            int r = glidefs_drain(all[i], -1);
            if (r < 0)
                die("drain", r);
        }
        struct glidefs_stats st = stats(v);
        for (int i = 0; i < 3; i++)
            glidefs_volume_close(all[i]);
        glidefs_config_free(cfg);
        struct wakearg ws = {m.dir, "sparse", "cache-wake1"}, wc = {m.dir, "small", "cache-wake2"},
                       we = {m.dir, "empty", "cache-wake3"};
        double rs = in_child(child_wake, &ws), rc = in_child(child_wake, &wc),
               re = in_child(child_wake, &we);
        row(S, "written 128 KiB blocks (sparse volume)", "blocks", "glidefs", (double)n);
        row(S, "written 128 KiB blocks (control volume)", "blocks", "glidefs", (double)nsmall);
        row(S, "segments (sparse volume)", "count", "glidefs", (double)st.segments);
        row(S, "RSS of a woken volume with N written blocks", "KiB", "glidefs", rs);
        row(S, "RSS of a woken control volume", "KiB", "glidefs", rc);
        row(S, "RSS of a woken empty volume", "KiB", "glidefs", re);
        row(S, "block map RAM per written 128 KiB block", "bytes", "glidefs",
            (rs - rc) * 1024 / (double)(n - nsmall));
        row(S, "block map RAM per written 128 KiB block", "bytes", "target", 16);
        row(S, "RSS per written block vs an empty volume (with one-off code pages)", "bytes",
            "glidefs", (rs - re) * 1024 / (double)n);
        row(S, "block map RAM per GiB written (dense)", "KiB/GiB", "glidefs",
            (rs - rc) / (double)(n - nsmall) * 8192);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* churn (issue 8)                                                            */

static atomic_int churn_stop;
static atomic_ullong churn_written;

struct sampler {
    glidefs_volume *v;
    FILE *out;
    double t0;
};

static void sample(struct sampler *s, const char *phase)
{
    struct glidefs_stats st = stats(s->v);
    fprintf(s->out,
            "%.1f\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
            "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
            now() - s->t0, phase, (uint64_t)atomic_load(&churn_written), st.stored_bytes,
            st.live_bytes, st.store_puts, st.segments_uploaded, st.blocks_uploaded,
            st.manifests_uploaded, st.dirty_bytes, st.compactions, st.segments);
    fflush(s->out);
}

static void *sampler_main(void *arg)
{
    struct sampler *s = arg;
    while (!atomic_load(&churn_stop)) {
        sample(s, "run");
        for (int i = 0; i < 10 && !atomic_load(&churn_stop); i++)
            usleep(100000);
    }
    return NULL;
}

static int mode_churn(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: lib_bench churn DIR LIVE_MB FACTOR RATE_MB_S COMPACT_S SEED TSV "
                        "[GRACE_MS [KEY=VALUE...]]\n");
        return 2;
    }
    const char *dir = argv[0];
    uint64_t live = strtoull(argv[1], NULL, 10) * MIB;
    double factor = atof(argv[2]), rate = atof(argv[3]) * MIB;
    const char *compact_s = argv[4];
    uint64_t seed = strtoull(argv[5], NULL, 10);
    mkdir_p(dir);
    char ci[64], gr[64];
    /* COMPACT_S / GRACE_MS "default" (or GRACE_MS left out): the library's default */
    snprintf(ci, sizeof ci, "compaction.interval_s=%s", compact_s);
    snprintf(gr, sizeof gr, "compaction.grace_ms=%s", argc > 7 ? argv[7] : "default");
    const char *kv[16] = {"cache.disk_size=8G"};
    int nkv = 1;
    if (strcmp(compact_s, "default") != 0)
        kv[nkv++] = ci;
    if (argc > 7 && strcmp(argv[7], "default") != 0)
        kv[nkv++] = gr;
    for (int i = 8; i < argc && nkv < 15; i++) /* further settings, e.g. compaction.max_stored_pct=120 */
        kv[nkv++] = argv[i];
    glidefs_config *cfg = mkcfg(dir, "cache", 0, kv);
    char gbuf[32] = "";
    if (glidefs_config_get(cfg, "compaction.grace_ms", gbuf, sizeof gbuf) < 0)
        snprintf(gbuf, sizeof gbuf, "10000");
    int grace_ms = atoi(gbuf);
    glidefs_volume *v = vopen(cfg, "churn", live, GLIDEFS_OPEN_CREATE);
    FILE *out = fopen(argv[6], "w");
    if (!out)
        die(argv[6], 0);
    fprintf(out, "t_s\tphase\twritten\tstored\tlive\tputs\tsegments_uploaded\tblocks_uploaded"
                 "\tmanifests\tdirty\tcompactions\tsegments\n");
    struct sampler s = {v, out, now()};
    pthread_t th;
    pthread_create(&th, NULL, sampler_main, &s);

    uint8_t *buf = aligned_alloc(4096, MIB);
    uint64_t total = live + (uint64_t)(factor * (double)live), written = 0, since_flush = 0;
    uint64_t dseed = seed * 7919 + 1;
    double t0 = now();
    /* the fill is part of the written bytes, at the same rate */
    while (written < total) {
        uint64_t off, len;
        if (written < live) {
            off = written;
            len = MIB;
        } else {
            /* 4 KiB .. 1 MiB, log-uniform in powers of two, 4 KiB aligned */
            len = (uint64_t)IO << (xs(&seed) % 9);
            off = (xs(&seed) % (live / IO)) * IO;
            if (off + len > live)
                off = live - len;
        }
        fill_random(buf, len, &dseed);
        int r = glidefs_pwrite(v, buf, len, off, 0);
        if (r < 0)
            die("churn write", r);
        written += len;
        since_flush += len;
        atomic_store(&churn_written, written);
        if (since_flush >= 8 * MIB) {
            glidefs_flush(v);
            since_flush = 0;
        }
        double ahead = (double)written / rate - (now() - t0);
        if (ahead > 0)
            usleep((useconds_t)(ahead * 1e6));
    }
    glidefs_flush(v);
    double write_s = now() - t0;
    struct glidefs_stats at_end = stats(v);
    fprintf(stderr, "churn: %" PRIu64 " MiB written in %.0f s; draining\n", written / MIB,
            write_s);
    int r = glidefs_drain(v, -1);
    if (r < 0)
        die("drain", r);
    sample(&s, "drained");
    /* compact, then again after compaction.grace_ms (default 10 s): dead
     * segments are deleted only once the grace has passed */
    struct glidefs_compact_result cr;
    for (int i = 0; i < 2; i++) {
        if (i)
            usleep((useconds_t)(grace_ms + 1000) * 1000);
        r = glidefs_compact(v, &cr, sizeof cr);
        if (r < 0)
            die("compact", r);
        sample(&s, "compacted");
    }
    atomic_store(&churn_stop, 1);
    pthread_join(th, NULL);
    struct glidefs_stats st = stats(v);
    const char *S = "churn";
    row(S, "live data", "MiB", "glidefs", (double)live / MIB);
    row(S, "written (fill + overwrites)", "MiB", "glidefs", (double)written / MIB);
    row(S, "write phase", "s", "glidefs", write_s);
    row(S, "stored/live at end of writes", "x", "glidefs",
        at_end.live_bytes ? (double)at_end.stored_bytes / (double)at_end.live_bytes : 0);
    row(S, "stored/live after drain + 2 compactions a grace apart", "x", "glidefs",
        st.live_bytes ? (double)st.stored_bytes / (double)st.live_bytes : 0);
    double gib = (double)written / GIB;
    row(S, "PUTs per GiB written (all objects)", "PUT/GiB", "glidefs", (double)st.store_puts / gib);
    row(S, "segment PUTs per GiB written", "PUT/GiB", "glidefs",
        (double)st.segments_uploaded / gib);
    double uniq = (double)st.blocks_uploaded * 128 * 1024 / MIB;
    row(S, "uploaded block data", "MiB", "glidefs", uniq);
    row(S, "uploaded block data per segment PUT", "MiB/PUT", "glidefs",
        st.segments_uploaded ? uniq / (double)st.segments_uploaded : 0);
    row(S, "uploaded block data per PUT (all objects)", "MiB/PUT", "glidefs",
        st.store_puts ? uniq / (double)st.store_puts : 0);
    row(S, "compaction bytes rewritten", "MiB", "glidefs",
        (double)st.compaction_bytes_rewritten / MIB);
    row(S, "compactions", "count", "glidefs", (double)st.compactions);
    fclose(out);
    free(buf);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* codec (issue 7)                                                            */

static double seqread(glidefs_volume *v, uint64_t bytes)
{
    uint8_t *buf = aligned_alloc(4096, MIB);
    double a = now();
    for (uint64_t off = 0; off < bytes; off += MIB) {
        size_t n = bytes - off < MIB ? (size_t)(bytes - off) : MIB;
        int r = glidefs_pread(v, buf, n, off);
        if (r < 0)
            die("read", r);
    }
    double t = now() - a;
    free(buf);
    return t;
}

static int mode_codec(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lib_bench codec DIR DATA_MB IMAGE\n");
        return 2;
    }
    const char *dir = argv[0], *image = argv[2];
    uint64_t bytes = strtoull(argv[1], NULL, 10) * MIB;
    mkdir_p(dir);
    char scen[128];
    snprintf(scen, sizeof scen, "%" PRIu64 " MiB incompressible (file:// store)", bytes / MIB);
    /* CODEC_ENCRYPTED_FIRST=1 swaps the order (bench/lib.sh alternates it
     * between runs): whichever runs second shares the disk with the first
     * one's writeback */
    const char *ef = getenv("CODEC_ENCRYPTED_FIRST");
    int first = ef && strcmp(ef, "1") == 0;
    /* CODEC_ONLY=plain|encrypted: that half alone, for a profile of it */
    const char *only = getenv("CODEC_ONLY");
    for (int k = 0; k < 2; k++) {
        int enc = k ^ first;
        const char *sys = enc ? "encrypted" : "plain";
        if (only && strcmp(only, sys) != 0)
            continue;
        /* the syncer waits while the data is written (no delay or age
         * deadline falls inside the fill): the drain below is the whole
         * upload, timed alone, not what is left of one that ran during it */
        const char *kv[] = {"cache.disk_size=8G", "servers.nbd.sync_delay_ms=3600000",
                            "servers.nbd.max_dirty_age_ms=86400000",
                            enc ? "storage.encryption_password=bench-pw" : NULL, NULL};
        char sub[32], name[32];
        snprintf(sub, sizeof sub, "cache-enc%d", enc);
        snprintf(name, sizeof name, "enc%d", enc);
        glidefs_config *cfg = mkcfg(dir, sub, 0, kv);
        glidefs_volume *v = vopen(cfg, name, bytes, GLIDEFS_OPEN_CREATE);
        vfill(v, bytes, 42);
        glidefs_flush(v);
        struct glidefs_stats before = stats(v);
        sync(); /* the fill's dirty pages written back outside the timing */
        double a = now();
        int r = glidefs_drain(v, -1);
        if (r < 0)
            die("drain", r);
        double t = now() - a;
        if (only) /* for perf report --time (perf record -k mono) */
            fprintf(stderr, "codec: %s drain %.6f,%.6f\n", sys, a, a + t);
        struct glidefs_stats after = stats(v);
        row(scen, "sync (drain) throughput", "MiB/s", sys, (double)bytes / MIB / t);
        row(scen, "share uploaded by the drain", "%", sys,
            after.blocks_uploaded ? 100.0 * (double)(after.blocks_uploaded -
                                                      before.blocks_uploaded) /
                                        (double)after.blocks_uploaded
                                  : 0);
        glidefs_volume_close(v);
        glidefs_config_free(cfg);
        /* cold: the same store, an empty cache */
        snprintf(sub, sizeof sub, "cache-enc%d-cold", enc);
        cfg = mkcfg(dir, sub, 0, kv);
        v = vopen(cfg, name, 0, 0);
        sync();
        a = now();
        t = seqread(v, bytes);
        if (only)
            fprintf(stderr, "codec: %s cold read %.6f,%.6f\n", sys, a, a + t);
        row(scen, "cold sequential read throughput", "MiB/s", sys, (double)bytes / MIB / t);
        glidefs_volume_close(v);
        glidefs_config_free(cfg);
    }

    if (only)
        return 0;
    /* compression of a file system image */
    int fd = open(image, O_RDONLY);
    if (fd < 0)
        die(image, 0);
    struct stat sb;
    fstat(fd, &sb);
    uint64_t isz = ((uint64_t)sb.st_size + 511) / 512 * 512;
    snprintf(scen, sizeof scen, "ext4 image of /usr/share/doc (%" PRIu64 " MiB)", isz / MIB);
    for (int z = 0; z < 2; z++) {
        const char *sys = z ? "zstd" : "none";
        const char *kv[] = {"cache.disk_size=8G", z ? "storage.compression=zstd" : NULL, NULL};
        char sub[32], name[32];
        snprintf(sub, sizeof sub, "cache-z%d", z);
        snprintf(name, sizeof name, "img%d", z);
        glidefs_config *cfg = mkcfg(dir, sub, 0, kv);
        glidefs_volume *v = vopen(cfg, name, isz, GLIDEFS_OPEN_CREATE);
        uint8_t *buf = aligned_alloc(4096, MIB);
        for (uint64_t off = 0; off < isz; off += MIB) {
            memset(buf, 0, MIB);
            ssize_t n = pread(fd, buf, MIB, (off_t)off);
            if (n < 0)
                die("image read", 0);
            size_t len = isz - off < MIB ? (size_t)(isz - off) : MIB;
            /* skip all-zero chunks, as a sparse-aware copy would */
            int zero = 1;
            for (size_t i = 0; i < len && zero; i++)
                zero = buf[i] == 0;
            if (zero)
                continue;
            int r = glidefs_pwrite(v, buf, len, off, 0);
            if (r < 0)
                die("image write", r);
        }
        free(buf);
        glidefs_flush(v);
        double a = now();
        int r = glidefs_drain(v, -1);
        if (r < 0)
            die("drain", r);
        double t = now() - a;
        struct glidefs_stats st = stats(v);
        row(scen, "stored bytes", "MiB", sys, (double)st.stored_bytes / MIB);
        row(scen, "sync (drain) time", "s", sys, t);
        row(scen, "blocks uploaded", "count", sys, (double)st.blocks_uploaded);
        glidefs_volume_close(v);
        glidefs_config_free(cfg);
    }
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* replay (cache hit rate)                                                    */

static int mode_replay(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: lib_bench replay DIR TRACE VOL_MB CACHE_MB\n");
        return 2;
    }
    const char *dir = argv[0], *trace = argv[1];
    uint64_t vol = strtoull(argv[2], NULL, 10) * MIB;
    const char *cache_mb = argv[3];
    mkdir_p(dir);
    /* the reads of the trace */
    FILE *f = fopen(trace, "r");
    if (!f)
        die(trace, 0);
    size_t cap = 1 << 20, n = 0;
    uint64_t *offs = malloc(cap * sizeof *offs);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        /* "FILE read OFF LEN" (iolog v2) or "TIME FILE read OFF LEN" (v3) */
        char *rd = strstr(line, " read ");
        unsigned long long off, len;
        if (rd && sscanf(rd + 6, "%llu %llu", &off, &len) == 2) {
            if (n == cap) {
                cap *= 2;
                offs = realloc(offs, cap * sizeof *offs);
            }
            offs[n++] = off % vol / IO * IO;
        }
    }
    fclose(f);
    if (!n) {
        fprintf(stderr, "lib_bench: no reads in %s\n", trace);
        return 1;
    }
    fprintf(stderr, "replay: filling %" PRIu64 " MiB\n", vol / MIB);
    {
        const char *kv[] = {"cache.disk_size=8G", NULL};
        glidefs_config *cfg = mkcfg(dir, "cache-fill", 0, kv);
        glidefs_volume *v = vopen(cfg, "zipf", vol, GLIDEFS_OPEN_CREATE);
        vfill(v, vol, 11);
        int r = glidefs_drain(v, -1);
        if (r < 0)
            die("drain", r);
        glidefs_volume_close(v);
        glidefs_config_free(cfg);
    }
    char cs[64];
    snprintf(cs, sizeof cs, "cache.disk_size=%sM", cache_mb);
    const char *kv[] = {cs, NULL};
    glidefs_config *cfg = mkcfg(dir, "cache-small", 0, kv);
    glidefs_volume *v = vopen(cfg, "zipf", 0, 0);
    uint8_t *buf = aligned_alloc(4096, IO);
    double *lat = malloc(n * sizeof *lat);
    double a = now();
    for (size_t i = 0; i < n; i++) {
        double x = now();
        int r = glidefs_pread(v, buf, IO, offs[i]);
        if (r < 0)
            die("read", r);
        lat[i] = (now() - x) * 1e6;
    }
    double t = now() - a;
    struct glidefs_stats st = stats(v);
    char scen[128];
    snprintf(scen, sizeof scen, "zipf:1.2 4 KiB reads (%" PRIu64 " MiB volume; %s MiB cache)",
             vol / MIB, cache_mb);
    double hr = st.cache_hits + st.cache_misses
                    ? (double)st.cache_hits / (double)(st.cache_hits + st.cache_misses)
                    : 0;
    row(scen, "reads", "count", "glidefs", (double)n);
    row(scen, "cache hit rate", "%", "glidefs", 100 * hr);
    row(scen, "store GETs", "count", "glidefs", (double)st.store_gets);
    row(scen, "cached bytes at end", "MiB", "glidefs", (double)st.cached_bytes / MIB);
    row(scen, "reads per second (file:// store)", "IOPS", "glidefs", (double)n / t);
    struct lat l = lat_of(lat, n);
    row(scen, "read p50", "us", "glidefs", l.p50);
    row(scen, "read p99", "us", "glidefs", l.p99);
    free(lat);
    free(offs);
    free(buf);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* S3 (run under tests/s3/s3env.py)                                           */

static int mode_s3fill(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lib_bench s3fill DIR NAME FILE\n");
        return 2;
    }
    const char *dir = argv[0], *name = argv[1];
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0)
        die(argv[2], 0);
    struct stat sb;
    fstat(fd, &sb);
    uint64_t bytes = (uint64_t)sb.st_size;
    mkdir_p(dir);
    const char *kv[] = {"cache.disk_size=8G", NULL};
    glidefs_config *cfg = mkcfg(dir, "cache-fill", 1, kv);
    glidefs_volume *v = vopen(cfg, name, bytes, GLIDEFS_OPEN_CREATE | GLIDEFS_OPEN_EXCLUSIVE);
    uint8_t *buf = aligned_alloc(4096, MIB);
    for (uint64_t off = 0; off < bytes; off += MIB) {
        ssize_t n = pread(fd, buf, MIB, (off_t)off);
        if (n <= 0 || n % 512)
            die("file read", 0);
        int r = glidefs_pwrite(v, buf, (size_t)n, off, 0);
        if (r < 0)
            die("write", r);
    }
    free(buf);
    close(fd);
    glidefs_flush(v);
    struct glidefs_stats s0 = stats(v);
    double a = now();
    int r = glidefs_drain(v, -1);
    if (r < 0)
        die("drain", r);
    double t = now() - a;
    struct glidefs_stats st = stats(v);
    char scen[64];
    snprintf(scen, sizeof scen, "drain %" PRIu64 " MiB dirty to s3rver", bytes / MIB);
    row(scen, "dirty before drain", "MiB", "glidefs", (double)s0.dirty_bytes / MIB);
    row(scen, "time", "s", "glidefs", t);
    row(scen, "throughput", "MiB/s", "glidefs", (double)bytes / MIB / t);
    row(scen, "PUTs", "count", "glidefs", (double)(st.store_puts - s0.store_puts));
    row(scen, "stored bytes", "MiB", "glidefs", (double)st.stored_bytes / MIB);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return 0;
}

static int mode_s3seq(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *dir = argv[0], *name = argv[1];
    const char *kv[] = {"cache.disk_size=8G", NULL};
    glidefs_config *cfg = mkcfg(dir, "cache-seq", 1, kv);
    glidefs_volume *v = vopen(cfg, name, 0, 0);
    uint64_t bytes = glidefs_volume_size(v);
    if (argc > 2 && strtoull(argv[2], NULL, 10) * MIB < bytes)
        bytes = strtoull(argv[2], NULL, 10) * MIB; /* the first MB only */
    double t = seqread(v, bytes);
    struct glidefs_stats st = stats(v);
    char scen[80];
    snprintf(scen, sizeof scen, "sequential 1 MiB read of %" PRIu64 " MiB (woken; empty cache)",
             bytes / MIB);
    row(scen, "throughput", "MiB/s", "glidefs", (double)bytes / MIB / t);
    row(scen, "time", "s", "glidefs", t);
    row(scen, "GETs", "count", "glidefs", (double)st.store_gets);
    row(scen, "GET bytes", "MiB", "glidefs", (double)st.store_get_bytes / MIB);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return 0;
}

static int mode_s3rand(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *dir = argv[0], *name = argv[1];
    double secs = atof(argv[2]);
    const char *kv[] = {"cache.disk_size=8G", NULL};
    glidefs_config *cfg = mkcfg(dir, "cache-rand", 1, kv);
    glidefs_volume *v = vopen(cfg, name, 0, 0);
    uint64_t size = glidefs_volume_size(v);
    size_t cap = 1 << 20, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    uint8_t *buf = aligned_alloc(4096, IO);
    uint64_t s = 4242;
    double a = now(), end = a + secs;
    while (n < cap && now() < end) {
        uint64_t off = (xs(&s) % (size / IO)) * IO;
        double x = now();
        int r = glidefs_pread(v, buf, IO, off);
        if (r < 0)
            die("read", r);
        lat[n++] = (now() - x) * 1e3;
    }
    double t = now() - a;
    struct glidefs_stats st = stats(v);
    struct lat l = lat_of(lat, n);
    const char *scen = "cold 4 KiB random read of a drained volume (s3rver; one thread)";
    row(scen, "reads per second", "IOPS", "glidefs", (double)n / t);
    row(scen, "GETs per second", "GET/s", "glidefs", (double)st.store_gets / t);
    row(scen, "p50", "ms", "glidefs", l.p50);
    row(scen, "p99", "ms", "glidefs", l.p99);
    row(scen, "cache hit rate", "%", "glidefs",
        st.cache_hits + st.cache_misses
            ? 100.0 * (double)st.cache_hits / (double)(st.cache_hits + st.cache_misses)
            : 0);
    free(lat);
    free(buf);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return 0;
}

/* Bytes of the largest object in DIR (the base a snapshot just folded). */
static uint64_t largest_file(const char *dir)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls -S1 '%s' | head -1", dir);
    FILE *f = popen(cmd, "r");
    char name[512] = "";
    if (!f || !fgets(name, sizeof name, f))
        die("listing the manifests", 0);
    pclose(f);
    name[strcspn(name, "\n")] = 0;
    char path[5000];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    if (stat(path, &sb) != 0)
        die(path, 0);
    return (uint64_t)sb.st_size;
}

static int mode_manifest(int argc, char **argv)
{
    const char *dir = argv[0];
    uint64_t vol = (argc > 1 ? strtoull(argv[1], NULL, 10) : 64) * GIB;
    uint64_t wr = (argc > 2 ? strtoull(argv[2], NULL, 10) : 1024) * MIB;
    int flushes = argc > 3 ? atoi(argv[3]) : 200, steps = argc > 4 ? atoi(argv[4]) : 20;
    const uint64_t bs = 131072;
    uint64_t nblocks = vol / bs, nw = wr / bs;
    if (nw == 0 || nw > nblocks || flushes < 1 || steps < 1) {
        fprintf(stderr, "lib_bench manifest: bad sizes\n");
        return 2;
    }
    mkdir_p(dir);
    const char *kv[] = {"cache.disk_size=4G", "compaction.interval_s=0",
                        "compaction.min_live_pct=90", "compaction.grace_ms=0", NULL};
    glidefs_config *cfg = mkcfg(dir, "cache-manifest", 0, kv);
    glidefs_volume *v = vopen(cfg, "man", vol, GLIDEFS_OPEN_CREATE);
    /* block i of the written set lives at (i * step) mod nblocks: distinct
     * (step odd, nblocks a power of two here), spread over the volume */
    uint64_t stride = (nblocks / nw) | 1;
    uint8_t *buf = aligned_alloc(4096, bs);
    uint64_t seed = 23;
    for (uint64_t i = 0; i < nw; i++) {
        fill_random(buf, bs, &seed);
        int r = glidefs_pwrite(v, buf, bs, (i * stride % nblocks) * bs, 0);
        if (r < 0)
            die("fill", r);
    }
    int r = glidefs_drain(v, -1);
    if (r == 0)
        r = glidefs_snapshot_create(v, "full");
    if (r < 0)
        die("drain", r);
    char mdir[4300];
    snprintf(mdir, sizeof mdir, "%s/store/nbd/man/manifest", dir);
    double full = (double)largest_file(mdir);
    char scen[128];
    snprintf(scen, sizeof scen, "%" PRIu64 " GiB volume, %" PRIu64 " MiB written", vol / GIB,
             wr / MIB);
    row(scen, "full manifest (a base; every manifest before deltas)", "bytes", "glidefs", full);
    fprintf(stderr, "full manifest: %.0f bytes\n", full);

    /* FLUSH in store mode: one 4 KiB write into a written block each */
    struct glidefs_durability dur = {.mode = GLIDEFS_DURABILITY_STORE};
    r = glidefs_volume_set_durability(v, &dur, sizeof dur);
    if (r < 0)
        die("durability store", r);
    struct glidefs_stats a = stats(v);
    double *per = malloc((size_t)(flushes > steps ? flushes : steps) * sizeof *per);
    for (int i = 0; i < flushes; i++) {
        struct glidefs_stats b = stats(v);
        fill_random(buf, IO, &seed);
        uint64_t blk = xs(&seed) % nw * stride % nblocks;
        if ((r = glidefs_pwrite(v, buf, IO, blk * bs + (xs(&seed) % (bs / IO)) * IO, 0)) < 0 ||
            (r = glidefs_flush(v)) < 0)
            die("write+flush", r);
        per[i] = (double)(stats(v).manifest_bytes - b.manifest_bytes);
    }
    struct glidefs_stats z = stats(v);
    double tot = (double)(z.manifest_bytes - a.manifest_bytes);
    struct lat l = lat_of(per, (size_t)flushes);
    row(scen, "metadata per FLUSH, p50", "bytes", "glidefs", l.p50);
    row(scen, "metadata per FLUSH, amortized (folds included)", "bytes", "glidefs",
        tot / flushes);
    row(scen, "metadata per FLUSH, amortized, of the full manifest", "%", "glidefs",
        100.0 * tot / flushes / full);
    row(scen, "FLUSH: bases stored", "count", "glidefs",
        (double)(z.manifest_bases - a.manifest_bases));
    fprintf(stderr, "per flush: p50 %.0f, amortized %.0f bytes (%.2f%% of full)\n", l.p50,
            tot / flushes, 100.0 * tot / flushes / full);
    dur.mode = GLIDEFS_DURABILITY_LOCAL;
    r = glidefs_volume_set_durability(v, &dur, sizeof dur);
    if (r < 0)
        die("durability local", r);

    /* compaction steps: overwrites leave segments below min_live_pct */
    a = stats(v);
    double ctot = 0;
    uint64_t moved = 0;
    for (int i = 0; i < steps; i++) {
        for (int k = 0; k < 2048; k++) {
            fill_random(buf, IO, &seed);
            uint64_t blk = xs(&seed) % nw * stride % nblocks;
            if ((r = glidefs_pwrite(v, buf, IO, blk * bs + (xs(&seed) % (bs / IO)) * IO, 0)) < 0)
                die("overwrite", r);
        }
        if ((r = glidefs_drain(v, -1)) < 0)
            die("drain", r);
        struct glidefs_stats b = stats(v);
        struct glidefs_compact_result res;
        if ((r = glidefs_compact(v, &res, sizeof res)) < 0)
            die("compact", r);
        per[i] = (double)(stats(v).manifest_bytes - b.manifest_bytes);
        ctot += per[i];
        moved += res.bytes_rewritten / bs;
    }
    z = stats(v);
    l = lat_of(per, (size_t)steps);
    row(scen, "metadata per compaction step, p50", "bytes", "glidefs", l.p50);
    row(scen, "metadata per compaction step, mean", "bytes", "glidefs", ctot / steps);
    row(scen, "metadata per compaction step, mean, of the full manifest", "%", "glidefs",
        100.0 * ctot / steps / full);
    row(scen, "compaction: blocks moved per step", "blocks", "glidefs", (double)moved / steps);
    row(scen, "all manifests over the overwrites and steps, per step", "bytes", "glidefs",
        (double)(z.manifest_bytes - a.manifest_bytes) / steps);
    fprintf(stderr, "per compaction step: p50 %.0f, mean %.0f bytes (%.2f%% of full), %.0f "
            "blocks moved a step\n", l.p50, ctot / steps, 100.0 * ctot / steps / full,
            (double)moved / steps);
    free(per);
    free(buf);
    glidefs_volume_close(v);
    glidefs_config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } modes[] = {{"latency", mode_latency}, {"flush", mode_flush},   {"mem", mode_mem},
                 {"churn", mode_churn},     {"codec", mode_codec},   {"replay", mode_replay},
                 {"s3fill", mode_s3fill},   {"s3seq", mode_s3seq},   {"s3rand", mode_s3rand},
                 {"manifest", mode_manifest}};
    if (argc >= 3) {
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (strcmp(argv[1], modes[i].name) == 0)
                return modes[i].fn(argc - 2, argv + 2);
    }
    fprintf(stderr, "usage: lib_bench MODE DIR ...  (modes: latency flush mem churn codec replay "
                    "s3fill s3seq s3rand manifest; see the comment at the top of "
                    "bench/lib_bench.c)\n");
    return 2;
}
