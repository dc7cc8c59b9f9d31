/*
 * glidefs-image — copy a raw disk image into a volume in the store, or a
 * volume out to a raw image, with the library directly (no daemon).
 *
 *   glidefs-image import -c CONFIG NAME FILE   create NAME at FILE's size
 *                                              (rounded up to 512), copy, drain
 *   glidefs-image export -c CONFIG NAME FILE   write NAME out as a raw image
 *   glidefs-image export-fenced -c CONFIG NAME FILE
 *                                              write what this node had of NAME
 *                                              before it lost the write lease
 *                                              (glidefs_fenced_export): its
 *                                              epoch's data plus the journal it
 *                                              kept aside; reads the store only
 *   glidefs-image scrub -c CONFIG NAME [--deep] [--delete-orphans]
 *                                              check that the store holds every
 *                                              segment NAME's map references,
 *                                              whole, with valid headers (deep:
 *                                              and every live block), and report
 *                                              orphan objects; read-only, but
 *                                              --delete-orphans takes the write
 *                                              lease (refused while another node
 *                                              holds it) to delete them
 *
 * Zero runs are not copied: import writes them as zeroes (no data stored),
 * export leaves holes in a sparse output file, created 0600 (a guest's disk;
 * an existing file keeps its mode). Exit status: 0 done, 1 failed, 2 usage,
 * 3 scrub found damage (or orphans it did not delete).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "glidefs/glidefs.h"

#define CHUNK (1u << 20)

static int verbose;

static void log_cb(void *arg, int level, const char *msg)
{
    (void)arg;
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level <= GLIDEFS_LOG_WARN || verbose)
        fprintf(stderr, "glidefs-image: %s: %s\n", names[level & 3], msg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct progress {
    const char *what;
    uint64_t total;
    double start, last;
    int tty;
};

static void progress(struct progress *p, uint64_t done, int final)
{
    double t = now_s();
    if (!p->tty || (!final && t - p->last < 0.2))
        return;
    p->last = t;
    double rate = (double)done / (t - p->start + 1e-9) / (1 << 20);
    fprintf(stderr, "\r%s: %5.1f%%  %" PRIu64 " / %" PRIu64 " MiB  %.1f MiB/s%s", p->what,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0, done >> 20,
            p->total >> 20, rate, final ? "\n" : "");
}

static int is_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* drain in a thread so the main thread can show how much is left */
struct drain_job {
    glidefs_volume *v;
    int result;
    volatile int done;
};

static void *drain_thread(void *arg)
{
    struct drain_job *j = arg;
    j->result = glidefs_drain(j->v, -1);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int drain_with_progress(glidefs_volume *v, int tty)
{
    struct drain_job j = {v, 0, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, drain_thread, &j) != 0)
        return glidefs_drain(v, -1);
    struct glidefs_stats st;
    glidefs_stats(v, &st, sizeof st);
    struct progress p = {"uploading", st.dirty_bytes, now_s(), 0, tty};
    while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE)) {
        glidefs_stats(v, &st, sizeof st);
        uint64_t left = st.dirty_bytes < p.total ? st.dirty_bytes : p.total;
        progress(&p, p.total - left, 0);
        struct timespec ts = {0, 100 * 1000 * 1000}; /* display refresh, not a wait for state */
        nanosleep(&ts, NULL);
    }
    pthread_join(t, NULL);
    progress(&p, p.total, 1);
    return j.result;
}

