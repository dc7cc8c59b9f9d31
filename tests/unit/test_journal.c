/*
 * test_journal.c — the dirty journal driven the way lib/volume_io.c's submit()
 * drives it: reserve under a mutex, encode the header over the data, pwritev
 * header + data at the reserved offset, complete. Then flush / gc / recover:
 * replay order and contents, rotation across files (END records), torn tails
 * in the last and in an earlier file (the decision must be final), CRC
 * mismatches, hostile headers with valid CRCs, a random byte-mutation loop
 * (replay must always be a prefix of what was written), gc rules, flush
 * waiting for earlier reservations, and a full disk (tmpfs) at rotation;
 * the zero-ahead (no unwritten extents where the next appends land) and group
 * commit (flushers that arrive while a sync is in flight share the next one).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <cmocka.h>

#include "crc32c.h"
#include "journal.h"

/* ---- fixture ---- */

/* Replay buffers not yet freed, so teardown can free them when an assertion
 * jumped out of a test before coll_free. */
static void *live_bufs[32];

static void track(uintptr_t old, void *now)
{
    for (int i = 0; i < 32; i++)
        if (old && (uintptr_t)live_bufs[i] == old) {
            live_bufs[i] = now;
            return;
        }
    for (int i = 0; i < 32 && now; i++)
        if (!live_bufs[i]) {
            live_bufs[i] = now;
            return;
        }
}

struct fx {
    char root[256];
    char jdir[400];
    pthread_mutex_t lock;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void rm_tree(const char *p)
{
    nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *t = getenv("TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/gfs-journal-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(f->root)) {
        free(f);
        return -1;
    }
    snprintf(f->jdir, sizeof f->jdir, "%s/journal", f->root);
    pthread_mutex_init(&f->lock, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/small", f->root);
    umount2(mnt, MNT_DETACH); /* test_enospc's tmpfs, if a failure left it mounted */
    for (int i = 0; i < 32; i++) {
        free(live_bufs[i]);
        live_bufs[i] = NULL;
    }
    rm_tree(f->root);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

/* ---- writing records like volume_io.c's submit() ---- */

struct xrec {
    uint32_t type;
    uint64_t seq, offset;
    uint32_t length, data_len;
    uint64_t file_id, off; /* where it was written */
};

static uint8_t pat(uint64_t seq, uint64_t i)
{
    return (uint8_t)(seq * 0x9E37u + i * 13u + (i >> 9) + 1);
}

static int submit(struct gfs_journal *j, pthread_mutex_t *lock, struct xrec *x)
{
    uint64_t reclen = GFS_JREC_HDR + x->data_len;
    uint8_t *data = NULL;
    if (x->data_len) {
        data = malloc(x->data_len);
        assert_non_null(data);
        for (uint32_t i = 0; i < x->data_len; i++)
            data[i] = pat(x->seq, i);
    }
    struct gfs_jticket t;
    struct gfs_jfile *jf;
    uint64_t off;
    pthread_mutex_lock(lock);
    int r = gfs_journal_reserve(j, reclen, &jf, &off, &t);
    pthread_mutex_unlock(lock);
    if (r < 0) {
        free(data);
        return r;
    }
    struct gfs_jrec rec = {x->type, x->seq, x->offset, x->length, x->data_len};
    uint8_t hdr[GFS_JREC_HDR];
    struct iovec iov[2] = {{hdr, GFS_JREC_HDR}, {data, x->data_len}};
    gfs_journal_encode(&rec, &iov[1], x->data_len ? 1 : 0, hdr);
    ssize_t w = pwritev(jf->fd, iov, x->data_len ? 2 : 1, (off_t)off);
    assert_int_equal(w, (ssize_t)reclen);
    pthread_mutex_lock(lock);
    gfs_journal_complete(j, jf, &t, 1);
    pthread_mutex_unlock(lock);
    x->file_id = jf->id;
    x->off = off;
    free(data);
    return 0;
}

static int flush(struct gfs_journal *j, pthread_mutex_t *lock)
{
    pthread_mutex_lock(lock);
    int r = gfs_journal_flush(j, lock);
    pthread_mutex_unlock(lock);
    return r;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A random WRITE (1..maxsec sectors) or ZERO record with the given seq. */
static struct xrec mkrec(uint64_t *s, uint64_t seq, uint32_t maxsec)
{
    struct xrec x = {0};
    x.seq = seq;
    x.offset = (rnd(s) % 100000) * 512;
    x.length = (uint32_t)(1 + rnd(s) % maxsec) * 512;
    if (rnd(s) % 5 == 0) {
        x.type = GFS_JREC_ZERO;
        x.data_len = 0;
    } else {
        x.type = GFS_JREC_WRITE;
        x.data_len = x.length;
    }
    return x;
}

/* Write n random records with seqs first_seq.. into j. */
static void write_many(struct gfs_journal *j, pthread_mutex_t *lock, struct xrec *out, size_t n,
                       uint64_t first_seq, uint32_t maxsec, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        out[i] = mkrec(&s, first_seq + i, maxsec);
        assert_int_equal(submit(j, lock, &out[i]), 0);
    }
}

/* ---- recovery collector ---- */

struct got {
    struct gfs_jrec rec;
    uint64_t file_id, data_off;
    int data_ok;
};

struct coll {
    struct got *g;
    size_t n, cap;
    int fail_at; /* return an error at this record index (or -1) */
};

static int collect(void *arg, const struct gfs_jrec *rec, struct gfs_jfile *jf, uint64_t data_off)
{
    struct coll *c = arg;
    if (c->fail_at >= 0 && c->n == (size_t)c->fail_at)
        return -EBADMSG;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        /* malloc + copy, not realloc: the old pointer is looked up in
         * live_bufs while it is still valid */
        struct got *ng = malloc(c->cap * sizeof *ng);
        assert_non_null(ng);
        if (c->n)
            memcpy(ng, c->g, c->n * sizeof *ng);
        track((uintptr_t)c->g, ng);
        free(c->g);
        c->g = ng;
    }
    struct got *g = &c->g[c->n++];
    g->rec = *rec;
    g->file_id = jf->id;
    g->data_off = data_off;
    g->data_ok = 1;
    if (rec->data_len) {
        uint8_t *b = malloc(rec->data_len);
        assert_non_null(b);
        if (pread(jf->fd, b, rec->data_len, (off_t)data_off) != (ssize_t)rec->data_len)
            g->data_ok = 0;
        for (uint32_t i = 0; g->data_ok && i < rec->data_len; i++)
            if (b[i] != pat(rec->seq, i))
                g->data_ok = 0;
        free(b);
    }
    return 0;
}

/* Open a fresh journal on the directory, recover into c, close it again. */
static int recover_into(struct fx *f, uint64_t fsz, struct coll *c, uint64_t *max_seq)
{
    struct gfs_journal j;
    memset(c, 0, sizeof *c);
    c->fail_at = -1;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    int r = gfs_journal_recover(&j, collect, c, max_seq);
    gfs_journal_destroy(&j);
    return r;
}

/* The replayed records are exactly x[0..n) (in order, with their data). */
static void expect_records(const struct coll *c, const struct xrec *x, size_t n)
{
    if (c->n != n)
        fail_msg("replayed %zu records, expected %zu", c->n, n);
    for (size_t i = 0; i < n; i++) {
        const struct got *g = &c->g[i];
        assert_int_equal(g->rec.type, x[i].type);
        assert_int_equal(g->rec.seq, x[i].seq);
        assert_int_equal(g->rec.offset, x[i].offset);
        assert_int_equal(g->rec.length, x[i].length);
        assert_int_equal(g->rec.data_len, x[i].data_len);
        assert_int_equal(g->file_id, x[i].file_id);
        assert_int_equal(g->data_off, x[i].off + GFS_JREC_HDR);
        assert_true(g->data_ok);
    }
}

static int is_prefix(const struct coll *c, const struct xrec *x, size_t n)
{
    if (c->n > n)
        return 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct got *g = &c->g[i];
        if (g->rec.type != x[i].type || g->rec.seq != x[i].seq || g->rec.offset != x[i].offset ||
            g->rec.length != x[i].length || g->rec.data_len != x[i].data_len ||
            g->file_id != x[i].file_id || g->data_off != x[i].off + GFS_JREC_HDR || !g->data_ok)
            return 0;
    }
    return 1;
}

static void same_replay(const struct coll *a, const struct coll *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->g[i].rec.seq, b->g[i].rec.seq);
        assert_int_equal(a->g[i].rec.type, b->g[i].rec.type);
        assert_int_equal(a->g[i].file_id, b->g[i].file_id);
        assert_int_equal(a->g[i].data_off, b->g[i].data_off);
        assert_int_equal(a->g[i].data_ok, b->g[i].data_ok);
    }
}

