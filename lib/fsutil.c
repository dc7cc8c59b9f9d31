/*
 * fsutil.c — directories, hex digits and uuids (fsutil.h).
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

int gfs_file_put(const char *path, const void *buf, size_t n, int sync)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int r = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    for (size_t done = 0; done < n && r == 0;) {
        ssize_t w = write(fd, (const uint8_t *)buf + done, n - done);
        if (w < 0 && errno != EINTR)
            r = -errno;
        else if (w > 0)
            done += (size_t)w;
    }
    if (r == 0 && sync && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    if (sync)
        gfs_fsync_parent(path);
    return 0;
}

int gfs_file_take(const char *path, size_t max, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    uint8_t *b = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        r = -errno;
    else if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > max)
        r = -EINVAL;
    else if (!(b = malloc(st.st_size ? (size_t)st.st_size : 1)))
        r = -ENOMEM;
    size_t n = r == 0 ? (size_t)st.st_size : 0, got = 0;
    while (r == 0 && got < n) {
        ssize_t k = read(fd, b + got, n - got);
        if (k < 0 && errno != EINTR)
            r = -errno;
        else if (k == 0)
            r = -EINVAL; /* shorter than it said a moment ago */
        else if (k > 0)
            got += (size_t)k;
    }
    close(fd);
    if (unlink(path) < 0 && r == 0)
        r = -errno;
    *buf = b;
    *len = n;
    return r;
}

int gfs_mkdir_p(const char *path, mode_t mode, int sync)
{
    CLEANUP_FREE char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, mode) == 0) {
            if (sync)
                gfs_fsync_parent(p);
        } else if (errno != EEXIST) {
            return -errno;
        }
        *s = saved;
        if (saved == '\0')
            return 0;
    }
}

void gfs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

void gfs_fsync_parent(const char *path)
{
    CLEANUP_FREE char *parent = strdup(path);
    if (!parent)
        return;
    char *slash = strrchr(parent, '/');
    if (!slash)
        return;
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    gfs_fsync_dir(parent);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

int gfs_rm_tree(const char *path)
{
    /* FTW_PHYS: a link is an entry, never a way into another tree */
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

int gfs_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gfs_uuid_parse(const char *s, uint8_t out[16])
{
    int n = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '-')
            continue;
        /* lowercase only (docs/design.md 5.4) */
        int hi = *p >= 'A' && *p <= 'F' ? -1 : gfs_hexval(p[0]);
        int lo = !p[1] || (p[1] >= 'A' && p[1] <= 'F') ? -1 : gfs_hexval(p[1]);
        if (hi < 0 || lo < 0 || n >= 16)
            return -EINVAL;
        out[n++] = (uint8_t)(hi << 4 | lo);
        p++;
    }
    return n == 16 ? 0 : -EINVAL;
}

void gfs_uuid_format(const uint8_t u[16], char out[40])
{
    snprintf(out, 40,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
             u[13], u[14], u[15]);
}

int gfs_uuid_new(uint8_t out[16])
{
    if (getrandom(out, 16, 0) != 16)
        return -EIO;
    out[6] = (out[6] & 0x0f) | 0x40; /* version 4 */
    out[8] = (out[8] & 0x3f) | 0x80; /* variant 1 */
    return 0;
}