static int do_import(glidefs_config *cfg, const char *name, const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "glidefs-image: %s: %s\n", file, strerror(errno));
        return 1;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "glidefs-image: %s: not a regular file\n", file);
        close(fd);
        return 1;
    }
    uint64_t size = ((uint64_t)sb.st_size + 511) & ~(uint64_t)511;
    if (size == 0) {
        fprintf(stderr, "glidefs-image: %s is empty\n", file);
        close(fd);
        return 1;
    }
    glidefs_volume *v;
    int r = glidefs_volume_open(cfg, name, size, GLIDEFS_OPEN_CREATE, &v);
    if (r < 0) {
        fprintf(stderr, "glidefs-image: cannot open volume %s: %s\n", name, glidefs_strerror(r));
        close(fd);
        return 1;
    }
    if (glidefs_volume_read_only(v)) {
        fprintf(stderr, "glidefs-image: volume %s is held by another writer; not importing\n",
                name);
        glidefs_volume_close(v);
        close(fd);
        return 1;
    }
    if (glidefs_volume_size(v) < size && (r = glidefs_resize(v, size)) < 0) {
        fprintf(stderr, "glidefs-image: cannot grow %s to %" PRIu64 " bytes: %s\n", name, size,
                glidefs_strerror(r));
        glidefs_volume_close(v);
        close(fd);
        return 1;
    }
    uint8_t *buf = malloc(CHUNK);
    int tty = isatty(STDERR_FILENO);
    struct progress p = {"importing", size, now_s(), 0, tty};
    uint64_t off = 0;
    while (buf && off < size) {
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        ssize_t got = pread(fd, buf, n, (off_t)off);
        if (got < 0) {
            fprintf(stderr, "glidefs-image: reading %s: %s\n", file, strerror(errno));
            r = -EIO;
            break;
        }
        if ((size_t)got < n) /* the tail short of a 512 multiple reads as zeroes */
            memset(buf + got, 0, n - (size_t)got);
        r = is_zero(buf, n) ? glidefs_write_zeroes(v, off, n, 0) : glidefs_pwrite(v, buf, n, off, 0);
        if (r < 0) {
            fprintf(stderr, "glidefs-image: writing %s at %" PRIu64 ": %s\n", name, off,
                    glidefs_strerror(r));
            break;
        }
        off += n;
        progress(&p, off, 0);
    }
    if (!buf)
        r = -ENOMEM;
    if (r == 0) {
        progress(&p, size, 1);
        r = glidefs_flush(v);
    }
    if (r == 0)
        r = drain_with_progress(v, tty);
    if (r < 0)
        fprintf(stderr, "glidefs-image: import of %s failed: %s\n", name, glidefs_strerror(r));
    int c = glidefs_volume_close(v);
    free(buf);
    close(fd);
    if (r == 0 && c < 0)
        fprintf(stderr, "glidefs-image: closing %s: %s\n", name, glidefs_strerror(c));
    if (r == 0 && c == 0)
        fprintf(stderr, "glidefs-image: imported %s (%" PRIu64 " bytes) into volume %s\n", file,
                size, name);
    return r == 0 && c == 0 ? 0 : 1;
}

static int do_export(glidefs_config *cfg, const char *name, const char *file)
{
    glidefs_volume *v;
    /* read-only: exporting never takes the write lease from anyone */
    int r = glidefs_volume_open(cfg, name, 0, GLIDEFS_OPEN_READONLY, &v);
    if (r < 0) {
        fprintf(stderr, "glidefs-image: cannot open volume %s: %s\n", name, glidefs_strerror(r));
        return 1;
    }
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* a guest's disk */
    if (fd < 0) {
        fprintf(stderr, "glidefs-image: %s: %s\n", file, strerror(errno));
        glidefs_volume_close(v);
        return 1;
    }
    uint64_t size = glidefs_volume_size(v);
    uint8_t *buf = malloc(CHUNK);
    struct progress p = {"exporting", size, now_s(), 0, isatty(STDERR_FILENO)};
    uint64_t off = 0;
    r = buf ? 0 : -ENOMEM;
    while (r == 0 && off < size) {
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        int hole = 0;
        int64_t run = glidefs_block_status(v, off, n, &hole);
        if (run < 0) {
            r = (int)run;
            break;
        }
        if (hole) {
            off += (uint64_t)run; /* leave a hole in the sparse output */
        } else {
            r = glidefs_pread(v, buf, (size_t)run, off);
            if (r < 0)
                break;
            if (pwrite(fd, buf, (size_t)run, (off_t)off) != run) {
                fprintf(stderr, "glidefs-image: writing %s: %s\n", file, strerror(errno));
                r = -EIO;
                break;
            }
            off += (uint64_t)run;
        }
        progress(&p, off, 0);
    }
    if (r == 0 && ftruncate(fd, (off_t)size) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r == 0)
        progress(&p, size, 1);
    else
        fprintf(stderr, "glidefs-image: export of %s failed: %s\n", name, glidefs_strerror(r));
    free(buf);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    glidefs_volume_close(v);
    return r == 0 ? 0 : 1;
}

/* The volume is opened read-only: nothing is written to the store, no lease
 * is taken, and a journal of an ended epoch not yet set aside is read where
 * it is. The node's glidefsd must be stopped (it locks the cache dir); while
 * it runs, use glidefs-ctl fenced-export. */
