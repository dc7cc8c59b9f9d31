/*
 * objstore_file.c — the file:// object store: objects are files under a root
 * directory, key "a/b/c" at <root>/a/b/c. The embedded default and the store
 * the tests run against.
 *
 * Keys: 1..1024 bytes, no leading '/', no "//", no "..", no trailing '/', no
 * control bytes, and no path component starting with '.' (dot names are
 * reserved for the store's temp files and are never listed). Anything else is
 * -EINVAL before it comes near a path.
 *
 * Guarantees:
 *  - put is atomic and durable: the bytes go to a unique hidden temp file
 *    ".tmp.<random>" in the key's directory, which is fsynced and then renamed
 *    over the key; the directory is fsynced afterwards, and every directory
 *    put creates has its parent fsynced. Readers see the old or the new
 *    object, never a mix.
 *  - Conditional puts are serialised by flock() on the key's directory, which
 *    every put and delete of this store takes around its check-and-rename
 *    (writing and fsyncing the temp file happens outside the lock, so puts in
 *    one directory still overlap). GFS_PUT_IF_NONE_MATCH also uses
 *    renameat2(RENAME_NOREPLACE) (or link() where that is unsupported), so it
 *    holds even against writers that do not take the lock. if_match holds
 *    against every writer going through this code, in any process on this
 *    host (flock is not reliable on network filesystems).
 *  - ETag = "<crc32c>-<size>-<mtime ns>-<inode>" in hex. A replacement always
 *    gets a new inode while the old one still exists, so the tag changes on
 *    every put; the content CRC keeps a reused inode with an equal mtime
 *    (coarse clocks) from looking like an older version. Computing it reads
 *    the object, so head costs O(size).
 *  - Reads need no lock: objects are never modified in place.
 *  - Every key resolves beneath the root and never through a symbolic link:
 *    a directory on a key's path is opened with openat2(RESOLVE_BENEATH |
 *    RESOLVE_NO_SYMLINKS) where the kernel has it, else one O_NOFOLLOW
 *    openat() per path component; the object itself is opened O_NOFOLLOW,
 *    and listing never descends into a link. A link where a directory
 *    should be is an error (logged), never followed: a link planted in the
 *    store cannot make the daemon write or delete files elsewhere.
 *  - Objects are created 0600 and directories 0700: a store holds guests'
 *    disks (unencrypted unless storage.encryption_password is set).
 * Crash leftovers (".tmp.*" of a put that never finished) are not swept; they
 * are invisible to every operation.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "cleanup.h"
#include "crc32c.h"
#include "log.h"
#include "objstore.h"

/* One line into the caller's err buffer, if it gave one. */
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#define KEY_MAX 1024u
#define COMPONENT_MAX 255u
#define TMP_PREFIX ".tmp."
#define READ_CHUNK (256u * 1024u)

struct file_store {
    struct gfs_objstore base; /* first: the generic code casts */
    int rootfd;
    char *root;
    _Atomic uint64_t tmp_counter; /* only to make temp names unique */
    atomic_int walk_only;         /* openat2 is missing (old kernel, seccomp): walk */
};

#define STAT_ADD(st, field, n) gfs_stat_add(&(st)->base.stats.field, (uint64_t)(n))

static struct file_store *fs_of(struct gfs_objstore *s)
{
    return (struct file_store *)s;
}

/* Key (is_prefix == 0) or list prefix (is_prefix == 1: may be empty, may end
 * in '/', and its last component may be partial). */
static int key_ok(const char *key, int is_prefix)
{
    if (!key)
        return 0;
    size_t n = strlen(key);
    if ((!is_prefix && n == 0) || n > KEY_MAX || key[0] == '/')
        return 0;
    if (!is_prefix && key[n - 1] == '/')
        return 0;
    if (strstr(key, "//") || strstr(key, ".."))
        return 0;
    size_t comp = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c == '/') {
            comp = 0;
            continue;
        }
        if (comp == 0 && c == '.')
            return 0;
        if (++comp > COMPONENT_MAX)
            return 0;
    }
    return 1;
}

static int is_expected(int r)
{
    return r == -ENOENT || r == -EEXIST || r == -ECANCELED || r == -EFBIG;
}

