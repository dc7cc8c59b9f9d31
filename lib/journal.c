/*
 * journal.c — the dirty journal's files and records (see journal.h).
 */
#include "journal.h"
#include "clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "log.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "journal records are stored in host order, which must be little-endian");

/* header layout: magic u32, type u16, hdr_len u16, seq u64, offset u64,
 * length u32, data_len u32, crc u32, reserved u32 */
struct jhdr {
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
_Static_assert(sizeof(struct jhdr) == GFS_JREC_HDR, "journal header is 40 bytes");

static void jfile_free(struct gfs_jfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    free(f);
}

static void jacct(struct gfs_journal *j, int64_t delta)
{
    if (j->acct && delta)
        j->acct(j->acct_arg, delta);
}

static void fname(char *buf, size_t len, uint64_t id)
{
    snprintf(buf, len, "%016" PRIx64 ".log", id);
}

int gfs_journal_init(struct gfs_journal *j, const char *dir, uint64_t file_size,
                     const struct gfs_log *log)
{
    memset(j, 0, sizeof *j);
    j->dirfd = -1;
    j->log = log;
    j->file_size = file_size;
    j->next_id = 1;
    j->dir = strdup(dir);
    j->zeros = calloc(1, GFS_JZERO_BUF);
    if (!j->dir || !j->zeros)
        return -ENOMEM;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0)
        return -errno;
    gfs_cond_init(&j->inflight_cond);
    gfs_cond_init(&j->sync_cond);
    return 0;
}

void gfs_journal_destroy(struct gfs_journal *j)
{
    struct gfs_jfile *f = j->files;
    while (f) {
        struct gfs_jfile *n = f->next;
        jfile_free(f);
        f = n;
    }
    jacct(j, -(int64_t)j->bytes);
    if (j->dirfd >= 0) {
        close(j->dirfd);
        pthread_cond_destroy(&j->inflight_cond);
        pthread_cond_destroy(&j->sync_cond);
    }
    free(j->dir);
    free(j->zeros);
    memset(j, 0, sizeof *j);
    j->dirfd = -1;
}

void gfs_journal_encode(const struct gfs_jrec *rec, const struct iovec *data, int iovcnt,
                        uint8_t out[GFS_JREC_HDR])
{
    struct jhdr h = {
        .magic = GFS_JREC_MAGIC,
        .type = (uint16_t)rec->type,
        .hdr_len = GFS_JREC_HDR,
        .seq = rec->seq,
        .offset = rec->offset,
        .length = rec->length,
        .data_len = rec->data_len,
        .crc = 0,
        .reserved = 0,
    };
    uint32_t crc = gfs_crc32c(0, &h, sizeof h);
    for (int i = 0; i < iovcnt; i++)
        crc = gfs_crc32c(crc, data[i].iov_base, data[i].iov_len);
    h.crc = crc;
    memcpy(out, &h, sizeof h);
}