static int do_export_fenced(glidefs_config *cfg, const char *name, const char *file)
{
    glidefs_volume *v;
    int r = glidefs_volume_open(cfg, name, 0, GLIDEFS_OPEN_READONLY, &v);
    if (r < 0) {
        fprintf(stderr, "glidefs-image: cannot open volume %s: %s%s\n", name, glidefs_strerror(r),
                r == -EBUSY ? " (glidefsd runs on this cache dir: use glidefs-ctl fenced-export)"
                            : "");
        return 1;
    }
    int created = 1;
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = open(file, O_WRONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        fprintf(stderr, "glidefs-image: %s: %s\n", file, strerror(errno));
        glidefs_volume_close(v);
        return 1;
    }
    uint64_t epoch = 0;
    r = glidefs_fenced_export(v, fd, &epoch);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == -ENOENT)
        fprintf(stderr, "glidefs-image: %s has no fenced data on this node (nothing was kept "
                        "aside after losing the write lease)\n", name);
    else if (r == -ENODATA)
        fprintf(stderr, "glidefs-image: the store no longer holds all of this node's view of "
                        "%s (the newer writer compacted it away); the fenced data stays kept "
                        "aside\n", name);
    else if (r < 0)
        fprintf(stderr, "glidefs-image: fenced export of %s failed: %s\n", name,
                glidefs_strerror(r));
    else
        fprintf(stderr, "glidefs-image: wrote %s: %s as this node had it in epoch %" PRIu64
                        " (%" PRIu64 " bytes); the fenced data stays kept aside\n", file, name,
                epoch, glidefs_volume_size(v));
    if (r < 0 && created)
        unlink(file);
    glidefs_volume_close(v);
    return r == 0 ? 0 : 1;
}

/* Exit status of a scrub that ran and found something wrong. */
#define EXIT_DAMAGED 3