/* ---- directory helpers ---- */

static size_t list_logs(const char *dir, uint64_t *ids, size_t max)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l != 20 || strcmp(de->d_name + 16, ".log") != 0)
            continue;
        if (n < max)
            ids[n] = strtoull(de->d_name, NULL, 16);
        n++;
    }
    closedir(d);
    /* sort */
    for (size_t a = 1; a < n && a < max; a++)
        for (size_t b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
            uint64_t t = ids[b];
            ids[b] = ids[b - 1];
            ids[b - 1] = t;
        }
    return n;
}

static void log_path(const struct fx *f, uint64_t id, char *out, size_t len)
{
    snprintf(out, len, "%s/%016" PRIx64 ".log", f->jdir, id);
}

static void corrupt(const struct fx *f, uint64_t id, uint64_t off, const void *bytes, size_t n)
{
    char p[512];
    log_path(f, id, p, sizeof p);
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static uint64_t file_size_of(const struct fx *f, uint64_t id)
{
    char p[512];
    log_path(f, id, p, sizeof p);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (uint64_t)st.st_size;
}

static void coll_free(struct coll *c)
{
    track((uintptr_t)c->g, NULL);
    free(c->g);
    c->g = NULL;
    c->n = c->cap = 0;
}

/* ================= tests ================= */

static void test_replay_basic(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    uint64_t fsz = 1 << 20;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    /* recovery of an empty directory: nothing, max_seq 0 */
    uint64_t ms = 99;
    struct coll c0 = {.fail_at = -1};
    assert_int_equal(gfs_journal_recover(&j, collect, &c0, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(c0.n, 0);
    enum { N = 60 };
    struct xrec x[N];
    write_many(&j, &f->lock, x, N, 1000, 16, 42);
    /* records sit back to back in the one file */
    for (size_t i = 1; i < N; i++) {
        assert_int_equal(x[i].file_id, x[0].file_id);
        assert_int_equal(x[i].off, x[i - 1].off + GFS_JREC_HDR + x[i - 1].data_len);
    }
    assert_int_equal(flush(&j, &f->lock), 0);
    assert_int_equal(j.cur->synced_gen, j.cur->write_gen);
    /* nothing more to sync: flush again is a no-op that succeeds */
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);

    struct coll c;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, N);
    assert_int_equal(ms, 1000 + N - 1);
    coll_free(&c);
    /* recovering again gives the same */
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, N);
    assert_int_equal(ms, 1000 + N - 1);
    coll_free(&c);

    /* max_seq is the highest seq, not the last one */
    struct xrec y[3] = {
        {.type = GFS_JREC_ZERO, .seq = 5000, .offset = 0, .length = 512},
        {.type = GFS_JREC_WRITE, .seq = 7000, .offset = 512, .length = 512, .data_len = 512},
        {.type = GFS_JREC_ZERO, .seq = 6000, .offset = 1024, .length = 1024},
    };
    rm_tree(f->jdir);
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(submit(&j, &f->lock, &y[i]), 0);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, y, 3);
    assert_int_equal(ms, 7000);
    coll_free(&c);
}

static void test_replay_error_aborts(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, 1 << 20, NULL), 0);
    struct xrec x[5];
    write_many(&j, &f->lock, x, 5, 1, 4, 7);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct coll c = {.fail_at = 2};
    uint64_t ms;
    assert_int_equal(gfs_journal_init(&j, f->jdir, 1 << 20, NULL), 0);
    assert_int_equal(gfs_journal_recover(&j, collect, &c, &ms), -EBADMSG);
    gfs_journal_destroy(&j);
    assert_int_equal(c.n, 2);
    coll_free(&c);
    /* the aborted recovery destroyed nothing */
    assert_int_equal(recover_into(f, 1 << 20, &c, &ms), 0);
    expect_records(&c, x, 5);
    coll_free(&c);
}

static void test_rotation(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    uint64_t fsz = 64 * 1024;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    enum { N = 300 };
    struct xrec x[N + 1];
    write_many(&j, &f->lock, x, N, 1, 8, 99);
    /* one record larger than a whole file gets a file of its own */
    x[N] = (struct xrec){.type = GFS_JREC_WRITE, .seq = N + 1, .offset = 0, .length = 200 * 1024,
                         .data_len = 200 * 1024};
    assert_int_equal(submit(&j, &f->lock, &x[N]), 0);
    assert_int_equal(x[N].off, 0);
    assert_true(j.cur->size >= 200 * 1024 + GFS_JREC_HDR);
    assert_int_equal(flush(&j, &f->lock), 0);
    uint64_t bytes = 0;
    size_t nfiles_list = 0;
    for (struct gfs_jfile *q = j.files; q; q = q->next) {
        bytes += q->size;
        nfiles_list++;
    }
    assert_int_equal(j.bytes, bytes);
    gfs_journal_destroy(&j);

    uint64_t ids[64];
    size_t nf = list_logs(f->jdir, ids, 64);
    assert_true(nf >= 5);
    assert_int_equal(nf, nfiles_list);
    /* file ids nondecreasing along the log; offsets increase within a file */
    for (size_t i = 1; i <= N; i++) {
        assert_true(x[i].file_id >= x[i - 1].file_id);
        if (x[i].file_id == x[i - 1].file_id)
            assert_true(x[i].off > x[i - 1].off);
    }
    assert_int_equal(x[N].file_id, ids[nf - 1]);
    for (size_t i = 0; i + 1 < nf; i++)
        assert_int_equal(file_size_of(f, ids[i]), fsz);

    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, N + 1);
    assert_int_equal(ms, N + 1);
    coll_free(&c);
    /* the recovered journal writes into a new file; all of it replays */
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    assert_int_equal(gfs_journal_recover(&j, collect, &c, &ms), 0);
    coll_free(&c);
    struct xrec y[40];
    write_many(&j, &f->lock, y, 40, N + 2, 8, 5);
    assert_true(y[0].file_id > ids[nf - 1]);
    assert_int_equal(y[0].off, 0);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct xrec all[N + 1 + 40];
    memcpy(all, x, sizeof x);
    memcpy(all + N + 1, y, sizeof y);
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, all, N + 1 + 40);
    assert_int_equal(ms, N + 1 + 40);
    coll_free(&c);
}