int gfs_journal_write(struct gfs_jfile *jf, uint64_t off, const struct gfs_jrec *rec,
                      const void *data)
{
    uint8_t hdr[GFS_JREC_HDR];
    struct iovec iov[2] = {{hdr, GFS_JREC_HDR}, {(void *)data, (size_t)rec->data_len}};
    int iovcnt = rec->data_len ? 2 : 1;
    gfs_journal_encode(rec, &iov[1], iovcnt - 1, hdr);
    size_t want = GFS_JREC_HDR + (size_t)rec->data_len, done = 0;
    while (done < want) {
        ssize_t w = pwritev(jf->fd, iov, iovcnt, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -EIO;
        done += (size_t)w;
        /* advance the iovecs past what was written (rare: short write) */
        size_t adv = (size_t)w;
        while (adv && iovcnt) {
            if (adv >= iov[0].iov_len) {
                adv -= iov[0].iov_len;
                iov[0] = iov[1];
                iovcnt--;
            } else {
                iov[0].iov_base = (uint8_t *)iov[0].iov_base + adv;
                iov[0].iov_len -= adv;
                adv = 0;
            }
        }
    }
    return 0;
}

/* Append an END record at the file's tail and make it durable. */
static int write_end(struct gfs_journal *j, struct gfs_jfile *f)
{
    if (f->used + GFS_JREC_HDR > f->size)
        return 0; /* exactly full: EOF itself marks the end */
    struct gfs_jrec r = {.type = GFS_JREC_END};
    uint8_t hdr[GFS_JREC_HDR];
    gfs_journal_encode(&r, NULL, 0, hdr);
    if (pwrite(f->fd, hdr, sizeof hdr, (off_t)f->used) != (ssize_t)sizeof hdr)
        return errno ? -errno : -EIO;
    f->used += GFS_JREC_HDR;
    f->write_gen++;
    j->done_gen++;
    return 0;
}

/* Keep the current file written ahead of its tail (journal.h): an append
 * then needs no extent conversion, so its FLUSH writes no inode, and lands
 * in whole cached pages. Only for small records: a big one writes whole
 * pages itself. Lock held; [used, ...) belongs to no reservation yet. */
static void zero_ahead(struct gfs_journal *j, struct gfs_jfile *f, uint64_t reclen)
{
    if (f->zeroed < f->used)
        f->zeroed = f->used; /* the records reserved there write those bytes */
    if (reclen >= GFS_JZERO_AHEAD / 2 || f->zeroed >= f->size ||
        f->zeroed - f->used >= GFS_JZERO_AHEAD / 2)
        return;
    uint64_t end = (f->zeroed + GFS_JZERO_AHEAD) & ~(uint64_t)4095;
    if (end > f->size)
        end = f->size;
    struct iovec iov[GFS_JZERO_AHEAD / GFS_JZERO_BUF + 1];
    int n = 0;
    for (uint64_t left = end - f->zeroed; left; n++) {
        size_t k = left < GFS_JZERO_BUF ? (size_t)left : GFS_JZERO_BUF;
        iov[n] = (struct iovec){j->zeros, k};
        left -= k;
    }
    ssize_t w = pwritev(f->fd, iov, n, (off_t)f->zeroed);
    if (w > 0)
        f->zeroed += (uint64_t)w; /* (a failure costs only speed: the space is allocated) */
}

static int new_file(struct gfs_journal *j, uint64_t size, struct gfs_jfile **out)
{
    char name[64];
    fname(name, sizeof name, j->next_id);
    int fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* Preallocate so a full disk shows up here, before any write is accepted,
     * never in the middle of the log. */
    int r = posix_fallocate(fd, 0, (off_t)size);
    if (r != 0) {
        close(fd);
        unlinkat(j->dirfd, name, 0);
        return -r;
    }
    struct gfs_jfile *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        unlinkat(j->dirfd, name, 0);
        return -ENOMEM;
    }
    f->id = j->next_id++;
    f->fd = fd;
    f->size = size;
    /* link at the tail */
    struct gfs_jfile **pp = &j->files;
    while (*pp)
        pp = &(*pp)->next;
    *pp = f;
    j->bytes += size;
    jacct(j, (int64_t)size);
    j->dir_gen++;
    *out = f;
    return 0;
}

static uint64_t next_size(const struct gfs_journal *j, uint64_t reclen)
{
    uint64_t size = j->file_size;
    if (reclen + GFS_JREC_HDR > size)
        size = (reclen + GFS_JREC_HDR + 4095) & ~(uint64_t)4095;
    return size;
}

uint64_t gfs_journal_need(const struct gfs_journal *j, uint64_t reclen)
{
    const struct gfs_jfile *f = j->cur;
    if (f && f->used + reclen <= f->size)
        return 0;
    return next_size(j, reclen);
}

int gfs_journal_reserve(struct gfs_journal *j, uint64_t reclen, struct gfs_jfile **jf,
                        uint64_t *off, struct gfs_jticket *t)
{
    if (j->failed)
        return -EIO;
    struct gfs_jfile *f = j->cur;
    if (!f || f->used + reclen > f->size) {
        uint64_t size = next_size(j, reclen);
        struct gfs_jfile *nf = NULL;
        int r = new_file(j, size, &nf);
        if (r < 0)
            return r;
        if (f) {
            r = write_end(j, f);
            if (r < 0) {
                j->failed = 1;
                return r;
            }
        }
        j->cur = f = nf;
    }
    *jf = f;
    *off = f->used;
    f->used += reclen;
    zero_ahead(j, f, reclen);
    t->ticket = j->next_ticket++;
    t->next = NULL;
    t->prev = j->inflight_tail;
    if (j->inflight_tail)
        j->inflight_tail->next = t;
    else
        j->inflight_head = t;
    j->inflight_tail = t;
    return 0;
}