/* errno of a failed system call -> the store's error vocabulary. */
static int store_err(struct file_store *st, const char *op, const char *key, int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return -ENOENT;
    case EACCES:
    case EPERM:
        gfs_err(st->base.log, "file store %s: %s %s: permission denied", st->root, op, key);
        return -EACCES;
    case ELOOP:
        gfs_err(st->base.log, "file store %s: %s %s: a directory on the key's path is a "
                "symbolic link; the store never follows links", st->root, op, key);
        return -EIO;
    case ENOMEM:
        return -ENOMEM;
    case ENOSPC:
    case EDQUOT:
        gfs_err(st->base.log, "file store %s: %s %s: no space left", st->root, op, key);
        return -ENOSPC;
    default: {
        char buf[128];
        gfs_err(st->base.log, "file store %s: %s %s: %s", st->root, op, key,
                strerror_r(e, buf, sizeof(buf)));
        return -EIO;
    }
    }
}

/* A put that failed for a reason that is not about space or permissions:
 * the key collides with the tree (a parent is an object, or the key is a
 * directory of other keys). */
static int put_err(struct file_store *st, const char *key, int e)
{
    if (e == ENOENT || e == ENOTDIR || e == EISDIR || e == ENOTEMPTY || e == EEXIST) {
        gfs_err(st->base.log, "file store %s: put %s: key collides with an existing object or prefix",
                st->root, key);
        return -EIO;
    }
    return store_err(st, "put", key, e);
}

static int count_err(struct file_store *st, int r)
{
    if (r < 0 && !is_expected(r))
        STAT_ADD(st, errors, 1);
    return r;
}

/* Split "a/b/c" into dir "a/b" (in buf) and base "c". */
static const char *split_key(const char *key, char *dir, size_t dirlen)
{
    const char *slash = strrchr(key, '/');
    if (!slash) {
        dir[0] = '\0';
        return key;
    }
    size_t n = (size_t)(slash - key);
    if (n >= dirlen)
        n = dirlen - 1; /* cannot happen: keys are <= KEY_MAX */
    memcpy(dir, key, n);
    dir[n] = '\0';
    return slash + 1;
}

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)

/* The directory dir (relative to the root, "" for the root) one component
 * at a time, each opened O_NOFOLLOW; with create, missing ones are made
 * (0700) and their parent fsynced so the new entries survive a power cut.
 * A symbolic link on the way is -ELOOP. */
static int open_dir_walk(struct file_store *st, const char *dir, int create)
{
    int fd = openat(st->rootfd, ".", DIR_FLAGS);
    if (fd < 0)
        return -errno;
    char comp[COMPONENT_MAX + 1];
    for (const char *p = dir; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || n > COMPONENT_MAX) {
            close(fd);
            return -EINVAL; /* key_ok already refuses these */
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int nfd = openat(fd, comp, DIR_FLAGS);
        if (nfd < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0700) == 0) {
                if (fsync(fd) < 0) {
                    int e = errno;
                    close(fd);
                    return -e;
                }
            } else if (errno != EEXIST) {
                int e = errno;
                close(fd);
                return -e;
            }
            nfd = openat(fd, comp, DIR_FLAGS);
        }
        if (nfd < 0) {
            int e = errno;
            struct stat sb;
            if ((e == ENOTDIR || e == ELOOP) && fstatat(fd, comp, &sb, AT_SYMLINK_NOFOLLOW) == 0)
                e = S_ISLNK(sb.st_mode) ? ELOOP : ENOTDIR;
            close(fd);
            return -e;
        }
        close(fd);
        fd = nfd;
        p = slash ? slash + 1 : p + n;
    }
    return fd;
}

/* Open the directory dir (relative to the root) as a fresh open file
 * description (flock needs one per caller), creating it and its parents when
 * create is set. Resolves beneath the root without following any link.
 * Returns an fd or -errno (-ELOOP: a link on the way). */