/* Fill a 64 KiB file with ZERO records (40 bytes) and one-sector WRITEs
 * (552 bytes) so that exactly `gap` bytes stay unused, then write records
 * that rotate to a second file, flush, and recover: every record must come
 * back and both files must survive. When 1..39 bytes are left, too few for
 * an END record, the writer (write_end) treats the file as "exactly full"
 * and writes no END; recovery must then not take the unused tail for a torn
 * record. */
static void run_gap(struct fx *f, uint64_t gap)
{
    struct gfs_journal j;
    uint64_t fsz = 64 * 1024;
    /* nw writes of 552 bytes + nz zeroes of 40 bytes = fsz - gap */
    uint64_t nw = 0;
    while ((fsz - gap - nw * 552) % 40 != 0)
        nw++;
    assert_true(nw < 40);
    uint64_t nz = (fsz - gap - nw * 552) / 40;
    size_t n = (size_t)(nw + nz + 5);
    struct xrec *x = calloc(n, sizeof *x);
    assert_non_null(x);
    track(0, x);
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    size_t i = 0;
    for (; i < nw + nz; i++) {
        if (i < nw)
            x[i] = (struct xrec){.type = GFS_JREC_WRITE, .seq = i + 1, .offset = i * 512,
                                 .length = 512, .data_len = 512};
        else
            x[i] = (struct xrec){.type = GFS_JREC_ZERO, .seq = i + 1, .offset = i * 512,
                                 .length = 512};
        assert_int_equal(submit(&j, &f->lock, &x[i]), 0);
    }
    assert_int_equal(j.cur->used, fsz - gap);
    for (; i < n; i++) {
        x[i] = (struct xrec){.type = GFS_JREC_WRITE, .seq = i + 1, .offset = 0, .length = 4096,
                             .data_len = 4096};
        assert_int_equal(submit(&j, &f->lock, &x[i]), 0);
    }
    assert_true(x[nw + nz].file_id > x[0].file_id);
    /* flushed: every one of these writes was acknowledged as durable */
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, n);
    assert_int_equal(ms, n);
    coll_free(&c);
    uint64_t ids[8];
    assert_int_equal(list_logs(f->jdir, ids, 8), 2);
    /* and the decision holds on a second recovery */
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, n);
    coll_free(&c);
    track((uintptr_t)x, NULL);
    free(x);
}

static void test_rotation_gap_0(void **state)
{
    run_gap(*state, 0); /* exactly full: EOF marks the end */
}

static void test_rotation_gap_8(void **state)
{
    run_gap(*state, 8);
}

static void test_rotation_gap_16(void **state)
{
    run_gap(*state, 16);
}

static void test_rotation_gap_32(void **state)
{
    run_gap(*state, 32);
}

static void test_rotation_gap_40(void **state)
{
    run_gap(*state, 40); /* room for exactly one END record */
}

static void test_rotation_gap_48(void **state)
{
    run_gap(*state, 48);
}

/* Write 3+ files of records; returns the count. */
static size_t build_multi(struct fx *f, uint64_t fsz, struct xrec *x, size_t n, uint64_t seed)
{
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    write_many(&j, &f->lock, x, n, 1, 8, seed);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    return n;
}

static void run_torn_tail(struct fx *f, int how)
{
    uint64_t fsz = 64 * 1024;
    enum { N = 80 };
    struct xrec x[N];
    build_multi(f, fsz, x, N, 1234 + (uint64_t)how);
    /* make the last record a WRITE of 8 sectors for a clear middle */
    struct gfs_journal j;
    struct coll c;
    uint64_t ms;
    assert_int_equal(x[N - 1].file_id > x[0].file_id, 1);
    /* the middle of the last record of the last file */
    const struct xrec *L = &x[N - 1];
    uint64_t reclen = GFS_JREC_HDR + L->data_len;
    uint64_t mid = L->off + reclen / 2;
    uint8_t junk[GFS_JREC_HDR + 16 * 512 + 128];
    uint64_t s = 77 + (uint64_t)how;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = how == 0 ? 0 : (uint8_t)rnd(&s);
    if (how == 2) /* header only */
        corrupt(f, L->file_id, L->off + 4, junk, 20);
    else /* torn from the middle to past the end of the record */
        corrupt(f, L->file_id, mid, junk, reclen - reclen / 2 + 64);
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, N - 1);
    assert_int_equal(ms, x[N - 2].seq);
    struct coll c2;
    assert_int_equal(recover_into(f, fsz, &c2, &ms), 0);
    same_replay(&c, &c2);
    expect_records(&c2, x, N - 1);
    coll_free(&c2);

    /* writes after recovery go to a new file; a third recovery sees both */
    uint64_t ids[64];
    size_t nf = list_logs(f->jdir, ids, 64);
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    assert_int_equal(gfs_journal_recover(&j, collect, &c2, &ms), 0);
    coll_free(&c2);
    struct xrec y[30];
    write_many(&j, &f->lock, y, 30, ms + 1, 8, 31337);
    assert_true(y[0].file_id > ids[nf - 1]);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct xrec all[N - 1 + 30];
    memcpy(all, x, (N - 1) * sizeof *x);
    memcpy(all + N - 1, y, sizeof y);
    assert_int_equal(recover_into(f, fsz, &c2, &ms), 0);
    expect_records(&c2, all, N - 1 + 30);
    assert_int_equal(ms, y[29].seq);
    coll_free(&c2);
    coll_free(&c);
}

static void test_torn_tail_zeros(void **state)
{
    run_torn_tail(*state, 0);
}

static void test_torn_tail_garbage(void **state)
{
    run_torn_tail(*state, 1);
}

static void test_torn_tail_header(void **state)
{
    run_torn_tail(*state, 2);
}

/* A torn record in an earlier file (a reserved write never completed before
 * a later file got records): everything after it is dropped for good. */
