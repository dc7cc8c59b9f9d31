/*
 * identity.c — the instance id of a cache dir and the writer record of a
 * volume (identity.h), both read back from local disk: validated, never
 * trusted blindly.
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "cleanup.h"
#include "config.h"
#include "crc32c.h"
#include "log.h"

#define INSTANCE_FILE ".instance"

static int mkdir_p(const char *path)
{
    CLEANUP_FREE char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* 0 and the id, -ENOENT, or -EIO for a file that holds something else. */
static int read_instance(const char *path, char out[GFS_LEASE_ID_HEX + 1])
{
    int fd CLEANUP_CLOSE = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    char buf[GFS_LEASE_ID_HEX + 8];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    if (n == GFS_LEASE_ID_HEX + 1 && buf[GFS_LEASE_ID_HEX] == '\n')
        buf[GFS_LEASE_ID_HEX] = '\0';
    if (!gfs_lease_id_valid(buf))
        return -EIO;
    memcpy(out, buf, GFS_LEASE_ID_HEX + 1);
    return 0;
}

int gfs_instance_get(const char *cache_dir, struct gfs_log *log, char out[GFS_LEASE_ID_HEX + 1])
{
    int r = mkdir_p(cache_dir);
    if (r < 0) {
        gfs_err(log, "cannot create cache dir %s: %s", cache_dir, strerror(-r));
        return r;
    }
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/" INSTANCE_FILE, cache_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        r = read_instance(path, out);
        if (r == -EIO)
            gfs_err(log, "%s is not an instance id (32 hex digits); remove it to give this "
                    "cache dir a new writer identity (the write leases it held then count as "
                    "another node's)", path);
        if (r != -ENOENT)
            return r;
        /* first use: a new id, made whole in a temp file and linked into
         * place, so a concurrent first use keeps whichever came first */
        char id[GFS_LEASE_ID_HEX + 1];
        r = gfs_lease_new_id(id);
        if (r < 0)
            return r;
        snprintf(tmp, sizeof tmp, "%s/" INSTANCE_FILE ".tmp.%ld.%.8s", cache_dir, (long)getpid(),
                 id);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        char line[GFS_LEASE_ID_HEX + 2];
        snprintf(line, sizeof line, "%s\n", id);
        ssize_t w = write(fd, line, GFS_LEASE_ID_HEX + 1);
        r = w == GFS_LEASE_ID_HEX + 1 && fsync(fd) == 0 ? 0 : -EIO;
        close(fd);
        if (r == 0 && link(tmp, path) < 0 && errno != EEXIST)
            r = -errno;
        unlink(tmp);
        if (r < 0) {
            gfs_err(log, "cannot create %s: %s", path, strerror(-r));
            return r;
        }
        fsync_dir(cache_dir);
    }
    return -EIO;
}

GLIDEFS_API int glidefs_instance_id(const glidefs_config *cfg, char *buf, size_t len)
{
    if (!cfg || !cfg->cache_dir || !buf || len < GFS_LEASE_ID_HEX + 1)
        return -EINVAL;
    char id[GFS_LEASE_ID_HEX + 1];
    int r = gfs_instance_get(cfg->cache_dir, (struct gfs_log *)&cfg->log, id);
    if (r == 0)
        memcpy(buf, id, GFS_LEASE_ID_HEX + 1);
    return r;
}

/* ------------------------------------------------------------------------ */
/* the writer record                                                          */

#define WREC_FILE "writer"
#define WREC_MAGIC "GFSWREC1"
#define SLOT 256
#define SLOT_BODY 160 /* bytes the CRC covers; the CRC follows */

int gfs_wrec_open(const char *dir, int create, int *fd)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" WREC_FILE, dir);
    *fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (*fd >= 0 || errno != ENOENT || !create)
        return *fd >= 0 ? 0 : -errno;
    /* both slots allocated now, so later writes overwrite in place */
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (*fd < 0)
        return -errno;
    int r = posix_fallocate(*fd, 0, 2 * SLOT);
    if (r == 0 && fsync(*fd) < 0)
        r = errno;
    if (r != 0) {
        close(*fd);
        *fd = -1;
        unlink(path);
        return -r;
    }
    fsync_dir(dir);
    return 0;
}

static void put_slot(uint8_t *p, const struct gfs_wslot *s)
{
    if (s->session[0])
        memcpy(p, s->session, GFS_LEASE_ID_HEX);
    gfs_le64_put(p + 32, s->epoch);
    gfs_le64_put(p + 40, s->from_epoch);
    gfs_le64_put(p + 48, s->gen);
}

static int get_slot(const uint8_t *p, struct gfs_wslot *s)
{
    static const uint8_t zero[GFS_LEASE_ID_HEX];
    memset(s, 0, sizeof *s);
    if (memcmp(p, zero, GFS_LEASE_ID_HEX) != 0) {
        memcpy(s->session, p, GFS_LEASE_ID_HEX);
        if (!gfs_lease_id_valid(s->session))
            return -1;
    }
    s->epoch = gfs_le64_get(p + 32);
    s->from_epoch = gfs_le64_get(p + 40);
    s->gen = gfs_le64_get(p + 48);
    return 0;
}

/* 0 and the slot's record, or -1 for a slot that is empty, torn or foreign. */
static int decode_slot(const uint8_t *b, struct gfs_wrec *rec)
{
    if (memcmp(b, WREC_MAGIC, 8) != 0 ||
        gfs_le32_get(b + SLOT_BODY) != gfs_crc32c(0, b, SLOT_BODY))
        return -1;
    memset(rec, 0, sizeof *rec);
    rec->seq = gfs_le64_get(b + 8);
    memcpy(rec->instance, b + 16, GFS_LEASE_ID_HEX);
    if (!gfs_lease_id_valid(rec->instance) || get_slot(b + 48, &rec->cur) < 0 ||
        get_slot(b + 104, &rec->prev) < 0)
        return -1;
    return 0;
}

int gfs_wrec_read(int fd, struct gfs_wrec *rec)
{
    uint8_t buf[2 * SLOT];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n < 0)
        return -errno;
    struct gfs_wrec a, b;
    int va = n >= SLOT && decode_slot(buf, &a) == 0;
    int vb = n >= 2 * SLOT && decode_slot(buf + SLOT, &b) == 0;
    if (!va && !vb)
        return -ENOENT;
    *rec = va && (!vb || a.seq > b.seq) ? a : b;
    return 0;
}

int gfs_wrec_write(int fd, struct gfs_wrec *rec)
{
    if (!gfs_lease_id_valid(rec->instance))
        return -EINVAL;
    rec->seq++;
    uint8_t b[SLOT] = {0};
    memcpy(b, WREC_MAGIC, 8);
    gfs_le64_put(b + 8, rec->seq);
    memcpy(b + 16, rec->instance, GFS_LEASE_ID_HEX);
    put_slot(b + 48, &rec->cur);
    put_slot(b + 104, &rec->prev);
    gfs_le32_put(b + SLOT_BODY, gfs_crc32c(0, b, SLOT_BODY));
    /* the slot the newest record is not in: a torn write leaves that one */
    off_t off = (off_t)(rec->seq % 2) * SLOT;
    ssize_t w = pwrite(fd, b, SLOT, off);
    if (w != SLOT)
        return w < 0 ? -errno : -EIO;
    return fdatasync(fd) < 0 ? -errno : 0;
}