static int open_dir(struct file_store *st, const char *dir, int create)
{
#ifdef SYS_openat2
    if (!atomic_load_explicit(&st->walk_only, memory_order_relaxed)) {
        struct open_how how = {
            .flags = DIR_FLAGS,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, st->rootfd, dir[0] ? dir : ".", &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        int e = errno;
        if (e == ENOSYS || e == EPERM || e == EINVAL || e == E2BIG)
            /* no openat2 here (kernel < 5.6, or a seccomp filter): walk from now on */
            atomic_store_explicit(&st->walk_only, 1, memory_order_relaxed);
        else if (e != EAGAIN && e != ENOTDIR && !(e == ENOENT && create))
            return -e; /* (ENOTDIR may be a link met with O_NOFOLLOW: the walk says) */
    }
#endif
    return open_dir_walk(st, dir, create);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Read up to len bytes at off; *got short only at end of file. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, p + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

static void make_etag(char *out, size_t outlen, uint32_t crc, const struct stat *sb)
{
    uint64_t mtime_ns = (uint64_t)sb->st_mtim.tv_sec * 1000000000u + (uint64_t)sb->st_mtim.tv_nsec;
    snprintf(out, outlen, "%08" PRIx32 "-%" PRIx64 "-%" PRIx64 "-%" PRIx64, crc,
             (uint64_t)sb->st_size, mtime_ns, (uint64_t)sb->st_ino);
}

/* Open an object for reading: a regular file, or -ENOENT. */
static int open_object(int dirfd, const char *name, struct stat *sb)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ELOOP || errno == EISDIR ? -ENOENT : -errno;
    if (fstat(fd, sb) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(sb->st_mode)) {
        close(fd);
        return -ENOENT; /* a directory is a prefix, not an object */
    }
    return fd;
}

/* Size and ETag of the open object fd (reads it to compute the CRC). */
static int etag_of_fd(int fd, const struct stat *sb, struct gfs_obj_info *info)
{
    CLEANUP_FREE char *buf = malloc(READ_CHUNK);
    if (!buf)
        return -ENOMEM;
    uint32_t crc = 0;
    uint64_t off = 0;
    for (;;) {
        size_t got = 0;
        int r = pread_all(fd, buf, READ_CHUNK, off, &got);
        if (r < 0)
            return r;
        crc = gfs_crc32c(crc, buf, got);
        off += got;
        if (got < READ_CHUNK)
            break;
    }
    if (off != (uint64_t)sb->st_size)
        return -EIO; /* changed under us: someone writes in place */
    info->size = off;
    make_etag(info->etag, sizeof(info->etag), crc, sb);
    return 0;
}

/* Info of key at dirfd/name, -ENOENT if missing. */
static int head_at(int dirfd, const char *name, struct gfs_obj_info *info)
{
    struct stat sb;
    CLEANUP_CLOSE int fd = open_object(dirfd, name, &sb);
    if (fd < 0)
        return fd;
    return etag_of_fd(fd, &sb, info);
}

static int make_temp(struct file_store *st, int dirfd, char *name, size_t namelen)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            rnd = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
        }
        uint64_t ctr = atomic_fetch_add_explicit(&st->tmp_counter, 1, memory_order_relaxed);
        snprintf(name, namelen, TMP_PREFIX "%d.%" PRIx64 ".%016" PRIx64, (int)getpid(), ctr, rnd);
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd >= 0 ? fd : -errno;
    }
    return -EEXIST;
}

/* Move tmp to name only if name does not exist. Called under the dir lock. */
static int publish_new(int dirfd, const char *tmp, const char *name)
{
    if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return -EEXIST;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -errno;
    /* Filesystem without RENAME_NOREPLACE: link() fails atomically if the
     * name exists. */
    if (linkat(dirfd, tmp, dirfd, name, 0) == 0) {
        unlinkat(dirfd, tmp, 0);
        return 0;
    }
    if (errno == EEXIST)
        return -EEXIST;
    if (errno != EPERM && errno != ENOTSUP)
        return -errno;
    /* No hard links either: the dir lock still orders us against every
     * writer of this store. */
    struct stat sb;
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    if (errno != ENOENT)
        return -errno;
    return renameat(dirfd, tmp, dirfd, name) == 0 ? 0 : -errno;
}