void gfs_journal_complete(struct gfs_journal *j, struct gfs_jfile *jf, struct gfs_jticket *t,
                          int ok)
{
    int was_head = (j->inflight_head == t);
    if (t->prev)
        t->prev->next = t->next;
    else
        j->inflight_head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        j->inflight_tail = t->prev;
    if (ok) {
        jf->write_gen++;
        j->done_gen++;
    } else
        j->failed = 1; /* a hole in the log: refuse further writes rather than risk it */
    if (was_head)
        pthread_cond_broadcast(&j->inflight_cond);
}

struct sync_item {
    int fd;
    uint64_t gen;
    struct gfs_jfile *f;
};

int gfs_journal_flush(struct gfs_journal *j, pthread_mutex_t *lock)
{
    uint64_t target = j->next_ticket;
    while (j->inflight_head && j->inflight_head->ticket < target)
        pthread_cond_wait(&j->inflight_cond, lock);
    /* Everything this flush must make durable has completed: it is all
     * counted in done_gen (and dir_gen for the files it went into). */
    uint64_t need = j->done_gen, need_dir = j->dir_gen;
    for (;;) {
        if (j->failed)
            return -EIO;
        if (j->synced_done >= need && j->dir_synced_gen >= need_dir)
            return 0;
        if (!j->syncing)
            break; /* lead the next round */
        /* A round is in flight: it covers us (then we are done when it is)
         * or it does not (then the next round, which starts after it, does:
         * the flushers waiting here meanwhile share that one). */
        j->sync_waiters++;
        pthread_cond_wait(&j->sync_cond, lock);
        j->sync_waiters--;
    }

    size_t n = 0;
    for (struct gfs_jfile *f = j->files; f; f = f->next)
        if (f->write_gen != f->synced_gen)
            n++;
    CLEANUP_FREE struct sync_item *items = calloc(n ? n : 1, sizeof *items);
    if (!items)
        return -ENOMEM;
    size_t k = 0;
    for (struct gfs_jfile *f = j->files; f; f = f->next) {
        if (f->write_gen != f->synced_gen) {
            atomic_fetch_add_explicit(&f->pins, 1, memory_order_relaxed); /* keep fd open while unlocked */
            items[k++] = (struct sync_item){f->fd, f->write_gen, f};
        }
    }
    /* this round makes durable all that completed until now */
    uint64_t done = j->done_gen, dir_gen = j->dir_gen;
    int need_dir_sync = dir_gen != j->dir_synced_gen;
    j->syncing = 1;
    if (k || need_dir_sync)
        j->syncs++; /* (none when what completed was deleted meanwhile: gc, reset) */
    pthread_mutex_unlock(lock);
    int err = 0;
    for (size_t i = 0; i < k; i++)
        if (fdatasync(items[i].fd) < 0 && !err)
            err = -errno;
    if (need_dir_sync && fsync(j->dirfd) < 0 && !err)
        err = -errno;
    pthread_mutex_lock(lock);
    for (size_t i = 0; i < k; i++) {
        struct gfs_jfile *f = items[i].f;
        atomic_fetch_sub_explicit(&f->pins, 1, memory_order_release);
        if (!err && f->synced_gen < items[i].gen)
            f->synced_gen = items[i].gen;
    }
    if (!err) {
        if (j->dir_synced_gen < dir_gen)
            j->dir_synced_gen = dir_gen;
        if (j->synced_done < done)
            j->synced_done = done;
    } else {
        gfs_err(j->log, "journal: fdatasync failed: %s", strerror(-err));
        j->failed = 1; /* after a failed fsync the page cache state is unknown */
    }
    j->syncing = 0;
    pthread_cond_broadcast(&j->sync_cond);
    return err;
}

int gfs_journal_reset(struct gfs_journal *j)
{
    if (j->inflight_head)
        return -EBUSY;
    for (struct gfs_jfile *f = j->files; f; f = f->next)
        if (atomic_load_explicit(&f->pins, memory_order_acquire) || f->live)
            return -EBUSY;
    uint64_t freed = 0;
    while (j->files) {
        struct gfs_jfile *f = j->files;
        char name[64];
        fname(name, sizeof name, f->id);
        unlinkat(j->dirfd, name, 0);
        j->files = f->next;
        j->bytes -= f->size;
        freed += f->size;
        jfile_free(f);
    }
    jacct(j, -(int64_t)freed); /* unlinked and closed: the space is free */
    j->cur = NULL;
    j->dir_gen++;
    return fsync(j->dirfd) < 0 ? -errno : 0;
}