static void test_torn_nonlast(void **state)
{
    struct fx *f = *state;
    uint64_t fsz = 64 * 1024;
    enum { N = 120 };
    struct xrec x[N];
    build_multi(f, fsz, x, N, 555);
    uint64_t ids[64];
    size_t nf0 = list_logs(f->jdir, ids, 64);
    assert_true(nf0 >= 3);
    /* a record in the middle of the first file */
    uint64_t first = ids[0];
    size_t k = 0, last_in_first = 0;
    for (size_t i = 0; i < N; i++)
        if (x[i].file_id == first)
            last_in_first = i;
    k = last_in_first / 2;
    assert_true(k > 0);
    uint8_t zeros[GFS_JREC_HDR + 8 * 512];
    memset(zeros, 0, sizeof zeros);
    corrupt(f, first, x[k].off, zeros, GFS_JREC_HDR + x[k].data_len);
    struct coll c, c2;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, k);
    assert_int_equal(ms, x[k - 1].seq);
    /* later files are gone; the first file ends right after record k-1 */
    size_t nf = list_logs(f->jdir, ids, 64);
    assert_int_equal(nf, 1);
    assert_int_equal(ids[0], first);
    /* cut after record k-1 and ended there (recovery may append a second,
     * redundant END when it treats the file as the last one) */
    assert_true(file_size_of(f, first) >= x[k].off + GFS_JREC_HDR);
    assert_true(file_size_of(f, first) <= x[k].off + 2 * GFS_JREC_HDR);
    assert_int_equal(recover_into(f, fsz, &c2, &ms), 0);
    same_replay(&c, &c2);
    expect_records(&c2, x, k);
    coll_free(&c2);
    assert_int_equal(list_logs(f->jdir, ids, 64), 1);

    /* new writes go to a new file after the surviving one */
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    assert_int_equal(gfs_journal_recover(&j, collect, &c2, &ms), 0);
    coll_free(&c2);
    struct xrec y[10];
    write_many(&j, &f->lock, y, 10, ms + 1, 8, 8);
    assert_true(y[0].file_id > first);
    assert_int_equal(y[0].off, 0);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct xrec all[N + 10];
    memcpy(all, x, k * sizeof *x);
    memcpy(all + k, y, sizeof y);
    assert_int_equal(recover_into(f, fsz, &c2, &ms), 0);
    expect_records(&c2, all, k + 10);
    coll_free(&c2);
    coll_free(&c);
}

/* One flipped data byte: the CRC fails and the record counts as torn. */
static void test_crc_flip(void **state)
{
    struct fx *f = *state;
    uint64_t fsz = 1 << 20;
    enum { N = 40 };
    struct xrec x[N];
    build_multi(f, fsz, x, N, 4242);
    size_t k = N / 2;
    while (x[k].type != GFS_JREC_WRITE)
        k++;
    char p[512];
    log_path(f, x[k].file_id, p, sizeof p);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint64_t at = x[k].off + GFS_JREC_HDR + x[k].data_len / 3;
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)at), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
    close(fd);
    struct coll c, c2;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, k);
    assert_int_equal(recover_into(f, fsz, &c2, &ms), 0);
    same_replay(&c, &c2);
    coll_free(&c);
    coll_free(&c2);
}

/* ---- hostile headers with valid CRCs ---- */

struct rawhdr {
    uint32_t magic;
    uint16_t type;
    uint16_t hdr_len;
    uint64_t seq;
    uint64_t offset;
    uint32_t length;
    uint32_t data_len;
    uint32_t crc;
    uint32_t reserved;
} __attribute__((packed));

/* Write a header (CRC computed over it and data_avail bytes of pattern data)
 * at off of file id. */
static void put_hostile(struct fx *f, uint64_t id, uint64_t off, struct rawhdr h,
                        uint32_t data_avail)
{
    uint8_t *buf = calloc(1, sizeof h + data_avail);
    assert_non_null(buf);
    for (uint32_t i = 0; i < data_avail; i++)
        buf[sizeof h + i] = pat(h.seq, i);
    h.crc = 0;
    memcpy(buf, &h, sizeof h);
    h.crc = gfs_crc32c(0, buf, sizeof h + data_avail);
    memcpy(buf, &h, sizeof h);
    corrupt(f, id, off, buf, sizeof h + data_avail);
    free(buf);
}

static void test_hostile_headers(void **state)
{
    struct fx *f = *state;
    uint64_t fsz = 256 * 1024;
    enum { N = 10 };
    const struct rawhdr good = {.magic = GFS_JREC_MAGIC, .type = GFS_JREC_WRITE,
                                .hdr_len = GFS_JREC_HDR, .seq = 999, .offset = 4096,
                                .length = 1024, .data_len = 1024};
    struct rawhdr cases[16];
    int nc = 0;
    cases[nc] = good; /* sanity: the good one is accepted */
    nc++;
    cases[nc] = good, cases[nc].data_len = cases[nc].length = 0xFFFFFE00u; /* huge */
    nc++;
    cases[nc] = good, cases[nc].data_len = cases[nc].length = 1000; /* not a sector multiple */
    nc++;
    cases[nc] = good, cases[nc].hdr_len = 48;
    nc++;
    cases[nc] = good, cases[nc].hdr_len = 0;
    nc++;
    cases[nc] = good, cases[nc].type = 7;
    nc++;
    cases[nc] = good, cases[nc].type = 0;
    nc++;
    cases[nc] = good, cases[nc].offset = 100; /* unaligned volume offset */
    nc++;
    cases[nc] = good, cases[nc].data_len = 512; /* WRITE with data_len != length */
    nc++;
    cases[nc] = good, cases[nc].type = GFS_JREC_ZERO; /* ZERO with data */
    nc++;
    cases[nc] = good, cases[nc].length = cases[nc].data_len = 0; /* empty write */
    nc++;
    cases[nc] = good, cases[nc].reserved = 1;
    nc++;
    cases[nc] = good, cases[nc].magic ^= 1;
    nc++;
    cases[nc] = good, cases[nc].type = GFS_JREC_END, cases[nc].length = 0; /* END with data */
    nc++;
    for (int ci = 0; ci < nc; ci++) {
        for (int where = 0; where < 2; where++) { /* 0: last file, 1: earlier file */
            rm_tree(f->jdir);
            struct gfs_journal j;
            assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
            struct xrec x[N + 1];
            write_many(&j, &f->lock, x, N, 1, 8, 100 + (uint64_t)ci);
            if (where == 1) {
                /* room for the hostile record, then a second file */
                uint64_t hole = x[N - 1].off + GFS_JREC_HDR + x[N - 1].data_len;
                struct gfs_jticket t;
                struct gfs_jfile *jf;
                uint64_t off;
                pthread_mutex_lock(&f->lock);
                assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR + 1024, &jf, &off, &t), 0);
                assert_int_equal(off, hole);
                gfs_journal_complete(&j, jf, &t, 1);
                pthread_mutex_unlock(&f->lock);
                /* too big for the rest of the file: rotates */
                x[N] = (struct xrec){.type = GFS_JREC_WRITE, .seq = 2000, .length = 256 * 1024,
                                     .data_len = 256 * 1024};
                assert_int_equal(submit(&j, &f->lock, &x[N]), 0);
                assert_true(x[N].file_id > x[0].file_id);
            }
            assert_int_equal(flush(&j, &f->lock), 0);
            gfs_journal_destroy(&j);
            uint64_t hoff = x[N - 1].off + GFS_JREC_HDR + x[N - 1].data_len;
            uint32_t avail = cases[ci].data_len <= 1024 ? cases[ci].data_len : 1024;
            put_hostile(f, x[0].file_id, hoff, cases[ci], avail);
            struct coll c, c2;
            uint64_t ms;
            assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
            if (ci == 0) {
                /* the good one replays (and in the earlier file, so does
                 * everything after it) */
                assert_int_equal(c.n, where ? N + 2 : N + 1);
                assert_int_equal(c.g[N].rec.seq, 999);
                assert_true(c.g[N].data_ok);
                if (where)
                    assert_int_equal(c.g[N + 1].rec.seq, 2000);
            } else {
                expect_records(&c, x, N);
                if (where == 1) {
                    uint64_t ids[8];
                    assert_int_equal(list_logs(f->jdir, ids, 8), 1);
                }
            }
            assert_int_equal(recover_into(f, fsz, &c2, &ms), 0);
            same_replay(&c, &c2);
            coll_free(&c);
            coll_free(&c2);
        }
    }
}

