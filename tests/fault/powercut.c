/*
 * powercut.c — an LD_PRELOAD shim that lets a test model a power cut of the
 * disk under glidefsd's cache directory (tests/fault/test_powercut.py).
 *
 * The process runs normally: every write goes to the real file, so reads see
 * what was written, exactly as with a page cache. Besides, for every regular
 * file under $GLIDEFS_PC_ROOT the shim keeps a *shadow* copy in
 * $GLIDEFS_PC_SHADOW/<dev>-<ino> that holds only what the file held at its
 * last fsync()/fdatasync() (or, for a file that existed before, what it held
 * when the process first opened it: that state counts as durable). After the
 * test SIGKILLs the process it rolls every file back to its shadow (all
 * unsynced writes lost) or to a random page-by-page mix of shadow and file
 * (unsynced writes partly written back, in any order): see
 * faultlib.power_cut().
 *
 * Intercepted: open/open64/openat/openat64/creat/creat64/fopen/fopen64 (take
 * the baseline of an existing file before it can change; a created file
 * starts with an empty shadow), fsync/fdatasync/sync_file_range with WAIT_AFTER/
 * syncfs/sync (copy the file's current bytes and size into its shadow, after
 * the real call succeeded), unlink/unlinkat/remove/rename/renameat/renameat2
 * (drop the shadow of an inode that goes away, so a reused inode number is
 * not mistaken for it).
 *
 * Directory entries of new files: a file created by this process (marked
 * with $SHADOW/<dev>-<ino>.new) keeps its name after a cut only if a
 * directory fsync listed it ($SHADOW/dir-<dev>-<ino>: the names present at
 * the directory's last fsync, or when the shim first saw the directory).
 *
 * Not modelled: unlink and rename of existing names and mkdir (durable at
 * once), torn writes inside a 4 KiB page, a disk that ignores FLUSH, I/O
 * that bypasses libc (io_uring, mmap stores, raw syscalls).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* define open and open64 (etc.) both, under their own names */
#undef _FILE_OFFSET_BITS
#undef _TIME_BITS
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static pthread_mutex_t pc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;
static char pc_root[PATH_MAX];
static size_t pc_root_len;
static char pc_shadow[PATH_MAX];
static int pc_on;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_creat)(const char *, mode_t);
static int (*real_creat64)(const char *, mode_t);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_remove)(const char *);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);

#define RESOLVE(name) (real_##name = dlsym(RTLD_NEXT, #name))

static void pc_init(void)
{
    RESOLVE(open);
    RESOLVE(open64);
    RESOLVE(openat);
    RESOLVE(openat64);
    RESOLVE(creat);
    RESOLVE(creat64);
    RESOLVE(fopen);
    RESOLVE(fopen64);
    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(sync_file_range);
    RESOLVE(syncfs);
    RESOLVE(sync);
    RESOLVE(unlink);
    RESOLVE(unlinkat);
    RESOLVE(remove);
    RESOLVE(rename);
    RESOLVE(renameat);
    RESOLVE(renameat2);
    const char *r = getenv("GLIDEFS_PC_ROOT"), *s = getenv("GLIDEFS_PC_SHADOW");
    if (!r || !s || !*r || !*s)
        return;
    if (!realpath(r, pc_root) || !realpath(s, pc_shadow)) {
        fprintf(stderr, "powercut: GLIDEFS_PC_ROOT/SHADOW must exist\n");
        abort();
    }
    pc_root_len = strlen(pc_root);
    pc_on = 1;
}

static void init(void)
{
    pthread_once(&pc_once, pc_init);
}

static void die(const char *what)
{
    /* the model would be wrong from here on: stop loudly */
    fprintf(stderr, "powercut: %s: %s\n", what, strerror(errno));
    abort();
}

/* Absolute, normalised-enough path of (dirfd, path) without following the
 * last component; 0 if it is under the root. */
