/*
 * localstate.c — a volume's cache dir besides journal and cache
 * (localstate.h): the dir and its lock, <dir>/epoch, and the journals kept
 * aside after the lease was lost.
 */
#include "localstate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"

#define FENCED_PREFIX "fenced-"

int gfs_local_open(const char *cache_dir, const char *name, char **dir, int *created,
                   int *lockfd)
{
    *created = 0;
    *lockfd = -1;
    if (asprintf(dir, "%s/%s", cache_dir, name) < 0) {
        *dir = NULL;
        return -ENOMEM;
    }
    if (mkdir(*dir, 0700) == 0)
        *created = 1;
    else if (errno != EEXIST)
        return -errno;
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", *dir);
    *lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*lockfd < 0)
        return -errno;
    if (flock(*lockfd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? -EBUSY : -errno;
    return 0;
}

void gfs_local_unmake(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/lock", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/writer", dir);
    unlink(p);
    rmdir(dir);
}

int gfs_local_epoch_read(const char *dir, uint64_t *epoch)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/epoch", dir);
    FILE *f = fopen(path, "re");
    *epoch = 0;
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    unsigned long long e = 0;
    int n = fscanf(f, "%llu", &e);
    fclose(f);
    if (n != 1)
        return -EIO;
    *epoch = e;
    return 0;
}

int gfs_local_epoch_write(const char *dir, uint64_t epoch)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/epoch", dir);
    snprintf(tmp, sizeof tmp, "%s/epoch.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", epoch);
    int r = 0;
    if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
        r = -errno ? -errno : -EIO;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r == 0)
        gfs_fsync_dir(dir);
    return r;
}

void gfs_local_aside_path(const char *dir, uint64_t epoch, char *to, size_t tolen)
{
    snprintf(to, tolen, "%s/" FENCED_PREFIX "%016" PRIx64 "-%" PRId64, dir, epoch,
             gfs_wall_ms());
}

int gfs_local_set_aside(const char *dir, const char *to)
{
    char from[4200];
    snprintf(from, sizeof from, "%s/journal", dir);
    if (rename(from, to) < 0)
        return -errno;
    gfs_fsync_dir(dir);
    return 0;
}

/* Call fn(path of dir/name, arg) for each kept-aside journal; stops at the
 * first non-zero return. -errno if dir cannot be read. */
static int each_fenced(const char *dir, int (*fn)(const char *path, const char *leaf, void *arg),
                       void *arg)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (strncmp(de->d_name, FENCED_PREFIX, strlen(FENCED_PREFIX)) != 0)
            continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        r = fn(p, de->d_name, arg);
    }
    closedir(d);
    return r;
}

static __thread uint64_t *du_bytes; /* nftw has no user argument */

static int du_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)p;
    (void)ftw;
    if (flag == FTW_F)
        *du_bytes += (uint64_t)sb->st_size;
    return 0;
}

static int du_one(const char *path, const char *leaf, void *arg)
{
    (void)leaf;
    du_bytes = arg;
    nftw(path, du_entry, 8, FTW_PHYS);
    du_bytes = NULL;
    return 0;
}

uint64_t gfs_local_fenced_bytes(const char *dir)
{
    uint64_t bytes = 0;
    each_fenced(dir, du_one, &bytes);
    return bytes;
}

struct newest {
    char *out;
    size_t outlen;
    uint64_t epoch;
    long long ms;
};

static int newer(const char *path, const char *leaf, void *arg)
{
    struct newest *n = arg;
    unsigned long long e;
    long long ms;
    char tail;
    if (sscanf(leaf + strlen(FENCED_PREFIX), "%16llx-%lld%c", &e, &ms, &tail) != 2)
        return 0;
    if (n->ms < 0 || e > n->epoch || (e == n->epoch && ms > n->ms)) {
        n->epoch = e;
        n->ms = ms;
        snprintf(n->out, n->outlen, "%s", path);
    }
    return 0;
}

int gfs_local_fenced_newest(const char *dir, char *out, size_t outlen, uint64_t *epoch)
{
    struct newest n = {out, outlen, 0, -1};
    int r = each_fenced(dir, newer, &n);
    if (r < 0)
        return r;
    if (n.ms < 0)
        return -ENOENT;
    *epoch = n.epoch;
    return 0;
}

static int rm_one(const char *path, const char *leaf, void *arg)
{
    (void)leaf;
    int *first = arg;
    int r = gfs_rm_tree(path);
    if (r < 0 && !*first)
        *first = r;
    return 0;
}

int gfs_local_fenced_discard(const char *dir, int *rm_err)
{
    *rm_err = 0;
    return each_fenced(dir, rm_one, rm_err);
}