/* ---- random mutations ---- */

struct fileimg {
    uint64_t id;
    uint8_t *data;
    size_t len;
    uint64_t used; /* end of the last record in it */
};

static void write_file(const char *dir, const struct fileimg *im)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%016" PRIx64 ".log", dir, im->id);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, im->data, im->len), (ssize_t)im->len);
    close(fd);
}

static void test_random_mutation(void **state)
{
    struct fx *f = *state;
    uint64_t fsz = 16 * 1024;
    enum { N = 60, ITERS = 2000 };
    struct xrec x[N];
    build_multi(f, fsz, x, N, 2024);
    uint64_t ids[64];
    size_t nf = list_logs(f->jdir, ids, 64);
    assert_true(nf >= 3 && nf <= 64);
    struct fileimg im[64];
    for (size_t i = 0; i < nf; i++) {
        im[i].id = ids[i];
        char p[512];
        log_path(f, ids[i], p, sizeof p);
        int fd = open(p, O_RDONLY);
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        im[i].len = (size_t)st.st_size;
        im[i].data = malloc(im[i].len);
        assert_non_null(im[i].data);
        assert_int_equal(pread(fd, im[i].data, im[i].len, 0), (ssize_t)im[i].len);
        close(fd);
        im[i].used = 0;
        for (size_t k = 0; k < N; k++)
            if (x[k].file_id == ids[i])
                im[i].used = x[k].off + GFS_JREC_HDR + x[k].data_len;
    }
    /* the pristine copy replays completely */
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x, N);
    coll_free(&c);

    uint64_t s = 0xfeedface12345ULL;
    size_t full = 0, none = 0;
    for (int it = 0; it < ITERS; it++) {
        rm_tree(f->jdir);
        assert_int_equal(mkdir(f->jdir, 0700), 0);
        size_t victim = rnd(&s) % nf;
        for (size_t i = 0; i < nf; i++) {
            if (i != victim) {
                write_file(f->jdir, &im[i]);
                continue;
            }
            struct fileimg m = im[i];
            m.data = malloc(m.len);
            assert_non_null(m.data);
            memcpy(m.data, im[i].data, m.len);
            int nmut = 1 + (int)(rnd(&s) % 8);
            for (int q = 0; q < nmut; q++) {
                size_t pos;
                uint64_t where = rnd(&s) % 10;
                if (where < 6) /* inside a header: first 40 bytes of some record */
                    pos = 0;
                else
                    pos = (size_t)(rnd(&s) % (m.used + 64 < m.len ? m.used + 64 : m.len));
                if (where < 6) {
                    /* pick a record start in this file */
                    size_t cnt = 0;
                    for (size_t k = 0; k < N; k++)
                        cnt += x[k].file_id == m.id;
                    size_t pick = cnt ? rnd(&s) % cnt : 0;
                    for (size_t k = 0; k < N; k++)
                        if (x[k].file_id == m.id && pick-- == 0) {
                            pos = x[k].off + rnd(&s) % GFS_JREC_HDR;
                            break;
                        }
                }
                uint64_t kind = rnd(&s) % 3;
                if (kind == 0)
                    m.data[pos] ^= (uint8_t)(1u << (rnd(&s) % 8));
                else if (kind == 1)
                    m.data[pos] = (uint8_t)rnd(&s);
                else
                    m.data[pos] = (uint8_t)(rnd(&s) % 2 ? 0xff : 0);
            }
            write_file(f->jdir, &m);
            free(m.data);
        }
        assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
        if (!is_prefix(&c, x, N))
            fail_msg("iteration %d: replay is not a prefix of the log (%zu records)", it, c.n);
        if (c.n == N)
            full++;
        if (c.n == 0)
            none++;
        coll_free(&c);
    }
    /* mutations past the records (in the preallocated tail) are harmless,
     * most hit a record: both outcomes must have been exercised */
    assert_true(full < ITERS);
    assert_true(full > 0);
    print_message("mutations: %zu full replays, %zu cut short, %zu empty\n", full,
                  (size_t)ITERS - full - none, none);
    for (size_t i = 0; i < nf; i++)
        free(im[i].data);
}

/* ---- gc ---- */

static void test_gc(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    uint64_t fsz = 64 * 1024;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    enum { N = 200 };
    struct xrec x[N];
    write_many(&j, &f->lock, x, N, 1, 8, 777);
    struct gfs_jfile *fl[16];
    size_t n = 0;
    for (struct gfs_jfile *q = j.files; q; q = q->next) {
        assert_true(n < 16);
        fl[n++] = q;
    }
    assert_true(n >= 5);
    assert_ptr_equal(fl[n - 1], j.cur);
    /* nothing to delete while every old file is live or pinned */
    for (size_t i = 0; i + 1 < n; i++)
        fl[i]->live = 1;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(gfs_journal_gc(&j, &f->lock, 0), 0);
    pthread_mutex_unlock(&f->lock);
    uint64_t ids[16];
    assert_int_equal(list_logs(f->jdir, ids, 16), n);

    /* file 0: dead -> deleted; file 1: live; file 2: pinned; current: never */
    uint64_t id0 = fl[0]->id, id1 = fl[1]->id, id2 = fl[2]->id;
    fl[0]->live = 0;
    fl[1]->live = 3;
    fl[2]->live = 0;
    fl[2]->pins = 1;
    j.cur->live = 0;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(gfs_journal_gc(&j, &f->lock, 0), 1);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(list_logs(f->jdir, ids, 16), n - 1);
    assert_true(ids[0] == id1); /* id0 is gone */
    assert_true(ids[0] > id0);
    assert_true(ids[1] == id2); /* the pinned file stays */
    assert_ptr_equal(j.files, fl[1]);
    uint64_t bytes = 0;
    for (struct gfs_jfile *q = j.files; q; q = q->next)
        bytes += q->size;
    assert_int_equal(j.bytes, bytes);

    /* everything dead and unpinned: all but the current file go */
    for (size_t i = 1; i + 1 < n; i++)
        fl[i]->live = 0;
    fl[2]->pins = 0;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(gfs_journal_gc(&j, &f->lock, 0), (int)n - 2);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(list_logs(f->jdir, ids, 16), 1);
    assert_int_equal(ids[0], j.cur->id);
    assert_ptr_equal(j.files, j.cur);
    assert_null(j.cur->next);
    assert_int_equal(j.bytes, j.cur->size);
    /* gc flushed first: the surviving records are durable and replay */
    size_t first = 0;
    while (x[first].file_id != j.cur->id)
        first++;
    gfs_journal_destroy(&j);
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x + first, N - first);
    coll_free(&c);
}