static int lock_dir(int dirfd)
{
    while (flock(dirfd, LOCK_EX) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static int file_put_etag(struct gfs_objstore *s, const char *key, const void *buf, size_t len,
                         unsigned flags, const char *if_match_etag, char etag_out[72])
{
    struct file_store *st = fs_of(s);
    if (!key_ok(key, 0) || (flags & ~GFS_PUT_IF_NONE_MATCH) || (!buf && len) ||
        ((flags & GFS_PUT_IF_NONE_MATCH) && if_match_etag))
        return count_err(st, -EINVAL);

    char dir[KEY_MAX + 1];
    const char *name = split_key(key, dir, sizeof(dir));
    CLEANUP_CLOSE int dirfd = open_dir(st, dir, 1);
    if (dirfd < 0)
        return count_err(st, put_err(st, key, -dirfd));

    char tmp[96];
    int r;
    {
        CLEANUP_CLOSE int fd = make_temp(st, dirfd, tmp, sizeof(tmp));
        if (fd < 0)
            return count_err(st, put_err(st, key, -fd));
        r = write_all(fd, buf, len);
        if (r == 0 && fsync(fd) < 0)
            r = -errno;
    }
    if (r < 0) {
        unlinkat(dirfd, tmp, 0);
        return count_err(st, store_err(st, "put", key, -r));
    }

    r = lock_dir(dirfd);
    if (r == 0) {
        if (if_match_etag) {
            struct gfs_obj_info cur;
            r = head_at(dirfd, name, &cur);
            if (r == -ENOENT || (r == 0 && strcmp(cur.etag, if_match_etag) != 0))
                r = -ECANCELED;
        }
        if (r == 0) {
            if (flags & GFS_PUT_IF_NONE_MATCH)
                r = publish_new(dirfd, tmp, name);
            else if (renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        }
        if (r == 0 && etag_out) {
            /* still under the directory lock: the ETag of exactly what we wrote */
            struct gfs_obj_info now;
            if (head_at(dirfd, name, &now) == 0)
                snprintf(etag_out, 72, "%s", now.etag);
            else
                etag_out[0] = 0;
        }
        flock(dirfd, LOCK_UN);
    }
    if (r < 0) {
        unlinkat(dirfd, tmp, 0);
        if (r == -EEXIST || r == -ECANCELED)
            return r;
        return count_err(st, put_err(st, key, -r));
    }
    if (fsync(dirfd) < 0)
        return count_err(st, store_err(st, "put", key, errno));
    STAT_ADD(st, puts, 1);
    STAT_ADD(st, put_bytes, len);
    return 0;
}

static int file_put(struct gfs_objstore *s, const char *key, const void *buf, size_t len,
                    unsigned flags, const char *if_match_etag)
{
    return file_put_etag(s, key, buf, len, flags, if_match_etag, NULL);
}

static int open_key(struct file_store *st, const char *key, struct stat *sb)
{
    char dir[KEY_MAX + 1];
    const char *name = split_key(key, dir, sizeof(dir));
    int dirfd = open_dir(st, dir, 0);
    if (dirfd < 0)
        return dirfd;
    int fd = open_object(dirfd, name, sb);
    close(dirfd);
    return fd;
}

static int file_get_range(struct gfs_objstore *s, const char *key, uint64_t offset, size_t len,
                          void *buf, size_t *got)
{
    struct file_store *st = fs_of(s);
    if (!key_ok(key, 0) || len == 0 || !buf || !got || offset > (uint64_t)INT64_MAX - len)
        return count_err(st, -EINVAL);
    *got = 0;
    struct stat sb;
    CLEANUP_CLOSE int fd = open_key(st, key, &sb);
    if (fd < 0)
        return count_err(st, store_err(st, "get", key, -fd));
    int r = pread_all(fd, buf, len, offset, got);
    if (r < 0)
        return count_err(st, store_err(st, "get", key, -r));
    STAT_ADD(st, gets, 1);
    STAT_ADD(st, get_bytes, *got);
    return 0;
}

static int file_get(struct gfs_objstore *s, const char *key, size_t max_len, void **out,
                    size_t *outlen, struct gfs_obj_info *info)
{
    struct file_store *st = fs_of(s);
    if (!key_ok(key, 0) || !out || !outlen)
        return count_err(st, -EINVAL);
    *out = NULL;
    *outlen = 0;
    struct stat sb;
    CLEANUP_CLOSE int fd = open_key(st, key, &sb);
    if (fd < 0)
        return count_err(st, store_err(st, "get", key, -fd));
    if ((uint64_t)sb.st_size > max_len || (uint64_t)sb.st_size >= SIZE_MAX)
        return -EFBIG;
    size_t size = (size_t)sb.st_size;
    /* One spare byte, kept NUL, so a zero-length object still gets a
     * non-NULL buffer. */
    CLEANUP_FREE char *buf = malloc(size + 1);
    if (!buf)
        return count_err(st, -ENOMEM);
    size_t got = 0;
    int r = pread_all(fd, buf, size, 0, &got);
    if (r < 0)
        return count_err(st, store_err(st, "get", key, -r));
    if (got != size)
        return count_err(st, store_err(st, "get", key, EIO));
    buf[size] = '\0';
    if (info) {
        info->size = size;
        make_etag(info->etag, sizeof(info->etag), gfs_crc32c(0, buf, size), &sb);
    }
    STAT_ADD(st, gets, 1);
    STAT_ADD(st, get_bytes, size);
    *outlen = size;
    *out = TAKE_PTR(buf);
    return 0;
}

static int file_head(struct gfs_objstore *s, const char *key, struct gfs_obj_info *info)
{
    struct file_store *st = fs_of(s);
    if (!key_ok(key, 0))
        return count_err(st, -EINVAL);
    struct gfs_obj_info tmp;
    struct stat sb;
    CLEANUP_CLOSE int fd = open_key(st, key, &sb);
    if (fd < 0)
        return count_err(st, store_err(st, "head", key, -fd));
    int r = etag_of_fd(fd, &sb, info ? info : &tmp);
    if (r < 0)
        return count_err(st, store_err(st, "head", key, -r));
    STAT_ADD(st, heads, 1);
    return 0;
}

static int file_del(struct gfs_objstore *s, const char *key)
{
    struct file_store *st = fs_of(s);
    if (!key_ok(key, 0))
        return count_err(st, -EINVAL);
    char dir[KEY_MAX + 1];
    const char *name = split_key(key, dir, sizeof(dir));
    CLEANUP_CLOSE int dirfd = open_dir(st, dir, 0);
    if (dirfd == -ENOENT || dirfd == -ENOTDIR) {
        STAT_ADD(st, deletes, 1);
        STAT_ADD(st, delete_requests, 1);
        return 0;
    }
    if (dirfd < 0)
        return count_err(st, store_err(st, "delete", key, -dirfd));
    int r = lock_dir(dirfd);
    if (r == 0) {
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT && errno != EISDIR)
            r = -errno;
        flock(dirfd, LOCK_UN);
    }
    if (r == 0 && fsync(dirfd) < 0)
        r = -errno;
    if (r < 0)
        return count_err(st, store_err(st, "delete", key, -r));
    STAT_ADD(st, deletes, 1);
    STAT_ADD(st, delete_requests, 1);
    return 0;
}

/* ---- list ---- */

struct listed {
    char *key;
    uint64_t size;
};

struct list_ctx {
    const char *prefix;
    size_t prefix_len;
    const char *start_after;
    struct listed *v;
    size_t n, cap;
};

static int listed_cmp(const void *a, const void *b)
{
    return strcmp(((const struct listed *)a)->key, ((const struct listed *)b)->key);
}

static int list_add(struct list_ctx *c, const char *key, uint64_t size)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct listed *nv = realloc(c->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        c->v = nv;
        c->cap = ncap;
    }
    char *k = strdup(key);
    if (!k)
        return -ENOMEM;
    c->v[c->n].key = k;
    c->v[c->n].size = size;
    c->n++;
    return 0;
}

/* Could the subtree whose keys all start with dirkey hold a wanted key? */
static int subtree_wanted(const struct list_ctx *c, const char *dirkey, size_t dlen)
{
    size_t m = dlen < c->prefix_len ? dlen : c->prefix_len;
    if (memcmp(dirkey, c->prefix, m) != 0)
        return 0; /* diverges from the prefix */
    /* If start_after does not begin with dirkey, every key below compares
     * with start_after as dirkey does (the first differing byte lies within
     * dirkey): when dirkey sorts first, the whole subtree is skipped. */
    if (c->start_after && strncmp(c->start_after, dirkey, dlen) != 0 &&
        strcmp(dirkey, c->start_after) < 0)
        return 0;
    return 1;
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* Walk the directory dirfd (takes ownership), whose keys start with keybuf
 * [0, klen). */
static int list_walk(struct list_ctx *c, int dirfd, char *keybuf, size_t klen)
{
    __attribute__((cleanup(closedirp))) DIR *d = fdopendir(dirfd);
    if (!d) {
        int e = errno;
        close(dirfd);
        return -e;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                return -errno;
            break;
        }
        const char *nm = de->d_name;
        if (nm[0] == '.')
            continue; /* ".", "..", temp files */
        size_t nlen = strlen(nm);
        if (klen + nlen + 1 > KEY_MAX)
            continue; /* cannot be a valid key */
        memcpy(keybuf + klen, nm, nlen + 1);

        struct stat sb;
        if (fstatat(dirfd, nm, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* deleted meanwhile */
            return -errno;
        }
        if (S_ISDIR(sb.st_mode)) {
            keybuf[klen + nlen] = '/';
            keybuf[klen + nlen + 1] = '\0';
            if (!subtree_wanted(c, keybuf, klen + nlen + 1))
                continue;
            int sub = openat(dirfd, nm, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (sub < 0) {
                if (errno == ENOENT)
                    continue;
                return -errno;
            }
            int r = list_walk(c, sub, keybuf, klen + nlen + 1);
            if (r < 0)
                return r;
            continue;
        }
        if (!S_ISREG(sb.st_mode))
            continue;
        if (strncmp(keybuf, c->prefix, c->prefix_len) != 0)
            continue;
        if (c->start_after && strcmp(keybuf, c->start_after) <= 0)
            continue;
        if (!key_ok(keybuf, 0))
            continue; /* a stray file no key could name */
        int r = list_add(c, keybuf, (uint64_t)sb.st_size);
        if (r < 0)
            return r;
    }
    return 0;
}

static int file_list(struct gfs_objstore *s, const char *prefix, const char *start_after,
                     gfs_list_cb cb, void *arg)
{
    struct file_store *st = fs_of(s);
    if (!prefix)
        prefix = "";
    if (!key_ok(prefix, 1) || !cb)
        return count_err(st, -EINVAL);

    struct list_ctx c = { .prefix = prefix, .prefix_len = strlen(prefix),
                          .start_after = start_after };
    char dir[KEY_MAX + 1];
    split_key(prefix, dir, sizeof(dir));
    int dirfd = open_dir(st, dir, 0);
    int r = 0;
    if (dirfd >= 0) {
        char keybuf[KEY_MAX + 2];
        size_t klen = strlen(dir);
        memcpy(keybuf, dir, klen);
        if (klen)
            keybuf[klen++] = '/';
        keybuf[klen] = '\0';
        r = list_walk(&c, dirfd, keybuf, klen);
    } else if (dirfd != -ENOENT && dirfd != -ENOTDIR) {
        r = dirfd;
    }
    if (r == 0) {
        STAT_ADD(st, lists, 1);
        if (c.n > 1)
            qsort(c.v, c.n, sizeof(*c.v), listed_cmp);
        for (size_t i = 0; i < c.n && r == 0; i++)
            r = cb(arg, c.v[i].key, c.v[i].size);
    } else {
        r = count_err(st, store_err(st, "list", prefix, -r));
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].key);
    free(c.v);
    return r;
}

static void file_destroy(struct gfs_objstore *s)
{
    struct file_store *st = fs_of(s);
    close(st->rootfd);
    free(st->root);
    free(st);
}

/* No batch request on a file system: one by one (each one atomic). */
static int file_del_many(struct gfs_objstore *s, const char *const *keys, size_t n,
                         size_t *failed)
{
    return gfs_objstore_del_each(s, keys, n, failed);
}

static const struct gfs_objstore_ops file_ops = {
    .put = file_put,
    .put_etag = file_put_etag,
    .get_range = file_get_range,
    .get = file_get,
    .head = file_head,
    .del = file_del,
    .list = file_list,
    .destroy = file_destroy,
    .del_many = file_del_many,
};

void gfs_objstore_file_walk_only(struct gfs_objstore *s)
{
    atomic_store_explicit(&fs_of(s)->walk_only, 1, memory_order_relaxed);
}

int gfs_objstore_file_open(const char *root_dir, struct gfs_log *log, struct gfs_objstore **out,
                           char *err, size_t errlen)
{
    if (!out) {
        set_err(err, errlen, "file store: no output handle");
        return -EINVAL;
    }
    *out = NULL;
    if (!root_dir || root_dir[0] != '/') {
        set_err(err, errlen, "file store: root must be an absolute path, got \"%s\"",
                 root_dir ? root_dir : "(null)");
        return -EINVAL;
    }
    int fd = open(root_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        char buf[128];
        set_err(err, errlen, "file store: cannot open directory %s: %s", root_dir,
                 strerror_r(e, buf, sizeof(buf)));
        return e == ENOENT || e == ENOTDIR ? -ENOENT : e == EACCES ? -EACCES : -EIO;
    }
    if (faccessat(fd, ".", R_OK | W_OK | X_OK, AT_EACCESS) < 0) {
        close(fd);
        set_err(err, errlen, "file store: directory %s is not readable and writable", root_dir);
        return -EACCES;
    }
    struct file_store *st = calloc(1, sizeof(*st));
    if (st)
        st->root = strdup(root_dir);
    if (!st || !st->root) {
        free(st);
        close(fd);
        set_err(err, errlen, "file store: out of memory");
        return -ENOMEM;
    }
    st->base.ops = &file_ops;
    st->base.log = log;
    st->rootfd = fd;
    *out = &st->base;
    return 0;
}