static int under_root(int dirfd, const char *path, char *out, size_t outlen)
{
    char dir[PATH_MAX];
    if (!pc_on || !path)
        return -1;
    if (path[0] == '/') {
        snprintf(out, outlen, "%s", path);
    } else {
        if (dirfd == AT_FDCWD) {
            if (!getcwd(dir, sizeof dir))
                return -1;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, dir, sizeof dir - 1);
            if (n < 0)
                return -1;
            dir[n] = 0;
        }
        snprintf(out, outlen, "%s/%s", dir, path);
    }
    return strncmp(out, pc_root, pc_root_len) == 0 &&
                   (out[pc_root_len] == '/' || out[pc_root_len] == 0)
               ? 0
               : -1;
}

static int fd_under_root(int fd)
{
    char link[64], p[PATH_MAX];
    if (!pc_on)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, p, sizeof p - 1);
    if (n < 0)
        return 0;
    p[n] = 0;
    return strncmp(p, pc_root, pc_root_len) == 0 && p[pc_root_len] == '/';
}

static void shadow_path(const struct stat *st, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%llu-%llu", pc_shadow, (unsigned long long)st->st_dev,
             (unsigned long long)st->st_ino);
}

/* Make the shadow of the file open as fd an exact copy of it (size and bytes),
 * writing only what differs. Holes in the file read as zeroes in both. */