/* ---- the budget's view: acct and retiring the current file ---- */

static void sum_acct(void *arg, int64_t delta)
{
    *(int64_t *)arg += delta;
}

/* Allocated bytes of the journal's files on disk (st_blocks). */
static uint64_t disk_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        n += (uint64_t)sb.st_blocks * 512;
    }
    closedir(d);
    return n;
}

static void test_acct_and_retire(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    uint64_t fsz = 64 * 1024;
    int64_t acct = 0;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    j.acct = sum_acct;
    j.acct_arg = &acct;
    enum { N = 120 };
    struct xrec x[2 * N];
    /* every file is told to the budget as it is allocated */
    assert_int_equal(gfs_journal_need(&j, 4096), fsz);
    write_many(&j, &f->lock, x, N, 1, 8, 4242);
    assert_true(j.files && j.files->next); /* several files */
    assert_int_equal((uint64_t)acct, j.bytes);
    assert_true(disk_bytes(f->jdir) <= j.bytes);
    assert_int_equal(gfs_journal_need(&j, 512), 0); /* fits in the current file */
    assert_int_equal(gfs_journal_need(&j, 1 << 20), (1u << 20) + 4096); /* its own file */
    /* all uploaded: without retire_cur the current file stays */
    for (struct gfs_jfile *q = j.files; q; q = q->next)
        q->live = 0;
    pthread_mutex_lock(&f->lock);
    assert_true(gfs_journal_gc(&j, &f->lock, 0) > 0);
    pthread_mutex_unlock(&f->lock);
    assert_non_null(j.cur);
    assert_int_equal((uint64_t)acct, j.bytes);
    /* a pinned current file is not retired; nor one with a write in flight */
    j.cur->pins = 1;
    assert_int_equal(gfs_journal_retire(&j), 0);
    j.cur->pins = 0;
    struct gfs_jfile *jf;
    uint64_t off;
    struct gfs_jticket t;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR, &jf, &off, &t), 0);
    assert_int_equal(gfs_journal_retire(&j), 0);
    /* the reservation is written as a zero record so replay stays whole */
    struct gfs_jrec zr = {GFS_JREC_ZERO, N + 1, 0, 512, 0};
    uint8_t hdr[GFS_JREC_HDR];
    gfs_journal_encode(&zr, NULL, 0, hdr);
    assert_int_equal(pwrite(jf->fd, hdr, sizeof hdr, (off_t)off), (ssize_t)sizeof hdr);
    gfs_journal_complete(&j, jf, &t, 1);
    pthread_mutex_unlock(&f->lock);
    /* retired: it ends like a full file, and the next write starts anew */
    uint64_t old_cur = j.cur->id;
    assert_int_equal(gfs_journal_retire(&j), 1);
    assert_null(j.cur);
    write_many(&j, &f->lock, x + N, N, N + 2, 8, 99);
    assert_true(j.cur->id > old_cur);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    assert_int_equal(acct, 0); /* destroy: its files are no longer counted */
    /* the retired file, still on disk (as after a power cut undid its
     * unlink), reads as ended: what was written after it replays */
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    assert_int_equal(ms, 2 * N + 1);
    size_t k = 0;
    while (k < c.n && c.g[k].rec.seq != N + 2)
        k++;
    expect_records(&(struct coll){c.g + k, c.n - k, 0, -1}, x + N, N);
    coll_free(&c);

    /* retire_cur with everything dead: the journal gives all its space back */
    acct = 0;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    j.acct = sum_acct;
    j.acct_arg = &acct;
    memset(&c, 0, sizeof c);
    c.fail_at = -1;
    assert_int_equal(gfs_journal_recover(&j, collect, &c, &ms), 0);
    coll_free(&c);
    assert_int_equal((uint64_t)acct, j.bytes); /* recovered files count as found */
    assert_true(acct > 0);
    write_many(&j, &f->lock, x, 4, 3 * N, 8, 7);
    for (struct gfs_jfile *q = j.files; q; q = q->next)
        q->live = 0;
    pthread_mutex_lock(&f->lock);
    assert_true(gfs_journal_gc(&j, &f->lock, 1) > 0);
    pthread_mutex_unlock(&f->lock);
    assert_null(j.files);
    assert_null(j.cur);
    assert_int_equal(j.bytes, 0);
    assert_int_equal(acct, 0);
    assert_int_equal(disk_bytes(f->jdir), 0);
    gfs_journal_destroy(&j);
}

/* ---- flush waits for earlier reservations ---- */

struct flusher {
    struct gfs_journal *j;
    pthread_mutex_t *lock;
    pthread_cond_t cond;
    int entered, done, rc;
};

static void *flusher_main(void *arg)
{
    struct flusher *fl = arg;
    pthread_mutex_lock(fl->lock);
    fl->entered = 1;
    pthread_cond_broadcast(&fl->cond);
    /* still holding the lock: the main thread sees "entered" only once the
     * flush below has released it (waiting for in-flight writes or syncing) */
    fl->rc = gfs_journal_flush(fl->j, fl->lock);
    fl->done = 1;
    pthread_cond_broadcast(&fl->cond);
    pthread_mutex_unlock(fl->lock);
    return NULL;
}

/* Wait (lock held) until *flag or ms elapse; returns *flag. */
static int wait_flag(pthread_cond_t *cv, pthread_mutex_t *lock, int *flag, int ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    while (!*flag)
        if (pthread_cond_timedwait(cv, lock, &dl) == ETIMEDOUT)
            break;
    return *flag;
}