int gfs_journal_retire(struct gfs_journal *j)
{
    struct gfs_jfile *f = j->cur;
    if (!f || j->failed || f->live || j->inflight_head ||
        atomic_load_explicit(&f->pins, memory_order_acquire))
        return 0;
    if (write_end(j, f) < 0)
        return 0; /* keep it as it is: the next write goes on in it */
    j->cur = NULL;
    return 1;
}

int gfs_journal_gc(struct gfs_journal *j, pthread_mutex_t *lock, int retire_cur)
{
    if (retire_cur)
        gfs_journal_retire(j);
    int any = 0;
    for (struct gfs_jfile *f = j->files; f; f = f->next)
        if (f != j->cur && f->live == 0 && atomic_load_explicit(&f->pins, memory_order_acquire) == 0)
            any = 1;
    if (!any)
        return 0;
    int r = gfs_journal_flush(j, lock);
    if (r < 0)
        return r;
    int removed = 0;
    struct gfs_jfile **pp = &j->files;
    while (*pp) {
        struct gfs_jfile *f = *pp;
        if (f != j->cur && f->live == 0 && atomic_load_explicit(&f->pins, memory_order_acquire) == 0) {
            char name[64];
            fname(name, sizeof name, f->id);
            if (unlinkat(j->dirfd, name, 0) < 0 && errno != ENOENT) {
                pp = &f->next;
                continue;
            }
            *pp = f->next;
            j->bytes -= f->size;
            uint64_t size = f->size;
            jfile_free(f);
            jacct(j, -(int64_t)size); /* after the close: the space is free now */
            removed++;
            continue;
        }
        pp = &f->next;
    }
    if (removed)
        fsync(j->dirfd); /* best effort: a resurrected dead file replays as already-synced data */
    return removed;
}

/* ---- recovery ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int list_ids(int dirfd, uint64_t **ids, size_t *n)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    size_t cap = 16, cnt = 0;
    uint64_t *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d))) {
        char *end;
        if (strlen(de->d_name) != 20 || strcmp(de->d_name + 16, ".log") != 0)
            continue;
        errno = 0;
        uint64_t id = strtoull(de->d_name, &end, 16);
        if (errno || end != de->d_name + 16 || id == 0)
            continue;
        if (cnt == cap) {
            uint64_t *nv = realloc(v, 2 * cap * sizeof *nv);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
            cap *= 2;
        }
        v[cnt++] = id;
    }
    closedir(d);
    if (!v)
        return -ENOMEM;
    qsort(v, cnt, sizeof *v, cmp_u64);
    *ids = v;
    *n = cnt;
    return 0;
}

/* Validate the record at pos. Returns 1 for a whole record (*h filled),
 * 0 for "no valid record here". */
static int read_record(int fd, uint64_t pos, uint64_t fsize, struct jhdr *h, uint8_t **buf,
                       size_t *bufcap)
{
    if (pos + GFS_JREC_HDR > fsize)
        return 0;
    if (pread(fd, h, sizeof *h, (off_t)pos) != (ssize_t)sizeof *h)
        return 0;
    if (h->magic != GFS_JREC_MAGIC || h->hdr_len != GFS_JREC_HDR || h->reserved != 0)
        return 0;
    switch (h->type) {
    case GFS_JREC_WRITE:
        if (h->data_len != h->length)
            return 0;
        break;
    case GFS_JREC_ZERO:
    case GFS_JREC_END:
        if (h->data_len != 0)
            return 0;
        break;
    default:
        return 0;
    }
    if (h->type != GFS_JREC_END && (h->length == 0 || h->length % 512 || h->offset % 512))
        return 0;
    if (h->data_len > fsize - pos - GFS_JREC_HDR)
        return 0;
    if (h->data_len > *bufcap) {
        uint8_t *nb = realloc(*buf, h->data_len);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *bufcap = h->data_len;
    }
    if (h->data_len &&
        pread(fd, *buf, h->data_len, (off_t)(pos + GFS_JREC_HDR)) != (ssize_t)h->data_len)
        return 0;
    struct jhdr c = *h;
    c.crc = 0;
    uint32_t crc = gfs_crc32c(0, &c, sizeof c);
    crc = gfs_crc32c(crc, *buf, h->data_len);
    return crc == h->crc;
}