static int do_scrub(glidefs_config *cfg, const char *name, int deep, int del)
{
    glidefs_volume *v;
    /* deleting needs the write lease: a read-write open takes it (or
     * attaches read-only when a live node holds it: the scrub then says
     * -EROFS). A read-only scrub does not follow a writer while it runs
     * (no lease read each second): it refreshes once, before judging. */
    int r = glidefs_volume_open(cfg, name, 0,
                                del ? 0 : GLIDEFS_OPEN_READONLY | GLIDEFS_OPEN_NOFOLLOW, &v);
    if (r < 0) {
        fprintf(stderr, "glidefs-image: cannot open volume %s: %s\n", name, glidefs_strerror(r));
        return 1;
    }
    struct glidefs_scrub_result res;
    r = glidefs_scrub(v, (deep ? GLIDEFS_SCRUB_DEEP : 0) | (del ? GLIDEFS_SCRUB_DELETE_ORPHANS : 0),
                      &res, sizeof res);
    int cr = glidefs_volume_close(v);
    if (r == -EROFS) {
        fprintf(stderr, "glidefs-image: scrub of %s: another node holds the write lease; delete "
                        "orphans there (glidefs-ctl scrub %s --delete-orphans)\n", name, name);
        return 1;
    }
    if (r < 0) {
        fprintf(stderr, "glidefs-image: scrub of %s failed: %s\n", name, glidefs_strerror(r));
        return 1;
    }
    if (cr < 0) {
        fprintf(stderr, "glidefs-image: closing %s: %s\n", name, glidefs_strerror(cr));
        return 1;
    }
    static const char *kinds[] = {"?", "missing", "truncated", "bad-header", "damaged",
                                  "snapshot", "orphan"};
    for (uint32_t i = 0; i < res.nfindings && i < GLIDEFS_SCRUB_FINDINGS; i++) {
        const struct glidefs_scrub_finding *f = &res.findings[i];
        const char *k = f->kind < sizeof kinds / sizeof *kinds ? kinds[f->kind] : "?";
        if (f->kind == GLIDEFS_SCRUB_DAMAGED_BLOCK)
            printf("%s %s offset %" PRIu64 " length %" PRIu64 "\n", k, f->key, f->offset,
                   f->length);
        else if (f->kind == GLIDEFS_SCRUB_ORPHAN)
            printf("%s %s size %" PRIu64 "%s\n", k, f->key, f->length,
                   f->flags & GLIDEFS_SCRUB_FOUND_DELETED ? " (deleted)" : "");
        else
            printf("%s %s\n", k, f->key);
    }
    uint64_t bad = res.missing_segments + res.size_mismatches + res.bad_headers +
                   res.damaged_blocks + res.bad_snapshots;
    uint64_t left = res.orphan_objects - res.orphans_deleted;
    printf("scrub of %s (%s): %" PRIu64 " segments, %" PRIu64 " blocks, %" PRIu64
           " bytes read in %" PRIu64 " GETs: ", name, deep ? "deep" : "quick",
           res.segments_checked, res.blocks_checked, res.bytes_read, res.gets);
    if (!bad && !res.orphan_objects) {
        printf("clean\n");
        return 0;
    }
    if (!bad) {
        printf("%" PRIu64 " orphans (%" PRIu64 " bytes), %" PRIu64 " deleted%s\n",
               res.orphan_objects, res.orphan_bytes, res.orphans_deleted,
               res.orphan_objects > res.nfindings ? " (not all listed)" : "");
        return left ? EXIT_DAMAGED : 0;
    }
    printf("%" PRIu64 " missing, %" PRIu64 " truncated, %" PRIu64 " bad headers, %" PRIu64
           " damaged blocks", res.missing_segments, res.size_mismatches, res.bad_headers,
           res.damaged_blocks);
    if (res.bad_snapshots)
        printf(", %" PRIu64 " lost snapshots", res.bad_snapshots);
    if (res.orphan_objects)
        printf(", %" PRIu64 " orphans, %" PRIu64 " deleted", res.orphan_objects,
               res.orphans_deleted);
    printf("%s\n", bad + res.orphan_objects > res.nfindings ? " (not all listed)" : "");
    return EXIT_DAMAGED;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: glidefs-image import -c CONFIG NAME FILE\n"
               "       glidefs-image export -c CONFIG NAME FILE\n"
               "       glidefs-image export-fenced -c CONFIG NAME FILE\n"
               "       glidefs-image scrub -c CONFIG NAME [--deep] [--delete-orphans]\n"
               "options: -c, --config FILE  the glidefs YAML config (required)\n"
               "         -v, --verbose      log library info messages\n"
               "         --deep             scrub: fetch and check every live block\n"
               "         --delete-orphans   scrub: delete the orphan objects it reports\n"
               "                            (takes the write lease)\n"
               "         -h, --help         this text;  -V, --version\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"deep", no_argument, NULL, 'D'},
                                         {"delete-orphans", no_argument, NULL, 'O'},
                                         {NULL, 0, NULL, 0}};
    const char *cfgpath = NULL;
    int c, deep = 0, del = 0;
    while ((c = getopt_long(argc, argv, "+c:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("glidefs-image %s\n", glidefs_version()); return 0;
        case 'D': deep = 1; break;
        case 'O': del = 1; break;
        default: usage(stderr); return 2;
        }
    }
    /* options may also follow the subcommand */
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    /* and after the arguments (scrub NAME --deep): parse the rest afresh,
     * the command in argv[0]'s place, so that getopt permutes it */
    argc -= optind;
    argv += optind;
    optind = 0;
    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        case 'D': deep = 1; break;
        case 'O': del = 1; break;
        default: usage(stderr); return 2;
        }
    }
    int scrub = strcmp(cmd, "scrub") == 0;
    if (!cfgpath || argc - optind != (scrub ? 1 : 2) || ((deep || del) && !scrub) ||
        (!scrub && strcmp(cmd, "import") && strcmp(cmd, "export") &&
         strcmp(cmd, "export-fenced"))) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[optind], *file = scrub ? NULL : argv[optind + 1];
    if (!glidefs_name_valid(name)) {
        fprintf(stderr, "glidefs-image: invalid volume name '%s' (allowed: [A-Za-z0-9._-]{1,128}, "
                        "not starting with '.')\n", name);
        return 2;
    }
    glidefs_config *cfg;
    char err[512];
    int r = glidefs_config_load(cfgpath, &cfg, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "glidefs-image: %s\n", err);
        return 1;
    }
    glidefs_config_set_log(cfg, log_cb, NULL, GLIDEFS_LOG_DEBUG);
    r = scrub                        ? do_scrub(cfg, name, deep, del)
        : strcmp(cmd, "import") == 0 ? do_import(cfg, name, file)
        : strcmp(cmd, "export") == 0 ? do_export(cfg, name, file)
                                     : do_export_fenced(cfg, name, file);
    glidefs_config_free(cfg);
    return r;
}