static void test_flush_waits(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    uint64_t fsz = 1 << 20;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    struct xrec pre[3];
    write_many(&j, &f->lock, pre, 3, 1, 4, 1);

    /* reserve a record and do not write it yet */
    struct xrec a = {.type = GFS_JREC_WRITE, .seq = 4, .offset = 0, .length = 4096,
                     .data_len = 4096};
    struct gfs_jticket ta, tb;
    struct gfs_jfile *jfa, *jfb;
    uint64_t offa, offb;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR + 4096, &jfa, &offa, &ta), 0);
    pthread_mutex_unlock(&f->lock);

    struct flusher fl = {.j = &j, .lock = &f->lock};
    pthread_cond_init(&fl.cond, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flusher_main, &fl), 0);
    pthread_mutex_lock(&f->lock);
    assert_true(wait_flag(&fl.cond, &f->lock, &fl.entered, 10000));
    /* the flusher is inside gfs_journal_flush; it must not finish */
    assert_false(wait_flag(&fl.cond, &f->lock, &fl.done, 200));
    /* a reservation made after the flush began does not hold it up */
    assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR + 4096, &jfb, &offb, &tb), 0);
    pthread_mutex_unlock(&f->lock);

    /* now write record a and complete it */
    uint8_t *data = malloc(4096);
    assert_non_null(data);
    for (uint32_t i = 0; i < 4096; i++)
        data[i] = pat(a.seq, i);
    struct gfs_jrec rec = {a.type, a.seq, a.offset, a.length, a.data_len};
    uint8_t hdr[GFS_JREC_HDR];
    struct iovec iov[2] = {{hdr, GFS_JREC_HDR}, {data, 4096}};
    gfs_journal_encode(&rec, &iov[1], 1, hdr);
    assert_int_equal(pwritev(jfa->fd, iov, 2, (off_t)offa), (ssize_t)(GFS_JREC_HDR + 4096));
    a.file_id = jfa->id;
    a.off = offa;
    pthread_mutex_lock(&f->lock);
    gfs_journal_complete(&j, jfa, &ta, 1);
    assert_true(wait_flag(&fl.cond, &f->lock, &fl.done, 10000));
    assert_int_equal(fl.rc, 0);
    /* b is still in flight: complete it too (written) */
    pthread_mutex_unlock(&f->lock);
    pthread_join(th, NULL);
    struct xrec b = {.type = GFS_JREC_WRITE, .seq = 5, .offset = 8192, .length = 4096,
                     .data_len = 4096};
    for (uint32_t i = 0; i < 4096; i++)
        data[i] = pat(b.seq, i);
    struct gfs_jrec recb = {b.type, b.seq, b.offset, b.length, b.data_len};
    gfs_journal_encode(&recb, &iov[1], 1, hdr);
    assert_int_equal(pwritev(jfb->fd, iov, 2, (off_t)offb), (ssize_t)(GFS_JREC_HDR + 4096));
    b.file_id = jfb->id;
    b.off = offb;
    pthread_mutex_lock(&f->lock);
    gfs_journal_complete(&j, jfb, &tb, 1);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(flush(&j, &f->lock), 0);
    assert_null(j.inflight_head);
    assert_null(j.inflight_tail);
    free(data);
    pthread_cond_destroy(&fl.cond);
    gfs_journal_destroy(&j);

    struct xrec all[5] = {pre[0], pre[1], pre[2], a, b};
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, all, 5);
    coll_free(&c);
}

/* In-flight tickets complete out of order: flush waits for all of them. */
static void test_inflight_out_of_order(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, 1 << 20, NULL), 0);
    struct gfs_jticket t[3];
    struct gfs_jfile *jf[3];
    uint64_t off[3];
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR, &jf[i], &off[i], &t[i]), 0);
    assert_true(t[0].ticket < t[1].ticket && t[1].ticket < t[2].ticket);
    assert_int_equal(off[1], off[0] + GFS_JREC_HDR);
    gfs_journal_complete(&j, jf[1], &t[1], 1); /* middle first */
    assert_ptr_equal(j.inflight_head, &t[0]);
    assert_ptr_equal(j.inflight_tail, &t[2]);
    assert_ptr_equal(t[0].next, &t[2]);
    assert_ptr_equal(t[2].prev, &t[0]);
    gfs_journal_complete(&j, jf[2], &t[2], 1); /* tail */
    assert_ptr_equal(j.inflight_tail, &t[0]);
    gfs_journal_complete(&j, jf[0], &t[0], 1);
    assert_null(j.inflight_head);
    assert_null(j.inflight_tail);
    pthread_mutex_unlock(&f->lock);
    gfs_journal_destroy(&j);
}

/* A failed write (complete with ok == 0) makes the journal refuse. */
static void test_failed_write(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, 1 << 20, NULL), 0);
    struct xrec x[2];
    write_many(&j, &f->lock, x, 2, 1, 4, 3);
    struct gfs_jticket t;
    struct gfs_jfile *jf;
    uint64_t off;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR + 512, &jf, &off, &t), 0);
    gfs_journal_complete(&j, jf, &t, 0);
    assert_true(j.failed);
    assert_int_equal(gfs_journal_reserve(&j, GFS_JREC_HDR + 512, &jf, &off, &t), -EIO);
    assert_int_equal(gfs_journal_flush(&j, &f->lock), -EIO);
    pthread_mutex_unlock(&f->lock);
    gfs_journal_destroy(&j);
    /* what was written before the hole still replays */
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, 1 << 20, &c, &ms), 0);
    expect_records(&c, x, 2);
    coll_free(&c);
}

/* ---- full disk ---- */

static void test_enospc(void **state)
{
    struct fx *f = *state;
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/small", f->root);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1M") != 0) {
        rmdir(mnt);
        skip();
    }
    /* the journal lives on the 1 MiB tmpfs */
    snprintf(f->jdir, sizeof f->jdir, "%s/journal", mnt);
    uint64_t fsz = 256 * 1024;
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    enum { MAXREC = 2000 };
    static struct xrec x[MAXREC + 8];
    size_t n = 0;
    int r = 0;
    uint64_t s = 11;
    uint64_t cur_id = 0, cur_used = 0;
    while (n < MAXREC) {
        x[n] = mkrec(&s, n + 1, 16);
        if (j.cur) {
            cur_id = j.cur->id;
            cur_used = j.cur->used;
        }
        r = submit(&j, &f->lock, &x[n]);
        if (r < 0)
            break;
        n++;
    }
    assert_int_equal(r, -ENOSPC);
    assert_true(n > 10);
    /* nothing happened to the journal: same current file, not failed, no
     * stray file, no END record appended */
    assert_false(j.failed);
    assert_int_equal(j.cur->id, cur_id);
    assert_int_equal(j.cur->used, cur_used);
    assert_null(j.inflight_head);
    uint64_t ids[16];
    size_t nf = list_logs(f->jdir, ids, 16);
    size_t nlist = 0;
    for (struct gfs_jfile *q = j.files; q; q = q->next)
        nlist++;
    assert_int_equal(nf, nlist);
    assert_int_equal(ids[nf - 1], cur_id);
    /* a record that still fits in the current file is accepted */
    struct xrec z = {.type = GFS_JREC_ZERO, .seq = n + 1, .offset = 0, .length = 512};
    if (cur_used + GFS_JREC_HDR <= j.cur->size) {
        assert_int_equal(submit(&j, &f->lock, &z), 0);
        x[n++] = z;
    }
    assert_int_equal(flush(&j, &f->lock), 0);
    /* after gc frees the old files, writes rotate again */
    for (struct gfs_jfile *q = j.files; q; q = q->next)
        q->live = 0;
    pthread_mutex_lock(&f->lock);
    assert_true(gfs_journal_gc(&j, &f->lock, 0) > 0);
    pthread_mutex_unlock(&f->lock);
    size_t first = 0;
    while (x[first].file_id != j.cur->id)
        first++;
    struct xrec big = {.type = GFS_JREC_WRITE, .seq = n + 1, .offset = 0, .length = 128 * 1024,
                       .data_len = 128 * 1024};
    for (int k = 0; k < 3; k++) {
        big.seq = n + 1;
        assert_int_equal(submit(&j, &f->lock, &big), 0);
        x[n++] = big;
    }
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    expect_records(&c, x + first, n - first);
    coll_free(&c);
    rm_tree(f->jdir);
    assert_int_equal(umount2(mnt, 0), 0);
    rmdir(mnt);
}