int gfs_journal_recover(struct gfs_journal *j, gfs_journal_replay_fn fn, void *arg,
                        uint64_t *max_seq)
{
    CLEANUP_FREE uint64_t *ids = NULL;
    size_t n = 0;
    int r = list_ids(j->dirfd, &ids, &n);
    if (r < 0)
        return r;
    *max_seq = 0;
    CLEANUP_FREE uint8_t *buf = NULL;
    size_t bufcap = 0;
    int torn = 0;
    for (size_t i = 0; i < n; i++) {
        char name[64];
        fname(name, sizeof name, ids[i]);
        if (ids[i] >= j->next_id)
            j->next_id = ids[i] + 1;
        if (torn) {
            /* everything after a torn record was never flushed: drop it for good */
            gfs_warn(j->log, "journal: discarding %s after a torn record", name);
            unlinkat(j->dirfd, name, 0);
            continue;
        }
        int fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        struct stat stt;
        if (fstat(fd, &stt) < 0) {
            close(fd);
            return -errno;
        }
        struct gfs_jfile *f = calloc(1, sizeof *f);
        if (!f) {
            close(fd);
            return -ENOMEM;
        }
        f->id = ids[i];
        f->fd = fd;
        f->size = (uint64_t)stt.st_size;
        struct gfs_jfile **pp = &j->files;
        while (*pp)
            pp = &(*pp)->next;
        *pp = f;
        j->bytes += f->size;
        jacct(j, (int64_t)f->size); /* found on disk: it counts as it is */

        uint64_t pos = 0;
        int ended = 0;
        for (;;) {
            struct jhdr h;
            int ok = read_record(fd, pos, f->size, &h, &buf, &bufcap);
            if (ok < 0)
                return ok;
            if (!ok)
                break;
            if (h.type == GFS_JREC_END) {
                ended = 1;
                pos += GFS_JREC_HDR;
                break;
            }
            struct gfs_jrec rec = {h.type, h.seq, h.offset, h.length, h.data_len};
            if (h.seq > *max_seq)
                *max_seq = h.seq;
            r = fn(arg, &rec, f, pos + GFS_JREC_HDR);
            if (r < 0)
                return r;
            pos += GFS_JREC_HDR + h.data_len;
        }
        f->used = pos;
        f->zeroed = pos;
        /* less room than a header: the writer moved on because nothing fit */
        if (!ended && f->size - pos < GFS_JREC_HDR && i + 1 < n)
            ended = 1;
        if (!ended && pos < f->size && i + 1 < n) {
            torn = 1;
            gfs_warn(j->log, "journal: torn record in %s at offset %" PRIu64
                     "; later unflushed writes are dropped", name, pos);
        }
        if (!ended && i + 1 < n) {
            /* Cut the file here and mark its end, so this decision is final. */
            if (ftruncate(fd, (off_t)pos) < 0)
                return -errno;
            j->bytes -= f->size - pos;
            jacct(j, -(int64_t)(f->size - pos));
            f->size = pos + GFS_JREC_HDR;
            if (posix_fallocate(fd, (off_t)pos, GFS_JREC_HDR) != 0)
                return -ENOSPC;
            j->bytes += GFS_JREC_HDR;
            jacct(j, GFS_JREC_HDR);
            r = write_end(j, f);
            if (r < 0)
                return r;
            if (fdatasync(fd) < 0)
                return -errno;
        }
        f->write_gen = f->synced_gen = 1;
    }
    /* The last file: later writes go to a new file; end this one so the next
     * recovery does not take a torn tail here for the end of the log. */
    struct gfs_jfile *last = j->files;
    while (last && last->next)
        last = last->next;
    if (last) {
        if (last->used + GFS_JREC_HDR > last->size) {
            if (posix_fallocate(last->fd, (off_t)last->used, GFS_JREC_HDR) == 0) {
                j->bytes += last->used + GFS_JREC_HDR - last->size;
                jacct(j, (int64_t)(last->used + GFS_JREC_HDR - last->size));
                last->size = last->used + GFS_JREC_HDR;
            }
        }
        r = write_end(j, last);
        if (r < 0)
            return r;
        if (fdatasync(last->fd) < 0)
            return -errno;
        last->synced_gen = last->write_gen;
    }
    if (fsync(j->dirfd) < 0)
        return -errno;
    return 0;
}

/* ---- the dirty index's view of the files (dirty_index.h) ---- */

/* CRC-32C of [used - span, used + span) clipped to the file: the end of
 * the last record and what follows it (zeroes, until someone appends). */