static void copy_to_shadow(int fd, const char *sp, int create_only)
{
    int sfd = real_open(sp, O_RDWR | O_CREAT | O_CLOEXEC | (create_only ? O_EXCL : 0), 0600);
    if (sfd < 0) {
        if (create_only && errno == EEXIST)
            return;
        die("open shadow");
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat");
    static char a[65536], b[65536]; /* under pc_lock */
    off_t size = st.st_size;
    for (off_t off = 0; off < size;) {
        off_t data = lseek(fd, off, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            data = size; /* only a hole up to the end */
        else if (data < 0)
            data = off;  /* no SEEK_DATA: treat all as data */
        if (data > off) {
            /* a hole [off, data): zero the shadow there if it holds anything */
            for (off_t p = off; p < data;) {
                size_t n = (size_t)(data - p < (off_t)sizeof b ? data - p : (off_t)sizeof b);
                ssize_t r = pread(sfd, b, n, p);
                if (r < 0)
                    die("pread shadow");
                int nz = 0;
                for (ssize_t i = 0; i < r && !nz; i++)
                    nz = b[i] != 0;
                if (nz) {
                    memset(a, 0, (size_t)r);
                    if (pwrite(sfd, a, (size_t)r, p) != r)
                        die("pwrite shadow");
                }
                p += (off_t)n;
            }
            off = data;
            continue;
        }
        off_t hole = lseek(fd, off, SEEK_HOLE);
        if (hole < 0 || hole > size)
            hole = size;
        for (off_t p = off; p < hole;) {
            size_t n = (size_t)(hole - p < (off_t)sizeof a ? hole - p : (off_t)sizeof a);
            ssize_t r = pread(fd, a, n, p);
            if (r <= 0) {
                if (r == 0)
                    break;
                die("pread file");
            }
            ssize_t q = pread(sfd, b, (size_t)r, p);
            if (q < 0)
                die("pread shadow");
            if (q != r || memcmp(a, b, (size_t)r) != 0) {
                if (pwrite(sfd, a, (size_t)r, p) != r)
                    die("pwrite shadow");
            }
            p += r;
        }
        off = hole;
    }
    if (ftruncate(sfd, size) < 0)
        die("ftruncate shadow");
    close(sfd);
}

/* Write the names in directory dir (absolute) to its listing file. Called
 * with pc_lock held. only_if_missing: the baseline, taken once. */
static void write_listing(const char *dir, int only_if_missing)
{
    struct stat st;
    char lp[PATH_MAX + 64], tmp[PATH_MAX + 80];
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return;
    snprintf(lp, sizeof lp, "%s/dir-%llu-%llu", pc_shadow, (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    if (only_if_missing && access(lp, F_OK) == 0)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", lp);
    DIR *d = opendir(dir);
    if (!d)
        return;
    FILE *f = real_fopen(tmp, "w");
    if (!f)
        die("write listing");
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            fprintf(f, "%s\n", de->d_name);
    closedir(d);
    if (fclose(f) != 0 || real_rename(tmp, lp) < 0)
        die("write listing");
}

static void parent_of(const char *abs, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", abs);
    char *sl = strrchr(out, '/');
    if (sl && sl != out)
        *sl = 0;
}

/* Before an open of (dirfd, path): take the baseline of an existing regular
 * file the shim has not seen yet. Returns 1 if the file did not exist. */
static int before_open(int dirfd, const char *path)
{
    char abs[PATH_MAX * 2], sp[PATH_MAX + 64];
    if (under_root(dirfd, path, abs, sizeof abs) < 0)
        return 0;
    struct stat st;
    if (stat(abs, &st) < 0) {
        if (errno != ENOENT)
            return 0;
        char dir[PATH_MAX * 2];
        parent_of(abs, dir, sizeof dir);
        pthread_mutex_lock(&pc_lock);
        write_listing(dir, 1); /* the names before this create */
        pthread_mutex_unlock(&pc_lock);
        return 1;
    }
    if (!S_ISREG(st.st_mode))
        return 0;
    shadow_path(&st, sp, sizeof sp);
    pthread_mutex_lock(&pc_lock);
    if (access(sp, F_OK) < 0) {
        int fd = real_open(abs, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            copy_to_shadow(fd, sp, 1);
            close(fd);
        }
    }
    pthread_mutex_unlock(&pc_lock);
    return 0;
}

/* After an open that created fd: its shadow starts empty (replacing a stale
 * one of a reused inode number). */
static void after_create(int fd)
{
    struct stat st;
    char sp[PATH_MAX + 64];
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !fd_under_root(fd))
        return;
    shadow_path(&st, sp, sizeof sp);
    pthread_mutex_lock(&pc_lock);
    int sfd = real_open(sp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (sfd < 0)
        die("create shadow");
    close(sfd);
    char mp[PATH_MAX + 80];
    snprintf(mp, sizeof mp, "%s.new", sp); /* created here: its name needs a dir fsync */
    sfd = real_open(mp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (sfd < 0)
        die("create marker");
    close(sfd);
    pthread_mutex_unlock(&pc_lock);
}

static void after_sync(int fd)
{
    struct stat st;
    char sp[PATH_MAX + 64];
    if (!pc_on || fstat(fd, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        char link[64], p[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, p, sizeof p - 1);
        if (n < 0)
            return;
        p[n] = 0;
        if (strncmp(p, pc_root, pc_root_len) == 0 && (p[pc_root_len] == '/' || !p[pc_root_len])) {
            pthread_mutex_lock(&pc_lock);
            write_listing(p, 0);
            pthread_mutex_unlock(&pc_lock);
        }
        return;
    }
    if (!S_ISREG(st.st_mode) || !fd_under_root(fd))
        return;
    shadow_path(&st, sp, sizeof sp);
    /* fd may be write-only: read through a read-only open of the same file */
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    pthread_mutex_lock(&pc_lock);
    int rfd = real_open(link, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        die("reopen for reading");
    copy_to_shadow(rfd, sp, 0);
    close(rfd);
    pthread_mutex_unlock(&pc_lock);
}

/* An inode under the root is about to lose a name: returns its shadow path
 * in sp (empty if none applies) to drop once the call succeeded. */
static void before_remove(int dirfd, const char *path, char *sp, size_t splen)
{
    char abs[PATH_MAX * 2];
    struct stat st;
    sp[0] = 0;
    if (under_root(dirfd, path, abs, sizeof abs) < 0)
        return;
    if (lstat(abs, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink > 1)
        return;
    shadow_path(&st, sp, splen);
}

static void drop_shadow(const char *sp)
{
    if (sp[0]) {
        char mp[PATH_MAX + 80];
        snprintf(mp, sizeof mp, "%s.new", sp);
        pthread_mutex_lock(&pc_lock);
        real_unlink(sp);
        real_unlink(mp);
        pthread_mutex_unlock(&pc_lock);
    }
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode, int at, int is64)
{
    init();
    int fresh = before_open(dirfd, path) && (flags & O_CREAT);
    int fd;
    if (at)
        fd = (is64 ? real_openat64 : real_openat)(dirfd, path, flags, mode);
    else
        fd = (is64 ? real_open64 : real_open)(path, flags, mode);
    if (fd >= 0 && fresh)
        after_create(fd);
    return fd;
}

static mode_t va_mode(int flags, va_list ap)
{
    if ((flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE)
        return (mode_t)va_arg(ap, int);
    return 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, m, 0, 0);
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, m, 0, 1);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, m, 1, 0);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, m, 1, 1);
}

EXPORT int creat(const char *path, mode_t mode)
{
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EXPORT int creat64(const char *path, mode_t mode)
{
    return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

static FILE *fopen_common(const char *path, const char *mode, int is64)
{
    init();
    int creates = mode && (mode[0] == 'w' || mode[0] == 'a');
    int fresh = before_open(AT_FDCWD, path);
    FILE *f = (is64 ? real_fopen64 : real_fopen)(path, mode);
    if (f && creates && fresh)
        after_create(fileno(f));
    return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
    return fopen_common(path, mode, 0);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
    return fopen_common(path, mode, 1);
}

EXPORT int fsync(int fd)
{
    init();
    int r = real_fsync(fd);
    if (r == 0)
        after_sync(fd);
    return r;
}

EXPORT int fdatasync(int fd)
{
    init();
    int r = real_fdatasync(fd);
    if (r == 0)
        after_sync(fd);
    return r;
}

EXPORT int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
    init();
    int r = real_sync_file_range(fd, off, n, flags);
    /* sync_file_range never makes data durable (no flush of the disk cache):
     * deliberately not counted as a sync */
    return r;
}

static void sync_all_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] != '.' && fd != dirfd(d))
            after_sync(fd);
    }
    closedir(d);
}

EXPORT int syncfs(int fd)
{
    init();
    int r = real_syncfs(fd);
    if (r == 0)
        sync_all_open();
    return r;
}

EXPORT void sync(void)
{
    init();
    real_sync();
    sync_all_open();
}

EXPORT int unlink(const char *path)
{
    init();
    char sp[PATH_MAX + 64];
    before_remove(AT_FDCWD, path, sp, sizeof sp);
    int r = real_unlink(path);
    if (r == 0)
        drop_shadow(sp);
    return r;
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    init();
    char sp[PATH_MAX + 64];
    before_remove(dirfd, path, sp, sizeof sp);
    int r = real_unlinkat(dirfd, path, flags);
    if (r == 0)
        drop_shadow(sp);
    return r;
}

EXPORT int remove(const char *path)
{
    init();
    char sp[PATH_MAX + 64];
    before_remove(AT_FDCWD, path, sp, sizeof sp);
    int r = real_remove(path);
    if (r == 0)
        drop_shadow(sp);
    return r;
}

/* A name appears in a directory: make sure its pre-state listing exists. */
static void before_new_name(int dirfd, const char *path)
{
    char abs[PATH_MAX * 2], dir[PATH_MAX * 2];
    if (under_root(dirfd, path, abs, sizeof abs) < 0)
        return;
    parent_of(abs, dir, sizeof dir);
    pthread_mutex_lock(&pc_lock);
    write_listing(dir, 1);
    pthread_mutex_unlock(&pc_lock);
}

EXPORT int rename(const char *from, const char *to)
{
    init();
    char sp[PATH_MAX + 64];
    before_new_name(AT_FDCWD, to);
    before_remove(AT_FDCWD, to, sp, sizeof sp); /* the replaced target goes away */
    int r = real_rename(from, to);
    if (r == 0)
        drop_shadow(sp);
    return r;
}

EXPORT int renameat(int fd1, const char *from, int fd2, const char *to)
{
    init();
    char sp[PATH_MAX + 64];
    before_new_name(fd2, to);
    before_remove(fd2, to, sp, sizeof sp);
    int r = real_renameat(fd1, from, fd2, to);
    if (r == 0)
        drop_shadow(sp);
    return r;
}

EXPORT int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags)
{
    init();
    char sp[PATH_MAX + 64];
    before_new_name(fd2, to);
    before_remove(fd2, to, sp, sizeof sp);
    int r = real_renameat2(fd1, from, fd2, to, flags);
    if (r == 0)
        drop_shadow(sp);
    return r;
}