/* ---- zero-ahead ---- */

/* 1 if [from, to) of fd has an unwritten (preallocated, never written)
 * extent, 0 if not, -1 if the file system cannot say (no FIEMAP). Syncs
 * first: ext4 converts an extent when its pages are written back. */
static int has_unwritten(int fd, uint64_t from, uint64_t to)
{
    enum { NEXT = 64 };
    struct fiemap *fm = calloc(1, sizeof *fm + NEXT * sizeof(struct fiemap_extent));
    assert_non_null(fm);
    fm->fm_start = from;
    fm->fm_length = to - from;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = NEXT;
    int r = 0;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
        r = -1;
    } else {
        for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
            const struct fiemap_extent *e = &fm->fm_extents[i];
            if ((e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && e->fe_logical < to &&
                e->fe_logical + e->fe_length > from)
                r = 1;
        }
    }
    free(fm);
    return r;
}

/* Small appends land in written extents: the file is written ahead of its
 * tail, so an fdatasync after an append converts no extent (no inode write
 * per FLUSH). Records replay as before (the zeroes read as the log's end). */
static void test_zero_ahead(void **state)
{
    struct fx *f = *state;
    uint64_t fsz = 4u << 20;
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, fsz, NULL), 0);
    enum { N = 40 };
    struct xrec x[N];
    for (size_t i = 0; i < N; i++) {
        x[i] = (struct xrec){.type = GFS_JREC_WRITE, .seq = i + 1, .offset = i * 4096,
                             .length = 4096, .data_len = 4096};
        assert_int_equal(submit(&j, &f->lock, &x[i]), 0);
    }
    assert_int_equal(flush(&j, &f->lock), 0);
    struct gfs_jfile *cur = j.cur;
    uint64_t used = cur->used;
    /* the file system must have unwritten extents at all (ext4, XFS), else
     * there is nothing to see: the far end of the file was never touched */
    int far = has_unwritten(cur->fd, fsz - 4096, fsz);
    if (far != 1) {
        gfs_journal_destroy(&j);
        skip();
    }
    assert_true(cur->zeroed >= used + GFS_JZERO_AHEAD / 2);
    assert_int_equal(has_unwritten(cur->fd, 0, used + GFS_JZERO_AHEAD / 2), 0);
    /* a big record is not zeroed ahead of (it writes whole pages itself) */
    struct xrec big = {.type = GFS_JREC_WRITE, .seq = N + 1, .offset = 0,
                       .length = GFS_JZERO_AHEAD, .data_len = GFS_JZERO_AHEAD};
    uint64_t before = cur->zeroed;
    assert_int_equal(submit(&j, &f->lock, &big), 0);
    assert_int_equal(cur->zeroed, cur->used > before ? cur->used : before);
    assert_int_equal(flush(&j, &f->lock), 0);
    gfs_journal_destroy(&j);
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, fsz, &c, &ms), 0);
    struct xrec all[N + 1];
    memcpy(all, x, sizeof x);
    all[N] = big;
    expect_records(&c, all, N + 1);
    assert_int_equal(ms, N + 1);
    coll_free(&c);
}

/* ---- group commit ---- */

struct gc_arg {
    struct fx *f;
    struct gfs_journal *j;
    uint64_t seq;
    int iters;
    int rc;
};

static void *gc_flusher(void *p)
{
    struct gc_arg *a = p;
    for (int i = 0; i < a->iters && a->rc == 0; i++) {
        struct xrec x = {.type = GFS_JREC_ZERO, .seq = a->seq + (uint64_t)i, .offset = 0,
                         .length = 512};
        a->rc = submit(a->j, &a->f->lock, &x);
        if (a->rc == 0)
            a->rc = flush(a->j, &a->f->lock);
    }
    return NULL;
}

/* Flushers that arrive while a sync round is in flight wait for it and then
 * share one round: K of them cost one sync. (The round in flight is
 * simulated: syncing set while they arrive, then cleared as a leader would
 * when its fdatasync returned without covering their writes.) */
static void test_group_commit(void **state)
{
    struct fx *f = *state;
    struct gfs_journal j;
    assert_int_equal(gfs_journal_init(&j, f->jdir, 1u << 20, NULL), 0);
    enum { K = 8 };
    pthread_t th[K];
    struct gc_arg a[K];
    pthread_mutex_lock(&f->lock);
    j.syncing = 1;
    pthread_mutex_unlock(&f->lock);
    for (int i = 0; i < K; i++) {
        a[i] = (struct gc_arg){f, &j, (uint64_t)i + 1, 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, gc_flusher, &a[i]), 0);
    }
    /* all K wait for the round in flight (poll with a deadline) */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        pthread_mutex_lock(&f->lock);
        unsigned w = j.sync_waiters;
        pthread_mutex_unlock(&f->lock);
        if (w == K)
            break;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        assert_true(t.tv_sec - t0.tv_sec < 30);
        sched_yield();
    }
    pthread_mutex_lock(&f->lock);
    assert_int_equal(j.syncs, 0);
    j.syncing = 0; /* the round ends without covering them */
    pthread_cond_broadcast(&j.sync_cond);
    pthread_mutex_unlock(&f->lock);
    for (int i = 0; i < K; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(a[i].rc, 0);
    }
    assert_int_equal(j.syncs, 1); /* one round for all K */
    assert_int_equal(j.synced_done, j.done_gen);
    for (struct gfs_jfile *q = j.files; q; q = q->next)
        assert_int_equal(q->synced_gen, q->write_gen);
    /* nothing new: a flush syncs nothing */
    assert_int_equal(flush(&j, &f->lock), 0);
    assert_int_equal(j.syncs, 1);

    /* real concurrency: every flush returns, never more rounds than
     * flushes, and every record replays */
    enum { ITERS = 25 };
    for (int i = 0; i < K; i++) {
        a[i] = (struct gc_arg){f, &j, 100 + (uint64_t)i * ITERS, ITERS, 0};
        assert_int_equal(pthread_create(&th[i], NULL, gc_flusher, &a[i]), 0);
    }
    for (int i = 0; i < K; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(a[i].rc, 0);
    }
    assert_true(j.syncs <= 1 + K * ITERS);
    assert_int_equal(j.sync_waiters, 0);
    assert_int_equal(j.synced_done, j.done_gen);
    gfs_journal_destroy(&j);
    struct coll c;
    uint64_t ms;
    assert_int_equal(recover_into(f, 1u << 20, &c, &ms), 0);
    assert_int_equal(c.n, K + K * ITERS);
    coll_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_error_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_gap_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_gap_8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_gap_16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_gap_32, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_gap_40, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_gap_48, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_nonlast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crc_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_mutation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acct_and_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