static int tail_crc(int fd, uint64_t used, uint64_t size, uint32_t *out)
{
    uint8_t buf[2 * GFS_JTAIL_SPAN];
    uint64_t lo = used > GFS_JTAIL_SPAN ? used - GFS_JTAIL_SPAN : 0;
    uint64_t hi = size - used > GFS_JTAIL_SPAN ? used + GFS_JTAIL_SPAN : size;
    size_t want = (size_t)(hi - lo), got = 0;
    while (got < want) {
        ssize_t k = pread(fd, buf + got, want - got, (off_t)(lo + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EIO;
        got += (size_t)k;
    }
    *out = gfs_crc32c(0, buf, want);
    return 0;
}

static int ident_fd(int fd, uint64_t id, uint64_t used, struct gfs_jfile_id *out)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    memset(out, 0, sizeof *out);
    out->id = id;
    out->size = (uint64_t)st.st_size;
    out->used = used;
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    if (used > out->size)
        return -ESTALE;
    return tail_crc(fd, used, out->size, &out->tail_crc);
}

int gfs_journal_ident(const struct gfs_jfile *f, struct gfs_jfile_id *out)
{
    return ident_fd(f->fd, f->id, f->used, out);
}

static const char *ident_diff(const struct gfs_jfile_id *a, const struct gfs_jfile_id *b)
{
    if (a->dev != b->dev || a->ino != b->ino)
        return "another file (device or inode)";
    if (a->size != b->size)
        return "its size";
    if (a->mtime_ns != b->mtime_ns || a->ctime_ns != b->ctime_ns)
        return "its modification or change time";
    if (a->tail_crc != b->tail_crc)
        return "the bytes at its tail";
    return NULL;
}

int gfs_journal_adopt(struct gfs_journal *j, const struct gfs_jfile_id *ids, uint32_t n,
                      uint64_t cur_id, uint64_t next_id, struct gfs_jfile **files, char *why,
                      size_t whylen)
{
    CLEANUP_FREE uint64_t *have = NULL;
    size_t nh = 0;
    int r = list_ids(j->dirfd, &have, &nh);
    if (r < 0) {
        snprintf(why, whylen, "cannot list the journal: %s", strerror(-r));
        return -ESTALE;
    }
    if (nh != n) {
        snprintf(why, whylen, "the journal has %zu files, the index names %" PRIu32, nh, n);
        return -ESTALE;
    }
    for (uint32_t i = 0; i < n; i++) {
        files[i] = NULL;
        if (have[i] != ids[i].id) {
            snprintf(why, whylen, "journal file %016" PRIx64 " is not the index's", have[i]);
            return -ESTALE;
        }
    }
    r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        char name[64];
        fname(name, sizeof name, ids[i].id);
        int fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
        struct gfs_jfile_id now;
        const char *diff = NULL;
        if (fd < 0) {
            snprintf(why, whylen, "%s: %s", name, strerror(errno));
            r = -ESTALE;
        } else if (ident_fd(fd, ids[i].id, ids[i].used, &now) < 0) {
            snprintf(why, whylen, "%s: cannot be read as the index says", name);
            r = -ESTALE;
        } else if ((diff = ident_diff(&now, &ids[i]))) {
            snprintf(why, whylen, "%s changed since the index was written: %s", name, diff);
            r = -ESTALE;
        } else if (!(files[i] = calloc(1, sizeof *files[i]))) {
            r = -ENOMEM;
        }
        if (r < 0) {
            if (fd >= 0)
                close(fd);
            break;
        }
        files[i]->id = ids[i].id;
        files[i]->fd = fd;
        files[i]->size = ids[i].size;
        files[i]->used = files[i]->zeroed = ids[i].used;
        files[i]->write_gen = files[i]->synced_gen = 1; /* flushed before the index was written */
    }
    if (r < 0) {
        for (uint32_t i = 0; i < n; i++) {
            if (files[i])
                jfile_free(files[i]);
            files[i] = NULL;
        }
        if (r == -ENOMEM)
            snprintf(why, whylen, "out of memory");
        return r;
    }
    /* all as the index says: they are the journal now */
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        files[i]->next = i + 1 < n ? files[i + 1] : NULL;
        bytes += files[i]->size;
    }
    j->files = n ? files[0] : NULL;
    j->cur = n && cur_id == ids[n - 1].id ? files[n - 1] : NULL;
    j->bytes += bytes;
    jacct(j, (int64_t)bytes);
    if (n && ids[n - 1].id >= next_id)
        next_id = ids[n - 1].id + 1;
    if (next_id > j->next_id)
        j->next_id = next_id;
    return 0;
}
